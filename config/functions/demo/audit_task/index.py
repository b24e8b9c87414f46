# A handler that fails on purpose: the `task-audit` trigger pushes only the chaincode event's payload (jq
# `select(.name=="event-create-task") | .content`, a JSON string holding base64), and this handler raises for
# every task whose number is a multiple of 7. A raised exception is a function error: the daemon retries it,
# then discards the event (a dead letter) and counts one failure against the trigger's threshold.
import base64
import json
import logging

logger = logging.getLogger()


class AuditRejected(Exception):
    pass


def handler(event, context):
    payload = json.loads(base64.b64decode(json.loads(event)))
    task = payload.get("taskId", "")
    number = task.rsplit("-", 1)[-1]
    if number.isdigit() and int(number) % 7 == 0:
        logger.warning("rejecting %s: task numbers divisible by 7 fail the audit", task)
        raise AuditRejected(f"{task} failed the audit")
    logger.info("audited %s", task or payload)
    return {"audited": task}
