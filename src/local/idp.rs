//! The dev OpenID provider: discovery, JWKS, an authorization endpoint with a small page to pick
//! or edit a user, and a token endpoint (authorization code + PKCE, `state`, `nonce`) that issues
//! signed ID tokens. The browser client uses the same code-flow path against it as against a real
//! provider.
//!
//! OWNER: helper "dev idp". Contract (keep these signatures; add private helpers freely).

use std::sync::Arc;

use axum::Router;
use url::Url;

/// The client id the dev provider issues tokens for.
pub const DEV_CLIENT_ID: &str = "credbroker-dev";

/// The dev provider.
pub struct DevIdp {
    _todo: (),
}

impl DevIdp {
    /// A provider whose issuer is `issuer` (e.g. `http://127.0.0.1:8787/dev-idp`), with a fresh
    /// signing key.
    pub fn new(_issuer: Url) -> Arc<DevIdp> {
        todo!()
    }

    /// The issuer URL.
    pub fn issuer(&self) -> &Url {
        todo!()
    }

    /// Its routes, to nest at the issuer's path.
    pub fn router(self: Arc<Self>) -> Router {
        todo!()
    }
}
