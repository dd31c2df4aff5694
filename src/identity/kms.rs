//! The identity assertion's signing key in a deployment: an asymmetric KMS key (`ECC_NIST_P256`,
//! `SIGN_VERIFY`). The private half never leaves KMS; the sign-in function may only `kms:Sign`
//! with it and read its public half (`template.yaml`), so a leaked function configuration or
//! memory dump holds nothing that signs.
//!
//! At start-up (once per Lambda cold start) `GetPublicKey` reads the public half of the signing
//! key and of each published key, checks that it is a P-256 signing key, and keeps it as a JWK
//! whose `kid` is its RFC 7638 thumbprint; `GET /auth/identity-keys` serves them from memory.
//! Each assertion is one `Sign` call with `ECDSA_SHA_256`; KMS answers a DER `ECDSA-Sig-Value`,
//! which becomes JOSE's fixed-size `r || s` (RFC 7518 §3.4).
//!
//! The two DER shapes are read by hand, on purpose: for P-256 both are fixed (a 91-byte
//! SubjectPublicKeyInfo whose first 26 bytes never vary, and a SEQUENCE of two INTEGERs of at
//! most 33 bytes each), and a general ASN.1 crate would add more to the Lambda binary than these
//! few bounded lines.

use std::time::Duration;

use aws_config::BehaviorVersion;
use aws_config::retry::RetryConfig;
use aws_config::timeout::TimeoutConfig;
use aws_lc_rs::digest::{SHA256, digest};
use aws_sdk_kms::Client;
use aws_sdk_kms::config::Region;
use aws_sdk_kms::error::DisplayErrorContext;
use aws_sdk_kms::primitives::Blob;
use aws_sdk_kms::types::{KeySpec, KeyUsageType, MessageType, SigningAlgorithmSpec};
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use futures_util::future::BoxFuture;
use serde_json::{Value, json};

use super::{ASSERTION_TYPE, IdentitySigner, SigningError};
use crate::config::IdentityConfig;

/// The longest message KMS signs as `RAW`; a longer signing input is sent as its SHA-256 digest
/// (`MessageType: DIGEST`): <https://docs.aws.amazon.com/kms/latest/APIReference/API_Sign.html>
pub const MAX_RAW_MESSAGE_BYTES: usize = 4096;
/// The DER prefix of every P-256 SubjectPublicKeyInfo (id-ecPublicKey, prime256v1, a 66-byte
/// BIT STRING), followed by the uncompressed point `04 || x || y` (RFC 5480).
const P256_SPKI_PREFIX: [u8; 26] = [
    0x30, 0x59, 0x30, 0x13, 0x06, 0x07, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x02, 0x01, 0x06, 0x08, 0x2a, 0x86,
    0x48, 0xce, 0x3d, 0x03, 0x01, 0x07, 0x03, 0x42, 0x00,
];
/// The size of one P-256 coordinate or signature half.
const P256_BYTES: usize = 32;
/// One KMS call attempt; `Sign` answers in tens of milliseconds.
const ATTEMPT_TIMEOUT: Duration = Duration::from_secs(2);
/// A call, retries included (the sign-in has already spent its pool budget).
const CALL_TIMEOUT: Duration = Duration::from_secs(5);
/// Attempts per call (throttling and 5xx are retried with the SDK's jittered backoff).
const MAX_ATTEMPTS: u32 = 3;

/// Why the configured keys cannot be used; the broker does not start.
#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    /// KMS could not be asked (no credentials, no network, access denied, no such key).
    #[error("cannot read KMS key `{key}`: {error}")]
    Unavailable {
        /// The key as configured.
        key: String,
        /// KMS's error.
        error: String,
    },
    /// The key is not a P-256 signing key.
    #[error("KMS key `{key}` {problem}; create it with KeySpec ECC_NIST_P256 and KeyUsage SIGN_VERIFY")]
    Unusable {
        /// The key as configured.
        key: String,
        /// What is wrong with it.
        problem: String,
    },
}

impl From<KeyError> for crate::config::ConfigError {
    fn from(error: KeyError) -> Self {
        crate::config::ConfigError::Invalid {
            key: "identity".into(),
            problem: error.to_string(),
            fix: "check the key ids, and that this function may call kms:GetPublicKey and kms:Sign on them"
                .into(),
        }
    }
}

