// chaintrigger function runtime: the Node.js side of one handler instance.
//
// Runs Function Compute handlers unchanged: `exports.handler = (event, context, callback)` with `event` as a
// Buffer (a handler returning a Promise works too), and an optional `exports.initializer = (context, callback)`.
// The runtime talks to this process over two dedicated pipes, never over stdout/stderr (those are the log):
//   fd 3 (read):  frames from the runtime
//   fd 4 (write): frames to the runtime
// A frame is a 4-byte big-endian length of what follows, then one kind byte, then the body:
//   runtime -> here: "S" setup (JSON), "N" initialize (request id), "I" invoke (u16 id length, id, event)
//   here -> runtime: "R" ready (once, after the setup), "O" success (raw body), "H" handled error (JSON),
//                    "U" unhandled error (JSON),
//                    "X" unhandled error after which this process must not be reused (an uncaught exception)
// An exit of this process (process.exit, a crash) is seen by the runtime as the end of fd 4.
'use strict';

const fs = require('fs');
const net = require('net');
const path = require('path');
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
    if (handler === null) {
      try {
        handler = resolve(setup.handler);
      } catch (error) {
        console.error(error);
        writeFrame('U', jsonBuffer(errorBody(error)));
        return;
      }
    }
    run(handler, [event, makeContext(currentRequestId)]);
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
