//! ID-token parsing and verification, two ways per input:
//!
//! 1. The input as a compact JWS: `UnverifiedToken::parse`, then (when it parses)
//!    `verify_signature` with a fixed RSA key, `check_times` and `check_audience`. Errors must
//!    be bounded, single-line and never contain the token.
//! 2. The input, when it is a JSON object, as claims signed by a real `SigningKey`: our own
//!    signature must verify and the claims must read back as serde_json reads them, a changed signature must
//!    not verify, and the time and audience checks must agree with RFC 7519 / OIDC Core.
#![no_main]

use std::sync::OnceLock;
use std::time::{Duration, SystemTime};

use credbroker::key::{Algorithm, VerifyingKey};
use credbroker::local::signing_key::SigningKey;
use credbroker::token::{Claims, TokenError, UnverifiedToken, check_audience, check_times};
use credbroker_fuzz::{assert_safe_message, unix_time};
use libfuzzer_sys::fuzz_target;
use serde_json::Value;

/// The broker's default `limits.max_token_bytes`.
const MAX_TOKEN_BYTES: usize = 16 * 1024;
/// Inside the validity of the seed tokens in `corpus/token/` (they are valid from 1795215133
/// to 1795218733), so mutations of them reach every time check.
const NOW: u64 = 1_795_215_200;
const LEEWAY: Duration = Duration::from_secs(60);
/// The seed tokens' audience, and a second one so `azp` rules for several audiences apply.
const AUDIENCES: [&str; 2] = ["credbroker-dev", "other-client"];
/// Container nesting the strict parser accepts (its `MAX_JSON_DEPTH` is 32 levels below the
/// top-level object).
const MAX_NESTING: usize = 33;

fuzz_target!(|data: &[u8]| {
    if let Ok(raw) = std::str::from_utf8(data) {
        check_raw_token(raw);
    }
    if let Ok(Value::Object(claims)) = serde_json::from_slice::<Value>(data) {
        check_signed_claims(&claims);
    }
});

/// The dev provider's public key that signed the seed tokens (`fuzz/data/token-jwks.json`).
fn seed_key() -> &'static VerifyingKey {
    static KEY: OnceLock<VerifyingKey> = OnceLock::new();
    KEY.get_or_init(|| {
        let jwks: Value = serde_json::from_str(include_str!("../data/token-jwks.json"))
            .expect("the committed JWKS is JSON");
        VerifyingKey::from_jwk(&jwks["keys"][0]).expect("the committed JWK is a valid RSA key")
    })
}

/// A real signing key (Ed25519: fast enough to sign every input) and its verifying half.
fn signing_key() -> &'static (SigningKey, VerifyingKey) {
    static KEY: OnceLock<(SigningKey, VerifyingKey)> = OnceLock::new();
    KEY.get_or_init(|| {
        let key = SigningKey::generate(Algorithm::EdDSA, "fuzz-ed25519");
        let verifying = VerifyingKey::from_jwk(&key.public_jwk()).expect("our own public JWK");
        (key, verifying)
    })
}

fn audiences() -> Vec<String> {
    AUDIENCES.map(String::from).to_vec()
}

fn now() -> SystemTime {
    unix_time(NOW)
}

fn check_raw_token(raw: &str) {
    let token = match UnverifiedToken::parse(raw, MAX_TOKEN_BYTES) {
        Ok(token) => token,
        Err(error) => {
            assert!(
                matches!(
                    error.code(),
                    "token_too_large" | "malformed_token" | "unsupported_algorithm"
                ),
                "parse failed with {}",
                error.code()
            );
            return assert_safe_token_error(&error, raw);
        }
    };
    // Debug output may end up in a log: it must not carry the token.
    assert_safe_message("Debug of a parsed token", &format!("{token:?}"), &[raw]);
    let claims = token.unverified_claims().clone();
    match token.verify_signature(seed_key()) {
        Ok(verified) => {
            assert_eq!(verified, claims, "verification changed the claims");
            check_claim_rules(&verified, raw);
        }
        Err(error) => {
            assert!(
                matches!(
                    error,
                    TokenError::BadSignature | TokenError::UnsupportedAlgorithm(_)
                ),
                "verify_signature failed with {}",
                error.code()
            );
            assert_safe_token_error(&error, raw);
        }
    }
}

fn check_signed_claims(claims: &Claims) {
    let (key, verifying) = signing_key();
    let token = key.sign_jwt(&Value::Object(claims.clone()));
    // A token we signed is refused only for nesting deeper than the parser's bound.
    let parsed = match UnverifiedToken::parse(&token, usize::MAX) {
        Ok(parsed) => parsed,
        Err(TokenError::Malformed(_)) if nesting(&Value::Object(claims.clone())) > MAX_NESTING => {
            return;
        }
        Err(error) => panic!("a token we signed does not parse: {error}"),
    };
    // The reference is serde_json's own reading of the signed text: without its
    // `float_roundtrip` feature a float may come back one ulp off, in both parsers alike.
    let reference = reparsed(claims);
    assert_eq!(
        parsed.unverified_claims(),
        &reference,
        "the strict parser differs from serde_json"
    );
    assert_eq!(parsed.header().alg, Algorithm::EdDSA);
    assert_eq!(
        parsed.issuer().ok(),
        claims.get("iss").and_then(Value::as_str),
        "issuer() disagrees with the `iss` claim"
    );
    check_tampered_signature(&token, verifying);
    check_wrong_key_type(&token);
    let verified = parsed
        .verify_signature(verifying)
        .unwrap_or_else(|error| panic!("our own signature does not verify: {error}"));
    assert_eq!(verified, reference, "verification changed the claims");
    check_claim_rules(&verified, &token);
}

