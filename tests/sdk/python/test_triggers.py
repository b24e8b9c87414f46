"""Triggers through the official Python SDK (aliyun-fc2): create_trigger, get_trigger, list_triggers,
update_trigger, delete_trigger, for a timer (which then fires) and an OSS trigger (checked and shown back).

Run by `cargo test` (tests/it/runtime_triggers.rs) with the environment test_sdk.py gets, on a runtime whose timers
may fire every second. Exits non-zero on the first failed check.
"""

import io
import os
import sys
import time
import zipfile

import fc2

from test_sdk import check, expect_fc_error

SERVICE = "sdk_python_triggers"

HANDLER = """
import json

def handler(event, context):
    e = json.loads(event)
    print("MARK %s %s %s" % (e["triggerName"], e["payload"], e["triggerTime"]))
    return b"ok"
"""


def main():
    work_dir = os.environ["SDK_TEST_WORK_DIR"]
    log = os.path.join(os.environ["SDK_TEST_LOG_DIR"], SERVICE, "f.log")
    client = fc2.Client(
        endpoint=os.environ["SDK_TEST_ENDPOINT"],
        accessKeyID=os.environ["SDK_TEST_ACCESS_KEY_ID"],
        accessKeySecret=os.environ["SDK_TEST_ACCESS_KEY_SECRET"],
        Timeout=30,
    )
    client.create_service(SERVICE)
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        archive.writestr("index.py", HANDLER)
    path = os.path.join(work_dir, "code.zip")
    with open(path, "wb") as f:
        f.write(buffer.getvalue())
    client.create_function(SERVICE, "f", "python3.10", "index.handler", codeZipFile=path)

    config = {"payload": "from-sdk", "cronExpression": "@every 1s", "enable": True}
    created = client.create_trigger(SERVICE, "f", "tick", "timer", config, None, None).data
    check(created["triggerName"] == "tick" and created["triggerType"] == "timer"
          and created["triggerConfig"] == config, "create_trigger timer: %s" % created)
    check("createdTime" in created and "lastModifiedTime" in created, "create_trigger times")

    def fired():
        try:
            with open(log) as f:
                return [line for line in f.read().splitlines() if line.startswith("MARK tick from-sdk ")]
        except FileNotFoundError:
            return []

    deadline = time.time() + 20
    while not fired() and time.time() < deadline:
        time.sleep(0.1)
    check(fired(), "the timer fired with its payload")

    oss_config = {"events": ["oss:ObjectCreated:*"], "filter": {"key": {"prefix": "pre", "suffix": "suf"}}}
    arn = "acs:oss:cn-hangzhou:123:bucket"
    oss = client.create_trigger(SERVICE, "f", "oss1", "oss", oss_config, arn, "acs:ram::123:role/oss").data
    check(oss["sourceArn"] == arn and oss["invocationRole"] == "acs:ram::123:role/oss"
          and oss["triggerConfig"] == oss_config, "create_trigger oss: %s" % oss)
    expect_fc_error(lambda: client.create_trigger(SERVICE, "f", "tick", "timer", config, None, None),
                    409, "TriggerAlreadyExists")
    expect_fc_error(lambda: client.create_trigger(SERVICE, "f", "bad", "timer", {"cronExpression": "* * * * * *"},
                                                  None, None), 400, "InvalidArgument")
    expect_fc_error(lambda: client.create_trigger(SERVICE + "invalid", "f", "x", "oss", oss_config, arn, None),
                    404, "ServiceNotFound")

    got = client.get_trigger(SERVICE, "f", "oss1").data
    check(got["triggerConfig"] == oss_config, "get_trigger")
    listed = client.list_triggers(SERVICE, "f").data["triggers"]
    check([t["triggerName"] for t in listed] == ["oss1", "tick"], "list_triggers")
    page = client.list_triggers(SERVICE, "f", limit=1).data
    check(len(page["triggers"]) == 1 and page["nextToken"] == "tick", "list_triggers pages")

    stopped = {"payload": "from-sdk", "cronExpression": "@every 1s", "enable": False}
    updated = client.update_trigger(SERVICE, "f", "tick", stopped).data
    check(updated["triggerConfig"]["enable"] is False, "update_trigger disables the timer")
    time.sleep(1.5)
    count = len(fired())
    time.sleep(3)
    check(len(fired()) == count, "a disabled timer is silent")
    expect_fc_error(lambda: client.delete_function(SERVICE, "f"), 409, "FunctionNotEmpty")

    client.delete_trigger(SERVICE, "f", "tick")
    client.delete_trigger(SERVICE, "f", "oss1")
    expect_fc_error(lambda: client.get_trigger(SERVICE, "f", "tick"), 404, "TriggerNotFound")
    client.delete_function(SERVICE, "f")
    client.delete_service(SERVICE)
    print("all python SDK trigger checks passed")


if __name__ == "__main__":
    try:
        main()
    except Exception as error:  # noqa: BLE001 - report any failure as a non-zero exit with its message
        print("FAILED: %r" % (error,), file=sys.stderr)
        raise
