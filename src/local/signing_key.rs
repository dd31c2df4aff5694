//! The dev provider's signing keys (also used by tests and benchmarks to play an issuer):
//! generated with aws-lc-rs, published as public JWKs, signing compact JWS. Dev-only: nothing on
//! the verifying path uses it.

use std::fmt;

use aws_lc_rs::rand::SystemRandom;
use aws_lc_rs::rsa::KeySize;
use aws_lc_rs::signature::{
    self as sig, EcdsaKeyPair, Ed25519KeyPair, KeyPair, RsaKeyPair, RsaPublicKeyComponents,
};
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde_json::{Value, json};

use crate::key::Algorithm;

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

    /// A JWKS document, `{"keys": [...]}`, publishing the public halves of `keys`.
    pub fn jwks(keys: &[&SigningKey]) -> Value {
        json!({ "keys": keys.iter().map(|key| key.public_jwk()).collect::<Vec<_>>() })
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

/// The dev stack's identity signer: an ES256 key made at start-up, issuing assertions as `issuer`.
pub struct DevIdentitySigner {
    issuer: String,
    key: SigningKey,
}

impl DevIdentitySigner {
    /// A fresh P-256 key.
    pub fn generate(issuer: String) -> DevIdentitySigner {
        DevIdentitySigner {
            issuer,
            key: SigningKey::generate(Algorithm::ES256, "dev-identity-1"),
        }
    }

    /// `claims` as an assertion (ES256, `typ` [`crate::identity::ASSERTION_TYPE`]), at once.
    pub fn assertion(&self, claims: &Value) -> String {
        let header = json!({
            "alg": Algorithm::ES256.name(),
            "kid": self.key.kid(),
            "typ": crate::identity::ASSERTION_TYPE,
        });
        self.key.sign_jwt_with_header(&header, claims)
    }
}

impl crate::identity::IdentitySigner for DevIdentitySigner {
    fn issuer(&self) -> Option<&str> {
        Some(&self.issuer)
    }

    fn sign<'a>(
        &'a self,
        claims: &'a Value,
    ) -> futures_util::future::BoxFuture<'a, Result<String, crate::identity::SigningError>> {
        Box::pin(std::future::ready(Ok(self.assertion(claims))))
    }

    fn public_keys(&self) -> Value {
        SigningKey::jwks(&[&self.key])
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

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
}
