//! The identity assertion: the broker's signed statement of who signed in, for the apps behind
//! the API (design and threat model: `docs/identity.md`).
//!
//! API Gateway vouches for the identity id only (`requestContext.identity.cognitoIdentityId`);
//! the assertion carries the rest (provider, subject, the provider's configured claims), signed
//! by the broker and bound to that identity id by its `sub`. An app trusts it only when its `sub`
//! equals the identity id API Gateway verified for the request's signature, so a caller cannot
//! forge it and cannot replay another user's.

use std::time::SystemTime;

use serde_json::{Value, json};

use crate::broker::SignIn;

pub mod extract;
pub use extract::{Identity, IdentityVerifier};

/// The header the browser client sends the assertion in, with every signed request.
pub const ASSERTION_HEADER: &str = "x-credbroker-assertion";
/// The assertion's audience: the apps behind this broker's API.
pub const AUDIENCE: &str = "credbroker-app";
/// The JWT `typ` of an assertion, so that it is never mistaken for an ID token.
pub const ASSERTION_TYPE: &str = "credbroker-identity+jwt";

/// Whatever signs assertions: a key the deployment provides, or the dev stack's own.
pub trait IdentitySigner: Send + Sync {
    /// The `iss` of every assertion (the broker's URL).
    fn issuer(&self) -> &str;
    /// `claims` as a compact JWS (ES256) with `typ` [`ASSERTION_TYPE`].
    fn sign(&self, claims: &Value) -> String;
    /// The public keys apps verify with, as a JWKS (`GET /auth/identity-keys`).
    fn public_keys(&self) -> Value;
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

/// The assertion for `signed_in`, signed by `signer`.
pub fn sign_assertion(signer: &dyn IdentitySigner, signed_in: &SignIn, now: SystemTime) -> String {
    signer.sign(&assertion_claims(signer.issuer(), signed_in, now))
}

fn unix_seconds(at: SystemTime) -> u64 {
    at.duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}
