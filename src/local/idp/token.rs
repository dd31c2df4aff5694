//! The token endpoint (RFC 6749 §4.1.3 and §6, PKCE per RFC 7636 §4.6) and `/mint`, the
//! command-line shortcut to an ID token.

use std::net::SocketAddr;
use std::sync::Arc;

use axum::Extension;
use axum::body::Bytes;
use axum::extract::{ConnectInfo, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde_json::{Map, Value, json};

use super::params::Params;
use super::store::random_token;
use super::users::{DevUser, check_extra_claims, check_sub};
use super::{DEV_CLIENT_ID, DevIdp, RefreshGrant, SignIn};

/// PKCE `code_verifier` length (RFC 7636 §4.1).
const CODE_VERIFIER_CHARS: std::ops::RangeInclusive<usize> = 43..=128;
/// The user `/mint` signs for when the request names none.
const DEFAULT_MINT_SUBJECT: &str = "alice";
/// How long browsers may cache a CORS preflight answer, in seconds.
const PREFLIGHT_MAX_AGE: &str = "600";

/// An error response of the token endpoint (RFC 6749 §5.2).
#[derive(Debug)]
struct OAuthError {
    status: StatusCode,
    error: &'static str,
    description: String,
}

impl OAuthError {
    fn invalid_request(description: impl Into<String>) -> OAuthError {
        OAuthError {
            status: StatusCode::BAD_REQUEST,
            error: "invalid_request",
            description: description.into(),
        }
    }

    fn invalid_grant(description: impl Into<String>) -> OAuthError {
        OAuthError {
            status: StatusCode::BAD_REQUEST,
            error: "invalid_grant",
            description: description.into(),
        }
    }
}

impl IntoResponse for OAuthError {
    fn into_response(self) -> Response {
        let body = json!({ "error": self.error, "error_description": self.description });
        no_store_json(self.status, &body)
    }
}

/// `POST /token`.
pub(super) async fn exchange(State(idp): State<Arc<DevIdp>>, headers: HeaderMap, body: Bytes) -> Response {
    let mut response = match idp.exchange(&headers, &body) {
        Ok(tokens) => no_store_json(StatusCode::OK, &tokens),
        Err(error) => error.into_response(),
    };
    allow_origin(&idp, &headers, &mut response);
    response
}

/// `OPTIONS /token`: the CORS preflight of browser apps on the allowed origins.
pub(super) async fn preflight(State(idp): State<Arc<DevIdp>>, headers: HeaderMap) -> Response {
    let mut response = StatusCode::NO_CONTENT.into_response();
    if allow_origin(&idp, &headers, &mut response) {
        let response_headers = response.headers_mut();
        response_headers.insert(
            header::ACCESS_CONTROL_ALLOW_METHODS,
            HeaderValue::from_static("POST"),
        );
        response_headers.insert(
            header::ACCESS_CONTROL_ALLOW_HEADERS,
            HeaderValue::from_static("content-type, authorization"),
        );
        response_headers.insert(
            header::ACCESS_CONTROL_MAX_AGE,
            HeaderValue::from_static(PREFLIGHT_MAX_AGE),
        );
    }
    response
}

/// The body of `POST /mint`.
#[derive(Debug, serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct MintRequest {
    #[serde(default)]
    sub: Option<String>,
    #[serde(default)]
    claims: Map<String, Value>,
}

/// `POST /mint`: `{"sub": ..., "claims": {...}}` → `{"id_token": ...}`. A `sub` naming a preset
/// user (`alice`, `bob`, `carol`) starts from that user's profile claims; `claims` add to or
/// override them.
pub(super) async fn mint(
    State(idp): State<Arc<DevIdp>>,
    peer: Option<Extension<ConnectInfo<SocketAddr>>>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    if let Some(Extension(ConnectInfo(address))) = peer
        && !address.ip().to_canonical().is_loopback()
    {
        return OAuthError {
            status: StatusCode::FORBIDDEN,
            error: "access_denied",
            description: "/mint only answers requests from this machine".into(),
        }
        .into_response();
    }
    match idp.mint_request(&headers, &body) {
        Ok(id_token) => no_store_json(StatusCode::OK, &json!({ "id_token": id_token })),
        Err(error) => error.into_response(),
    }
}

impl DevIdp {
    fn exchange(&self, headers: &HeaderMap, body: &[u8]) -> Result<Value, OAuthError> {
        require_content_type(headers, "application/x-www-form-urlencoded")?;
        let params = Params::parse(body).map_err(OAuthError::invalid_request)?;
        let client_id = params.require("client_id").map_err(OAuthError::invalid_request)?;
        if client_id != DEV_CLIENT_ID {
            return Err(OAuthError {
                status: StatusCode::UNAUTHORIZED,
                error: "invalid_client",
                description: format!("the dev provider only knows client `{DEV_CLIENT_ID}`"),
            });
        }
        match params.get("grant_type") {
            Some("authorization_code") => self.redeem_code(&params),
            Some("refresh_token") => self.refresh(&params),
            Some(_) => Err(OAuthError {
                status: StatusCode::BAD_REQUEST,
                error: "unsupported_grant_type",
                description: "grant_type must be authorization_code or refresh_token".into(),
            }),
            None => Err(OAuthError::invalid_request("parameter `grant_type` is required")),
        }
    }

