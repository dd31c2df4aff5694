//! The HTTP API, one axum [`Router`] for Lambda (`lambda_http`) and local servers alike.
//!
//! - `POST /auth/signin/{provider}`: `{"id_token": "...", "identity_id": "..."}` (JSON or form)
//!   → credentials. `identity_id` is optional: the one an earlier sign-in answered, sent back on
//!   renewal so the broker can skip `GetId` (see [`crate::broker`]).
//! - `GET /auth/config`: what a browser client needs to start a sign-in.
//! - `GET /web/*`: the browser client ([`crate::assets`]), in [`router`] only.
//!
//! CORS is an allowlist: a request carrying an `Origin` that is not listed is refused outright
//! (403 `origin_not_allowed`), preflights of listed origins are answered here, and every
//! response to a listed origin — errors included — carries the CORS headers, so browsers show
//! the real error instead of an opaque CORS failure. A same-origin request (its `Origin` names
//! the `Host` it was sent to, over https or to a loopback host) is not cross-origin and passes
//! without being listed: the deployed client under `/web/` on the API origin signs in that way,
//! and the template cannot list the API's own URL in the configuration the API's function reads
//! (a dependency cycle).

use std::sync::Arc;
use std::time::{Instant, SystemTime};

use aws_lc_rs::rand::SecureRandom;
use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{DefaultBodyLimit, Path, Request, State};
use axum::http::{Extensions, HeaderMap, HeaderValue, Method, StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use lambda_http::request::RequestContext;
use serde::Serialize;
use time::format_description::well_known::Rfc3339;

use crate::assets::{self, WebFiles};
use crate::broker::{Broker, SignIn};
use crate::config::BrowserFlow;
use crate::error::ApiError;
use crate::provider::ClientEndpoints;
use crate::telemetry;
use crate::token::Claims;

/// How long browsers may cache a preflight answer, in seconds.
const PREFLIGHT_MAX_AGE: &str = "600";
/// Headers a browser may send cross-origin: the sign-in body type, and SigV4's own headers for
/// signed calls to routes behind the same CORS policy.
const ALLOWED_REQUEST_HEADERS: &str =
    "authorization, content-type, x-amz-date, x-amz-security-token, x-amz-content-sha256, x-amz-user-agent";
/// Response headers a cross-origin script may read.
const EXPOSED_HEADERS: &str = "date, retry-after, www-authenticate";

/// The API as a whole application: the routes, problem+json answers for unknown paths and
/// methods, and the CORS allowlist around all of it. This is what the Lambda binary and
/// `credbroker serve` run.
pub fn router(broker: Arc<Broker>) -> Router {
    let cors = Cors::refusing(broker.allowed_origins(), "/");
    with_cors(
        routes(broker)
            // The browser client on the API's own origin (transparent mode needs that).
            .merge(assets::router(WebFiles::Embedded, "/web"))
            .fallback(|| async { ApiError::NotFound })
            .method_not_allowed_fallback(|| async { ApiError::MethodNotAllowed }),
        cors,
    )
}

/// Just the `/auth/*` routes with their body limit, for merging into a larger router (the dev
/// stack) that brings its own fallback and wraps the whole in [`with_cors`].
pub fn routes(broker: Arc<Broker>) -> Router {
    let body_limit = broker.limits().max_body_bytes;
    Router::new()
        .route("/auth/signin/{provider}", post(sign_in))
        .route("/auth/config", get(client_config))
        .route("/auth/identity-keys", get(identity_keys))
        .layer(DefaultBodyLimit::max(body_limit))
        .with_state(broker)
}

/// Wraps a finished router in a CORS policy. It must be the outermost layer: preflights have to
/// be answered before routing, which would call them 405.
pub fn with_cors(router: Router, cors: Cors) -> Router {
    router.layer(middleware::from_fn_with_state(cors, cors_layer))
}

/// A CORS policy: listed origins get CORS headers (and preflight answers) everywhere; requests
/// from other origins are refused under `refuse_under` and passed through without CORS headers
/// elsewhere, where the browser enforces the policy — as API Gateway does for `aws_iam` routes,
/// and as an OpenID provider's own pages need (a form post under `Referrer-Policy: no-referrer`
/// carries `Origin: null`).
#[derive(Debug, Clone)]
pub struct Cors {
    origins: Arc<Vec<String>>,
    refuse_under: Arc<str>,
}

impl Cors {
    /// Lists `origins`, and refuses other origins for paths starting with `refuse_under`.
    pub fn refusing(origins: &[String], refuse_under: &str) -> Cors {
        Cors {
            origins: Arc::new(origins.to_vec()),
            refuse_under: refuse_under.into(),
        }
    }

    fn lists(&self, origin: &HeaderValue) -> bool {
        origin
            .to_str()
            .is_ok_and(|origin| self.origins.iter().any(|allowed| allowed == origin))
    }
}

/// Whether `origin` is the origin the request was sent to: the same host and port as `Host`,
/// over https (or plain http to a loopback host, as `credbroker serve` runs locally). Browsers
/// set both headers themselves, so a page cannot claim another page's origin this way.
fn is_same_origin(origin: &HeaderValue, host: Option<&HeaderValue>) -> bool {
    let (Ok(origin), Some(Ok(host))) = (origin.to_str(), host.map(HeaderValue::to_str)) else {
        return false;
    };
    let Ok(url) = url::Url::parse(origin) else {
        return false;
    };
    let authority = match url.port() {
        Some(port) => format!("{}:{port}", url.host_str().unwrap_or_default()),
        None => url.host_str().unwrap_or_default().to_string(),
    };
    url.origin().ascii_serialization() == origin
        && authority.eq_ignore_ascii_case(host)
        && crate::config::is_acceptable_url(&url)
}

async fn cors_layer(State(cors): State<Cors>, request: Request, next: Next) -> Response {
    let Some(origin) = request.headers().get(header::ORIGIN).cloned() else {
        return next.run(request).await;
    };
    if !cors.lists(&origin) {
        if is_same_origin(&origin, request.headers().get(header::HOST)) {
            return next.run(request).await;
        }
        if request.uri().path().starts_with(&*cors.refuse_under) {
            let shown = String::from_utf8_lossy(origin.as_bytes())
                .chars()
                .take(100)
                .collect();
            return ApiError::OriginNotAllowed(shown).into_response();
        }
        return next.run(request).await;
    }
    let is_preflight = request.method() == Method::OPTIONS
        && request
            .headers()
            .contains_key(header::ACCESS_CONTROL_REQUEST_METHOD);
    let mut response = if is_preflight {
        preflight_answer()
    } else {
        next.run(request).await
    };
    let headers = response.headers_mut();
    headers.insert(header::ACCESS_CONTROL_ALLOW_ORIGIN, origin);
    headers.append(header::VARY, HeaderValue::from_static("origin"));
    headers.insert(
        header::ACCESS_CONTROL_EXPOSE_HEADERS,
        HeaderValue::from_static(EXPOSED_HEADERS),
    );
    response
}

fn preflight_answer() -> Response {
    (
        StatusCode::NO_CONTENT,
        [
            (
                header::ACCESS_CONTROL_ALLOW_METHODS,
                "GET, POST, PUT, PATCH, DELETE, OPTIONS",
            ),
            (header::ACCESS_CONTROL_ALLOW_HEADERS, ALLOWED_REQUEST_HEADERS),
            (header::ACCESS_CONTROL_MAX_AGE, PREFLIGHT_MAX_AGE),
        ],
    )
        .into_response()
}

/// The sign-in answer (camelCase, like the AWS SDKs' credential objects).
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
struct SignInResponse {
    identity_id: String,
    provider: String,
    subject: String,
    credentials: CredentialsBody,
    claims: Claims,
    #[serde(skip_serializing_if = "Option::is_none")]
    identity_assertion: Option<String>,
    server_time: String,
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
struct CredentialsBody {
    access_key_id: String,
    secret_access_key: String,
    session_token: String,
    expiration: String,
}

/// `POST /auth/signin/{provider}`: the sign-in, its metrics, and its one log line — outcome
/// code, provider, duration and the request id API Gateway's own logs carry — so an operator can
/// follow one sign-in end to end. The line never holds the token or the credentials.
async fn sign_in(
    State(broker): State<Arc<Broker>>,
    Path(provider): Path<String>,
    extensions: Extensions,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Response {
    let started = Instant::now();
    let answer = sign_in_answer(&broker, &provider, &headers, &extensions, body).await;
    let took = started.elapsed();
    let (code, status) = match &answer {
        Ok(_) => (telemetry::OK, StatusCode::OK),
        Err(error) => (error.code(), error.status()),
    };
    let provider = if broker.has_provider(&provider) {
        provider.as_str()
    } else {
        telemetry::UNKNOWN_PROVIDER
    };
    telemetry::record_sign_in(provider, code, status, took);
    tracing::info!(
        target: "credbroker::signin",
        request_id = %request_id(&extensions, &headers),
        lambda_request_id = lambda_request_id(&extensions),
        provider,
        code,
        status = status.as_u16(),
        duration_ms = took.as_secs_f64() * 1000.0,
        identity_id = answer.as_ref().ok().map(|(signed_in, _)| signed_in.identity_id.as_str()),
        "sign-in"
    );
    match answer {
        Ok((signed_in, assertion)) => credentials_response(signed_in, assertion),
        Err(error) => error.into_response(),
    }
}

/// The sign-in and, with an identity signer, its assertion (issued as the `/auth` URL API
/// Gateway routed the request to, unless an issuer is configured).
async fn sign_in_answer(
    broker: &Broker,
    provider: &str,
    headers: &HeaderMap,
    extensions: &Extensions,
    body: Result<Bytes, BytesRejection>,
) -> Result<(SignIn, Option<String>), ApiError> {
    let body = body.map_err(|rejection| body_error(rejection, broker.limits().max_body_bytes))?;
    let request = sign_in_request(headers, &body)?;
    let signed_in = broker
        .renew(provider, &request.id_token, request.identity_id.as_deref())
        .await?;
    let issuer = extensions
        .get::<RequestContext>()
        .and_then(|context| gateway_auth_url(context, provider));
    let assertion = broker.identity_assertion(&signed_in, issuer.as_deref()).await?;
    Ok((signed_in, assertion))
}

fn credentials_response(signed_in: SignIn, assertion: Option<String>) -> Response {
    let mut response = Json(sign_in_body(signed_in, assertion)).into_response();
    // Credentials must never be stored by a browser or an intermediary cache.
    let headers = response.headers_mut();
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    headers.insert(header::PRAGMA, HeaderValue::from_static("no-cache"));
    response
}

/// The request id of the gateway in front: API Gateway's (from the Lambda event's request
/// context, the id its access logs and `x-amzn-RequestId` answer header show), else a
/// well-formed `x-amzn-requestid` request header (a gateway in front of `credbroker serve`),
/// else a fresh random id.
pub fn request_id(extensions: &Extensions, headers: &HeaderMap) -> String {
    gateway_request_id(extensions)
        .or_else(|| {
            headers
                .get(REQUEST_ID_HEADER)
                .and_then(|value| value.to_str().ok())
                .filter(|id| is_plain_request_id(id))
                .map(str::to_string)
        })
        .unwrap_or_else(fresh_request_id)
}

/// The request header a gateway may pass its request id in.
const REQUEST_ID_HEADER: &str = "x-amzn-requestid";
/// Longest request id taken from a header (API Gateway's are 36-character UUIDs).
const MAX_REQUEST_ID_CHARS: usize = 64;

/// Only ids that cannot forge or break a log line: letters, digits, `-`, `_`, `.`, `:`.
fn is_plain_request_id(id: &str) -> bool {
    !id.is_empty()
        && id.len() <= MAX_REQUEST_ID_CHARS
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b':'))
}

fn gateway_request_id(extensions: &Extensions) -> Option<String> {
    use lambda_http::request::RequestContext;
    let id = match extensions.get::<RequestContext>()? {
        RequestContext::ApiGatewayV1(context) => context.request_id.as_deref(),
        RequestContext::ApiGatewayV2(context) => context.request_id.as_deref(),
        // Other event sources, should `lambda_http` features add them, carry no API Gateway id.
        #[allow(unreachable_patterns)]
        _ => None,
    };
    id.filter(|id| is_plain_request_id(id)).map(str::to_string)
}

/// The Lambda invocation's own request id (in Lambda's START/END/REPORT lines and in the
/// invocation's metrics line), when running in Lambda.
fn lambda_request_id(extensions: &Extensions) -> Option<&str> {
    extensions
        .get::<lambda_http::lambda_runtime::Context>()
        .map(|context| context.request_id.as_str())
}

fn fresh_request_id() -> String {
    let mut bytes = [0u8; 16];
    // The system RNG failing leaves zeros: an id that is merely not unique.
    let _ = aws_lc_rs::rand::SystemRandom::new().fill(&mut bytes);
    hex::encode(bytes)
}

fn body_error(rejection: BytesRejection, limit: usize) -> ApiError {
    if rejection.status() == StatusCode::PAYLOAD_TOO_LARGE {
        ApiError::BodyTooLarge(limit)
    } else {
        ApiError::BadRequest {
            code: "malformed_request",
            detail: "the request body could not be read".into(),
        }
    }
}

/// What a sign-in request carries.
#[derive(Debug, PartialEq, Eq)]
struct SignInRequest {
    id_token: String,
    /// The identity id of an earlier sign-in, if the client sent one back (empty = none).
    identity_id: Option<String>,
}

/// The fields of a JSON or urlencoded sign-in body.
fn sign_in_request(headers: &HeaderMap, body: &[u8]) -> Result<SignInRequest, ApiError> {
    let content_type = headers
        .get(header::CONTENT_TYPE)
        .and_then(|value| value.to_str().ok())
        .unwrap_or("");
    let media_type = content_type
        .split(';')
        .next()
        .unwrap_or("")
        .trim()
        .to_ascii_lowercase();
    let (token, identity_id) = match media_type.as_str() {
        "application/json" => {
            let object = json_object(body)?;
            (
                json_field(&object, "id_token")?,
                json_field(&object, "identity_id")?,
            )
        }
        "application/x-www-form-urlencoded" => {
            (form_field(body, "id_token")?, form_field(body, "identity_id")?)
        }
        _ => {
            let shown = content_type.chars().take(100).collect();
            return Err(ApiError::UnsupportedMediaType(shown));
        }
    };
    match token {
        Some(id_token) if !id_token.is_empty() => Ok(SignInRequest {
            id_token,
            identity_id: identity_id.filter(|id| !id.is_empty()),
        }),
        _ => Err(missing_id_token()),
    }
}

/// The one value of `name` in a form, if present.
fn form_field(body: &[u8], name: &str) -> Result<Option<String>, ApiError> {
    let mut values = url::form_urlencoded::parse(body).filter(|(key, _)| key == name);
    let value = values.next().map(|(_, value)| value.into_owned());
    if values.next().is_some() {
        return Err(ApiError::BadRequest {
            code: "malformed_request",
            detail: format!("the form carries `{name}` more than once"),
        });
    }
    Ok(value)
}

fn missing_id_token() -> ApiError {
    ApiError::BadRequest {
        code: "missing_id_token",
        detail: "the body has no `id_token`".into(),
    }
}

/// A JSON body, which must be an object: serde's derived structs would also take
/// `["<token>"]`, a shape the API does not document.
fn json_object(body: &[u8]) -> Result<serde_json::Map<String, serde_json::Value>, ApiError> {
    serde_json::from_slice(body).map_err(|e| ApiError::BadRequest {
        code: "malformed_request",
        detail: format!("the body is not a JSON object: {}", json_error_kind(&e)),
    })
}

/// The string member `name` of a JSON object, if present.
fn json_field(
    object: &serde_json::Map<String, serde_json::Value>,
    name: &str,
) -> Result<Option<String>, ApiError> {
    match object.get(name) {
        None => Ok(None),
        Some(serde_json::Value::String(value)) => Ok(Some(value.clone())),
        Some(_) => Err(ApiError::BadRequest {
            code: "malformed_request",
            detail: format!("`{name}` is not a string"),
        }),
    }
}

/// Names a serde_json error's category without echoing any of the input.
fn json_error_kind(error: &serde_json::Error) -> &'static str {
    match error.classify() {
        serde_json::error::Category::Io => "unreadable",
        serde_json::error::Category::Syntax => "invalid JSON syntax",
        serde_json::error::Category::Data => "not an object",
        serde_json::error::Category::Eof => "unexpected end of input",
    }
}

