# chaintrigger function runtime: the Python 3 side of one handler instance.
#
# Runs Function Compute handlers unchanged: `def handler(event, context)` with `event` as bytes, an optional
# `def initializer(context)`. The runtime talks to this process over two dedicated pipes, never over
# stdout/stderr (those are the function's log):
#   fd 3 (read):  frames from the runtime
#   fd 4 (write): frames to the runtime
# A frame is a 4-byte big-endian length of what follows, then one kind byte, then the body:
#   runtime -> here: b"S" setup (JSON), b"N" initialize (request id), b"I" invoke (u16 id length, id, event)
#   here -> runtime: b"R" ready (once, after the setup), b"O" success (raw body), b"U" unhandled error (JSON)
# An exit of this process (sys.exit, os._exit, a crash) is seen by the runtime as the end of fd 4.

import datetime
import importlib
import json
import logging
import os
import struct
import sys
import time
import traceback

REQUEST_FD = 3
RESPONSE_FD = 4
SHIM_FILE = os.path.abspath(__file__)

os.set_inheritable(REQUEST_FD, False)
os.set_inheritable(RESPONSE_FD, False)
_requests = os.fdopen(REQUEST_FD, "rb", buffering=0)
_responses = os.fdopen(RESPONSE_FD, "wb", buffering=0)

_current_request_id = ""
_CONTEXT_LOGGER = "fc.context"


def _read_exact(n):
    chunks = []
    while n > 0:
        chunk = _requests.read(n)
        if not chunk:
            sys.exit(0)
        chunks.append(chunk)
        n -= len(chunk)
    return b"".join(chunks)


def _read_frame():
    (length,) = struct.unpack(">I", _read_exact(4))
    frame = _read_exact(length)
    return frame[:1], frame[1:]


def _write_frame(kind, body):
    _flush_logs()
    _responses.write(struct.pack(">I", len(body) + 1) + kind + body)


def _flush_logs():
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except Exception:
            pass


class _RequestIdFilter(logging.Filter):
    def filter(self, record):
        record.request_id = _current_request_id
        return True


class _FcFormatter(logging.Formatter):
    # `2017-07-05T05:13:35.920Z <request id> [INFO] message`, as Function Compute's Python runtime writes it.
    def formatTime(self, record, datefmt=None):
        moment = datetime.datetime.fromtimestamp(record.created, tz=datetime.timezone.utc)
        return moment.strftime("%Y-%m-%dT%H:%M:%S.") + "%03dZ" % (record.msecs,)


class _ContextFormatter(logging.Formatter):
    # `2022-07-13 10:26:02 <request id> [INFO] message`: the style of `context.getLogger()`.
    converter = time.gmtime


def _configure_logging():
    handler = logging.StreamHandler(sys.stdout)
    handler.setFormatter(_FcFormatter("%(asctime)s %(request_id)s [%(levelname)s] %(message)s"))
    handler.addFilter(_RequestIdFilter())
    root = logging.getLogger()
    for existing in list(root.handlers):
        root.removeHandler(existing)
    root.addHandler(handler)
    root.setLevel(logging.INFO)

    context_handler = logging.StreamHandler(sys.stdout)
    context_handler.setFormatter(
        _ContextFormatter("%(asctime)s %(request_id)s [%(levelname)s] %(message)s", "%Y-%m-%d %H:%M:%S")
    )
    context_handler.addFilter(_RequestIdFilter())
    context_logger = logging.getLogger(_CONTEXT_LOGGER)
    context_logger.addHandler(context_handler)
    context_logger.setLevel(logging.INFO)
    context_logger.propagate = False


class _Namespace:
    def __init__(self, **fields):
        self.__dict__.update(fields)

    def __repr__(self):
        return repr(self.__dict__)


