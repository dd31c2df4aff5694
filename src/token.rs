//! ID-token parsing and the standard claim checks (OpenID Connect Core 1.0 §3.1.3.7).
//!
//! - `UnverifiedToken::parse(raw, max_bytes)`: strict compact-JWS parsing (3 segments, strict
//!   base64url without padding, UTF-8 JSON objects, duplicate JSON keys rejected, nesting bounded,
//!   `alg` from an allowlist: never `none`, never HS*). `jku`, `x5u`, `jwk`, `x5c` are ignored.
//! - `verify_signature(self, key)`: the key must allow the header's `alg`; the signature is then
//!   checked by `jsonwebtoken` (see [`crate::key`]); returns the claims.
//! - `check_times`, `check_audience`: `exp`/`nbf`/`iat` with leeway (a token is valid while
//!   `now < exp + leeway`, RFC 7519 §4.1.4 "before"); `aud` string or array, `azp` required and
//!   among the audiences when there are several audiences, and among them whenever present.
//! - `TokenError::code()` gives the stable problem+json `code`; `Display` says "expected X, found
//!   Y" and never contains the token; attacker-supplied values in messages go through [`quote_untrusted`].
//!
//! Why the parsing is our own rather than `jsonwebtoken::decode`: its serde parsing takes the
//! last of duplicate JSON keys (a parser-differential trick between us and the IdP or a
//! downstream reader), bounds neither nesting nor the token's size before working on it, does not
//! refuse `crit` (RFC 7515 §4.1.11), and reports failures as its own error kinds, not our stable
//! codes. So the token is parsed here once, strictly, and only the signature goes to
//! `jsonwebtoken`, over the exact bytes the issuer signed.

use std::borrow::Cow;
use std::collections::BTreeSet;
use std::fmt;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde::de::{self, DeserializeSeed, Deserializer, MapAccess, SeqAccess, Visitor};
use serde_json::Value;
use serde_json::map::Entry;

use crate::key::{Algorithm, MAX_KID_BYTES, VerifyingKey};
/// Re-exported where the token checks always had it: callers quote claims with it.
pub use crate::untrusted::quote_untrusted;

/// The claims of a token: a JSON object.
pub type Claims = serde_json::Map<String, Value>;

/// Deepest JSON nesting accepted in a header or payload. Real ID tokens nest two or three
/// levels; the bound keeps hostile input from costing stack or time.
const MAX_JSON_DEPTH: usize = 32;

/// The fields of the JOSE header credbroker reads.
#[derive(Debug, Clone)]
pub struct Header {
    /// The `alg` header.
    pub alg: Algorithm,
    /// The `kid` header, if any.
    pub kid: Option<String>,
}

/// A token whose structure has been checked but whose signature has not. It borrows the raw
/// token, so the signed bytes are never copied.
pub struct UnverifiedToken<'raw> {
    header: Header,
    claims: Claims,
    /// `BASE64URL(header) || '.' || BASE64URL(payload)`, what the signature covers (RFC 7515 §5.2
    /// step 8): a prefix of the raw token.
    signing_input: &'raw str,
    signature: Vec<u8>,
}

impl fmt::Debug for UnverifiedToken<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Never the token or claim values: a Debug print must not leak a usable credential.
        f.debug_struct("UnverifiedToken")
            .field("header", &self.header)
            .field("claim_count", &self.claims.len())
            .finish_non_exhaustive()
    }
}

