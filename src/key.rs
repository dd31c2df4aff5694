//! Algorithms and key material: which JOSE algorithms credbroker accepts, one issuer's public
//! keys parsed from a JWK (RFC 7517/7518), and the key set of one JWKS document.
//!
//! JWK decoding and signature verification are `jsonwebtoken`'s (its `Jwk`, `DecodingKey` and
//! aws-lc-rs crypto provider: the crypto library the AWS SDK already links). `jsonwebtoken` would
//! build a verifier for every check; each thread keeps the ones it built (`ThreadVerifiers`).
//! What stays here is policy `jsonwebtoken` leaves to its caller, checked before a key is used:
//! - an allowlist of algorithms: never `none`, never HMAC (a provider's tokens must verify with
//!   its public key alone), and the key decides which algorithms it may verify (its `kty`, `crv`
//!   and own `alg`; RFC 8725 §3.1), so a token cannot choose, say, RS256 for a PS256-only key;
//! - JWKs that must never verify: symmetric (`oct`) and private keys, keys for encryption;
//! - bounds: `kid` length, RSA moduli of 2048..=8192 bits, EC points on their curve and of their
//!   curve's size, so a key set never holds a key that cannot verify anything;
//! - which key a token without `kid` selects ([`KeySet::select`]).

use std::cell::RefCell;
use std::fmt;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use aws_lc_rs::signature::{self as aws_sig, ParsedPublicKey};
use jsonwebtoken::crypto::JwtVerifier;
use jsonwebtoken::crypto::aws_lc::DEFAULT_PROVIDER;
use jsonwebtoken::jwk::Jwk;
use jsonwebtoken::{DecodingKey, DecodingKeyKind};
use serde_json::{Map, Value};

use crate::untrusted::quote_untrusted;

/// Longest accepted `kid`, in bytes, in a JWK and in a token header. Real IdPs use a few dozen.
pub const MAX_KID_BYTES: usize = 256;

/// Smallest accepted RSA modulus (RFC 7518 §3.3: 2048 bits or larger).
const MIN_RSA_BITS: usize = 2048;
/// Largest RSA modulus aws-lc-rs verifies with the `*_2048_8192_*` parameters.
const MAX_RSA_BITS: usize = 8192;

/// Members that only a private (or symmetric) JWK has (RFC 7518 §6.2.2, §6.3.2, §6.4.1).
const PRIVATE_MEMBERS: &[&str] = &["d", "p", "q", "dp", "dq", "qi", "oth", "k"];

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
    /// Every accepted algorithm.
    pub const ALL: [Algorithm; 9] = [
        Algorithm::RS256,
        Algorithm::RS384,
        Algorithm::RS512,
        Algorithm::PS256,
        Algorithm::PS384,
        Algorithm::PS512,
        Algorithm::ES256,
        Algorithm::ES384,
        Algorithm::EdDSA,
    ];

    /// The algorithm for a JOSE `alg` name, `None` for anything not accepted.
    pub fn from_name(name: &str) -> Option<Algorithm> {
        // Exact, case-sensitive match (RFC 7515 §4.1.1 names are case-sensitive), so "none",
        // "HS256" and variants such as "rs256" all fall through to `None`.
        Algorithm::ALL.into_iter().find(|alg| alg.name() == name)
    }

    /// The JOSE `alg` name.
    pub fn name(self) -> &'static str {
        match self {
            Algorithm::RS256 => "RS256",
            Algorithm::RS384 => "RS384",
            Algorithm::RS512 => "RS512",
            Algorithm::PS256 => "PS256",
            Algorithm::PS384 => "PS384",
            Algorithm::PS512 => "PS512",
            Algorithm::ES256 => "ES256",
            Algorithm::ES384 => "ES384",
            Algorithm::EdDSA => "EdDSA",
        }
    }

    /// Whether this is one of the six RSA algorithms (PKCS#1 v1.5 or PSS).
    fn is_rsa(self) -> bool {
        matches!(
            self,
            Algorithm::RS256
                | Algorithm::RS384
                | Algorithm::RS512
                | Algorithm::PS256
                | Algorithm::PS384
                | Algorithm::PS512
        )
    }

    /// The same algorithm for `jsonwebtoken`.
    fn to_jsonwebtoken(self) -> jsonwebtoken::Algorithm {
        match self {
            Algorithm::RS256 => jsonwebtoken::Algorithm::RS256,
            Algorithm::RS384 => jsonwebtoken::Algorithm::RS384,
            Algorithm::RS512 => jsonwebtoken::Algorithm::RS512,
            Algorithm::PS256 => jsonwebtoken::Algorithm::PS256,
            Algorithm::PS384 => jsonwebtoken::Algorithm::PS384,
            Algorithm::PS512 => jsonwebtoken::Algorithm::PS512,
            Algorithm::ES256 => jsonwebtoken::Algorithm::ES256,
            Algorithm::ES384 => jsonwebtoken::Algorithm::ES384,
            Algorithm::EdDSA => jsonwebtoken::Algorithm::EdDSA,
        }
    }
}

