//! The app side of the contract for Rust apps: an axum extractor, [`Identity`], that verifies the
//! assertion exactly as `python/credbroker_wsgi` does (steps 1–4 of `docs/identity.md`).
//!
//! The identity id comes from what API Gateway vouched for: the Lambda proxy request context
//! (`lambda_http` puts it in the request's extensions) or, for an HTTP backend reachable through
//! the gateway alone and only when [`IdentityVerifier::trusting_identity_header`] says so, the
//! `X-Credbroker-Identity-Id` header the gateway sets. The assertion is verified with the same
//! token code and key cache as provider ID tokens (`token`, `jwks`), pinned to ES256.

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use axum::extract::{FromRef, FromRequestParts};
use axum::http::HeaderMap;
use axum::http::request::Parts;
use lambda_http::request::RequestContext;
use serde_json::{Map, Value};
use url::Url;

use super::{ASSERTION_HEADER, AUDIENCE};
use crate::error::ApiError;
use crate::jwks::{JwksCache, JwksPolicy};
use crate::key::Algorithm;
use crate::token::{TokenError, UnverifiedToken, check_audience, check_times, string_claim};

/// The header an HTTP backend's gateway sets from `context.identity.cognitoIdentityId`.
pub const IDENTITY_ID_HEADER: &str = "x-credbroker-identity-id";
/// The largest assertion accepted.
const MAX_ASSERTION_BYTES: usize = 8 * 1024;
/// Clock skew tolerated on `exp` and `iat`.
const LEEWAY: Duration = Duration::from_secs(30);

/// The verified caller of a request.
#[derive(Debug, Clone, PartialEq)]
pub struct Identity {
    /// The Cognito identity id API Gateway verified for the request's signature.
    pub identity_id: String,
    /// The provider's configured name (`None` only when a missing assertion is allowed).
    pub provider: Option<String>,
    /// The provider's subject.
    pub subject: Option<String>,
    /// The provider's Logins key.
    pub logins_key: Option<String>,
    /// Exactly the claims the provider is configured to expose.
    pub claims: Map<String, Value>,
}

/// How an app verifies identities: the broker's issuer and keys, and what it trusts.
#[derive(Debug)]
pub struct IdentityVerifier {
    issuer: String,
    keys: JwksCache,
    trust_identity_header: bool,
    allow_missing_assertion: bool,
}

impl IdentityVerifier {
    /// Verifies assertions of the broker whose `/auth` URL is `issuer`, with the keys at
    /// `{issuer}/identity-keys` (fetched with `client`, which should refuse redirects).
    pub fn new(client: reqwest::Client, issuer: &Url) -> IdentityVerifier {
        let keys_url = Url::parse(&format!(
            "{}/identity-keys",
            issuer.as_str().trim_end_matches('/')
        ))
        .unwrap_or_else(|_| issuer.clone());
        IdentityVerifier {
            issuer: issuer.as_str().trim_end_matches('/').to_string(),
            keys: JwksCache::new(client, keys_url, key_policy()),
            trust_identity_header: false,
            allow_missing_assertion: false,
        }
    }

    /// Trusts `X-Credbroker-Identity-Id`: only for an HTTP backend reachable through the gateway
    /// alone (anyone reaching it directly could set the header).
    pub fn trusting_identity_header(mut self) -> IdentityVerifier {
        self.trust_identity_header = true;
        self
    }

    /// Accepts a request without an assertion as the identity id alone (presigned URLs).
    pub fn allowing_missing_assertion(mut self) -> IdentityVerifier {
        self.allow_missing_assertion = true;
        self
    }

    /// The caller of a request with these `parts`; `Ok(None)` for an anonymous one.
    pub async fn identify(&self, parts: &Parts) -> Result<Option<Identity>, ApiError> {
        let identity_id = self.trusted_identity_id(parts)?;
        let assertion = single_header(&parts.headers, ASSERTION_HEADER)?;
        let Some(identity_id) = identity_id else {
            return match assertion {
                Some(_) => Err(refused(
                    "identity_mismatch",
                    "an identity assertion came without an identity id vouched for by the gateway",
                )),
                None => Ok(None),
            };
        };
        let Some(assertion) = assertion else {
            if self.allow_missing_assertion {
                return Ok(Some(Identity {
                    identity_id,
                    provider: None,
                    subject: None,
                    logins_key: None,
                    claims: Map::new(),
                }));
            }
            return Err(refused(
                "invalid_assertion",
                "the X-Credbroker-Assertion header is missing",
            ));
        };
        let claims = self.verify(assertion).await.map_err(|error| match error {
            TokenError::KeysUnavailable(_) => ApiError::Token(error),
            error => refused(
                "invalid_assertion",
                format!("the assertion does not verify: {error}"),
            ),
        })?;
        if string_claim(&claims, "sub").ok() != Some(identity_id.as_str()) {
            return Err(refused(
                "identity_mismatch",
                "the assertion is for another identity than the request's signer",
            ));
        }
        let text = |name: &str| claims.get(name).and_then(Value::as_str).map(str::to_string);
        Ok(Some(Identity {
            provider: text("provider"),
            subject: text("subject"),
            logins_key: text("logins_key"),
            claims: claims
                .get("claims")
                .and_then(Value::as_object)
                .cloned()
                .unwrap_or_default(),
            identity_id,
        }))
    }