/// The `/auth` URL a sign-in request reached, as API Gateway reports it: `https://` +
/// `requestContext.domainName` + `requestContext.path` up to `/signin/{provider}`. The path
/// holds the stage (`/prod/auth/...` on the execute-api domain) or a custom domain's base path,
/// and both come from API Gateway's routing, not from a header the caller writes.
fn gateway_auth_url(context: &RequestContext, provider: &str) -> Option<String> {
    let RequestContext::ApiGatewayV1(context) = context else {
        return None;
    };
    let domain = context
        .domain_name
        .as_deref()
        .filter(|domain| !domain.is_empty())?;
    let path = context.path.as_deref()?;
    let base = path.strip_suffix(&format!("/signin/{provider}"))?;
    base.ends_with("/auth").then(|| format!("https://{domain}{base}"))
}

fn sign_in_body(signed_in: SignIn, identity_assertion: Option<String>) -> SignInResponse {
    let credentials = signed_in.credentials;
    SignInResponse {
        identity_id: signed_in.identity_id,
        provider: signed_in.provider,
        subject: signed_in.subject,
        credentials: CredentialsBody {
            access_key_id: credentials.access_key_id,
            secret_access_key: credentials.secret_access_key,
            session_token: credentials.session_token,
            expiration: rfc3339(credentials.expiration),
        },
        claims: signed_in.claims,
        identity_assertion,
        server_time: rfc3339(SystemTime::now()),
    }
}

