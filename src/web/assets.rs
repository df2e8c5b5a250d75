//! The embedded files and the routes that serve them: `/` is the page, `/ui/NAME`
//! its scripts and styles. Unknown names are 404; the page's routes are in its URL
//! fragment (`/#/jobs`), so the server never has to know them.

use axum::Router;
use axum::extract::Path;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;

/// Every file the page may load: name, content type, bytes.
const FILES: &[(&str, &str, &str)] = &[
    ("app.js", "text/javascript; charset=utf-8", include_str!("assets/app.js")),
    ("ansi.js", "text/javascript; charset=utf-8", include_str!("assets/ansi.js")),
    ("api.js", "text/javascript; charset=utf-8", include_str!("assets/api.js")),
    ("pages.js", "text/javascript; charset=utf-8", include_str!("assets/pages.js")),
    ("style.css", "text/css; charset=utf-8", include_str!("assets/style.css")),
    ("icon.svg", "image/svg+xml", include_str!("assets/icon.svg")),
    ("vendor/preact-htm.js", "text/javascript; charset=utf-8", include_str!("assets/vendor/preact-htm.js")),
];

const INDEX: &str = include_str!("assets/index.html");

/// Only the daemon itself: no inline script, no other origin, no framing.
const POLICY: &str = "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; \
                      connect-src 'self'; font-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'";

pub(crate) fn router() -> Router {
    Router::new().route("/", get(index)).route("/ui/{*name}", get(asset))
}

async fn index() -> Response {
    respond("text/html; charset=utf-8", INDEX)
}

async fn asset(Path(name): Path<String>) -> Response {
    match FILES.iter().find(|(file, _, _)| *file == name) {
        Some((_, kind, body)) => respond(kind, body),
        None => (StatusCode::NOT_FOUND, "no such file").into_response(),
    }
}

fn respond(kind: &'static str, body: &'static str) -> Response {
    let mut response = body.into_response();
    let headers = response.headers_mut();
    headers.insert(header::CONTENT_TYPE, HeaderValue::from_static(kind));
    // Embedded in the binary: a new binary may change them, so ask each time.
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    headers.insert(header::CONTENT_SECURITY_POLICY, HeaderValue::from_static(POLICY));
    headers.insert(header::X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff"));
    headers.insert(header::REFERRER_POLICY, HeaderValue::from_static("no-referrer"));
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_module_the_page_imports_is_embedded() {
        // A module the browser cannot load leaves a blank page: each `from './x.js'`
        // in an embedded script must name an embedded file.
        for (file, _, body) in FILES.iter().filter(|(f, _, _)| f.ends_with(".js") && !f.starts_with("vendor/")) {
            for import in body.split("from '").skip(1) {
                let target = import.split('\'').next().unwrap().trim_start_matches("./");
                assert!(FILES.iter().any(|(f, _, _)| *f == target), "{file} imports {target}, which is not embedded");
            }
        }
        assert!(INDEX.contains("/ui/app.js"));
    }
}