    fn trusted_identity_id(&self, parts: &Parts) -> Result<Option<String>, ApiError> {
        let found = match parts.extensions.get::<RequestContext>() {
            Some(context) => lambda_identity_id(context),
            None if self.trust_identity_header => {
                single_header(&parts.headers, IDENTITY_ID_HEADER)?.map(str::to_string)
            }
            None => None,
        };
        match found {
            Some(id) if !is_identity_id(&id) => Err(refused(
                "identity_mismatch",
                "the gateway's identity id is malformed",
            )),
            found => Ok(found),
        }
    }

    /// Signature (ES256 only, the broker's keys), `iss`, `aud`, `exp`/`iat`.
    async fn verify(&self, assertion: &str) -> Result<Map<String, Value>, TokenError> {
        let token = UnverifiedToken::parse(assertion, MAX_ASSERTION_BYTES)?;
        if token.header().alg != Algorithm::ES256 {
            return Err(TokenError::UnsupportedAlgorithm(format!(
                "expected ES256, found {}",
                token.header().alg.name()
            )));
        }
        let key = self
            .keys
            .key(token.header().kid.as_deref(), Algorithm::ES256)
            .await?;
        let claims = token.verify_signature(&key)?;
        let issuer = string_claim(&claims, "iss")?;
        if issuer != self.issuer {
            return Err(TokenError::WrongIssuer {
                expected: self.issuer.clone(),
                found: crate::untrusted::quote_untrusted(issuer),
            });
        }
        check_audience(&claims, &[AUDIENCE.to_string()])?;
        check_times(&claims, SystemTime::now(), LEEWAY)?;
        Ok(claims)
    }
}

/// The broker's keys: an hour at most, an unknown `kid` refetches at most once a minute.
fn key_policy() -> JwksPolicy {
    JwksPolicy {
        cooldown: Duration::from_secs(60),
        timeout: Duration::from_secs(5),
        min_max_age: Duration::from_secs(60),
        max_max_age: Duration::from_secs(3600),
        max_document_bytes: 64 * 1024,
        provider: crate::telemetry::NO_PROVIDER.into(),
    }
}

/// `requestContext.identity.cognitoIdentityId` (REST API), or the HTTP API's
/// `requestContext.authorizer.iam.cognitoIdentity.identityId`.
fn lambda_identity_id(context: &RequestContext) -> Option<String> {
    match context {
        RequestContext::ApiGatewayV1(context) => context.identity.cognito_identity_id.clone(),
        RequestContext::ApiGatewayV2(context) => context
            .authorizer
            .as_ref()?
            .iam
            .as_ref()?
            .cognito_identity
            .as_ref()?
            .identity_id
            .clone(),
        // ALB and WebSocket events carry no Cognito identity.
        _ => None,
    }
}

/// A Cognito identity id, `region:uuid` (the API's pattern `[\w-]+:[0-9a-f-]+`), bounded.
fn is_identity_id(id: &str) -> bool {
    let Some((region, uuid)) = id.split_once(':') else {
        return false;
    };
    let region_ok = (1..=50).contains(&region.len())
        && region
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_');
    let uuid_ok = (1..=64).contains(&uuid.len())
        && uuid
            .chars()
            .all(|c| c.is_ascii_digit() || ('a'..='f').contains(&c) || c == '-');
    region_ok && uuid_ok
}

/// A header's one value; a repeated or non-text one is refused rather than picked from.
fn single_header<'a>(headers: &'a HeaderMap, name: &str) -> Result<Option<&'a str>, ApiError> {
    let mut values = headers.get_all(name).iter();
    let (Some(value), None) = (values.next(), values.next()) else {
        return if headers.contains_key(name) {
            Err(refused(
                "identity_mismatch",
                format!("the {name} header is repeated"),
            ))
        } else {
            Ok(None)
        };
    };
    value
        .to_str()
        .map(Some)
        .map_err(|_| refused("invalid_assertion", format!("the {name} header is not text")))
}

