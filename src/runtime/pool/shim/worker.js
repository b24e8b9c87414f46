// chaintrigger function runtime: the Node.js side of one handler instance.
//
// Runs Function Compute handlers unchanged: `exports.handler = (event, context, callback)` with `event` as a
// Buffer (a handler returning a Promise works too), and an optional `exports.initializer = (context, callback)`.
// The runtime talks to this process over two dedicated pipes, never over stdout/stderr (those are the log):
//   fd 3 (read):  frames from the runtime
//   fd 4 (write): frames to the runtime
// A frame is a 4-byte big-endian length of what follows, then one kind byte, then the body:
//   runtime -> here: "S" setup (JSON), "N" initialize (request id), "I" invoke (u16 id length, id, event),
//                    "P" HTTP invoke (u16 id length, id, u32 head length, head JSON, request body)
//   here -> runtime: "R" ready (once, after the setup), "O" success (raw body; for "P" an HTTP answer: u32 head
//                    length, head JSON {status, headers: [[name, value]...]} or {error}, body), "H" handled error (JSON),
//                    "U" unhandled error (JSON),
//                    "X" unhandled error after which this process must not be reused (an uncaught exception)
// An exit of this process (process.exit, a crash) is seen by the runtime as the end of fd 4.
'use strict';

const fs = require('fs');
const Module = require('module');
const net = require('net');
const path = require('path');
const stream = require('stream');
const util = require('util');

const REQUEST_FD = 3;
const RESPONSE_FD = 4;

let currentRequestId = '';
let setup = null;
let handler = null;
// The invocation (or initialization) in progress: its `finish` wins once, later callbacks are ignored.
let active = null;

// console.log/debug/info/warn/error as `<ISO time> <request id> [level] message`, filtered by setLogLevel.
const LEVELS = { verbose: 0, debug: 1, info: 2, warn: 3, error: 4 };
let minimumLevel = LEVELS.verbose;
function logAt(level) {
  return (...args) => {
    if (LEVELS[level] < minimumLevel) {
      return;
    }
    const line = `${new Date().toISOString()} ${currentRequestId} [${level}] ${util.format(...args)}\n`;
    process.stdout.write(line);
  };
}
console.log = logAt('verbose');
console.debug = logAt('debug');
console.info = logAt('info');
console.warn = logAt('warn');
console.error = logAt('error');
console.setLogLevel = (level) => {
  const value = LEVELS[String(level).toLowerCase()];
  if (value === undefined) {
    throw new Error(`unknown log level '${level}': expected one of ${Object.keys(LEVELS).join(', ')}`);
  }
  minimumLevel = value;
};

function writeFrame(kind, body) {
  const frame = Buffer.alloc(5 + body.length);
  frame.writeUInt32BE(body.length + 1, 0);
  frame.write(kind, 4, 'latin1');
  body.copy(frame, 5);
  let written = 0;
  while (written < frame.length) {
    written += fs.writeSync(RESPONSE_FD, frame, written, frame.length - written);
  }
}

function errorBody(error) {
  if (error instanceof Error) {
    const stack = typeof error.stack === 'string' ? error.stack.split('\n') : [];
    return { errorMessage: error.message, errorType: error.name, stackTrace: stack };
  }
  if (typeof error === 'string') {
    return { errorMessage: error };
  }
  let message;
  try {
    message = JSON.stringify(error);
  } catch (_) {
    message = String(error);
  }
  return { errorMessage: message === undefined ? String(error) : message };
}

function jsonBuffer(value) {
  return Buffer.from(JSON.stringify(value), 'utf8');
}

// Buffer raw; string as UTF-8; undefined / null as an empty body; objects as JSON; anything else as String(x).
function toBody(result) {
  if (Buffer.isBuffer(result)) {
    return result;
  }
  if (result instanceof Uint8Array) {
    return Buffer.from(result);
  }
  if (result === undefined || result === null) {
    return Buffer.alloc(0);
  }
  if (typeof result === 'string') {
    return Buffer.from(result, 'utf8');
  }
  if (typeof result === 'object') {
    return jsonBuffer(result);
  }
  return Buffer.from(String(result), 'utf8');
}