/// Signs identity assertions with a KMS key, and publishes its public keys.
#[derive(Debug)]
pub struct KmsIdentitySigner {
    client: Client,
    key_id: String,
    kid: String,
    issuer: Option<String>,
    keys: Value,
}

impl KmsIdentitySigner {
    /// Reads the configured keys with the default credential chain (the function's role).
    pub async fn connect(config: &IdentityConfig) -> Result<KmsIdentitySigner, KeyError> {
        KmsIdentitySigner::with_client(client(config, None).await, config).await
    }

    /// Like [`KmsIdentitySigner::connect`], signing requests with `credentials` (tests, moto).
    pub async fn with_credentials(
        config: &IdentityConfig,
        credentials: aws_credential_types::Credentials,
    ) -> Result<KmsIdentitySigner, KeyError> {
        KmsIdentitySigner::with_client(client(config, Some(credentials)).await, config).await
    }

    async fn with_client(client: Client, config: &IdentityConfig) -> Result<KmsIdentitySigner, KeyError> {
        let mut keys = Vec::new();
        for key_id in config.key_ids() {
            keys.push(public_jwk(&client, key_id).await?);
        }
        let kid = keys
            .first()
            .and_then(|key| key["kid"].as_str())
            .unwrap_or_default()
            .to_string();
        Ok(KmsIdentitySigner {
            client,
            key_id: config.kms_key_id.clone(),
            kid,
            issuer: config
                .issuer
                .as_ref()
                .map(|url| url.as_str().trim_end_matches('/').to_string()),
            keys: json!({ "keys": keys }),
        })
    }

    /// The signing key's `kid` (its JWK thumbprint).
    pub fn kid(&self) -> &str {
        &self.kid
    }

    async fn sign_input(&self, input: &str) -> Result<Vec<u8>, SigningError> {
        let (message, kind) = if input.len() <= MAX_RAW_MESSAGE_BYTES {
            (input.as_bytes().to_vec(), MessageType::Raw)
        } else {
            (
                digest(&SHA256, input.as_bytes()).as_ref().to_vec(),
                MessageType::Digest,
            )
        };
        let output = self
            .client
            .sign()
            .key_id(&self.key_id)
            .message(Blob::new(message))
            .message_type(kind)
            .signing_algorithm(SigningAlgorithmSpec::EcdsaSha256)
            .send()
            .await
            .map_err(|error| SigningError::Unavailable(format!("Sign: {}", DisplayErrorContext(&error))))?;
        let der = output
            .signature()
            .ok_or_else(|| SigningError::Unavailable("Sign answered no signature".into()))?;
        jose_signature(der.as_ref())
            .ok_or_else(|| SigningError::Unavailable("Sign answered a malformed ECDSA signature".into()))
    }
}

impl IdentitySigner for KmsIdentitySigner {
    fn issuer(&self) -> Option<&str> {
        self.issuer.as_deref()
    }

    fn sign<'a>(&'a self, claims: &'a Value) -> BoxFuture<'a, Result<String, SigningError>> {
        Box::pin(async move {
            let header = json!({"alg": "ES256", "kid": self.kid, "typ": ASSERTION_TYPE});
            let input = format!(
                "{}.{}",
                URL_SAFE_NO_PAD.encode(header.to_string()),
                URL_SAFE_NO_PAD.encode(claims.to_string())
            );
            let signature = self.sign_input(&input).await?;
            Ok(format!("{input}.{}", URL_SAFE_NO_PAD.encode(signature)))
        })
    }

    fn public_keys(&self) -> Value {
        self.keys.clone()
    }
}

