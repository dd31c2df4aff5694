//! JSON Web Keys (RFC 7517/7518): parsing keys, the per-issuer key cache, and signing keys for the
//! dev provider and tests. Crypto is aws-lc-rs (the backend the AWS SDK already links).
//!
//! The cache fetches over a `reqwest::Client` the caller builds. That client should limit
//! redirects (or refuse them): the cache checks that the final URL is still https (or http on
//! loopback) before using a document, but cannot stop the client from following a redirect.

use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use aws_lc_rs::rand::SystemRandom;
use aws_lc_rs::rsa::KeySize;
use aws_lc_rs::signature::{
    self as sig, EcdsaKeyPair, Ed25519KeyPair, KeyPair, ParsedPublicKey, RsaKeyPair, RsaParameters,
    RsaPublicKeyComponents,
};
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde_json::{Map, Value, json};
use tokio::time::Instant;
use url::Url;

use crate::config::is_acceptable_url;
use crate::telemetry;
use crate::token::quote_untrusted;

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

    /// The aws-lc-rs verification parameters for the RSA algorithms, `None` for the others.
    fn rsa_parameters(self) -> Option<&'static RsaParameters> {
        match self {
            Algorithm::RS256 => Some(&sig::RSA_PKCS1_2048_8192_SHA256),
            Algorithm::RS384 => Some(&sig::RSA_PKCS1_2048_8192_SHA384),
            Algorithm::RS512 => Some(&sig::RSA_PKCS1_2048_8192_SHA512),
            Algorithm::PS256 => Some(&sig::RSA_PSS_2048_8192_SHA256),
            Algorithm::PS384 => Some(&sig::RSA_PSS_2048_8192_SHA384),
            Algorithm::PS512 => Some(&sig::RSA_PSS_2048_8192_SHA512),
            Algorithm::ES256 | Algorithm::ES384 | Algorithm::EdDSA => None,
        }
    }
}

/// The public key itself, by key type and curve.
enum PublicKeyMaterial {
    /// An RSA key; one key serves all six RSA algorithms, so the components are kept.
    Rsa(RsaPublicKeyComponents<Vec<u8>>),
    /// A P-256 point, parsed once for ES256.
    P256(ParsedPublicKey),
    /// A P-384 point, parsed once for ES384.
    P384(ParsedPublicKey),
    /// An Ed25519 key, parsed once for EdDSA.
    Ed25519(ParsedPublicKey),
}

impl PublicKeyMaterial {
    /// Whether a key of this type and curve can make `alg` signatures (RFC 7518 §3).
    fn supports(&self, alg: Algorithm) -> bool {
        match self {
            PublicKeyMaterial::Rsa(_) => alg.rsa_parameters().is_some(),
            PublicKeyMaterial::P256(_) => alg == Algorithm::ES256,
            PublicKeyMaterial::P384(_) => alg == Algorithm::ES384,
            PublicKeyMaterial::Ed25519(_) => alg == Algorithm::EdDSA,
        }
    }

    fn kind(&self) -> &'static str {
        match self {
            PublicKeyMaterial::Rsa(_) => "RSA",
            PublicKeyMaterial::P256(_) => "EC P-256",
            PublicKeyMaterial::P384(_) => "EC P-384",
            PublicKeyMaterial::Ed25519(_) => "OKP Ed25519",
        }
    }
}

/// A public key that can verify token signatures.
pub struct VerifyingKey {
    kid: Option<String>,
    /// The JWK's own `alg` member: when present, the only algorithm the key may be used with.
    alg: Option<Algorithm>,
    material: PublicKeyMaterial,
}