impl<'raw> UnverifiedToken<'raw> {
    /// Parses a compact JWS strictly; fails on anything but a well-formed signed JWT.
    pub fn parse(raw: &'raw str, max_bytes: usize) -> Result<UnverifiedToken<'raw>, TokenError> {
        // Size first, so nothing below ever works on an unbounded input.
        if raw.len() > max_bytes {
            return Err(TokenError::TooLarge {
                max: max_bytes,
                found: raw.len(),
            });
        }
        // RFC 7515 §7.1: a compact JWS is exactly three segments (a JWE would have five).
        let mut segments = raw.split('.');
        let (Some(header_b64), Some(payload_b64), Some(signature_b64), None) =
            (segments.next(), segments.next(), segments.next(), segments.next())
        else {
            return Err(malformed("expected three dot-separated segments"));
        };
        let header = parse_header(&decode_segment(header_b64, "header")?)?;
        // RFC 7519 §7.2 step 10: the payload of a JWT is a JSON object of claims.
        let claims = strict_json_object(&decode_segment(payload_b64, "payload")?, "payload")?;
        let signature = decode_segment(signature_b64, "signature")?;
        if signature.is_empty() {
            return Err(malformed("the signature is empty"));
        }
        Ok(UnverifiedToken {
            header,
            claims,
            signing_input: &raw[..header_b64.len() + 1 + payload_b64.len()],
            signature,
        })
    }

    /// The header.
    pub fn header(&self) -> &Header {
        &self.header
    }

    /// The claims, NOT yet verified: use only to choose the issuer's keys.
    pub fn unverified_claims(&self) -> &Claims {
        &self.claims
    }

    /// The `iss` claim (unverified).
    pub fn issuer(&self) -> Result<&str, TokenError> {
        string_claim(&self.claims, "iss")
    }

    /// Checks the signature with `key`, which must allow the header's algorithm.
    pub fn verify_signature(self, key: &VerifyingKey) -> Result<Claims, TokenError> {
        // RFC 7515 §10.7 / RFC 8725 §3.1: the key decides which algorithms it may be used with,
        // so a token cannot pick, say, an RSA algorithm for an EC key or PKCS#1 for a PSS key.
        let alg = self.header.alg;
        if !key.allows(alg) {
            return Err(TokenError::UnsupportedAlgorithm(format!(
                "{} is not allowed for the key {}",
                alg.name(),
                key.kid().map_or_else(|| "without kid".into(), quote_untrusted)
            )));
        }
        // RFC 7515 §5.2 step 8.
        if !key.verify(alg, self.signing_input.as_bytes(), &self.signature) {
            return Err(TokenError::BadSignature);
        }
        Ok(self.claims)
    }
}

fn malformed(problem: impl Into<String>) -> TokenError {
    TokenError::Malformed(problem.into())
}

/// Decodes one segment as base64url without padding (RFC 7515 §2). The engine is strict:
/// `=`, `+`, `/`, whitespace and non-zero trailing bits are all refused. It is `base64-simd`
/// (already linked by the AWS SDK), not the `base64` crate used elsewhere: these three segments
/// are decoded on every sign-in, and its vectorised decoder takes a third of the time.
fn decode_segment(segment: &str, what: &str) -> Result<Vec<u8>, TokenError> {
    base64_simd::URL_SAFE_NO_PAD
        .decode_to_vec(segment)
        .map_err(|_| malformed(format!("the {what} is not base64url without padding")))
}

/// Parses UTF-8 JSON that must be an object, refusing duplicate keys (RFC 7515 §4 and RFC 7519
/// §4: a parser must reject them or use the last one; rejecting removes any parser-differential
/// trick) and nesting deeper than [`MAX_JSON_DEPTH`].
fn strict_json_object(bytes: &[u8], what: &str) -> Result<Claims, TokenError> {
    match strict_json(bytes, what, StrictValue { depth: 0 })? {
        Value::Object(members) => Ok(members),
        _ => Err(not_an_object(what)),
    }
}

/// Reads UTF-8 JSON text, all of it, through `seed`.
fn strict_json<'de, S: DeserializeSeed<'de>>(
    bytes: &'de [u8],
    what: &str,
    seed: S,
) -> Result<S::Value, TokenError> {
    let text = std::str::from_utf8(bytes).map_err(|_| malformed(format!("the {what} is not UTF-8")))?;
    let invalid = |e: serde_json::Error| malformed(format!("the {what} is not valid JSON: {e}"));
    let mut deserializer = serde_json::Deserializer::from_str(text);
    let value = seed.deserialize(&mut deserializer).map_err(invalid)?;
    deserializer.end().map_err(invalid)?;
    Ok(value)
}

fn not_an_object(what: &str) -> TokenError {
    malformed(format!("the {what} is not a JSON object"))
}

/// Reads the JOSE header members credbroker relies on. The header is read as strictly as the
/// payload, but into [`HeaderMembers`] rather than a map: every sign-in parses one, and only
/// `alg`, `kid` and the presence of `crit` matter.
fn parse_header(bytes: &[u8]) -> Result<Header, TokenError> {
    let members = strict_json(bytes, "header", HeaderVisitor).map_err(|error| {
        // The visitor takes only an object; other well-formed JSON is named for what it is not.
        let other_json = !bytes.trim_ascii_start().starts_with(b"{")
            && serde_json::from_slice::<de::IgnoredAny>(bytes).is_ok();
        if other_json {
            not_an_object("header")
        } else {
            error
        }
    })?;
    // RFC 7515 §4.1.11: a recipient that does not understand a `crit` extension must reject the
    // token, and credbroker understands none.
    if members.has_crit {
        return Err(malformed(
            "the header has `crit` extensions, none of which are supported",
        ));
    }
    // RFC 7515 §4.1.1: `alg` is required. Only the allowlist maps to an algorithm, so `none`
    // and the HMAC family never get that far (RFC 8725 §3.1).
    let alg = match members.alg {
        Some(Value::String(name)) => Algorithm::from_name(&name)
            .ok_or_else(|| TokenError::UnsupportedAlgorithm(format!("`{}`", quote_untrusted(&name))))?,
        Some(_) => return Err(malformed("the `alg` header is not a string")),
        None => return Err(malformed("the header has no `alg`")),
    };
    // RFC 7515 §4.1.4: `kid` is a string. `jku`, `x5u`, `jwk` and `x5c` (§4.1.2, 4.1.3, 4.1.5,
    // 4.1.6) are deliberately never read: keys come only from the configured issuer.
    let kid = match members.kid {
        None => None,
        Some(Value::String(kid)) if kid.len() <= MAX_KID_BYTES => Some(kid),
        Some(Value::String(_)) => {
            return Err(malformed(format!(
                "the `kid` is longer than {MAX_KID_BYTES} bytes"
            )));
        }
        Some(_) => return Err(malformed("the `kid` header is not a string")),
    };
    Ok(Header { alg, kid })
}

/// The header members credbroker reads, as found. They are judged only once the whole header
/// has been read, so a header that is malformed further on is reported as malformed whatever
/// its `alg` says.
#[derive(Default)]
struct HeaderMembers {
    alg: Option<Value>,
    kid: Option<Value>,
    has_crit: bool,
}

/// Reads a header object into [`HeaderMembers`]: member names are borrowed from the text, every
/// value is read by [`StrictValue`], and only `alg` and `kid` are kept.
struct HeaderVisitor;

impl<'de> DeserializeSeed<'de> for HeaderVisitor {
    type Value = HeaderMembers;

    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<HeaderMembers, D::Error> {
        deserializer.deserialize_map(self)
    }
}

impl<'de> Visitor<'de> for HeaderVisitor {
    type Value = HeaderMembers;

    fn expecting(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        formatter.write_str("a JSON object")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<HeaderMembers, A::Error> {
        let mut seen = BTreeSet::new();
        let mut members = HeaderMembers::default();
        while let Some(name) = map.next_key_seed(MemberName)? {
            let value = map.next_value_seed(StrictValue { depth: 0 }.nested()?)?;
            match name.as_ref() {
                "alg" => members.alg = Some(value),
                "kid" => members.kid = Some(value),
                "crit" => members.has_crit = true,
                _ => {}
            }
            if let Some(repeated) = seen.replace(name) {
                return Err(duplicate_member(&repeated));
            }
        }
        Ok(members)
    }
}

/// A member name, borrowed from the JSON text unless it has escapes.
struct MemberName;

impl<'de> DeserializeSeed<'de> for MemberName {
    type Value = Cow<'de, str>;

    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<Cow<'de, str>, D::Error> {
        deserializer.deserialize_str(self)
    }
}

impl<'de> Visitor<'de> for MemberName {
    type Value = Cow<'de, str>;

