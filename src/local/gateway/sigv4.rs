//! SigV4 verification as API Gateway with `aws_iam` does it, as one pure function: [`verify`].
//!
//! The signature is recomputed with `aws-sigv4` over exactly the headers the client listed in
//! `SignedHeaders`, at the client's own `X-Amz-Date`, and compared in constant time. The one step
//! done here rather than by `aws-sigv4` is the first percent-encoding of the path: `aws-sigv4`
//! only accepts a path that is already a valid `http::Uri`, while SigV4 defines the canonical
//! path as "URI-encode every byte of the path as sent except unreserved characters and `/`",
//! which must also work for bytes a `Uri` refuses (the conformance suite sends raw spaces and
//! UTF-8). So we encode the path exactly like `aws-sigv4`'s `PercentEncodingMode::Double` would,
//! and hand the result over in `PercentEncodingMode::Single` (no further encoding); path
//! normalization (`.`/`..`/`//`) still runs inside `aws-sigv4` and commutes with that encoding,
//! since it only looks at `/` and `.`, which the encoding keeps.
//!
//! Known limits, shared with `aws-sigv4` itself: a literal `+` in the query is read as a space
//! (form decoding), and a presigned URL must carry `X-Amz-Expires` (the canonical query
//! `aws-sigv4` builds always includes it).

use crate::token::quote_untrusted;
use std::borrow::Cow;
use std::time::{Duration, SystemTime};

use aws_credential_types::Credentials;
use aws_sigv4::http_request::{
    PayloadChecksumKind, PercentEncodingMode, SessionTokenMode, SignableBody, SignableRequest,
    SignatureLocation, SigningSettings, sign,
};
use aws_smithy_runtime_api::client::identity::Identity as SigningIdentity;
use http::HeaderMap;
use percent_encoding::{AsciiSet, CONTROLS, NON_ALPHANUMERIC, percent_encode};
use time::OffsetDateTime;
use time::format_description::BorrowedFormatItem;
use time::macros::format_description;

/// The only signing algorithm accepted.
pub const ALGORITHM: &str = "AWS4-HMAC-SHA256";
/// The service API Gateway signatures are scoped to.
pub const EXECUTE_API: &str = "execute-api";
/// How far `X-Amz-Date` may be from the gateway's clock, either way.
pub const MAX_CLOCK_SKEW: Duration = Duration::from_secs(5 * 60);
/// How long API Gateway honours a presigned URL after its `X-Amz-Date`, whatever its
/// `X-Amz-Expires` says: past five minutes it answers `Signature expired: … (… - 5 min.)`, the
/// header form's clock-skew message. Observed and reported in
/// <https://stackoverflow.com/questions/66961500> ("How to increase expiration time in AWS
/// signature v4 pre-signed links for API Gateway from default 5 min?": an `X-Amz-Expires` above
/// or below 300 changes nothing). A shorter `X-Amz-Expires` is still honoured here: refusing a
/// URL its signer meant to be dead is the safe side of that report.
pub const API_GATEWAY_PRESIGNED_MAX_AGE: Duration = MAX_CLOCK_SKEW;
/// The longest `X-Amz-Expires` a presigned URL may ask for (seven days).
pub const MAX_PRESIGNED_EXPIRES_SECS: u64 = 604_800;

const TERMINATOR: &str = "aws4_request";
const UNSIGNED_PAYLOAD: &str = "UNSIGNED-PAYLOAD";
/// Longer than any real SigV4 header (a few hundred bytes); refuses junk early.
const MAX_AUTHORIZATION_LEN: usize = 4096;
/// Real requests sign a handful of headers; this bounds the work per request.
const MAX_SIGNED_HEADERS: usize = 64;
const MAX_ACCESS_KEY_ID_LEN: usize = 128;
const MAX_SESSION_TOKEN_LEN: usize = 4096;

const HOST: &str = "host";
const X_AMZ_DATE: &str = "x-amz-date";
const X_AMZ_SECURITY_TOKEN: &str = "x-amz-security-token";
const X_AMZ_CONTENT_SHA256: &str = "x-amz-content-sha256";

/// The query parameters of a presigned request.
const Q_ALGORITHM: &str = "X-Amz-Algorithm";
const Q_CREDENTIAL: &str = "X-Amz-Credential";
const Q_DATE: &str = "X-Amz-Date";
const Q_EXPIRES: &str = "X-Amz-Expires";
const Q_SIGNED_HEADERS: &str = "X-Amz-SignedHeaders";
const Q_SIGNATURE: &str = "X-Amz-Signature";
const Q_SECURITY_TOKEN: &str = "X-Amz-Security-Token";
/// All of them: `aws-sigv4` adds these to the canonical query itself, so they are taken out of
/// the query it is given (and never forwarded upstream).
pub const PRESIGN_PARAMS: [&str; 7] = [
    Q_ALGORITHM,
    Q_CREDENTIAL,
    Q_DATE,
    Q_EXPIRES,
    Q_SIGNED_HEADERS,
    Q_SIGNATURE,
    Q_SECURITY_TOKEN,
];

/// What SigV4 leaves unencoded in a path: unreserved characters and `/` (the same set as
/// `aws-sigv4`'s double-encoding step).
const PATH_ENCODE_SET: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'.')
    .remove(b'_')
    .remove(b'~')
    .remove(b'/');

/// Bytes an `http::Uri` query cannot hold. Encoding them is meaning-preserving because the
/// canonical query is built from the decoded pairs; `%`, `&`, `=` and `+` stay as they are.
const QUERY_ENCODE_SET: &AsciiSet = &CONTROLS
    .add(b' ')
    .add(b'"')
    .add(b'#')
    .add(b'<')
    .add(b'>')
    .add(b'\\')
    .add(b'^')
    .add(b'`')
    .add(b'{')
    .add(b'|')
    .add(b'}');

const AMZ_DATE_FORMAT: &[BorrowedFormatItem<'static>] =
    format_description!("[year][month][day]T[hour][minute][second]Z");

/// A request as it reached the gateway. No `Debug`: its headers hold the session token.
#[derive(Clone, Copy)]
pub struct SignedRequest<'a> {
    /// The method, e.g. `GET`.
    pub method: &'a str,
    /// The request target exactly as sent: path and optional `?query`.
    pub target: &'a str,
    /// All request headers; `host` must be among them.
    pub headers: &'a HeaderMap,
    /// The whole body.
    pub body: &'a [u8],
}

/// Where the signature was.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AuthType {
    /// The `Authorization` header.
    Header,
    /// Presigned query parameters.
    Query,
}

impl AuthType {
    /// `"header"` or `"query"`.
    pub fn as_str(self) -> &'static str {
        match self {
            AuthType::Header => "header",
            AuthType::Query => "query",
        }
    }
}

