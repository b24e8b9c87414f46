//! The status page: served without the token with strict security headers, and used in a real headless
//! browser (Debian's chromium driven over WebDriver by chromedriver) against the real daemon following the peer
//! simulator: the token typed once (a wrong one refused), heights advancing, a hostile target error shown as
//! text, dead letters re-pushed, a trigger disabled and enabled through the page with the API agreeing, and a
//! phone-sized window without sideways scrolling.
//!
//! The browser and its driver come from `.ci/setup` (which `.ci/run` calls, and which this test runs itself
//! when they are missing). `CHROMIUM` and `CHROMEDRIVER` override where they are looked for.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use axum::http::StatusCode;
use reqwest::Method;
use serde_json::{Value, json};

use crate::support::admin::{AdminServer, TOKEN};
use crate::support::daemon::{
    ADMIN_TOKEN, Daemon, DaemonFiles, Network, PATIENCE, Receiver, TriggerSpec, eventually,
};

fn client() -> reqwest::Client {
    chaintrigger::install_crypto_provider();
    reqwest::Client::new()
}

#[tokio::test]
async fn the_page_is_served_without_a_token_with_strict_headers_while_the_api_needs_one() {
    let server = AdminServer::start().await;
    let client = client();
    for (path, content_type, body) in [
        ("/", "text/html", chaintrigger::admin::page::INDEX_HTML),
        (
            "/app.js",
            "text/javascript",
            chaintrigger::admin::page::APP_JS,
        ),
        ("/app.css", "text/css", chaintrigger::admin::page::APP_CSS),
    ] {
        let response = client
            .get(format!("{}{path}", server.url))
            .send()
            .await
            .expect("the admin API answers");
        assert_eq!(response.status(), StatusCode::OK, "{path}");
        let header = |name: &str| {
            response
                .headers()
                .get(name)
                .and_then(|value| value.to_str().ok())
                .unwrap_or_else(|| panic!("{path} has no {name} header"))
                .to_owned()
        };
        assert!(header("content-type").starts_with(content_type), "{path}");
        let policy = header("content-security-policy");
        for directive in [
            "default-src 'none'",
            "script-src 'self'",
            "style-src 'self'",
            "connect-src 'self'",
            "form-action 'none'",
            "frame-ancestors 'none'",
            "base-uri 'none'",
        ] {
            assert!(
                policy.contains(directive),
                "{path}: {directive} in {policy}"
            );
        }
        assert!(!policy.contains("unsafe"), "{path}: {policy}");
        assert_eq!(header("x-content-type-options"), "nosniff", "{path}");
        assert_eq!(header("referrer-policy"), "no-referrer", "{path}");
        assert_eq!(header("cache-control"), "no-store", "{path}");
        assert_eq!(header("x-frame-options"), "DENY", "{path}");
        // The page holds no data: it is the embedded file, whatever the engine knows.
        assert_eq!(response.text().await.expect("a body"), body, "{path}");
    }
    // Everything else still needs the token, unknown paths included.
    for path in [
        "/v1/triggers",
        "/v1/channels",
        "/metrics",
        "/favicon.ico",
        "/index.html",
    ] {
        let response = client
            .get(format!("{}{path}", server.url))
            .send()
            .await
            .expect("the admin API answers");
        assert_eq!(response.status(), StatusCode::UNAUTHORIZED, "{path}");
        let response = client
            .get(format!("{}{path}", server.url))
            .bearer_auth("a-wrong-token-0123456789")
            .send()
            .await
            .expect("the admin API answers");
        assert_eq!(
            response.status(),
            StatusCode::UNAUTHORIZED,
            "{path} with a wrong token"
        );
    }
    let response = client
        .get(format!("{}/v1/triggers", server.url))
        .bearer_auth(TOKEN)
        .send()
        .await
        .expect("the admin API answers");
    assert_eq!(response.status(), StatusCode::OK);
    server.stop().await;
}

/// What the hostile target answers while it refuses: markup that would run script if a page parsed it.
const HOSTILE: &str =
    "<img src=x onerror=\"window.pwned=1;document.title='pwned'\"><script>window.pwned=2</script>";

