"""Java functions through the official Function Compute Python SDK (aliyun-fc2).

Run by `cargo test` (tests/it/runtime_java.rs), which compiles the user guide's Java examples with javac
against the runtime's `com.aliyun.fc.runtime` sources, zips them into SDK_TEST_WORK_DIR (hello.zip: a jar at the
top; pojo.zip: classes at the top; oops.zip: a jar under lib/; more.zip: a jar bundling its own copy of the API),
and starts a signed runtime. Exits non-zero on the first failed check.
"""

import base64
import json
import os
import re
import sys

import fc2

from test_sdk import check

SERVICE = "sdk_python_java"


def raw_invoke(client, function, payload):
    """An invoke through the SDK's own signing, to read a function error's headers and body."""
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
        Timeout=60,
    )
    client.create_service(SERVICE, description="Java functions")

    def create(name, runtime, handler, archive, **extra):
        function = client.create_function(
            SERVICE, name, runtime, handler, codeZipFile=os.path.join(work_dir, archive), timeout=30, **extra
        )
        check(function.data["runtime"] == runtime and function.data["handler"] == handler,
              "create_function %s (%s, %s)" % (name, runtime, handler))

    create("hello", "java8", "example.HelloFC::handleRequest", "hello.zip")
    create("pojo", "java11", "example.HelloFC::handleRequest", "pojo.zip")
    create("oops", "java8", "example.HelloFC::handleRequest", "oops.zip")
    create("init", "java17", "example.InitFC::handleRequest", "more.zip",
           initializer="example.InitFC::initialize", initializationTimeout=30)

    result = client.invoke_function(SERVICE, "hello", payload=b"", headers={"x-fc-log-type": "Tail"})
    check(result.data == b"hello world", "the guide's HelloFC answers hello world: %r" % result.data)
    request_id = result.headers["x-fc-request-id"]
    tail = base64.b64decode(result.headers["x-fc-log-result"]).decode()
    line = r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z %s \[INFO\] hello world" % re.escape(request_id)
    check(re.search(line, tail), "context.getLogger().info writes the guide's line format: %r" % tail)
    with open(os.path.join(log_dir, SERVICE, "hello.log")) as f:
        check(re.search(line, f.read()), "the line is in the function's log file")

    result = client.invoke_function(SERVICE, "pojo", payload=json.dumps({"firstName": "FC", "lastName": "aliyun"}))
    check(json.loads(result.data) == {"message": "Hello, FC aliyun"},
          "the guide's POJO handler maps JSON in and out: %r" % result.data)

    try:
        client.invoke_function(SERVICE, "oops", payload=b"{}")
        raise AssertionError("the throwing handler succeeded")
    except fc2.fc_exceptions.FcError as error:
        check(error.status_code == 200 and "oops" in error.message, "the exception reaches the SDK: %s" % error.message)
    response = raw_invoke(client, "oops", b"{}")
    check(response.headers["x-fc-error-type"] == "UnhandledInvocationError", "X-Fc-Error-Type: UnhandledInvocationError")
    body = response.json()
    check(body["errorMessage"] == "oops" and body["errorType"] == "java.io.IOException"
          and body["stackTrace"] == ["example.HelloFC.handleRequest(HelloFC.java:15)"],
          "the guide's error body: %r" % body)

    answers = [client.invoke_function(SERVICE, "init", payload=b"x").data for _ in range(3)]
    check(answers == [b"ready init=1 calls=1", b"ready init=1 calls=2", b"ready init=1 calls=3"],
          "the initializer ran once, on the instance that serves every call: %r" % answers)
    with open(os.path.join(log_dir, SERVICE, "init.log")) as f:
        log = f.read()
    check(log.count("FC Initialize Start RequestId:") == 1 and log.count("MARK init ") == 1,
          "one initialization in the log")

    for name in ["hello", "pojo", "oops", "init"]:
        client.delete_function(SERVICE, name)
    client.delete_service(SERVICE)
    print("all python SDK Java checks passed")


if __name__ == "__main__":
    try:
        main()
    except Exception as error:  # noqa: BLE001 - report any failure as a non-zero exit with its message
        print("FAILED: %r" % (error,), file=sys.stderr)
        raise
