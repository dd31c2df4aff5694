//! The attack corpus: hostile inputs against `POST /auth/signin/{provider}` on the real router
//! over HTTP, each answered with its own 4xx problem+json `code` — never a 2xx, a 5xx or a
//! dropped connection (a panicking handler), and never with the token echoed back.
//!
//! The broker is set up like a deployment with every provider kind, a test issuer publishing two
//! RSA keys, and a stub identity pool that would sign anyone in: a case that slipped through
//! would show up as a 200 and as a call at the pool, and both are checked. Key-carrying headers
//! (`jku`, `x5u`) point at a [`Tripwire`] that serves the attacker's key and must never be hit.
//!
//! The table is the source of `docs/security.md`'s corpus table; keep them in step.

#[allow(dead_code)]
mod support;

use axum::http::{HeaderMap, Method, header};
use base64::Engine;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use credbroker::key::Algorithm;
use credbroker::local::signing_key::SigningKey;
use serde_json::{Value, json};
use support::{
    Answer, Issuer, OTHER_TENANT, StubCognito, TENANT, Tripwire, b64, broker_with_stub, cognito_success,
    corp_claims, send, unix_now as now, with,
};

/// The issue asks for at least this many hostile inputs.
const MIN_CASES: usize = 40;
/// `limits.max_token_bytes`, left at its default.
const MAX_TOKEN_BYTES: usize = 16 * 1024;
/// `limits.max_body_bytes`, left at its default.
const MAX_BODY_BYTES: usize = 64 * 1024;
/// The size of the "1 MB token" case, over both limits.
const ONE_MB: usize = 1 << 20;
const _: () = assert!(ONE_MB > MAX_BODY_BYTES && MAX_BODY_BYTES > 2 * MAX_TOKEN_BYTES);
/// How much of a provider path segment the printed table shows.
const SHOWN_PROVIDER_CHARS: usize = 24;
/// Segments shorter than this are too generic to search for in an answer.
const MIN_SECRET_CHARS: usize = 16;

