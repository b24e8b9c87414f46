//! HTTP triggers in the bundled runtime: `/2016-08-15/proxy/{service}[.{qualifier}]/{function}/{path}` answered
//! by real node and python3 handlers. The user guide's Node.js example runs unchanged behind an anonymous trigger
//! called with a plain HTTP client; Python runs as WSGI (checked by `wsgiref.validate`); `function` triggers need
//! a valid signature; hostile requests (oversized bodies, headers and queries, `..` paths, forged or missing
//! signatures, wrong methods) never reach a handler; handlers that answer wrongly get 502 and fail alone.

use std::time::{Duration, SystemTime};

use chaintrigger::fcsign::{self, SignedParts};
use serde_json::{Value, json};

use crate::runtime_versions::sdk_script;
use crate::support::runtime::{KEY_ID, KEY_SECRET, Reply, TestRuntime, marks, test_dir};

const GUIDE_NODE: &str = include_str!("../../fixtures/functions/http/guide_node.js");
const GUIDE_PYTHON: &str = include_str!("../../fixtures/functions/http/wsgi_python.py");

/// A Node.js handler whose behaviour is chosen by the request's path.
const NODE_BEHAVIOURS: &str = r#"
const stream = require('stream');
const getRawBody = require('raw-body');
let calls = 0;
exports.handler = (request, response, context) => {
  calls += 1;
  process.stdout.write('MARK ' + request.method + ' ' + request.path + '\n');
  switch (request.path) {
    case '/echo': {
      const chunks = [];
      request.on('data', (chunk) => chunks.push(chunk));
      request.on('end', () => {
        response.setStatusCode(201);
        response.setHeader('content-type', 'application/json');
        response.setHeader('x-removed', 'soon');
        response.deleteHeader('X-Removed');
        response.setHeader('set-cookie', ['a=1', 'b=2']);
        response.setHeader('server', 'mine');
        response.setHeader('x-fc-request-id', 'forged');
        response.setHeader('content-length', '999');
        response.setHeader('date', 'yesterday');
        response.setHeader('content-encoding', 'gzip');
        response.send(JSON.stringify({
          headers: request.headers, queries: request.queries, query: request.query, method: request.method,
          path: request.path, url: request.url, clientIP: request.clientIP, body: Buffer.concat(chunks).toString(),
          calls, requestId: context.requestId, functionName: context.function.name,
        }));
      });
      return;
    }
    case '/stream': {
      const body = new stream.Readable({ read() {} });
      body.push('part one, ');
      body.push('part two');
      body.push(null);
      response.send(body);
      return;
    }
    case '/async':
      return (async () => {
        const text = await getRawBody(request, { encoding: 'utf8', limit: '1mb' });
        response.setHeader('content-type', 'text/plain');
        response.send('async ' + text);
      })();
    case '/limited':
      getRawBody(request, { limit: 4 }, (error, body) => {
        response.setStatusCode(error.status);
        response.send(error.type + ' ' + String(body));
      });
      return;
    case '/forgets':
      return;
    case '/bad-status':
      response.setStatusCode(99);
      response.send('x');
      return;
    case '/text-status':
      response.setStatusCode('abc');
      response.send('x');
      return;
    case '/huge':
      response.send(Buffer.alloc(6 * 1024 * 1024 + 1, 120));
      return;
    case '/huge-stream': {
      const body = new stream.Readable({ read() {} });
      for (let i = 0; i < 7; i += 1) {
        body.push(Buffer.alloc(1024 * 1024, 121));
      }
      body.push(null);
      response.send(body);
      return;
    }
    case '/huge-headers':
      response.setHeader('x-big', 'v'.repeat(5000));
      response.send('x');
      return;
    case '/bad-header':
      response.setHeader('x-bad', 'a\nb');
      response.send('x');
      return;
    case '/object':
      response.send({ a: 1 });
      return;
    case '/throws':
      throw new Error('handler broke');
    case '/rejects':
      return Promise.reject(new Error('async broke'));
    case '/exits':
      process.exit(3);
      return;
    case '/hangs':
      setInterval(() => {}, 1000);
      return;
    case '/late-throw':
      setTimeout(() => { throw new Error('late failure'); }, 10);
      return;
    default:
      response.send('fine ' + request.path + ' ' + calls);
  }
};
"#;

/// A Python WSGI handler whose behaviour is chosen by the request's path; `/echo` runs under
/// `wsgiref.validate.validator`, which asserts the environ and the calls follow PEP 3333.
const PYTHON_BEHAVIOURS: &str = r#"
import json
import sys
from wsgiref.validate import validator


