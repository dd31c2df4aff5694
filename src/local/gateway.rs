//! A local stand-in for API Gateway with `aws_iam` auth: every request under `/api/` must carry a
//! SigV4 signature (service `execute-api`) made with live credentials from the local pool,
//! verified by recomputing it with `aws-sigv4` over exactly the client's SignedHeaders. Failures
//! answer 403 with API Gateway's `{"message": ...}` shapes, except an unsigned navigation
//! (`Accept: text/html` first), which gets the same HTML page as the template's
//! `MISSING_AUTHENTICATION_TOKEN` gateway response: off to sign-in and back to the URL asked for. Verified requests reach the demo
//! routes or, with an upstream URL, the user's own app with `X-Credbroker-*` identity headers.
//!
//! - [`sigv4`]: the verification itself, a pure function testable without a pool.
//! - `demo`: `/whoami`, `/echo` and the small server-rendered `/app/` area.
//! - `proxy`: forwarding to `--upstream`.
//!
//! OWNER: helper "gateway". Contract (keep these signatures; add private helpers freely).

use std::sync::Arc;
use std::time::SystemTime;

use axum::Router;
use axum::body::{Body, Bytes};
use axum::extract::{DefaultBodyLimit, OriginalUri, Request, State};
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, Uri, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{MethodRouter, any};
use http_body_util::{BodyExt, LengthLimitError, Limited};
use url::Url;

use crate::local::pool::{Identity, LocalPool};

mod demo;
mod proxy;
pub mod sigv4;

use sigv4::{AuthType, Expectations, KeyLookup, SigV4Error, SignedRequest, SigningSecret};

/// The largest request body the gateway accepts (API Gateway's payload limit is 10 MB).
pub const MAX_BODY_BYTES: usize = 10 * 1024 * 1024;

/// How the gateway is set up.
#[derive(Debug, Clone)]
pub struct GatewaySettings {
    /// The region signatures must be scoped to.
    pub region: String,
    /// Where verified requests go instead of the demo routes (`--upstream`).
    pub upstream: Option<Url>,
    /// The API Gateway stage everything is served under (`--stage`), if any: the sign-in page
    /// for unsigned navigations is then `/{stage}/web/index.html`, as the template's is.
    pub stage: Option<String>,
}

/// The identity context of a verified request, put in the request's extensions for the routes.
#[derive(Debug, Clone)]
pub struct Caller {
    /// Who the signing credentials were issued to.
    pub identity: Arc<Identity>,
    /// The access key id the request was signed with.
    pub access_key_id: String,
    /// Whether it was signed in the `Authorization` header or presigned.
    pub auth_type: AuthType,
}

/// The routes under `/api/` (nest this router at `/api`).
pub fn router(pool: Arc<LocalPool>, settings: GatewaySettings) -> Router {
    let gate = Arc::new(Gate {
        pool,
        region: settings.region,
        signin_page: signin_redirect_html(settings.stage.as_deref()),
    });
    let routes = match settings.upstream {
        Some(upstream) => proxy::router(upstream),
        None => demo::router(),
    };
    routes
        .layer(middleware::from_fn_with_state(gate, authenticate))
        // The extractors behind the gate (JSON, forms, multipart) get the gateway's own limit
        // instead of axum's 2 MB default.
        .layer(DefaultBodyLimit::max(MAX_BODY_BYTES))
}

/// What the authentication middleware needs.
struct Gate {
    pool: Arc<LocalPool>,
    region: String,
    /// [`SIGNIN_REDIRECT_TEMPLATE`] as API Gateway would render it for this stage.
    signin_page: String,
}

/// Verifies every request before it reaches a route; CORS preflights pass unauthenticated, as
/// API Gateway lets them when CORS is configured.
async fn authenticate(State(gate): State<Arc<Gate>>, request: Request, next: Next) -> Response {
    if request.method() == Method::OPTIONS {
        return StatusCode::NO_CONTENT.into_response();
    }
    let (mut parts, body) = request.into_parts();
    let body = match read_bounded(body).await {
        Ok(body) => body,
        Err(response) => return *response,
    };
    // Clients sign the full path, `/api` included, which `nest` strips from `parts.uri`.
    let uri = parts
        .extensions
        .get::<OriginalUri>()
        .map_or(&parts.uri, |original| &original.0);
    let target = uri.path_and_query().map_or("/", |pq| pq.as_str());
    let headers = headers_with_host(&parts.headers, uri);
    let signed = SignedRequest {
        method: parts.method.as_str(),
        target,
        headers: &headers,
        body: &body,
    };
    let now = SystemTime::now();
    let verified = sigv4::verify(
        &signed,
        &Expectations::api_gateway(now, &gate.region),
        |access_key_id| lookup_key(&gate.pool, access_key_id, now),
    );
    match verified {
        Ok(caller) => {
            parts.extensions.insert(Caller {
                identity: caller.owner,
                access_key_id: caller.access_key_id,
                auth_type: caller.auth_type,
            });
            next.run(Request::from_parts(parts, Body::from(body))).await
        }
        Err(error) => {
            tracing::debug!(error_type = error.error_type(), %error, "gateway refused a request");
            refusal(&error, &parts.headers, Some(&gate.signin_page))
        }
    }
}

