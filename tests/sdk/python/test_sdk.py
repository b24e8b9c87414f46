"""Drives the bundled function runtime with the official Function Compute Python SDK (aliyun-fc2).

Run by `cargo test` (tests/it/runtime_sdk.rs), which starts a signed runtime with a concurrency limit of 2 and
passes SDK_TEST_ENDPOINT, SDK_TEST_ACCESS_KEY_ID, SDK_TEST_ACCESS_KEY_SECRET, SDK_TEST_WORK_DIR (a scratch folder)
and SDK_TEST_LOG_DIR (the runtime's function logs, where handlers' output shows what async invocations did).
Exits non-zero on the first failed check.
"""

import base64
import io
import os
import sys
import threading
import time
import zipfile

import fc2
import requests

PYTHON_CODE = """
import os, time

def handler(event, context):
    print("python handler saw", event)
    return b"py:" + event

def fail(event, context):
    raise ValueError("py boom")

def sleep(event, context):
    time.sleep(1.5)
    return b"slept"

def mark(event, context):
    print("MARK " + event.decode() + " " + context.request_id)
    return b"marked"
"""

NODE_CODE = """
exports.handler = (event, context, callback) => callback(null, 'node:' + event.toString());
exports.handled = (event, context, callback) => callback(new Error('node handled'));
"""

SERVICE = "sdk_python"


def zip_of(name, text):
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        archive.writestr(name, text)
    return buffer.getvalue()


def check(condition, message):
    if not condition:
        raise AssertionError(message)
    print("ok -", message)


def expect_fc_error(call, status, code):
    try:
        call()
    except fc2.fc_exceptions.FcError as error:
        check(
            error.status_code == status and error.err_code == code,
            "FcError %s %s (got %s %r: %s)" % (status, code, error.status_code, error.err_code, error.message),
        )
        return error
    raise AssertionError("expected FcError %s %s, the call succeeded" % (status, code))


def raw_invoke(client, function, payload):
    """An invoke through the SDK's own signing, to read the response headers of a function error."""
    path = "/2016-08-15/services/%s/functions/%s/invocations" % (SERVICE, function)
    headers = client._build_common_headers("POST", path, {})
    return client._do_request("POST", path, headers, body=payload)