    fn redeem_code(&self, params: &Params) -> Result<Value, OAuthError> {
        let code = params.require("code").map_err(OAuthError::invalid_request)?;
        let redirect_uri = params
            .require("redirect_uri")
            .map_err(OAuthError::invalid_request)?;
        let verifier = params
            .require("code_verifier")
            .map_err(OAuthError::invalid_request)?;
        check_code_verifier(verifier)?;
        // Taken before any further check: a code is spent by its first redemption attempt.
        let issued = self
            .codes
            .take(code)
            .ok_or_else(|| OAuthError::invalid_grant("the code is unknown, expired or already used"))?;
        if issued.redirect_uri != redirect_uri {
            return Err(OAuthError::invalid_grant(
                "redirect_uri differs from the one the code was issued for",
            ));
        }
        if pkce_challenge(verifier) != issued.code_challenge {
            return Err(OAuthError::invalid_grant(
                "code_verifier does not match the code_challenge (PKCE S256)",
            ));
        }
        let refresh_token = self.refresh_tokens.insert(RefreshGrant {
            sign_in: issued.sign_in.clone(),
            scope: issued.scope.clone(),
        });
        Ok(self.token_response(
            &issued.sign_in,
            issued.nonce.as_deref(),
            &refresh_token,
            &issued.scope,
        ))
    }

    /// A new ID token for the same sign-in. The refresh token stays valid until it expires (no
    /// rotation), so several tabs of a dev app can refresh independently.
    fn refresh(&self, params: &Params) -> Result<Value, OAuthError> {
        let refresh_token = params
            .require("refresh_token")
            .map_err(OAuthError::invalid_request)?;
        let grant = self
            .refresh_tokens
            .get(refresh_token)
            .ok_or_else(|| OAuthError::invalid_grant("the refresh token is unknown or expired"))?;
        // No nonce: a refreshed ID token carries none (OpenID Connect Core §12.2).
        Ok(self.token_response(&grant.sign_in, None, refresh_token, &grant.scope))
    }

    /// The successful token response (RFC 6749 §5.1). The access token is opaque and random:
    /// nothing here accepts it, clients only need it to exist.
    fn token_response(
        &self,
        sign_in: &SignIn,
        nonce: Option<&str>,
        refresh_token: &str,
        scope: &str,
    ) -> Value {
        json!({
            "access_token": random_token(),
            "token_type": "Bearer",
            "expires_in": self.token_lifetime.as_secs(),
            "id_token": self.id_token(sign_in, nonce),
            "refresh_token": refresh_token,
            "scope": scope,
        })
    }

    fn mint_request(&self, headers: &HeaderMap, body: &[u8]) -> Result<String, OAuthError> {
        require_content_type(headers, "application/json")?;
        let request: MintRequest =
            serde_json::from_slice(body).map_err(|e| OAuthError::invalid_request(format!("body: {e}")))?;
        let sub = request.sub.as_deref().unwrap_or(DEFAULT_MINT_SUBJECT);
        check_sub(sub).map_err(OAuthError::invalid_request)?;
        check_extra_claims(&request.claims).map_err(OAuthError::invalid_request)?;
        let mut user = self
            .presets
            .iter()
            .find(|preset| preset.sub == sub)
            .cloned()
            .unwrap_or_else(|| DevUser {
                sub: sub.to_string(),
                email: None,
                name: None,
                extra: Map::new(),
            });
        user.extra.extend(request.claims);
        Ok(self.id_token(&self.sign_in_now(user), None))
    }
}

/// `BASE64URL(SHA256(code_verifier))`, the S256 transformation.
fn pkce_challenge(verifier: &str) -> String {
    let digest = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, verifier.as_bytes());
    URL_SAFE_NO_PAD.encode(digest.as_ref())
}

/// A verifier is 43 to 128 unreserved characters (RFC 7636 §4.1).
fn check_code_verifier(verifier: &str) -> Result<(), OAuthError> {
    let unreserved = |c: u8| c.is_ascii_alphanumeric() || b"-._~".contains(&c);
    if CODE_VERIFIER_CHARS.contains(&verifier.len()) && verifier.bytes().all(unreserved) {
        Ok(())
    } else {
        Err(OAuthError::invalid_request(
            "code_verifier must be 43 to 128 characters of A-Z a-z 0-9 - . _ ~",
        ))
    }
}