/// The whole body, or the response refusing it (413 past [`MAX_BODY_BYTES`]).
async fn read_bounded(body: Body) -> Result<Bytes, Box<Response>> {
    match Limited::new(body, MAX_BODY_BYTES).collect().await {
        Ok(collected) => Ok(collected.to_bytes()),
        Err(error) if error.downcast_ref::<LengthLimitError>().is_some() => Err(Box::new(json_message(
            StatusCode::PAYLOAD_TOO_LARGE,
            "Request Too Long",
        ))),
        Err(_) => Err(Box::new(json_message(
            StatusCode::BAD_REQUEST,
            "Could not read the request body",
        ))),
    }
}

/// HTTP/2 requests carry the host in the URI (`:authority`), not in a `Host` header; the
/// signature covers it under the name `host` either way.
fn headers_with_host(headers: &HeaderMap, uri: &axum::http::Uri) -> HeaderMap {
    let mut headers = headers.clone();
    if headers.contains_key(header::HOST) {
        return headers;
    }
    if let Some(value) = uri
        .authority()
        .and_then(|authority| HeaderValue::from_str(authority.as_str()).ok())
    {
        headers.insert(header::HOST, value);
    }
    headers
}

/// The pool's answer as the verifier wants it. The pool only returns live credentials, so an
/// expired key reads as unknown unless the pool still hands it out past its expiration.
fn lookup_key(pool: &LocalPool, access_key_id: &str, now: SystemTime) -> KeyLookup<Arc<Identity>> {
    match pool.lookup(access_key_id) {
        None => KeyLookup::Unknown,
        Some(issued) if issued.credentials.expiration <= now => KeyLookup::Expired,
        Some(issued) => KeyLookup::Live(SigningSecret {
            secret_access_key: issued.credentials.secret_access_key,
            session_token: Some(issued.credentials.session_token),
            owner: issued.identity,
        }),
    }
}

/// The HTML answer to an unsigned navigation, shared with `template.yaml`'s
/// `MISSING_AUTHENTICATION_TOKEN` gateway response (tests/deploy/test_template.py compares them).
/// `$context.stage` is API Gateway's substitution; `__CREDBROKER_WEB__` the client's folder.
pub const SIGNIN_REDIRECT_TEMPLATE: &str = include_str!("gateway/signin-redirect.html");

/// Where the local stack serves the web client, relative to its root (`web/` in AWS, and
/// locally under a `--stage`).
const LOCAL_WEB_DIR: &str = "";
/// Where API Gateway serves it, relative to the stage (the template's `/web/{file}` routes).
const STAGE_WEB_DIR: &str = "web/";

/// Whether API Gateway would pick a `text/html` response template for this request. It selects
/// a gateway response's template by the request's `Accept`, honouring only its first media type
/// (<https://docs.aws.amazon.com/apigateway/latest/developerguide/api-gateway-payload-encodings-workflow.html>:
/// "When a request contains multiple media types in its Accept header, API Gateway honors only
/// the first Accept media type"), and falls back to `application/json` when `Accept` is absent or
/// matches no template (<https://docs.aws.amazon.com/apigateway/latest/developerguide/api-gateway-gatewayResponse-definition.html>).
/// Every browser's navigation `Accept` starts with `text/html`; `fetch()` sends `*/*`.
fn wants_html(headers: &HeaderMap) -> bool {
    headers
        .get(header::ACCEPT)
        .and_then(|accept| accept.to_str().ok())
        .and_then(|accept| accept.split(',').next())
        .and_then(|first| first.split(';').next())
        .is_some_and(|media_type| media_type.trim().eq_ignore_ascii_case("text/html"))
}