/// A time in RFC 3339, UTC, whole seconds.
pub fn rfc3339(at: SystemTime) -> String {
    let at = time::OffsetDateTime::from(at)
        .replace_nanosecond(0)
        .unwrap_or(time::OffsetDateTime::UNIX_EPOCH);
    at.format(&Rfc3339).unwrap_or_default()
}

/// `GET /auth/identity-keys`: the JWKS apps verify identity assertions with (404 when this broker
/// signs none).
async fn identity_keys(State(broker): State<Arc<Broker>>) -> Result<Response, ApiError> {
    let signer = broker.identity_signer().ok_or(ApiError::NotFound)?;
    Ok(Json(signer.public_keys()).into_response())
}

/// `GET /auth/config`.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
struct ClientConfig {
    region: String,
    providers: Vec<ClientProvider>,
    signin_path: &'static str,
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
struct ClientProvider {
    name: String,
    kind: &'static str,
    client_ids: Vec<String>,
    /// The client id the browser signs in with (one of `client_ids`).
    client_id: String,
    /// Scopes to request; absent: the client's default.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    scopes: Vec<String>,
    /// `code` (+ PKCE) or `id_token` (implicit).
    flow: BrowserFlow,
    #[serde(flatten)]
    endpoints: ClientEndpoints,
}

async fn client_config(State(broker): State<Arc<Broker>>) -> Response {
    let mut providers = Vec::new();
    for provider in broker.providers() {
        let endpoints = provider.client_endpoints().await;
        providers.push(ClientProvider {
            name: provider.name().to_string(),
            kind: provider.kind().name(),
            client_ids: provider.audiences().to_vec(),
            client_id: provider.browser_client_id().to_string(),
            scopes: provider.browser_scopes().to_vec(),
            flow: provider.browser_flow(&endpoints),
            endpoints,
        });
    }
    let body = ClientConfig {
        region: broker.region().to_string(),
        providers,
        signin_path: "/auth/signin/{provider}",
    };
    ([(header::CACHE_CONTROL, "public, max-age=300")], Json(body)).into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn gateway(domain: &str, path: &str) -> RequestContext {
        let mut context = lambda_http::aws_lambda_events::apigw::ApiGatewayProxyRequestContext::default();
        context.domain_name = Some(domain.into());
        context.path = Some(path.into());
        RequestContext::ApiGatewayV1(context)
    }

    #[test]
    fn the_issuer_is_the_auth_url_the_gateway_routed_the_sign_in_to() {
        let execute_api = gateway(
            "abc123.execute-api.eu-west-1.amazonaws.com",
            "/prod/auth/signin/google",
        );
        assert_eq!(
            gateway_auth_url(&execute_api, "google").as_deref(),
            Some("https://abc123.execute-api.eu-west-1.amazonaws.com/prod/auth")
        );
        let custom = gateway("api.example.com", "/auth/signin/entra");
        assert_eq!(
            gateway_auth_url(&custom, "entra").as_deref(),
            Some("https://api.example.com/auth")
        );
        // A path that is not this route's, an empty domain: no issuer, never a guess.
        assert_eq!(gateway_auth_url(&custom, "google"), None);
        assert_eq!(
            gateway_auth_url(&gateway("", "/auth/signin/entra"), "entra"),
            None
        );
        assert_eq!(
            gateway_auth_url(&gateway("a.example", "/x/signin/entra"), "entra"),
            None
        );
    }

    fn json_headers(content_type: &str) -> HeaderMap {
        let mut headers = HeaderMap::new();
        headers.insert(header::CONTENT_TYPE, HeaderValue::from_str(content_type).unwrap());
        headers
    }

    fn id_token_from(headers: &HeaderMap, body: &[u8]) -> Result<String, ApiError> {
        sign_in_request(headers, body).map(|request| request.id_token)
    }

    #[test]
    fn id_token_from_json_and_form() {
        let json = id_token_from(
            &json_headers("application/json; charset=utf-8"),
            br#"{"id_token":"a.b.c"}"#,
        );
        assert_eq!(json.unwrap(), "a.b.c");
        let form = id_token_from(
            &json_headers("application/x-www-form-urlencoded"),
            b"id_token=a.b.c&x=1",
        );
        assert_eq!(form.unwrap(), "a.b.c");
    }

    #[test]
    fn the_identity_id_is_optional_beside_the_token() {
        let request = |content_type: &str, body: &[u8]| sign_in_request(&json_headers(content_type), body);
        let id = "us-east-1:0123abcd-0000-4000-8000-00000000abcd";
        let json = request(
            "application/json",
            format!(r#"{{"id_token":"t","identity_id":"{id}"}}"#).as_bytes(),
        );
        assert_eq!(json.unwrap().identity_id.as_deref(), Some(id));
        let form = request(
            "application/x-www-form-urlencoded",
            format!("id_token=t&identity_id={}", id.replace(':', "%3A")).as_bytes(),
        );
        assert_eq!(form.unwrap().identity_id.as_deref(), Some(id));
        let absent = request("application/json", br#"{"id_token":"t"}"#).unwrap();
        assert_eq!(absent.identity_id, None);
        let empty = request("application/json", br#"{"id_token":"t","identity_id":""}"#).unwrap();
        assert_eq!(empty.identity_id, None);
        let not_text = request("application/json", br#"{"id_token":"t","identity_id":7}"#).unwrap_err();
        assert_eq!(not_text.code(), "malformed_request");
        let twice = request(
            "application/x-www-form-urlencoded",
            b"id_token=t&identity_id=a&identity_id=b",
        )
        .unwrap_err();
        assert_eq!(twice.code(), "malformed_request");
    }

    #[test]
    fn id_token_errors_have_specific_codes() {
        let code = |content_type: &str, body: &[u8]| {
            id_token_from(&json_headers(content_type), body)
                .unwrap_err()
                .code()
        };
        assert_eq!(code("application/json", b"{"), "malformed_request");
        assert_eq!(code("application/json", b"{}"), "missing_id_token");
        assert_eq!(code("application/json", br#"["a.b.c"]"#), "malformed_request");
        assert_eq!(
            code("application/json", br#"{"id_token": 1}"#),
            "malformed_request"
        );
        assert_eq!(
            code("application/json", br#"{"id_token":""}"#),
            "missing_id_token"
        );
        assert_eq!(
            code("application/x-www-form-urlencoded", b"x=1"),
            "missing_id_token"
        );
        assert_eq!(
            code("application/x-www-form-urlencoded", b"id_token=a&id_token=b"),
            "malformed_request"
        );
        assert_eq!(code("text/plain", b"a.b.c"), "unsupported_media_type");
    }

    #[test]
    fn malformed_json_errors_do_not_echo_the_body() {
        let error = id_token_from(
            &json_headers("application/json"),
            br#"{"id_token": secret-looking"#,
        )
        .unwrap_err();
        assert!(!error.to_string().contains("secret"), "{error}");
    }

    #[test]
    fn same_origin_means_the_host_the_request_was_sent_to() {
        let same = |origin: &str, host: &str| {
            is_same_origin(
                &HeaderValue::from_str(origin).unwrap(),
                Some(&HeaderValue::from_str(host).unwrap()),
            )
        };
        let api = "abc123.execute-api.eu-west-1.amazonaws.com";
        assert!(same(&format!("https://{api}"), api));
        assert!(
            same("https://api.example.com", "API.Example.com"),
            "hosts compare without case"
        );
        assert!(same("http://127.0.0.1:8080", "127.0.0.1:8080"));
        assert!(!same(&format!("http://{api}"), api), "plain http off loopback");
        assert!(!same("https://evil.example", api));
        assert!(!same(&format!("https://{api}.evil.example"), api));
        assert!(!same(&format!("https://{api}:8443"), api), "another port");
        assert!(!same("http://127.0.0.1:8081", "127.0.0.1:8080"));
        assert!(!same(&format!("https://{api}/"), api), "not an origin");
        assert!(!same("null", "null"));
        let origin = HeaderValue::from_str(&format!("https://{api}")).unwrap();
        assert!(!is_same_origin(&origin, None), "no Host, no match");
    }

    /// A log writer into memory, for the sign-in line tests.
    #[derive(Clone, Default)]
    struct Captured(Arc<std::sync::Mutex<Vec<u8>>>);

    impl std::io::Write for Captured {
        fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(bytes);
            Ok(bytes.len())
        }

        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    /// The `credbroker::signin` line logged while one sign-in for `provider` with `extensions`
    /// and `headers` is answered (the provider is unknown, so no IdP or pool is needed).
    async fn sign_in_line(extensions: Extensions, headers: HeaderMap) -> String {
        let config = crate::config::Config::from_toml(
            "[identity_pool]\nid = \"us-east-1:00000000-0000-0000-0000-000000000000\"\n",
        )
        .unwrap();
        let broker = Arc::new(Broker::from_config(&config).await.unwrap());
        let captured = Captured::default();
        let writer = captured.clone();
        let subscriber = tracing_subscriber::fmt()
            .with_writer(move || writer.clone())
            .with_ansi(false)
            .finish();
        let _guard = tracing::subscriber::set_default(subscriber);
        let body = Ok(Bytes::from_static(br#"{"id_token":"a.b.c"}"#));
        let mut headers = headers;
        headers.insert(header::CONTENT_TYPE, HeaderValue::from_static("application/json"));
        let response = sign_in(State(broker), Path("nope".into()), extensions, headers, body).await;
        assert_eq!(response.status(), StatusCode::NOT_FOUND);
        let text = String::from_utf8(captured.0.lock().unwrap().clone()).unwrap();
        let line = text
            .lines()
            .find(|line| line.contains("credbroker::signin"))
            .unwrap();
        assert!(line.contains("code=\"unknown_provider\""), "{line}");
        assert!(
            line.contains("status=404") && line.contains("duration_ms="),
            "{line}"
        );
        assert!(line.contains("provider=\"(unknown)\""), "{line}");
        line.to_string()
    }

    #[tokio::test]
    async fn the_sign_in_line_carries_api_gateways_and_lambdas_request_ids() {
        let mut gateway = lambda_http::aws_lambda_events::apigw::ApiGatewayProxyRequestContext::default();
        gateway.request_id = Some("c0ffee00-1234-4a5b-9c8d-0123456789ab".into());
        let mut invocation = lambda_http::lambda_runtime::Context::default();
        invocation.request_id = "lambda-req-7".into();
        let mut extensions = Extensions::new();
        extensions.insert(lambda_http::request::RequestContext::ApiGatewayV1(gateway));
        extensions.insert(invocation);
        let mut headers = HeaderMap::new();
        // The event's own request context wins over a header a caller could set.
        headers.insert(REQUEST_ID_HEADER, HeaderValue::from_static("from-a-header"));
        let line = sign_in_line(extensions, headers).await;
        assert!(
            line.contains("request_id=c0ffee00-1234-4a5b-9c8d-0123456789ab"),
            "{line}"
        );
        assert!(line.contains("lambda_request_id=\"lambda-req-7\""), "{line}");
    }

    #[tokio::test]
    async fn under_serve_the_sign_in_line_takes_a_well_formed_x_amzn_requestid() {
        let mut headers = HeaderMap::new();
        headers.insert(REQUEST_ID_HEADER, HeaderValue::from_static("gw-req-42"));
        let line = sign_in_line(Extensions::new(), headers).await;
        assert!(line.contains("request_id=gw-req-42"), "{line}");
        // One that could forge a log line is replaced by a fresh id.
        let mut headers = HeaderMap::new();
        headers.insert(REQUEST_ID_HEADER, HeaderValue::from_static("x\" forged=1"));
        let line = sign_in_line(Extensions::new(), headers).await;
        assert!(!line.contains("forged"), "{line}");
    }

    #[test]
    fn rfc3339_is_utc_whole_seconds() {
        let at = SystemTime::UNIX_EPOCH + std::time::Duration::from_millis(1_700_000_000_123);
        assert_eq!(rfc3339(at), "2023-11-14T22:13:20Z");
    }
}
