//! The dev OpenID provider: discovery, JWKS, an authorization endpoint with a small page to pick
//! or edit a user, and a token endpoint (authorization code + PKCE, `state`, `nonce`) that issues
//! signed ID tokens. The browser client uses the same code-flow path against it as against a real
//! provider.
//!
//! Routes, relative to the issuer (nest [`DevIdp::router`] at the issuer's path):
//!
//! - `GET /.well-known/openid-configuration` and `GET /jwks`: public, CORS `*`.
//! - `GET /authorize`: validates the request, then shows the sign-in page (or, with
//!   `prompt=none`, redirects straight back using the session cookie). `POST /authorize` is the
//!   page's form; it answers with `302` to `redirect_uri?code=...&state=...&iss=...`.
//! - `POST /token`: `authorization_code` (PKCE `S256` required) and `refresh_token` grants;
//!   CORS for the allowed origins, since browser apps call it directly.
//! - `GET /logout`: the `end_session_endpoint` (OpenID Connect RP-Initiated Logout 1.0): ends
//!   this browser's provider session, then redirects to `post_logout_redirect_uri` (with
//!   `state`) when it is on an allowed origin, else shows a "signed out" page.
//! - `POST /mint`: `{"sub": ..., "claims": {...}}` → `{"id_token": ...}`, for
//!   `credbroker token`. It refuses non-loopback peers when the server was started with
//!   connection info (`into_make_service_with_connect_info::<SocketAddr>()`); without it, it
//!   relies on the dev stack binding to loopback, which is its default.
//!
//! Only loopback `redirect_uri`s and CORS origins (`127.0.0.1`, `localhost`, `[::1]`) are
//! accepted: this provider signs in anyone, so its codes must never leave the machine. In the
//! dev stack ([`DevIdp::for_origins`]) only the stack's own origins and the configured
//! `allowed_origins` are: another app on this machine (another port) gets no code and no CORS,
//! as a real provider allows only the redirect URIs and origins registered for a client. All
//! state is in memory and bounded; a restart forgets it and generates a new signing key (with a
//! new `kid`, so verifiers refetch the JWKS).

mod authorize;
mod page;
mod params;
mod store;
mod token;
mod users;