def echo(environ, start_response):
    length = int(environ.get("CONTENT_LENGTH") or 0)
    body = environ["wsgi.input"].read(length)
    text = {k: v for k, v in environ.items() if isinstance(v, str)}
    context = environ["fc.context"]
    out = json.dumps({
        "environ": text, "body": body.decode(), "requestId": context.request_id,
        "functionName": context.function.name, "input": type(environ["wsgi.input"]).__name__,
        "multithread": environ["wsgi.multithread"], "version": list(environ["wsgi.version"]),
    }).encode()
    start_response("200 OK", [("Content-Type", "application/json"), ("Set-Cookie", "a=1"),
                              ("Set-Cookie", "b=2"), ("Server", "mine")])
    return [out]


validated_echo = validator(echo)


def handler(environ, start_response):
    path = environ["PATH_INFO"]
    print("MARK %s %s" % (environ["REQUEST_METHOD"], path))
    if path == "/echo":
        return validated_echo(environ, start_response)
    if path == "/generator":
        def lazy():
            start_response("202 Accepted", [("Content-Type", "text/plain")])
            yield b"lazy "
            yield b"body"
        return lazy()
    if path == "/write":
        write = start_response("200 OK", [])
        write(b"written ")
        return [b"returned"]
    if path == "/no-start":
        return []
    if path == "/bad-status":
        start_response("abc", [])
        return [b"x"]
    if path == "/str-body":
        start_response("200 OK", [])
        return ["text"]
    if path == "/huge":
        start_response("200 OK", [])
        return [b"x" * (6 * 1024 * 1024 + 1)]
    if path == "/raises":
        raise ValueError("wsgi broke")
    if path == "/exits":
        sys.exit(4)
    start_response("200 OK", [("Content-Type", "text/plain")])
    return [("fine " + path).encode()]
"#;

/// A signed runtime (so `function` triggers can be told apart from `anonymous` ones).
async fn start(prefix: &str) -> (tempfile::TempDir, TestRuntime) {
    let dir = test_dir(prefix);
    let rt = TestRuntime::start(&dir.path().join("data"), TestRuntime::signed).await;
    (dir, rt)
}

/// Creates the service (when missing), the function and its HTTP trigger.
async fn http_function(
    rt: &TestRuntime,
    service: &str,
    function: &str,
    runtime: &str,
    code: &str,
    config: Value,
    extra: Value,
) {
    if rt
        .json(
            "GET",
            &format!("/2016-08-15/services/{service}"),
            Value::Null,
        )
        .await
        .status
        == 404
    {
        rt.create_service(service).await;
    }
    let file = if runtime.starts_with("nodejs") {
        "index.js"
    } else {
        "index.py"
    };
    rt.create_function(service, function, runtime, &[(file, code)], extra)
        .await;
    let reply = rt
        .json(
            "POST",
            &format!("/2016-08-15/services/{service}/functions/{function}/triggers"),
            json!({"triggerName": "web", "triggerType": "http", "triggerConfig": config}),
        )
        .await;
    assert_eq!(reply.status, 200, "{}", reply.text());
}

/// A plain, unsigned request (as curl would send it).
async fn plain(
    rt: &TestRuntime,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: Vec<u8>,
) -> Reply {
    let mut request = reqwest::Client::new()
        .request(method.parse().expect("method"), format!("{}{path}", rt.url))
        .body(body);
    for (name, value) in headers {
        request = request.header(*name, *value);
    }
    let response = request.send().await.expect("the runtime answers");
    Reply {
        status: response.status().as_u16(),
        headers: response.headers().clone(),
        body: response.bytes().await.expect("a body"),
    }
}

/// A plain request without headers of its own.
async fn call(rt: &TestRuntime, method: &str, path: &str, body: &str) -> Reply {
    plain(rt, method, path, &[], body.as_bytes().to_vec()).await
}

/// A request signed as the SDKs sign HTTP-trigger calls (the queries are signed too), with `secret`.
async fn signed(
    rt: &TestRuntime,
    method: &str,
    path: &str,
    queries: &[(&str, &str)],
    secret: &str,
    date: SystemTime,
) -> Reply {
    let date = httpdate::fmt_http_date(date);
    let headers = [("date", date.as_str()), ("content-type", "text/plain")];
    let query_refs: Vec<(&str, Option<&str>)> =
        queries.iter().map(|(k, v)| (*k, Some(*v))).collect();
    let authorization = fcsign::authorization(
        KEY_ID,
        secret,
        &SignedParts {
            method,
            headers: &headers,
            path,
            queries: &query_refs,
        },
    );
    let query: Vec<String> = queries.iter().map(|(k, v)| format!("{k}={v}")).collect();
    let url = if query.is_empty() {
        path.to_owned()
    } else {
        format!("{path}?{}", query.join("&"))
    };
    let mut all = headers.to_vec();
    all.push(("authorization", authorization.as_str()));
    plain(rt, method, &url, &all, b"signed body".to_vec()).await
}