/// A KMS client for `config`'s region and endpoint, with bounded retries and timeouts.
async fn client(config: &IdentityConfig, credentials: Option<aws_credential_types::Credentials>) -> Client {
    let mut loader = aws_config::defaults(BehaviorVersion::latest());
    if let Some(region) = config.key_region() {
        loader = loader.region(Region::new(region.to_string()));
    }
    if let Some(credentials) = credentials {
        loader = loader.credentials_provider(credentials);
    }
    let shared = loader.load().await;
    let mut service = aws_sdk_kms::config::Builder::from(&shared)
        .retry_config(RetryConfig::standard().with_max_attempts(MAX_ATTEMPTS))
        .timeout_config(
            TimeoutConfig::builder()
                .operation_attempt_timeout(ATTEMPT_TIMEOUT)
                .operation_timeout(CALL_TIMEOUT)
                .build(),
        );
    if let Some(endpoint) = &config.endpoint {
        service = service.endpoint_url(endpoint.as_str().trim_end_matches('/'));
    }
    Client::from_conf(service.build())
}

/// The public half of `key_id` as an ES256 JWK, after checking it is a P-256 signing key.
async fn public_jwk(client: &Client, key_id: &str) -> Result<Value, KeyError> {
    let output = client
        .get_public_key()
        .key_id(key_id)
        .send()
        .await
        .map_err(|error| KeyError::Unavailable {
            key: key_id.to_string(),
            error: DisplayErrorContext(&error).to_string(),
        })?;
    let unusable = |problem: String| KeyError::Unusable {
        key: key_id.to_string(),
        problem,
    };
    // `KeySpec`, or the older `CustomerMasterKeySpec` that KMS still returns beside it (moto
    // returns only that one).
    #[allow(deprecated)]
    let spec = output
        .key_spec()
        .map(KeySpec::as_str)
        .or(output.customer_master_key_spec().map(|spec| spec.as_str()));
    if spec != Some(KeySpec::EccNistP256.as_str()) {
        return Err(unusable(format!("has key spec {}", spec.unwrap_or("(none)"))));
    }
    if output.key_usage() != Some(&KeyUsageType::SignVerify) {
        return Err(unusable(format!("has key usage {:?}", output.key_usage())));
    }
    if !output
        .signing_algorithms()
        .contains(&SigningAlgorithmSpec::EcdsaSha256)
    {
        return Err(unusable("does not sign with ECDSA_SHA_256".into()));
    }
    let spki = output.public_key().map(Blob::as_ref).unwrap_or_default();
    let (x, y) = p256_coordinates(spki).ok_or_else(|| unusable("answered a malformed public key".into()))?;
    Ok(p256_jwk(x, y))
}

/// `x` and `y` of a P-256 SubjectPublicKeyInfo (DER) with an uncompressed point.
fn p256_coordinates(spki: &[u8]) -> Option<(&[u8], &[u8])> {
    let point = spki.strip_prefix(P256_SPKI_PREFIX.as_slice())?;
    let coordinates = point.strip_prefix(&[0x04])?;
    (coordinates.len() == 2 * P256_BYTES).then(|| coordinates.split_at(P256_BYTES))
}

