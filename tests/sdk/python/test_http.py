"""HTTP triggers through the official Python SDK (aliyun-fc2), as the user guide's Example 2 does: create_service,
create_function with the guide's Node.js HTTP function, create_trigger(..., "http", {"authType", "methods"}, ...),
then calls: `do_http_request` (signed) on a `function` trigger, a plain request on an anonymous one.

Run by `cargo test` (tests/it/runtime_http.rs) with the environment test_sdk.py gets. Exits non-zero on the first
failed check.
"""

import io
import os
import sys
import urllib.error
import urllib.request
import zipfile

import fc2

from test_sdk import check, expect_fc_error

SERVICE = "http_trigger_service"

# The guide's Node.js HTTP function (Example 1), unchanged.
GUIDE_NODE = open(
    os.path.join(os.path.dirname(__file__), "..", "..", "..", "fixtures", "functions", "http", "guide_node.js")
).read()

WSGI = """
def handler(environ, start_response):
    body = environ["wsgi.input"].read(int(environ.get("CONTENT_LENGTH") or 0))
    start_response("200 OK", [("Content-Type", "text/plain")])
    return [b"%s %s?%s %s" % (environ["REQUEST_METHOD"].encode(), environ["PATH_INFO"].encode(),
                              environ["QUERY_STRING"].encode(), body)]
"""


def code_dir(work_dir, name, file_name, text):
    folder = os.path.join(work_dir, name)
    os.makedirs(folder, exist_ok=True)
    with open(os.path.join(folder, file_name), "w") as f:
        f.write(text)
    return folder


def main():
    work_dir = os.environ["SDK_TEST_WORK_DIR"]
    endpoint = os.environ["SDK_TEST_ENDPOINT"]
    client = fc2.Client(
        endpoint=endpoint,
        accessKeyID=os.environ["SDK_TEST_ACCESS_KEY_ID"],
        accessKeySecret=os.environ["SDK_TEST_ACCESS_KEY_SECRET"],
        Timeout=30,
    )
    client.create_service(SERVICE)
    client.create_function(SERVICE, "test_http_trigger_node", "nodejs6", "main.handler",
                           codeDir=code_dir(work_dir, "node", "main.js", GUIDE_NODE))
    trigger_config = {
        "authType": "anonymous",
        "methods": ["GET", "POST"],
    }
    created = client.create_trigger(SERVICE, "test_http_trigger_node", "trigger_on_echo", "http", trigger_config,
                                    "dummy_arn", "").data
    check(created["triggerType"] == "http" and created["triggerConfig"] == trigger_config,
          "create_trigger http: %s" % created)
    expect_fc_error(
        lambda: client.create_trigger(SERVICE, "test_http_trigger_node", "second", "http", trigger_config,
                                      "dummy_arn", ""),
        400, "InvalidArgument")

    # Anonymous: any HTTP client, no signature (the guide's curl).
    url = "%s/2016-08-15/proxy/%s/%s/action?lang=python&hello=world" % (endpoint, SERVICE, "test_http_trigger_node")
    request = urllib.request.Request(url, data=b"this is body", method="POST")
    with urllib.request.urlopen(request) as response:
        text = response.read().decode()
        check(response.status == 200 and response.headers["Content-Type"] == "application/json",
              "anonymous POST: %s %s" % (response.status, response.headers))
    check("path: /action\n" in text and "queries: lang=python hello=world \n" in text
          and "method: POST\n" in text and "body: this is body\n" in text, "the guide's answer: %r" % text)
    try:
        urllib.request.urlopen(urllib.request.Request(url, data=b"x", method="PUT"))
        raise AssertionError("PUT was answered")
    except urllib.error.HTTPError as error:
        check(error.code == 403 and error.headers["X-Fc-Error-Type"] == "FcCommonError",
              "PUT is not among the trigger's methods: %s" % error.code)

    # Function: do_http_request signs the request (its queries too).
    client.create_function(SERVICE, "wsgi", "python3.10", "index.handler",
                           codeDir=code_dir(work_dir, "wsgi", "index.py", WSGI))
    client.create_trigger(SERVICE, "wsgi", "signed", "http", {"authType": "function", "methods": ["POST", "GET"]},
                          "dummy_arn", "")
    r = client.do_http_request("POST", SERVICE, "wsgi", "/a/b", headers={"content-type": "text/plain"},
                               params={"x": "1", "y": "two words"}, body=b"payload")
    check(r.status_code == 200 and r.text == "POST /a/b?x=1&y=two+words payload",
          "do_http_request: %s %r" % (r.status_code, r.text))
    r = client.do_http_request("GET", SERVICE, "wsgi", "")
    check(r.status_code == 200 and r.text == "GET /? ", "do_http_request without a path: %r" % r.text)
    try:
        urllib.request.urlopen("%s/2016-08-15/proxy/%s/wsgi/a" % (endpoint, SERVICE))
        raise AssertionError("an unsigned request was answered")
    except urllib.error.HTTPError as error:
        check(error.code == 400, "unsigned request to a function trigger: %s" % error.code)

    for function, trigger in [("test_http_trigger_node", "trigger_on_echo"), ("wsgi", "signed")]:
        client.delete_trigger(SERVICE, function, trigger)
        client.delete_function(SERVICE, function)
    client.delete_service(SERVICE)
    print("all python SDK HTTP trigger checks passed")


if __name__ == "__main__":
    try:
        main()
    except Exception as error:  # noqa: BLE001 - report any failure as a non-zero exit with its message
        print("FAILED: %r" % (error,), file=sys.stderr)
        raise
