//! A local identity pool that speaks the Cognito Identity JSON 1.1 protocol (`GetId`,
//! `GetCredentialsForIdentity`), so the broker reaches it through the real AWS SDK by endpoint
//! override. Like Cognito it verifies the Logins token again, keeps a stable identity id per
//! (issuer, sub), and issues random temporary credentials that the local gateway can look up.
//!
//! OWNER: helper "local pool". Contract (keep these signatures; add private helpers freely).

use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use url::Url;

use crate::jwks::JwksCache;
use crate::pool::AwsCredentials;
use crate::token::Claims;

/// Who a set of issued credentials belongs to: the identity context the gateway passes on.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Identity {
    /// The identity id, `region:uuid`.
    pub identity_id: String,
    /// The Logins key the identity signed in with (issuer without scheme).
    pub provider: String,
    /// The token's `sub`.
    pub subject: String,
    /// The verified claims of the token the credentials were issued for.
    pub claims: Claims,
}

/// Credentials the pool issued, with the identity they belong to.
#[derive(Debug, Clone)]
pub struct IssuedCredentials {
    /// The credentials.
    pub credentials: AwsCredentials,
    /// Their owner.
    pub identity: Arc<Identity>,
}

/// An OpenID issuer the pool trusts (like an IAM OIDC provider on a real pool).
#[derive(Debug, Clone)]
pub struct TrustedIssuer {
    /// The issuer URL; its Logins key is this without the scheme.
    pub issuer: Url,
    /// Accepted `aud` values.
    pub audiences: Vec<String>,
    /// The issuer's keys.
    pub keys: Arc<JwksCache>,
}

/// The local pool.
pub struct LocalPool {
    _todo: (),
}

impl LocalPool {
    /// A pool with this id (`region:uuid`) trusting `issuers`, issuing credentials that live
    /// `credential_lifetime`.
    pub fn new(
        _pool_id: String,
        _issuers: Vec<TrustedIssuer>,
        _credential_lifetime: Duration,
    ) -> Arc<LocalPool> {
        todo!()
    }

    /// The pool id.
    pub fn pool_id(&self) -> &str {
        todo!()
    }

    /// The protocol endpoint: `POST` with `X-Amz-Target: AWSCognitoIdentityService.*`, at the
    /// router's root (with or without a trailing slash where nested).
    pub fn router(self: Arc<Self>) -> Router {
        todo!()
    }

    /// The live (unexpired) credentials with this access key id.
    pub fn lookup(&self, _access_key_id: &str) -> Option<IssuedCredentials> {
        todo!()
    }
}