/// Removes every `X-Credbroker-*` header, so that extractors after this one (and the handler)
/// cannot read an unverified identity from them (step 4).
fn strip_identity_headers(headers: &mut HeaderMap) {
    let names: Vec<_> = headers
        .keys()
        .filter(|name| name.as_str().starts_with("x-credbroker-"))
        .cloned()
        .collect();
    for name in names {
        headers.remove(name);
    }
}

fn refused(code: &'static str, detail: impl Into<String>) -> ApiError {
    ApiError::IdentityRefused {
        code,
        detail: detail.into(),
    }
}

/// An axum handler taking `Identity` gets the verified caller or answers 403 problem+json
/// (`invalid_assertion`, `identity_mismatch`, `no_identity` for an anonymous caller); the state
/// provides the verifier (`Arc<IdentityVerifier>: FromRef<S>`). Extractors after it no longer
/// see any `X-Credbroker-*` header.
impl<S> FromRequestParts<S> for Identity
where
    Arc<IdentityVerifier>: FromRef<S>,
    S: Send + Sync,
{
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Identity, ApiError> {
        let verifier = Arc::<IdentityVerifier>::from_ref(state);
        let identity = verifier.identify(parts).await?;
        strip_identity_headers(&mut parts.headers);
        identity.ok_or_else(|| {
            refused(
                "no_identity",
                "the request carries no identity vouched for by the gateway",
            )
        })
    }
}

#[cfg(test)]
mod tests {
    use axum::Router;
    use axum::body::Body;
    use axum::http::{Request, StatusCode};
    use axum::routing::get;
    use lambda_http::aws_lambda_events::apigw::ApiGatewayProxyRequestContext;
    use serde_json::json;
    use tower::ServiceExt;

    use super::*;
    use crate::identity::IdentitySigner;
    use crate::local::signing_key::DevIdentitySigner;

    const ALICE: &str = "us-east-1:11111111-2222-3333-4444-555555555555";
    const MALLORY: &str = "us-east-1:99999999-8888-7777-6666-555555555555";

    /// A broker publishing its identity keys on 127.0.0.1, and its signer.
    async fn broker() -> (Url, Arc<DevIdentitySigner>) {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let issuer = Url::parse(&format!("http://{}/auth", listener.local_addr().unwrap())).unwrap();
        let signer = Arc::new(DevIdentitySigner::generate(issuer.to_string()));
        let keys = signer.public_keys();
        let app = Router::new().route(
            "/auth/identity-keys",
            get(move || async move { axum::Json(keys) }),
        );
        tokio::spawn(async move { axum::serve(listener, app).await });
        (issuer, signer)
    }

    fn claims(issuer: &Url, sub: &str) -> Value {
        let now = SystemTime::now()
            .duration_since(SystemTime::UNIX_EPOCH)
            .unwrap()
            .as_secs();
        json!({
            "iss": issuer.as_str(), "aud": AUDIENCE, "sub": sub, "provider": "dev",
            "subject": "alice", "logins_key": "127.0.0.1/dev-idp",
            "claims": {"email": "alice@example.com"}, "iat": now, "exp": now + 3600,
        })
    }

    fn app(verifier: IdentityVerifier) -> Router {
        let whoami = |identity: Identity, headers: HeaderMap| async move {
            let left = headers
                .keys()
                .filter(|name| name.as_str().starts_with("x-credbroker-"))
                .count();
            axum::Json(json!({
                "identity_id": identity.identity_id, "subject": identity.subject,
                "provider": identity.provider, "claims": identity.claims, "identity_headers_left": left,
            }))
        };
        Router::new()
            .route("/me", get(whoami))
            .with_state(Arc::new(verifier))
    }

    fn lambda_request(identity_id: &str, assertion: Option<&str>) -> Request<Body> {
        let mut context = ApiGatewayProxyRequestContext::default();
        context.identity.cognito_identity_id = Some(identity_id.to_string());
        let mut request = Request::get("/me");
        if let Some(assertion) = assertion {
            request = request.header(ASSERTION_HEADER, assertion);
        }
        request
            .extension(RequestContext::ApiGatewayV1(context))
            .body(Body::empty())
            .unwrap()
    }

    async fn call(app: &Router, request: Request<Body>) -> (StatusCode, Value) {
        let answer = app.clone().oneshot(request).await.unwrap();
        let status = answer.status();
        let body = axum::body::to_bytes(answer.into_body(), 1 << 16).await.unwrap();
        (status, serde_json::from_slice(&body).unwrap())
    }

    fn verifier(issuer: &Url) -> IdentityVerifier {
        IdentityVerifier::new(reqwest::Client::new(), issuer)
    }