/// An HTTP target that refuses every push with 422 and [`HOSTILE`] as its body (the daemon discards the event
/// and keeps the body in the error), until told to accept.
struct HostileTarget {
    url: String,
    accept: Arc<AtomicBool>,
    shutdown: tokio_util::sync::CancellationToken,
}

impl HostileTarget {
    async fn start() -> HostileTarget {
        let accept = Arc::new(AtomicBool::new(false));
        let flag = accept.clone();
        let app = axum::Router::new().route(
            "/hook",
            axum::routing::post(move || {
                let flag = flag.clone();
                async move {
                    if flag.load(Ordering::SeqCst) {
                        (StatusCode::OK, String::new())
                    } else {
                        (StatusCode::UNPROCESSABLE_ENTITY, HOSTILE.to_owned())
                    }
                }
            }),
        );
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind the hostile target");
        let url = format!(
            "http://{}/hook",
            listener.local_addr().expect("its address")
        );
        let shutdown = tokio_util::sync::CancellationToken::new();
        let stop = shutdown.clone();
        tokio::spawn(async move {
            axum::serve(listener, app)
                .with_graceful_shutdown(stop.cancelled_owned())
                .await
        });
        HostileTarget {
            url,
            accept,
            shutdown,
        }
    }
}

impl Drop for HostileTarget {
    fn drop(&mut self) {
        self.shutdown.cancel();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_page_in_a_browser_follows_the_daemon_and_steers_its_triggers() {
    let network = Network::start(None).await;
    let receiver = Receiver::start().await;
    let hostile = HostileTarget::start().await;
    let files = DaemonFiles::new();
    let mut refusing = TriggerSpec::new(
        "hostile",
        "Block",
        format!(
            "[triggers.target.http]\nurl = {}\n",
            crate::support::daemon::toml_str(&hostile.url)
        ),
    );
    refusing.attempts = 1;
    files.write_config(
        &network,
        &[
            TriggerSpec::new("blocks", "Block", receiver.target_toml("blocks")),
            refusing,
        ],
    );
    let daemon = Daemon::start(&files).await;
    let admin = &daemon.admin;
    admin.wait_position("blocks", network.height()).await;

    let browser = Browser::start().await;
    let page = format!("{}/", files.admin_url());
    browser.goto(&page).await;

    // Asked for the token; a wrong one is refused with a clear message and asked again.
    browser.wait_visible("#login-form").await;
    browser
        .type_into("#token", "not-the-token-0123456789")
        .await;
    browser.click("#login-submit").await;
    let problem = browser
        .wait_text("#login-problem", |text| !text.is_empty())
        .await;
    assert!(problem.contains("refused this token"), "{problem}");
    assert!(
        browser.hidden("#main").await,
        "no data behind a wrong token"
    );

    browser.type_into("#token", ADMIN_TOKEN).await;
    browser.click("#login-submit").await;
    browser.wait_visible("#main").await;

    // Heights advance as blocks come.
    let first = browser.wait_heights(&network).await;
    network.generate(3);
    let now = browser.wait_heights(&network).await;
    assert_eq!(now, first + 3);
    browser
        .wait_text("[data-trigger=\"blocks\"] .lag", |text| text == "0")
        .await;
    browser.screenshot("desktop").await;
    let peer = browser
        .text("[data-channel=\"mychannel\"] .peer")
        .await
        .expect("a peer field");
    assert_eq!(peer, network.peer.address.to_string());
    let points = browser
        .script(
            "return document.querySelector('[data-trigger=\"blocks\"] polyline.height').getAttribute('points')",
            json!([]),
        )
        .await;
    assert!(
        points
            .as_str()
            .is_some_and(|points| points.split(' ').count() >= 2),
        "the plot has samples: {points}"
    );

    // A target's error is hostile text: shown whole, as text, never as markup.
    let error = browser
        .wait_text(
            "[data-trigger=\"hostile\"] .trigger-error .message",
            |text| text.contains("<img"),
        )
        .await;
    assert!(error.contains(HOSTILE), "the whole error is shown: {error}");
    let discarded = browser
        .text("[data-trigger=\"hostile\"] .discarded")
        .await
        .expect("a discarded field");
    assert_ne!(discarded, "0");
    browser
        .click("[data-trigger=\"hostile\"] button.dead-letters")
        .await;
    let letter = browser
        .wait_text("#dead-letters-list li .message", |text| {
            text.contains("<img")
        })
        .await;
    assert!(letter.contains(HOSTILE), "{letter}");
    browser.assert_no_markup_ran().await;
    browser.screenshot("desktop-dead-letters").await;

    // Re-push a dead letter once the target accepts again.
    hostile.accept.store(true, Ordering::SeqCst);
    let first = admin.dead_letters("hostile").await[0]["id"]
        .as_u64()
        .expect("a dead letter id");
    browser
        .click(&format!(
            "#dead-letters-list li[data-dead-letter=\"{first}\"] button.repush"
        ))
        .await;
    browser.confirm().await;
    browser
        .wait_text(
            &format!("#dead-letters-list li[data-dead-letter=\"{first}\"] .outcome"),
            |text| text == "delivered",
        )
        .await;
    let letters = admin.dead_letters("hostile").await;
    assert_eq!(letters[0]["id"], first);
    assert_eq!(letters[0]["repushed"], true, "{}", letters[0]);

    // A cancelled delete deletes nothing.
    browser
        .click("[data-trigger=\"blocks\"] button.delete")
        .await;
    browser.wait_visible("#confirm").await;
    browser.click("#confirm-cancel").await;
    assert!(browser.hidden("#confirm").await);
    assert_eq!(admin.trigger("blocks").await["state"], "Running");

    // Disable through the page; the API agrees, and so does the page.
    browser
        .click("[data-trigger=\"blocks\"] button.disable")
        .await;
    browser.confirm().await;
    admin.wait_state("blocks", "Disabled").await;
    browser
        .wait_text("[data-trigger=\"blocks\"] .state", |text| {
            text == "Disabled"
        })
        .await;
    browser
        .wait_text("#notice", |text| text == "blocks is Disabled")
        .await;

    // Enable from a block number; the API agrees.
    network.generate(2);
    let from = network.height() - 1;
    eventually("the daemon to see the new blocks", PATIENCE, || async {
        (admin.channel().await["chain_height"].as_u64() == Some(from + 1)).then_some(())
    })
    .await;
    browser
        .click("[data-trigger=\"blocks\"] button.enable")
        .await;
    browser.wait_visible("#confirm").await;
    browser
        .click("input[name=\"enable-from\"][value=\"block\"]")
        .await;
    browser.click("#confirm-ok").await;
    browser.screenshot("desktop-enable").await;
    let problem = browser
        .wait_text("#confirm-problem", |text| !text.is_empty())
        .await;
    assert!(problem.contains("block number"), "{problem}");
    browser.type_into("#enable-block", &from.to_string()).await;
    browser.click("#confirm-ok").await;
    let enabled = admin
        .wait_for("blocks", "enabled from the block", |status| {
            status["state"] == "Running" && !status["enabled_at"].is_null()
        })
        .await;
    assert!(
        enabled["position"]["block"].as_u64() >= Some(from),
        "{enabled}"
    );
    browser
        .wait_text("[data-trigger=\"blocks\"] .state", |text| text == "Running")
        .await;

    // The filter box answers in text, whether or not this daemon has the filter tester.
    browser.click("#filter-run").await;
    let answer = browser
        .wait_text("#filter-result", |text| !text.is_empty())
        .await;
    assert!(
        answer.contains("The filter tester is not available") || answer.contains("event"),
        "{answer}"
    );

    // The token is never in a URL; it is kept in the tab's session storage and survives a reload.
    let url = browser.url().await;
    assert_eq!(url, page, "the page's URL is unchanged");
    assert!(!url.contains(ADMIN_TOKEN));
    let markup = browser
        .script("return document.documentElement.outerHTML", json!([]))
        .await;
    assert!(
        !markup.as_str().expect("markup").contains(ADMIN_TOKEN),
        "the token is not in the document"
    );
    browser.goto(&page).await;
    browser.wait_visible("#main").await;
    assert!(
        browser.hidden("#login").await,
        "not asked again in the same tab"
    );
    assert!(!browser.url().await.contains(ADMIN_TOKEN));
    let history = browser
        .script("return window.history.length", json!([]))
        .await;
    assert!(history.as_u64().is_some(), "{history}");

    // On a phone's width nothing needs sideways scrolling.
    browser.window_size(390, 844).await;
    browser
        .wait_text("[data-trigger=\"blocks\"] .state", |text| text == "Running")
        .await;
    browser
        .click("[data-trigger=\"hostile\"] button.dead-letters")
        .await;
    browser
        .wait_text("#dead-letters-list li .message", |text| {
            text.contains("<img")
        })
        .await;
    let widths = browser
        .script(
            "return [document.documentElement.scrollWidth, window.innerWidth]",
            json!([]),
        )
        .await;
    let (scroll, inner) = (widths[0].as_u64(), widths[1].as_u64());
    assert!(
        scroll.is_some() && scroll <= inner,
        "the page is wider than the phone: {widths}"
    );
    browser.assert_no_markup_ran().await;
    browser.screenshot("phone-dead-letters").await;
    browser.script("window.scrollTo(0, 0)", json!([])).await;
    browser.screenshot("phone-top").await;

    // Forgetting the token asks for it again.
    browser.click("#forget").await;
    browser.wait_visible("#login-form").await;
    let stored = browser
        .script("return sessionStorage.length", json!([]))
        .await;
    assert_eq!(stored, json!(0));

    browser.quit().await;
    daemon.terminate().await;
}

// ---------------------------------------------------------------------------------------------------------------
// A small W3C WebDriver client: chromedriver plus headless chromium, one session.

/// The key of an element reference in WebDriver answers.
const ELEMENT: &str = "element-6066-11e4-a52e-4f735466cecf";

/// chromedriver with one session of headless chromium; the driver's process group is killed on drop.
struct Browser {
    client: reqwest::Client,
    /// `http://127.0.0.1:<port>/session/<id>`.
    session: String,
    driver: tokio::process::Child,
    /// The browser's profile, so parallel runs do not share one.
    _profile: tempfile::TempDir,
}

/// Looks `name` up on PATH.
fn on_path(name: &str) -> Option<PathBuf> {
    std::env::var_os("PATH").and_then(|paths| {
        std::env::split_paths(&paths)
            .map(|dir| dir.join(name))
            .find(|path| path.is_file())
    })
}

/// The browser and the driver: `$CHROMIUM` / `$CHROMEDRIVER`, else on PATH.
fn browser_paths() -> Option<(PathBuf, PathBuf)> {
    let chromium = std::env::var_os("CHROMIUM")
        .map(PathBuf::from)
        .or_else(|| on_path("chromium"))
        .or_else(|| on_path("chromium-browser"))?;
    let driver = std::env::var_os("CHROMEDRIVER")
        .map(PathBuf::from)
        .or_else(|| on_path("chromedriver"))?;
    Some((chromium, driver))
}

/// Runs `.ci/setup` (once for all tests, under a file lock) when the browser or its driver is missing.
fn install_browser() -> (PathBuf, PathBuf) {
    if let Some(paths) = browser_paths() {
        return paths;
    }
    let lock_path = std::env::temp_dir().join("chaintrigger-browser-setup.lock");
    let lock = std::fs::File::create(&lock_path).expect("create the browser setup lock");
    // SAFETY: flock on a file descriptor we own for the whole call; released when `lock` is dropped.
    let locked = unsafe { libc::flock(std::os::fd::AsRawFd::as_raw_fd(&lock), libc::LOCK_EX) };
    assert_eq!(locked, 0, "lock {}", lock_path.display());
    if let Some(paths) = browser_paths() {
        return paths;
    }
    let setup = Path::new(env!("CARGO_MANIFEST_DIR")).join(".ci/setup");
    let output = std::process::Command::new(&setup)
        .output()
        .unwrap_or_else(|e| panic!("run {}: {e}", setup.display()));
    browser_paths().unwrap_or_else(|| {
        panic!(
            "chromium and chromedriver are needed for the status page's test and {} could not install them \
             ({}):\n{}\n{}",
            setup.display(),
            output.status,
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        )
    })
}

impl Browser {
    async fn start() -> Browser {
        let (chromium, driver_path) = tokio::task::spawn_blocking(install_browser)
            .await
            .expect("the browser setup does not panic");
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|listener| listener.local_addr())
            .expect("a free port")
            .port();
        let driver = tokio::process::Command::new(&driver_path)
            .arg(format!("--port={port}"))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .process_group(0)
            .kill_on_drop(true)
            .spawn()
            .unwrap_or_else(|e| panic!("start {}: {e}", driver_path.display()));
        let client = client();
        let base = format!("http://127.0.0.1:{port}");
        eventually("chromedriver to answer", PATIENCE, || async {
            let response = client.get(format!("{base}/status")).send().await.ok()?;
            let status: Value = response.json().await.ok()?;
            (status["value"]["ready"] == true).then_some(())
        })
        .await;
        let profile = tempfile::tempdir().expect("a browser profile folder");
        let capabilities = json!({"capabilities": {"alwaysMatch": {
            "browserName": "chrome",
            "goog:chromeOptions": {
                "binary": chromium,
                "args": [
                    "--headless=new",
                    "--no-sandbox",
                    "--disable-dev-shm-usage",
                    "--disable-gpu",
                    "--no-first-run",
                    "--disable-extensions",
                    "--window-size=1280,900",
                    format!("--user-data-dir={}", profile.path().display()),
                ],
            },
        }}});
        let response = client
            .post(format!("{base}/session"))
            .json(&capabilities)
            .send()
            .await
            .expect("chromedriver answers");
        let answer: Value = response.json().await.expect("a JSON answer");
        let id = answer["value"]["sessionId"]
            .as_str()
            .unwrap_or_else(|| panic!("chromedriver did not start chromium: {answer}"))
            .to_owned();
        Browser {
            client,
            session: format!("{base}/session/{id}"),
            driver,
            _profile: profile,
        }
    }

    /// One WebDriver command; the answer's `value`, or the error answer.
    async fn try_command(
        &self,
        method: Method,
        path: &str,
        body: Option<Value>,
    ) -> Result<Value, Value> {
        let mut request = self
            .client
            .request(method, format!("{}{path}", self.session));
        if let Some(body) = body {
            request = request.json(&body);
        }
        let response = request.send().await.expect("chromedriver answers");
        let ok = response.status().is_success();
        let answer: Value = response.json().await.expect("a JSON answer");
        if ok {
            Ok(answer["value"].clone())
        } else {
            Err(answer["value"].clone())
        }
    }

    async fn command(&self, method: Method, path: &str, body: Option<Value>) -> Value {
        self.try_command(method, path, body)
            .await
            .unwrap_or_else(|error| panic!("WebDriver {path}: {error}"))
    }

    async fn goto(&self, url: &str) {
        self.command(Method::POST, "/url", Some(json!({"url": url})))
            .await;
    }

    async fn url(&self) -> String {
        self.command(Method::GET, "/url", None)
            .await
            .as_str()
            .expect("a URL")
            .to_owned()
    }

    async fn window_size(&self, width: u32, height: u32) {
        self.command(
            Method::POST,
            "/window/rect",
            Some(json!({"width": width, "height": height})),
        )
        .await;
    }

    async fn script(&self, script: &str, args: Value) -> Value {
        self.command(
            Method::POST,
            "/execute/sync",
            Some(json!({"script": script, "args": args})),
        )
        .await
    }

    /// The element `css` selects, waiting for it to exist.
    async fn find(&self, css: &str) -> String {
        eventually(&format!("an element {css}"), PATIENCE, || async {
            let found = self
                .try_command(
                    Method::POST,
                    "/element",
                    Some(json!({"using": "css selector", "value": css})),
                )
                .await
                .ok()?;
            found[ELEMENT].as_str().map(str::to_owned)
        })
        .await
    }

    /// Clicks like a user: scrolls the element to the middle of the window (as a user would, clear of the sticky
    /// header), and the driver refuses a covered element; retries while the element is not yet clickable.
    async fn click(&self, css: &str) {
        let deadline = Instant::now() + PATIENCE;
        loop {
            let element = self.find(css).await;
            self.script(
                "arguments[0].scrollIntoView({block: 'center'})",
                json!([{ ELEMENT: element }]),
            )
            .await;
            match self
                .try_command(
                    Method::POST,
                    &format!("/element/{element}/click"),
                    Some(json!({})),
                )
                .await
            {
                Ok(_) => return,
                Err(error) => assert!(Instant::now() < deadline, "click {css}: {error}"),
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    async fn type_into(&self, css: &str, text: &str) {
        let element = self.find(css).await;
        self.command(
            Method::POST,
            &format!("/element/{element}/clear"),
            Some(json!({})),
        )
        .await;
        self.command(
            Method::POST,
            &format!("/element/{element}/value"),
            Some(json!({"text": text})),
        )
        .await;
    }

    /// The text content of what `css` selects, `None` when nothing matches.
    async fn text(&self, css: &str) -> Option<String> {
        let value = self
            .script(
                "const node = document.querySelector(arguments[0]); return node ? node.textContent : null;",
                json!([css]),
            )
            .await;
        value.as_str().map(str::to_owned)
    }

    /// Waits until the text of what `css` selects satisfies `condition`; returns that text.
    async fn wait_text(&self, css: &str, condition: impl Fn(&str) -> bool) -> String {
        let mut last = None;
        let deadline = Instant::now() + PATIENCE;
        loop {
            let text = self.text(css).await;
            if let Some(text) = &text
                && condition(text)
            {
                return text.clone();
            }
            last = text.or(last);
            assert!(
                Instant::now() < deadline,
                "timed out waiting for the text of {css}; last seen: {last:?}"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// Whether what `css` selects is not rendered (hidden itself or by an ancestor, or a closed dialog).
    async fn hidden(&self, css: &str) -> bool {
        let value = self
            .script(
                "const node = document.querySelector(arguments[0]); return !node || node.getClientRects().length === 0;",
                json!([css]),
            )
            .await;
        value == json!(true)
    }

    async fn wait_visible(&self, css: &str) {
        eventually(&format!("{css} to show"), PATIENCE, || async {
            (!self.hidden(css).await).then_some(())
        })
        .await;
    }

    /// Waits until the page shows the simulator's current height as the channel's and the `blocks` trigger's
    /// block height just below it; returns that height.
    async fn wait_heights(&self, network: &Network) -> u64 {
        let height = network.height();
        let shown = format!("{} / {height}", height - 1);
        self.wait_text("[data-trigger=\"blocks\"] .block-height", |text| {
            text == shown
        })
        .await;
        self.wait_text("[data-channel=\"mychannel\"] .chain-height", |text| {
            text == height.to_string()
        })
        .await;
        height
    }

    /// Accepts the confirmation dialog the last action opened.
    async fn confirm(&self) {
        self.wait_visible("#confirm").await;
        self.click("#confirm-ok").await;
        eventually("the confirmation to close", PATIENCE, || async {
            self.hidden("#confirm").await.then_some(())
        })
        .await;
    }

    /// The hostile markup was shown as text: no element was made of it and none of its script ran.
    async fn assert_no_markup_ran(&self) {
        let found = self
            .script(
                "return [document.querySelectorAll('body img, main script').length, \
                 window.pwned === undefined, document.title]",
                json!([]),
            )
            .await;
        assert_eq!(found, json!([0, true, "chaintrigger"]));
    }

    /// Saves a PNG of the window as `<$STATUS_PAGE_SCREENSHOTS>/<name>.png` when that variable names a folder,
    /// to look at the page as the test saw it.
    async fn screenshot(&self, name: &str) {
        let Some(dir) = std::env::var_os("STATUS_PAGE_SCREENSHOTS") else {
            return;
        };
        let png = self.command(Method::GET, "/screenshot", None).await;
        let bytes = base64::Engine::decode(
            &base64::engine::general_purpose::STANDARD,
            png.as_str().expect("a base64 PNG"),
        )
        .expect("valid base64");
        std::fs::write(Path::new(&dir).join(format!("{name}.png")), bytes)
            .expect("write a screenshot");
    }

    async fn quit(mut self) {
        let _ = self.try_command(Method::DELETE, "", None).await;
        let _ = self.driver.kill().await;
    }
}

impl Drop for Browser {
    fn drop(&mut self) {
        // After a failed assertion the session is still open: end the driver's whole process group (the driver
        // and the browser it started), which this test created.
        if let Some(pid) = self.driver.id() {
            // SAFETY: kill(2) on the process group of a child we started with its own group.
            unsafe {
                libc::kill(-(pid as libc::pid_t), libc::SIGKILL);
            }
        }
    }
}