    fn expecting(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        formatter.write_str("a member name")
    }

    fn visit_borrowed_str<E: de::Error>(self, name: &'de str) -> Result<Cow<'de, str>, E> {
        Ok(Cow::Borrowed(name))
    }

    fn visit_str<E: de::Error>(self, name: &str) -> Result<Cow<'de, str>, E> {
        Ok(Cow::Owned(name.to_string()))
    }
}

/// The error for a repeated member name.
fn duplicate_member<E: de::Error>(name: &str) -> E {
    E::custom(format_args!("duplicate key `{}`", quote_untrusted(name)))
}

/// Builds a `serde_json::Value` like its own `Deserialize`, but fails on a repeated object key
/// and on nesting deeper than [`MAX_JSON_DEPTH`].
struct StrictValue {
    depth: usize,
}

impl StrictValue {
    fn nested<E: de::Error>(&self) -> Result<StrictValue, E> {
        if self.depth >= MAX_JSON_DEPTH {
            return Err(E::custom(format_args!(
                "nested deeper than {MAX_JSON_DEPTH} levels"
            )));
        }
        Ok(StrictValue {
            depth: self.depth + 1,
        })
    }
}

impl<'de> DeserializeSeed<'de> for StrictValue {
    type Value = Value;

    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<Value, D::Error> {
        deserializer.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for StrictValue {
    type Value = Value;

    fn expecting(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        formatter.write_str("a JSON value")
    }

    fn visit_bool<E: de::Error>(self, value: bool) -> Result<Value, E> {
        Ok(Value::Bool(value))
    }

    fn visit_i64<E: de::Error>(self, value: i64) -> Result<Value, E> {
        Ok(Value::from(value))
    }

    fn visit_u64<E: de::Error>(self, value: u64) -> Result<Value, E> {
        Ok(Value::from(value))
    }

    fn visit_f64<E: de::Error>(self, value: f64) -> Result<Value, E> {
        serde_json::Number::from_f64(value)
            .map(Value::Number)
            .ok_or_else(|| E::custom("a number that is not finite"))
    }

    fn visit_str<E: de::Error>(self, value: &str) -> Result<Value, E> {
        Ok(Value::String(value.to_string()))
    }

    fn visit_string<E: de::Error>(self, value: String) -> Result<Value, E> {
        Ok(Value::String(value))
    }

    fn visit_unit<E: de::Error>(self) -> Result<Value, E> {
        Ok(Value::Null)
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Value, A::Error> {
        let mut items = Vec::new();
        while let Some(item) = seq.next_element_seed(self.nested()?)? {
            items.push(item);
        }
        Ok(Value::Array(items))
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Value, A::Error> {
        let mut members = Claims::new();
        while let Some(key) = map.next_key::<String>()? {
            // The value is read before the key is looked up, so each member costs one lookup.
            let value = map.next_value_seed(self.nested()?)?;
            match members.entry(key) {
                Entry::Vacant(vacant) => {
                    vacant.insert(value);
                }
                Entry::Occupied(occupied) => return Err(duplicate_member(occupied.key())),
            }
        }
        Ok(Value::Object(members))
    }
}

/// Checks `exp` (required), `nbf` and `iat` (when present) against `now` with `leeway`.
pub fn check_times(claims: &Claims, now: SystemTime, leeway: Duration) -> Result<(), TokenError> {
    let now = unix_seconds(now);
    let leeway_seconds = leeway.as_secs();
    let leeway = i64::try_from(leeway_seconds).unwrap_or(i64::MAX);
    // OIDC Core §3.1.3.7 step 9, RFC 7519 §4.1.4: the current time MUST be before `exp`.
    let expired_at = numeric_date(claims, "exp")?.ok_or(TokenError::MissingClaim("exp"))?;
    if now >= expired_at.saturating_add(leeway) {
        return Err(TokenError::Expired {
            expired_at,
            now,
            leeway_seconds,
        });
    }
    // RFC 7519 §4.1.5: the current time MUST be after or equal to `nbf`.
    if let Some(not_before) = numeric_date(claims, "nbf")?
        && not_before > now.saturating_add(leeway)
    {
        return Err(TokenError::NotYetValid { not_before, now });
    }
    // OIDC Core §3.1.3.7 step 10: `iat` may be used to reject tokens issued too far away from
    // the current time; one issued in the future means a broken or hostile issuer clock.
    if let Some(issued_at) = numeric_date(claims, "iat")?
        && issued_at > now.saturating_add(leeway)
    {
        return Err(TokenError::IssuedInFuture { issued_at, now });
    }
    Ok(())
}

/// `now` as whole seconds since the epoch, negative before it; saturating, never panicking.
fn unix_seconds(now: SystemTime) -> i64 {
    match now.duration_since(UNIX_EPOCH) {
        Ok(after) => i64::try_from(after.as_secs()).unwrap_or(i64::MAX),
        Err(before) => i64::try_from(before.duration().as_secs()).map_or(i64::MIN, |s| -s),
    }
}

/// A NumericDate claim (RFC 7519 §2): seconds since the epoch, integer or not; fractions are
/// rounded down. `None` when absent.
fn numeric_date(claims: &Claims, name: &'static str) -> Result<Option<i64>, TokenError> {
    let Some(value) = claims.get(name) else {
        return Ok(None);
    };
    let Value::Number(number) = value else {
        return Err(TokenError::MissingClaim(name));
    };
    let seconds = if let Some(seconds) = number.as_i64() {
        seconds
    } else if number.is_u64() {
        // Larger than i64::MAX: the far future, for all purposes.
        i64::MAX
    } else {
        match number.as_f64() {
            // `as` saturates for finite values out of range.
            Some(seconds) if seconds.is_finite() => seconds.floor() as i64,
            _ => return Err(malformed(format!("`{name}` is not a finite number"))),
        }
    };
    if seconds < 0 {
        return Err(malformed(format!("`{name}` is negative")));
    }
    Ok(Some(seconds))
}

/// Checks that `aud` names one of `audiences`, and `azp` when there are several audiences.
pub fn check_audience(claims: &Claims, audiences: &[String]) -> Result<(), TokenError> {
    let expected = || audiences.join(", ");
    let accepted = |value: &str| audiences.iter().any(|audience| audience == value);
    // OIDC Core §3.1.3.7 step 3: `aud` must contain our client id; RFC 7519 §4.1.3: it is a
    // string or an array of strings.
    let token_audiences = audience_values(claims)?;
    if !token_audiences.iter().any(|audience| accepted(audience)) {
        return Err(TokenError::WrongAudience {
            expected: expected(),
            found: quote_untrusted(&token_audiences.join(", ")),
        });
    }
    // Steps 4-5: with several audiences `azp` must be present, and when present it must be our
    // client id; otherwise a token minted for another party that merely lists us would pass.
    match claims.get("azp") {
        None if token_audiences.len() > 1 => Err(TokenError::WrongAuthorizedParty {
            expected: expected(),
            found: "no azp claim in a token with several audiences".into(),
        }),
        None => Ok(()),
        Some(Value::String(azp)) if accepted(azp) => Ok(()),
        Some(Value::String(azp)) => Err(TokenError::WrongAuthorizedParty {
            expected: expected(),
            found: quote_untrusted(azp),
        }),
        Some(_) => Err(TokenError::MissingClaim("azp")),
    }
}

/// The `aud` values: a string, or a non-empty array of strings.
fn audience_values(claims: &Claims) -> Result<Vec<&str>, TokenError> {
    match claims.get("aud") {
        Some(Value::String(audience)) => Ok(vec![audience.as_str()]),
        Some(Value::Array(items)) if !items.is_empty() => items
            .iter()
            .map(|item| item.as_str().ok_or(TokenError::MissingClaim("aud")))
            .collect(),
        _ => Err(TokenError::MissingClaim("aud")),
    }
}

/// A required string claim.
pub fn string_claim<'a>(claims: &'a Claims, name: &'static str) -> Result<&'a str, TokenError> {
    claims
        .get(name)
        .and_then(Value::as_str)
        .ok_or(TokenError::MissingClaim(name))
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
    /// The token has no `kid` and several of the issuer's keys fit its `alg`.
    #[error("cannot choose the signing key: {0}")]
    AmbiguousKey(String),
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
        match self {
            TokenError::TooLarge { .. } => "token_too_large",
            TokenError::Malformed(_) => "malformed_token",
            TokenError::UnsupportedAlgorithm(_) => "unsupported_algorithm",
            TokenError::UnknownKey(_) => "unknown_key",
            TokenError::AmbiguousKey(_) => "ambiguous_key",
            TokenError::BadSignature => "bad_signature",
            TokenError::MissingClaim(_) => "missing_claim",
            TokenError::WrongIssuer { .. } => "wrong_issuer",
            TokenError::WrongAudience { .. } => "wrong_audience",
            TokenError::WrongAuthorizedParty { .. } => "wrong_azp",
            TokenError::Expired { .. } => "token_expired",
            TokenError::NotYetValid { .. } => "token_not_yet_valid",
            TokenError::IssuedInFuture { .. } => "token_issued_in_future",
            TokenError::WrongClaim { code, .. } => code,
            TokenError::KeysUnavailable(_) => "jwks_unavailable",
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::OnceLock;

    use serde_json::json;

    use super::*;
    use crate::local::signing_key::SigningKey;

    const MAX: usize = 16 * 1024;

    /// One RSA key for the many tests that need one (generation is the slow part).
    fn rsa() -> &'static SigningKey {
        static KEY: OnceLock<SigningKey> = OnceLock::new();
        KEY.get_or_init(|| SigningKey::generate(Algorithm::RS256, "rsa-1"))
    }

    fn verifying(key: &SigningKey) -> VerifyingKey {
        VerifyingKey::from_jwk(&key.public_jwk()).unwrap()
    }

    fn claims() -> Value {
        json!({"iss": "https://issuer.example", "sub": "user-1", "aud": "client-1", "exp": 4_000_000_000u64})
    }

    /// Encoded with the `base64` crate, so the tests do not lean on the decoder they test.
    fn b64(bytes: &[u8]) -> String {
        use base64::Engine as _;
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
    }

    /// A token from raw header and payload text, with a non-empty dummy signature.
    fn raw_token(header: &str, payload: &str) -> String {
        format!(
            "{}.{}.{}",
            b64(header.as_bytes()),
            b64(payload.as_bytes()),
            b64(b"sig")
        )
    }

    /// Parses `token` (which must be well formed) and verifies its signature with `key`.
    fn verify_with(token: &str, key: &VerifyingKey) -> Result<Claims, TokenError> {
        UnverifiedToken::parse(token, MAX).unwrap().verify_signature(key)
    }

    fn parse_error(raw: &str) -> TokenError {
        UnverifiedToken::parse(raw, MAX).unwrap_err()
    }

    fn assert_malformed(raw: &str, needle: &str) {
        match parse_error(raw) {
            TokenError::Malformed(message) => assert!(message.contains(needle), "{message}"),
            other => panic!("expected Malformed containing {needle:?}, got {other:?}"),
        }
    }

    const GOOD_HEADER: &str = r#"{"alg":"RS256","kid":"k"}"#;
    const GOOD_PAYLOAD: &str = r#"{"iss":"i","sub":"s"}"#;

    #[test]
    fn every_algorithm_round_trips() {
        for alg in Algorithm::ALL {
            let key = SigningKey::generate(alg, &format!("kid-{}", alg.name()));
            let token = key.sign_jwt(&claims());
            let parsed = UnverifiedToken::parse(&token, MAX).unwrap();
            assert_eq!(parsed.header().alg, alg);
            assert_eq!(parsed.header().kid.as_deref(), Some(key.kid()));
            assert_eq!(parsed.issuer().unwrap(), "https://issuer.example");
            let verified = parsed.verify_signature(&verifying(&key)).unwrap();
            assert_eq!(Value::Object(verified), claims(), "{}", alg.name());
        }
    }

    #[test]
    fn none_and_hmac_are_refused() {
        for alg in ["none", "None", "HS256", "HS512", "rs256", "ES512", ""] {
            let header = json!({"alg": alg}).to_string();
            match parse_error(&raw_token(&header, GOOD_PAYLOAD)) {
                TokenError::UnsupportedAlgorithm(message) => assert!(message.contains(alg), "{message}"),
                other => panic!("{alg}: {other:?}"),
            }
        }
        // `none` with the empty signature it normally carries is refused for its alg too.
        let none = format!("{}.{}.", b64(br#"{"alg":"none"}"#), b64(GOOD_PAYLOAD.as_bytes()));
        assert_eq!(parse_error(&none).code(), "unsupported_algorithm");
    }

    #[test]
    fn alg_must_be_a_present_string() {
        assert_malformed(&raw_token(r#"{"kid":"k"}"#, GOOD_PAYLOAD), "no `alg`");
        assert_malformed(&raw_token(r#"{"alg":256}"#, GOOD_PAYLOAD), "not a string");
    }

    #[test]
    fn exactly_three_segments() {
        let good = raw_token(GOOD_HEADER, GOOD_PAYLOAD);
        let (two, _) = good.rsplit_once('.').unwrap();
        assert_malformed(two, "three");
        assert_malformed(&format!("{good}.{}", b64(b"x")), "three");
        assert_malformed("", "three");
        assert!(UnverifiedToken::parse(&good, MAX).is_ok());
    }

    #[test]
    fn base64url_is_strict() {
        let header = b64(GOOD_HEADER.as_bytes());
        let payload = b64(GOOD_PAYLOAD.as_bytes());
        // "QQ" is the canonical encoding of "A"; "QR" sets trailing bits.
        assert!(UnverifiedToken::parse(&format!("{header}.{payload}.QQ"), MAX).is_ok());
        assert!(UnverifiedToken::parse(&format!("{header}.{payload}.QUI"), MAX).is_ok());
        // "QUJ" sets trailing bits of a 3-character group; "Q" is no length base64 can have.
        for signature in ["QQ==", "QR", "QUJ", "Q", "QUI=", "a+b_", "a/b_", "QQ QQ", "QQ\n"] {
            assert_malformed(&format!("{header}.{payload}.{signature}"), "base64url");
        }
        assert_malformed(&format!("{header}=.{payload}.QQ"), "header is not base64url");
        assert_malformed(&format!("{header}.{payload}+.QQ"), "payload is not base64url");
    }

    #[test]
    fn header_and_payload_must_be_json_objects() {
        assert_malformed(&raw_token("not json", GOOD_PAYLOAD), "header is not valid JSON");
        assert_malformed(
            &raw_token(r#"["RS256"]"#, GOOD_PAYLOAD),
            "header is not a JSON object",
        );
        assert_malformed(
            &raw_token(GOOD_HEADER, r#""a string""#),
            "payload is not a JSON object",
        );
        assert_malformed(
            &raw_token(GOOD_HEADER, r#"{"a":1} {"b":2}"#),
            "payload is not valid JSON",
        );
        assert_malformed(&raw_token(GOOD_HEADER, ""), "payload is not valid JSON");
    }

    #[test]
    fn payload_must_be_utf8() {
        let token = format!(
            "{}.{}.{}",
            b64(GOOD_HEADER.as_bytes()),
            b64(b"{\"sub\":\"\xff\xfe\"}"),
            b64(b"sig")
        );
        assert_malformed(&token, "payload is not UTF-8");
    }

    #[test]
    fn duplicate_keys_are_refused_at_every_level() {
        assert_malformed(
            &raw_token(r#"{"alg":"RS256","alg":"none"}"#, GOOD_PAYLOAD),
            "duplicate key `alg`",
        );
        assert_malformed(
            &raw_token(GOOD_HEADER, r#"{"sub":"a","sub":"b"}"#),
            "duplicate key `sub`",
        );
        assert_malformed(
            &raw_token(GOOD_HEADER, r#"{"sub":"a","x":[{"k":1,"k":2}]}"#),
            "duplicate key `k`",
        );
    }

    #[test]
    fn header_names_are_compared_unescaped_and_nested_members_strictly() {
        // `\u0061lg` is `alg`: an escaped repeat is still a repeat, and an escaped name still
        // counts (a reader that compared raw text would see two different members).
        assert_malformed(
            &raw_token(r#"{"alg":"RS256","\u0061lg":"none"}"#, GOOD_PAYLOAD),
            "duplicate key `alg`",
        );
        let escaped = raw_token(r#"{"\u0061lg":"ES256"}"#, GOOD_PAYLOAD);
        let escaped = UnverifiedToken::parse(&escaped, MAX);
        assert_eq!(escaped.unwrap().header().alg, Algorithm::ES256);
        assert_malformed(
            &raw_token(r#"{"alg":"RS256","x":{"k":1,"k":2}}"#, GOOD_PAYLOAD),
            "duplicate key `k`",
        );
        let deep_header = format!(r#"{{"alg":"RS256","x":{}1{}}}"#, "[".repeat(100), "]".repeat(100));
        assert_malformed(&raw_token(&deep_header, GOOD_PAYLOAD), "nested deeper");
    }

    #[test]
    fn nesting_is_bounded() {
        let deep = |levels: usize| {
            format!(
                "{{\"sub\":\"s\",\"x\":{}1{}}}",
                "[".repeat(levels),
                "]".repeat(levels)
            )
        };
        // The top-level object is depth 0, so 31 arrays inside `x` reach exactly the bound.
        assert!(UnverifiedToken::parse(&raw_token(GOOD_HEADER, &deep(MAX_JSON_DEPTH - 1)), MAX).is_ok());
        assert_malformed(&raw_token(GOOD_HEADER, &deep(MAX_JSON_DEPTH)), "nested deeper");
        assert_malformed(&raw_token(GOOD_HEADER, &deep(100)), "nested deeper");
        let deep_objects = format!("{}1{}", "{\"a\":".repeat(100), "}".repeat(100));
        assert_malformed(&raw_token(GOOD_HEADER, &deep_objects), "nested deeper");
    }

    #[test]
    fn kid_must_be_a_short_string() {
        assert_malformed(
            &raw_token(r#"{"alg":"RS256","kid":7}"#, GOOD_PAYLOAD),
            "`kid` header is not a string",
        );
        let longest = json!({"alg": "RS256", "kid": "k".repeat(MAX_KID_BYTES)}).to_string();
        assert!(UnverifiedToken::parse(&raw_token(&longest, GOOD_PAYLOAD), MAX).is_ok());
        let too_long = json!({"alg": "RS256", "kid": "k".repeat(MAX_KID_BYTES + 1)}).to_string();
        assert_malformed(&raw_token(&too_long, GOOD_PAYLOAD), "longer than 256 bytes");
    }

    #[test]
    fn crit_is_refused() {
        assert_malformed(
            &raw_token(r#"{"alg":"RS256","crit":["exp"],"exp":1}"#, GOOD_PAYLOAD),
            "crit",
        );
        assert_malformed(&raw_token(r#"{"alg":"RS256","crit":[]}"#, GOOD_PAYLOAD), "crit");
    }

    #[test]
    fn the_signature_must_not_be_empty() {
        let token = format!(
            "{}.{}.",
            b64(GOOD_HEADER.as_bytes()),
            b64(GOOD_PAYLOAD.as_bytes())
        );
        assert_malformed(&token, "signature is empty");
    }

    #[test]
    fn size_is_checked_first() {
        let huge = "x".repeat(MAX + 1);
        match parse_error(&huge) {
            TokenError::TooLarge { max, found } => assert_eq!((max, found), (MAX, MAX + 1)),
            other => panic!("{other:?}"),
        }
        let token = rsa().sign_jwt(&claims());
        assert!(UnverifiedToken::parse(&token, token.len()).is_ok());
        assert_eq!(
            UnverifiedToken::parse(&token, token.len() - 1)
                .unwrap_err()
                .code(),
            "token_too_large"
        );
    }

    #[test]
    fn key_carrying_headers_are_ignored() {
        let attacker = SigningKey::generate(Algorithm::ES256, "rsa-1");
        let hostile_header = |alg: &str| {
            json!({
                "alg": alg, "kid": "rsa-1", "typ": "JWT",
                "jku": "https://attacker.example/jwks", "x5u": "https://attacker.example/cert",
                "jwk": attacker.public_jwk(), "x5c": ["MIIBattacker"],
            })
        };
        // Signed by the real key: verifies with the real key, the extra headers change nothing.
        let token = rsa().sign_jwt_with_header(&hostile_header("RS256"), &claims());
        let verified = verify_with(&token, &verifying(rsa()));
        assert_eq!(Value::Object(verified.unwrap()), claims());
        // Signed by the attacker whose key rides in `jwk`: the issuer's key is what counts.
        let forged = attacker.sign_jwt_with_header(&hostile_header("RS256"), &claims());
        let result = verify_with(&forged, &verifying(rsa()));
        assert!(matches!(result, Err(TokenError::BadSignature)), "{result:?}");
    }

    #[test]
    fn algorithm_confusion_is_refused() {
        // An RSA key and a token that claims ES256.
        let ec = SigningKey::generate(Algorithm::ES256, "rsa-1");
        let token = ec.sign_jwt(&claims());
        let result = verify_with(&token, &verifying(rsa()));
        assert!(
            matches!(result, Err(TokenError::UnsupportedAlgorithm(_))),
            "{result:?}"
        );

        // A key published for PS256 only and a genuine RS256 signature by the same private key.
        let mut jwk = rsa().public_jwk();
        jwk["alg"] = json!("PS256");
        let pss_only = VerifyingKey::from_jwk(&jwk).unwrap();
        let token = rsa().sign_jwt(&claims());
        match verify_with(&token, &pss_only) {
            Err(TokenError::UnsupportedAlgorithm(message)) => assert!(message.contains("RS256"), "{message}"),
            other => panic!("{other:?}"),
        }

        // A P-256 key and a token that claims ES384 (or EdDSA).
        let p256 = verifying(&ec);
        for alg in ["ES384", "EdDSA", "RS256"] {
            let token = ec.sign_jwt_with_header(&json!({"alg": alg}), &claims());
            let result = verify_with(&token, &p256);
            assert!(
                matches!(result, Err(TokenError::UnsupportedAlgorithm(_))),
                "{alg}: {result:?}"
            );
        }
    }

    #[test]
    fn a_wrong_signature_is_refused() {
        let other = SigningKey::generate(Algorithm::RS256, "rsa-1");
        let token = other.sign_jwt(&claims());
        let result = verify_with(&token, &verifying(rsa()));
        assert!(matches!(result, Err(TokenError::BadSignature)), "{result:?}");

        // The real key's signature over different claims, spliced onto these claims.
        let genuine = rsa().sign_jwt(&claims());
        let (header, rest) = genuine.split_once('.').unwrap();
        let (_, signature) = rest.split_once('.').unwrap();
        let tampered_claims = json!({"iss": "https://issuer.example", "sub": "admin", "aud": "client-1", "exp": 4_000_000_000u64});
        let tampered = format!(
            "{header}.{}.{signature}",
            b64(tampered_claims.to_string().as_bytes())
        );
        let result = verify_with(&tampered, &verifying(rsa()));
        assert!(matches!(result, Err(TokenError::BadSignature)), "{result:?}");
    }

    #[test]
    fn issuer_and_string_claims() {
        let raw = raw_token(GOOD_HEADER, r#"{"iss":5,"sub":"s"}"#);
        let parsed = UnverifiedToken::parse(&raw, MAX).unwrap();
        assert!(matches!(parsed.issuer(), Err(TokenError::MissingClaim("iss"))));
        assert_eq!(string_claim(parsed.unverified_claims(), "sub").unwrap(), "s");
        assert!(matches!(
            string_claim(parsed.unverified_claims(), "email"),
            Err(TokenError::MissingClaim("email"))
        ));
    }

    #[test]
    fn debug_shows_no_token_material() {
        let token = rsa().sign_jwt(&json!({"sub": "secret-subject", "exp": 4_000_000_000u64}));
        let debug = format!("{:?}", UnverifiedToken::parse(&token, MAX).unwrap());
        assert!(
            !debug.contains("secret-subject") && !debug.contains(&token[..20]),
            "{debug}"
        );
        assert!(debug.contains("RS256"), "{debug}");
    }

    fn object(value: Value) -> Claims {
        match value {
            Value::Object(members) => members,
            other => panic!("not an object: {other}"),
        }
    }

    fn at(seconds: u64) -> SystemTime {
        UNIX_EPOCH + Duration::from_secs(seconds)
    }

    const LEEWAY: Duration = Duration::from_secs(60);

    #[test]
    fn exp_is_required_and_numeric() {
        let now = at(1_000);
        assert!(matches!(
            check_times(&object(json!({})), now, LEEWAY),
            Err(TokenError::MissingClaim("exp"))
        ));
        let as_string = object(json!({"exp": "2000"}));
        assert!(matches!(
            check_times(&as_string, now, LEEWAY),
            Err(TokenError::MissingClaim("exp"))
        ));
        let negative = object(json!({"exp": -5}));
        assert!(matches!(
            check_times(&negative, now, LEEWAY),
            Err(TokenError::Malformed(_))
        ));
        let negative_float = object(json!({"exp": -0.5}));
        assert!(matches!(
            check_times(&negative_float, now, LEEWAY),
            Err(TokenError::Malformed(_))
        ));
        assert!(check_times(&object(json!({"exp": 2000.75})), now, LEEWAY).is_ok());
        assert!(check_times(&object(json!({"exp": u64::MAX})), now, LEEWAY).is_ok());
        assert!(check_times(&object(json!({"exp": 1e300})), now, LEEWAY).is_ok());
    }

    #[test]
    fn exp_leeway_edges() {
        let claims = object(json!({"exp": 1_000}));
        // Valid while now < exp + leeway (RFC 7519 §4.1.4: "before").
        assert!(check_times(&claims, at(1_059), LEEWAY).is_ok());
        match check_times(&claims, at(1_060), LEEWAY) {
            Err(TokenError::Expired {
                expired_at,
                now,
                leeway_seconds,
            }) => {
                assert_eq!((expired_at, now, leeway_seconds), (1_000, 1_060, 60));
            }
            other => panic!("{other:?}"),
        }
        assert!(check_times(&claims, at(999), Duration::ZERO).is_ok());
        assert_eq!(
            check_times(&claims, at(1_000), Duration::ZERO)
                .unwrap_err()
                .code(),
            "token_expired"
        );
    }

    #[test]
    fn nbf_leeway_edges() {
        let claims = object(json!({"exp": 10_000, "nbf": 1_060}));
        assert!(check_times(&claims, at(1_000), LEEWAY).is_ok());
        match check_times(&claims, at(999), LEEWAY) {
            Err(TokenError::NotYetValid { not_before, now }) => assert_eq!((not_before, now), (1_060, 999)),
            other => panic!("{other:?}"),
        }
        let bad_type = object(json!({"exp": 10_000, "nbf": "soon"}));
        assert!(matches!(
            check_times(&bad_type, at(1_000), LEEWAY),
            Err(TokenError::MissingClaim("nbf"))
        ));
    }

    #[test]
    fn iat_leeway_edges() {
        let claims = object(json!({"exp": 10_000, "iat": 1_060}));
        assert!(check_times(&claims, at(1_000), LEEWAY).is_ok());
        match check_times(&claims, at(999), LEEWAY) {
            Err(TokenError::IssuedInFuture { issued_at, now }) => assert_eq!((issued_at, now), (1_060, 999)),
            other => panic!("{other:?}"),
        }
        let bad_type = object(json!({"exp": 10_000, "iat": null}));
        assert!(matches!(
            check_times(&bad_type, at(1_000), LEEWAY),
            Err(TokenError::MissingClaim("iat"))
        ));
    }

    #[test]
    fn times_never_overflow() {
        let claims = object(json!({"exp": i64::MAX, "nbf": i64::MAX, "iat": 0}));
        assert!(check_times(&claims, at(1_000), Duration::MAX).is_ok());
        let before_epoch = UNIX_EPOCH - Duration::from_secs(10);
        assert!(check_times(&object(json!({"exp": 5})), before_epoch, Duration::ZERO).is_ok());
        assert!(check_times(&object(json!({"exp": 5})), SystemTime::UNIX_EPOCH, Duration::MAX).is_ok());
    }

    fn audiences() -> Vec<String> {
        vec!["client-1".to_string(), "client-2".to_string()]
    }

    #[test]
    fn a_single_audience_must_be_ours() {
        assert!(check_audience(&object(json!({"aud": "client-2"})), &audiences()).is_ok());
        assert!(check_audience(&object(json!({"aud": ["client-1"]})), &audiences()).is_ok());
        match check_audience(&object(json!({"aud": "someone-else"})), &audiences()) {
            Err(TokenError::WrongAudience { expected, found }) => {
                assert_eq!(expected, "client-1, client-2");
                assert_eq!(found, "someone-else");
            }
            other => panic!("{other:?}"),
        }
        assert!(matches!(
            check_audience(&object(json!({"aud": ["x", "y"]})), &audiences()),
            Err(TokenError::WrongAudience { .. })
        ));
        assert!(matches!(
            check_audience(&object(json!({"aud": "client-1"})), &[]),
            Err(TokenError::WrongAudience { .. })
        ));
    }

    #[test]
    fn aud_must_be_a_string_or_non_empty_string_array() {
        for aud in [
            json!(null),
            json!(5),
            json!([]),
            json!(["client-1", 5]),
            json!({"client-1": true}),
        ] {
            let result = check_audience(&object(json!({"aud": aud})), &audiences());
            assert!(
                matches!(result, Err(TokenError::MissingClaim("aud"))),
                "{aud}: {result:?}"
            );
        }
        assert!(matches!(
            check_audience(&object(json!({})), &audiences()),
            Err(TokenError::MissingClaim("aud"))
        ));
    }

    #[test]
    fn several_audiences_need_our_azp() {
        let several = json!(["client-1", "other-app"]);
        match check_audience(&object(json!({"aud": several})), &audiences()) {
            Err(TokenError::WrongAuthorizedParty { found, .. }) => {
                assert!(found.contains("no azp"), "{found}")
            }
            other => panic!("{other:?}"),
        }
        assert!(check_audience(&object(json!({"aud": several, "azp": "client-1"})), &audiences()).is_ok());
        match check_audience(&object(json!({"aud": several, "azp": "other-app"})), &audiences()) {
            Err(TokenError::WrongAuthorizedParty { expected, found }) => {
                assert_eq!(
                    (expected.as_str(), found.as_str()),
                    ("client-1, client-2", "other-app")
                );
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn a_present_azp_must_be_ours() {
        let foreign = object(json!({"aud": "client-1", "azp": "other-app"}));
        assert_eq!(
            check_audience(&foreign, &audiences()).unwrap_err().code(),
            "wrong_azp"
        );
        assert!(
            check_audience(
                &object(json!({"aud": "client-1", "azp": "client-2"})),
                &audiences()
            )
            .is_ok()
        );
        let not_string = object(json!({"aud": "client-1", "azp": ["client-1"]}));
        assert!(matches!(
            check_audience(&not_string, &audiences()),
            Err(TokenError::MissingClaim("azp"))
        ));
    }

    #[test]
    fn attacker_values_in_errors_are_bounded_and_escaped() {
        let huge = "a".repeat(1_000_000);
        let error = check_audience(&object(json!({"aud": huge})), &audiences()).unwrap_err();
        let message = error.to_string();
        assert!(
            message.len() < 300 && message.ends_with('…'),
            "{} bytes",
            message.len()
        );

        let header = json!({"alg": format!("X{}", "b".repeat(100_000))}).to_string();
        let message = UnverifiedToken::parse(&raw_token(&header, GOOD_PAYLOAD), 1 << 20)
            .unwrap_err()
            .to_string();
        assert!(message.len() < 300, "{} bytes", message.len());

        assert_eq!(
            quote_untrusted("a\nb\u{1b}[31m\u{202e}c"),
            "a\\u{a}b\\u{1b}[31m\\u{202e}c"
        );
        assert_eq!(quote_untrusted(&"é".repeat(81)), format!("{}…", "é".repeat(80)));
        assert_eq!(quote_untrusted(&"é".repeat(80)), "é".repeat(80));
    }

    #[test]
    fn codes_are_stable() {
        let found = || String::from("x");
        let cases = [
            (TokenError::TooLarge { max: 1, found: 2 }, "token_too_large"),
            (TokenError::Malformed(found()), "malformed_token"),
            (TokenError::UnsupportedAlgorithm(found()), "unsupported_algorithm"),
            (TokenError::UnknownKey(found()), "unknown_key"),
            (TokenError::AmbiguousKey(found()), "ambiguous_key"),
            (TokenError::BadSignature, "bad_signature"),
            (TokenError::MissingClaim("sub"), "missing_claim"),
            (
                TokenError::WrongIssuer {
                    expected: found(),
                    found: found(),
                },
                "wrong_issuer",
            ),
            (
                TokenError::WrongAudience {
                    expected: found(),
                    found: found(),
                },
                "wrong_audience",
            ),
            (
                TokenError::WrongAuthorizedParty {
                    expected: found(),
                    found: found(),
                },
                "wrong_azp",
            ),
            (
                TokenError::Expired {
                    expired_at: 1,
                    now: 2,
                    leeway_seconds: 0,
                },
                "token_expired",
            ),
            (
                TokenError::NotYetValid {
                    not_before: 2,
                    now: 1,
                },
                "token_not_yet_valid",
            ),
            (
                TokenError::IssuedInFuture { issued_at: 2, now: 1 },
                "token_issued_in_future",
            ),
            (
                TokenError::WrongClaim {
                    code: "wrong_tenant",
                    claim: "tid",
                    expected: found(),
                    found: found(),
                },
                "wrong_tenant",
            ),
            (TokenError::KeysUnavailable(found()), "jwks_unavailable"),
        ];
        for (error, code) in cases {
            assert_eq!(error.code(), code, "{error}");
        }
    }
}
