//! The browser client (`web/`), embedded in the binary, and how it is served: at `/` by
//! `credbroker dev`, under `/web/` by the sign-in router ([`crate::api::router`], so by the Lambda
//! function and `credbroker serve`) on the API's own origin.
//!
//! Embedded with `include_dir`, so one binary runs anywhere: nothing is read from the source tree
//! at run time. `credbroker dev --web DIR` serves a directory instead (client development: edit,
//! reload), with the same paths, types and headers.
//!
//! Every file gets [`security_headers`]: a Content-Security-Policy that allows only this
//! origin's scripts and styles (the pages have no inline script or style), no framing by other
//! origins, no referrer to other origins, no MIME sniffing. Files are revalidated on every use (`no-cache` with an
//! `ETag`), since their names carry no version.

use std::borrow::Cow;
use std::path::PathBuf;

use axum::Router;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, HeaderName, HeaderValue, Method, StatusCode, Uri, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use include_dir::{Dir, include_dir};

use crate::error::ApiError;

/// `web/` as it was at build time.
static EMBEDDED: Dir<'static> = include_dir!("$CARGO_MANIFEST_DIR/web");

/// The page a directory path (`/`, `/web/`) serves.
const INDEX: &str = "index.html";
/// The service worker scripts (source and minified build): they may control pages above their
/// own folder (transparent mode signs the app's pages, which sit outside `/web/`).
const SERVICE_WORKERS: [&str; 2] = ["credbroker-sw.js", "credbroker-sw.min.js"];
/// Longest file path accepted (the client's names are short; this bounds the work per request).
const MAX_PATH_BYTES: usize = 128;

/// Content-Security-Policy of every served file.
///
/// - scripts, styles, workers: this origin only (`'self'`), no `'unsafe-inline'`, no `eval`;
/// - `connect-src` and `frame-src` also allow https origins: the client fetches the providers'
///   discovery documents and token endpoints (code + PKCE) and renews silently in a hidden
///   `prompt=none` iframe at the provider, whose origins the static files cannot know;
/// - `frame-ancestors 'self'`, not `'none'`: silent renewal loads the client's own redirect page
///   in an iframe of the client; no other origin may frame it (clickjacking);
/// - `img-src data:` for the inline SVG icon.
const CONTENT_SECURITY_POLICY: &str = "default-src 'none'; script-src 'self'; style-src 'self'; \
     img-src 'self' data:; connect-src 'self' https:; frame-src 'self' https:; worker-src 'self'; \
     manifest-src 'self'; form-action 'self' https:; base-uri 'none'; object-src 'none'; \
     frame-ancestors 'self'";

/// Where the client's files come from.
#[derive(Debug, Clone, Default)]
pub enum WebFiles {
    /// The copy of `web/` inside the binary.
    #[default]
    Embedded,
    /// A directory read at each request (`credbroker dev --web DIR`).
    Dir(PathBuf),
}

impl WebFiles {
    /// The bytes of a file under its relative path, if it exists and its name is acceptable.
    async fn read(&self, path: &str) -> Option<Cow<'static, [u8]>> {
        if !is_safe_path(path) {
            return None;
        }
        match self {
            WebFiles::Embedded => EMBEDDED.get_file(path).map(|file| Cow::Borrowed(file.contents())),
            WebFiles::Dir(dir) => tokio::fs::read(dir.join(path)).await.ok().map(Cow::Owned),
        }
    }
}

/// A relative path of plain names: no `..`, no empty or hidden segments, no backslashes, bounded.
fn is_safe_path(path: &str) -> bool {
    path.len() <= MAX_PATH_BYTES
        && path.split('/').all(|segment| {
            !segment.is_empty()
                && !segment.starts_with('.')
                && segment
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'-' | b'_'))
        })
}

/// The `Content-Type` of a served file, by extension; other files (e.g. `README.md`) are not
/// served.
fn content_type(path: &str) -> Option<&'static str> {
    let extension = path.rsplit_once('.')?.1;
    Some(match extension {
        "html" => "text/html; charset=utf-8",
        "js" | "mjs" => "text/javascript; charset=utf-8",
        "css" => "text/css; charset=utf-8",
        "json" | "map" => "application/json",
        "svg" => "image/svg+xml",
        "ico" => "image/x-icon",
        "png" => "image/png",
        "webmanifest" => "application/manifest+json",
        _ => return None,
    })
}