/// An ES256 JWK for the point (`x`, `y`), its `kid` the RFC 7638 thumbprint (SHA-256 of the
/// required members in lexicographic order, no white space).
fn p256_jwk(x: &[u8], y: &[u8]) -> Value {
    let (x, y) = (URL_SAFE_NO_PAD.encode(x), URL_SAFE_NO_PAD.encode(y));
    let canonical = format!(r#"{{"crv":"P-256","kty":"EC","x":"{x}","y":"{y}"}}"#);
    let kid = URL_SAFE_NO_PAD.encode(digest(&SHA256, canonical.as_bytes()));
    json!({"kty": "EC", "crv": "P-256", "x": x, "y": y, "kid": kid, "alg": "ES256", "use": "sig"})
}

/// A DER `ECDSA-Sig-Value ::= SEQUENCE { r INTEGER, s INTEGER }` as JOSE's `r || s`, each half
/// left-padded to 32 bytes; `None` for anything else.
fn jose_signature(der: &[u8]) -> Option<Vec<u8>> {
    // Both INTEGERs fit in 33 bytes, so the SEQUENCE is shorter than 128 bytes: short-form length.
    let (&tag, rest) = der.split_first()?;
    let (&length, body) = rest.split_first()?;
    if tag != 0x30 || usize::from(length) != body.len() || length >= 0x80 {
        return None;
    }
    let (r, rest) = der_unsigned_integer(body)?;
    let (s, rest) = der_unsigned_integer(rest)?;
    if !rest.is_empty() {
        return None;
    }
    let mut jose = vec![0; 2 * P256_BYTES];
    jose[P256_BYTES - r.len()..P256_BYTES].copy_from_slice(r);
    jose[2 * P256_BYTES - s.len()..].copy_from_slice(s);
    Some(jose)
}

/// The magnitude (no leading zero bytes, at most 32 bytes) of a non-negative DER INTEGER at the
/// start of `der`, and what follows it.
fn der_unsigned_integer(der: &[u8]) -> Option<(&[u8], &[u8])> {
    let (&tag, rest) = der.split_first()?;
    let (&length, rest) = rest.split_first()?;
    let length = usize::from(length);
    if tag != 0x02 || length == 0 || length > P256_BYTES + 1 || rest.len() < length {
        return None;
    }
    let (value, rest) = rest.split_at(length);
    if value[0] & 0x80 != 0 {
        return None; // negative: never an ECDSA half
    }
    let magnitude = &value[value.iter().take_while(|&&byte| byte == 0).count()..];
    (magnitude.len() <= P256_BYTES).then_some((magnitude, rest))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn der_signatures_become_fixed_size_r_and_s() {
        // r with a leading zero (high bit set), s short (a leading zero byte dropped by DER).
        let mut r = vec![0x00, 0x80];
        r.extend([0x11; 31]);
        let s = vec![0x22; 31];
        let mut der = vec![0x30, (2 + r.len() + 2 + s.len()) as u8, 0x02, r.len() as u8];
        der.extend(&r);
        der.extend([0x02, s.len() as u8]);
        der.extend(&s);
        let jose = jose_signature(&der).unwrap();
        assert_eq!(jose.len(), 64);
        assert_eq!(&jose[..32], &r[1..]);
        assert_eq!(jose[32], 0);
        assert_eq!(&jose[33..], &s[..]);
    }

    #[test]
    fn malformed_der_signatures_are_refused() {
        let good = {
            let mut der = vec![0x30, 6, 0x02, 1, 0x01, 0x02, 1, 0x02];
            assert!(jose_signature(&der).is_some());
            der.push(0);
            der
        };
        let cases: [&[u8]; 7] = [
            &[],
            &[0x30],
            &good,                                          // trailing byte after the SEQUENCE
            &[0x31, 6, 0x02, 1, 0x01, 0x02, 1, 0x02],       // not a SEQUENCE
            &[0x30, 6, 0x02, 1, 0x81, 0x02, 1, 0x02],       // negative r
            &[0x30, 5, 0x02, 0, 0x02, 1, 0x02],             // empty r
            &[0x30, 7, 0x02, 1, 0x01, 0x02, 1, 0x02, 0x00], // trailing byte inside
        ];
        for der in cases {
            assert_eq!(jose_signature(der), None, "{der:02x?}");
        }
        let mut long = vec![0x30, 37, 0x02, 34, 0x01];
        long.extend([0x11; 33]);
        long.extend([0x02, 1, 0x02]);
        assert_eq!(jose_signature(&long), None, "a 33-byte magnitude");
    }

    #[test]
    fn the_kid_is_the_rfc_7638_thumbprint() {
        // Computed independently: Python's json.dumps(sort_keys, no spaces) and hashlib.sha256.
        let jwk = p256_jwk(&[1; 32], &[2; 32]);
        assert_eq!(jwk["x"], "AQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQE");
        assert_eq!(jwk["kid"], "kOFKxjJdOqJD5G4Yuw-cxHe64VGyxKEO_hoV83QfGj0");
        assert_eq!(
            (jwk["alg"].as_str(), jwk["crv"].as_str()),
            (Some("ES256"), Some("P-256"))
        );
    }

    #[test]
    fn only_p256_uncompressed_points_are_read() {
        let mut spki = P256_SPKI_PREFIX.to_vec();
        spki.push(0x04);
        spki.extend([7; 64]);
        let (x, y) = p256_coordinates(&spki).unwrap();
        assert_eq!((x.len(), y.len()), (32, 32));
        assert_eq!(p256_coordinates(&spki[..90]), None);
        spki[26] = 0x02;
        assert_eq!(p256_coordinates(&spki), None);
    }
}