/// The page the template's gateway response renders: for a stage-less URL (a custom domain, the
/// plain dev stack) the client is at the root; under a stage, at `/{stage}/web/`.
fn signin_redirect_html(stage: Option<&str>) -> String {
    let (stage, web) = stage.map_or(("", LOCAL_WEB_DIR), |stage| (stage, STAGE_WEB_DIR));
    SIGNIN_REDIRECT_TEMPLATE
        .replace("$context.stage", stage)
        .replace("__CREDBROKER_WEB__", web)
}

/// The 403 page that sends an unsigned navigation to sign-in and back.
fn signin_redirect_page(page: &str) -> Response {
    let mut response = (StatusCode::FORBIDDEN, axum::response::Html(page.to_owned())).into_response();
    let headers = response.headers_mut();
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    headers.insert(header::VARY, HeaderValue::from_static("Accept"));
    response
}

/// The 403 for `error`, as this API's gateway responses shape it: an unsigned navigation gets
/// the sign-in `page` (the template's `MISSING_AUTHENTICATION_TOKEN` response for `text/html`)
/// when there is one; everything else API Gateway's `{"message": ...}`.
fn refusal(error: &SigV4Error, headers: &HeaderMap, page: Option<&str>) -> Response {
    let response = match page {
        Some(page) if *error == SigV4Error::MissingAuthenticationToken && wants_html(headers) => {
            signin_redirect_page(page)
        }
        _ => json_message(StatusCode::FORBIDDEN, &error.to_string()),
    };
    with_error_type(response, error)
}

/// The fallback of a dev stack served under `stage`: API Gateway's 403 `Missing Authentication
/// Token` for a path it has no route for, whatever the method and signature (a path that
/// matches no deployed resource, AWS Knowledge Center:
/// <https://aws.amazon.com/premiumsupport/knowledge-center/api-gateway-403-custom-domain/>).
/// Inside the stage that is this API's own `MISSING_AUTHENTICATION_TOKEN` gateway response
/// (<https://docs.aws.amazon.com/apigateway/latest/developerguide/api-gateway-gatewayResponse-definition.html>),
/// so a navigation gets the sign-in page there as on an unsigned route; outside it no deployment
/// of this API, and so none of its gateway responses, answers, and the default JSON is all there
/// is.
pub fn unrouted(stage: &str) -> MethodRouter {
    let stage_root = format!("/{stage}");
    let page: Arc<str> = signin_redirect_html(Some(stage)).into();
    any(move |uri: Uri, headers: HeaderMap| {
        let inside = uri
            .path()
            .strip_prefix(&stage_root)
            .is_some_and(|rest| rest.is_empty() || rest.starts_with('/'));
        let page = inside.then_some(&*page);
        std::future::ready(refusal(&SigV4Error::MissingAuthenticationToken, &headers, page))
    })
}

/// `response` with API Gateway's `x-amzn-errortype` header naming `error`.
fn with_error_type(mut response: Response, error: &SigV4Error) -> Response {
    response
        .headers_mut()
        .insert("x-amzn-errortype", HeaderValue::from_static(error.error_type()));
    response
}

/// API Gateway's error shape: `{"message": ...}` as `application/json`.
fn json_message(status: StatusCode, message: &str) -> Response {
    (status, axum::Json(serde_json::json!({ "message": message }))).into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn accept(value: &str) -> HeaderMap {
        let mut headers = HeaderMap::new();
        headers.insert(header::ACCEPT, HeaderValue::from_str(value).unwrap());
        headers
    }

    #[test]
    fn only_a_first_media_type_of_text_html_gets_the_page() {
        let chrome = "text/html,application/xhtml+xml,application/xml;q=0.9,image/avif,*/*;q=0.8";
        assert!(wants_html(&accept(chrome)));
        assert!(wants_html(&accept("Text/HTML; charset=utf-8")));
        for api_client in ["application/json", "*/*", "application/json, text/html", ""] {
            assert!(!wants_html(&accept(api_client)), "{api_client}");
        }
        assert!(!wants_html(&HeaderMap::new()));
    }

    #[test]
    fn the_local_page_has_no_placeholders_left() {
        let page = signin_redirect_html(None);
        let response = signin_redirect_page(&page);
        assert_eq!(response.status(), StatusCode::FORBIDDEN);
        assert_eq!(response.headers()[header::CACHE_CONTROL], "no-store");
        assert!(!page.contains("$context") && !page.contains("__CREDBROKER"));
        let staged = signin_redirect_html(Some("prod"));
        assert!(staged.contains(r#"const stage = "prod";"#) && staged.contains(r#"const web = "web/";"#));
        // API Gateway's templates are plain substitution: any other `$` would be read as a variable.
        assert_eq!(SIGNIN_REDIRECT_TEMPLATE.matches('$').count(), 1);
    }
}