use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use axum::Router;
use axum::extract::{DefaultBodyLimit, State};
use axum::http::{HeaderValue, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use serde_json::{Map, Value, json};
use url::{Host, Url};

use crate::config::{Limits, ProviderConfig};
use crate::issuer::Issuer;
use crate::jwks::JwksPolicy;
use crate::key::Algorithm;
use crate::local::signing_key::SigningKey;
use crate::provider::{Kind, Provider};
use store::{BoundedStore, random_token};
use users::DevUser;

/// The client id the dev provider issues tokens for.
pub const DEV_CLIENT_ID: &str = "credbroker-dev";

/// The provider that trusts this IdP: what a user would write as an `oidc` provider for it
/// (its issuer, found through discovery; [`DEV_CLIENT_ID`] as the audience), built without
/// validation because the issuer is plain http on loopback, and shown to clients as kind `dev`.
/// It exposes the claims the dev page lets one edit and tags sessions with `groups`, so the dev
/// stack in developer mode shows per-route IAM rules.
pub(crate) fn provider(
    issuer: &Issuer,
    limits: &Limits,
    http: reqwest::Client,
    policy: JwksPolicy,
) -> Provider {
    let config: ProviderConfig = serde_json::from_value(json!({
        "kind": "oidc",
        "issuer": issuer.as_str(),
        "audiences": [DEV_CLIENT_ID],
        "claims": ["email", "name", "groups", "hd", "tid", "organization_id"],
        "principal_tags": {"groups": "groups"},
    }))
    .expect("the dev provider's configuration has a fixed shape");
    Provider::from_config("dev", &config, limits, http, policy).shown_as(Kind::Dev)
}

/// ID-token (and access-token) lifetime unless [`DevIdp::with_token_lifetime`] says otherwise.
const DEFAULT_TOKEN_LIFETIME: Duration = Duration::from_secs(3600);
/// Largest request body: the sign-in form's claims text (8 KiB) grows up to 3x when
/// form-encoded.
const MAX_BODY_BYTES: usize = 32 * 1024;
/// Outstanding sign-in pages, codes, sessions and refresh tokens kept, each.
const STORE_CAPACITY: usize = 1024;
/// RFC 6749 §4.1.2 recommends at most 10 minutes for codes; a sign-in page lives as long.
const CODE_LIFETIME: Duration = Duration::from_secs(10 * 60);
const SESSION_LIFETIME: Duration = Duration::from_secs(12 * 3600);
const REFRESH_TOKEN_LIFETIME: Duration = Duration::from_secs(24 * 3600);

/// The dev provider.
pub struct DevIdp {
    issuer: Url,
    key: SigningKey,
    token_lifetime: Duration,
    presets: [DevUser; 3],
    /// Sign-in pages shown, keyed by the one-time token their forms carry (CSRF protection: a
    /// form posted from elsewhere has no valid token).
    pages: BoundedStore<authorize::AuthRequest>,
    codes: BoundedStore<IssuedCode>,
    sessions: BoundedStore<SignIn>,
    refresh_tokens: BoundedStore<RefreshGrant>,
    /// Origins (`http://127.0.0.1:8787`) codes may go to and CORS is granted to; empty means any
    /// loopback origin.
    origins: Vec<String>,
}

/// Who signed in, and when (`auth_time`, seconds since the epoch).
#[derive(Debug, Clone)]
struct SignIn {
    user: DevUser,
    auth_time: u64,
}

/// What an authorization code stands for until it is redeemed.
#[derive(Debug, Clone)]
struct IssuedCode {
    sign_in: SignIn,
    /// Exactly as the client sent it: the token request must repeat it (RFC 6749 §4.1.3).
    redirect_uri: String,
    code_challenge: String,
    nonce: Option<String>,
    scope: String,
}

/// What a refresh token stands for.
#[derive(Debug, Clone)]
struct RefreshGrant {
    sign_in: SignIn,
    scope: String,
}

impl DevIdp {
    /// A provider whose issuer is `issuer` (e.g. `http://127.0.0.1:8787/dev-idp`), with a fresh
    /// signing key.
    pub fn new(issuer: Url) -> Arc<DevIdp> {
        DevIdp::with_token_lifetime(issuer, DEFAULT_TOKEN_LIFETIME)
    }

    /// Like [`DevIdp::new`], with ID and access tokens valid for `lifetime` (tests use short
    /// ones to see expiry).
    pub fn with_token_lifetime(issuer: Url, lifetime: Duration) -> Arc<DevIdp> {
        DevIdp::build(issuer, lifetime, Vec::new())
    }

    /// Like [`DevIdp::new`], sending codes to and granting CORS to `origins` only (each still
    /// on a loopback host), like a client registration at a real provider.
    pub fn for_origins(issuer: Url, origins: Vec<String>) -> Arc<DevIdp> {
        DevIdp::build(issuer, DEFAULT_TOKEN_LIFETIME, origins)
    }

    fn build(issuer: Url, lifetime: Duration, origins: Vec<String>) -> Arc<DevIdp> {
        let kid: String = random_token().chars().take(16).collect();
        Arc::new(DevIdp {
            issuer,
            key: SigningKey::generate(Algorithm::RS256, &format!("dev-{kid}")),
            token_lifetime: lifetime,
            presets: users::presets(),
            pages: BoundedStore::new(STORE_CAPACITY, CODE_LIFETIME),
            codes: BoundedStore::new(STORE_CAPACITY, CODE_LIFETIME),
            sessions: BoundedStore::new(STORE_CAPACITY, SESSION_LIFETIME),
            refresh_tokens: BoundedStore::new(STORE_CAPACITY, REFRESH_TOKEN_LIFETIME),
            origins,
        })
    }

    /// Whether codes may be sent to `url` and its origin may call the token endpoint.
    fn allows(&self, url: &Url) -> bool {
        is_loopback_http_url(url)
            && (self.origins.is_empty() || self.origins.contains(&url.origin().ascii_serialization()))
    }

    /// The issuer URL.
    pub fn issuer(&self) -> &Url {
        &self.issuer
    }

    /// Where the provider publishes its keys (`{issuer}/jwks`).
    pub fn jwks_uri(&self) -> String {
        self.endpoint("jwks")
    }

    /// Its routes, to nest at the issuer's path.
    pub fn router(self: Arc<Self>) -> Router {
        Router::new()
            .route("/.well-known/openid-configuration", get(discovery))
            .route("/jwks", get(jwks))
            .route("/authorize", get(authorize::show).post(authorize::submit))
            .route("/token", post(token::exchange).options(token::preflight))
            .route("/logout", get(authorize::logout))
            .route("/mint", post(token::mint))
            .layer(DefaultBodyLimit::max(MAX_BODY_BYTES))
            .with_state(self)
    }

    /// A signed ID token for `subject` with `extra_claims`, audience [`DEV_CLIENT_ID`], valid
    /// for the token lifetime from now. The protocol claims (`iss`, `sub`, `aud`, `azp`, `exp`,
    /// `iat`, `auth_time`, `nonce`) are always the provider's: same-named extra claims are
    /// overwritten.
    pub fn mint(&self, subject: &str, extra_claims: Map<String, Value>) -> String {
        let user = DevUser {
            sub: subject.to_string(),
            email: None,
            name: None,
            extra: extra_claims,
        };
        self.id_token(&self.sign_in_now(user), None)
    }

    /// `{issuer}/{path}`, whether or not the issuer ends with a slash.
    fn endpoint(&self, path: &str) -> String {
        format!("{}/{path}", self.issuer.as_str().trim_end_matches('/'))
    }

    fn sign_in_now(&self, user: DevUser) -> SignIn {
        SignIn {
            user,
            auth_time: unix_now(),
        }
    }

    /// Signs an ID token for `sign_in`: the user's claims first, then the protocol claims so
    /// nothing a user typed can replace them.
    fn id_token(&self, sign_in: &SignIn, nonce: Option<&str>) -> String {
        let issued_at = unix_now();
        let mut claims = sign_in.user.profile_claims();
        claims.insert("iss".into(), json!(self.issuer.as_str()));
        claims.insert("sub".into(), json!(sign_in.user.sub));
        claims.insert("aud".into(), json!(DEV_CLIENT_ID));
        claims.insert("azp".into(), json!(DEV_CLIENT_ID));
        claims.insert("iat".into(), json!(issued_at));
        claims.insert(
            "exp".into(),
            json!(issued_at.saturating_add(self.token_lifetime.as_secs())),
        );
        claims.insert("auth_time".into(), json!(sign_in.auth_time));
        if let Some(nonce) = nonce {
            claims.insert("nonce".into(), json!(nonce));
        }
        self.key.sign_jwt(&Value::Object(claims))
    }

    fn discovery_document(&self) -> Value {
        json!({
            "issuer": self.issuer.as_str(),
            "authorization_endpoint": self.endpoint("authorize"),
            "token_endpoint": self.endpoint("token"),
            "jwks_uri": self.jwks_uri(),
            "response_types_supported": ["code"],
            "response_modes_supported": ["query"],
            "grant_types_supported": ["authorization_code", "refresh_token"],
            "subject_types_supported": ["public"],
            "id_token_signing_alg_values_supported": [self.key.algorithm().name()],
            "code_challenge_methods_supported": ["S256"],
            "scopes_supported": ["openid", "email", "profile"],
            "token_endpoint_auth_methods_supported": ["none"],
            "prompt_values_supported": ["none", "login"],
            "authorization_response_iss_parameter_supported": true,
            "end_session_endpoint": self.endpoint("logout"),
            "claims_parameter_supported": false,
            "request_parameter_supported": false,
            "request_uri_parameter_supported": false,
            "claims_supported": [
                "iss", "sub", "aud", "azp", "exp", "iat", "auth_time", "nonce",
                "email", "email_verified", "name",
                "hd", "tid", "organization_id", "groups",
            ],
        })
    }
}

/// Whether `url` is an `http(s)` URL on this machine (`127.0.0.0/8`, `localhost`, `[::1]`): the
/// only places the dev provider sends codes to or lets call it cross-origin.
fn is_loopback_http_url(url: &Url) -> bool {
    let loopback_host = match url.host() {
        Some(Host::Domain(domain)) => domain.eq_ignore_ascii_case("localhost"),
        Some(Host::Ipv4(ip)) => ip.is_loopback(),
        Some(Host::Ipv6(ip)) => ip.is_loopback(),
        None => false,
    };
    matches!(url.scheme(), "http" | "https") && loopback_host
}

/// Seconds since the epoch (0 if the clock is before 1970, which no verifier would accept).
fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|elapsed| elapsed.as_secs())
        .unwrap_or(0)
}

