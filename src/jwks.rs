//! JSON Web Keys (RFC 7517/7518): parsing keys, the per-issuer key cache, and signing keys for the
//! dev provider and tests. Crypto is aws-lc-rs (the backend the AWS SDK already links).
//!
//! OWNER: helper "token+jwks". Contract (keep these signatures; add private helpers freely).

use std::sync::Arc;
use std::time::Duration;

use serde_json::Value;
use url::Url;

/// The signature algorithms credbroker accepts. No `none`, no HMAC: a provider's tokens must be
/// verifiable with its public key only.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Algorithm {
    /// RSASSA-PKCS1-v1_5 with SHA-256.
    RS256,
    /// RSASSA-PKCS1-v1_5 with SHA-384.
    RS384,
    /// RSASSA-PKCS1-v1_5 with SHA-512.
    RS512,
    /// RSASSA-PSS with SHA-256.
    PS256,
    /// RSASSA-PSS with SHA-384.
    PS384,
    /// RSASSA-PSS with SHA-512.
    PS512,
    /// ECDSA P-256 with SHA-256.
    ES256,
    /// ECDSA P-384 with SHA-384.
    ES384,
    /// Ed25519.
    EdDSA,
}

impl Algorithm {
    /// The algorithm for a JOSE `alg` name, `None` for anything not accepted.
    pub fn from_name(_name: &str) -> Option<Algorithm> {
        todo!()
    }

    /// The JOSE `alg` name.
    pub fn name(self) -> &'static str {
        todo!()
    }
}

/// A public key that can verify token signatures.
#[derive(Debug)]
pub struct VerifyingKey {
    _todo: (),
}

impl VerifyingKey {
    /// Parses one JWK (RSA, EC P-256/P-384, OKP Ed25519). Keys with `use` other than `sig`,
    /// symmetric (`oct`) keys and private keys are refused.
    pub fn from_jwk(_jwk: &Value) -> Result<VerifyingKey, JwkError> {
        todo!()
    }

    /// The key id.
    pub fn kid(&self) -> Option<&str> {
        todo!()
    }

    /// Whether a signature made with `alg` can come from this key (key type, curve and the JWK's
    /// own `alg` member when present).
    pub fn allows(&self, _alg: Algorithm) -> bool {
        todo!()
    }

    /// Verifies `signature` over `message`.
    pub fn verify(&self, _alg: Algorithm, _message: &[u8], _signature: &[u8]) -> bool {
        todo!()
    }
}

/// Why a JWK or JWKS document is unusable.
#[derive(Debug, thiserror::Error)]
#[error("unusable key: {0}")]
pub struct JwkError(pub String);

/// The keys of one JWKS document; unusable entries are skipped, not fatal.
#[derive(Debug, Default, Clone)]
pub struct KeySet {
    _todo: (),
}

impl KeySet {
    /// Parses a JWKS document (`{"keys": [...]}`).
    pub fn from_json(_bytes: &[u8]) -> Result<KeySet, JwkError> {
        todo!()
    }

    /// The key with this `kid`; without a kid, the only key when there is exactly one.
    pub fn find(&self, _kid: Option<&str>) -> Option<Arc<VerifyingKey>> {
        todo!()
    }
}

/// Fetch and cache policy for one key cache (see `config::JwksSettings`).
#[derive(Debug, Clone)]
pub struct JwksPolicy {
    /// Minimum time between refreshes caused by unknown `kid`s.
    pub cooldown: Duration,
    /// Timeout of one fetch.
    pub timeout: Duration,
    /// Bounds applied to the IdP's `Cache-Control: max-age`.
    pub min_max_age: Duration,
    /// Upper bound (also the lifetime when the IdP sends no max-age).
    pub max_max_age: Duration,
    /// Largest accepted document.
    pub max_document_bytes: usize,
}

impl From<&crate::config::JwksSettings> for JwksPolicy {
    fn from(_settings: &crate::config::JwksSettings) -> JwksPolicy {
        todo!()
    }
}

/// Why no key could be had.
#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    /// The keys are known (fresh or within cooldown) and none matches.
    #[error("no key matches kid {0}")]
    UnknownKey(String),
    /// The keys could not be fetched and nothing usable is cached.
    #[error("{0}")]
    Unavailable(String),
}

/// The keys of one issuer: fetched at first use, refreshed when `max-age` runs out or a token
/// names an unknown `kid` (at most once per cooldown), the last good keys kept while the IdP is
/// down, and concurrent requests sharing one fetch.
#[derive(Debug)]
pub struct JwksCache {
    _todo: (),
}

impl JwksCache {
    /// A cache for `jwks_uri`, fetched with `client`.
    pub fn new(_client: reqwest::Client, _jwks_uri: Url, _policy: JwksPolicy) -> JwksCache {
        todo!()
    }

    /// The key for `kid`, fetching or refreshing as the policy allows.
    pub async fn key(&self, _kid: Option<&str>) -> Result<Arc<VerifyingKey>, KeyError> {
        todo!()
    }

    /// How many fetches this cache has started (for tests and metrics).
    pub fn fetch_count(&self) -> u64 {
        todo!()
    }
}

/// A private key that signs JWTs: the dev provider's key, and test issuers' keys.
pub struct SigningKey {
    _todo: (),
}

impl SigningKey {
    /// A fresh key for `alg` (RS256/PS256 use 2048-bit RSA).
    pub fn generate(_alg: Algorithm, _kid: &str) -> SigningKey {
        todo!()
    }

    /// The algorithm.
    pub fn algorithm(&self) -> Algorithm {
        todo!()
    }

    /// The key id.
    pub fn kid(&self) -> &str {
        todo!()
    }

    /// The public half as a JWK (with `kid`, `alg`, `use: sig`).
    pub fn public_jwk(&self) -> Value {
        todo!()
    }

    /// Signs arbitrary bytes (tests use this to build hostile tokens).
    pub fn sign(&self, _message: &[u8]) -> Vec<u8> {
        todo!()
    }

    /// A compact JWS of `claims` with header `{"alg", "kid", "typ": "JWT"}`.
    pub fn sign_jwt(&self, _claims: &Value) -> String {
        todo!()
    }
}
