//! The identity assertion: the broker's signed statement of who signed in, for the apps behind
//! the API (design and threat model: `docs/identity.md`).
//!
//! API Gateway vouches for the identity id only (`requestContext.identity.cognitoIdentityId`);
//! the assertion carries the rest (provider, subject, the provider's configured claims), signed
//! by the broker and bound to that identity id by its `sub`. An app trusts it only when its `sub`
//! equals the identity id API Gateway verified for the request's signature, so a caller cannot
//! forge it and cannot replay another user's.

use std::time::SystemTime;

use futures_util::future::BoxFuture;
use serde_json::{Value, json};

use crate::broker::SignIn;

pub mod extract;
pub mod kms;
pub use extract::{Identity, IdentityVerifier};
pub use kms::KmsIdentitySigner;

/// The header the browser client sends the assertion in, with every signed request.
pub const ASSERTION_HEADER: &str = "x-credbroker-assertion";
/// The assertion's audience: the apps behind this broker's API.
pub const AUDIENCE: &str = "credbroker-app";
/// The JWT `typ` of an assertion, so that it is never mistaken for an ID token.
pub const ASSERTION_TYPE: &str = "credbroker-identity+jwt";

/// Whatever signs assertions: the deployment's KMS key ([`KmsIdentitySigner`]), or the dev
/// stack's own.
pub trait IdentitySigner: Send + Sync {
    /// The `iss` of every assertion when it is configured; `None`: the `/auth` URL the sign-in
    /// request reached, as API Gateway reports it.
    fn issuer(&self) -> Option<&str>;
    /// `claims` as a compact JWS (ES256) with `typ` [`ASSERTION_TYPE`].
    fn sign<'a>(&'a self, claims: &'a Value) -> BoxFuture<'a, Result<String, SigningError>>;
    /// The public keys apps verify with, as a JWKS (`GET /auth/identity-keys`).
    fn public_keys(&self) -> Value;
}

/// Why no assertion could be signed. The text names the key and the service's error, never a
/// claim.
#[derive(Debug, thiserror::Error)]
pub enum SigningError {
    /// The signing service failed or refused (KMS throttling, an outage, a disabled key).
    #[error("the identity signing key is unavailable: {0}")]
    Unavailable(String),
    /// There is no issuer to sign as: none configured, and the request did not come through API
    /// Gateway.
    #[error("no identity issuer: set identity.issuer to the /auth URL apps verify against")]
    NoIssuer,
}

/// The assertion's claims for a sign-in: it lives exactly as long as the credentials.
pub fn assertion_claims(issuer: &str, signed_in: &SignIn, now: SystemTime) -> Value {
    json!({
        "iss": issuer,
        "aud": AUDIENCE,
        "sub": signed_in.identity_id,
        "provider": signed_in.provider,
        "subject": signed_in.subject,
        "claims": signed_in.claims,
        "iat": unix_seconds(now),
        "exp": unix_seconds(signed_in.credentials.expiration),
    })
}

/// The assertion for `signed_in`, signed by `signer` as its configured issuer, else as
/// `request_issuer` (the `/auth` URL the sign-in request reached).
pub async fn sign_assertion(
    signer: &dyn IdentitySigner,
    request_issuer: Option<&str>,
    signed_in: &SignIn,
    now: SystemTime,
) -> Result<String, SigningError> {
    let issuer = signer.issuer().or(request_issuer).ok_or(SigningError::NoIssuer)?;
    signer.sign(&assertion_claims(issuer, signed_in, now)).await
}

fn unix_seconds(at: SystemTime) -> u64 {
    at.duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}