class FCContext:
    """The `context` argument: the same attribute names as Function Compute's Python runtime."""

    def __init__(self, setup, request_id):
        ctx = setup["context"]
        creds = ctx["credentials"]
        function = ctx["function"]
        service = ctx["service"]
        self.request_id = request_id
        self.credentials = _Namespace(
            access_key_id=creds["accessKeyId"],
            access_key_secret=creds["accessKeySecret"],
            security_token=creds["securityToken"],
            accessKeyId=creds["accessKeyId"],
            accessKeySecret=creds["accessKeySecret"],
            securityToken=creds["securityToken"],
        )
        self.function = _Namespace(
            name=function["name"],
            handler=function["handler"],
            memory=function["memory"],
            timeout=function["timeout"],
            initializer=function["initializer"],
            initialization_timeout=function["initializationTimeout"],
        )
        self.service = _Namespace(
            name=service["name"],
            log_project=service["logProject"],
            log_store=service["logStore"],
            qualifier=service["qualifier"],
            version_id=service["versionId"],
        )
        self.region = ctx["region"]
        self.account_id = ctx["accountId"]
        self.tracing = _Namespace(
            span_context=None, jaeger_endpoint=None, span_baggages={}, parent_span_id=None
        )

    def getLogger(self):
        return logging.getLogger(_CONTEXT_LOGGER)


def _resolve(spec):
    module_name, _, function_name = spec.rpartition(".")
    if not module_name or not function_name:
        raise ValueError("invalid handler '%s': expected module.function, e.g. index.handler" % spec)
    module = importlib.import_module(module_name.replace("/", "."))
    try:
        return getattr(module, function_name)
    except AttributeError:
        raise AttributeError(
            "module '%s' has no attribute '%s' (handler '%s')" % (module_name, function_name, spec)
        ) from None


def _user_frames(error):
    # The stack as the function's author sees it: without this shim and importlib's frozen frames.
    return [
        frame
        for frame in traceback.extract_tb(error.__traceback__)
        if os.path.abspath(frame.filename) != SHIM_FILE and not frame.filename.startswith("<frozen")
    ]


def _error_body(error):
    frames = _user_frames(error)
    stack = [
        ['File "%s"' % frame.filename, "line %d" % frame.lineno, "in %s" % frame.name, frame.line or ""]
        for frame in frames
    ]
    return json.dumps(
        {"errorMessage": str(error), "errorType": type(error).__name__, "stackTrace": stack}
    ).encode()


def _log_error(error):
    frames = _user_frames(error)
    text = "Traceback (most recent call last):\n" + "".join(traceback.format_list(frames))
    text += "".join(traceback.format_exception_only(type(error), error))
    sys.stderr.write(text)


def _to_body(result):
    # bytes as they are; str as UTF-8; dict / list as JSON; None as an empty body; anything else as str().
    if isinstance(result, (bytes, bytearray, memoryview)):
        return bytes(result)
    if isinstance(result, str):
        return result.encode("utf-8")
    if result is None:
        return b""
    if isinstance(result, (dict, list, tuple)):
        return json.dumps(result).encode("utf-8")
    return str(result).encode("utf-8")


def main():
    global _current_request_id
    _configure_logging()
    kind, body = _read_frame()
    if kind != b"S":
        sys.stderr.write("runtime protocol error: expected setup, got %r\n" % kind)
        sys.exit(70)
    setup = json.loads(body)
    code_dir = setup["codeDir"]
    # The function's modules are found in its code, never next to this shim.
    shim_dir = os.path.dirname(SHIM_FILE)
    sys.path[:] = [entry for entry in sys.path if os.path.abspath(entry or ".") != shim_dir]
    sys.path.insert(0, code_dir)
    _write_frame(b"R", b"")
    handler = None
    while True:
        kind, body = _read_frame()
        if kind == b"N":
            _current_request_id = body.decode()
            try:
                initializer = _resolve(setup["initializer"])
                initializer(FCContext(setup, _current_request_id))
            except Exception as error:
                _log_error(error)
                _write_frame(b"U", _error_body(error))
                continue
            _write_frame(b"O", b"")
        elif kind == b"I":
            (id_length,) = struct.unpack(">H", body[:2])
            _current_request_id = body[2 : 2 + id_length].decode()
            event = body[2 + id_length :]
            try:
                if handler is None:
                    handler = _resolve(setup["handler"])
                result = handler(event, FCContext(setup, _current_request_id))
                response = _to_body(result)
            except Exception as error:
                _log_error(error)
                _write_frame(b"U", _error_body(error))
                continue
            _write_frame(b"O", response)
        else:
            sys.stderr.write("runtime protocol error: unknown frame %r\n" % kind)
            sys.exit(70)


main()
