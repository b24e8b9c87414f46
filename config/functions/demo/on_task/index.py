# A Function Compute handler, unchanged from what would run in the cloud: it receives one BaaS Contract event
# (the whole envelope, pushed by a jq filter `select(.name=="event-create-task")`), decodes the chaincode
# event's base64 payload and logs one line.
import base64
import json
import logging

logger = logging.getLogger()


def handler(event, context):
    envelope = json.loads(event)
    payload = json.loads(base64.b64decode(envelope["content"]))
    task = payload.get("taskId") or payload.get("key") or "?"
    owner = payload.get("owner", "-")
    block = envelope["id"].split("-")[1]
    logger.info("%s created by %s in block %s", task, owner, block)
    return {"task": task, "event_id": envelope["id"]}
