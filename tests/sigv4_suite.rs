//! The gateway's SigV4 verifier against the official conformance vectors in
//! `tests/data/sigv4-test-suite/v4` (38 cases). For every case and both forms (Authorization
//! header, presigned query) the signed request must be ACCEPTED, and REJECTED as a signature
//! mismatch once one byte of the signature, of any signed header value, or of the body changes.
//!
//! Each case is verified with the settings its `context.json` names:
//! - `normalize: false` cases (S3-style paths) run with path normalization off;
//! - `omit_session_token: true` (`post-sts-header-after`): in header form `SignedHeaders` already
//!   says the token was not signed, so nothing changes there; in query form nothing in the URL
//!   says it, so that case runs with `presigned_token_signed: false`, the verifier's option for
//!   tokens appended after signing. The gateway itself always uses the standard (signed) mode.
//! - `get-space-*`, `get-utf8` and `get-vanilla-utf8-query` send raw spaces and UTF-8 in the
//!   request line, which no real HTTP server hands over; they pass unchanged because the verifier
//!   takes the request target as a string (see `sigv4`'s module docs for the one canonicalization
//!   step it does itself).
//!
//! The header-value tampering skips `x-amz-date` (changing it is a date/scope error, checked by
//! unit tests) and `x-amz-security-token` (a different token is an invalid token, also checked
//! by unit tests). Failures are collected and printed with the case name.

use std::path::{Path, PathBuf};
use std::time::SystemTime;

use credbroker::local::gateway::sigv4::{
    AuthType, Expectations, KeyLookup, SigV4Error, SignedRequest, SigningSecret, verify,
};
use http::{HeaderMap, HeaderName, HeaderValue};

const SUITE: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/data/sigv4-test-suite/v4");
const EXPECTED_CASES: usize = 38;

#[derive(serde::Deserialize)]
struct Context {
    credentials: ContextCredentials,
    normalize: bool,
    region: String,
    service: String,
    timestamp: String,
    #[serde(default)]
    omit_session_token: bool,
}

#[derive(serde::Deserialize)]
struct ContextCredentials {
    access_key_id: String,
    secret_access_key: String,
    token: Option<String>,
}

/// A request read from a `*.txt` file of the suite.
#[derive(Clone)]
struct RawRequest {
    method: String,
    target: String,
    headers: HeaderMap,
    body: Vec<u8>,
}

/// Parses the suite's HTTP/1.1 text: request line (the target may hold spaces), `Name:value`
/// lines, folded continuation lines (joined to the previous value), a blank line, the body.
fn parse_request(text: &str) -> Result<RawRequest, String> {
    let text = text.replace("\r\n", "\n");
    let (head, body) = text.split_once("\n\n").unwrap_or((text.as_str(), ""));
    let mut lines = head.lines();
    let request_line = lines.next().ok_or("empty request")?;
    let (method, rest) = request_line.split_once(' ').ok_or("no method")?;
    let (target, _version) = rest.rsplit_once(' ').ok_or("no HTTP version")?;
    let mut fields: Vec<(String, String)> = Vec::new();
    for line in lines {
        if line.starts_with(' ') || line.starts_with('\t') {
            let last = fields.last_mut().ok_or("continuation line first")?;
            last.1.push_str(line);
        } else {
            let (name, value) = line.split_once(':').ok_or("header without ':'")?;
            fields.push((name.to_owned(), value.to_owned()));
        }
    }
    let mut headers = HeaderMap::new();
    for (name, value) in fields {
        let name = HeaderName::from_bytes(name.as_bytes()).map_err(|e| e.to_string())?;
        let value = HeaderValue::from_str(&value).map_err(|e| e.to_string())?;
        headers.append(name, value);
    }
    Ok(RawRequest {
        method: method.to_owned(),
        target: target.to_owned(),
        headers,
        body: body.as_bytes().to_vec(),
    })
}

fn read(dir: &Path, file: &str) -> Result<String, String> {
    std::fs::read_to_string(dir.join(file)).map_err(|e| format!("{file}: {e}"))
}

fn case_dirs() -> Vec<PathBuf> {
    let entries = std::fs::read_dir(SUITE).unwrap_or_else(|e| {
        panic!("the SigV4 test suite must be at {SUITE} (tests/data/sigv4-test-suite): {e}")
    });
    let mut dirs: Vec<PathBuf> = entries
        .filter_map(Result::ok)
        .map(|entry| entry.path())
        .filter(|path| path.join("context.json").is_file())
        .collect();
    dirs.sort();
    dirs
}

/// Verifies `request` with the case's context.
fn check(request: &RawRequest, context: &Context, now: SystemTime) -> Result<AuthType, SigV4Error> {
    let signed = SignedRequest {
        method: &request.method,
        target: &request.target,
        headers: &request.headers,
        body: &request.body,
    };
    let expect = Expectations {
        now,
        region: &context.region,
        service: &context.service,
        normalize_uri_path: context.normalize,
        presigned_token_signed: !context.omit_session_token,
        // The suite is plain SigV4: X-Amz-Expires alone decides.
        presigned_max_age: None,
    };
    let credentials = &context.credentials;
    verify(&signed, &expect, |access_key_id| {
        if access_key_id == credentials.access_key_id {
            KeyLookup::Live(SigningSecret {
                secret_access_key: credentials.secret_access_key.clone(),
                session_token: credentials.token.clone(),
                owner: (),
            })
        } else {
            KeyLookup::Unknown
        }
    })
    .map(|caller| caller.auth_type)
}

