# chaintrigger function runtime: the Python 3 side of one handler instance.
#
# Runs Function Compute handlers unchanged: `def handler(event, context)` with `event` as bytes, an optional
# `def initializer(context)`. The runtime talks to this process over two dedicated pipes, never over
# stdout/stderr (those are the function's log):
#   fd 3 (read):  frames from the runtime
#   fd 4 (write): frames to the runtime
# A frame is a 4-byte big-endian length of what follows, then one kind byte, then the body:
#   runtime -> here: b"S" setup (JSON), b"N" initialize (request id), b"I" invoke (u16 id length, id, event),
#                    b"P" HTTP invoke (u16 id length, id, u32 head length, head JSON, request body)
#   here -> runtime: b"R" ready (once, after the setup), b"O" success (raw body; for b"P" an HTTP answer: u32
#                    head length, head JSON {status, headers: [[name, value]...]} or {error}, body),
#                    b"U" unhandled error (JSON)
# An exit of this process (sys.exit, os._exit, a crash) is seen by the runtime as the end of fd 4.

import datetime
import importlib
import io
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
# Buffered: a frame's length and its body usually arrive in one read from the pipe (only this process reads it).
_requests = os.fdopen(REQUEST_FD, "rb")
_responses = os.fdopen(RESPONSE_FD, "wb", buffering=0)

_current_request_id = ""
_CONTEXT_LOGGER = "fc.context"


_U32 = struct.Struct(">I")
_U16 = struct.Struct(">H")


def _read_exact(n):
    # The buffered reader blocks until it has `n` bytes: fewer means the runtime closed the pipe.
    data = _requests.read(n)
    if len(data) < n:
        sys.exit(0)
    return data


def _read_frame():
    (length,) = _U32.unpack(_read_exact(4))
    frame = _read_exact(length)
    return frame[:1], frame[1:]


def _write_frame(kind, body):
    _flush_logs()
    _responses.write(_U32.pack(len(body) + 1) + kind + body)


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
    def __init__(self, fields):
        self.__dict__.update(fields)

    def __repr__(self):
        return repr(self.__dict__)


class _ContextFields:
    """What every invocation's context holds, read from the setup once per process."""

    def __init__(self, setup):
        ctx = setup["context"]
        creds = ctx["credentials"]
        function = ctx["function"]
        service = ctx["service"]
        self.credentials = {
            "access_key_id": creds["accessKeyId"],
            "access_key_secret": creds["accessKeySecret"],
            "security_token": creds["securityToken"],
            "accessKeyId": creds["accessKeyId"],
            "accessKeySecret": creds["accessKeySecret"],
            "securityToken": creds["securityToken"],
        }
        self.function = {
            "name": function["name"],
            "handler": function["handler"],
            "memory": function["memory"],
            "timeout": function["timeout"],
            "initializer": function["initializer"],
            "initialization_timeout": function["initializationTimeout"],
        }
        self.service = {
            "name": service["name"],
            "log_project": service["logProject"],
            "log_store": service["logStore"],
            "qualifier": service["qualifier"],
            "version_id": service["versionId"],
        }
        self.region = ctx["region"]
        self.account_id = ctx["accountId"]


class FCContext:
    """The `context` argument: the same attribute names as Function Compute's Python runtime. A new one for every
    call, whose attribute objects are made new on first use: what a handler changes in it does not reach the next
    call, and a handler that never looks at them does not pay for them."""

    def __init__(self, fields, request_id):
        self.request_id = request_id
        self.region = fields.region
        self.account_id = fields.account_id
        self._fields = fields

    def __getattr__(self, name):
        # Only called for attributes not set yet: each is made once per call, then found like any other.
        if name == "credentials":
            value = _Namespace(self._fields.credentials)
        elif name == "function":
            value = _Namespace(self._fields.function)
        elif name == "service":
            value = _Namespace(self._fields.service)
        elif name == "tracing":
            value = _Namespace(
                {"span_context": None, "jaeger_endpoint": None, "span_baggages": {}, "parent_span_id": None}
            )
        else:
            raise AttributeError("'FCContext' object has no attribute '%s'" % name)
        setattr(self, name, value)
        return value

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


# ---- HTTP triggers: WSGI `handler(environ, start_response)`, as Function Compute's Python runtimes take them.

# The largest response body Function Compute sends (6 MB); a larger one is a bad response.
_MAX_HTTP_BODY = 6 * 1024 * 1024


def _http_answer(head, body):
    encoded = json.dumps(head).encode("utf-8")
    return _U32.pack(len(encoded)) + encoded + body


def _bad_response(message):
    return _http_answer({"error": message}, b"")


def _wsgi_text(text):
    # PEP 3333: environ strings are "bytes as Latin-1"; the runtime sends the path decoded as UTF-8.
    return text.encode("utf-8").decode("latin-1")