    #[tokio::test]
    async fn a_lambda_proxy_caller_gets_its_own_asserted_identity_only() {
        let (issuer, signer) = broker().await;
        let app = app(verifier(&issuer));
        let assertion = signer.assertion(&claims(&issuer, ALICE));
        let (status, seen) = call(&app, lambda_request(ALICE, Some(&assertion))).await;
        assert_eq!(status, StatusCode::OK, "{seen}");
        assert_eq!(seen["identity_id"], ALICE);
        assert_eq!(seen["subject"], "alice");
        assert_eq!(seen["claims"]["email"], "alice@example.com");
        // Another user's assertion, sent with alice's credentials: refused.
        let theirs = signer.assertion(&claims(&issuer, MALLORY));
        let (status, problem) = call(&app, lambda_request(ALICE, Some(&theirs))).await;
        assert_eq!(
            (status, problem["code"].as_str()),
            (StatusCode::FORBIDDEN, Some("identity_mismatch"))
        );
    }

    #[tokio::test]
    async fn an_http_backend_trusts_the_gateway_header_only_when_told() {
        let (issuer, signer) = broker().await;
        let assertion = signer.assertion(&claims(&issuer, ALICE));
        let request = || {
            Request::get("/me")
                .header(IDENTITY_ID_HEADER, ALICE)
                .header(ASSERTION_HEADER, &assertion)
                .body(Body::empty())
                .unwrap()
        };
        let trusting = app(verifier(&issuer).trusting_identity_header());
        let (_, seen) = call(&trusting, request()).await;
        assert_eq!(
            (&seen["subject"], &seen["identity_headers_left"]),
            (&json!("alice"), &json!(0))
        );
        let (status, problem) = call(&app(verifier(&issuer)), request()).await;
        assert_eq!(
            (status, problem["code"].as_str()),
            (StatusCode::FORBIDDEN, Some("identity_mismatch"))
        );
        // A repeated header is refused rather than picked from.
        let repeated = Request::get("/me")
            .header(IDENTITY_ID_HEADER, ALICE)
            .header(IDENTITY_ID_HEADER, MALLORY)
            .header(ASSERTION_HEADER, &assertion)
            .body(Body::empty())
            .unwrap();
        assert_eq!(call(&trusting, repeated).await.1["code"], "identity_mismatch");
    }

    #[tokio::test]
    async fn forged_assertions_are_refused() {
        let (issuer, signer) = broker().await;
        let app = app(verifier(&issuer));
        // Same kid, another key: the signature does not verify.
        let impostor = DevIdentitySigner::generate(issuer.to_string());
        let mut expired = claims(&issuer, ALICE);
        expired["exp"] = json!(1_000_000);
        let mut wrong_issuer = claims(&issuer, ALICE);
        wrong_issuer["iss"] = json!("http://evil.test/auth");
        let mut wrong_audience = claims(&issuer, ALICE);
        wrong_audience["aud"] = json!("someone-else");
        // {"alg":"HS256","kid":"dev-identity-1"} . {"sub":"<alice>"} . "sig"
        let hmac = concat!(
            "eyJhbGciOiJIUzI1NiIsImtpZCI6ImRldi1pZGVudGl0eS0xIn0.",
            "eyJzdWIiOiJ1cy1lYXN0LTE6MTExMTExMTEtMjIyMi0zMzMzLTQ0NDQtNTU1NTU1NTU1NTU1In0.c2ln"
        )
        .to_string();
        for forged in [
            impostor.assertion(&claims(&issuer, ALICE)),
            signer.assertion(&expired),
            signer.assertion(&wrong_issuer),
            signer.assertion(&wrong_audience),
            hmac,
            "x".repeat(9000),
        ] {
            let (status, problem) = call(&app, lambda_request(ALICE, Some(&forged))).await;
            assert_eq!(
                (status, problem["code"].as_str()),
                (StatusCode::FORBIDDEN, Some("invalid_assertion")),
                "{problem}"
            );
        }
    }

    #[tokio::test]
    async fn a_missing_assertion_is_refused_unless_allowed_and_anonymous_callers_have_no_identity() {
        let (issuer, _) = broker().await;
        let (status, problem) = call(&app(verifier(&issuer)), lambda_request(ALICE, None)).await;
        assert_eq!(
            (status, problem["code"].as_str()),
            (StatusCode::FORBIDDEN, Some("invalid_assertion"))
        );
        let allowing = app(verifier(&issuer).allowing_missing_assertion());
        let (status, seen) = call(&allowing, lambda_request(ALICE, None)).await;
        assert_eq!(
            (status, &seen["identity_id"], &seen["provider"]),
            (StatusCode::OK, &json!(ALICE), &Value::Null)
        );
        let anonymous = Request::get("/me").body(Body::empty()).unwrap();
        assert_eq!(call(&allowing, anonymous).await.1["code"], "no_identity");
    }
}