/// What the verifier expects of a request besides a valid signature.
#[derive(Debug, Clone, Copy)]
pub struct Expectations<'a> {
    /// The verifier's clock.
    pub now: SystemTime,
    /// The region the credential scope must name.
    pub region: &'a str,
    /// The service the credential scope must name.
    pub service: &'a str,
    /// Normalize `.`, `..` and `//` in the path before signing (every service but S3 does).
    pub normalize_uri_path: bool,
    /// Whether a presigned URL's `X-Amz-Security-Token` is part of what was signed (the
    /// standard), or was appended after signing (what a few services, e.g. IoT, expect).
    /// Header signing needs no such flag: `SignedHeaders` says it.
    pub presigned_token_signed: bool,
    /// The longest a presigned URL is honoured after its `X-Amz-Date`, whatever `X-Amz-Expires`
    /// asks for; `None` for services that let `X-Amz-Expires` decide alone (S3, SigV4 itself).
    pub presigned_max_age: Option<Duration>,
}

impl<'a> Expectations<'a> {
    /// What API Gateway expects: service `execute-api`, normalized paths, signed tokens.
    pub fn api_gateway(now: SystemTime, region: &'a str) -> Expectations<'a> {
        Expectations {
            now,
            region,
            service: EXECUTE_API,
            normalize_uri_path: true,
            presigned_token_signed: true,
            presigned_max_age: Some(API_GATEWAY_PRESIGNED_MAX_AGE),
        }
    }
}

/// The secret behind an access key id, and whatever the caller wants back on success.
pub struct SigningSecret<T> {
    /// The secret access key.
    pub secret_access_key: String,
    /// The session token the credentials were issued with, if any.
    pub session_token: Option<String>,
    /// Handed back in [`VerifiedCaller::owner`].
    pub owner: T,
}

/// What a key lookup found.
pub enum KeyLookup<T> {
    /// Live credentials.
    Live(SigningSecret<T>),
    /// Credentials that existed but have expired.
    Expired,
    /// No such access key.
    Unknown,
}

/// A request whose signature checked out.
#[derive(Debug, Clone)]
pub struct VerifiedCaller<T> {
    /// The access key id it was signed with.
    pub access_key_id: String,
    /// Where the signature was.
    pub auth_type: AuthType,
    /// What the key lookup returned with the secret.
    pub owner: T,
}

/// Why a request was refused. `Display` is the message API Gateway answers with (its
/// `{"message": ...}` body); none of them contains a secret or a session token.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SigV4Error {
    /// Neither an `Authorization` header nor presigned query parameters.
    #[error("Missing Authentication Token")]
    MissingAuthenticationToken,
    /// A malformed or incomplete `Authorization` header or presigned query.
    #[error("{0}")]
    IncompleteSignature(String),
    /// Both an `Authorization` header and presigned query parameters.
    #[error(
        "Only one auth mechanism allowed; only the X-Amz-Algorithm query parameter, Signature \
         query string parameter or the Authorization header should be specified"
    )]
    ConflictingAuthentication,
    /// A malformed credential, or one scoped to the wrong date, region, service or terminator.
    #[error("{0}")]
    InvalidCredentialScope(String),
    /// A header that must be signed (`host`, `x-amz-date`) is not in `SignedHeaders`.
    #[error("'{0}' must be a 'SignedHeader' in the AWS Authorization.")]
    HeaderNotSigned(&'static str),
    /// `X-Amz-Date` or `X-Amz-Expires` is not in the required format.
    #[error("{0}")]
    InvalidDate(String),
    /// `X-Amz-Date` is more than five minutes from the gateway's clock.
    #[error("{0}")]
    SignatureExpired(String),
    /// A presigned URL used after `X-Amz-Date + X-Amz-Expires`.
    #[error("Request has expired")]
    RequestExpired,
    /// Unknown access key, or a missing or wrong session token.
    #[error("The security token included in the request is invalid.")]
    InvalidToken,
    /// Credentials that have expired.
    #[error("The security token included in the request is expired")]
    ExpiredToken,
    /// The recomputed signature differs (also: a wrong `X-Amz-Content-Sha256`).
    #[error(
        "The request signature we calculated does not match the signature you provided. Check \
         your AWS Secret Access Key and signing method. Consult the service documentation for \
         details."
    )]
    SignatureMismatch,
}

impl SigV4Error {
    /// The `x-amzn-ErrorType` API Gateway sends with this error.
    pub fn error_type(&self) -> &'static str {
        match self {
            SigV4Error::MissingAuthenticationToken => "MissingAuthenticationTokenException",
            SigV4Error::IncompleteSignature(_)
            | SigV4Error::ConflictingAuthentication
            | SigV4Error::HeaderNotSigned(_) => "IncompleteSignatureException",
            SigV4Error::InvalidToken => "UnrecognizedClientException",
            SigV4Error::ExpiredToken => "ExpiredTokenException",
            SigV4Error::InvalidCredentialScope(_)
            | SigV4Error::InvalidDate(_)
            | SigV4Error::SignatureExpired(_)
            | SigV4Error::RequestExpired
            | SigV4Error::SignatureMismatch => "InvalidSignatureException",
        }
    }
}

/// Verifies `request` like API Gateway: parses the signature (header or presigned form),
/// checks scope, signed headers and time, looks the access key up with `lookup`, checks the
/// session token and `X-Amz-Content-Sha256`, then recomputes the signature with `aws-sigv4`.
pub fn verify<T>(
    request: &SignedRequest<'_>,
    expect: &Expectations<'_>,
    lookup: impl FnOnce(&str) -> KeyLookup<T>,
) -> Result<VerifiedCaller<T>, SigV4Error> {
    let (path, query) = split_target(request.target);
    let parts = parse_signature(request.headers, query)?;
    let scope = parse_credential(&parts.credential)?;
    let signed_at = parse_amz_date(&parts.amz_date)?;
    check_scope(&scope, &parts.amz_date, expect)?;
    let signed_headers = parse_signed_headers(&parts.signed_headers)?;
    check_required_headers_signed(&signed_headers, parts.auth_type)?;
    check_time(signed_at, parts.expires, expect)?;

    let secret = match lookup(scope.access_key_id) {
        KeyLookup::Live(secret) => secret,
        KeyLookup::Expired => return Err(SigV4Error::ExpiredToken),
        KeyLookup::Unknown => return Err(SigV4Error::InvalidToken),
    };
    check_session_token(parts.session_token.as_deref(), secret.session_token.as_deref())?;
    // HTTP servers hand over origin-form (`/…`) or asterisk-form targets only; any other target
    // cannot be recomputed (aws-sigv4 panics on it), so it can never carry a valid signature.
    if !request.target.starts_with(['/', '*']) {
        return Err(SigV4Error::SignatureMismatch);
    }
    let payload_hash = payload_hash(request.headers, request.body)?;

    let token_signed = match parts.auth_type {
        AuthType::Header => signed_headers.contains(&X_AMZ_SECURITY_TOKEN),
        AuthType::Query => expect.presigned_token_signed,
    };
    let recompute = Recompute {
        method: request.method,
        uri: signable_uri(path, &parts.unsigned_query),
        headers: request.headers,
        signed_headers: &signed_headers,
        payload_hash: &payload_hash,
        auth_type: parts.auth_type,
        expires: parts.expires,
        signed_at,
        region: scope.region,
        service: scope.service,
        access_key_id: scope.access_key_id,
        secret_access_key: &secret.secret_access_key,
        session_token: parts.session_token.as_deref().filter(|_| token_signed),
        content_sha256_signed: signed_headers.contains(&X_AMZ_CONTENT_SHA256),
        normalize_uri_path: expect.normalize_uri_path,
    };
    let expected = recompute.signature()?;
    aws_lc_rs::constant_time::verify_slices_are_equal(expected.as_bytes(), parts.signature.as_bytes())
        .map_err(|_| SigV4Error::SignatureMismatch)?;

    Ok(VerifiedCaller {
        access_key_id: scope.access_key_id.to_owned(),
        auth_type: parts.auth_type,
        owner: secret.owner,
    })
}

