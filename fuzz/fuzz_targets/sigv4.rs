//! The local gateway's SigV4 verification, three ways per input.
//!
//! The input is an HTTP/1.1 request as text, the format of the AWS SigV4 test suite's
//! `*-signed-request.txt` files (see [`parse_request`]); the seeds are those files.
//!
//! 1. As sent: `sigv4::verify` with the suite's clock, region and service and a key lookup that
//!    knows the suite's one access key. No panic; an accepted request was signed with that key
//!    in the form it carries; every refusal message is bounded, on one line, free of control
//!    characters, and never repeats the secret key or the session token (see
//!    [`secrets_not_echoed`]).
//! 2. Re-signed with `credbroker::cli::sign_request` (what `credbroker curl` does, service
//!    `execute-api`): the gateway's own expectations must ACCEPT it.
//! 3. Presigned with `aws-sigv4` (query parameters, as an SDK presigns): must be ACCEPTED too.
//!
//! In 2 and 3 any refusal of a request the signer could sign is a disagreement between signer
//! and verifier, reported as a crash with the verifier's message.
#![no_main]

use std::time::Duration;

use aws_sigv4::http_request::{SignableBody, SignableRequest, SignatureLocation, SigningSettings, sign};
use aws_smithy_runtime_api::client::identity::Identity;
use credbroker::cli::{SigningCredentials, sign_request};
use credbroker::local::gateway::sigv4::{
    self, AuthType, Expectations, KeyLookup, SignedRequest, SigningSecret, strip_presign_params,
};
use credbroker_fuzz::{assert_safe_message, unix_time};
use http::{HeaderMap, HeaderName, HeaderValue, Method};
use libfuzzer_sys::fuzz_target;

/// The suite's credentials and clock (`context.json` of every case).
const ACCESS_KEY_ID: &str = "AKIDEXAMPLE";
const SECRET_ACCESS_KEY: &str = "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY";
const SESSION_TOKEN: &str = "6e86291e8372ff2a2260956d9b8aae1d763fbf315fa00fa31553b73ebf194267";
/// An access key the lookup reports as expired.
const EXPIRED_ACCESS_KEY_ID: &str = "AKIDEXPIRED";
/// 2015-08-30T12:36:00Z.
const SUITE_TIME: u64 = 1_440_938_160;
const REGION: &str = "us-east-1";
const SUITE_SERVICE: &str = "service";
/// Where re-signed requests are sent when they carry no `Host` header.
const DEFAULT_HOST: &str = "example.amazonaws.com";
/// The verifier refuses longer session tokens (its `MAX_SESSION_TOKEN_LEN`).
const MAX_SESSION_TOKEN_BYTES: usize = 4096;
/// The verifier refuses more signed headers (its `MAX_SIGNED_HEADERS`); the signer adds up to
/// four (`host`, `x-amz-date`, the token, the payload hash) to the request's own.
const MAX_CLIENT_HEADER_NAMES: usize = 64 - 4;
/// Headers the signer writes itself, so they are dropped from the fuzzed request first.
const SIGNER_HEADERS: [&str; 4] = [
    "authorization",
    "x-amz-date",
    "x-amz-security-token",
    "x-amz-content-sha256",
];

/// A request parsed from the input.
struct Request {
    method: String,
    target: String,
    headers: HeaderMap,
    body: Vec<u8>,
}

fuzz_target!(|data: &[u8]| {
    let Some(request) = parse_request(data) else {
        return;
    };
    check_as_sent(&request);
    check_re_signed(&request);
    check_presigned(&request);
});

/// Request line `METHOD TARGET HTTP/1.1` (the target may hold spaces), `Name:value` header
/// lines with folded continuation lines, a blank line, then the body (any bytes).
fn parse_request(data: &[u8]) -> Option<Request> {
    let split = data.windows(2).position(|w| w == b"\n\n");
    let (head, body) = match split {
        Some(at) => (data.get(..at)?, data.get(at + 2..)?),
        None => (data, &[][..]),
    };
    let head = std::str::from_utf8(head).ok()?;
    let mut lines = head.lines();
    let (method, rest) = lines.next()?.split_once(' ')?;
    let (target, _version) = rest.rsplit_once(' ')?;
    let mut fields: Vec<(&str, String)> = Vec::new();
    for line in lines {
        if line.starts_with([' ', '\t']) {
            fields.last_mut()?.1.push_str(line);
        } else {
            let (name, value) = line.split_once(':')?;
            fields.push((name, value.to_owned()));
        }
    }
    let mut headers = HeaderMap::new();
    for (name, value) in fields {
        let name = HeaderName::from_bytes(name.as_bytes()).ok()?;
        headers.append(name, HeaderValue::from_str(&value).ok()?);
    }
    Some(Request {
        method: method.to_owned(),
        target: target.to_owned(),
        headers,
        body: body.to_vec(),
    })
}