/// A key's type and curve, which decide the algorithms it can verify (RFC 7518 §3).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum KeyType {
    /// Any RSA key serves all six RSA algorithms.
    Rsa,
    /// EC P-256: ES256 only.
    P256,
    /// EC P-384: ES384 only.
    P384,
    /// OKP Ed25519: EdDSA only.
    Ed25519,
}

impl KeyType {
    /// The type and curve a JWK declares (`kty`, `crv`); symmetric and unknown types refused.
    fn of(members: &Map<String, Value>) -> Result<KeyType, JwkError> {
        let unsupported = |what: &str, value: &str| {
            JwkError(format!("{what} `{}` is not supported", quote_untrusted(value)))
        };
        match required_string(members, "kty")? {
            "RSA" => Ok(KeyType::Rsa),
            "EC" => match required_string(members, "crv")? {
                "P-256" => Ok(KeyType::P256),
                "P-384" => Ok(KeyType::P384),
                other => Err(unsupported("EC curve", other)),
            },
            "OKP" => match required_string(members, "crv")? {
                "Ed25519" => Ok(KeyType::Ed25519),
                other => Err(unsupported("OKP curve", other)),
            },
            "oct" => Err(JwkError("symmetric (oct) keys are never accepted".into())),
            other => Err(unsupported("kty", other)),
        }
    }

    /// Whether a key of this type and curve can make `alg` signatures.
    fn supports(self, alg: Algorithm) -> bool {
        match self {
            KeyType::Rsa => alg.is_rsa(),
            KeyType::P256 => alg == Algorithm::ES256,
            KeyType::P384 => alg == Algorithm::ES384,
            KeyType::Ed25519 => alg == Algorithm::EdDSA,
        }
    }

    fn name(self) -> &'static str {
        match self {
            KeyType::Rsa => "RSA",
            KeyType::P256 => "EC P-256",
            KeyType::P384 => "EC P-384",
            KeyType::Ed25519 => "OKP Ed25519",
        }
    }

    /// Checks decoded key material against this type's bounds; returns the key to verify with.
    fn checked(self, key: DecodingKey) -> Result<DecodingKey, JwkError> {
        match (self, key.kind()) {
            (KeyType::Rsa, DecodingKeyKind::RsaModulusExponent { n, e }) => {
                // aws-lc-rs wants minimal big-endian integers; some IdPs pad `n` with a zero octet.
                let (n, e) = (strip_leading_zeros(n), strip_leading_zeros(e));
                let bits = bit_length(n);
                if !(MIN_RSA_BITS..=MAX_RSA_BITS).contains(&bits) {
                    return Err(JwkError(format!(
                        "RSA modulus has {bits} bits, outside {MIN_RSA_BITS}..={MAX_RSA_BITS}"
                    )));
                }
                Ok(DecodingKey::from_rsa_raw_components(n, e))
            }
            (KeyType::P256 | KeyType::P384, DecodingKeyKind::SecretOrDer(point)) => {
                let (coordinate_len, curve, name): (usize, &'static aws_sig::EcdsaVerificationAlgorithm, _) =
                    match self {
                        KeyType::P256 => (32, &aws_sig::ECDSA_P256_SHA256_FIXED, "P-256"),
                        _ => (48, &aws_sig::ECDSA_P384_SHA384_FIXED, "P-384"),
                    };
                // `jsonwebtoken` builds the SEC 1 uncompressed point 0x04 || x || y.
                if point.len() != 1 + 2 * coordinate_len {
                    return Err(JwkError(format!(
                        "{name} coordinates must be {coordinate_len} bytes each"
                    )));
                }
                // `jsonwebtoken` parses the point at each verification; checking it here keeps a
                // point off the curve out of the key set.
                ParsedPublicKey::new(curve, point.as_slice())
                    .map_err(|_| JwkError(format!("{name} point is not on the curve")))?;
                Ok(key)
            }
            (KeyType::Ed25519, DecodingKeyKind::SecretOrDer(x)) => {
                if x.len() != aws_sig::ED25519_PUBLIC_KEY_LEN {
                    return Err(JwkError("Ed25519 x must be 32 bytes".into()));
                }
                ParsedPublicKey::new(&aws_sig::ED25519, x.as_slice())
                    .map_err(|_| JwkError("Ed25519 key is not valid".into()))?;
                Ok(key)
            }
            _ => Err(JwkError(format!("not a valid {} key", self.name()))),
        }
    }
}

