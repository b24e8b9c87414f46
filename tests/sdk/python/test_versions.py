"""Versions and aliases through the official Python SDK (aliyun-fc2): publish_version, list_versions,
delete_version, create/get/list/update/delete_alias, and get/invoke with a qualifier.

Run by `cargo test` (tests/it/runtime_versions.rs) with the environment test_sdk.py gets. Exits non-zero on the
first failed check.
"""

import io
import os
import sys
import zipfile

import fc2

from test_sdk import check, expect_fc_error

SERVICE = "sdk_python_versions"


def zip_of(text):
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        archive.writestr("index.py", text)
    return buffer.getvalue()


def code(tag):
    return "def handler(event, context):\n    return b'%s:' + event\n" % tag


def main():
    work_dir = os.environ["SDK_TEST_WORK_DIR"]
    client = fc2.Client(
        endpoint=os.environ["SDK_TEST_ENDPOINT"],
        accessKeyID=os.environ["SDK_TEST_ACCESS_KEY_ID"],
        accessKeySecret=os.environ["SDK_TEST_ACCESS_KEY_SECRET"],
        Timeout=30,
    )
    client.create_service(SERVICE, description="service at LATEST")
    first_zip = os.path.join(work_dir, "one.zip")
    with open(first_zip, "wb") as f:
        f.write(zip_of(code("one")))
    created = client.create_function(SERVICE, "f", "python3.10", "index.handler", codeZipFile=first_zip, timeout=5)
    first_checksum = created.data["codeChecksum"]

    v1 = client.publish_version(SERVICE, "release one").data
    check(v1["versionId"] == "1" and v1["description"] == "release one", "publish_version: %s" % v1)
    check("createdTime" in v1 and "lastModifiedTime" in v1, "publish_version times")
    expect_fc_error(lambda: client.publish_version(SERVICE, "unchanged"), 400, "InvalidArgument")

    second_zip = os.path.join(work_dir, "two.zip")
    with open(second_zip, "wb") as f:
        f.write(zip_of(code("two")))
    client.update_function(SERVICE, "f", codeZipFile=second_zip, timeout=7)
    v2 = client.publish_version(SERVICE, "release two").data
    check(v2["versionId"] == "2", "second version")

    check(client.invoke_function(SERVICE, "f", payload=b"x").data == b"two:x", "LATEST runs the new code")
    check(client.invoke_function(SERVICE, "f", payload=b"x", qualifier="1").data == b"one:x",
          "qualifier 1 runs the published code")
    function = client.get_function(SERVICE, "f", qualifier="1").data
    check(function["timeout"] == 5 and function["codeChecksum"] == first_checksum, "get_function at version 1")
    check(client.get_function_code(SERVICE, "f", qualifier="1").data["checksum"] == first_checksum,
          "get_function_code at version 1")
    check(client.get_service(SERVICE, qualifier="1").data["description"] == "release one",
          "get_service at a version shows the version's description")
    check(len(client.list_functions(SERVICE, qualifier="2").data["functions"]) == 1, "list_functions at version 2")

    page = client.list_versions(SERVICE, limit=1).data
    check([v["versionId"] for v in page["versions"]] == ["2"] and page["nextToken"] == "1",
          "list_versions pages newest first: %s" % page)
    rest = client.list_versions(SERVICE, nextToken=page["nextToken"]).data
    check([v["versionId"] for v in rest["versions"]] == ["1"], "list_versions next page")
    forward = client.list_versions(SERVICE, direction="FORWARD").data
    check([v["versionId"] for v in forward["versions"]] == ["1", "2"], "list_versions FORWARD")

    alias = client.create_alias(SERVICE, "prod", "1", "canary", {"2": 0.5}).data
    check(alias["aliasName"] == "prod" and alias["versionId"] == "1"
          and alias["additionalVersionWeight"] == {"2": 0.5}, "create_alias: %s" % alias)
    expect_fc_error(lambda: client.create_alias(SERVICE, "prod", "1"), 409, "AliasAlreadyExists")
    expect_fc_error(lambda: client.create_alias(SERVICE, "bad", "1", None, {"2": 1.5}), 400, "InvalidArgument")
    expect_fc_error(lambda: client.create_alias(SERVICE, "gone", "9"), 404, "VersionNotFound")
    answers = {client.invoke_function(SERVICE, "f", payload=b"x", qualifier="prod").data for _ in range(40)}
    check(answers == {b"one:x", b"two:x"}, "the alias sends calls to both versions: %s" % answers)
    check(client.get_alias(SERVICE, "prod").data["description"] == "canary", "get_alias")
    updated = client.update_alias(SERVICE, "prod", "2", None, {}).data
    check(updated["versionId"] == "2" and updated["additionalVersionWeight"] == {}, "update_alias: %s" % updated)
    answers = {client.invoke_function(SERVICE, "f", payload=b"x", qualifier="prod").data for _ in range(10)}
    check(answers == {b"two:x"}, "after update_alias every call runs version 2")
    check([a["aliasName"] for a in client.list_aliases(SERVICE).data["aliases"]] == ["prod"], "list_aliases")
    expect_fc_error(lambda: client.get_function(SERVICE, "f", qualifier="nosuch"), 404, "AliasNotFound")
    expect_fc_error(lambda: client.invoke_function(SERVICE, "f", payload=b"x", qualifier="7"), 404, "VersionNotFound")
    expect_fc_error(lambda: client.delete_service(SERVICE), 409, "ServiceNotEmpty")

    client.delete_alias(SERVICE, "prod")
    expect_fc_error(lambda: client.get_alias(SERVICE, "prod"), 404, "AliasNotFound")
    client.delete_version(SERVICE, "1")
    client.delete_version(SERVICE, "2")
    check(client.list_versions(SERVICE).data["versions"] == [], "delete_version")
    client.delete_function(SERVICE, "f")
    client.delete_service(SERVICE)
    print("all python SDK version checks passed")


if __name__ == "__main__":
    try:
        main()
    except Exception as error:  # noqa: BLE001 - report any failure as a non-zero exit with its message
        print("FAILED: %r" % (error,), file=sys.stderr)
        raise