/// `claims` written as JSON and read back by serde_json, as `sign_jwt` writes them.
fn reparsed(claims: &Claims) -> Claims {
    let text = Value::Object(claims.clone()).to_string();
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("serde_json cannot read its own output: {e}"))
}

/// The same token with the first signature byte changed must not verify.
fn check_tampered_signature(token: &str, verifying: &VerifyingKey) {
    let Some(dot) = token.rfind('.') else {
        panic!("a signed token has no signature segment");
    };
    let (signed, signature) = token.split_at(dot + 1);
    // Another base64url digit in the first position changes the first byte and keeps the
    // encoding canonical (only the last digit has padding bits).
    let first = if signature.starts_with('A') { 'B' } else { 'A' };
    let tampered = format!("{signed}{first}{}", signature.get(1..).unwrap_or_default());
    let parsed = UnverifiedToken::parse(&tampered, usize::MAX)
        .unwrap_or_else(|error| panic!("a tampered signature changed how the token parses: {error}"));
    match parsed.verify_signature(verifying) {
        Err(TokenError::BadSignature) => {}
        Err(error) => panic!(
            "a tampered signature gave {} instead of bad_signature",
            error.code()
        ),
        Ok(_) => panic!("a tampered signature verified"),
    }
}

/// An EdDSA token checked against the RSA key must be refused for its algorithm.
fn check_wrong_key_type(token: &str) {
    if let Ok(parsed) = UnverifiedToken::parse(token, usize::MAX) {
        match parsed.verify_signature(seed_key()) {
            Err(TokenError::UnsupportedAlgorithm(_)) => {}
            other => panic!(
                "an EdDSA token against an RSA key gave {:?}",
                other.map(|_| "success").map_err(|e| e.code())
            ),
        }
    }
}

/// `check_times` and `check_audience` on verified claims: never a panic, safe messages, and
/// the outcomes the specifications prescribe.
fn check_claim_rules(claims: &Claims, token: &str) {
    let times = check_times(claims, now(), LEEWAY);
    if let Err(error) = &times {
        assert_safe_token_error(error, token);
    }
    check_expiry_outcome(claims, &times);
    // Expiry is final: a token expired now is expired an hour later too.
    if matches!(times, Err(TokenError::Expired { .. })) {
        let later = check_times(claims, now() + Duration::from_secs(3600), LEEWAY);
        assert!(
            matches!(later, Err(TokenError::Expired { .. })),
            "an expired token stopped being expired"
        );
    }
    let audience = check_audience(claims, &audiences());
    if let Err(error) = &audience {
        assert_safe_token_error(error, token);
    }
    assert_eq!(
        audience.is_ok(),
        audience_accepted(claims),
        "check_audience disagrees with OIDC Core 3.1.3.7 steps 3-5"
    );
}

/// RFC 7519 §4.1.4: with an integer `exp`, the token is expired exactly when
/// `now >= exp + leeway`.
fn check_expiry_outcome(claims: &Claims, times: &Result<(), TokenError>) {
    let Some(exp) = claims.get("exp").and_then(Value::as_i64).filter(|e| *e >= 0) else {
        return;
    };
    let leeway = i64::try_from(LEEWAY.as_secs()).unwrap_or(i64::MAX);
    let now = i64::try_from(NOW).unwrap_or(i64::MAX);
    let expired = now >= exp.saturating_add(leeway);
    assert_eq!(
        matches!(times, Err(TokenError::Expired { .. })),
        expired,
        "exp {exp} at now {now}: expected expired = {expired}"
    );
}

/// OIDC Core §3.1.3.7: `aud` (a string or a non-empty array of strings) contains one of our
/// client ids; `azp` is required with several audiences and, when present, is one of ours.
fn audience_accepted(claims: &Claims) -> bool {
    let ours = |value: &str| AUDIENCES.contains(&value);
    let token_audiences: Vec<&str> = match claims.get("aud") {
        Some(Value::String(aud)) => vec![aud.as_str()],
        Some(Value::Array(items)) if !items.is_empty() => {
            match items.iter().map(Value::as_str).collect::<Option<Vec<_>>>() {
                Some(all) => all,
                None => return false,
            }
        }
        _ => return false,
    };
    if !token_audiences.iter().any(|aud| ours(aud)) {
        return false;
    }
    match claims.get("azp") {
        None => token_audiences.len() == 1,
        Some(Value::String(azp)) => ours(azp),
        Some(_) => false,
    }
}

/// A token error's message is safe, and a token-shaped input never appears in it.
fn assert_safe_token_error(error: &TokenError, token: &str) {
    // Only something with two dots can be a token; shorter fragments match ordinary words.
    let secrets: &[&str] = if token.matches('.').count() == 2 {
        &[token]
    } else {
        &[]
    };
    assert_safe_message(error.code(), &error.to_string(), secrets);
}

/// How deeply arrays and objects nest in `value` (a scalar is 0, `{}` is 1).
fn nesting(value: &Value) -> usize {
    let deepest = |items: &mut dyn Iterator<Item = &Value>| items.map(nesting).max().unwrap_or(0);
    match value {
        Value::Array(items) => 1 + deepest(&mut items.iter()),
        Value::Object(members) => 1 + deepest(&mut members.values()),
        _ => 0,
    }
}