/// The key lookup: the suite's key, with its session token only when the request presents
/// the suite's token (so both the with- and without-token seeds verify).
fn lookup(access_key_id: &str, session_token: Option<&str>) -> KeyLookup<()> {
    match access_key_id {
        ACCESS_KEY_ID => KeyLookup::Live(SigningSecret {
            secret_access_key: SECRET_ACCESS_KEY.to_owned(),
            session_token: session_token.map(str::to_owned),
            owner: (),
        }),
        EXPIRED_ACCESS_KEY_ID => KeyLookup::Expired,
        _ => KeyLookup::Unknown,
    }
}

fn check_as_sent(request: &Request) {
    let signed = SignedRequest {
        method: &request.method,
        target: &request.target,
        headers: &request.headers,
        body: &request.body,
    };
    let expect = Expectations {
        service: SUITE_SERVICE,
        ..Expectations::api_gateway(unix_time(SUITE_TIME), REGION)
    };
    let presents_token = request.target.contains(SESSION_TOKEN)
        || request
            .headers
            .get("x-amz-security-token")
            .is_some_and(|v| v.as_bytes() == SESSION_TOKEN.as_bytes());
    let token = presents_token.then_some(SESSION_TOKEN);
    match sigv4::verify(&signed, &expect, |id| lookup(id, token)) {
        Ok(caller) => {
            assert_eq!(caller.access_key_id, ACCESS_KEY_ID, "accepted another key");
            let form = if request.headers.contains_key(http::header::AUTHORIZATION) {
                AuthType::Header
            } else {
                AuthType::Query
            };
            assert_eq!(caller.auth_type, form, "accepted in the wrong form");
        }
        Err(error) => {
            assert!(!error.error_type().is_empty());
            let secrets = secrets_not_echoed(request);
            assert_safe_message(error.error_type(), &error.to_string(), &secrets);
        }
    }
}

/// The secrets no refusal may repeat: the secret key, and the session token, unless the
/// request itself put them where a message may quote the client's values (e.g. inside
/// `Credential=`): a message repeating the client's own field is not a leak.
fn secrets_not_echoed(request: &Request) -> Vec<&'static str> {
    let elsewhere = |secret: &str| {
        let in_query = request
            .target
            .split(['?', '&'])
            .any(|segment| !segment.starts_with("X-Amz-Security-Token=") && segment.contains(secret));
        let in_headers = request
            .headers
            .iter()
            .filter(|(name, _)| name.as_str() != "x-amz-security-token")
            .any(|(_, value)| String::from_utf8_lossy(value.as_bytes()).contains(secret));
        in_query || in_headers || request.method.contains(secret)
    };
    [SECRET_ACCESS_KEY, SESSION_TOKEN]
        .into_iter()
        .filter(|secret| !elsewhere(secret))
        .collect()
}

/// The fuzzed request as an `http::Request` a client could send, without any signature
/// headers; `None` when it cannot be represented (then no signer could sign it) or has more
/// headers than the verifier's documented bound. `http::Uri`
/// drops a `#fragment`, as a client would before sending.
fn client_request(request: &Request) -> Option<http::Request<Vec<u8>>> {
    let method = Method::from_bytes(request.method.as_bytes()).ok()?;
    let mut built = http::Request::builder()
        .method(method)
        .uri(uri_for(&request.target)?)
        .body(request.body.clone())
        .ok()?;
    for (name, value) in &request.headers {
        if !SIGNER_HEADERS.contains(&name.as_str()) {
            built.headers_mut().append(name, value.clone());
        }
    }
    (built.headers().keys_len() <= MAX_CLIENT_HEADER_NAMES).then_some(built)
}

fn uri_for(target: &str) -> Option<http::Uri> {
    if !target.starts_with('/') {
        return None;
    }
    format!("https://{DEFAULT_HOST}{target}").parse().ok()
}

/// The query of `uri` as a client sends it.
fn query_of(uri: &http::Uri) -> &str {
    uri.query().unwrap_or_default()
}