/// The signature fields, from whichever form the request used (no `Debug`: it holds the
/// session token).
struct SignatureParts {
    auth_type: AuthType,
    credential: String,
    signed_headers: String,
    signature: String,
    amz_date: String,
    /// `X-Amz-Expires` of a presigned request.
    expires: Option<u64>,
    session_token: Option<String>,
    /// The query without the presigning parameters (the whole query for header auth).
    unsigned_query: String,
}

fn split_target(target: &str) -> (&str, &str) {
    target.split_once('?').unwrap_or((target, ""))
}

fn parse_signature(headers: &HeaderMap, query: &str) -> Result<SignatureParts, SigV4Error> {
    let (presign, unsigned_query) = split_presign_params(query)?;
    let authorization = single_header(headers, http::header::AUTHORIZATION.as_str())?;
    match (authorization, presign.is_empty()) {
        (None, true) => Err(SigV4Error::MissingAuthenticationToken),
        (Some(_), false) => Err(SigV4Error::ConflictingAuthentication),
        (Some(value), true) => parse_authorization_header(value, headers, unsigned_query),
        (None, false) => parse_presigned(presign, unsigned_query),
    }
}

/// One header's value as text; `None` when absent, an error when repeated or not text.
fn single_header<'h>(headers: &'h HeaderMap, name: &str) -> Result<Option<&'h str>, SigV4Error> {
    let mut values = headers.get_all(name).iter();
    let Some(first) = values.next() else {
        return Ok(None);
    };
    if values.next().is_some() {
        return Err(SigV4Error::IncompleteSignature(format!(
            "Only one '{name}' header is allowed."
        )));
    }
    first
        .to_str()
        .map(Some)
        .map_err(|_| SigV4Error::IncompleteSignature(format!("Invalid '{name}' header.")))
}

/// Presigning parameters found in a query, by name, decoded.
type PresignParams = Vec<(&'static str, String)>;

/// Splits the query into the presigning parameters and the rest (raw segments).
fn split_presign_params(query: &str) -> Result<(PresignParams, String), SigV4Error> {
    let mut presign = PresignParams::new();
    let mut rest: Vec<&str> = Vec::new();
    for segment in query.split('&') {
        let Some((name, value)) = presign_param(segment) else {
            rest.push(segment);
            continue;
        };
        if presign.iter().any(|(seen, _)| *seen == name) {
            return Err(SigV4Error::IncompleteSignature(format!(
                "Only one '{name}' query parameter is allowed."
            )));
        }
        presign.push((name, value));
    }
    Ok((presign, rest.join("&")))
}

/// The query without the presigning parameters, e.g. to forward a verified request.
pub fn strip_presign_params(query: &str) -> String {
    query
        .split('&')
        .filter(|segment| presign_param(segment).is_none())
        .collect::<Vec<_>>()
        .join("&")
}

/// One `name=value` query segment, decoded, when `name` is one of [`PRESIGN_PARAMS`].
fn presign_param(segment: &str) -> Option<(&'static str, String)> {
    let (key, value) = url::form_urlencoded::parse(segment.as_bytes()).next()?;
    let name = PRESIGN_PARAMS.into_iter().find(|p| *p == key.as_ref())?;
    Some((name, value.into_owned()))
}

fn parse_authorization_header(
    value: &str,
    headers: &HeaderMap,
    unsigned_query: String,
) -> Result<SignatureParts, SigV4Error> {
    if value.len() > MAX_AUTHORIZATION_LEN {
        return Err(SigV4Error::IncompleteSignature(
            "Authorization header is too long.".to_owned(),
        ));
    }
    let fields = value
        .strip_prefix(ALGORITHM)
        .and_then(|rest| rest.strip_prefix(' '))
        .map(parse_authorization_fields)
        .transpose()?
        .unwrap_or_default();
    let amz_date = single_header(headers, X_AMZ_DATE)?;
    let (Some(credential), Some(signed_headers), Some(signature), Some(amz_date)) = (
        fields.credential,
        fields.signed_headers,
        fields.signature,
        amz_date,
    ) else {
        return Err(SigV4Error::IncompleteSignature(missing_authorization_parts(
            &fields_present(value),
            amz_date.is_some(),
        )));
    };
    let session_token = single_header(headers, X_AMZ_SECURITY_TOKEN)?;
    Ok(SignatureParts {
        auth_type: AuthType::Header,
        credential: credential.to_owned(),
        signed_headers: signed_headers.to_owned(),
        signature: signature.to_owned(),
        amz_date: amz_date.to_owned(),
        expires: None,
        session_token: bounded_token(session_token)?,
        unsigned_query,
    })
}

/// The `Credential=`, `SignedHeaders=` and `Signature=` fields of an `Authorization` header.
#[derive(Debug, Default)]
struct AuthorizationFields<'a> {
    credential: Option<&'a str>,
    signed_headers: Option<&'a str>,
    signature: Option<&'a str>,
}

fn parse_authorization_fields(rest: &str) -> Result<AuthorizationFields<'_>, SigV4Error> {
    let mut fields = AuthorizationFields::default();
    for pair in rest.split(',').map(|p| p.trim_matches(' ')) {
        let Some((key, value)) = pair.split_once('=') else {
            return Err(SigV4Error::IncompleteSignature(
                "A parameter is not a valid key=value pair (missing equal-sign) in Authorization \
                 header."
                    .to_owned(),
            ));
        };
        let slot = match key {
            "Credential" => &mut fields.credential,
            "SignedHeaders" => &mut fields.signed_headers,
            "Signature" => &mut fields.signature,
            _ => {
                return Err(SigV4Error::IncompleteSignature(
                    "Authorization header has an unknown parameter; only 'Credential', \
                     'SignedHeaders' and 'Signature' are allowed."
                        .to_owned(),
                ));
            }
        };
        if slot.replace(value).is_some() {
            return Err(SigV4Error::IncompleteSignature(format!(
                "Authorization header has more than one '{key}' parameter."
            )));
        }
    }
    Ok(fields)
}