/// A public key that can verify token signatures.
pub struct VerifyingKey {
    kid: Option<String>,
    /// The JWK's own `alg` member: when present, the only algorithm the key may be used with.
    alg: Option<Algorithm>,
    key_type: KeyType,
    key: DecodingKey,
    /// Names this key in a thread's [`VERIFIERS`]; unique in the process, never reused.
    serial: u64,
}

impl fmt::Debug for VerifyingKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("VerifyingKey")
            .field("kid", &self.kid)
            .field("alg", &self.alg)
            .field("kty", &self.key_type.name())
            .finish()
    }
}

impl VerifyingKey {
    /// Parses one JWK (RSA, EC P-256/P-384, OKP Ed25519). Keys with `use` other than `sig`,
    /// symmetric (`oct`) keys and private keys are refused.
    pub fn from_jwk(jwk: &Value) -> Result<VerifyingKey, JwkError> {
        let Value::Object(members) = jwk else {
            return Err(JwkError("a JWK must be a JSON object".into()));
        };
        let kid = optional_string(members, "kid")?;
        if kid.is_some_and(|kid| kid.len() > MAX_KID_BYTES) {
            return Err(JwkError(format!("kid is longer than {MAX_KID_BYTES} bytes")));
        }
        refuse_private_members(members)?;
        check_intended_use(members)?;
        let alg = match optional_string(members, "alg")? {
            None => None,
            Some(name) => Some(
                Algorithm::from_name(name)
                    .ok_or_else(|| JwkError(format!("alg `{}` is not accepted", quote_untrusted(name))))?,
            ),
        };
        let key_type = KeyType::of(members)?;
        if let Some(alg) = alg.filter(|alg| !key_type.supports(*alg)) {
            return Err(JwkError(format!(
                "alg {} does not fit a {} key",
                alg.name(),
                key_type.name()
            )));
        }
        let invalid = || JwkError(format!("not a valid {} JWK", key_type.name()));
        let parsed: Jwk = serde_json::from_value(jwk.clone()).map_err(|_| invalid())?;
        // RFC 7518 §6: the key members are base64url without padding, which `jsonwebtoken`
        // decodes strictly.
        let key = DecodingKey::from_jwk(&parsed)
            .map_err(|_| JwkError("the key members are not base64url without padding".into()))?;
        Ok(VerifyingKey {
            kid: kid.map(str::to_string),
            alg,
            key_type,
            key: key_type.checked(key)?,
            serial: NEXT_KEY_SERIAL.fetch_add(1, Ordering::Relaxed),
        })
    }

    /// The key id.
    pub fn kid(&self) -> Option<&str> {
        self.kid.as_deref()
    }

    /// Whether a signature made with `alg` can come from this key (key type, curve and the JWK's
    /// own `alg` member when present).
    pub fn allows(&self, alg: Algorithm) -> bool {
        self.key_type.supports(alg) && self.alg.is_none_or(|own| own == alg)
    }

    /// Verifies `signature` (decoded) over `message`, through `jsonwebtoken`'s aws-lc-rs provider
    /// (named rather than the process default, so no other provider can ever be picked).
    #[allow(
        clippy::ptr_arg,
        reason = "jsonwebtoken's verifiers take the signature as &Vec<u8>"
    )]
    pub fn verify(&self, alg: Algorithm, message: &[u8], signature: &Vec<u8>) -> bool {
        if !self.allows(alg) {
            return false;
        }
        VERIFIERS.with_borrow_mut(|verifiers| {
            verifiers
                .get_or_build(self, alg)
                .is_some_and(|verifier| verifier.verify(message, signature).is_ok())
        })
    }
}

/// How many of `jsonwebtoken`'s verifiers each thread keeps: more than the keys one issuer signs
/// with at a time, for a few providers. Past that the oldest is dropped and rebuilt when next
/// needed, which costs what every verification cost before there was a cache.
const VERIFIERS_PER_THREAD: usize = 16;

/// The source of [`VerifyingKey::serial`].
static NEXT_KEY_SERIAL: AtomicU64 = AtomicU64::new(0);

thread_local! {
    /// This thread's verifiers; see [`ThreadVerifiers`].
    static VERIFIERS: RefCell<ThreadVerifiers> = const { RefCell::new(ThreadVerifiers(Vec::new())) };
}