/// What one case sends.
enum Attack {
    /// `{"id_token": token}` as JSON.
    Token(String),
    /// Any body under any content type (`None`: no `Content-Type` header).
    Body {
        content_type: Option<&'static str>,
        body: Vec<u8>,
        /// The token inside the body, to check it is not echoed.
        token: Option<String>,
    },
    /// A JSON sign-in from a browser origin.
    FromOrigin { origin: &'static str, token: String },
    /// A CORS preflight from a browser origin.
    Preflight { origin: &'static str },
    /// A request with another method and no body.
    Method(Method),
}

/// One hostile input and the exact answer it must get.
struct Case {
    name: &'static str,
    /// The `{provider}` path segment (percent-encoded as needed).
    provider: String,
    attack: Attack,
    status: u16,
    code: &'static str,
}

fn case(name: &'static str, provider: &str, attack: Attack, status: u16, code: &'static str) -> Case {
    Case {
        name,
        provider: provider.to_string(),
        attack,
        status,
        code,
    }
}

/// A JSON sign-in with `token` at `corp` must get `status`/`code`.
fn corp(name: &'static str, token: String, status: u16, code: &'static str) -> Case {
    case(name, "corp", Attack::Token(token), status, code)
}

/// The keys and servers the corpus is built from.
struct Fixtures {
    issuer: Issuer,
    /// The issuer's first key, kid `rsa-1`.
    rsa: SigningKey,
    /// The issuer's second key, kid `rsa-2`.
    sibling: SigningKey,
    /// An unpublished key claiming kid `rsa-1`.
    impostor: SigningKey,
    /// The attacker's EC key, served by the tripwire.
    attacker: SigningKey,
    tripwire: Tripwire,
}

impl Fixtures {
    async fn start() -> Fixtures {
        let rsa = SigningKey::generate(Algorithm::RS256, "rsa-1");
        let sibling = SigningKey::generate(Algorithm::RS256, "rsa-2");
        let issuer = Issuer::start(&[&rsa, &sibling]).await;
        let attacker = SigningKey::generate(Algorithm::ES256, "attacker");
        let tripwire = Tripwire::serving(SigningKey::jwks(&[&attacker])).await;
        Fixtures {
            issuer,
            rsa,
            sibling,
            impostor: SigningKey::generate(Algorithm::RS256, "rsa-1"),
            attacker,
            tripwire,
        }
    }

    fn claims(&self) -> Value {
        corp_claims(&self.issuer)
    }

    /// Valid claims changed by `changes` (see [`with`]), signed by the real key.
    fn corp_token(&self, changes: Value) -> String {
        self.rsa.sign_jwt(&with(self.claims(), changes))
    }

    /// Valid claims signed by the real key under `header`.
    fn with_header(&self, header: Value) -> String {
        self.rsa.sign_jwt_with_header(&header, &self.claims())
    }
}

fn header(alg: &str, kid: &str) -> Value {
    json!({"alg": alg, "kid": kid, "typ": "JWT"})
}

/// A token from raw header and payload text, signed by `key` over exactly that text.
fn signed_text(key: &SigningKey, header: &str, payload: &str) -> String {
    let input = format!(
        "{}.{}",
        URL_SAFE_NO_PAD.encode(header),
        URL_SAFE_NO_PAD.encode(payload)
    );
    let signature = URL_SAFE_NO_PAD.encode(key.sign(input.as_bytes()));
    format!("{input}.{signature}")
}

/// A token from raw segments: base64url of each byte string as given.
fn raw_segments(segments: &[&[u8]]) -> String {
    segments
        .iter()
        .map(|segment| URL_SAFE_NO_PAD.encode(segment))
        .collect::<Vec<_>>()
        .join(".")
}

/// The public RSA key in the encodings HMAC-confusion tools try as the HMAC secret.
mod rsa_public_encodings {
    use super::*;

    /// The modulus and exponent of an RSA JWK.
    fn components(jwk: &Value) -> (Vec<u8>, Vec<u8>) {
        let decode = |name: &str| {
            let text = jwk[name].as_str().expect("an RSA JWK has n and e");
            URL_SAFE_NO_PAD.decode(text).expect("JWK numbers are base64url")
        };
        (decode("n"), decode("e"))
    }

    /// A DER element: tag, definite length, content.
    fn der(tag: u8, content: &[u8]) -> Vec<u8> {
        let mut out = vec![tag];
        let length = content.len();
        if length < 0x80 {
            out.push(length as u8);
        } else {
            let bytes: Vec<u8> = length
                .to_be_bytes()
                .into_iter()
                .skip_while(|byte| *byte == 0)
                .collect();
            out.push(0x80 | bytes.len() as u8);
            out.extend(bytes);
        }
        out.extend_from_slice(content);
        out
    }

    /// A non-negative DER INTEGER from big-endian bytes.
    fn unsigned_integer(bytes: &[u8]) -> Vec<u8> {
        let trimmed: Vec<u8> = bytes.iter().copied().skip_while(|byte| *byte == 0).collect();
        let mut content = Vec::new();
        if trimmed.first().is_none_or(|byte| byte & 0x80 != 0) {
            content.push(0);
        }
        content.extend(trimmed);
        der(0x02, &content)
    }

    /// PKCS#1 `RSAPublicKey` (RFC 8017 A.1.1).
    pub fn pkcs1_der(jwk: &Value) -> Vec<u8> {
        let (n, e) = components(jwk);
        der(0x30, &[unsigned_integer(&n), unsigned_integer(&e)].concat())
    }

    /// X.509 `SubjectPublicKeyInfo` with `rsaEncryption` (RFC 5280, RFC 8017 A.1).
    pub fn spki_der(jwk: &Value) -> Vec<u8> {
        const RSA_ENCRYPTION: [u8; 11] = [0x06, 0x09, 0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x01, 0x01];
        const NULL: [u8; 2] = [0x05, 0x00];
        let algorithm = der(0x30, &[&RSA_ENCRYPTION[..], &NULL[..]].concat());
        let bits = der(0x03, &[&[0u8][..], &pkcs1_der(jwk)].concat());
        der(0x30, &[algorithm, bits].concat())
    }

    /// PEM text (RFC 7468): 64-column base64 lines and a final newline.
    pub fn pem(label: &str, der: &[u8]) -> String {
        let encoded = STANDARD.encode(der);
        let lines: Vec<&str> = encoded
            .as_bytes()
            .chunks(64)
            .map(|chunk| std::str::from_utf8(chunk).expect("base64 is ASCII"))
            .collect();
        format!(
            "-----BEGIN {label}-----\n{}\n-----END {label}-----\n",
            lines.join("\n")
        )
    }
}

/// A token claiming HMAC `alg` with an HMAC over its signing input keyed with `secret`: the
/// classic algorithm confusion, where a verifier that lets the token pick the algorithm uses
/// the RSA public key as an HMAC secret.
fn hmac_token(alg: &str, secret: &[u8], claims: &Value) -> String {
    let algorithm = match alg {
        "HS384" => aws_lc_rs::hmac::HMAC_SHA384,
        "HS512" => aws_lc_rs::hmac::HMAC_SHA512,
        _ => aws_lc_rs::hmac::HMAC_SHA256,
    };
    let input = format!("{}.{}", b64(&header(alg, "rsa-1")), b64(claims));
    let tag = aws_lc_rs::hmac::sign(&aws_lc_rs::hmac::Key::new(algorithm, secret), input.as_bytes());
    format!("{input}.{}", URL_SAFE_NO_PAD.encode(tag.as_ref()))
}

fn algorithm_cases(f: &Fixtures) -> Vec<Case> {
    use rsa_public_encodings::{pem, pkcs1_der, spki_der};
    let claims = f.claims();
    let jwk = f.rsa.public_jwk();
    let spki_pem = pem("PUBLIC KEY", &spki_der(&jwk));
    let pkcs1_pem = pem("RSA PUBLIC KEY", &pkcs1_der(&jwk));
    let refused = |name, token| corp(name, token, 401, "unsupported_algorithm");
    vec![
        refused(
            "alg none, empty signature",
            format!("{}.{}.", b64(&header("none", "rsa-1")), b64(&claims)),
        ),
        refused(
            "alg none with a signature",
            f.with_header(header("none", "rsa-1")),
        ),
        refused(
            "alg nOnE (case games)",
            format!("{}.{}.", b64(&header("nOnE", "rsa-1")), b64(&claims)),
        ),
        refused(
            "HS256 keyed with the public JWK's JSON",
            hmac_token("HS256", jwk.to_string().as_bytes(), &claims),
        ),
        refused(
            "HS256 keyed with the public key as SPKI PEM",
            hmac_token("HS256", spki_pem.as_bytes(), &claims),
        ),
        refused(
            "HS256 keyed with the SPKI PEM without its final newline",
            hmac_token("HS256", spki_pem.trim_end().as_bytes(), &claims),
        ),
        refused(
            "HS256 keyed with the public key as PKCS#1 PEM",
            hmac_token("HS256", pkcs1_pem.as_bytes(), &claims),
        ),
        refused(
            "HS256 keyed with the public key as SPKI DER",
            hmac_token("HS256", &spki_der(&jwk), &claims),
        ),
        refused(
            "HS384 keyed with the public key as PKCS#1 DER",
            hmac_token("HS384", &pkcs1_der(&jwk), &claims),
        ),
        refused(
            "HS512 keyed with the SPKI PEM",
            hmac_token("HS512", spki_pem.as_bytes(), &claims),
        ),
        refused(
            "ES256 signature against the RSA key's kid",
            f.attacker
                .sign_jwt_with_header(&header("ES256", "rsa-1"), &claims),
        ),
        refused(
            "PS256 label on the RS256 key (the key's own alg wins)",
            f.with_header(header("PS256", "rsa-1")),
        ),
        corp(
            "no alg at all",
            f.with_header(json!({"kid": "rsa-1"})),
            401,
            "malformed_token",
        ),
        corp(
            "alg not a string",
            f.with_header(json!({"alg": ["RS256"], "kid": "rsa-1"})),
            401,
            "malformed_token",
        ),
    ]
}

fn kid_cases(f: &Fixtures) -> Vec<Case> {
    let unknown = |name, kid: &str| corp(name, f.with_header(header("RS256", kid)), 401, "unknown_key");
    vec![
        unknown("unknown kid", "rsa-99"),
        corp(
            "no kid while the issuer has two keys that allow the alg",
            f.with_header(json!({"alg": "RS256"})),
            401,
            "ambiguous_key",
        ),
        unknown("path-like kid", "../../../../etc/passwd"),
        unknown("kid naming a file URL", "file:///dev/stdin"),
        unknown("SQL-injection kid", "x' UNION SELECT 'secret' --"),
        unknown(
            "kid with a newline and ANSI escape",
            "rsa-1\n\u{1b}[31mforged log line",
        ),
        corp(
            "huge kid (10 KB)",
            f.with_header(header("RS256", &"k".repeat(10_000))),
            401,
            "malformed_token",
        ),
        corp(
            "kid not a string",
            f.with_header(json!({"alg": "RS256", "kid": 1})),
            401,
            "malformed_token",
        ),
    ]
}

/// `jku`, `x5u`, `jwk` and `x5c` all point at or carry the attacker's key; the broker must use
/// only the issuer's keys, so the attacker's signature never verifies and the tripwire stays
/// silent.
fn key_header_cases(f: &Fixtures) -> Vec<Case> {
    let jwks_url = format!("{}/jwks.json", f.tripwire.url);
    let attacker_signed = |header: Value| f.attacker.sign_jwt_with_header(&header, &f.claims());
    let fake_certificate = STANDARD.encode(b"attacker certificate chain");
    vec![
        corp(
            "jku to the attacker's JWKS, attacker's kid",
            attacker_signed(json!({"alg": "ES256", "kid": "attacker", "jku": jwks_url})),
            401,
            "unknown_key",
        ),
        corp(
            "jku to the attacker's JWKS, issuer's kid",
            attacker_signed(json!({"alg": "RS256", "kid": "rsa-1", "jku": jwks_url})),
            401,
            "bad_signature",
        ),
        corp(
            "x5u to the attacker's certificate",
            attacker_signed(
                json!({"alg": "ES256", "kid": "attacker", "x5u": format!("{}/cert.pem", f.tripwire.url)}),
            ),
            401,
            "unknown_key",
        ),
        corp(
            "embedded jwk of the attacker, issuer's kid",
            attacker_signed(json!({"alg": "RS256", "kid": "rsa-1", "jwk": f.attacker.public_jwk()})),
            401,
            "bad_signature",
        ),
        corp(
            "embedded jwk of the attacker, no kid",
            attacker_signed(json!({"alg": "ES256", "jwk": f.attacker.public_jwk()})),
            401,
            "unknown_key",
        ),
        corp(
            "x5c chain of the attacker",
            attacker_signed(json!({"alg": "RS256", "kid": "rsa-1", "x5c": [fake_certificate]})),
            401,
            "bad_signature",
        ),
    ]
}

fn claim_cases(f: &Fixtures) -> Vec<Case> {
    let t = |changes| f.corp_token(changes);
    vec![
        corp(
            "another issuer",
            t(json!({"iss": "https://evil.example.com"})),
            401,
            "wrong_issuer",
        ),
        corp(
            "issuer with a trailing slash",
            t(json!({"iss": format!("{}/", f.issuer.url)})),
            401,
            "wrong_issuer",
        ),
        corp("no iss", t(json!({"iss": null})), 401, "missing_claim"),
        corp("iss not a string", t(json!({"iss": ["x"]})), 401, "missing_claim"),
        corp(
            "another audience",
            t(json!({"aud": "someone-else"})),
            401,
            "wrong_audience",
        ),
        corp("no aud", t(json!({"aud": null})), 401, "missing_claim"),
        corp(
            "two audiences, no azp",
            t(json!({"aud": ["corp-app", "other-app"]})),
            401,
            "wrong_azp",
        ),
        corp(
            "azp of another client",
            t(json!({"azp": "other-app"})),
            401,
            "wrong_azp",
        ),
        corp(
            "expired an hour ago",
            t(json!({"exp": now() - 3600})),
            401,
            "token_expired",
        ),
        corp("no exp", t(json!({"exp": null})), 401, "missing_claim"),
        corp(
            "exp as a string",
            t(json!({"exp": "4102444800"})),
            401,
            "missing_claim",
        ),
        corp("negative exp", t(json!({"exp": -1})), 401, "malformed_token"),
        corp(
            "nbf an hour ahead",
            t(json!({"nbf": now() + 3600})),
            401,
            "token_not_yet_valid",
        ),
        corp(
            "iat a year ahead",
            t(json!({"iat": now() + 365 * 86_400})),
            401,
            "token_issued_in_future",
        ),
        corp("no sub", t(json!({"sub": null})), 401, "missing_claim"),
    ]
}

fn signature_cases(f: &Fixtures) -> Vec<Case> {
    let claims = f.claims();
    let genuine = f.rsa.sign_jwt(&claims);
    let (signing_input, signature) = genuine.rsplit_once('.').expect("three segments");
    let (header_segment, _) = signing_input.split_once('.').expect("three segments");
    let admin = with(claims.clone(), json!({"sub": "admin"}));
    let mut flipped = URL_SAFE_NO_PAD.decode(signature).expect("base64url");
    if let Some(first) = flipped.first_mut() {
        *first ^= 0x01;
    }
    vec![
        corp(
            "signed by the issuer's other key under this kid",
            f.sibling.sign_jwt_with_header(&header("RS256", "rsa-1"), &claims),
            401,
            "bad_signature",
        ),
        corp(
            "signed by an unpublished key with the same kid",
            f.impostor.sign_jwt(&claims),
            401,
            "bad_signature",
        ),
        corp(
            "genuine signature spliced onto other claims",
            format!("{header_segment}.{}.{signature}", b64(&admin)),
            401,
            "bad_signature",
        ),
        corp(
            "one bit of the signature flipped",
            format!("{signing_input}.{}", URL_SAFE_NO_PAD.encode(&flipped)),
            401,
            "bad_signature",
        ),
        corp(
            "signature stripped",
            format!("{signing_input}."),
            401,
            "malformed_token",
        ),
    ]
}

fn structure_cases(f: &Fixtures) -> Vec<Case> {
    let genuine = f.rsa.sign_jwt(&f.claims());
    let (signing_input, signature) = genuine.rsplit_once('.').expect("three segments");
    let claims_text = f.claims().to_string();
    let open_claims = claims_text.strip_suffix('}').expect("a JSON object");
    let duplicate_iss = format!(r#"{open_claims},"iss":"https://evil.example.com"}}"#);
    let deep = format!(r#"{open_claims},"x":{}1{}}}"#, "[".repeat(1000), "]".repeat(1000));
    let good_header = header("RS256", "rsa-1").to_string();
    let malformed = |name, token| corp(name, token, 401, "malformed_token");
    vec![
        malformed("two segments (truncated)", signing_input.to_string()),
        malformed("four segments", format!("{genuine}.{signature}")),
        malformed("five segments (JWE shape)", format!("{genuine}.AAAA.AAAA")),
        malformed("padded base64", format!("{genuine}==")),
        malformed(
            "standard base64 alphabet",
            format!(
                "{signing_input}.{}",
                signature.replace('-', "+").replace('_', "/") + "+/"
            ),
        ),
        malformed("whitespace inside", format!("{signing_input}. {signature}")),
        malformed(
            "header not JSON",
            format!(
                "{}.{}",
                URL_SAFE_NO_PAD.encode("RS256 rsa-1"),
                genuine.split_once('.').map_or("", |(_, rest)| rest)
            ),
        ),
        malformed(
            "header a JSON array",
            signed_text(&f.rsa, r#"["RS256","rsa-1"]"#, &claims_text),
        ),
        malformed(
            "header not UTF-8",
            raw_segments(&[b"{\"alg\":\"RS256\xff\"}", claims_text.as_bytes(), b"signature"]),
        ),
        malformed(
            "duplicate alg in the header (RS256 then none)",
            signed_text(
                &f.rsa,
                r#"{"alg":"RS256","kid":"rsa-1","alg":"none"}"#,
                &claims_text,
            ),
        ),
        malformed(
            "duplicate iss in the payload, validly signed",
            signed_text(&f.rsa, &good_header, &duplicate_iss),
        ),
        malformed(
            "1000-deep nested JSON, validly signed",
            signed_text(&f.rsa, &good_header, &deep),
        ),
        malformed(
            "crit header",
            f.with_header(json!({"alg": "RS256", "kid": "rsa-1", "crit": ["exp"], "exp": 1})),
        ),
        malformed(
            "payload a JSON string",
            signed_text(&f.rsa, &good_header, r#""just a string""#),
        ),
        malformed("not a JWT at all", "not-a-token".to_string()),
        corp(
            "token over the 16 KB limit (about 22 KB, under the body limit)",
            f.corp_token(json!({"pad": "p".repeat(MAX_TOKEN_BYTES)})),
            413,
            "token_too_large",
        ),
        // Over the 64 KB body limit, which is checked first.
        corp(
            "1 MB token",
            f.corp_token(json!({"pad": "p".repeat(ONE_MB)})),
            413,
            "body_too_large",
        ),
    ]
}

fn non_utf8_cases(f: &Fixtures) -> Vec<Case> {
    let genuine = f.rsa.sign_jwt(&f.claims());
    let form = |name, body: Vec<u8>, status, code| {
        let attack = Attack::Body {
            content_type: Some("application/x-www-form-urlencoded"),
            body,
            token: Some(genuine.clone()),
        };
        case(name, "corp", attack, status, code)
    };
    let mut raw_json = br#"{"id_token":""#.to_vec();
    raw_json.extend_from_slice(genuine.as_bytes());
    raw_json.extend_from_slice(b"\xff\xfe\"}");
    let mut raw_form = b"id_token=".to_vec();
    raw_form.extend_from_slice(genuine.as_bytes());
    raw_form.extend_from_slice(b"\xc3\x28");
    vec![
        // Form decoding is lossy: the bytes become U+FFFD, which no base64url segment holds.
        form(
            "form with percent-encoded invalid UTF-8",
            format!("id_token={}%FF%FE", genuine).into_bytes(),
            401,
            "malformed_token",
        ),
        form("form with raw invalid UTF-8", raw_form, 401, "malformed_token"),
        case(
            "JSON with raw invalid UTF-8",
            "corp",
            Attack::Body {
                content_type: Some("application/json"),
                body: raw_json,
                token: Some(genuine.clone()),
            },
            400,
            "malformed_request",
        ),
    ]
}

/// Provider-specific checks, and a token valid for one provider posted to another.
fn provider_cases(f: &Fixtures) -> Vec<Case> {
    let signed = |provider: &str, claims: Value, status, code, name| {
        case(
            name,
            provider,
            Attack::Token(f.rsa.sign_jwt(&claims)),
            status,
            code,
        )
    };
    let entra = entra_claims();
    vec![
        signed(
            "entra",
            with(
                entra.clone(),
                json!({"iss": entra_issuer(OTHER_TENANT), "tid": OTHER_TENANT}),
            ),
            401,
            "wrong_tenant",
            "Entra token from a tenant outside the allowlist",
        ),
        signed(
            "entra",
            with(entra.clone(), json!({"tid": OTHER_TENANT})),
            401,
            "wrong_issuer",
            "Entra iss of the allowed tenant, tid of another",
        ),
        signed(
            "entra",
            with(entra.clone(), json!({"iss": entra_issuer(OTHER_TENANT)})),
            401,
            "wrong_issuer",
            "Entra iss of another tenant, tid of the allowed one",
        ),
        signed(
            "entra",
            with(entra.clone(), json!({"tid": null})),
            401,
            "missing_claim",
            "Entra token without tid",
        ),
        signed(
            "gws",
            with(google_claims(), json!({"hd": "evil.example"})),
            401,
            "wrong_hosted_domain",
            "Google token with hd outside the rule",
        ),
        signed(
            "gws",
            with(google_claims(), json!({"hd": null})),
            401,
            "wrong_hosted_domain",
            "Google consumer account (no hd)",
        ),
        signed(
            "pool",
            with(cognito_claims(), json!({"token_use": "access"})),
            401,
            "wrong_token_use",
            "Cognito access token where an ID token is required",
        ),
        signed(
            "pool",
            with(cognito_claims(), json!({"token_use": null})),
            401,
            "wrong_token_use",
            "Cognito token without token_use",
        ),
        signed(
            "gws",
            f.claims(),
            401,
            "wrong_issuer",
            "valid corp token posted to the Google provider",
        ),
        signed(
            "corp",
            entra,
            401,
            "wrong_issuer",
            "valid Entra token posted to the corp provider",
        ),
        signed(
            "pool",
            google_claims(),
            401,
            "wrong_issuer",
            "valid Google token posted to the Cognito provider",
        ),
        signed(
            "entra",
            with(cognito_claims(), json!({"tid": TENANT})),
            401,
            "wrong_issuer",
            "valid Cognito token (plus a tid) posted to the Entra provider",
        ),
    ]
}

fn entra_issuer(tenant: &str) -> String {
    format!("https://login.microsoftonline.com/{tenant}/v2.0")
}

fn standard_claims(iss: &str, aud: &str) -> Value {
    json!({"iss": iss, "aud": aud, "sub": "user-1", "iat": now(), "exp": now() + 600})
}

fn entra_claims() -> Value {
    with(
        standard_claims(&entra_issuer(TENANT), "entra-app"),
        json!({"tid": TENANT, "oid": "oid-1"}),
    )
}

fn google_claims() -> Value {
    with(
        standard_claims("https://accounts.google.com", "g-app"),
        json!({"hd": "example.com"}),
    )
}

fn cognito_claims() -> Value {
    with(
        standard_claims(
            "https://cognito-idp.us-east-1.amazonaws.com/us-east-1_TestPool",
            "cognito-app",
        ),
        json!({"token_use": "id"}),
    )
}

fn envelope_cases(f: &Fixtures) -> Vec<Case> {
    let token = f.rsa.sign_jwt(&f.claims());
    let body = |content_type: Option<&'static str>, body: &[u8]| Attack::Body {
        content_type,
        body: body.to_vec(),
        token: None,
    };
    let json = Some("application/json");
    let form = Some("application/x-www-form-urlencoded");
    vec![
        case("bad JSON", "corp", body(json, b"{oops"), 400, "malformed_request"),
        case("empty body", "corp", body(json, b""), 400, "malformed_request"),
        case(
            "id_token not a string",
            "corp",
            body(json, br#"{"id_token":42}"#),
            400,
            "malformed_request",
        ),
        // serde's derived `Deserialize` also reads a struct from a sequence, so this body
        // currently signs in (200); the README says the body is a JSON object.
        case(
            "JSON array holding a valid token",
            "corp",
            Attack::Body {
                content_type: json,
                body: json!([token]).to_string().into_bytes(),
                token: Some(token.clone()),
            },
            400,
            "malformed_request",
        ),
        case(
            "empty id_token",
            "corp",
            body(json, br#"{"id_token":""}"#),
            400,
            "missing_id_token",
        ),
        case(
            "form without id_token",
            "corp",
            body(form, b"token=a.b.c"),
            400,
            "missing_id_token",
        ),
        case(
            "form with id_token twice",
            "corp",
            body(form, b"id_token=a.b.c&id_token=d.e.f"),
            400,
            "malformed_request",
        ),
        case(
            "wrong content type",
            "corp",
            body(Some("text/plain"), token.as_bytes()),
            415,
            "unsupported_media_type",
        ),
        case(
            "no content type",
            "corp",
            body(None, br#"{"id_token":"a.b.c"}"#),
            415,
            "unsupported_media_type",
        ),
        case(
            "10 MB body",
            "corp",
            body(json, &vec![b' '; 10 << 20]),
            413,
            "body_too_large",
        ),
        case(
            "unknown provider",
            "nobody",
            Attack::Token(token.clone()),
            404,
            "unknown_provider",
        ),
        case(
            "path-like provider",
            "..%2F..%2Fetc%2Fpasswd",
            Attack::Token(token.clone()),
            404,
            "unknown_provider",
        ),
        case(
            "huge provider name (4 KB)",
            &"p".repeat(4096),
            Attack::Token(token.clone()),
            404,
            "unknown_provider",
        ),
        case(
            "disallowed CORS origin",
            "corp",
            Attack::FromOrigin {
                origin: "https://evil.example.com",
                token: token.clone(),
            },
            403,
            "origin_not_allowed",
        ),
        case(
            "opaque origin (null)",
            "corp",
            Attack::FromOrigin {
                origin: "null",
                token,
            },
            403,
            "origin_not_allowed",
        ),
        case(
            "preflight from a disallowed origin",
            "corp",
            Attack::Preflight {
                origin: "https://app.example.com.evil.example",
            },
            403,
            "origin_not_allowed",
        ),
        case(
            "GET instead of POST",
            "corp",
            Attack::Method(Method::GET),
            405,
            "method_not_allowed",
        ),
    ]
}

/// Every case, in the order of `docs/security.md`.
fn corpus(f: &Fixtures) -> Vec<Case> {
    [
        algorithm_cases(f),
        kid_cases(f),
        key_header_cases(f),
        claim_cases(f),
        signature_cases(f),
        structure_cases(f),
        non_utf8_cases(f),
        provider_cases(f),
        envelope_cases(f),
    ]
    .into_iter()
    .flatten()
    .collect()
}

/// Sends one case to the broker at `base`.
async fn run(client: &reqwest::Client, base: &str, case: &Case) -> Answer {
    let url = format!("{base}/auth/signin/{}", case.provider);
    let json_body = |token: &str| json!({ "id_token": token }).to_string();
    let request = match &case.attack {
        Attack::Token(token) => client
            .post(&url)
            .header(header::CONTENT_TYPE, "application/json")
            .body(json_body(token)),
        Attack::Body {
            content_type, body, ..
        } => {
            let request = client.post(&url).body(body.clone());
            match content_type {
                Some(content_type) => request.header(header::CONTENT_TYPE, *content_type),
                None => request,
            }
        }
        Attack::FromOrigin { origin, token } => client
            .post(&url)
            .header(header::ORIGIN, *origin)
            .header(header::CONTENT_TYPE, "application/json")
            .body(json_body(token)),
        Attack::Preflight { origin } => client
            .request(Method::OPTIONS, &url)
            .header(header::ORIGIN, *origin)
            .header(header::ACCESS_CONTROL_REQUEST_METHOD, "POST"),
        Attack::Method(method) => client.request(method.clone(), &url),
    };
    send(request).await
}

/// What must never come back: the token and its signature segment.
fn secrets_of(attack: &Attack) -> Vec<String> {
    let token = match attack {
        Attack::Token(token) | Attack::FromOrigin { token, .. } => Some(token),
        Attack::Body { token, .. } => token.as_ref(),
        Attack::Preflight { .. } | Attack::Method(_) => None,
    };
    let Some(token) = token else {
        return Vec::new();
    };
    let signature = token.rsplit('.').next().unwrap_or_default();
    [token.as_str(), signature]
        .into_iter()
        .filter(|secret| secret.len() >= MIN_SECRET_CHARS)
        .map(str::to_string)
        .collect()
}

fn headers_text(headers: &HeaderMap) -> String {
    headers
        .iter()
        .map(|(name, value)| format!("{name}: {}\n", String::from_utf8_lossy(value.as_bytes())))
        .collect()
}

/// Every property a refusal must have; the failures found, as text.
fn check(case: &Case, answer: &Answer) -> Vec<String> {
    let mut failures = Vec::new();
    let mut expect = |holds: bool, what: String| {
        if !holds {
            failures.push(format!("{}: {what}", case.name));
        }
    };
    let status = answer.status.as_u16();
    expect(
        (400..500).contains(&status),
        format!("status {status} is not a 4xx: {}", answer.text),
    );
    expect(
        status == case.status && answer.body["code"] == case.code,
        format!(
            "expected {} {}, got {status} {}",
            case.status, case.code, answer.body["code"]
        ),
    );
    expect(
        answer
            .headers
            .get(header::CONTENT_TYPE)
            .is_some_and(|v| v == "application/problem+json"),
        format!("content type {:?}", answer.headers.get(header::CONTENT_TYPE)),
    );
    expect(
        answer.body["status"] == status
            && answer.body["type"].is_string()
            && answer.body["detail"].is_string(),
        format!("not a complete problem body: {}", answer.text),
    );
    if status == 401 {
        expect(
            answer
                .headers
                .get(header::WWW_AUTHENTICATE)
                .is_some_and(|v| v == "Bearer error=\"invalid_token\""),
            "401 without WWW-Authenticate".into(),
        );
    }
    let echoed = format!("{}{}", headers_text(&answer.headers), answer.text);
    for secret in secrets_of(&case.attack) {
        expect(
            !echoed.contains(&secret),
            "the token came back in the answer".into(),
        );
    }
    expect(
        answer.text.len() < 2048,
        format!("a {}-byte error body", answer.text.len()),
    );
    failures
}

/// Signs in once per provider kind with a valid token, so every refusal below is known to
/// come from the attacked detail and not from a broken setup. Returns how many succeeded.
async fn baselines(client: &reqwest::Client, base: &str, f: &Fixtures) -> usize {
    let valid = [
        ("corp", f.claims()),
        ("entra", entra_claims()),
        ("gws", google_claims()),
        ("pool", cognito_claims()),
    ];
    for (provider, claims) in &valid {
        let baseline = case(
            "baseline",
            provider,
            Attack::Token(f.rsa.sign_jwt(claims)),
            200,
            "",
        );
        let answer = run(client, base, &baseline).await;
        assert_eq!(
            answer.status.as_u16(),
            200,
            "{provider} baseline: {}",
            answer.text
        );
    }
    valid.len()
}

#[tokio::test]
async fn every_hostile_input_gets_its_own_4xx_code() {
    let f = Fixtures::start().await;
    let pool = StubCognito::answering(200, cognito_success("stub-secret-key", "stub-session-token")).await;
    let base = broker_with_stub(&pool, &f.issuer).await;
    let client = reqwest::Client::new();
    let signed_in = baselines(&client, &base, &f).await;
    let jwks_fetches = f.issuer.hits();

    let cases = corpus(&f);
    assert!(cases.len() >= MIN_CASES, "only {} cases", cases.len());
    let mut failures = Vec::new();
    for case in &cases {
        let answer = run(&client, &base, case).await;
        failures.extend(check(case, &answer));
        // The corpus as a Markdown table row (`--nocapture`), for docs/security.md.
        let provider: String = case.provider.chars().take(SHOWN_PROVIDER_CHARS).collect();
        println!(
            "| {} | `{provider}` | {} `{}` |",
            case.name, case.status, case.code
        );
    }
    assert!(
        failures.is_empty(),
        "{} of {} cases failed:\n{}",
        failures.len(),
        cases.len(),
        failures.join("\n")
    );

    assert_eq!(f.tripwire.hits(), 0, "a jku/x5u URL was fetched");
    assert_eq!(
        pool.requests().len(),
        2 * signed_in,
        "only the baselines may reach the identity pool"
    );
    // Unknown kids within the 60 s cooldown after the baselines' fetches cost no fetch at all.
    assert_eq!(f.issuer.hits(), jwks_fetches, "JWKS fetches during the corpus");
    // The broker still serves after all of it.
    let config = send(client.get(format!("{base}/auth/config"))).await;
    assert_eq!(config.status.as_u16(), 200);
}
