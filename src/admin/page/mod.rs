//! The status page: one HTML document, its script and its style sheet, compiled into the binary
//! (`include_str!`) and served by the admin API at `/`, `/app.js` and `/app.css`.
//!
//! Invariants:
//! - The three files hold no data, so they are served without the token; everything the page shows comes
//!   from the token-protected JSON routes, fetched by the script with `Authorization: Bearer`. The token is
//!   typed into the page once and kept in the tab's `sessionStorage`: it never appears in a URL, the history,
//!   a referrer or a server log.
//! - Nothing is loaded from elsewhere (no CDN): the page works offline and behind an air gap.
//! - The Content-Security-Policy allows scripts, styles and fetches from the API's own origin only, no inline
//!   script or style, no forms posting anywhere and no framing. The script renders every value from the API as
//!   text (`textContent`, `createTextNode`): trigger names, errors and payloads are hostile input, and a guard
//!   test below keeps HTML-parsing sinks out of the script.

use axum::Router;
use axum::http::{HeaderName, HeaderValue, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;

/// The page's markup: a login form, the channel and trigger lists, dialogs and the filter tester.
pub const INDEX_HTML: &str = include_str!("index.html");

/// The page's behaviour: polling, rendering as text, actions, plots.
pub const APP_JS: &str = include_str!("app.js");

/// The page's layout, from a phone's width up.
pub const APP_CSS: &str = include_str!("app.css");

/// What the page may load and do: its own script, style and API, nothing inline, nothing from elsewhere.
/// `img-src data:` only allows the empty favicon (so the browser does not ask `/favicon.ico`, which needs the
/// token).
pub const CONTENT_SECURITY_POLICY: &str = "default-src 'none'; script-src 'self'; style-src 'self'; \
     img-src data:; connect-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'";

/// The page's routes, open to everyone (they hold no data); merged into the admin API's router.
pub fn routes<S: Clone + Send + Sync + 'static>() -> Router<S> {
    Router::new()
        .route(
            "/",
            get(|| async { asset("text/html; charset=utf-8", INDEX_HTML) }),
        )
        .route(
            "/app.js",
            get(|| async { asset("text/javascript; charset=utf-8", APP_JS) }),
        )
        .route(
            "/app.css",
            get(|| async { asset("text/css; charset=utf-8", APP_CSS) }),
        )
}

/// One embedded file with the page's security headers. `no-store` so an upgraded daemon never runs an old
/// script against its new API.
fn asset(content_type: &'static str, body: &'static str) -> Response {
    let headers: [(HeaderName, HeaderValue); 7] = [
        (header::CONTENT_TYPE, HeaderValue::from_static(content_type)),
        (
            header::CONTENT_SECURITY_POLICY,
            HeaderValue::from_static(CONTENT_SECURITY_POLICY),
        ),
        (
            header::X_CONTENT_TYPE_OPTIONS,
            HeaderValue::from_static("nosniff"),
        ),
        (
            header::REFERRER_POLICY,
            HeaderValue::from_static("no-referrer"),
        ),
        (header::CACHE_CONTROL, HeaderValue::from_static("no-store")),
        (header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY")),
        (
            HeaderName::from_static("cross-origin-opener-policy"),
            HeaderValue::from_static("same-origin"),
        ),
    ];
    (headers, body).into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_script_never_parses_text_as_html() {
        for sink in [
            "innerHTML",
            "outerHTML",
            "insertAdjacentHTML",
            "document.write",
            "createContextualFragment",
            "DOMParser",
            "eval(",
            "new Function",
            "setAttribute(\"on",
            "setAttribute(\"style",
        ] {
            assert!(!APP_JS.contains(sink), "app.js uses {sink}");
        }
    }

    #[test]
    fn the_page_loads_nothing_from_elsewhere_and_nothing_inline() {
        for text in [INDEX_HTML, APP_JS, APP_CSS] {
            // The SVG namespace is a name, not something loaded.
            let text = text.replace("http://www.w3.org/2000/svg", "");
            assert!(!text.contains("http://"), "an absolute URL in the page");
            assert!(!text.contains("https://"), "an absolute URL in the page");
            assert!(!text.contains("//cdn"), "a CDN in the page");
        }
        assert!(!INDEX_HTML.contains("<script>"), "an inline script");
        assert!(!INDEX_HTML.contains("<style"), "an inline style sheet");
        assert!(!INDEX_HTML.contains("style="), "an inline style");
        let handler = INDEX_HTML.match_indices(" on").find(|(at, _)| {
            let rest = &INDEX_HTML[at + 3..];
            let name_len = rest.bytes().take_while(u8::is_ascii_alphabetic).count();
            name_len > 0 && rest[name_len..].starts_with('=')
        });
        assert!(handler.is_none(), "an inline event handler at {handler:?}");
        assert!(INDEX_HTML.contains(r#"<script src="app.js" defer></script>"#));
    }
}