/// The verifiers `jsonwebtoken` built for keys this thread has verified with, oldest first.
///
/// `jsonwebtoken`'s crypto provider builds a verifier for each call: it clones the key into a
/// box and, because it treats every key as secret, zeroises the clone byte by byte when it is
/// dropped. For a 2048-bit RSA key that was about 0.3 µs of every verification, the largest part
/// of credbroker's cost around the signature check after parsing (`cargo bench --bench signin`,
/// `verify/RS256` against `raw_signature/RS256`: 1.10× → 1.08× on the same build). A verifier is
/// a trait object without `Send` or `Sync`, so it cannot live in the shared key cache; each
/// thread keeps its own few instead. Entries are found by the key's serial, never its address (a
/// dropped key's address can be reused), and hold only public key material.
struct ThreadVerifiers(Vec<(u64, Algorithm, Box<dyn JwtVerifier>)>);

impl ThreadVerifiers {
    /// The verifier for `key` and `alg`, built on first use; `None` if `jsonwebtoken` refuses the
    /// pair (the key's own checks make that unreachable for an allowed `alg`).
    fn get_or_build(&mut self, key: &VerifyingKey, alg: Algorithm) -> Option<&dyn JwtVerifier> {
        let entries = &mut self.0;
        let index = match entries
            .iter()
            .position(|(serial, a, _)| *serial == key.serial && *a == alg)
        {
            Some(index) => index,
            None => {
                let verifier = (DEFAULT_PROVIDER.verifier_factory)(&alg.to_jsonwebtoken(), &key.key).ok()?;
                if entries.len() == VERIFIERS_PER_THREAD {
                    entries.remove(0);
                }
                entries.push((key.serial, alg, verifier));
                entries.len() - 1
            }
        };
        Some(entries[index].2.as_ref())
    }
}

/// `member` as a string when present; an error when present with another type.
fn optional_string<'a>(members: &'a Map<String, Value>, member: &str) -> Result<Option<&'a str>, JwkError> {
    match members.get(member) {
        None => Ok(None),
        Some(Value::String(value)) => Ok(Some(value)),
        Some(_) => Err(JwkError(format!("`{member}` is not a string"))),
    }
}

fn required_string<'a>(members: &'a Map<String, Value>, member: &str) -> Result<&'a str, JwkError> {
    optional_string(members, member)?.ok_or_else(|| JwkError(format!("`{member}` is missing")))
}

/// A published private key is a leak at the IdP, and an `oct` secret would let anyone who reads
/// the JWKS mint tokens: neither is ever used to verify.
fn refuse_private_members(members: &Map<String, Value>) -> Result<(), JwkError> {
    match PRIVATE_MEMBERS.iter().find(|m| members.contains_key(**m)) {
        Some(member) => Err(JwkError(format!(
            "has private member `{member}`; only public keys are used"
        ))),
        None => Ok(()),
    }
}

/// RFC 7517 §4.2/§4.3: a key meant for encryption, or whose `key_ops` do not include
/// `verify`, must not verify signatures.
fn check_intended_use(members: &Map<String, Value>) -> Result<(), JwkError> {
    if let Some(key_use) = optional_string(members, "use")?
        && key_use != "sig"
    {
        return Err(JwkError(format!(
            "use is `{}`, not `sig`",
            quote_untrusted(key_use)
        )));
    }
    match members.get("key_ops") {
        None => Ok(()),
        Some(Value::Array(ops)) if ops.iter().any(|op| op.as_str() == Some("verify")) => Ok(()),
        Some(_) => Err(JwkError("key_ops does not include `verify`".into())),
    }
}

/// `bytes` without leading zero octets.
fn strip_leading_zeros(bytes: &[u8]) -> &[u8] {
    let start = bytes.iter().position(|b| *b != 0).unwrap_or(bytes.len());
    bytes.get(start..).unwrap_or_default()
}

/// The number of significant bits of a minimal big-endian integer.
fn bit_length(minimal: &[u8]) -> usize {
    match minimal.first() {
        None => 0,
        Some(first) => minimal.len() * 8 - first.leading_zeros() as usize,
    }
}

/// Why a JWK or JWKS document is unusable.
#[derive(Debug, thiserror::Error)]
#[error("unusable key: {0}")]
pub struct JwkError(pub String);

/// Why [`KeySet::select`] found no key.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeyMiss {
    /// No key has the token's `kid`, or (without a `kid`) none fits its `alg`.
    Unknown,
    /// The token has no `kid` and several keys fit its `alg`.
    Ambiguous {
        /// How many keys fit.
        fitting: usize,
    },
}

