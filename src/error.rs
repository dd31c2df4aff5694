//! The one error type at the HTTP boundary, and the only place that chooses statuses.
//!
//! Every error leaves as `application/problem+json` (RFC 9457) with `type`, `title`, `status`,
//! `detail` and a stable machine-readable `code` clients can switch on. Details name what was
//! wrong ("expected X, found Y") but never carry a token, a secret key or a session token.

use std::time::Duration;

use axum::Json;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::Serialize;

use crate::identity::SigningError;
use crate::pool::PoolError;
use crate::token::TokenError;

/// The media type of every error body.
pub const PROBLEM_JSON: &str = "application/problem+json";

/// Everything the API can answer instead of a success.
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    /// The request is not what the endpoint takes (bad JSON, missing field...).
    #[error("{detail}")]
    BadRequest {
        /// Stable code, e.g. `malformed_request`, `missing_id_token`.
        code: &'static str,
        /// What was wrong.
        detail: String,
    },
    /// The body's media type is not accepted.
    #[error("content type `{0}` is not accepted; send application/json or application/x-www-form-urlencoded")]
    UnsupportedMediaType(String),
    /// The body is larger than the configured limit.
    #[error("request body is over the {0}-byte limit")]
    BodyTooLarge(usize),
    /// No provider has that name.
    #[error("no provider named `{0}` is configured")]
    UnknownProvider(String),
    /// The ID token failed a check.
    #[error(transparent)]
    Token(#[from] TokenError),
    /// A claim rule does not hold; names the rule as configured, never the user's value.
    #[error("claim rule `{0}` is not satisfied")]
    RuleDenied(String),
    /// The identity pool refused or failed.
    #[error(transparent)]
    Pool(#[from] PoolError),
    /// A browser origin that is not in `allowed_origins`.
    #[error("origin `{0}` is not allowed")]
    OriginNotAllowed(String),
    /// The identity contract refused the caller (`identity::extract`): a missing, forged or
    /// mismatched assertion.
    #[error("{detail}")]
    IdentityRefused {
        /// Stable code: `invalid_assertion`, `identity_mismatch`, `no_identity`.
        code: &'static str,
        /// What was wrong.
        detail: String,
    },
    /// The identity assertion could not be signed (`identity::kms`).
    #[error(transparent)]
    IdentitySigning(#[from] SigningError),
    /// No such route.
    #[error("no such resource")]
    NotFound,
    /// The route exists but not for this method.
    #[error("method not allowed")]
    MethodNotAllowed,
}

/// The problem+json body.
#[derive(Debug, Serialize)]
struct Problem<'a> {
    #[serde(rename = "type")]
    kind: String,
    title: &'a str,
    status: u16,
    detail: String,
    code: &'a str,
}

impl ApiError {
    /// The stable code clients can switch on.
    pub fn code(&self) -> &'static str {
        match self {
            ApiError::BadRequest { code, .. } | ApiError::IdentityRefused { code, .. } => code,
            ApiError::UnsupportedMediaType(_) => "unsupported_media_type",
            ApiError::BodyTooLarge(_) => "body_too_large",
            ApiError::UnknownProvider(_) => "unknown_provider",
            ApiError::Token(error) => error.code(),
            ApiError::RuleDenied(_) => "claim_rule_denied",
            ApiError::Pool(error) => pool_code(error),
            ApiError::OriginNotAllowed(_) => "origin_not_allowed",
            ApiError::IdentitySigning(SigningError::Unavailable(_)) => "identity_signing_unavailable",
            ApiError::IdentitySigning(SigningError::NoIssuer) => "identity_issuer_unknown",
            ApiError::NotFound => "not_found",
            ApiError::MethodNotAllowed => "method_not_allowed",
        }
    }

    /// The HTTP status.
    pub fn status(&self) -> StatusCode {
        match self {
            ApiError::BadRequest { .. } => StatusCode::BAD_REQUEST,
            ApiError::UnsupportedMediaType(_) => StatusCode::UNSUPPORTED_MEDIA_TYPE,
            ApiError::BodyTooLarge(_) | ApiError::Token(TokenError::TooLarge { .. }) => {
                StatusCode::PAYLOAD_TOO_LARGE
            }
            ApiError::UnknownProvider(_) | ApiError::NotFound => StatusCode::NOT_FOUND,
            ApiError::Token(TokenError::KeysUnavailable(_)) => StatusCode::BAD_GATEWAY,
            // RFC 6750 §3.1: a valid token short of the scope a resource needs is 403.
            ApiError::Token(error) if error.code() == "insufficient_scope" => StatusCode::FORBIDDEN,
            ApiError::Token(_) => StatusCode::UNAUTHORIZED,
            ApiError::RuleDenied(_) | ApiError::OriginNotAllowed(_) | ApiError::IdentityRefused { .. } => {
                StatusCode::FORBIDDEN
            }
            ApiError::Pool(PoolError::NotAuthorized(_)) => StatusCode::FORBIDDEN,
            ApiError::Pool(PoolError::Throttled { .. }) => StatusCode::TOO_MANY_REQUESTS,
            ApiError::Pool(_) | ApiError::IdentitySigning(SigningError::Unavailable(_)) => {
                StatusCode::BAD_GATEWAY
            }
            ApiError::IdentitySigning(SigningError::NoIssuer) => StatusCode::INTERNAL_SERVER_ERROR,
            ApiError::MethodNotAllowed => StatusCode::METHOD_NOT_ALLOWED,
        }
    }

    fn retry_after(&self) -> Option<Duration> {
        match self {
            ApiError::Pool(PoolError::Throttled { retry_after }) => Some(*retry_after),
            _ => None,
        }
    }
}