/// A request written on the socket as given: HTTP clients normalize `..` away, an attacker does not.
async fn raw_request(rt: &TestRuntime, request_line_path: &str) -> (u16, String) {
    use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
    let address = rt.url.trim_start_matches("http://");
    let mut stream = tokio::net::TcpStream::connect(address)
        .await
        .expect("connect");
    let request =
        format!("GET {request_line_path} HTTP/1.1\r\nHost: {address}\r\nConnection: close\r\n\r\n");
    stream
        .write_all(request.as_bytes())
        .await
        .expect("write the request");
    let mut answer = Vec::new();
    tokio::time::timeout(Duration::from_secs(30), stream.read_to_end(&mut answer))
        .await
        .expect("the runtime answers and closes")
        .expect("read the answer");
    let answer = String::from_utf8_lossy(&answer).into_owned();
    let status = answer
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .expect("a status line");
    (status, answer)
}

/// Sends each `(method, path, body)` to `{base}{path}` and checks its status and text.
async fn assert_answers(rt: &TestRuntime, base: &str, cases: &[(&str, &str, &str, u16, &str)]) {
    for (method, path, body, status, text) in cases {
        let reply = call(rt, method, &format!("{base}{path}"), body).await;
        assert_eq!(
            (reply.status, reply.text().as_str()),
            (*status, *text),
            "{method} {path}"
        );
    }
}

/// How a request to a handler that answers wrongly fails.
enum Failure {
    /// 502 `BadResponse`: the answer cannot be sent.
    BadResponse,
    /// 502 with the invocation's error body: the handler failed.
    Function,
}

/// `GET {base}{path}` fails as `failure`, its message saying `says`, for each case; and the request after it
/// (`{base}/fine`) is answered: a failing request fails alone.
async fn assert_each_fails_alone(
    rt: &TestRuntime,
    base: &str,
    failure: Failure,
    cases: &[(&str, &str)],
) {
    for (path, says) in cases {
        let reply = call(rt, "GET", &format!("{base}{path}"), "").await;
        match failure {
            Failure::BadResponse => assert_bad_response(&reply, says),
            Failure::Function => {
                assert_eq!(reply.status, 502, "{path}: {}", reply.text());
                assert_eq!(
                    reply.header("x-fc-error-type"),
                    Some("UnhandledInvocationError"),
                    "{path}"
                );
                let message = reply.json()["errorMessage"].as_str().map(str::to_owned);
                assert!(
                    message.as_deref().unwrap_or_default().contains(says),
                    "{path}: {}",
                    reply.text()
                );
            }
        }
        let fine = call(rt, "GET", &format!("{base}/fine"), "").await;
        assert_eq!(fine.status, 200, "after {path}: {}", fine.text());
    }
}

fn assert_bad_response(reply: &Reply, says: &str) {
    let message = reply.assert_error(502, "BadResponse");
    assert!(message.contains(says), "{message}");
    assert_eq!(
        reply.header("x-fc-error-type"),
        Some("UnhandledInvocationError")
    );
}

fn assert_common_error(reply: &Reply, status: u16, code: &str) -> String {
    let message = reply.assert_error(status, code);
    assert_eq!(reply.header("x-fc-error-type"), Some("FcCommonError"));
    message
}