/// Which fields a (possibly non-SigV4) `Authorization` value carries, for the error message.
fn fields_present(value: &str) -> AuthorizationFields<'_> {
    value
        .strip_prefix(ALGORITHM)
        .and_then(|rest| rest.strip_prefix(' '))
        .and_then(|rest| parse_authorization_fields(rest).ok())
        .unwrap_or_default()
}

/// API Gateway's message for an incomplete `Authorization` header: one sentence per missing
/// part. Unlike API Gateway we do not echo the header back: it may be a bearer token.
fn missing_authorization_parts(fields: &AuthorizationFields<'_>, has_date: bool) -> String {
    let mut sentences = Vec::new();
    for (name, present) in [
        ("Credential", fields.credential.is_some()),
        ("Signature", fields.signature.is_some()),
        ("SignedHeaders", fields.signed_headers.is_some()),
    ] {
        if !present {
            sentences.push(format!("Authorization header requires '{name}' parameter."));
        }
    }
    if !has_date {
        sentences.push(
            "Authorization header requires existence of either a 'X-Amz-Date' or a 'Date' \
             header."
                .to_owned(),
        );
    }
    sentences.join(" ")
}

fn parse_presigned(mut presign: PresignParams, unsigned_query: String) -> Result<SignatureParts, SigV4Error> {
    let mut take = |name: &str| {
        presign
            .iter()
            .position(|(n, _)| *n == name)
            .map(|i| presign.swap_remove(i).1)
    };
    let session_token = take(Q_SECURITY_TOKEN);
    let expires = take(Q_EXPIRES);
    let (Some(algorithm), Some(credential), Some(signature), Some(amz_date), Some(signed_headers)) = (
        take(Q_ALGORITHM),
        take(Q_CREDENTIAL),
        take(Q_SIGNATURE),
        take(Q_DATE),
        take(Q_SIGNED_HEADERS),
    ) else {
        return Err(SigV4Error::IncompleteSignature(
            "AWS query-string parameters must include 'X-Amz-Algorithm', 'X-Amz-Credential', \
             'X-Amz-Signature', 'X-Amz-Date', 'X-Amz-SignedHeaders'. Re-examine the query-string \
             parameters."
                .to_owned(),
        ));
    };
    if algorithm != ALGORITHM {
        return Err(SigV4Error::IncompleteSignature(format!(
            "X-Amz-Algorithm only supports \"{ALGORITHM}\"."
        )));
    }
    let Some(expires) = expires else {
        return Err(SigV4Error::IncompleteSignature(
            "AWS query-string parameters must include 'X-Amz-Expires' for a presigned request.".to_owned(),
        ));
    };
    Ok(SignatureParts {
        auth_type: AuthType::Query,
        credential,
        signed_headers,
        signature,
        amz_date,
        expires: Some(parse_expires(&expires)?),
        session_token: bounded_token(session_token.as_deref())?,
        unsigned_query,
    })
}

fn parse_expires(value: &str) -> Result<u64, SigV4Error> {
    let seconds = if value.is_empty() || value.len() > 7 || !value.bytes().all(|b| b.is_ascii_digit()) {
        None
    } else {
        value.parse::<u64>().ok()
    };
    match seconds {
        None => Err(SigV4Error::InvalidDate(
            "X-Amz-Expires should be a number".to_owned(),
        )),
        Some(s) if s == 0 || s > MAX_PRESIGNED_EXPIRES_SECS => Err(SigV4Error::InvalidDate(format!(
            "X-Amz-Expires must be between 1 and {MAX_PRESIGNED_EXPIRES_SECS} seconds (one week)"
        ))),
        Some(s) => Ok(s),
    }
}

fn bounded_token(token: Option<&str>) -> Result<Option<String>, SigV4Error> {
    match token {
        Some(t) if t.len() > MAX_SESSION_TOKEN_LEN => Err(SigV4Error::InvalidToken),
        other => Ok(other.map(str::to_owned)),
    }
}

/// `AKID/YYYYMMDD/region/service/aws4_request`.
#[derive(Debug)]
struct CredentialScope<'a> {
    access_key_id: &'a str,
    date: &'a str,
    region: &'a str,
    service: &'a str,
    terminator: &'a str,
}

fn parse_credential(credential: &str) -> Result<CredentialScope<'_>, SigV4Error> {
    let malformed = || {
        SigV4Error::InvalidCredentialScope(format!(
            "Credential must have exactly 5 slash-delimited elements, e.g. \
             keyid/date/region/service/term, got '{}'",
            quote_untrusted(credential)
        ))
    };
    let mut parts = credential.split('/');
    let (Some(access_key_id), Some(date), Some(region), Some(service), Some(terminator), None) = (
        parts.next(),
        parts.next(),
        parts.next(),
        parts.next(),
        parts.next(),
        parts.next(),
    ) else {
        return Err(malformed());
    };
    let key_ok = !access_key_id.is_empty()
        && access_key_id.len() <= MAX_ACCESS_KEY_ID_LEN
        && access_key_id.bytes().all(|b| b.is_ascii_alphanumeric());
    if !key_ok || date.is_empty() || region.is_empty() || service.is_empty() {
        return Err(malformed());
    }
    Ok(CredentialScope {
        access_key_id,
        date,
        region,
        service,
        terminator,
    })
}

fn parse_amz_date(value: &str) -> Result<SystemTime, SigV4Error> {
    time::PrimitiveDateTime::parse(value, AMZ_DATE_FORMAT)
        .ok()
        .filter(|_| value.len() == 16)
        .map(|t| SystemTime::from(t.assume_utc()))
        .ok_or_else(|| {
            SigV4Error::InvalidDate(
                "X-Amz-Date must be in the ISO8601 Long Format \"yyyyMMdd'T'HHmmss'Z'\"".to_owned(),
            )
        })
}

fn format_amz_date(t: SystemTime) -> String {
    OffsetDateTime::from(t)
        .format(AMZ_DATE_FORMAT)
        .unwrap_or_else(|_| "(unrepresentable time)".to_owned())
}