/// The keys of one JWKS document; unusable entries are skipped, not fatal.
#[derive(Debug, Default, Clone)]
pub struct KeySet {
    keys: Vec<Arc<VerifyingKey>>,
}

impl KeySet {
    /// Parses a JWKS document (`{"keys": [...]}`).
    ///
    /// Entries credbroker cannot use (encryption keys, unsupported curves, small RSA keys...)
    /// are skipped. A document that is not a JWKS, or in which no key is usable, is an error,
    /// so that a cache keeps its last good keys rather than swapping them for nothing.
    pub fn from_json(bytes: &[u8]) -> Result<KeySet, JwkError> {
        let document: Value =
            serde_json::from_slice(bytes).map_err(|e| JwkError(format!("the JWKS is not JSON: {e}")))?;
        let Some(Value::Array(entries)) = document.get("keys") else {
            return Err(JwkError("not a JWKS: no `keys` array".into()));
        };
        let mut keys = Vec::with_capacity(entries.len());
        for entry in entries {
            match VerifyingKey::from_jwk(entry) {
                Ok(key) => keys.push(Arc::new(key)),
                Err(error) => tracing::debug!(%error, "skipping a JWKS entry"),
            }
        }
        if keys.is_empty() {
            return Err(JwkError(format!(
                "none of the {} JWKS entries is usable",
                entries.len()
            )));
        }
        Ok(KeySet { keys })
    }

    /// The key a token signed with `alg` (and `kid`, when it names one) must be checked with.
    ///
    /// With a `kid`, the key of that id (whether it allows `alg` is judged at verification, so a
    /// mismatch says `unsupported_algorithm`). Without one (RFC 7515 §4.1.4 makes `kid`
    /// optional): the set's only key; else the one key whose type, curve and own `alg` allow
    /// `alg` — every key here is a signature key (`use: sig` or no `use`: others are refused when
    /// the set is parsed). Guessing between several keys that fit would try signatures until one
    /// verifies, so that is refused as [`KeyMiss::Ambiguous`].
    pub fn select(&self, kid: Option<&str>, alg: Algorithm) -> Result<Arc<VerifyingKey>, KeyMiss> {
        if let Some(kid) = kid {
            return self
                .keys
                .iter()
                .find(|key| key.kid() == Some(kid))
                .cloned()
                .ok_or(KeyMiss::Unknown);
        }
        if let [only] = self.keys.as_slice() {
            return Ok(Arc::clone(only));
        }
        let mut fitting = self.keys.iter().filter(|key| key.allows(alg));
        match (fitting.next(), fitting.count()) {
            (None, _) => Err(KeyMiss::Unknown),
            (Some(key), 0) => Ok(Arc::clone(key)),
            (Some(_), others) => Err(KeyMiss::Ambiguous { fitting: others + 1 }),
        }
    }

    /// The number of usable keys.
    pub fn len(&self) -> usize {
        self.keys.len()
    }