/// The user guide's example (Example 1, the console's code) unchanged, with its `curl -d "this is body"` request:
/// the answer lists the headers, the url, the path, the queries, the method, the client's address and the body.
#[tokio::test]
async fn the_guides_node_example_runs_unchanged_behind_an_anonymous_trigger() {
    let (_dir, rt) = start("rt-http-guide-").await;
    http_function(
        &rt,
        "http_trigger_service",
        "test_http_trigger_node",
        "nodejs8",
        GUIDE_NODE,
        json!({"authType": "anonymous", "methods": ["GET", "POST"]}),
        json!({"handler": "index.handler"}),
    )
    .await;
    let path = "/2016-08-15/proxy/http_trigger_service/test_http_trigger_node/action?lang=python&hello=world";
    let reply = plain(
        &rt,
        "POST",
        path,
        &[
            ("content-type", "application/x-www-form-urlencoded"),
            ("user-agent", "curl/7.58.0"),
            ("accept", "*/*"),
        ],
        b"this is body".to_vec(),
    )
    .await;
    assert_eq!(reply.status, 200, "{}", reply.text());
    assert_eq!(reply.header("content-type"), Some("application/json"));
    assert!(reply.header("x-fc-request-id").is_some());
    assert!(reply.header("x-fc-code-checksum").is_some());
    assert_eq!(reply.header("x-fc-error-type"), None);
    let text = reply.text();
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines.len(), 7, "{text}");
    for header in [
        "content-type:application/x-www-form-urlencoded ",
        "user-agent:curl/7.58.0 ",
        "accept:*/* ",
        "content-length:12 ",
    ] {
        assert!(lines[0].contains(header), "{header} in {}", lines[0]);
    }
    assert!(lines[0].starts_with("requestHeader:"), "{text}");
    assert_eq!(lines[1], format!("url: {path}"));
    assert_eq!(lines[2], "path: /action");
    assert_eq!(lines[3], "queries: lang=python hello=world ");
    assert_eq!(lines[4], "method: POST");
    assert_eq!(lines[5], "clientIP: 127.0.0.1");
    assert_eq!(lines[6], "body: this is body");

    // GET is allowed too (an empty body), PUT is not: 403, and the handler never runs for it.
    let get = call(
        &rt,
        "GET",
        "/2016-08-15/proxy/http_trigger_service/test_http_trigger_node/",
        "",
    )
    .await;
    assert_eq!(get.status, 200, "{}", get.text());
    assert!(get.text().contains("path: /\n"), "{}", get.text());
    assert!(get.text().contains("method: GET\n"), "{}", get.text());
    let put = call(
        &rt,
        "PUT",
        "/2016-08-15/proxy/http_trigger_service/test_http_trigger_node/action",
        "x",
    )
    .await;
    let message = assert_common_error(&put, 403, "AccessDenied");
    assert!(
        message.contains("PUT") && message.contains("GET, POST"),
        "{message}"
    );
    rt.stop().await;
}

/// A Python handler in the WSGI form Function Compute documents for its Python runtimes.
#[tokio::test]
async fn a_documented_python_wsgi_handler_answers() {
    let (_dir, rt) = start("rt-http-wsgi-guide-").await;
    http_function(
        &rt,
        "svc",
        "py",
        "python3.10",
        GUIDE_PYTHON,
        json!({"authType": "anonymous", "methods": ["GET", "POST", "PUT", "DELETE", "HEAD"]}),
        json!({}),
    )
    .await;
    let reply = plain(
        &rt,
        "POST",
        "/2016-08-15/proxy/svc/py/some/where?x=1",
        &[("content-type", "text/plain")],
        b"hello wsgi".to_vec(),
    )
    .await;
    assert_eq!(reply.status, 200, "{}", reply.text());
    assert_eq!(reply.header("content-type"), Some("text/plain"));
    assert_eq!(reply.text(), "Hello world!\n");
    let log =
        std::fs::read_to_string(rt.runtime.log_path("svc", "py")).expect("the function's log");
    assert!(log.contains("request_body: b'hello wsgi'"), "{log}");
    assert!(
        log.contains("method: POST\n path: /some/where\n  query_string: x=1"),
        "{log}"
    );
    // HEAD answers the headers without the body.
    let head = call(&rt, "HEAD", "/2016-08-15/proxy/svc/py/", "").await;
    assert_eq!(head.status, 200);
    assert!(head.body.is_empty());
    rt.stop().await;
}