/// The session token the fuzzed request carries, if any, when a client could send it.
fn session_token(request: &Request) -> Result<Option<String>, ()> {
    match request.headers.get("x-amz-security-token") {
        None => Ok(None),
        Some(value) => match value.to_str() {
            Ok(token) if !token.is_empty() && token.len() <= MAX_SESSION_TOKEN_BYTES => {
                Ok(Some(token.to_owned()))
            }
            _ => Err(()),
        },
    }
}

fn check_re_signed(request: &Request) {
    let (Some(mut client), Ok(token)) = (client_request(request), session_token(request)) else {
        return;
    };
    // A query that already holds presigning parameters cannot also be header-signed.
    let query = query_of(client.uri());
    if strip_presign_params(query) != query {
        return;
    }
    let credentials = SigningCredentials {
        access_key_id: ACCESS_KEY_ID.to_owned(),
        secret_access_key: SECRET_ACCESS_KEY.to_owned(),
        session_token: token.clone(),
    };
    let now = unix_time(SUITE_TIME);
    if sign_request(&mut client, &credentials, REGION, sigv4::EXECUTE_API, now).is_err() {
        return;
    }
    expect_accepted("sign_request", &client, token.as_deref(), AuthType::Header);
}

fn check_presigned(request: &Request) {
    let (Some(mut client), Ok(token)) = (client_request(request), session_token(request)) else {
        return;
    };
    // A URL to presign carries no presigning parameters of its own.
    let query = strip_presign_params(query_of(client.uri()));
    let path = client.uri().path();
    let target = if query.is_empty() {
        path.to_owned()
    } else {
        format!("{path}?{query}")
    };
    let Some(uri) = uri_for(&target) else {
        return;
    };
    *client.uri_mut() = uri;
    if presign(&mut client, token.as_deref()).is_none() {
        return;
    }
    expect_accepted("aws-sigv4 presigning", &client, token.as_deref(), AuthType::Query);
}

/// Presigns `request` in place like an SDK: query parameters, valid for an hour.
fn presign(request: &mut http::Request<Vec<u8>>, token: Option<&str>) -> Option<()> {
    let identity: Identity = aws_credential_types::Credentials::new(
        ACCESS_KEY_ID,
        SECRET_ACCESS_KEY,
        token.map(str::to_owned),
        None,
        "fuzz",
    )
    .into();
    let mut settings = SigningSettings::default();
    settings.signature_location = SignatureLocation::QueryParams;
    settings.expires_in = Some(Duration::from_secs(3600));
    let params = aws_sigv4::sign::v4::SigningParams::builder()
        .identity(&identity)
        .region(REGION)
        .name(sigv4::EXECUTE_API)
        .time(unix_time(SUITE_TIME))
        .settings(settings)
        .build()
        .ok()?
        .into();
    let headers: Vec<(&str, &str)> = request
        .headers()
        .iter()
        .map(|(name, value)| Some((name.as_str(), value.to_str().ok()?)))
        .collect::<Option<_>>()?;
    let uri = request.uri().to_string();
    let signable = SignableRequest::new(
        request.method().as_str(),
        &uri,
        headers.into_iter(),
        SignableBody::Bytes(request.body()),
    )
    .ok()?;
    let (instructions, _) = sign(signable, &params).ok()?.into_parts();
    instructions.apply_to_request_http1x(request);
    Some(())
}

/// The gateway's view of a signed request (it adds `Host` from the URI when absent) must
/// verify with API Gateway's expectations.
fn expect_accepted(signer: &str, signed: &http::Request<Vec<u8>>, token: Option<&str>, form: AuthType) {
    let target = signed.uri().path_and_query().map_or("/", |pq| pq.as_str());
    let mut headers = signed.headers().clone();
    if !headers.contains_key(http::header::HOST) {
        headers.insert(http::header::HOST, HeaderValue::from_static(DEFAULT_HOST));
    }
    let request = SignedRequest {
        method: signed.method().as_str(),
        target,
        headers: &headers,
        body: signed.body(),
    };
    let expect = Expectations::api_gateway(unix_time(SUITE_TIME), REGION);
    match sigv4::verify(&request, &expect, |id| lookup(id, token)) {
        Ok(caller) => assert_eq!(caller.auth_type, form),
        Err(error) => panic!(
            "the gateway refuses a request signed by {signer}: {} ({error}); {} {target}",
            error.error_type(),
            signed.method()
        ),
    }
}