/// A public JSON document: cacheable for `max_age`, readable from any origin (browser OpenID
/// libraries fetch discovery and keys themselves).
fn public_json(document: &Value, max_age: &'static str) -> Response {
    let mut response = (
        [(header::CONTENT_TYPE, HeaderValue::from_static("application/json"))],
        document.to_string(),
    )
        .into_response();
    let headers = response.headers_mut();
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static(max_age));
    headers.insert(header::ACCESS_CONTROL_ALLOW_ORIGIN, HeaderValue::from_static("*"));
    response
}

async fn discovery(State(idp): State<Arc<DevIdp>>) -> Response {
    public_json(&idp.discovery_document(), "max-age=60")
}

async fn jwks(State(idp): State<Arc<DevIdp>>) -> Response {
    public_json(&SigningKey::jwks(&[&idp.key]), "max-age=300")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn loopback_urls() {
        for ok in [
            "http://127.0.0.1:5173/cb",
            "https://localhost/cb",
            "http://LOCALHOST:1/",
            "http://[::1]:8080/x",
            "http://127.1.2.3/",
        ] {
            assert!(is_loopback_http_url(&Url::parse(ok).unwrap()), "{ok}");
        }
        for refused in [
            "https://example.com/cb",
            "http://localhost.example.com/",
            "http://10.0.0.1/",
            "ftp://127.0.0.1/",
            "javascript:alert(1)",
            "http://[::2]/",
        ] {
            assert!(!is_loopback_http_url(&Url::parse(refused).unwrap()), "{refused}");
        }
    }
}