/// The request a Node.js handler sees and the response it makes, field by field: the ignored headers never
/// pass either way, repeated queries are lists, a stream body is sent whole, raw-body works in both its forms,
/// and the instance stays warm between requests.
#[tokio::test]
async fn a_node_handler_gets_the_guides_request_and_response() {
    let (_dir, rt) = start("rt-http-node-").await;
    http_function(
        &rt,
        "svc",
        "node",
        "nodejs20",
        NODE_BEHAVIOURS,
        json!({"authType": "anonymous", "methods": ["GET", "POST", "PUT"]}),
        json!({}),
    )
    .await;
    let reply = plain(
        &rt,
        "PUT",
        "/2016-08-15/proxy/svc/node/echo?a=1&a=2&b=x%20y",
        &[
            ("x-custom", "kept"),
            ("x-fc-custom", "dropped"),
            ("accept-encoding", "gzip"),
            ("content-type", "text/plain"),
        ],
        b"the body".to_vec(),
    )
    .await;
    assert_eq!(reply.status, 201, "{}", reply.text());
    assert_eq!(reply.header("content-type"), Some("application/json"));
    let cookies: Vec<&str> = reply
        .headers
        .get_all("set-cookie")
        .iter()
        .map(|v| v.to_str().unwrap())
        .collect();
    assert_eq!(cookies, ["a=1", "b=2"]);
    assert_eq!(reply.header("x-removed"), None);
    assert_ne!(reply.header("server"), Some("mine"));
    assert_ne!(reply.header("x-fc-request-id"), Some("forged"));
    assert_ne!(reply.header("date"), Some("yesterday"));
    assert_eq!(reply.header("content-encoding"), None);
    assert_eq!(
        reply.header("content-length"),
        Some(reply.body.len().to_string().as_str())
    );
    let seen = reply.json();
    assert_eq!(seen["method"], "PUT");
    assert_eq!(seen["path"], "/echo");
    assert_eq!(
        seen["url"],
        "/2016-08-15/proxy/svc/node/echo?a=1&a=2&b=x%20y"
    );
    assert_eq!(seen["queries"], json!({"a": ["1", "2"], "b": "x y"}));
    assert_eq!(seen["query"], seen["queries"]);
    assert_eq!(seen["clientIP"], "127.0.0.1");
    assert_eq!(seen["body"], "the body");
    assert_eq!(seen["functionName"], "node");
    assert_eq!(seen["requestId"], reply.header("x-fc-request-id").unwrap());
    let headers = seen["headers"].as_object().expect("headers");
    assert_eq!(headers["x-custom"], "kept");
    assert_eq!(headers["content-type"], "text/plain");
    assert_eq!(headers["content-length"], "8");
    for ignored in ["x-fc-custom", "accept-encoding", "connection"] {
        assert!(
            !headers.contains_key(ignored),
            "{ignored} reached the handler: {headers:?}"
        );
    }
    assert_eq!(seen["calls"], 1);

    // The same warm instance serves every request (`fine` says how many calls it had).
    assert_answers(
        &rt,
        "/2016-08-15/proxy/svc/node",
        &[
            ("GET", "/stream", "", 200, "part one, part two"),
            ("POST", "/async", "awaited", 200, "async awaited"),
            (
                "POST",
                "/limited",
                "too long",
                413,
                "entity.too.large undefined",
            ),
            ("GET", "/fine", "", 200, "fine /fine 5"),
        ],
    )
    .await;
    rt.stop().await;
}

/// Every way a Node.js handler can answer wrongly: 502 `BadResponse` (or 502 `UnhandledInvocationError` with
/// the error body for a failure), each request failing alone: the next one is answered.
#[tokio::test]
async fn node_handlers_that_answer_wrongly_get_502_and_fail_alone() {
    let (_dir, rt) = start("rt-http-node-bad-").await;
    http_function(
        &rt,
        "svc",
        "node",
        "nodejs20",
        NODE_BEHAVIOURS,
        json!({"authType": "anonymous", "methods": ["GET"]}),
        json!({"timeout": 2}),
    )
    .await;
    let base = "/2016-08-15/proxy/svc/node";
    let bad = [
        ("/forgets", "without calling response.send()"),
        ("/bad-status", "status code 99"),
        ("/text-status", "status code \"abc\""),
        ("/huge", "6291457 bytes"),
        ("/huge-stream", "7340032 bytes"),
        ("/huge-headers", "response headers"),
        ("/bad-header", "invalid value"),
        ("/object", "the body is a object"),
    ];
    assert_each_fails_alone(&rt, base, Failure::BadResponse, &bad).await;
    let failing = [
        ("/throws", "handler broke"),
        ("/rejects", "async broke"),
        ("/exits", "Process exited unexpectedly"),
        ("/hangs", "Function timed out after 2 seconds"),
        ("/late-throw", "late failure"),
    ];
    assert_each_fails_alone(&rt, base, Failure::Function, &failing).await;
    rt.stop().await;
}