function resolve(spec) {
  const dot = spec.lastIndexOf('.');
  if (dot <= 0 || dot === spec.length - 1) {
    throw new Error(`invalid handler '${spec}': expected module.function, e.g. index.handler`);
  }
  const modulePath = path.resolve(setup.codeDir, spec.slice(0, dot));
  const fn = require(modulePath)[spec.slice(dot + 1)];
  if (typeof fn !== 'function') {
    throw new Error(`'${spec.slice(dot + 1)}' is not a function exported by ${modulePath} (handler '${spec}')`);
  }
  return fn;
}

function makeContext(requestId) {
  const c = setup.context;
  return {
    requestId,
    credentials: { ...c.credentials },
    function: { ...c.function },
    service: { ...c.service },
    region: c.region,
    accountId: c.accountId,
  };
}

// Runs `fn` with a node-style callback appended to `args`; a returned Promise settles it too.
function run(fn, args) {
  let done = false;
  const finish = (kind, body) => {
    if (done) {
      return;
    }
    done = true;
    active = null;
    writeFrame(kind, body);
  };
  active = { finish };
  const callback = (error, result) => {
    if (error !== undefined && error !== null) {
      finish('H', jsonBuffer(errorBody(error)));
    } else {
      let body;
      try {
        body = toBody(result);
      } catch (conversion) {
        finish('U', jsonBuffer(errorBody(conversion)));
        return;
      }
      finish('O', body);
    }
  };
  let returned;
  try {
    returned = fn(...args, callback);
  } catch (error) {
    console.error(error);
    finish('U', jsonBuffer(errorBody(error)));
    return;
  }
  if (returned && typeof returned.then === 'function') {
    returned.then(
      (result) => callback(null, result),
      (error) => {
        console.error(error);
        finish('U', jsonBuffer(errorBody(error)));
      },
    );
  }
}

// ---- HTTP triggers: handler(request, response, context), as the user guide describes.

// The largest response body Function Compute sends (6 MB); a larger one is a bad response.
const MAX_HTTP_BODY = 6 * 1024 * 1024;

function httpAnswer(head, body) {
  const headBuffer = jsonBuffer(head);
  const out = Buffer.alloc(4 + headBuffer.length + body.length);
  out.writeUInt32BE(headBuffer.length, 0);
  headBuffer.copy(out, 4);
  body.copy(out, 4 + headBuffer.length);
  return out;
}

function badResponse(message) {
  return httpAnswer({ error: message }, Buffer.alloc(0));
}

// The request: a readable stream of the body (for raw-body and friends) with the guide's fields.
function makeRequest(head, body) {
  const request = new stream.Readable({ read() {} });
  if (body.length > 0) {
    request.push(body);
  }
  request.push(null);
  request.headers = head.headers;
  request.path = head.path;
  request.queries = head.queries;
  // The guide's own example reads `request.query`.
  request.query = head.queries;
  request.method = head.method;
  request.clientIP = head.clientIP;
  request.url = head.url;
  return request;
}

class HttpResponse {
  constructor(finish) {
    this._finish = finish;
    this._status = 200;
    this._headers = new Map();
    this._sent = false;
  }

  setStatusCode(statusCode) {
    this._status = statusCode;
  }

  setHeader(headerKey, headerValue) {
    this._headers.set(String(headerKey).toLowerCase(), [String(headerKey), headerValue]);
  }

  deleteHeader(headerKey) {
    this._headers.delete(String(headerKey).toLowerCase());
  }

  send(body) {
    if (this._sent) {
      return;
    }
    this._sent = true;
    if (body !== null && typeof body === 'object' && typeof body.pipe === 'function' && typeof body.on === 'function') {
      const chunks = [];
      let size = 0;
      body.on('data', (chunk) => {
        const piece = Buffer.isBuffer(chunk) ? chunk : Buffer.from(String(chunk), 'utf8');
        size += piece.length;
        if (size <= MAX_HTTP_BODY) {
          chunks.push(piece);
        }
      });
      body.on('end', () => this._complete(size > MAX_HTTP_BODY ? size : Buffer.concat(chunks)));
      body.on('error', (error) => {
        console.error(error);
        this._finish('U', jsonBuffer(errorBody(error)));
      });
      return;
    }
    let buffer;
    if (Buffer.isBuffer(body)) {
      buffer = body;
    } else if (body instanceof Uint8Array) {
      buffer = Buffer.from(body);
    } else if (typeof body === 'string') {
      buffer = Buffer.from(body, 'utf8');
    } else if (body === undefined || body === null) {
      buffer = Buffer.alloc(0);
    } else {
      this._finish('O', badResponse(
        `response.send(body): the body is a ${typeof body}: expected a Buffer, a string or a stream.Readable`));
      return;
    }
    this._complete(buffer);
  }