def main():
    work_dir = os.environ["SDK_TEST_WORK_DIR"]
    log_dir = os.environ["SDK_TEST_LOG_DIR"]
    client = fc2.Client(
        endpoint=os.environ["SDK_TEST_ENDPOINT"],
        accessKeyID=os.environ["SDK_TEST_ACCESS_KEY_ID"],
        accessKeySecret=os.environ["SDK_TEST_ACCESS_KEY_SECRET"],
        Timeout=30,
    )

    created = client.create_service(SERVICE, description="aliyun-fc2 test")
    check(created.data["serviceName"] == SERVICE and created.headers.get("etag"), "create_service")

    code_dir = os.path.join(work_dir, "python-code")
    os.makedirs(code_dir, exist_ok=True)
    with open(os.path.join(code_dir, "index.py"), "w") as f:
        f.write(PYTHON_CODE)
    env = {"GREETING": "hello"}
    for name, handler in [("py", "index.handler"), ("pyfail", "index.fail"), ("pysleep", "index.sleep"), ("pymark", "index.mark")]:
        function = client.create_function(
            SERVICE, name, "python3.10", handler, codeDir=code_dir, environmentVariables=env, timeout=10
        )
        check(function.data["functionName"] == name and function.data["codeChecksum"], "create_function " + name)

    node_zip = os.path.join(work_dir, "node.zip")
    with open(node_zip, "wb") as f:
        f.write(zip_of("index.js", NODE_CODE))
    for name, handler in [("node", "index.handler"), ("nodeerr", "index.handled")]:
        function = client.create_function(SERVICE, name, "nodejs20", handler, codeZipFile=node_zip)
        check(function.data["runtime"] == "nodejs20", "create_function " + name)

    check(client.get_function(SERVICE, "py").data["timeout"] == 10, "get_function")
    names = [f["functionName"] for f in client.list_functions(SERVICE, limit=3).data["functions"]]
    check(names == ["node", "nodeerr", "py"], "list_functions: %s" % names)

    result = client.invoke_function(SERVICE, "py", payload=b"hi", headers={"x-fc-log-type": "Tail"})
    check(result.data == b"py:hi", "sync python invoke: %r" % result.data)
    log = base64.b64decode(result.headers["x-fc-log-result"]).decode()
    check("python handler saw" in log, "log tail: %r" % log)
    with open(os.path.join(code_dir, "index.py"), "w") as f:
        f.write(PYTHON_CODE.replace('b"py:"', 'b"py2:"'))
    updated = client.update_function(SERVICE, "py", codeDir=code_dir, description="second version")
    check(updated.data["description"] == "second version", "update_function")
    result = client.invoke_function(SERVICE, "py", payload=b"hi")
    check(result.data == b"py2:hi", "the update replaced the warm instance: %r" % result.data)
    code = client.get_function_code(SERVICE, "py").data
    check(code["checksum"] == updated.data["codeChecksum"], "get_function_code checksum")
    archive = requests.get(code["url"], timeout=10)
    check(archive.status_code == 200 and zipfile.ZipFile(io.BytesIO(archive.content)).namelist() == ["index.py"],
          "the code URL serves the zip")

    result = client.invoke_function(SERVICE, "node", payload=b"hi", qualifier="LATEST")
    check(result.data == b"node:hi", "sync node invoke with qualifier LATEST: %r" % result.data)

    error = expect_fc_error(lambda: client.invoke_function(SERVICE, "pyfail", payload=b"x"), 200, "")
    check("py boom" in error.message, "unhandled error message: %s" % error.message)
    response = raw_invoke(client, "pyfail", b"x")
    check(response.headers["x-fc-error-type"] == "UnhandledInvocationError", "UnhandledInvocationError header")
    error = expect_fc_error(lambda: client.invoke_function(SERVICE, "nodeerr", payload=b"x"), 200, "")
    check("node handled" in error.message, "handled error message: %s" % error.message)
    response = raw_invoke(client, "nodeerr", b"x")
    check(response.headers["x-fc-error-type"] == "HandledInvocationError", "HandledInvocationError header")

    expect_fc_error(lambda: client.invoke_function(SERVICE, "missing", payload=b"x"), 404, "FunctionNotFound")
    expect_fc_error(lambda: client.get_function(SERVICE, "missing"), 404, "FunctionNotFound")
    expect_fc_error(lambda: client.get_service("no_such_service"), 404, "ServiceNotFound")
    expect_fc_error(lambda: client.create_service(SERVICE), 409, "ServiceAlreadyExists")

    config = client.put_function_async_invoke_config(
        SERVICE, "LATEST", "pymark", {"maxAsyncRetryAttempts": 1, "maxAsyncEventAgeInSeconds": 600}
    )
    check(config.data["maxAsyncRetryAttempts"] == 1, "put_function_async_invoke_config")
    accepted = client.invoke_function(
        SERVICE,
        "pymark",
        payload=b"python-async",
        headers={"x-fc-invocation-type": "Async", "x-fc-stateful-async-invocation-id": "py_job_1"},
    )
    check(accepted.data == b"", "async invoke accepted")
    log = os.path.join(log_dir, SERVICE, "pymark.log")

    def marked():
        try:
            with open(log) as f:
                return "MARK python-async " in f.read()
        except FileNotFoundError:
            return False

    deadline = time.time() + 20
    while not marked() and time.time() < deadline:
        time.sleep(0.05)
    check(marked(), "the async invocation ran (its mark is in the function's log)")

    outcomes = []

    def call():
        try:
            outcomes.append(client.invoke_function(SERVICE, "pysleep", payload=b"").data)
        except fc2.fc_exceptions.FcError as error:
            outcomes.append((error.status_code, error.err_code))

    threads = [threading.Thread(target=call) for _ in range(6)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    throttled = [o for o in outcomes if o == (429, "ResourceExhausted")]
    done = [o for o in outcomes if o == b"slept"]
    check(len(throttled) >= 1 and len(done) >= 1 and len(throttled) + len(done) == 6,
          "6 parallel calls under a limit of 2: %d ran, %d got 429 ResourceExhausted" % (len(done), len(throttled)))

    for name in ["py", "pyfail", "pysleep", "pymark", "node", "nodeerr"]:
        client.delete_function(SERVICE, name)
    client.delete_service(SERVICE)
    expect_fc_error(lambda: client.get_service(SERVICE), 404, "ServiceNotFound")
    print("all python SDK checks passed")


if __name__ == "__main__":
    try:
        main()
    except Exception as error:  # noqa: BLE001 - report any failure as a non-zero exit with its message
        print("FAILED: %r" % (error,), file=sys.stderr)
        raise