impl fmt::Debug for VerifyingKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("VerifyingKey")
            .field("kid", &self.kid)
            .field("alg", &self.alg)
            .field("kty", &self.material.kind())
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
        let material = match required_string(members, "kty")? {
            "RSA" => rsa_material(members)?,
            "EC" => ec_material(members)?,
            "OKP" => okp_material(members)?,
            "oct" => return Err(JwkError("symmetric (oct) keys are never accepted".into())),
            other => {
                return Err(JwkError(format!(
                    "kty `{}` is not supported",
                    quote_untrusted(other)
                )));
            }
        };
        if let Some(alg) = alg.filter(|alg| !material.supports(*alg)) {
            return Err(JwkError(format!(
                "alg {} does not fit a {} key",
                alg.name(),
                material.kind()
            )));
        }
        Ok(VerifyingKey {
            kid: kid.map(str::to_string),
            alg,
            material,
        })
    }

    /// The key id.
    pub fn kid(&self) -> Option<&str> {
        self.kid.as_deref()
    }

    /// Whether a signature made with `alg` can come from this key (key type, curve and the JWK's
    /// own `alg` member when present).
    pub fn allows(&self, alg: Algorithm) -> bool {
        self.material.supports(alg) && self.alg.is_none_or(|own| own == alg)
    }

    /// Verifies `signature` over `message`.
    pub fn verify(&self, alg: Algorithm, message: &[u8], signature: &[u8]) -> bool {
        if !self.allows(alg) {
            return false;
        }
        match &self.material {
            PublicKeyMaterial::Rsa(components) => alg
                .rsa_parameters()
                .is_some_and(|params| components.verify(params, message, signature).is_ok()),
            PublicKeyMaterial::P256(key) | PublicKeyMaterial::P384(key) | PublicKeyMaterial::Ed25519(key) => {
                key.verify_sig(message, signature).is_ok()
            }
        }
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

/// A required base64url member, decoded (RFC 7518 §6: base64url without padding).
fn required_bytes(members: &Map<String, Value>, member: &str) -> Result<Vec<u8>, JwkError> {
    URL_SAFE_NO_PAD
        .decode(required_string(members, member)?)
        .map_err(|_| JwkError(format!("`{member}` is not base64url without padding")))
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
    if let Some(key_use) = optional_string(members, "use")? {
        if key_use != "sig" {
            return Err(JwkError(format!(
                "use is `{}`, not `sig`",
                quote_untrusted(key_use)
            )));
        }
    }
    match members.get("key_ops") {
        None => Ok(()),
        Some(Value::Array(ops)) if ops.iter().any(|op| op.as_str() == Some("verify")) => Ok(()),
        Some(_) => Err(JwkError("key_ops does not include `verify`".into())),
    }
}

/// `bytes` without leading zero octets: aws-lc-rs wants minimal big-endian integers, and some
/// IdPs pad the modulus with a zero octet.
fn strip_leading_zeros(bytes: &[u8]) -> Vec<u8> {
    let start = bytes.iter().position(|b| *b != 0).unwrap_or(bytes.len());
    bytes.get(start..).unwrap_or_default().to_vec()
}

/// The number of significant bits of a minimal big-endian integer.
fn bit_length(minimal: &[u8]) -> usize {
    match minimal.first() {
        None => 0,
        Some(first) => minimal.len() * 8 - first.leading_zeros() as usize,
    }
}

fn rsa_material(members: &Map<String, Value>) -> Result<PublicKeyMaterial, JwkError> {
    let n = strip_leading_zeros(&required_bytes(members, "n")?);
    let e = strip_leading_zeros(&required_bytes(members, "e")?);
    let bits = bit_length(&n);
    if !(MIN_RSA_BITS..=MAX_RSA_BITS).contains(&bits) {
        return Err(JwkError(format!(
            "RSA modulus has {bits} bits, outside {MIN_RSA_BITS}..={MAX_RSA_BITS}"
        )));
    }
    let components = RsaPublicKeyComponents { n, e };
    // Parsing once here rejects inconsistent keys (e.g. an even or zero exponent) at load time
    // instead of at every verification.
    components
        .to_parsed_public_key(&sig::RSA_PKCS1_2048_8192_SHA256)
        .map_err(|_| JwkError("RSA key is not valid".into()))?;
    Ok(PublicKeyMaterial::Rsa(components))
}

fn ec_material(members: &Map<String, Value>) -> Result<PublicKeyMaterial, JwkError> {
    let crv = required_string(members, "crv")?;
    type Wrap = fn(ParsedPublicKey) -> PublicKeyMaterial;
    let (coordinate_len, algorithm, wrap): (usize, &'static sig::EcdsaVerificationAlgorithm, Wrap) = match crv
    {
        "P-256" => (32, &sig::ECDSA_P256_SHA256_FIXED, PublicKeyMaterial::P256),
        "P-384" => (48, &sig::ECDSA_P384_SHA384_FIXED, PublicKeyMaterial::P384),
        other => {
            return Err(JwkError(format!(
                "EC curve `{}` is not supported",
                quote_untrusted(other)
            )));
        }
    };
    let x = required_bytes(members, "x")?;
    let y = required_bytes(members, "y")?;
    if x.len() != coordinate_len || y.len() != coordinate_len {
        return Err(JwkError(format!(
            "{crv} coordinates must be {coordinate_len} bytes each"
        )));
    }
    // SEC 1 uncompressed point: 0x04 || x || y. Parsing checks the point is on the curve.
    let point: Vec<u8> = [&[0x04][..], &x, &y].concat();
    let key = ParsedPublicKey::new(algorithm, point)
        .map_err(|_| JwkError(format!("{crv} point is not on the curve")))?;
    Ok(wrap(key))
}

fn okp_material(members: &Map<String, Value>) -> Result<PublicKeyMaterial, JwkError> {
    let crv = required_string(members, "crv")?;
    if crv != "Ed25519" {
        return Err(JwkError(format!(
            "OKP curve `{}` is not supported",
            quote_untrusted(crv)
        )));
    }
    let x = required_bytes(members, "x")?;
    if x.len() != sig::ED25519_PUBLIC_KEY_LEN {
        return Err(JwkError("Ed25519 x must be 32 bytes".into()));
    }
    let key =
        ParsedPublicKey::new(&sig::ED25519, x).map_err(|_| JwkError("Ed25519 key is not valid".into()))?;
    Ok(PublicKeyMaterial::Ed25519(key))
}

/// Why a JWK or JWKS document is unusable.
#[derive(Debug, thiserror::Error)]
#[error("unusable key: {0}")]
pub struct JwkError(pub String);

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

    /// The key with this `kid`; without a kid, the only key when there is exactly one.
    pub fn find(&self, kid: Option<&str>) -> Option<Arc<VerifyingKey>> {
        match kid {
            Some(kid) => self.keys.iter().find(|key| key.kid() == Some(kid)).cloned(),
            // Without a kid, picking one of several keys would be a guess (RFC 7515 §4.1.4).
            None => match self.keys.as_slice() {
                [only] => Some(Arc::clone(only)),
                _ => None,
            },
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
    /// The provider whose keys these are: the `provider` label of the JWKS metrics.
    pub provider: Arc<str>,
}

impl From<&crate::config::JwksSettings> for JwksPolicy {
    fn from(settings: &crate::config::JwksSettings) -> JwksPolicy {
        JwksPolicy {
            cooldown: Duration::from_secs(settings.cooldown_seconds),
            timeout: Duration::from_secs(settings.timeout_seconds),
            min_max_age: Duration::from_secs(settings.min_max_age_seconds),
            max_max_age: Duration::from_secs(settings.max_max_age_seconds),
            max_document_bytes: settings.max_document_bytes,
            provider: telemetry::NO_PROVIDER.into(),
        }
    }
}

impl JwksPolicy {
    /// The same policy for the caches of provider `name`.
    pub fn for_provider(&self, name: &str) -> JwksPolicy {
        JwksPolicy {
            provider: name.into(),
            ..self.clone()
        }
    }

    /// How long a document stays fresh, given the server's `max-age` (if any).
    fn lifetime(&self, max_age: Option<Duration>) -> Duration {
        // min/max rather than `clamp`, which panics when the bounds are inverted.
        max_age
            .unwrap_or(self.max_max_age)
            .min(self.max_max_age)
            .max(self.min_max_age)
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

impl KeyError {
    fn unknown(kid: Option<&str>) -> KeyError {
        KeyError::UnknownKey(match kid {
            Some(kid) => format!("`{}`", quote_untrusted(kid)),
            None => "(none: the token has no kid and the issuer has several keys)".into(),
        })
    }
}

/// A document fetched over HTTP, with the lifetime its server gave it.
#[derive(Debug)]
pub(crate) struct FetchedDocument {
    /// The body, at most the policy's `max_document_bytes`.
    pub(crate) body: Vec<u8>,
    /// `Cache-Control: max-age`, when the server sent one.
    pub(crate) max_age: Option<Duration>,
}

/// GETs `url` under `policy`: acceptable URLs only, a timeout over the whole exchange, 2xx only,
/// and a body bound enforced while reading (Content-Length is only used to fail early).
/// The error is a short reason without secrets, fit for logs and problem details.
pub(crate) async fn fetch_document(
    client: &reqwest::Client,
    url: &Url,
    policy: &JwksPolicy,
) -> Result<FetchedDocument, String> {
    if !is_acceptable_url(url) {
        return Err(format!("{url} is neither https nor http on a loopback host"));
    }
    let describe = |error: reqwest::Error| describe_request_error(url, policy.timeout, &error);
    let mut response = client
        .get(url.clone())
        .header(reqwest::header::ACCEPT, "application/json")
        .timeout(policy.timeout)
        .send()
        .await
        .map_err(describe)?;
    if !is_acceptable_url(response.url()) {
        return Err(format!(
            "GET {url} was redirected to a URL that is not acceptable"
        ));
    }
    let status = response.status();
    if !status.is_success() {
        return Err(format!("GET {url} answered HTTP {}", status.as_u16()));
    }
    let limit = policy.max_document_bytes;
    let too_large = || format!("GET {url} sent a document over the {limit}-byte limit");
    if response
        .content_length()
        .is_some_and(|length| length > limit as u64)
    {
        return Err(too_large());
    }
    let max_age = max_age(response.headers());
    let mut body = Vec::new();
    while let Some(chunk) = response.chunk().await.map_err(describe)? {
        if body.len().saturating_add(chunk.len()) > limit {
            return Err(too_large());
        }
        body.extend_from_slice(&chunk);
    }
    Ok(FetchedDocument { body, max_age })
}

fn describe_request_error(url: &Url, timeout: Duration, error: &reqwest::Error) -> String {
    if error.is_timeout() {
        format!("GET {url} timed out after {} ms", timeout.as_millis())
    } else if error.is_connect() {
        format!("GET {url}: cannot connect")
    } else if error.is_redirect() {
        format!("GET {url}: too many or refused redirects")
    } else {
        format!("GET {url} failed")
    }
}

/// The `max-age` directive of `Cache-Control` (RFC 9111 §5.2.2.1); `no-store` and `no-cache`
/// count as zero (the policy's minimum then applies).
fn max_age(headers: &reqwest::header::HeaderMap) -> Option<Duration> {
    let mut found = None;
    for value in headers.get_all(reqwest::header::CACHE_CONTROL) {
        let Ok(value) = value.to_str() else { continue };
        for directive in value.split(',').map(str::trim) {
            let (name, argument) = directive.split_once('=').unwrap_or((directive, ""));
            let name = name.trim();
            if name.eq_ignore_ascii_case("no-store") || name.eq_ignore_ascii_case("no-cache") {
                return Some(Duration::ZERO);
            }
            if name.eq_ignore_ascii_case("max-age") {
                found = found.or_else(|| parse_delta_seconds(argument));
            }
        }
    }
    found
}

/// RFC 9111 §1.2.2 delta-seconds: digits, saturating on overflow.
fn parse_delta_seconds(text: &str) -> Option<Duration> {
    let digits = text.trim().trim_matches('"');
    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    Some(Duration::from_secs(digits.parse().unwrap_or(u64::MAX)))
}

/// Lets one fetch run at a time; callers that waited while another fetch ran use its outcome
/// rather than fetching again, so N concurrent callers cost one fetch.
#[derive(Debug, Default)]
pub(crate) struct FetchGate {
    lock: tokio::sync::Mutex<()>,
    completed: AtomicU64,
}

impl FetchGate {
    /// Take a ticket BEFORE looking at the cached state: if a fetch completes after that, the
    /// ticket is outdated and `run` will not fetch again.
    pub(crate) fn ticket(&self) -> u64 {
        self.completed.load(Ordering::SeqCst)
    }

    /// Runs `fetch` unless a fetch completed since `ticket` was taken.
    pub(crate) async fn run(&self, ticket: u64, fetch: impl Future<Output = ()>) {
        let _in_flight = self.lock.lock().await;
        if self.completed.load(Ordering::SeqCst) == ticket {
            fetch.await;
            // Not reached when the fetching caller is cancelled: a waiter then fetches instead.
            self.completed.fetch_add(1, Ordering::SeqCst);
        }
    }
}

/// A std mutex guard, recovering from poisoning (the guarded state is always left consistent:
/// no code panics while holding it).
pub(crate) fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

/// Keys from the last successful fetch.
#[derive(Debug)]
struct CachedKeys {
    keys: KeySet,
    /// `None` when the lifetime reaches beyond what `Instant` can represent.
    fresh_until: Option<Instant>,
}

#[derive(Debug, Default)]
struct CacheState {
    keys: Option<CachedKeys>,
    /// When the last completed fetch started (the cooldown runs from there).
    last_fetch: Option<Instant>,
    /// Why the last fetch failed, when it did.
    last_error: Option<String>,
}

impl CacheState {
    /// Whether a lookup for `kid` at `now` should fetch before answering.
    fn needs_fetch(&self, kid: Option<&str>, now: Instant, cooldown: Duration) -> bool {
        let cooling_down = self
            .last_fetch
            .is_some_and(|started| now.saturating_duration_since(started) < cooldown);
        if cooling_down {
            return false;
        }
        match &self.keys {
            None => true,
            Some(cached) => {
                let fresh = cached.fresh_until.is_none_or(|until| now < until);
                !fresh || cached.keys.find(kid).is_none()
            }
        }
    }

    /// Whether the cached keys are past their lifetime (kept because refreshing them failed).
    fn is_stale(&self, now: Instant) -> bool {
        self.keys
            .as_ref()
            .and_then(|cached| cached.fresh_until)
            .is_some_and(|until| now >= until)
    }

    /// The answer from what is cached, stale keys included (stale-if-error).
    fn answer(&self, kid: Option<&str>) -> Result<Arc<VerifyingKey>, KeyError> {
        match &self.keys {
            Some(cached) => cached.keys.find(kid).ok_or_else(|| KeyError::unknown(kid)),
            None => Err(KeyError::Unavailable(
                self.last_error
                    .clone()
                    .unwrap_or_else(|| "signing keys not fetched yet".into()),
            )),
        }
    }
}

/// The keys of one issuer: fetched at first use, refreshed when `max-age` runs out or a token
/// names an unknown `kid` (at most once per cooldown), the last good keys kept while the IdP is
/// down, and concurrent requests sharing one fetch.
#[derive(Debug)]
pub struct JwksCache {
    client: reqwest::Client,
    jwks_uri: Url,
    policy: JwksPolicy,
    state: Mutex<CacheState>,
    gate: FetchGate,
    fetches: AtomicU64,
}

impl JwksCache {
    /// A cache for `jwks_uri`, fetched with `client` (which should limit redirects).
    pub fn new(client: reqwest::Client, jwks_uri: Url, policy: JwksPolicy) -> JwksCache {
        JwksCache {
            client,
            jwks_uri,
            policy,
            state: Mutex::default(),
            gate: FetchGate::default(),
            fetches: AtomicU64::new(0),
        }
    }

    /// The key for `kid`, fetching or refreshing as the policy allows.
    pub async fn key(&self, kid: Option<&str>) -> Result<Arc<VerifyingKey>, KeyError> {
        self.key_at(kid, Instant::now()).await
    }

    /// How many fetches this cache has started (for tests and metrics).
    pub fn fetch_count(&self) -> u64 {
        self.fetches.load(Ordering::SeqCst)
    }

    /// The JWKS URI.
    pub fn jwks_uri(&self) -> &Url {
        &self.jwks_uri
    }

    /// [`JwksCache::key`] as if the clock read `now` (tests move the clock without sleeping).
    async fn key_at(&self, kid: Option<&str>, now: Instant) -> Result<Arc<VerifyingKey>, KeyError> {
        let ticket = self.gate.ticket();
        {
            let state = lock(&self.state);
            if !state.needs_fetch(kid, now, self.policy.cooldown) {
                return self.answer_counting_stale(&state, kid, now);
            }
        }
        self.gate.run(ticket, self.refresh(now)).await;
        self.answer_counting_stale(&lock(&self.state), kid, now)
    }

    /// [`CacheState::answer`], counting keys served from an expired set (stale-if-error).
    fn answer_counting_stale(
        &self,
        state: &CacheState,
        kid: Option<&str>,
        now: Instant,
    ) -> Result<Arc<VerifyingKey>, KeyError> {
        let answer = state.answer(kid);
        if answer.is_ok() && state.is_stale(now) {
            metrics::counter!(telemetry::JWKS_STALE_SERVED, telemetry::PROVIDER => self.policy.provider.to_string()).increment(1);
        }
        answer
    }

    /// Fetches the key set afresh without touching the cache: `Ok` when it holds a usable key.
    /// Readiness probes use it, so a probe neither hides nor causes a refresh.
    pub async fn probe(&self) -> Result<(), String> {
        let document = fetch_document(&self.client, &self.jwks_uri, &self.policy).await?;
        // A set without a usable key is an error of `from_json` already.
        KeySet::from_json(&document.body)
            .map(|_| ())
            .map_err(|e| format!("{}: {e}", self.jwks_uri))
    }

    /// Fetches the JWKS and records the outcome; a failure keeps the previous keys.
    async fn refresh(&self, started: Instant) {
        self.fetches.fetch_add(1, Ordering::SeqCst);
        metrics::counter!(telemetry::JWKS_FETCHES, telemetry::PROVIDER => self.policy.provider.to_string())
            .increment(1);
        let outcome = match fetch_document(&self.client, &self.jwks_uri, &self.policy).await {
            Ok(document) => KeySet::from_json(&document.body)
                .map(|keys| (keys, document.max_age))
                .map_err(|e| format!("{}: {e}", self.jwks_uri)),
            Err(reason) => Err(reason),
        };
        let mut state = lock(&self.state);
        state.last_fetch = Some(started);
        match outcome {
            Ok((keys, max_age)) => {
                state.keys = Some(CachedKeys {
                    keys,
                    fresh_until: started.checked_add(self.policy.lifetime(max_age)),
                });
                state.last_error = None;
            }
            Err(reason) => {
                metrics::counter!(telemetry::JWKS_FETCH_FAILURES, telemetry::PROVIDER => self.policy.provider.to_string()).increment(1);
                tracing::warn!(%reason, "JWKS fetch failed; keeping the last good keys, if any");
                state.last_error = Some(reason);
            }
        }
    }
}

/// The private half of a [`SigningKey`].
enum PrivateKey {
    Rsa(RsaKeyPair),
    Ecdsa(EcdsaKeyPair),
    Ed25519(Ed25519KeyPair),
}

/// A private key that signs JWTs: the dev provider's key, and test issuers' keys.
pub struct SigningKey {
    alg: Algorithm,
    kid: String,
    key: PrivateKey,
}

impl fmt::Debug for SigningKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Never the key material.
        f.debug_struct("SigningKey")
            .field("alg", &self.alg)
            .field("kid", &self.kid)
            .finish_non_exhaustive()
    }
}

impl SigningKey {
    /// A fresh key for `alg` (the RSA algorithms use 2048-bit RSA).
    pub fn generate(alg: Algorithm, kid: &str) -> SigningKey {
        // Key generation fails only when the system RNG does, which no input can cause.
        let key = match alg {
            Algorithm::RS256
            | Algorithm::RS384
            | Algorithm::RS512
            | Algorithm::PS256
            | Algorithm::PS384
            | Algorithm::PS512 => PrivateKey::Rsa(
                RsaKeyPair::generate(KeySize::Rsa2048).expect("RSA key generation (system RNG)"),
            ),
            Algorithm::ES256 => PrivateKey::Ecdsa(
                EcdsaKeyPair::generate(&sig::ECDSA_P256_SHA256_FIXED_SIGNING)
                    .expect("P-256 key generation (system RNG)"),
            ),
            Algorithm::ES384 => PrivateKey::Ecdsa(
                EcdsaKeyPair::generate(&sig::ECDSA_P384_SHA384_FIXED_SIGNING)
                    .expect("P-384 key generation (system RNG)"),
            ),
            Algorithm::EdDSA => {
                PrivateKey::Ed25519(Ed25519KeyPair::generate().expect("Ed25519 key generation (system RNG)"))
            }
        };
        SigningKey {
            alg,
            kid: kid.to_string(),
            key,
        }
    }

    /// The algorithm.
    pub fn algorithm(&self) -> Algorithm {
        self.alg
    }

    /// The key id.
    pub fn kid(&self) -> &str {
        &self.kid
    }

    /// The public half as a JWK (with `kid`, `alg`, `use: sig`).
    pub fn public_jwk(&self) -> Value {
        let b64 = |bytes: &[u8]| URL_SAFE_NO_PAD.encode(bytes);
        let mut jwk = match &self.key {
            PrivateKey::Rsa(key) => {
                let public = RsaPublicKeyComponents::<Vec<u8>>::from(key.public_key());
                json!({"kty": "RSA", "n": b64(&public.n), "e": b64(&public.e)})
            }
            PrivateKey::Ecdsa(key) => {
                // The public key is the SEC 1 uncompressed point 0x04 || x || y.
                let point = key.public_key().as_ref();
                let coordinates = point.get(1..).unwrap_or_default();
                let (x, y) = coordinates.split_at(coordinates.len() / 2);
                let crv = if self.alg == Algorithm::ES384 {
                    "P-384"
                } else {
                    "P-256"
                };
                json!({"kty": "EC", "crv": crv, "x": b64(x), "y": b64(y)})
            }
            PrivateKey::Ed25519(key) => {
                json!({"kty": "OKP", "crv": "Ed25519", "x": b64(key.public_key().as_ref())})
            }
        };
        if let Value::Object(members) = &mut jwk {
            members.insert("kid".into(), self.kid.clone().into());
            members.insert("alg".into(), self.alg.name().into());
            members.insert("use".into(), "sig".into());
        }
        jwk
    }

    /// Signs arbitrary bytes (tests use this to build hostile tokens).
    pub fn sign(&self, message: &[u8]) -> Vec<u8> {
        let rng = SystemRandom::new();
        match &self.key {
            PrivateKey::Rsa(key) => {
                let encoding: &'static dyn sig::RsaEncoding = match self.alg {
                    Algorithm::RS384 => &sig::RSA_PKCS1_SHA384,
                    Algorithm::RS512 => &sig::RSA_PKCS1_SHA512,
                    Algorithm::PS256 => &sig::RSA_PSS_SHA256,
                    Algorithm::PS384 => &sig::RSA_PSS_SHA384,
                    Algorithm::PS512 => &sig::RSA_PSS_SHA512,
                    _ => &sig::RSA_PKCS1_SHA256,
                };
                let mut signature = vec![0; key.public_modulus_len()];
                key.sign(encoding, &rng, message, &mut signature)
                    .expect("RSA signing with a buffer of the modulus length");
                signature
            }
            PrivateKey::Ecdsa(key) => key
                .sign(&rng, message)
                .expect("ECDSA signing (system RNG)")
                .as_ref()
                .to_vec(),
            PrivateKey::Ed25519(key) => key.sign(message).as_ref().to_vec(),
        }
    }

    /// A compact JWS of `claims` with header `{"alg", "kid", "typ": "JWT"}`.
    pub fn sign_jwt(&self, claims: &Value) -> String {
        let header = json!({"alg": self.alg.name(), "kid": self.kid, "typ": "JWT"});
        self.sign_jwt_with_header(&header, claims)
    }

    /// A compact JWS of `claims` under any `header`, signed with this key whatever the header
    /// says (tests build hostile headers with it).
    pub fn sign_jwt_with_header(&self, header: &Value, claims: &Value) -> String {
        let signing_input = format!(
            "{}.{}",
            URL_SAFE_NO_PAD.encode(header.to_string()),
            URL_SAFE_NO_PAD.encode(claims.to_string())
        );
        let signature = URL_SAFE_NO_PAD.encode(self.sign(signing_input.as_bytes()));
        format!("{signing_input}.{signature}")
    }
}

/// A real HTTP server on 127.0.0.1 playing an IdP for the cache tests: it counts requests and
/// answers whatever the test last told it to.
#[cfg(test)]
pub(crate) mod test_idp {
    use std::sync::atomic::{AtomicU64, Ordering};
    use std::sync::{Arc, Mutex};
    use std::time::Duration;

    use axum::body::Body;
    use axum::http::{HeaderValue, StatusCode, Uri, header};
    use axum::response::Response;
    use url::Url;

    use super::{JwksPolicy, lock};

    /// What the server answers.
    #[derive(Debug, Clone)]
    pub(crate) enum Reply {
        /// 200 with this JSON body (with Content-Length) and an optional Cache-Control.
        Json {
            body: String,
            cache_control: Option<String>,
        },
        /// 200 with this body sent in chunks, without Content-Length.
        Chunked(String),
        /// An empty answer with this status.
        Status(u16),
        /// Nothing for a minute.
        Slow,
    }

    impl Reply {
        pub(crate) fn json(body: impl Into<String>) -> Reply {
            Reply::Json {
                body: body.into(),
                cache_control: None,
            }
        }
    }

    #[derive(Debug)]
    struct Shared {
        hits: AtomicU64,
        reply: Mutex<Reply>,
        paths: Mutex<Vec<String>>,
    }

    /// A running test IdP.
    #[derive(Debug)]
    pub(crate) struct TestIdp {
        base: Url,
        shared: Arc<Shared>,
    }

    impl TestIdp {
        pub(crate) async fn start(reply: Reply) -> TestIdp {
            let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
            let base = Url::parse(&format!("http://{}", listener.local_addr().unwrap())).unwrap();
            let shared = Arc::new(Shared {
                hits: AtomicU64::new(0),
                reply: Mutex::new(reply),
                paths: Mutex::default(),
            });
            let handler_state = Arc::clone(&shared);
            let app = axum::Router::new().fallback(move |uri: Uri| respond(Arc::clone(&handler_state), uri));
            tokio::spawn(async move { axum::serve(listener, app).await });
            TestIdp { base, shared }
        }

        /// `http://127.0.0.1:PORT/` joined with `path`.
        pub(crate) fn url(&self, path: &str) -> Url {
            self.base.join(path).unwrap()
        }

        pub(crate) fn set(&self, reply: Reply) {
            *lock(&self.shared.reply) = reply;
        }

        pub(crate) fn hits(&self) -> u64 {
            self.shared.hits.load(Ordering::SeqCst)
        }

        pub(crate) fn paths(&self) -> Vec<String> {
            lock(&self.shared.paths).clone()
        }
    }

    /// A policy for tests against a [`TestIdp`]: a one-minute cooldown, lifetimes clamped to
    /// 1 min..1 h, and small documents.
    pub(crate) fn test_policy() -> JwksPolicy {
        JwksPolicy {
            cooldown: Duration::from_secs(60),
            timeout: Duration::from_secs(5),
            min_max_age: Duration::from_secs(60),
            max_max_age: Duration::from_secs(3600),
            max_document_bytes: 16 * 1024,
            provider: "test".into(),
        }
    }

    async fn respond(shared: Arc<Shared>, uri: Uri) -> Response {
        shared.hits.fetch_add(1, Ordering::SeqCst);
        lock(&shared.paths).push(uri.path().to_string());
        let reply = lock(&shared.reply).clone();
        let mut response = Response::new(Body::empty());
        match reply {
            Reply::Json { body, cache_control } => {
                *response.body_mut() = Body::from(body);
                if let Some(value) = cache_control {
                    response
                        .headers_mut()
                        .insert(header::CACHE_CONTROL, HeaderValue::from_str(&value).unwrap());
                }
            }
            Reply::Chunked(body) => {
                let chunks: Vec<Result<Vec<u8>, std::convert::Infallible>> = body
                    .into_bytes()
                    .chunks(1024)
                    .map(|chunk| Ok(chunk.to_vec()))
                    .collect();
                *response.body_mut() = Body::from_stream(futures_util::stream::iter(chunks));
            }
            Reply::Status(status) => *response.status_mut() = StatusCode::from_u16(status).unwrap(),
            Reply::Slow => tokio::time::sleep(Duration::from_secs(60)).await,
        }
        response
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::test_idp::{Reply, TestIdp, test_policy};
    use super::*;

    fn jwks(keys: &[&SigningKey]) -> String {
        json!({"keys": keys.iter().map(|key| key.public_jwk()).collect::<Vec<_>>()}).to_string()
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
        assert!(from_jwk_error(padded).contains("`e` is not base64url"));
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
    fn public_jwks_have_the_standard_members() {
        let rsa = SigningKey::generate(Algorithm::RS512, "r").public_jwk();
        assert_eq!(
            (rsa["kty"].as_str(), rsa["e"].as_str(), rsa["alg"].as_str()),
            (Some("RSA"), Some("AQAB"), Some("RS512"))
        );
        assert_eq!(
            URL_SAFE_NO_PAD.decode(rsa["n"].as_str().unwrap()).unwrap().len(),
            256
        );
        let ec = SigningKey::generate(Algorithm::ES384, "e").public_jwk();
        assert_eq!(
            (ec["kty"].as_str(), ec["crv"].as_str()),
            (Some("EC"), Some("P-384"))
        );
        assert_eq!(
            URL_SAFE_NO_PAD.decode(ec["y"].as_str().unwrap()).unwrap().len(),
            48
        );
        let ed = SigningKey::generate(Algorithm::EdDSA, "o").public_jwk();
        assert_eq!(
            (ed["kty"].as_str(), ed["crv"].as_str(), ed["use"].as_str()),
            (Some("OKP"), Some("Ed25519"), Some("sig"))
        );
        assert_eq!(ed["kid"], json!("o"));
        assert!(ed.get("d").is_none());
    }

    #[test]
    fn signing_key_debug_shows_no_key_material() {
        let key = SigningKey::generate(Algorithm::EdDSA, "dev-1");
        assert_eq!(
            format!("{key:?}"),
            "SigningKey { alg: EdDSA, kid: \"dev-1\", .. }"
        );
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
        assert_eq!(set.find(Some("good")).unwrap().kid(), Some("good"));
        assert!(set.find(Some("hmac")).is_none());
        assert_eq!(set.find(None).unwrap().kid(), Some("good"));
    }

    #[test]
    fn without_kid_only_a_single_key_matches() {
        let (a, b) = (
            SigningKey::generate(Algorithm::ES256, "a"),
            SigningKey::generate(Algorithm::EdDSA, "b"),
        );
        let set = KeySet::from_json(jwks(&[&a, &b]).as_bytes()).unwrap();
        assert!(set.find(None).is_none());
        assert_eq!(set.find(Some("b")).unwrap().kid(), Some("b"));
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

    #[test]
    fn policy_from_settings() {
        let policy = JwksPolicy::from(&crate::config::JwksSettings::default());
        assert_eq!(policy.cooldown, Duration::from_secs(60));
        assert_eq!(policy.timeout, Duration::from_secs(5));
        assert_eq!(policy.min_max_age, Duration::from_secs(60));
        assert_eq!(policy.max_max_age, Duration::from_secs(24 * 3600));
        assert_eq!(policy.max_document_bytes, 256 * 1024);
    }

    #[test]
    fn cache_control_max_age() {
        let parse = |values: &[&str]| {
            let mut headers = reqwest::header::HeaderMap::new();
            for value in values {
                headers.append(reqwest::header::CACHE_CONTROL, value.parse().unwrap());
            }
            max_age(&headers)
        };
        assert_eq!(parse(&[]), None);
        assert_eq!(
            parse(&["public, max-age=300, must-revalidate"]),
            Some(Duration::from_secs(300))
        );
        assert_eq!(
            parse(&["public", "Max-Age=\"60\""]),
            Some(Duration::from_secs(60))
        );
        assert_eq!(parse(&["max-age=300, no-store"]), Some(Duration::ZERO));
        assert_eq!(parse(&["no-cache"]), Some(Duration::ZERO));
        assert_eq!(parse(&["max-age=soon"]), None);
        assert_eq!(parse(&["max-age=-5"]), None);
        assert_eq!(
            parse(&["max-age=99999999999999999999999"]),
            Some(Duration::from_secs(u64::MAX))
        );
    }

    #[test]
    fn lifetimes_are_clamped() {
        let policy = test_policy();
        assert_eq!(policy.lifetime(None), policy.max_max_age);
        assert_eq!(policy.lifetime(Some(Duration::ZERO)), policy.min_max_age);
        assert_eq!(
            policy.lifetime(Some(Duration::from_secs(120))),
            Duration::from_secs(120)
        );
        assert_eq!(policy.lifetime(Some(Duration::MAX)), policy.max_max_age);
    }

    fn cache_for(idp: &TestIdp, policy: JwksPolicy) -> Arc<JwksCache> {
        Arc::new(JwksCache::new(reqwest::Client::new(), idp.url("/jwks"), policy))
    }

    fn secs(seconds: u64) -> Duration {
        Duration::from_secs(seconds)
    }

    // The cache tests run on the real clock and pass the cache a virtual `now` (`key_at`), so
    // cooldowns and lifetimes are exact and no request timeout is ever auto-advanced.

    #[tokio::test]
    async fn the_first_use_fetches_and_later_uses_do_not() {
        let a = SigningKey::generate(Algorithm::ES256, "a");
        let idp = TestIdp::start(Reply::json(jwks(&[&a]))).await;
        let cache = cache_for(&idp, test_policy());
        let t0 = Instant::now();
        assert_eq!(cache.key_at(Some("a"), t0).await.unwrap().kid(), Some("a"));
        assert_eq!(
            cache.key_at(Some("a"), t0 + secs(30)).await.unwrap().kid(),
            Some("a")
        );
        assert_eq!(cache.key_at(None, t0 + secs(31)).await.unwrap().kid(), Some("a"));
        assert_eq!((idp.hits(), cache.fetch_count()), (1, 1));
        assert_eq!(idp.paths(), vec!["/jwks"]);
        // The public entry point uses the real clock.
        assert_eq!(cache.key(Some("a")).await.unwrap().kid(), Some("a"));
        assert_eq!(idp.hits(), 1);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn concurrent_first_uses_share_one_fetch() {
        let a = SigningKey::generate(Algorithm::ES256, "a");
        let idp = TestIdp::start(Reply::json(jwks(&[&a]))).await;
        let cache = cache_for(&idp, test_policy());
        let t0 = Instant::now();
        let lookups: Vec<_> = (0..200)
            .map(|_| {
                let cache = Arc::clone(&cache);
                tokio::spawn(async move {
                    cache
                        .key_at(Some("a"), t0)
                        .await
                        .map(|key| key.kid().map(str::to_string))
                })
            })
            .collect();
        for lookup in lookups {
            assert_eq!(lookup.await.unwrap().unwrap().as_deref(), Some("a"));
        }
        assert_eq!((idp.hits(), cache.fetch_count()), (1, 1));
    }

    #[tokio::test]
    async fn rotated_keys_are_picked_up_after_the_cooldown() {
        let (a, b) = (
            SigningKey::generate(Algorithm::ES256, "a"),
            SigningKey::generate(Algorithm::EdDSA, "b"),
        );
        let idp = TestIdp::start(Reply::json(jwks(&[&a]))).await;
        let cache = cache_for(&idp, test_policy());
        let t0 = Instant::now();
        cache.key_at(Some("a"), t0).await.unwrap();
        idp.set(Reply::json(jwks(&[&b])));
        // Within the cooldown an unknown kid is refused without a fetch.
        let refused = cache.key_at(Some("b"), t0 + secs(59)).await.unwrap_err();
        assert!(
            matches!(&refused, KeyError::UnknownKey(kid) if kid.contains('b')),
            "{refused:?}"
        );
        assert_eq!(idp.hits(), 1);
        // After it, the unknown kid triggers one refresh that finds the new key.
        assert_eq!(
            cache.key_at(Some("b"), t0 + secs(60)).await.unwrap().kid(),
            Some("b")
        );
        assert_eq!(idp.hits(), 2);
        // The old key is gone and, within the new cooldown, asking again costs nothing.
        assert!(matches!(
            cache.key_at(Some("a"), t0 + secs(61)).await,
            Err(KeyError::UnknownKey(_))
        ));
        assert_eq!(idp.hits(), 2);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_burst_of_unknown_kids_costs_at_most_one_fetch() {
        let a = SigningKey::generate(Algorithm::ES256, "a");
        let idp = TestIdp::start(Reply::json(jwks(&[&a]))).await;
        let cache = cache_for(&idp, test_policy());
        let t0 = Instant::now();
        cache.key_at(Some("a"), t0).await.unwrap();
        let burst = |now: Instant| {
            let lookups: Vec<_> = (0..200)
                .map(|i| {
                    let cache = Arc::clone(&cache);
                    tokio::spawn(async move { cache.key_at(Some(&format!("forged-{i}")), now).await })
                })
                .collect();
            async move {
                for lookup in lookups {
                    assert!(matches!(lookup.await.unwrap(), Err(KeyError::UnknownKey(_))));
                }
            }
        };
        burst(t0 + secs(10)).await;
        assert_eq!(idp.hits(), 1, "within the cooldown");
        burst(t0 + secs(61)).await;
        assert_eq!(idp.hits(), 2, "one refresh after the cooldown");
        assert_eq!(cache.fetch_count(), 2);
    }

    #[tokio::test]
    async fn max_age_is_honoured_within_bounds() {
        let a = SigningKey::generate(Algorithm::ES256, "a");
        let with_max_age = |seconds: u64| Reply::Json {
            body: jwks(&[&a]),
            cache_control: Some(format!("public, max-age={seconds}")),
        };
        let idp = TestIdp::start(with_max_age(600)).await;
        let cache = cache_for(&idp, test_policy());
        let t0 = Instant::now();
        cache.key_at(Some("a"), t0).await.unwrap();
        cache.key_at(Some("a"), t0 + secs(599)).await.unwrap();
        assert_eq!(idp.hits(), 1, "fresh for max-age");
        cache.key_at(Some("a"), t0 + secs(600)).await.unwrap();
        assert_eq!(idp.hits(), 2, "refreshed when max-age ran out");

        // A max-age below the policy's minimum is raised to it (60 s).
        idp.set(with_max_age(5));
        let t1 = t0 + secs(1_200);
        cache.key_at(Some("a"), t1).await.unwrap();
        assert_eq!(idp.hits(), 3);
        cache.key_at(Some("a"), t1 + secs(59)).await.unwrap();
        assert_eq!(idp.hits(), 3);
        cache.key_at(Some("a"), t1 + secs(60)).await.unwrap();
        assert_eq!(idp.hits(), 4);

        // Without max-age, and above the maximum, the maximum (3600 s) applies.
        idp.set(with_max_age(1_000_000));
        let t2 = t1 + secs(1_000);
        cache.key_at(Some("a"), t2).await.unwrap();
        cache.key_at(Some("a"), t2 + secs(3_599)).await.unwrap();
        assert_eq!(idp.hits(), 5);
        idp.set(Reply::json(jwks(&[&a])));
        cache.key_at(Some("a"), t2 + secs(3_600)).await.unwrap();
        assert_eq!(idp.hits(), 6);
        cache.key_at(Some("a"), t2 + secs(7_199)).await.unwrap();
        assert_eq!(idp.hits(), 6);
    }

    #[tokio::test]
    async fn stale_keys_are_served_while_the_idp_is_down() {
        let (a, b) = (
            SigningKey::generate(Algorithm::ES256, "a"),
            SigningKey::generate(Algorithm::ES256, "b"),
        );
        let idp = TestIdp::start(Reply::json(jwks(&[&a]))).await;
        let cache = cache_for(
            &idp,
            JwksPolicy {
                cooldown: secs(30),
                ..test_policy()
            },
        );
        let t0 = Instant::now();
        cache.key_at(Some("a"), t0).await.unwrap();
        idp.set(Reply::Status(503));
        let expired = t0 + secs(3_600);
        assert_eq!(cache.key_at(Some("a"), expired).await.unwrap().kid(), Some("a"));
        assert_eq!(idp.hits(), 2, "the expiry caused one refresh attempt");
        // No retry within the cooldown after the failure, whatever is asked.
        assert_eq!(
            cache.key_at(Some("a"), expired + secs(29)).await.unwrap().kid(),
            Some("a")
        );
        assert!(matches!(
            cache.key_at(Some("b"), expired + secs(29)).await,
            Err(KeyError::UnknownKey(_))
        ));
        assert_eq!(idp.hits(), 2);
        // After the cooldown it tries again, and still serves the old key on failure.
        idp.set(Reply::json("{\"keys\": garbage"));
        assert_eq!(
            cache.key_at(Some("a"), expired + secs(30)).await.unwrap().kid(),
            Some("a")
        );
        assert_eq!(idp.hits(), 3);
        // Once the IdP is back the new keys replace the old ones.
        idp.set(Reply::json(jwks(&[&b])));
        assert_eq!(
            cache.key_at(Some("b"), expired + secs(60)).await.unwrap().kid(),
            Some("b")
        );
        assert!(matches!(
            cache.key_at(Some("a"), expired + secs(61)).await,
            Err(KeyError::UnknownKey(_))
        ));
        assert_eq!(idp.hits(), 4);
    }

    #[tokio::test]
    async fn without_cached_keys_a_failure_is_unavailable_and_retried_after_the_cooldown() {
        let a = SigningKey::generate(Algorithm::ES256, "a");
        let idp = TestIdp::start(Reply::Status(500)).await;
        let cache = cache_for(&idp, test_policy());
        let t0 = Instant::now();
        match cache.key_at(Some("a"), t0).await {
            Err(KeyError::Unavailable(reason)) => assert!(reason.contains("HTTP 500"), "{reason}"),
            other => panic!("{other:?}"),
        }
        match cache.key_at(Some("a"), t0 + secs(59)).await {
            Err(KeyError::Unavailable(reason)) => assert!(reason.contains("HTTP 500"), "{reason}"),
            other => panic!("{other:?}"),
        }
        assert_eq!(idp.hits(), 1);
        idp.set(Reply::json(jwks(&[&a])));
        assert_eq!(
            cache.key_at(Some("a"), t0 + secs(60)).await.unwrap().kid(),
            Some("a")
        );
        assert_eq!(idp.hits(), 2);
    }

    async fn first_fetch_error(reply: Reply, policy: JwksPolicy) -> String {
        let idp = TestIdp::start(reply).await;
        let cache = cache_for(&idp, policy);
        let error = cache.key(Some("a")).await.unwrap_err();
        assert_eq!((idp.hits(), cache.fetch_count()), (1, 1));
        match error {
            KeyError::Unavailable(reason) => reason,
            other => panic!("{other:?}"),
        }
    }

    #[tokio::test]
    async fn a_slow_idp_times_out() {
        let policy = JwksPolicy {
            timeout: Duration::from_millis(300),
            ..test_policy()
        };
        let reason = first_fetch_error(Reply::Slow, policy).await;
        assert!(reason.contains("timed out after 300 ms"), "{reason}");
    }

    #[tokio::test]
    async fn oversized_documents_are_refused_with_or_without_content_length() {
        let a = SigningKey::generate(Algorithm::ES256, "a");
        let padded = format!("{}{}", jwks(&[&a]), " ".repeat(16 * 1024));
        let reason = first_fetch_error(Reply::json(padded.clone()), test_policy()).await;
        assert!(reason.contains("16384-byte limit"), "{reason}");
        let reason = first_fetch_error(Reply::Chunked(padded), test_policy()).await;
        assert!(reason.contains("16384-byte limit"), "{reason}");
        // The same document within the limit is fine when streamed.
        let idp = TestIdp::start(Reply::Chunked(jwks(&[&a]))).await;
        assert!(cache_for(&idp, test_policy()).key(Some("a")).await.is_ok());
    }

    #[tokio::test]
    async fn garbage_is_refused() {
        let reason = first_fetch_error(Reply::json("<html>oops</html>"), test_policy()).await;
        assert!(reason.contains("not JSON"), "{reason}");
        let reason = first_fetch_error(Reply::json(r#"{"issuer": "x"}"#), test_policy()).await;
        assert!(reason.contains("no `keys` array"), "{reason}");
    }

    #[tokio::test]
    async fn redirects_are_not_followed_by_a_client_that_refuses_them() {
        let idp = TestIdp::start(Reply::Status(302)).await;
        let client = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .unwrap();
        let cache = JwksCache::new(client, idp.url("/jwks"), test_policy());
        match cache.key(Some("a")).await {
            Err(KeyError::Unavailable(reason)) => assert!(reason.contains("HTTP 302"), "{reason}"),
            other => panic!("{other:?}"),
        }
    }

    #[tokio::test]
    async fn unacceptable_urls_are_never_fetched() {
        for uri in [
            "http://jwks.example.com/keys",
            "ftp://127.0.0.1/keys",
            "file:///etc/passwd",
        ] {
            let cache = JwksCache::new(reqwest::Client::new(), Url::parse(uri).unwrap(), test_policy());
            match cache.key(Some("a")).await {
                Err(KeyError::Unavailable(reason)) => {
                    assert!(reason.contains("neither https nor http"), "{reason}")
                }
                other => panic!("{uri}: {other:?}"),
            }
        }
    }

    #[test]
    fn unknown_kid_errors_are_bounded() {
        let KeyError::UnknownKey(kid) = KeyError::unknown(Some(&"k\n".repeat(100_000))) else {
            panic!("not UnknownKey");
        };
        assert!(kid.len() < 300 && !kid.contains('\n'), "{kid}");
        assert!(matches!(KeyError::unknown(None), KeyError::UnknownKey(kid) if kid.contains("no kid")));
    }
}