  // `body` is the whole body, or its size when it was too large to keep.
  _complete(body) {
    const size = typeof body === 'number' ? body : body.length;
    if (size > MAX_HTTP_BODY) {
      this._finish('O', badResponse(
        `the function's response body is ${size} bytes, more than the ${MAX_HTTP_BODY} bytes allowed`));
      return;
    }
    const headers = [];
    for (const [name, value] of this._headers.values()) {
      if (Array.isArray(value)) {
        for (const item of value) {
          headers.push([name, typeof item === 'number' ? item : String(item)]);
        }
      } else {
        headers.push([name, typeof value === 'number' ? value : String(value)]);
      }
    }
    const status = typeof this._status === 'number' && Number.isFinite(this._status) ? this._status : String(this._status);
    this._finish('O', httpAnswer({ status, headers }, body));
  }
}

function runHttp(head, body) {
  let done = false;
  const finish = (kind, frameBody) => {
    if (done) {
      return;
    }
    done = true;
    active = null;
    requests.ref();
    writeFrame(kind, frameBody);
  };
  active = { finish, http: true };
  // Nothing but the handler's own work keeps the process busy meanwhile: when that ends without a `send`, the
  // event loop empties and `beforeExit` answers for it.
  requests.unref();
  let returned;
  try {
    returned = handler(makeRequest(head, body), new HttpResponse(finish), makeContext(currentRequestId));
  } catch (error) {
    console.error(error);
    finish('U', jsonBuffer(errorBody(error)));
    return;
  }
  if (returned && typeof returned.then === 'function') {
    returned.then(
      () => {},
      (error) => {
        console.error(error);
        finish('U', jsonBuffer(errorBody(error)));
      },
    );
  }
}

process.on('beforeExit', () => {
  if (active !== null && active.http) {
    active.finish('O', badResponse(
      'the function finished without calling response.send(): nothing was left for it to do'));
  }
});

// Function Compute's Node.js runtimes bundle raw-body (the guide's HTTP examples require it): a compatible
// module for code that does not bring its own (its node_modules win).
function parseLimit(limit) {
  if (limit === undefined || limit === null) {
    return null;
  }
  if (typeof limit === 'number') {
    return limit;
  }
  const match = /^\s*(\d+(?:\.\d+)?)\s*(b|kb|mb|gb)?\s*$/i.exec(String(limit));
  if (!match) {
    throw new TypeError(`raw-body: invalid limit '${limit}'`);
  }
  const unit = { b: 1, kb: 1024, mb: 1024 * 1024, gb: 1024 * 1024 * 1024 }[(match[2] || 'b').toLowerCase()];
  return Math.floor(Number(match[1]) * unit);
}

function createError(status, type, message, extra) {
  const error = new Error(message);
  error.status = status;
  error.statusCode = status;
  error.expose = status < 500;
  error.type = type;
  return Object.assign(error, extra);
}

function getRawBody(source, options, callback) {
  let done = callback;
  let opts = options;
  if (typeof opts === 'function') {
    done = opts;
    opts = {};
  }
  if (opts === undefined || opts === null) {
    opts = {};
  } else if (opts === true || typeof opts === 'string') {
    opts = { encoding: opts };
  }
  const encoding = opts.encoding === true ? 'utf-8' : opts.encoding;
  const limit = parseLimit(opts.limit);
  const length = opts.length !== undefined && opts.length !== null && !Number.isNaN(Number(opts.length))
    ? Number(opts.length) : null;
  let settle;
  let promise;
  if (typeof done === 'function') {
    settle = done;
  } else {
    promise = new Promise((resolve, reject) => {
      settle = (error, value) => (error ? reject(error) : resolve(value));
    });
  }
  const chunks = [];
  let received = 0;
  let finished = false;
  const cleanup = () => {
    source.removeListener('data', onData);
    source.removeListener('end', onEnd);
    source.removeListener('error', onError);
  };
  const finish = (error, value) => {
    if (finished) {
      return;
    }
    finished = true;
    cleanup();
    settle(error, value);
  };
  function onData(chunk) {
    received += chunk.length;
    if (limit !== null && received > limit) {
      finish(createError(413, 'entity.too.large', 'request entity too large', { limit, received }));
    } else {
      chunks.push(Buffer.isBuffer(chunk) ? chunk : Buffer.from(chunk));
    }
  }
  function onEnd() {
    if (length !== null && received !== length) {
      finish(createError(400, 'request.size.invalid', 'request size did not match content length',
        { expected: length, length, received }));
      return;
    }
    const buffer = Buffer.concat(chunks);
    finish(null, encoding ? buffer.toString(encoding) : buffer);
  }
  function onError(error) {
    finish(error);
  }
  if (limit !== null && length !== null && length > limit) {
    process.nextTick(() => finish(createError(413, 'entity.too.large', 'request entity too large',
      { expected: length, length, limit })));
  } else {
    source.on('data', onData);
    source.on('end', onEnd);
    source.on('error', onError);
  }
  return promise;
}