fn check_scope(
    scope: &CredentialScope<'_>,
    amz_date: &str,
    expect: &Expectations<'_>,
) -> Result<(), SigV4Error> {
    if scope.terminator != TERMINATOR {
        return Err(SigV4Error::InvalidCredentialScope(format!(
            "Credential should be scoped with a valid terminator: '{TERMINATOR}', not '{}'. ",
            quote_untrusted(scope.terminator)
        )));
    }
    if scope.region != expect.region {
        return Err(SigV4Error::InvalidCredentialScope(format!(
            "Credential should be scoped to a valid region, not '{}'. ",
            quote_untrusted(scope.region)
        )));
    }
    if scope.service != expect.service {
        return Err(SigV4Error::InvalidCredentialScope(format!(
            "Credential should be scoped to correct service: '{}'. ",
            expect.service
        )));
    }
    let day = amz_date.get(..8).unwrap_or(amz_date);
    if scope.date != day {
        return Err(SigV4Error::InvalidCredentialScope(format!(
            "Date in Credential scope does not match YYYYMMDD from ISO-8601 version of date from \
             HTTP: '{}' != '{}', from '{}'.",
            quote_untrusted(scope.date),
            quote_untrusted(day),
            quote_untrusted(amz_date)
        )));
    }
    Ok(())
}

/// `SignedHeaders` must be lowercase header names, sorted, without repeats, as every SDK sends
/// them; anything else could not be reproduced, so it is refused with a clear message.
fn parse_signed_headers(value: &str) -> Result<Vec<&str>, SigV4Error> {
    let names: Vec<&str> = value.split(';').collect();
    let valid_name = |n: &&str| {
        !n.is_empty()
            && n.bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b"-_.!#$%&'*+^`|~".contains(&b))
    };
    let sorted = names.windows(2).all(|w| w.first() < w.last());
    if names.len() > MAX_SIGNED_HEADERS || !names.iter().all(valid_name) || !sorted {
        return Err(SigV4Error::IncompleteSignature(
            "SignedHeaders must be a ';'-separated list of lowercase header names, sorted and \
             without repeats."
                .to_owned(),
        ));
    }
    Ok(names)
}

fn check_required_headers_signed(signed_headers: &[&str], auth_type: AuthType) -> Result<(), SigV4Error> {
    if !signed_headers.contains(&HOST) {
        return Err(SigV4Error::HeaderNotSigned("Host"));
    }
    // A presigned request carries its date in the (always signed) query instead.
    if auth_type == AuthType::Header && !signed_headers.contains(&X_AMZ_DATE) {
        return Err(SigV4Error::HeaderNotSigned("X-Amz-Date"));
    }
    Ok(())
}

/// Header signatures must be within five minutes of now; presigned ones may not be dated more
/// than five minutes ahead and are valid for `X-Amz-Expires` seconds.
fn check_time(
    signed_at: SystemTime,
    expires: Option<u64>,
    expect: &Expectations<'_>,
) -> Result<(), SigV4Error> {
    let now = truncate_to_seconds(expect.now);
    if signed_at > now + MAX_CLOCK_SKEW {
        return Err(SigV4Error::SignatureExpired(format!(
            "Signature not yet current: {} is still later than {} ({} + 5 min.)",
            format_amz_date(signed_at),
            format_amz_date(now + MAX_CLOCK_SKEW),
            format_amz_date(now),
        )));
    }
    // Header signatures live five minutes; presigned ones `X-Amz-Expires`, capped where the
    // service caps them (API Gateway: five minutes, with the header form's message).
    let max_age = match expires {
        Some(seconds) if now > signed_at + Duration::from_secs(seconds) => {
            return Err(SigV4Error::RequestExpired);
        }
        Some(_) => expect.presigned_max_age,
        None => Some(MAX_CLOCK_SKEW),
    };
    match max_age {
        Some(max_age) if signed_at + max_age < now => Err(SigV4Error::SignatureExpired(format!(
            "Signature expired: {} is now earlier than {} ({} - {} min.)",
            format_amz_date(signed_at),
            format_amz_date(now - max_age),
            format_amz_date(now),
            max_age.as_secs() / 60,
        ))),
        _ => Ok(()),
    }
}

fn truncate_to_seconds(t: SystemTime) -> SystemTime {
    match t.duration_since(SystemTime::UNIX_EPOCH) {
        Ok(d) => SystemTime::UNIX_EPOCH + Duration::from_secs(d.as_secs()),
        Err(_) => t,
    }
}

/// The request's session token must be exactly the one the credentials were issued with.
fn check_session_token(sent: Option<&str>, issued: Option<&str>) -> Result<(), SigV4Error> {
    match (sent, issued) {
        (None, None) => Ok(()),
        (Some(sent), Some(issued))
            if aws_lc_rs::constant_time::verify_slices_are_equal(sent.as_bytes(), issued.as_bytes())
                .is_ok() =>
        {
            Ok(())
        }
        _ => Err(SigV4Error::InvalidToken),
    }
}

/// The payload hash of the canonical request: `X-Amz-Content-Sha256` when sent (it must then
/// be the body's hash or `UNSIGNED-PAYLOAD`), the body's hash otherwise.
fn payload_hash(headers: &HeaderMap, body: &[u8]) -> Result<String, SigV4Error> {
    let computed = sha256_hex(body);
    match single_header(headers, X_AMZ_CONTENT_SHA256)? {
        None => Ok(computed),
        Some(sent) if sent == UNSIGNED_PAYLOAD || sent == computed => Ok(sent.to_owned()),
        Some(_) => Err(SigV4Error::SignatureMismatch),
    }
}

/// Lowercase hex SHA-256, as SigV4 writes payload hashes.
pub fn sha256_hex(data: &[u8]) -> String {
    hex::encode(aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, data))
}

/// The URI handed to `aws-sigv4`: the path percent-encoded once (see the module docs) and the
/// query with the bytes a `Uri` refuses percent-encoded.
fn signable_uri(path: &str, query: &str) -> String {
    let path = if path.is_empty() { "/" } else { path };
    let mut uri = percent_encode(path.as_bytes(), PATH_ENCODE_SET).to_string();
    if !query.is_empty() {
        uri.push('?');
        uri.extend(percent_encode(query.as_bytes(), QUERY_ENCODE_SET));
    }
    uri
}

/// Everything needed to recompute one signature.
struct Recompute<'a> {
    method: &'a str,
    uri: String,
    headers: &'a HeaderMap,
    signed_headers: &'a [&'a str],
    payload_hash: &'a str,
    auth_type: AuthType,
    expires: Option<u64>,
    signed_at: SystemTime,
    region: &'a str,
    service: &'a str,
    access_key_id: &'a str,
    secret_access_key: &'a str,
    /// The token, only when it is part of what was signed.
    session_token: Option<&'a str>,
    content_sha256_signed: bool,
    normalize_uri_path: bool,
}