/// Changes the last character of `s` to another one of the same class.
fn alter_last_char(s: &str) -> String {
    let mut chars: Vec<char> = s.chars().collect();
    if let Some(last) = chars.last_mut() {
        *last = match *last {
            '0' => '1',
            c if c.is_ascii_digit() => '0',
            'a' => 'b',
            _ => 'a',
        };
    }
    chars.into_iter().collect()
}

/// The same request with one character of its signature changed.
fn with_altered_signature(request: &RawRequest, auth_type: AuthType) -> RawRequest {
    let mut altered = request.clone();
    match auth_type {
        AuthType::Header => {
            let value = request.headers["authorization"].to_str().unwrap_or_default();
            let new = HeaderValue::from_str(&alter_last_char(value)).expect("ASCII stays valid");
            altered.headers.insert("authorization", new);
        }
        AuthType::Query => {
            let (before, signature) = request
                .target
                .split_once("X-Amz-Signature=")
                .expect("query-signed requests carry X-Amz-Signature");
            let (sig, after) = signature.split_at(64);
            altered.target = format!("{before}X-Amz-Signature={}{after}", alter_last_char(sig));
        }
    }
    altered
}

/// The names in the request's SignedHeaders (header or query form).
fn signed_header_names(request: &RawRequest, auth_type: AuthType) -> Vec<String> {
    let list = match auth_type {
        AuthType::Header => request.headers["authorization"]
            .to_str()
            .unwrap_or_default()
            .split("SignedHeaders=")
            .nth(1)
            .and_then(|rest| rest.split(',').next())
            .unwrap_or_default()
            .to_owned(),
        AuthType::Query => request
            .target
            .split("X-Amz-SignedHeaders=")
            .nth(1)
            .and_then(|rest| rest.split('&').next())
            .unwrap_or_default()
            .replace("%3B", ";"),
    };
    list.split(';').map(str::to_owned).collect()
}

/// The same request with the first value of `name` changed by one character.
fn with_altered_header(request: &RawRequest, name: &str) -> RawRequest {
    let mut altered = request.clone();
    let mut values: Vec<HeaderValue> = request.headers.get_all(name).iter().cloned().collect();
    if let Some(first) = values.first_mut() {
        let text = first.to_str().unwrap_or_default();
        *first = HeaderValue::from_str(&alter_last_char(text)).expect("ASCII stays valid");
    }
    altered.headers.remove(name);
    for value in values {
        altered.headers.append(
            HeaderName::from_bytes(name.as_bytes()).expect("a parsed name"),
            value,
        );
    }
    altered
}

/// The same request with one byte of body changed (or added when empty).
fn with_altered_body(request: &RawRequest) -> RawRequest {
    let mut altered = request.clone();
    match altered.body.first_mut() {
        Some(byte) => *byte ^= 0x01,
        None => altered.body.push(b'x'),
    }
    altered
}

/// Every check for one case and form; returns the failures.
fn check_form(
    name: &str,
    dir: &Path,
    context: &Context,
    now: SystemTime,
    auth_type: AuthType,
) -> Vec<String> {
    let file = match auth_type {
        AuthType::Header => "header-signed-request.txt",
        AuthType::Query => "query-signed-request.txt",
    };
    let form = auth_type.as_str();
    let request = match read(dir, file).and_then(|text| parse_request(&text)) {
        Ok(request) => request,
        Err(e) => return vec![format!("{name} ({form}): cannot parse {file}: {e}")],
    };
    let mut failures = Vec::new();
    match check(&request, context, now) {
        Ok(found) if found == auth_type => {}
        other => failures.push(format!("{name} ({form}): not accepted: {other:?}")),
    }
    let mut rejections = vec![
        ("signature", with_altered_signature(&request, auth_type)),
        ("body", with_altered_body(&request)),
    ];
    for header in signed_header_names(&request, auth_type) {
        if header != "x-amz-date" && header != "x-amz-security-token" {
            rejections.push(("header", with_altered_header(&request, &header)));
        }
    }
    for (what, altered) in rejections {
        match check(&altered, context, now) {
            Err(SigV4Error::SignatureMismatch) => {}
            other => failures.push(format!(
                "{name} ({form}): altered {what} not refused as a mismatch: {other:?}"
            )),
        }
    }
    failures
}

#[test]
fn every_conformance_case_is_accepted_and_tampering_is_refused() {
    let dirs = case_dirs();
    assert_eq!(
        dirs.len(),
        EXPECTED_CASES,
        "expected {EXPECTED_CASES} cases in {SUITE}"
    );
    let mut failures = Vec::new();
    let mut checked = 0;
    for dir in &dirs {
        let name = dir
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        let context: Context = match read(dir, "context.json")
            .and_then(|text| serde_json::from_str(&text).map_err(|e| e.to_string()))
        {
            Ok(context) => context,
            Err(e) => {
                failures.push(format!("{name}: bad context.json: {e}"));
                continue;
            }
        };
        let now = match time::OffsetDateTime::parse(
            &context.timestamp,
            &time::format_description::well_known::Rfc3339,
        ) {
            Ok(t) => SystemTime::from(t),
            Err(e) => {
                failures.push(format!("{name}: bad timestamp: {e}"));
                continue;
            }
        };
        for auth_type in [AuthType::Header, AuthType::Query] {
            failures.extend(check_form(&name, dir, &context, now, auth_type));
        }
        checked += 1;
    }
    assert!(
        failures.is_empty(),
        "{} failure(s):\n{}",
        failures.len(),
        failures.join("\n")
    );
    assert_eq!(checked, EXPECTED_CASES, "every case must be checked");
}