def _wsgi_environ(head, body, context):
    headers = head["headers"]
    host = headers.get("host", "")
    name, colon, port = host.rpartition(":")
    if not colon or not port.isdigit():
        name, port = host, "80"
    environ = {
        "REQUEST_METHOD": head["method"],
        "SCRIPT_NAME": "",
        "PATH_INFO": _wsgi_text(head["path"]),
        "QUERY_STRING": head["queryString"],
        "SERVER_NAME": name or "localhost",
        "SERVER_PORT": port,
        "SERVER_PROTOCOL": "HTTP/1.1",
        "REMOTE_ADDR": head["clientIP"],
        "CONTENT_LENGTH": str(len(body)),
        "wsgi.version": (1, 0),
        "wsgi.url_scheme": "http",
        "wsgi.input": io.BytesIO(body),
        "wsgi.errors": sys.stderr,
        "wsgi.multithread": False,
        "wsgi.multiprocess": False,
        "wsgi.run_once": False,
        "fc.context": context,
        "fc.request_uri": head["url"],
    }
    for key, value in headers.items():
        if key == "content-type":
            environ["CONTENT_TYPE"] = value
        elif key == "content-length":
            continue
        else:
            environ["HTTP_" + key.upper().replace("-", "_")] = value
    return environ


class _BadResponse(Exception):
    pass


def _http_status(status):
    if not isinstance(status, str):
        raise _BadResponse("start_response: the status %r is not a string such as '200 OK'" % (status,))
    code = status.split(" ", 1)[0]
    if len(code) != 3 or not code.isdigit():
        raise _BadResponse("start_response: the status %r does not start with a 3-digit code" % (status,))
    return int(code)


def _call_wsgi(app, head, body, context):
    state = {"status": None, "headers": None, "sent": False}
    chunks = []
    size = [0]

    def collect(data):
        if not isinstance(data, (bytes, bytearray, memoryview)):
            raise _BadResponse("the response body holds a %s: WSGI bodies are bytes" % type(data).__name__)
        size[0] += len(data)
        if size[0] <= _MAX_HTTP_BODY:
            chunks.append(bytes(data))

    def write(data):
        if state["status"] is None:
            raise AssertionError("write() before start_response()")
        state["sent"] = True
        collect(data)

    def start_response(status, response_headers, exc_info=None):
        if exc_info:
            try:
                if state["sent"]:
                    raise exc_info[1].with_traceback(exc_info[2])
            finally:
                exc_info = None
        elif state["status"] is not None:
            raise AssertionError("start_response() was already called")
        state["status"] = status
        state["headers"] = response_headers
        return write

    result = app(_wsgi_environ(head, body, context), start_response)
    try:
        for data in result:
            if state["status"] is None:
                raise _BadResponse("the application produced a body before calling start_response()")
            if data:
                state["sent"] = True
            collect(data)
    finally:
        close = getattr(result, "close", None)
        if close is not None:
            close()
    if state["status"] is None:
        raise _BadResponse("the application returned without calling start_response()")
    status = _http_status(state["status"])
    headers = []
    try:
        for name, value in state["headers"]:
            if not isinstance(name, str) or not isinstance(value, str):
                raise _BadResponse("start_response: the header %r is not a pair of strings" % ((name, value),))
            headers.append([name, value])
    except (TypeError, ValueError):
        raise _BadResponse("start_response: the headers are not a list of (name, value) pairs") from None
    if size[0] > _MAX_HTTP_BODY:
        raise _BadResponse(
            "the function's response body is %d bytes, more than the %d bytes allowed" % (size[0], _MAX_HTTP_BODY)
        )
    return _http_answer({"status": status, "headers": headers}, b"".join(chunks))


def main():
    global _current_request_id
    _configure_logging()
    kind, body = _read_frame()
    if kind != b"S":
        sys.stderr.write("runtime protocol error: expected setup, got %r\n" % kind)
        sys.exit(70)
    setup = json.loads(body)
    context_fields = _ContextFields(setup)
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
                initializer(FCContext(context_fields, _current_request_id))
            except Exception as error:
                _log_error(error)
                _write_frame(b"U", _error_body(error))
                continue
            _write_frame(b"O", b"")
        elif kind == b"I":
            (id_length,) = _U16.unpack_from(body)
            _current_request_id = body[2 : 2 + id_length].decode()
            event = body[2 + id_length :]
            try:
                if handler is None:
                    handler = _resolve(setup["handler"])
                result = handler(event, FCContext(context_fields, _current_request_id))
                response = _to_body(result)
            except Exception as error:
                _log_error(error)
                _write_frame(b"U", _error_body(error))
                continue
            _write_frame(b"O", response)
        elif kind == b"P":
            (id_length,) = _U16.unpack_from(body)
            _current_request_id = body[2 : 2 + id_length].decode()
            (head_length,) = _U32.unpack_from(body, 2 + id_length)
            head_start = 6 + id_length
            head = json.loads(body[head_start : head_start + head_length])
            request_body = body[head_start + head_length :]
            try:
                if handler is None:
                    handler = _resolve(setup["handler"])
                response = _call_wsgi(handler, head, request_body, FCContext(context_fields, _current_request_id))
            except _BadResponse as error:
                sys.stderr.write("bad response: %s\n" % error)
                response = _bad_response(str(error))
            except Exception as error:
                _log_error(error)
                _write_frame(b"U", _error_body(error))
                continue
            _write_frame(b"O", response)
        else:
            sys.stderr.write("runtime protocol error: unknown frame %r\n" % kind)
            sys.exit(70)


main()