/// The environ a WSGI handler gets (checked by `wsgiref.validate` too), its answers, and every way it can
/// answer wrongly.
#[tokio::test]
async fn python_wsgi_handlers_get_a_correct_environ_and_wrong_answers_get_502() {
    let (_dir, rt) = start("rt-http-wsgi-").await;
    http_function(
        &rt,
        "svc",
        "py",
        "python3",
        PYTHON_BEHAVIOURS,
        json!({"authType": "anonymous", "methods": ["GET", "POST"]}),
        json!({}),
    )
    .await;
    let reply = plain(
        &rt,
        "POST",
        "/2016-08-15/proxy/svc/py/echo?a=1&b=%C3%A9",
        &[
            ("content-type", "application/json"),
            ("x-custom-header", "kept"),
            ("x-fc-secret", "dropped"),
        ],
        br#"{"k": "v"}"#.to_vec(),
    )
    .await;
    assert_eq!(reply.status, 200, "{}", reply.text());
    let cookies: Vec<&str> = reply
        .headers
        .get_all("set-cookie")
        .iter()
        .map(|v| v.to_str().unwrap())
        .collect();
    assert_eq!(cookies, ["a=1", "b=2"]);
    assert_ne!(reply.header("server"), Some("mine"));
    let seen = reply.json();
    let environ = &seen["environ"];
    assert_eq!(environ["REQUEST_METHOD"], "POST");
    assert_eq!(environ["PATH_INFO"], "/echo");
    assert_eq!(environ["SCRIPT_NAME"], "");
    assert_eq!(environ["QUERY_STRING"], "a=1&b=%C3%A9");
    assert_eq!(environ["CONTENT_TYPE"], "application/json");
    assert_eq!(environ["CONTENT_LENGTH"], "10");
    assert_eq!(environ["HTTP_X_CUSTOM_HEADER"], "kept");
    assert_eq!(environ["REMOTE_ADDR"], "127.0.0.1");
    assert_eq!(environ["SERVER_PROTOCOL"], "HTTP/1.1");
    assert_eq!(environ["SERVER_NAME"], "127.0.0.1");
    assert_eq!(
        environ["SERVER_PORT"],
        rt.url.rsplit(':').next().expect("a port")
    );
    assert_eq!(environ["wsgi.url_scheme"], "http");
    assert_eq!(
        environ["fc.request_uri"],
        "/2016-08-15/proxy/svc/py/echo?a=1&b=%C3%A9"
    );
    assert!(environ.get("HTTP_X_FC_SECRET").is_none(), "{environ}");
    assert!(environ.get("HTTP_CONTENT_TYPE").is_none(), "{environ}");
    assert_eq!(seen["body"], r#"{"k": "v"}"#);
    assert_eq!(seen["functionName"], "py");
    assert_eq!(seen["requestId"], reply.header("x-fc-request-id").unwrap());
    assert_eq!(seen["version"], json!([1, 0]));
    assert_eq!(seen["multithread"], false);

    // A path that is not ASCII reaches PATH_INFO as WSGI wants it: the UTF-8 bytes read as Latin-1.
    let base = "/2016-08-15/proxy/svc/py";
    assert_answers(
        &rt,
        base,
        &[
            // A path that is not ASCII reaches PATH_INFO as WSGI wants it: the UTF-8 bytes read as Latin-1.
            ("GET", "/caf%C3%A9", "", 200, "fine /caf\u{c3}\u{a9}"),
            ("GET", "/generator", "", 202, "lazy body"),
            ("GET", "/write", "", 200, "written returned"),
        ],
    )
    .await;
    let bad = [
        ("/no-start", "without calling start_response()"),
        ("/bad-status", "3-digit code"),
        ("/str-body", "WSGI bodies are bytes"),
        ("/huge", "6291457 bytes"),
    ];
    assert_each_fails_alone(&rt, base, Failure::BadResponse, &bad).await;
    let failing = [
        ("/raises", "wsgi broke"),
        ("/exits", "Process exited unexpectedly"),
    ];
    assert_each_fails_alone(&rt, base, Failure::Function, &failing).await;
    rt.stop().await;
}

/// A `function` trigger takes only requests signed with the runtime's key (queries included), with a fresh
/// Date: missing headers are 400 (the guide's table), a forged, tampered or stale signature 403; the handler
/// runs only for the good one.
#[tokio::test]
async fn function_triggers_need_a_valid_signature() {
    let (_dir, rt) = start("rt-http-auth-").await;
    http_function(
        &rt,
        "svc",
        "private",
        "python3",
        PYTHON_BEHAVIOURS,
        json!({"authType": "function", "methods": ["GET", "POST"]}),
        json!({}),
    )
    .await;
    let path = "/2016-08-15/proxy/svc/private/fine";
    let unsigned = call(&rt, "GET", path, "").await;
    assert_common_error(&unsigned, 400, "MissingRequiredHeader");
    let now = SystemTime::now();
    let forged = signed(&rt, "GET", path, &[], "not-the-secret", now).await;
    assert_common_error(&forged, 403, "SignatureNotMatch");
    let stale = signed(
        &rt,
        "GET",
        path,
        &[],
        KEY_SECRET,
        now - Duration::from_secs(20 * 60),
    )
    .await;
    assert_common_error(&stale, 403, "AccessDenied");
    // A signature for other queries (or another method) does not carry over.
    let good = signed(&rt, "POST", path, &[("a", "1")], KEY_SECRET, now).await;
    assert_eq!(good.status, 200, "{}", good.text());
    assert_eq!(good.text(), "fine /fine");
    let date = httpdate::fmt_http_date(now);
    let parts = SignedParts {
        method: "POST",
        headers: &[("date", date.as_str()), ("content-type", "text/plain")],
        path,
        queries: &[("a", Some("1"))],
    };
    let authorization = fcsign::authorization(KEY_ID, KEY_SECRET, &parts);
    for (method, url) in [
        ("POST", format!("{path}?a=2")),
        ("GET", format!("{path}?a=1")),
    ] {
        let replayed = plain(
            &rt,
            method,
            &url,
            &[
                ("date", date.as_str()),
                ("content-type", "text/plain"),
                ("authorization", authorization.as_str()),
            ],
            Vec::new(),
        )
        .await;
        assert_common_error(&replayed, 403, "SignatureNotMatch");
    }
    let calls = marks(&rt.runtime, "svc", "private");
    assert_eq!(calls, ["POST /fine"], "only the signed request ran");
    rt.stop().await;
}

/// Requests over the limits or outside the rules are refused before any handler runs: 400 `InvalidArgument`
/// for a body over 6 MB, headers over 4 KB, a query over 4 KB, a `..` path (plain or encoded); 404 for a
/// function without an HTTP trigger, an unknown function or service.
#[tokio::test]
async fn hostile_requests_never_reach_the_handler() {
    let (_dir, rt) = start("rt-http-hostile-").await;
    http_function(
        &rt,
        "svc",
        "open",
        "python3",
        PYTHON_BEHAVIOURS,
        json!({"authType": "anonymous", "methods": ["GET", "POST"]}),
        json!({}),
    )
    .await;
    rt.create_function(
        "svc",
        "plain",
        "python3",
        &[("index.py", PYTHON_BEHAVIOURS)],
        json!({}),
    )
    .await;
    let base = "/2016-08-15/proxy/svc/open";

    let body = plain(
        &rt,
        "POST",
        &format!("{base}/x"),
        &[],
        vec![b'b'; 6 * 1024 * 1024 + 1],
    )
    .await;
    let message = assert_common_error(&body, 400, "InvalidArgument");
    assert!(message.contains("request body"), "{message}");
    // Exactly 6 MB is fine.
    let at_limit = plain(
        &rt,
        "POST",
        &format!("{base}/fine"),
        &[],
        vec![b'b'; 6 * 1024 * 1024],
    )
    .await;
    assert_eq!(at_limit.status, 200, "{}", at_limit.text());

    let big_header = "h".repeat(4 * 1024);
    let headers = plain(
        &rt,
        "GET",
        &format!("{base}/x"),
        &[("x-big", big_header.as_str())],
        Vec::new(),
    )
    .await;
    let message = assert_common_error(&headers, 400, "InvalidArgument");
    assert!(message.contains("request headers"), "{message}");
    let query = call(
        &rt,
        "GET",
        &format!("{base}/x?q={}", "q".repeat(4 * 1024)),
        "",
    )
    .await;
    let message = assert_common_error(&query, 400, "InvalidArgument");
    assert!(message.contains("query string"), "{message}");
    let long_path = call(&rt, "GET", &format!("{base}/{}", "p".repeat(4 * 1024)), "").await;
    let message = assert_common_error(&long_path, 400, "InvalidArgument");
    assert!(message.contains("path"), "{message}");

    for path in [
        format!("{base}/../../../services/svc/functions"),
        format!("{base}/a/%2e%2e/%2e%2e/b"),
        format!("{base}/..%2f..%2fplain"),
        "/2016-08-15/proxy/svc/open/../plain/fine".to_owned(),
    ] {
        let (status, answer) = raw_request(&rt, &path).await;
        assert_eq!(status, 400, "{path}: {answer}");
        assert!(answer.contains("InvalidArgument"), "{path}: {answer}");
        assert!(answer.contains("'..'"), "{path}: {answer}");
    }

    let no_trigger = call(&rt, "GET", "/2016-08-15/proxy/svc/plain/fine", "").await;
    let message = assert_common_error(&no_trigger, 404, "TriggerNotFound");
    assert!(message.contains("no HTTP trigger"), "{message}");
    let unknown = call(&rt, "GET", "/2016-08-15/proxy/svc/nobody/", "").await;
    assert_common_error(&unknown, 404, "FunctionNotFound");
    let no_service = call(&rt, "GET", "/2016-08-15/proxy/nothing/f/", "").await;
    assert_common_error(&no_service, 404, "ServiceNotFound");
    let bad_name = call(&rt, "GET", "/2016-08-15/proxy/svc/1bad/", "").await;
    assert_common_error(&bad_name, 400, "InvalidArgument");

    assert_eq!(marks(&rt.runtime, "svc", "open"), ["POST /fine"]);
    assert!(marks(&rt.runtime, "svc", "plain").is_empty());
    rt.stop().await;
}

/// A trigger answers at its qualifier's path (an alias: `svc.prod`), running the alias's version; a function has
/// one HTTP trigger at most; a deleted trigger stops answering.
#[tokio::test]
async fn http_triggers_follow_their_qualifier_and_are_one_per_function() {
    let (_dir, rt) = start("rt-http-qualifier-").await;
    rt.create_service("svc").await;
    rt.create_function(
        "svc",
        "f",
        "python3",
        &[("index.py", PYTHON_BEHAVIOURS)],
        json!({}),
    )
    .await;
    let published = rt
        .json(
            "POST",
            "/2016-08-15/services/svc/versions",
            json!({"description": "one"}),
        )
        .await;
    assert_eq!(published.status, 200, "{}", published.text());
    let alias = rt
        .json(
            "POST",
            "/2016-08-15/services/svc/aliases",
            json!({"aliasName": "prod", "versionId": "1"}),
        )
        .await;
    assert_eq!(alias.status, 200, "{}", alias.text());
    let triggers = "/2016-08-15/services/svc/functions/f/triggers";
    let created = rt
        .json(
            "POST",
            triggers,
            json!({"triggerName": "web", "triggerType": "http", "qualifier": "prod",
                   "triggerConfig": {"authType": "anonymous", "methods": ["GET"]}}),
        )
        .await;
    assert_eq!(created.status, 200, "{}", created.text());
    let second = rt
        .json(
            "POST",
            triggers,
            json!({"triggerName": "web2", "triggerType": "http",
                   "triggerConfig": {"authType": "anonymous", "methods": ["GET"]}}),
        )
        .await;
    let message = second.assert_error(400, "InvalidArgument");
    assert!(message.contains("at most one"), "{message}");

    let through_alias = call(&rt, "GET", "/2016-08-15/proxy/svc.prod/f/fine", "").await;
    assert_eq!(through_alias.status, 200, "{}", through_alias.text());
    assert_eq!(
        through_alias.header("x-fc-invocation-service-version"),
        Some("1")
    );
    let latest = call(&rt, "GET", "/2016-08-15/proxy/svc/f/fine", "").await;
    let message = assert_common_error(&latest, 404, "TriggerNotFound");
    assert!(
        message.contains("/2016-08-15/proxy/svc.prod/f/"),
        "{message}"
    );

    let deleted = rt
        .json("DELETE", &format!("{triggers}/web"), Value::Null)
        .await;
    assert_eq!(deleted.status, 204, "{}", deleted.text());
    let gone = call(&rt, "GET", "/2016-08-15/proxy/svc.prod/f/fine", "").await;
    assert_common_error(&gone, 404, "TriggerNotFound");
    rt.stop().await;
}

/// HTTP triggers through the Python SDK (aliyun-fc2): the guide's Example 2 (create_trigger with its
/// configuration), `do_http_request` on a `function` trigger, a plain request on an anonymous one.
#[tokio::test]
async fn python_sdk_creates_and_calls_http_triggers() {
    sdk_script("python3", "tests/sdk/python/test_http.py").await;
}

/// HTTP triggers through the Node.js SDK (@alicloud/fc2): createTrigger, signed `get` / `post` on the proxy path
/// of a `function` trigger.
#[tokio::test]
async fn node_sdk_creates_and_calls_http_triggers() {
    sdk_script("node", "tests/sdk/node/test_http.js").await;
}