    /// Whether the set holds no key.
    pub fn is_empty(&self) -> bool {
        self.keys.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use base64::Engine as _;
    use base64::engine::general_purpose::URL_SAFE_NO_PAD;

    use super::*;
    use crate::local::signing_key::SigningKey;

    fn jwks(keys: &[&SigningKey]) -> String {
        SigningKey::jwks(keys).to_string()
    }

    fn from_jwk_error(jwk: Value) -> String {
        VerifyingKey::from_jwk(&jwk).unwrap_err().to_string()
    }

    fn rsa_jwk() -> Value {
        SigningKey::generate(Algorithm::RS256, "r").public_jwk()
    }

    #[test]
    fn algorithm_names_round_trip_and_nothing_else_is_accepted() {
        for alg in Algorithm::ALL {
            assert_eq!(Algorithm::from_name(alg.name()), Some(alg));
        }
        for name in [
            "none", "HS256", "HS384", "HS512", "rs256", "ES512", "Ed25519", "RSA-OAEP", "",
        ] {
            assert_eq!(Algorithm::from_name(name), None, "{name}");
        }
    }

    #[test]
    fn each_key_type_allows_only_its_algorithms() {
        let allowed = |alg: Algorithm| {
            let key = VerifyingKey::from_jwk(&{
                let mut jwk = SigningKey::generate(alg, "k").public_jwk();
                jwk.as_object_mut().unwrap().remove("alg");
                jwk
            })
            .unwrap();
            Algorithm::ALL
                .into_iter()
                .filter(|a| key.allows(*a))
                .collect::<Vec<_>>()
        };
        use Algorithm::*;
        assert_eq!(allowed(RS256), vec![RS256, RS384, RS512, PS256, PS384, PS512]);
        assert_eq!(allowed(ES256), vec![ES256]);
        assert_eq!(allowed(ES384), vec![ES384]);
        assert_eq!(allowed(EdDSA), vec![EdDSA]);
    }

    #[test]
    fn a_jwk_alg_restricts_the_key() {
        let key = VerifyingKey::from_jwk(&SigningKey::generate(Algorithm::PS384, "k").public_jwk()).unwrap();
        let allowed: Vec<_> = Algorithm::ALL.into_iter().filter(|a| key.allows(*a)).collect();
        assert_eq!(allowed, vec![Algorithm::PS384]);
        assert_eq!(key.kid(), Some("k"));
    }

    #[test]
    fn a_key_never_verifies_an_algorithm_it_does_not_allow() {
        let signer = SigningKey::generate(Algorithm::PS256, "k");
        let key = VerifyingKey::from_jwk(&signer.public_jwk()).unwrap();
        let signature = signer.sign(b"message");
        assert!(key.verify(Algorithm::PS256, b"message", &signature));
        assert!(!key.verify(Algorithm::PS256, b"messagE", &signature));
        assert!(!key.verify(Algorithm::RS256, b"message", &signature));
    }

    #[test]
    fn each_key_verifies_with_its_own_verifier_however_many_keys_a_thread_uses() {
        // More keys than a thread keeps verifiers for, used twice over: the second round meets
        // evicted entries, and every round asks each key about another key's signature.
        let signers: Vec<_> = (0..VERIFIERS_PER_THREAD + 4)
            .map(|i| SigningKey::generate(Algorithm::ES256, &format!("k{i}")))
            .collect();
        let keys: Vec<_> = signers
            .iter()
            .map(|signer| VerifyingKey::from_jwk(&signer.public_jwk()).unwrap())
            .collect();
        let signatures: Vec<_> = signers.iter().map(|signer| signer.sign(b"message")).collect();
        for round in 0..2 {
            for (i, key) in keys.iter().enumerate() {
                assert!(
                    key.verify(Algorithm::ES256, b"message", &signatures[i]),
                    "round {round}, key {i}"
                );
                let another = &signatures[(i + 1) % signatures.len()];
                assert!(
                    !key.verify(Algorithm::ES256, b"message", another),
                    "round {round}, key {i}"
                );
            }
        }
    }

    #[test]
    fn one_rsa_key_verifies_each_algorithm_with_that_algorithm() {
        let signer = SigningKey::generate(Algorithm::RS256, "k");
        let mut jwk = signer.public_jwk();
        jwk.as_object_mut().unwrap().remove("alg");
        let key = VerifyingKey::from_jwk(&jwk).unwrap();
        let pkcs1_signature = signer.sign(b"message");
        assert!(key.verify(Algorithm::RS256, b"message", &pkcs1_signature));
        // The same key with PSS: a PSS check, not the PKCS#1 verifier this thread just built.
        assert!(!key.verify(Algorithm::PS256, b"message", &pkcs1_signature));
        assert!(key.verify(Algorithm::RS256, b"message", &pkcs1_signature));
    }

    #[test]
    fn symmetric_private_and_encryption_keys_are_refused() {
        assert!(from_jwk_error(json!({"kty": "oct", "k": "c2VjcmV0"})).contains("private member `k`"));
        assert!(from_jwk_error(json!({"kty": "oct"})).contains("oct"));
        let mut private = rsa_jwk();
        private["d"] = json!("AQAB");
        assert!(from_jwk_error(private).contains("private member `d`"));
        let mut encryption = rsa_jwk();
        encryption["use"] = json!("enc");
        assert!(from_jwk_error(encryption).contains("use is `enc`"));
        let mut ops = rsa_jwk();
        ops["key_ops"] = json!(["encrypt", "sign"]);
        assert!(from_jwk_error(ops).contains("key_ops"));
        let mut ops = rsa_jwk();
        ops["key_ops"] = json!(["verify"]);
        assert!(VerifyingKey::from_jwk(&ops).is_ok());
        let mut no_use = rsa_jwk();
        no_use.as_object_mut().unwrap().remove("use");
        assert!(VerifyingKey::from_jwk(&no_use).is_ok());
    }

    #[test]
    fn malformed_jwks_entries_are_refused() {
        assert!(from_jwk_error(json!("RSA")).contains("JSON object"));
        assert!(from_jwk_error(json!({"n": "AQAB", "e": "AQAB"})).contains("`kty` is missing"));
        assert!(from_jwk_error(json!({"kty": "DSA"})).contains("kty `DSA`"));
        let mut bad_alg = rsa_jwk();
        bad_alg["alg"] = json!("HS256");
        assert!(from_jwk_error(bad_alg).contains("alg `HS256`"));
        let mut wrong_family = rsa_jwk();
        wrong_family["alg"] = json!("ES256");
        assert!(from_jwk_error(wrong_family).contains("does not fit"));
        let mut long_kid = rsa_jwk();
        long_kid["kid"] = json!("k".repeat(MAX_KID_BYTES + 1));
        assert!(from_jwk_error(long_kid).contains("kid"));
        let mut numeric_kid = rsa_jwk();
        numeric_kid["kid"] = json!(7);
        assert!(from_jwk_error(numeric_kid).contains("`kid` is not a string"));
        let mut padded = rsa_jwk();
        padded["e"] = json!("AQAB=");
        assert!(from_jwk_error(padded).contains("not base64url without padding"));
    }

    #[test]
    fn small_rsa_moduli_are_refused_and_leading_zeros_tolerated() {
        let mut small = rsa_jwk();
        small["n"] = json!(URL_SAFE_NO_PAD.encode([0xC1u8; 128]));
        assert!(from_jwk_error(small).contains("1024 bits"));

        let signer = SigningKey::generate(Algorithm::RS256, "k");
        let mut padded = signer.public_jwk();
        let n = URL_SAFE_NO_PAD.decode(padded["n"].as_str().unwrap()).unwrap();
        padded["n"] = json!(URL_SAFE_NO_PAD.encode([&[0u8][..], &n].concat()));
        let key = VerifyingKey::from_jwk(&padded).unwrap();
        assert!(key.verify(Algorithm::RS256, b"m", &signer.sign(b"m")));
    }

    #[test]
    fn curve_points_are_checked() {
        let p256 = SigningKey::generate(Algorithm::ES256, "k").public_jwk();
        let mut short = p256.clone();
        short["x"] = json!(URL_SAFE_NO_PAD.encode([1u8; 31]));
        assert!(from_jwk_error(short).contains("32 bytes"));
        let mut off_curve = p256.clone();
        off_curve["y"] = json!(URL_SAFE_NO_PAD.encode([1u8; 32]));
        assert!(from_jwk_error(off_curve).contains("not on the curve"));
        let mut p521 = p256.clone();
        p521["crv"] = json!("P-521");
        assert!(from_jwk_error(p521).contains("P-521"));
        let mut p384_claim = p256;
        p384_claim["crv"] = json!("P-384");
        p384_claim["alg"] = json!("ES384");
        assert!(from_jwk_error(p384_claim).contains("48 bytes"));

        let ed = SigningKey::generate(Algorithm::EdDSA, "k").public_jwk();
        let mut x25519 = ed.clone();
        x25519["crv"] = json!("X25519");
        assert!(from_jwk_error(x25519).contains("X25519"));
        let mut long = ed;
        long["x"] = json!(URL_SAFE_NO_PAD.encode([1u8; 33]));
        assert!(from_jwk_error(long).contains("32 bytes"));
    }

    #[test]
    fn key_sets_skip_unusable_entries() {
        let good = SigningKey::generate(Algorithm::ES256, "good");
        let document = json!({"keys": [
            {"kty": "oct", "k": "c2VjcmV0", "kid": "hmac"},
            {"kty": "RSA", "use": "enc", "kid": "enc", "n": "AQAB", "e": "AQAB"},
            good.public_jwk(),
        ]});
        let set = KeySet::from_json(document.to_string().as_bytes()).unwrap();
        assert_eq!(set.len(), 1);
        assert_eq!(
            set.select(Some("good"), Algorithm::ES256).unwrap().kid(),
            Some("good")
        );
        assert_eq!(
            set.select(Some("hmac"), Algorithm::ES256).unwrap_err(),
            KeyMiss::Unknown
        );
        assert_eq!(set.select(None, Algorithm::ES256).unwrap().kid(), Some("good"));
    }

    /// The JWK of `key` without its own `alg` member (many IdPs publish keys that way).
    fn without_alg(key: &SigningKey) -> Value {
        let mut jwk = key.public_jwk();
        jwk.as_object_mut().unwrap().remove("alg");
        jwk
    }

    fn set_of(jwks: &[Value]) -> KeySet {
        KeySet::from_json(json!({ "keys": jwks }).to_string().as_bytes()).unwrap()
    }

    fn selected(set: &KeySet, kid: Option<&str>, alg: Algorithm) -> Result<Option<String>, KeyMiss> {
        set.select(kid, alg).map(|key| key.kid().map(str::to_string))
    }

    #[test]
    fn with_a_kid_the_kid_decides() {
        let (a, b) = (
            SigningKey::generate(Algorithm::ES256, "a"),
            SigningKey::generate(Algorithm::EdDSA, "b"),
        );
        let set = KeySet::from_json(jwks(&[&a, &b]).as_bytes()).unwrap();
        assert_eq!(selected(&set, Some("b"), Algorithm::EdDSA), Ok(Some("b".into())));
        // The alg mismatch is for verification to report (`unsupported_algorithm`).
        assert_eq!(selected(&set, Some("b"), Algorithm::ES256), Ok(Some("b".into())));
        assert_eq!(selected(&set, Some("c"), Algorithm::ES256), Err(KeyMiss::Unknown));
    }

    #[test]
    fn without_kid_the_one_key_that_fits_the_alg_is_chosen() {
        use Algorithm::*;
        let rsa = SigningKey::generate(RS256, "r");
        let (p256, p384, ed) = (
            SigningKey::generate(ES256, "p256"),
            SigningKey::generate(ES384, "p384"),
            SigningKey::generate(EdDSA, "ed"),
        );
        // Key type and curve decide, even when the JWKs carry no `alg`.
        let set = set_of(&[
            without_alg(&rsa),
            without_alg(&p256),
            without_alg(&p384),
            without_alg(&ed),
        ]);
        assert_eq!(selected(&set, None, RS256), Ok(Some("r".into())));
        assert_eq!(selected(&set, None, PS512), Ok(Some("r".into())));
        assert_eq!(selected(&set, None, ES256), Ok(Some("p256".into())));
        assert_eq!(selected(&set, None, ES384), Ok(Some("p384".into())));
        assert_eq!(selected(&set, None, EdDSA), Ok(Some("ed".into())));
        // The JWK's own `alg` narrows an RSA key: one RS256 key and one PS256 key never clash.
        let ps = SigningKey::generate(PS256, "ps");
        let set = set_of(&[rsa.public_jwk(), ps.public_jwk()]);
        assert_eq!(selected(&set, None, RS256), Ok(Some("r".into())));
        assert_eq!(selected(&set, None, PS256), Ok(Some("ps".into())));
        assert_eq!(selected(&set, None, RS384), Err(KeyMiss::Unknown));
    }

    #[test]
    fn without_kid_several_fitting_keys_are_ambiguous() {
        use Algorithm::*;
        let (a, b, c) = (
            SigningKey::generate(ES256, "a"),
            SigningKey::generate(ES256, "b"),
            SigningKey::generate(EdDSA, "c"),
        );
        let set = KeySet::from_json(jwks(&[&a, &b, &c]).as_bytes()).unwrap();
        assert_eq!(
            selected(&set, None, ES256),
            Err(KeyMiss::Ambiguous { fitting: 2 })
        );
        assert_eq!(selected(&set, None, EdDSA), Ok(Some("c".into())));
        assert_eq!(selected(&set, None, ES384), Err(KeyMiss::Unknown));
        // An RSA key without `alg` fits all six RSA algorithms, so it clashes with an RS256 one.
        let (r1, r2) = (
            SigningKey::generate(RS256, "r1"),
            SigningKey::generate(PS256, "r2"),
        );
        let set = set_of(&[r1.public_jwk(), without_alg(&r2)]);
        assert_eq!(
            selected(&set, None, RS256),
            Err(KeyMiss::Ambiguous { fitting: 2 })
        );
        assert_eq!(selected(&set, None, PS256), Ok(Some("r2".into())));
        // Encryption keys are not candidates: they never enter the set.
        let mut encryption = without_alg(&r2);
        encryption["use"] = json!("enc");
        let set = set_of(&[r1.public_jwk(), encryption, c.public_jwk()]);
        assert_eq!(selected(&set, None, RS256), Ok(Some("r1".into())));
    }

    #[test]
    fn without_kid_a_single_key_is_used_whatever_the_alg() {
        // Verification then refuses the mismatch as `unsupported_algorithm`, as with a kid.
        let only = SigningKey::generate(Algorithm::ES256, "only");
        let set = KeySet::from_json(jwks(&[&only]).as_bytes()).unwrap();
        assert_eq!(selected(&set, None, Algorithm::RS256), Ok(Some("only".into())));
    }

    #[test]
    fn documents_that_are_not_jwks_are_errors() {
        for document in [
            "garbage",
            "[]",
            r#"{"keys": {}}"#,
            r#"{"key": []}"#,
            r#"{"keys": []}"#,
            r#"{"keys": [{"kty": "oct"}]}"#,
        ] {
            assert!(KeySet::from_json(document.as_bytes()).is_err(), "{document}");
        }
    }
}