fn require_content_type(headers: &HeaderMap, expected: &str) -> Result<(), OAuthError> {
    let media_type = headers
        .get(header::CONTENT_TYPE)
        .and_then(|value| value.to_str().ok())
        .and_then(|value| value.split(';').next())
        .map(str::trim);
    match media_type {
        Some(found) if found.eq_ignore_ascii_case(expected) => Ok(()),
        _ => Err(OAuthError::invalid_request(format!(
            "Content-Type must be {expected}"
        ))),
    }
}

/// Lets a browser app on an allowed origin read the response; returns whether it was allowed.
fn allow_origin(idp: &DevIdp, request: &HeaderMap, response: &mut Response) -> bool {
    let response_headers = response.headers_mut();
    response_headers.append(header::VARY, HeaderValue::from_static("Origin"));
    let origin = request.get(header::ORIGIN).filter(|origin| {
        origin
            .to_str()
            .ok()
            .and_then(|text| url::Url::parse(text).ok())
            .is_some_and(|url| idp.allows(&url))
    });
    match origin {
        Some(origin) => {
            response_headers.insert(header::ACCESS_CONTROL_ALLOW_ORIGIN, origin.clone());
            true
        }
        None => false,
    }
}

fn no_store_json(status: StatusCode, body: &Value) -> Response {
    let mut response = (
        status,
        [(header::CONTENT_TYPE, HeaderValue::from_static("application/json"))],
        body.to_string(),
    )
        .into_response();
    response
        .headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    use axum::body::Body;
    use axum::http::Request;
    use tower::ServiceExt as _;

    /// Runs `POST /mint` as if it came from `peer` (real sockets here are all loopback).
    async fn mint_from(peer: SocketAddr) -> StatusCode {
        let issuer = url::Url::parse("http://127.0.0.1:8787/dev-idp").unwrap();
        let mut request = Request::post("/mint")
            .header(header::CONTENT_TYPE, "application/json")
            .body(Body::from(r#"{"sub":"alice"}"#))
            .unwrap();
        request.extensions_mut().insert(ConnectInfo(peer));
        let response = DevIdp::new(issuer).router().oneshot(request).await.unwrap();
        response.status()
    }

    #[tokio::test]
    async fn mint_refuses_other_machines() {
        assert_eq!(
            mint_from(SocketAddr::from(([10, 0, 0, 7], 40000))).await,
            StatusCode::FORBIDDEN
        );
        assert_eq!(
            mint_from(SocketAddr::from(([127, 0, 0, 1], 40000))).await,
            StatusCode::OK
        );
        let mapped_loopback: std::net::Ipv6Addr = "::ffff:127.0.0.1".parse().unwrap();
        assert_eq!(
            mint_from(SocketAddr::from((mapped_loopback, 40000))).await,
            StatusCode::OK
        );
    }

    #[test]
    fn pkce_s256_matches_rfc_7636_appendix_b() {
        assert_eq!(
            pkce_challenge("dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk"),
            "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM"
        );
    }

    #[test]
    fn code_verifier_shape() {
        assert!(check_code_verifier(&"a".repeat(43)).is_ok());
        assert!(check_code_verifier(&"a~._-".repeat(20)).is_ok());
        assert!(check_code_verifier(&"a".repeat(42)).is_err());
        assert!(check_code_verifier(&"a".repeat(129)).is_err());
        assert!(check_code_verifier(&format!("{}+", "a".repeat(43))).is_err());
    }

    #[test]
    fn cors_only_for_allowed_origins() {
        let issuer = url::Url::parse("http://127.0.0.1:8787/dev-idp").unwrap();
        let any_loopback = DevIdp::new(issuer.clone());
        let dev_stack = DevIdp::for_origins(issuer, vec!["http://127.0.0.1:8787".to_string()]);
        let allowed = |idp: &DevIdp, origin: &'static str| {
            let mut request = HeaderMap::new();
            request.insert(header::ORIGIN, HeaderValue::from_static(origin));
            let mut response = StatusCode::OK.into_response();
            let allowed = allow_origin(idp, &request, &mut response);
            let echoed = response
                .headers()
                .get(header::ACCESS_CONTROL_ALLOW_ORIGIN)
                .cloned();
            assert_eq!(echoed.is_some(), allowed, "{origin}");
            allowed
        };
        assert!(allowed(&any_loopback, "http://localhost:5173"));
        assert!(!allowed(&any_loopback, "https://evil.example"));
        assert!(allowed(&dev_stack, "http://127.0.0.1:8787"));
        // Another app on this machine is not the dev stack.
        assert!(!allowed(&dev_stack, "http://127.0.0.1:5173"));
        assert!(!allowed(&dev_stack, "http://localhost:8787"));
        assert!(!allowed(&dev_stack, "https://evil.example"));
    }
}
