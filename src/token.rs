//! ID-token parsing and the standard claim checks (OpenID Connect Core 1.0 §3.1.3.7).
//!
//! OWNER: helper "token+jwks". Contract (keep these signatures; add private helpers freely):
//! - `UnverifiedToken::parse(raw, max_bytes)`: strict compact-JWS parsing (3 segments, strict
//!   base64url without padding, UTF-8 JSON objects, duplicate JSON keys rejected, nesting bounded,
//!   `alg` from an allowlist: never `none`, never HS*). `jku`, `x5u`, `jwk`, `x5c` are ignored.
//! - `verify_signature(self, key)`: the key must allow the header's `alg`; returns the claims.
//! - `check_times`, `check_audience`: `exp`/`nbf`/`iat` with leeway; `aud` string or array,
//!   `azp` required and among the audiences when there are several audiences.
//! - `TokenError::code()` gives the stable problem+json `code`; `Display` says "expected X, found
//!   Y" and never contains the token; attacker-supplied values in messages are truncated.

use std::time::{Duration, SystemTime};

use serde_json::Value;

use crate::jwks::VerifyingKey;

/// The claims of a token: a JSON object.
pub type Claims = serde_json::Map<String, Value>;

/// The fields of the JOSE header credbroker reads.
#[derive(Debug, Clone)]
pub struct Header {
    /// The `alg` header.
    pub alg: crate::jwks::Algorithm,
    /// The `kid` header, if any.
    pub kid: Option<String>,
}

/// A token whose structure has been checked but whose signature has not.
#[derive(Debug)]
pub struct UnverifiedToken {
    _todo: (),
}

impl UnverifiedToken {
    /// Parses a compact JWS strictly; fails on anything but a well-formed signed JWT.
    pub fn parse(_raw: &str, _max_bytes: usize) -> Result<UnverifiedToken, TokenError> {
        todo!()
    }

    /// The header.
    pub fn header(&self) -> &Header {
        todo!()
    }

    /// The claims, NOT yet verified: use only to choose the issuer's keys.
    pub fn unverified_claims(&self) -> &Claims {
        todo!()
    }

    /// The `iss` claim (unverified).
    pub fn issuer(&self) -> Result<&str, TokenError> {
        todo!()
    }

    /// Checks the signature with `key`, which must allow the header's algorithm.
    pub fn verify_signature(self, _key: &VerifyingKey) -> Result<Claims, TokenError> {
        todo!()
    }
}

/// Checks `exp` (required), `nbf` and `iat` (when present) against `now` with `leeway`.
pub fn check_times(_claims: &Claims, _now: SystemTime, _leeway: Duration) -> Result<(), TokenError> {
    todo!()
}

/// Checks that `aud` names one of `audiences`, and `azp` when there are several audiences.
pub fn check_audience(_claims: &Claims, _audiences: &[String]) -> Result<(), TokenError> {
    todo!()
}

/// A required string claim.
pub fn string_claim<'a>(_claims: &'a Claims, _name: &'static str) -> Result<&'a str, TokenError> {
    todo!()
}

/// Why a token was refused. Each variant has a stable `code`.
#[derive(Debug, thiserror::Error)]
pub enum TokenError {
    /// Longer than the configured maximum.
    #[error("token is {found} bytes, over the {max}-byte limit")]
    TooLarge {
        /// The limit.
        max: usize,
        /// The token's size.
        found: usize,
    },
    /// Not a well-formed signed JWT.
    #[error("malformed token: {0}")]
    Malformed(String),
    /// `alg` is not one credbroker accepts, or not one the key allows.
    #[error("algorithm not accepted: {0}")]
    UnsupportedAlgorithm(String),
    /// No key of the issuer has this `kid`.
    #[error("no signing key of the issuer matches kid {0}")]
    UnknownKey(String),
    /// The signature does not verify.
    #[error("signature does not verify")]
    BadSignature,
    /// A required claim is missing or of the wrong type.
    #[error("claim `{0}` is missing or not of the expected type")]
    MissingClaim(&'static str),
    /// `iss` is not an accepted issuer.
    #[error("wrong issuer: expected {expected}, found {found}")]
    WrongIssuer {
        /// What was expected.
        expected: String,
        /// What the token says.
        found: String,
    },
    /// `aud` names none of the configured client ids.
    #[error("wrong audience: expected one of {expected}, found {found}")]
    WrongAudience {
        /// What was expected.
        expected: String,
        /// What the token says.
        found: String,
    },
    /// `azp` is missing or wrong for a token with several audiences.
    #[error("wrong authorized party: expected one of {expected}, found {found}")]
    WrongAuthorizedParty {
        /// What was expected.
        expected: String,
        /// What the token says.
        found: String,
    },
    /// `exp` is in the past.
    #[error("token expired at {expired_at} (now {now}, leeway {leeway_seconds}s)")]
    Expired {
        /// `exp`, seconds since the epoch.
        expired_at: i64,
        /// The broker's clock, seconds since the epoch.
        now: i64,
        /// The configured leeway.
        leeway_seconds: u64,
    },
    /// `nbf` is in the future.
    #[error("token not valid before {not_before} (now {now})")]
    NotYetValid {
        /// `nbf`.
        not_before: i64,
        /// The broker's clock.
        now: i64,
    },
    /// `iat` is in the future.
    #[error("token issued in the future at {issued_at} (now {now})")]
    IssuedInFuture {
        /// `iat`.
        issued_at: i64,
        /// The broker's clock.
        now: i64,
    },
    /// A provider-specific claim has the wrong value (`token_use`, `tid`, `hd`...).
    #[error("claim `{claim}`: expected {expected}, found {found}")]
    WrongClaim {
        /// The stable code, e.g. `wrong_token_use`, `wrong_tenant`.
        code: &'static str,
        /// The claim.
        claim: &'static str,
        /// What was expected.
        expected: String,
        /// What the token says.
        found: String,
    },
    /// The issuer's keys could not be fetched and none are cached.
    #[error("signing keys unavailable: {0}")]
    KeysUnavailable(String),
}

impl TokenError {
    /// The stable machine-readable code.
    pub fn code(&self) -> &'static str {
        todo!()
    }
}