fn pool_code(error: &PoolError) -> &'static str {
    match error {
        PoolError::NotAuthorized(_) => "pool_not_authorized",
        PoolError::NotFound(_) => "pool_not_found",
        PoolError::Throttled { .. } => "pool_throttled",
        PoolError::Invalid(_) => "pool_rejected_request",
        PoolError::External(_) => "pool_external_error",
        PoolError::Unavailable(_) => "pool_unavailable",
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let status = self.status();
        let code = self.code();
        // Server-side failures are logged with their cause; client errors are routine.
        if status.is_server_error() {
            tracing::warn!(code, error = %self, "request failed");
        } else {
            tracing::info!(code, status = status.as_u16(), "request refused");
        }
        let problem = Problem {
            kind: format!("urn:credbroker:problem:{code}"),
            title: status.canonical_reason().unwrap_or("Error"),
            status: status.as_u16(),
            detail: self.to_string(),
            code,
        };
        let mut response = (status, Json(problem)).into_response();
        let headers = response.headers_mut();
        headers.insert(header::CONTENT_TYPE, HeaderValue::from_static(PROBLEM_JSON));
        headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
        if status == StatusCode::UNAUTHORIZED {
            headers.insert(
                header::WWW_AUTHENTICATE,
                HeaderValue::from_static("Bearer error=\"invalid_token\""),
            );
        }
        if code == "insufficient_scope" {
            headers.insert(
                header::WWW_AUTHENTICATE,
                HeaderValue::from_static("Bearer error=\"insufficient_scope\""),
            );
        }
        if let Some(after) = self.retry_after() {
            headers.insert(header::RETRY_AFTER, HeaderValue::from(after.as_secs().max(1)));
        }
        response
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use http_body_util::BodyExt;

    async fn body_of(response: Response) -> serde_json::Value {
        let bytes = response.into_body().collect().await.unwrap().to_bytes();
        serde_json::from_slice(&bytes).unwrap()
    }

    #[tokio::test]
    async fn token_errors_are_401_with_www_authenticate() {
        let response = ApiError::Token(TokenError::BadSignature).into_response();
        assert_eq!(response.status(), StatusCode::UNAUTHORIZED);
        assert_eq!(
            response.headers()[header::WWW_AUTHENTICATE],
            "Bearer error=\"invalid_token\""
        );
        assert_eq!(response.headers()[header::CONTENT_TYPE], PROBLEM_JSON);
        let body = body_of(response).await;
        assert_eq!(body["code"], "bad_signature");
        assert_eq!(body["status"], 401);
        assert_eq!(body["type"], "urn:credbroker:problem:bad_signature");
    }

    #[tokio::test]
    async fn throttling_carries_retry_after() {
        let response = ApiError::Pool(PoolError::Throttled {
            retry_after: Duration::from_secs(3),
        })
        .into_response();
        assert_eq!(response.status(), StatusCode::TOO_MANY_REQUESTS);
        assert_eq!(response.headers()[header::RETRY_AFTER], "3");
        assert_eq!(body_of(response).await["code"], "pool_throttled");
    }

    #[test]
    fn statuses_follow_the_documented_table() {
        let cases = [
            (ApiError::UnknownProvider("x".into()), 404),
            (ApiError::RuleDenied("hd:x".into()), 403),
            (ApiError::Pool(PoolError::NotAuthorized("no".into())), 403),
            (ApiError::Pool(PoolError::Unavailable("down".into())), 502),
            (ApiError::Token(TokenError::KeysUnavailable("down".into())), 502),
            (ApiError::Token(TokenError::TooLarge { max: 1, found: 2 }), 413),
            (ApiError::BodyTooLarge(10), 413),
            (
                ApiError::Token(TokenError::WrongClaim {
                    code: "insufficient_scope",
                    claim: "scope",
                    expected: "read".into(),
                    found: "write".into(),
                }),
                403,
            ),
            (ApiError::UnsupportedMediaType("text/plain".into()), 415),
            (
                ApiError::IdentitySigning(SigningError::Unavailable("throttled".into())),
                502,
            ),
            (ApiError::IdentitySigning(SigningError::NoIssuer), 500),
        ];
        for (error, status) in cases {
            assert_eq!(error.status().as_u16(), status, "{error:?}");
        }
    }

    #[tokio::test]
    async fn rule_denial_names_the_rule_only() {
        let body = body_of(ApiError::RuleDenied("hd:example.com".into()).into_response()).await;
        assert_eq!(body["code"], "claim_rule_denied");
        assert_eq!(body["detail"], "claim rule `hd:example.com` is not satisfied");
    }
}