/// The security headers every served file carries. One function, so the policy is adjusted in
/// one place.
pub fn security_headers(headers: &mut HeaderMap) {
    let fixed: [(HeaderName, &'static str); 5] = [
        (header::CONTENT_SECURITY_POLICY, CONTENT_SECURITY_POLICY),
        (header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
        // `same-origin`, not `no-referrer`: the service worker signs a navigation only when its
        // referrer is this origin (its CSRF rule); other origins never see a referrer.
        (header::REFERRER_POLICY, "same-origin"),
        // For browsers without CSP `frame-ancestors`.
        (header::X_FRAME_OPTIONS, "SAMEORIGIN"),
        (
            HeaderName::from_static("permissions-policy"),
            "camera=(), microphone=(), geolocation=(), payment=(), usb=()",
        ),
    ];
    for (name, value) in fixed {
        headers.insert(name, HeaderValue::from_static(value));
    }
}

/// The client's files as routes: `{prefix}/` is `index.html`, `{prefix}/{file}` a file, and a
/// bare non-empty prefix (`/web`) redirects to its index, relative to where it was requested
/// (behind API Gateway the path carries the stage, which the function does not see). At the
/// root (empty prefix) files are the fallback, so every other route of the app, nested ones
/// included, comes first.
pub fn router(files: WebFiles, prefix: &'static str) -> Router {
    let router = Router::new().route(&format!("{prefix}/"), get(index));
    let router = match prefix.rsplit('/').next().filter(|name| !name.is_empty()) {
        Some(bare) => {
            let location = format!("{bare}/{INDEX}");
            router
                .route(&format!("{prefix}/{{*path}}"), get(file))
                .route(prefix, get(move || async move { redirect(&location) }))
        }
        None => router.fallback(root_file),
    };
    router.with_state(files)
}

async fn root_file(
    State(files): State<WebFiles>,
    method: Method,
    uri: Uri,
    request_headers: HeaderMap,
) -> Response {
    if method != Method::GET && method != Method::HEAD {
        return ApiError::MethodNotAllowed.into_response();
    }
    let path = uri.path().strip_prefix('/').unwrap_or_default();
    serve(&files, path, &request_headers).await
}

async fn index(State(files): State<WebFiles>, request_headers: HeaderMap) -> Response {
    serve(&files, INDEX, &request_headers).await
}

async fn file(
    State(files): State<WebFiles>,
    Path(path): Path<String>,
    request_headers: HeaderMap,
) -> Response {
    serve(&files, &path, &request_headers).await
}

/// One file with its type, security headers and validator; 304 when the browser's copy is
/// current, 404 (problem+json) for anything else.
async fn serve(files: &WebFiles, path: &str, request_headers: &HeaderMap) -> Response {
    let (Some(kind), Some(body)) = (content_type(path), files.read(path).await) else {
        return ApiError::NotFound.into_response();
    };
    let etag = entity_tag(&body);
    let current = request_headers
        .get(header::IF_NONE_MATCH)
        .is_some_and(|sent| sent.as_bytes() == etag.as_bytes());
    let mut response = if current {
        StatusCode::NOT_MODIFIED.into_response()
    } else {
        body.into_owned().into_response()
    };
    let headers = response.headers_mut();
    headers.insert(header::CONTENT_TYPE, HeaderValue::from_static(kind));
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    if let Ok(value) = HeaderValue::from_str(&etag) {
        headers.insert(header::ETAG, value);
    }
    if SERVICE_WORKERS.contains(&path) {
        headers.insert(
            HeaderName::from_static("service-worker-allowed"),
            HeaderValue::from_static("/"),
        );
    }
    security_headers(headers);
    response
}

fn redirect(location: &str) -> Response {
    let mut response = StatusCode::PERMANENT_REDIRECT.into_response();
    if let Ok(value) = HeaderValue::from_str(location) {
        response.headers_mut().insert(header::LOCATION, value);
    }
    security_headers(response.headers_mut());
    response
}

/// A strong validator: the first 16 bytes of the content's SHA-256, quoted.
fn entity_tag(body: &[u8]) -> String {
    let digest = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, body);
    format!("\"{}\"", hex::encode(&digest.as_ref()[..16]))
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::body::{Body, to_bytes};
    use axum::http::Request;
    use tower::ServiceExt;

    async fn get_path(router: Router, path: &str, if_none_match: Option<&str>) -> Response {
        let mut request = Request::get(path);
        if let Some(tag) = if_none_match {
            request = request.header(header::IF_NONE_MATCH, tag);
        }
        router
            .oneshot(request.body(Body::empty()).unwrap())
            .await
            .unwrap()
    }

    async fn body_of(response: Response) -> Vec<u8> {
        to_bytes(response.into_body(), 1 << 20).await.unwrap().to_vec()
    }

    fn on_disk(name: &str) -> Vec<u8> {
        std::fs::read(PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("web").join(name)).unwrap()
    }

    #[tokio::test]
    async fn every_web_file_is_embedded_byte_for_byte_with_its_type_and_headers() {
        let mut served = 0;
        for entry in std::fs::read_dir(PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("web")).unwrap() {
            let name = entry.unwrap().file_name().into_string().unwrap();
            let response = get_path(router(WebFiles::Embedded, "/web"), &format!("/web/{name}"), None).await;
            let Some(kind) = content_type(&name) else {
                assert_eq!(
                    response.status(),
                    StatusCode::NOT_FOUND,
                    "{name} is not a web file"
                );
                continue;
            };
            assert_eq!(response.status(), StatusCode::OK, "{name}");
            let headers = response.headers().clone();
            assert_eq!(headers[header::CONTENT_TYPE], kind, "{name}");
            assert_eq!(headers[header::X_CONTENT_TYPE_OPTIONS], "nosniff");
            assert_eq!(headers[header::REFERRER_POLICY], "same-origin");
            assert_eq!(headers[header::CACHE_CONTROL], "no-cache");
            let csp = headers[header::CONTENT_SECURITY_POLICY].to_str().unwrap();
            assert!(
                csp.contains("script-src 'self';") && !csp.contains("unsafe"),
                "{csp}"
            );
            assert!(csp.contains("frame-ancestors 'self'"), "{csp}");
            assert_eq!(body_of(response).await, on_disk(&name), "{name}");
            served += 1;
        }
        assert!(served >= 8, "only {served} files served");
    }

    #[tokio::test]
    async fn directory_paths_serve_the_index_and_the_bare_prefix_redirects_to_it() {
        let root = get_path(router(WebFiles::Embedded, ""), "/", None).await;
        assert_eq!(root.status(), StatusCode::OK);
        assert_eq!(body_of(root).await, on_disk(INDEX));
        let web = get_path(router(WebFiles::Embedded, "/web"), "/web/", None).await;
        assert_eq!(body_of(web).await, on_disk(INDEX));
        let bare = get_path(router(WebFiles::Embedded, "/web"), "/web", None).await;
        assert_eq!(bare.status(), StatusCode::PERMANENT_REDIRECT);
        assert_eq!(bare.headers()[header::LOCATION], "web/index.html");
    }

    #[tokio::test]
    async fn only_the_service_worker_may_control_pages_above_it() {
        for script in SERVICE_WORKERS {
            let worker = get_path(router(WebFiles::Embedded, ""), &format!("/{script}"), None).await;
            assert_eq!(worker.headers()["service-worker-allowed"], "/", "{script}");
        }
        let page = get_path(router(WebFiles::Embedded, ""), "/credbroker.js", None).await;
        assert!(!page.headers().contains_key("service-worker-allowed"));
    }

    #[tokio::test]
    async fn a_current_copy_gets_304_and_a_stale_one_the_file() {
        let first = get_path(router(WebFiles::Embedded, ""), "/style.css", None).await;
        let etag = first.headers()[header::ETAG].to_str().unwrap().to_string();
        let again = get_path(router(WebFiles::Embedded, ""), "/style.css", Some(&etag)).await;
        assert_eq!(again.status(), StatusCode::NOT_MODIFIED);
        assert!(again.headers().contains_key(header::CONTENT_SECURITY_POLICY));
        assert!(body_of(again).await.is_empty());
        let stale = get_path(router(WebFiles::Embedded, ""), "/style.css", Some("\"0\"")).await;
        assert_eq!(body_of(stale).await, on_disk("style.css"));
    }

    #[tokio::test]
    async fn traversal_hidden_and_unknown_files_are_not_found() {
        let dir = WebFiles::Dir(PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("web"));
        for path in [
            "/../Cargo.toml",
            "/%2e%2e/Cargo.toml",
            "/..%2fCargo.toml",
            "/.git/config",
            "/README.md",
            "/nope.js",
            "/a//b.js",
        ] {
            for files in [WebFiles::Embedded, dir.clone()] {
                let response = get_path(router(files, ""), path, None).await;
                assert_eq!(response.status(), StatusCode::NOT_FOUND, "{path}");
            }
        }
    }

    #[test]
    fn only_plain_relative_names_are_paths() {
        for good in ["index.html", "a/b-c_d.js"] {
            assert!(is_safe_path(good), "{good}");
        }
        for bad in [
            "",
            "/etc/passwd",
            "../x",
            "a/../b",
            ".env",
            "a\\b.js",
            "a b.js",
            "a/",
            &"x".repeat(200),
        ] {
            assert!(!is_safe_path(bad), "{bad}");
        }
    }

    #[tokio::test]
    async fn a_directory_override_serves_its_own_files() {
        let dir = std::env::temp_dir().join(format!("credbroker-web-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join("index.html"), b"<!doctype html><title>dev</title>").unwrap();
        let response = get_path(router(WebFiles::Dir(dir.clone()), ""), "/", None).await;
        assert_eq!(response.headers()[header::X_CONTENT_TYPE_OPTIONS], "nosniff");
        assert_eq!(body_of(response).await, b"<!doctype html><title>dev</title>");
        std::fs::remove_dir_all(dir).unwrap();
    }
}