const BUNDLED_MODULES = { 'raw-body': getRawBody };
const resolveFilename = Module._resolveFilename;
Module._resolveFilename = function resolveBundled(request, ...rest) {
  try {
    return resolveFilename.call(this, request, ...rest);
  } catch (error) {
    if (!Object.prototype.hasOwnProperty.call(BUNDLED_MODULES, request)) {
      throw error;
    }
    const id = path.join(__dirname, 'node_modules', request, 'index.js');
    if (Module._cache[id] === undefined) {
      const bundled = new Module(id, null);
      bundled.filename = id;
      bundled.loaded = true;
      bundled.exports = BUNDLED_MODULES[request];
      Module._cache[id] = bundled;
    }
    return id;
  }
};

// Resolves the handler once; a handler that cannot be loaded answers the invocation as an unhandled error.
function loadHandler() {
  if (handler !== null) {
    return true;
  }
  try {
    handler = resolve(setup.handler);
    return true;
  } catch (error) {
    console.error(error);
    writeFrame('U', jsonBuffer(errorBody(error)));
    return false;
  }
}

function onFrame(kind, body) {
  if (kind === 'S') {
    setup = JSON.parse(body.toString('utf8'));
    writeFrame('R', Buffer.alloc(0));
    return;
  }
  if (kind === 'N') {
    currentRequestId = body.toString('utf8');
    let initializer;
    try {
      initializer = resolve(setup.initializer);
    } catch (error) {
      console.error(error);
      writeFrame('U', jsonBuffer(errorBody(error)));
      return;
    }
    run(initializer, [makeContext(currentRequestId)]);
    return;
  }
  if (kind === 'I') {
    const idLength = body.readUInt16BE(0);
    currentRequestId = body.toString('utf8', 2, 2 + idLength);
    const event = body.subarray(2 + idLength);
    if (loadHandler()) {
      run(handler, [event, makeContext(currentRequestId)]);
    }
    return;
  }
  if (kind === 'P') {
    const idLength = body.readUInt16BE(0);
    currentRequestId = body.toString('utf8', 2, 2 + idLength);
    const headLength = body.readUInt32BE(2 + idLength);
    const headStart = 6 + idLength;
    const head = JSON.parse(body.toString('utf8', headStart, headStart + headLength));
    if (loadHandler()) {
      runHttp(head, body.subarray(headStart + headLength));
    }
    return;
  }
  process.stderr.write(`runtime protocol error: unknown frame '${kind}'\n`);
  process.exit(70);
}

process.on('uncaughtException', (error) => {
  console.error(error);
  if (active !== null) {
    const { finish } = active;
    finish('X', jsonBuffer(errorBody(error)));
  } else {
    process.exit(1);
  }
});

let pending = Buffer.alloc(0);
const requests = new net.Socket({ fd: REQUEST_FD, readable: true, writable: false });
requests.on('data', (chunk) => {
  pending = pending.length === 0 ? chunk : Buffer.concat([pending, chunk]);
  while (pending.length >= 4) {
    const length = pending.readUInt32BE(0);
    if (pending.length < 4 + length) {
      break;
    }
    const kind = pending.toString('latin1', 4, 5);
    const body = pending.subarray(5, 4 + length);
    pending = pending.subarray(4 + length);
    onFrame(kind, body);
  }
});
requests.on('end', () => process.exit(0));