impl Recompute<'_> {
    fn signature(&self) -> Result<String, SigV4Error> {
        let headers = self.signed_header_values()?;
        let signable = SignableRequest::new(
            self.method,
            Cow::Borrowed(self.uri.as_str()),
            headers.into_iter(),
            SignableBody::Precomputed(self.payload_hash.to_owned()),
        )
        .map_err(|_| SigV4Error::SignatureMismatch)?;
        let identity: SigningIdentity = Credentials::new(
            self.access_key_id,
            self.secret_access_key,
            self.session_token.map(str::to_owned),
            None,
            "credbroker-gateway",
        )
        .into();
        let params = aws_sigv4::sign::v4::SigningParams::builder()
            .identity(&identity)
            .region(self.region)
            .name(self.service)
            .time(self.signed_at)
            .settings(self.settings())
            .build()
            .map_err(|_| SigV4Error::SignatureMismatch)?
            .into();
        let output = sign(signable, &params).map_err(|_| SigV4Error::SignatureMismatch)?;
        Ok(output.signature().to_owned())
    }

    /// Exactly the client's signed headers, every value of each (a missing one cannot match).
    fn signed_header_values(&self) -> Result<Vec<(&str, &str)>, SigV4Error> {
        let mut pairs = Vec::with_capacity(self.signed_headers.len());
        for name in self.signed_headers {
            let mut any = false;
            for value in self.headers.get_all(*name) {
                let value = value.to_str().map_err(|_| SigV4Error::SignatureMismatch)?;
                pairs.push((*name, value));
                any = true;
            }
            if !any {
                return Err(SigV4Error::SignatureMismatch);
            }
        }
        Ok(pairs)
    }

    /// Settings that make `aws-sigv4` rebuild what the client signed: it adds `x-amz-date`,
    /// the session token and `x-amz-content-sha256` itself, so those follow what the client
    /// signed, and nothing is excluded since only signed headers are passed in.
    fn settings(&self) -> SigningSettings {
        let mut settings = SigningSettings::default();
        settings.percent_encoding_mode = PercentEncodingMode::Single;
        settings.uri_path_normalization_mode = self.normalize_uri_path.into();
        settings.excluded_headers = None;
        settings.session_token_mode = SessionTokenMode::Include;
        match (self.auth_type, self.expires) {
            (AuthType::Query, Some(seconds)) => {
                settings.signature_location = SignatureLocation::QueryParams;
                settings.expires_in = Some(Duration::from_secs(seconds));
                settings.payload_checksum_kind = PayloadChecksumKind::NoHeader;
            }
            _ => {
                settings.signature_location = SignatureLocation::Headers;
                settings.payload_checksum_kind = if self.content_sha256_signed {
                    PayloadChecksumKind::XAmzSha256
                } else {
                    PayloadChecksumKind::NoHeader
                };
            }
        }
        settings
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::HeaderValue;

    const AKID: &str = "ASIAEXAMPLEKEY000001";
    const SECRET: &str = "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY";
    const TOKEN: &str = "session-token-value";
    const REGION: &str = "us-east-1";
    /// 2015-08-30T12:36:00Z, the conformance suite's time.
    const SIGNED_AT_SECS: u64 = 1_440_938_160;

    fn signed_at() -> SystemTime {
        SystemTime::UNIX_EPOCH + Duration::from_secs(SIGNED_AT_SECS)
    }

    /// How a test client signs, through `aws-sigv4` like an SDK.
    struct Client {
        location: SignatureLocation,
        region: &'static str,
        service: &'static str,
        token: Option<&'static str>,
        body: SignableBody<'static>,
        checksum: PayloadChecksumKind,
        /// `X-Amz-Expires` of the query form.
        expires_in: Duration,
    }

    impl Client {
        fn header() -> Client {
            Client {
                location: SignatureLocation::Headers,
                region: REGION,
                service: EXECUTE_API,
                token: Some(TOKEN),
                body: SignableBody::Bytes(b"{\"a\":1}"),
                checksum: PayloadChecksumKind::NoHeader,
                expires_in: Duration::from_secs(60),
            }
        }

        fn query() -> Client {
            Client {
                location: SignatureLocation::QueryParams,
                ..Client::header()
            }
        }

        fn sign(&self) -> http::Request<Vec<u8>> {
            let mut request = http::Request::builder()
                .method("POST")
                .uri("https://gw.example/api/echo?b=2&a=1")
                .header("host", "gw.example")
                .header("content-type", "application/json")
                .body(b"{\"a\":1}".to_vec())
                .expect("a valid request");
            let identity: SigningIdentity =
                Credentials::new(AKID, SECRET, self.token.map(str::to_owned), None, "test").into();
            let mut settings = SigningSettings::default();
            settings.signature_location = self.location;
            settings.expires_in = Some(self.expires_in);
            settings.payload_checksum_kind = self.checksum;
            let params = aws_sigv4::sign::v4::SigningParams::builder()
                .identity(&identity)
                .region(self.region)
                .name(self.service)
                .time(signed_at())
                .settings(settings)
                .build()
                .expect("complete params")
                .into();
            let headers: Vec<(String, String)> = request
                .headers()
                .iter()
                .map(|(n, v)| (n.to_string(), v.to_str().unwrap_or_default().to_owned()))
                .collect();
            let signable = SignableRequest::new(
                "POST",
                request.uri().to_string(),
                headers.iter().map(|(n, v)| (n.as_str(), v.as_str())),
                self.body.clone(),
            )
            .expect("signable");
            let (instructions, _) = sign(signable, &params).expect("signs").into_parts();
            instructions.apply_to_request_http1x(&mut request);
            request
        }
    }

    fn lookup_live(access_key_id: &str) -> KeyLookup<&'static str> {
        if access_key_id == AKID {
            KeyLookup::Live(SigningSecret {
                secret_access_key: SECRET.to_owned(),
                session_token: Some(TOKEN.to_owned()),
                owner: "owner",
            })
        } else {
            KeyLookup::Unknown
        }
    }

    fn verify_at(
        request: &http::Request<Vec<u8>>,
        now: SystemTime,
        lookup: impl FnOnce(&str) -> KeyLookup<&'static str>,
    ) -> Result<VerifiedCaller<&'static str>, SigV4Error> {
        verify_expecting(request, &Expectations::api_gateway(now, REGION), lookup)
    }

    fn verify_expecting(
        request: &http::Request<Vec<u8>>,
        expectations: &Expectations,
        lookup: impl FnOnce(&str) -> KeyLookup<&'static str>,
    ) -> Result<VerifiedCaller<&'static str>, SigV4Error> {
        let target = request.uri().path_and_query().map_or("/", |pq| pq.as_str());
        let signed = SignedRequest {
            method: request.method().as_str(),
            target,
            headers: request.headers(),
            body: request.body(),
        };
        verify(&signed, expectations, lookup)
    }

    fn verify_now(request: &http::Request<Vec<u8>>) -> Result<VerifiedCaller<&'static str>, SigV4Error> {
        verify_at(request, signed_at(), lookup_live)
    }

    fn authorization(request: &http::Request<Vec<u8>>) -> String {
        request.headers()["authorization"]
            .to_str()
            .unwrap_or_default()
            .to_owned()
    }

    fn set_header(request: &mut http::Request<Vec<u8>>, name: &'static str, value: &str) {
        let value = HeaderValue::from_str(value).expect("a valid value");
        request.headers_mut().insert(name, value);
    }

    #[test]
    fn accepts_header_and_presigned_signatures() {
        let caller = verify_now(&Client::header().sign()).expect("header form verifies");
        assert_eq!(caller.auth_type, AuthType::Header);
        assert_eq!(caller.access_key_id, AKID);
        assert_eq!(caller.owner, "owner");
        let caller = verify_now(&Client::query().sign()).expect("query form verifies");
        assert_eq!(caller.auth_type, AuthType::Query);
    }

    #[test]
    fn accepts_a_signed_content_hash_and_unsigned_payload() {
        let client = Client {
            checksum: PayloadChecksumKind::XAmzSha256,
            ..Client::header()
        };
        assert!(verify_now(&client.sign()).is_ok());
        let client = Client {
            checksum: PayloadChecksumKind::XAmzSha256,
            body: SignableBody::UnsignedPayload,
            ..Client::header()
        };
        let request = client.sign();
        assert_eq!(request.headers()[X_AMZ_CONTENT_SHA256], UNSIGNED_PAYLOAD);
        assert!(verify_now(&request).is_ok());
    }

    #[test]
    fn a_content_hash_that_is_not_the_body_s_is_a_mismatch() {
        let client = Client {
            checksum: PayloadChecksumKind::XAmzSha256,
            body: SignableBody::Precomputed(sha256_hex(b"another body")),
            ..Client::header()
        };
        assert_eq!(
            verify_now(&client.sign()).unwrap_err(),
            SigV4Error::SignatureMismatch
        );
    }

    #[test]
    fn no_signature_at_all_is_a_missing_token() {
        let mut request = Client::header().sign();
        request.headers_mut().remove(http::header::AUTHORIZATION);
        assert_eq!(
            verify_now(&request).unwrap_err().to_string(),
            "Missing Authentication Token"
        );
    }

    #[test]
    fn a_bearer_token_gets_the_incomplete_header_message_without_echo() {
        let mut request = Client::header().sign();
        set_header(&mut request, "authorization", "Bearer eyJhbGciOi.secret.token");
        request.headers_mut().remove(X_AMZ_DATE);
        let error = verify_now(&request).unwrap_err();
        assert_eq!(error.error_type(), "IncompleteSignatureException");
        assert_eq!(
            error.to_string(),
            "Authorization header requires 'Credential' parameter. Authorization header \
             requires 'Signature' parameter. Authorization header requires 'SignedHeaders' \
             parameter. Authorization header requires existence of either a 'X-Amz-Date' or a \
             'Date' header."
        );
    }

    #[test]
    fn a_header_without_signature_names_only_what_is_missing() {
        let mut request = Client::header().sign();
        let value = authorization(&request);
        let truncated = value.split(", Signature=").next().unwrap_or_default().to_owned();
        set_header(&mut request, "authorization", &truncated);
        assert_eq!(
            verify_now(&request).unwrap_err().to_string(),
            "Authorization header requires 'Signature' parameter."
        );
    }

    #[test]
    fn header_and_query_signatures_together_are_refused() {
        let mut request = Client::query().sign();
        set_header(&mut request, "authorization", "AWS4-HMAC-SHA256 Credential=x");
        assert_eq!(
            verify_now(&request).unwrap_err(),
            SigV4Error::ConflictingAuthentication
        );
    }

    #[test]
    fn an_incomplete_presigned_query_is_refused() {
        let request = Client::query().sign();
        let uri = request.uri().to_string();
        let without_signature = strip_param(&uri, Q_SIGNATURE);
        let mut request = request;
        *request.uri_mut() = without_signature.parse().expect("a valid uri");
        assert!(
            verify_now(&request)
                .unwrap_err()
                .to_string()
                .starts_with("AWS query-string parameters must include")
        );
    }

    fn strip_param(uri: &str, name: &str) -> String {
        let (path, query) = uri.split_once('?').unwrap_or((uri, ""));
        let kept: Vec<&str> = query
            .split('&')
            .filter(|segment| !segment.starts_with(&format!("{name}=")))
            .collect();
        format!("{path}?{}", kept.join("&"))
    }

    #[test]
    fn wrong_region_and_service_get_scope_messages() {
        let client = Client {
            region: "eu-west-1",
            ..Client::header()
        };
        assert_eq!(
            verify_now(&client.sign()).unwrap_err().to_string(),
            "Credential should be scoped to a valid region, not 'eu-west-1'. "
        );
        let client = Client {
            service: "s3",
            ..Client::query()
        };
        assert_eq!(
            verify_now(&client.sign()).unwrap_err().to_string(),
            "Credential should be scoped to correct service: 'execute-api'. "
        );
    }

    #[test]
    fn malformed_credentials_and_scope_dates_are_refused() {
        let mut request = Client::header().sign();
        let value = authorization(&request);
        set_header(
            &mut request,
            "authorization",
            &value.replace("/20150830/", "/20150831/"),
        );
        assert_eq!(
            verify_now(&request).unwrap_err().to_string(),
            "Date in Credential scope does not match YYYYMMDD from ISO-8601 version of date from \
             HTTP: '20150831' != '20150830', from '20150830T123600Z'."
        );
        set_header(&mut request, "authorization", &value.replace("/aws4_request", ""));
        assert!(matches!(
            verify_now(&request).unwrap_err(),
            SigV4Error::InvalidCredentialScope(m) if m.starts_with("Credential must have exactly 5")
        ));
    }

    #[test]
    fn host_and_date_must_be_signed() {
        let mut request = Client::header().sign();
        let value = authorization(&request);
        let credential = format!("{AKID}/20150830/{REGION}/{EXECUTE_API}/aws4_request");
        let signature = "0".repeat(64);
        set_header(
            &mut request,
            "authorization",
            &format!("{ALGORITHM} Credential={credential}, SignedHeaders=x-amz-date, Signature={signature}"),
        );
        assert_eq!(
            verify_now(&request).unwrap_err().to_string(),
            "'Host' must be a 'SignedHeader' in the AWS Authorization."
        );
        set_header(
            &mut request,
            "authorization",
            &format!("{ALGORITHM} Credential={credential}, SignedHeaders=host, Signature={signature}"),
        );
        assert_eq!(
            verify_now(&request).unwrap_err(),
            SigV4Error::HeaderNotSigned("X-Amz-Date")
        );
        assert!(value.contains("SignedHeaders=content-type;host;x-amz-date;x-amz-security-token"));
    }

    #[test]
    fn unsorted_signed_headers_are_refused() {
        let mut request = Client::header().sign();
        let value = authorization(&request);
        let reordered = value.replace("content-type;host", "host;content-type");
        set_header(&mut request, "authorization", &reordered);
        assert!(matches!(
            verify_now(&request).unwrap_err(),
            SigV4Error::IncompleteSignature(m) if m.starts_with("SignedHeaders must be")
        ));
    }

    #[test]
    fn header_signatures_expire_after_five_minutes_either_way() {
        let request = Client::header().sign();
        let late = signed_at() + Duration::from_secs(10 * 60);
        assert_eq!(
            verify_at(&request, late, lookup_live).unwrap_err().to_string(),
            "Signature expired: 20150830T123600Z is now earlier than 20150830T124100Z \
             (20150830T124600Z - 5 min.)"
        );
        let early = signed_at() - Duration::from_secs(6 * 60);
        assert_eq!(
            verify_at(&request, early, lookup_live).unwrap_err().to_string(),
            "Signature not yet current: 20150830T123600Z is still later than 20150830T123500Z \
             (20150830T123000Z + 5 min.)"
        );
        let within = signed_at() + Duration::from_secs(4 * 60);
        assert!(verify_at(&request, within, lookup_live).is_ok());
    }

    #[test]
    fn presigned_urls_last_for_x_amz_expires() {
        let request = Client::query().sign();
        let within = signed_at() + Duration::from_secs(60);
        assert!(verify_at(&request, within, lookup_live).is_ok());
        let after = signed_at() + Duration::from_secs(61);
        assert_eq!(
            verify_at(&request, after, lookup_live).unwrap_err(),
            SigV4Error::RequestExpired
        );
    }

    #[test]
    fn api_gateway_refuses_presigned_urls_after_five_minutes_whatever_they_ask() {
        let request = Client {
            expires_in: Duration::from_secs(3600),
            ..Client::query()
        }
        .sign();
        let within = signed_at() + Duration::from_secs(5 * 60);
        assert!(verify_at(&request, within, lookup_live).is_ok());
        let after = signed_at() + Duration::from_secs(5 * 60 + 1);
        assert_eq!(
            verify_at(&request, after, lookup_live).unwrap_err().to_string(),
            "Signature expired: 20150830T123600Z is now earlier than 20150830T123601Z \
             (20150830T124101Z - 5 min.)"
        );
        // Where the service lets X-Amz-Expires decide (S3, plain SigV4), the hour holds.
        let uncapped = Expectations {
            presigned_max_age: None,
            ..Expectations::api_gateway(signed_at() + Duration::from_secs(3599), REGION)
        };
        assert!(verify_expecting(&request, &uncapped, lookup_live).is_ok());
    }

    #[test]
    fn bad_expires_values_are_refused() {
        for (value, message) in [
            ("abc", "X-Amz-Expires should be a number"),
            (
                "604801",
                "X-Amz-Expires must be between 1 and 604800 seconds (one week)",
            ),
        ] {
            let request = Client::query().sign();
            let uri = request
                .uri()
                .to_string()
                .replace("X-Amz-Expires=60", &format!("X-Amz-Expires={value}"));
            let mut request = request;
            *request.uri_mut() = uri.parse().expect("a valid uri");
            assert_eq!(verify_now(&request).unwrap_err().to_string(), message);
        }
    }

    #[test]
    fn unknown_and_expired_keys_are_told_apart() {
        let request = Client::header().sign();
        assert_eq!(
            verify_at(&request, signed_at(), |_| KeyLookup::Unknown)
                .unwrap_err()
                .to_string(),
            "The security token included in the request is invalid."
        );
        assert_eq!(
            verify_at(&request, signed_at(), |_| KeyLookup::Expired)
                .unwrap_err()
                .to_string(),
            "The security token included in the request is expired"
        );
    }

    #[test]
    fn a_missing_or_wrong_session_token_is_invalid() {
        let client = Client {
            token: None,
            ..Client::header()
        };
        assert_eq!(verify_now(&client.sign()).unwrap_err(), SigV4Error::InvalidToken);
        let mut request = Client::header().sign();
        set_header(&mut request, "x-amz-security-token", "another-token");
        assert_eq!(verify_now(&request).unwrap_err(), SigV4Error::InvalidToken);
    }

    #[test]
    fn a_wrong_secret_is_a_mismatch() {
        let request = Client::query().sign();
        let result = verify_at(&request, signed_at(), |_| {
            KeyLookup::Live(SigningSecret {
                secret_access_key: "another secret".to_owned(),
                session_token: Some(TOKEN.to_owned()),
                owner: "owner",
            })
        });
        assert_eq!(result.unwrap_err(), SigV4Error::SignatureMismatch);
    }

    #[test]
    fn strip_presign_params_keeps_other_parameters() {
        assert_eq!(
            strip_presign_params("a=1&X-Amz-Signature=ff&X-Amz-Security-Token=t&b=%20"),
            "a=1&b=%20"
        );
    }

    #[test]
    fn error_messages_never_contain_the_token() {
        let mut request = Client::header().sign();
        set_header(&mut request, "x-amz-security-token", "leaky-token");
        let error = verify_now(&request).unwrap_err();
        assert!(!format!("{error} {error:?}").contains("leaky-token"));
    }

    #[test]
    fn client_values_in_scope_messages_are_bounded_and_escaped() {
        let long_region = "r".repeat(3000);
        let credential = format!("AKID/20150830/{long_region}/execute-api/aws4_request");
        let scope = parse_credential(&credential).unwrap();
        let error = check_scope(
            &scope,
            "20150830T123600Z",
            &Expectations::api_gateway(SystemTime::now(), REGION),
        )
        .unwrap_err()
        .to_string();
        assert!(error.len() < 300, "{} bytes", error.len());
        let forged = parse_credential("AKID/2015\n\0/x").unwrap_err().to_string();
        let forged_newline = parse_credential("AKID/2015\n0830/x").unwrap_err().to_string();
        assert!(
            !forged.contains('\0') && !forged_newline.contains('\n'),
            "{forged_newline}"
        );
    }

    #[test]
    fn a_target_without_a_leading_slash_is_refused_not_a_panic() {
        let request = Client::header().sign();
        let signed = SignedRequest {
            method: request.method().as_str(),
            target: "x",
            headers: request.headers(),
            body: request.body(),
        };
        let result = verify(
            &signed,
            &Expectations::api_gateway(signed_at(), REGION),
            lookup_live,
        );
        assert_eq!(result.unwrap_err(), SigV4Error::SignatureMismatch);
    }
}
