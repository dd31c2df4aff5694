//! The gateway end to end: a real [`LocalPool`] hands out credentials through the real
//! `aws-sdk-cognitoidentity` client, requests are signed with `aws-sigv4` like an SDK signs
//! them, and sent over HTTP to the gateway nested at `/api`, in front of the demo routes or of
//! an upstream test server that echoes what it receives.

#[allow(dead_code)]
mod support;

use std::borrow::Cow;
use std::time::{Duration, SystemTime};

use aws_credential_types::Credentials;
use aws_sigv4::http_request::{
    PayloadChecksumKind, SignableBody, SignableRequest, SignatureLocation, SigningSettings, sign,
};
use aws_smithy_runtime_api::client::identity::Identity;
use axum::Router;
use axum::routing;
use credbroker::local::gateway::{self, GatewaySettings};
use serde_json::{Value, json};
use support::{LOCAL_POOL_ID as POOL_ID, LocalPoolServer};
use url::Url;

const REGION: &str = "us-east-1";

/// One server with a test issuer's JWKS (`/idp/jwks`), the pool (`/cognito-identity`) and the
/// gateway (`/api`).
struct Stack {
    base: String,
    provider: String,
    identity_id: String,
    credentials: Credentials,
    http: reqwest::Client,
}

impl Stack {
    /// A stack whose pool issued credentials to `alice` (lifetime `lifetime`).
    async fn start(upstream: Option<Url>, lifetime: Duration) -> Stack {
        let settings = GatewaySettings {
            region: REGION.to_owned(),
            upstream,
            stage: None,
        };
        let server = LocalPoolServer::start(lifetime, |pool| {
            Router::new().nest("/api", gateway::router(pool, settings))
        })
        .await;
        let provider = server.provider();
        let mut claims = server.claims("alice");
        claims["name"] = json!("Alice <Admin>");
        let token = server.key.sign_jwt(&claims);
        let (identity_id, credentials) = credentials_from_pool(&server, &provider, &token).await;
        Stack {
            base: server.base,
            provider,
            identity_id,
            credentials,
            http: reqwest::Client::builder()
                .redirect(reqwest::redirect::Policy::none())
                .build()
                .expect("a client"),
        }
    }

    async fn demo() -> Stack {
        Stack::start(None, Duration::from_secs(3600)).await
    }

    fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    /// Sends `request` (signed or not) and returns status, headers and body.
    async fn send(&self, request: http::Request<Vec<u8>>) -> Answer {
        let request = reqwest::Request::try_from(request).expect("a sendable request");
        let response = self.http.execute(request).await.expect("the gateway answers");
        let status = response.status().as_u16();
        let headers = response.headers().clone();
        let body = response.bytes().await.expect("a body").to_vec();
        Answer {
            status,
            headers,
            body,
        }
    }

    /// Signs with the pool's credentials and sends.
    async fn signed(&self, request: http::Request<Vec<u8>>, how: Signing) -> Answer {
        self.send(sign_request(request, &self.credentials, how)).await
    }
}

/// GetId + GetCredentialsForIdentity through the SDK, as the broker does.
async fn credentials_from_pool(
    server: &LocalPoolServer,
    provider: &str,
    token: &str,
) -> (String, Credentials) {
    let client = server.client();
    let identity_id = client
        .get_id()
        .identity_pool_id(POOL_ID)
        .logins(provider, token)
        .send()
        .await
        .expect("GetId")
        .identity_id
        .expect("an identity id");
    let answer = client
        .get_credentials_for_identity()
        .identity_id(&identity_id)
        .logins(provider, token)
        .send()
        .await
        .expect("GetCredentialsForIdentity");
    let issued = answer.credentials.expect("credentials");
    let credentials = Credentials::new(
        issued.access_key_id.expect("access key id"),
        issued.secret_key.expect("secret key"),
        issued.session_token,
        None,
        "local-pool",
    );
    (identity_id, credentials)
}

struct Answer {
    status: u16,
    headers: http::HeaderMap,
    body: Vec<u8>,
}

impl Answer {
    fn json(&self) -> Value {
        serde_json::from_slice(&self.body).expect("a JSON body")
    }

    fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }

    /// Asserts API Gateway's 403 shape with this message.
    fn assert_forbidden(&self, message: &str) {
        assert_eq!(self.status, 403, "{}", self.text());
        assert_eq!(self.headers["content-type"], "application/json");
        assert_eq!(self.json(), json!({ "message": message }));
    }
}

/// How a test client signs.
#[derive(Clone, Copy)]
struct Signing {
    location: SignatureLocation,
    region: &'static str,
    service: &'static str,
    time: SystemTime,
    expires: Duration,
    content_sha256: bool,
}

impl Signing {
    fn header() -> Signing {
        Signing {
            location: SignatureLocation::Headers,
            region: REGION,
            service: "execute-api",
            time: SystemTime::now(),
            expires: Duration::from_secs(300),
            content_sha256: false,
        }
    }

    fn query() -> Signing {
        Signing {
            location: SignatureLocation::QueryParams,
            ..Signing::header()
        }
    }
}

/// Signs like an SDK: every header of the request plus what `aws-sigv4` adds.
fn sign_request(
    mut request: http::Request<Vec<u8>>,
    credentials: &Credentials,
    how: Signing,
) -> http::Request<Vec<u8>> {
    let host = request.uri().authority().expect("an absolute URL").to_string();
    request
        .headers_mut()
        .insert("host", host.parse().expect("a valid host"));
    let identity: Identity = credentials.clone().into();
    let mut settings = SigningSettings::default();
    settings.signature_location = how.location;
    settings.expires_in = Some(how.expires);
    if how.content_sha256 {
        settings.payload_checksum_kind = PayloadChecksumKind::XAmzSha256;
    }
    let params = aws_sigv4::sign::v4::SigningParams::builder()
        .identity(&identity)
        .region(how.region)
        .name(how.service)
        .time(how.time)
        .settings(settings)
        .build()
        .expect("complete params")
        .into();
    let headers: Vec<(String, String)> = request
        .headers()
        .iter()
        .map(|(n, v)| (n.to_string(), v.to_str().expect("text").to_owned()))
        .collect();
    let signable = SignableRequest::new(
        request.method().as_str(),
        Cow::Owned(request.uri().to_string()),
        headers.iter().map(|(n, v)| (n.as_str(), v.as_str())),
        SignableBody::Bytes(request.body()),
    )
    .expect("signable");
    let (instructions, _signature) = sign(signable, &params).expect("signs").into_parts();
    instructions.apply_to_request_http1x(&mut request);
    request
}

fn get(url: &str) -> http::Request<Vec<u8>> {
    http::Request::get(url).body(Vec::new()).expect("a request")
}

fn post(url: &str, content_type: &str, body: impl Into<Vec<u8>>) -> http::Request<Vec<u8>> {
    http::Request::post(url)
        .header("content-type", content_type)
        .body(body.into())
        .expect("a request")
}

#[tokio::test]
async fn whoami_answers_the_identity_for_header_and_presigned_signatures() {
    let stack = Stack::demo().await;
    for (how, auth_type) in [(Signing::header(), "header"), (Signing::query(), "query")] {
        let answer = stack.signed(get(&stack.url("/api/whoami?x=1")), how).await;
        assert_eq!(answer.status, 200, "{}", answer.text());
        let body = answer.json();
        assert_eq!(body["identityId"], stack.identity_id.as_str());
        assert_eq!(body["provider"], stack.provider.as_str());
        assert_eq!(body["subject"], "alice");
        assert_eq!(body["claims"]["email"], "alice@example.com");
        assert_eq!(body["accessKeyId"], stack.credentials.access_key_id());
        assert_eq!(body["authType"], auth_type);
    }
}

#[tokio::test]
async fn echo_returns_json_and_refuses_invalid_json() {
    let stack = Stack::demo().await;
    let sent = json!({ "hello": ["world", 1] });
    let request = post(&stack.url("/api/echo"), "application/json", sent.to_string());
    let answer = stack.signed(request, Signing::header()).await;
    assert_eq!(answer.status, 200, "{}", answer.text());
    assert_eq!(answer.json(), sent);
    let request = post(&stack.url("/api/echo"), "application/json", "{not json");
    let answer = stack.signed(request, Signing::header()).await;
    assert_eq!(answer.status, 400);
    assert!(answer.json()["message"].is_string());
}

#[tokio::test]
async fn unsigned_and_malformed_requests_are_refused_like_api_gateway() {
    let stack = Stack::demo().await;
    let answer = stack.send(get(&stack.url("/api/whoami"))).await;
    answer.assert_forbidden("Missing Authentication Token");
    assert_eq!(
        answer.headers["x-amzn-errortype"],
        "MissingAuthenticationTokenException"
    );

    let mut request = get(&stack.url("/api/whoami"));
    request.headers_mut().insert(
        "authorization",
        "Bearer some.id.token".parse().expect("a header value"),
    );
    let answer = stack.send(request).await;
    answer.assert_forbidden(
        "Authorization header requires 'Credential' parameter. Authorization header requires \
         'Signature' parameter. Authorization header requires 'SignedHeaders' parameter. \
         Authorization header requires existence of either a 'X-Amz-Date' or a 'Date' header.",
    );
    assert!(!answer.text().contains("some.id.token"));
}

#[tokio::test]
async fn unsigned_navigations_get_the_signin_page_and_api_clients_the_json_403() {
    let stack = Stack::demo().await;
    let with_accept = |accept: &str| {
        let mut request = get(&stack.url("/api/app/notes?sort=new&q=a%20b"));
        request
            .headers_mut()
            .insert("accept", accept.parse().expect("a header value"));
        request
    };
    let chrome = "text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8";
    let page = stack.send(with_accept(chrome)).await;
    assert_eq!(page.status, 403);
    assert_eq!(page.headers["content-type"], "text/html; charset=utf-8");
    assert_eq!(page.headers["cache-control"], "no-store");
    assert_eq!(
        page.headers["x-amzn-errortype"],
        "MissingAuthenticationTokenException"
    );
    assert!(
        page.text().contains(r#"import(base + web + "return-url.js")"#),
        "{}",
        page.text()
    );
    assert!(page.text().contains(r#"const stage = "";"#));

    for api_client in ["application/json", "*/*", "application/json, text/html"] {
        stack
            .send(with_accept(api_client))
            .await
            .assert_forbidden("Missing Authentication Token");
    }
    stack
        .send(get(&stack.url("/api/app/notes")))
        .await
        .assert_forbidden("Missing Authentication Token");

    // Only a missing signature is a sign-in matter: a bad one keeps API Gateway's JSON answer.
    let mut forged = with_accept(chrome);
    forged.headers_mut().insert(
        "authorization",
        "Bearer some.id.token".parse().expect("a header value"),
    );
    assert_eq!(
        stack.send(forged).await.headers["content-type"],
        "application/json"
    );
}

#[tokio::test]
async fn unknown_keys_and_wrong_session_tokens_are_invalid_tokens() {
    let stack = Stack::demo().await;
    let unknown = Credentials::new(
        "ASIAUNKNOWNKEY000000",
        "secret",
        Some("token".to_owned()),
        None,
        "test",
    );
    let request = sign_request(get(&stack.url("/api/whoami")), &unknown, Signing::header());
    let message = "The security token included in the request is invalid.";
    stack.send(request).await.assert_forbidden(message);

    let wrong_token = Credentials::new(
        stack.credentials.access_key_id(),
        stack.credentials.secret_access_key(),
        Some("not-the-issued-token".to_owned()),
        None,
        "test",
    );
    let request = sign_request(get(&stack.url("/api/whoami")), &wrong_token, Signing::query());
    stack.send(request).await.assert_forbidden(message);
}

#[tokio::test]
async fn altered_requests_are_signature_mismatches() {
    let stack = Stack::demo().await;
    let message = "The request signature we calculated does not match the signature you \
                   provided. Check your AWS Secret Access Key and signing method. Consult the \
                   service documentation for details.";
    let signed = sign_request(
        post(&stack.url("/api/echo"), "application/json", "{\"a\":1}"),
        &stack.credentials,
        Signing::header(),
    );
    let (parts, _) = signed.into_parts();
    let tampered = http::Request::from_parts(parts, b"{\"a\":2}".to_vec());
    stack.send(tampered).await.assert_forbidden(message);

    // With X-Amz-Content-Sha256 the body must match the signed hash too.
    let how = Signing {
        content_sha256: true,
        ..Signing::header()
    };
    let signed = sign_request(
        post(&stack.url("/api/echo"), "application/json", "{\"a\":1}"),
        &stack.credentials,
        how,
    );
    let (parts, _) = signed.into_parts();
    let tampered = http::Request::from_parts(parts, b"{\"a\":3}".to_vec());
    stack.send(tampered).await.assert_forbidden(message);
}

#[tokio::test]
async fn stale_signatures_and_expired_presigned_urls_are_refused() {
    let stack = Stack::demo().await;
    let how = Signing {
        time: SystemTime::now() - Duration::from_secs(10 * 60),
        ..Signing::header()
    };
    let answer = stack.signed(get(&stack.url("/api/whoami")), how).await;
    assert_eq!(answer.status, 403);
    let message = answer.json()["message"].as_str().unwrap_or_default().to_owned();
    assert!(message.starts_with("Signature expired: "), "{message}");
    assert!(message.ends_with(" - 5 min.)"), "{message}");

    let how = Signing {
        time: SystemTime::now() - Duration::from_secs(120),
        expires: Duration::from_secs(60),
        ..Signing::query()
    };
    let answer = stack.signed(get(&stack.url("/api/whoami")), how).await;
    answer.assert_forbidden("Request has expired");
}

#[tokio::test]
async fn presigned_urls_die_five_minutes_after_signing_whatever_x_amz_expires_says() {
    let stack = Stack::demo().await;
    let signed_long_ago = |age_secs| Signing {
        time: SystemTime::now() - Duration::from_secs(age_secs),
        expires: Duration::from_secs(3600),
        ..Signing::query()
    };
    let fresh = stack
        .signed(get(&stack.url("/api/whoami")), signed_long_ago(240))
        .await;
    assert_eq!(fresh.status, 200);
    let stale = stack
        .signed(get(&stack.url("/api/whoami")), signed_long_ago(6 * 60))
        .await;
    assert_eq!(stale.status, 403);
    let message = stale.json()["message"].as_str().unwrap_or_default().to_owned();
    assert!(message.starts_with("Signature expired: "), "{message}");
    assert!(message.ends_with(" - 5 min.)"), "{message}");
}

#[tokio::test]
async fn signatures_for_another_region_or_service_are_refused() {
    let stack = Stack::demo().await;
    let other_region = Signing {
        region: "eu-west-1",
        ..Signing::header()
    };
    let other_service = Signing {
        service: "lambda",
        ..Signing::query()
    };
    for (how, message) in [
        (
            other_region,
            "Credential should be scoped to a valid region, not 'eu-west-1'. ",
        ),
        (
            other_service,
            "Credential should be scoped to correct service: 'execute-api'. ",
        ),
    ] {
        stack
            .signed(get(&stack.url("/api/whoami")), how)
            .await
            .assert_forbidden(message);
    }
}

#[tokio::test]
async fn expired_credentials_are_refused() {
    let stack = Stack::start(None, Duration::from_secs(1)).await;
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let answer = stack
        .signed(get(&stack.url("/api/whoami")), Signing::header())
        .await;
    answer.assert_forbidden("The security token included in the request is expired");
}

#[tokio::test]
async fn preflights_pass_and_oversized_bodies_are_refused() {
    let stack = Stack::demo().await;
    let request = http::Request::options(stack.url("/api/echo"))
        .body(Vec::new())
        .expect("a request");
    let answer = stack.send(request).await;
    assert_eq!(answer.status, 204);
    assert!(answer.body.is_empty());

    let big = vec![b'a'; gateway::MAX_BODY_BYTES + 1];
    let answer = stack.send(post(&stack.url("/api/echo"), "text/plain", big)).await;
    assert_eq!(answer.status, 413);
    assert_eq!(answer.json(), json!({ "message": "Request Too Long" }));
}

#[tokio::test]
async fn the_app_area_greets_keeps_notes_and_takes_uploads() {
    let stack = Stack::demo().await;
    let home = stack
        .signed(get(&stack.url("/api/app/")), Signing::header())
        .await;
    assert_eq!(home.status, 200);
    let page = home.text();
    assert!(page.contains("Hello, Alice &lt;Admin&gt;!"), "{page}");
    for link in ["href=\"notes\"", "href=\"about\"", "src=\"logo.svg\""] {
        assert!(page.contains(link), "{link} missing");
    }
    let logo = stack
        .signed(get(&stack.url("/api/app/logo.svg")), Signing::query())
        .await;
    assert_eq!(logo.headers["content-type"], "image/svg+xml");

    let form = post(
        &stack.url("/api/app/notes"),
        "application/x-www-form-urlencoded",
        "text=%3Cb%3Ebuy+milk%3C%2Fb%3E",
    );
    let added = stack.signed(form, Signing::header()).await;
    assert_eq!(added.status, 303);
    assert_eq!(added.headers["location"], "notes");
    let notes = stack
        .signed(get(&stack.url("/api/app/notes")), Signing::header())
        .await
        .text();
    assert!(notes.contains("<li>&lt;b&gt;buy milk&lt;/b&gt;</li>"), "{notes}");
    assert!(notes.contains("enctype=\"multipart/form-data\""));

    let boundary = "credbroker-test-boundary";
    let upload = format!(
        "--{boundary}\r\nContent-Disposition: form-data; name=\"file\"; \
         filename=\"a&b.txt\"\r\nContent-Type: text/plain\r\n\r\nhello world\r\n--{boundary}--\r\n"
    );
    let request = post(
        &stack.url("/api/app/upload"),
        &format!("multipart/form-data; boundary={boundary}"),
        upload,
    );
    let answer = stack.signed(request, Signing::header()).await;
    assert_eq!(answer.status, 200, "{}", answer.text());
    let page = answer.text();
    assert!(page.contains("a&amp;b.txt"), "{page}");
    assert!(page.contains("11 bytes"), "{page}");
}

/// An upstream that answers what it received, and a redirect at `/base/redirect`.
async fn echo_upstream() -> Url {
    let echo = |request: axum::extract::Request| async move {
        let (parts, body) = request.into_parts();
        let body = axum::body::to_bytes(body, 1 << 20).await.unwrap_or_default();
        let headers: serde_json::Map<String, Value> = parts
            .headers
            .iter()
            .map(|(n, v)| (n.to_string(), json!(v.to_str().unwrap_or_default())))
            .collect();
        axum::Json(json!({
            "method": parts.method.as_str(),
            "path": parts.uri.path(),
            "query": parts.uri.query(),
            "headers": headers,
            "body": String::from_utf8_lossy(&body),
        }))
    };
    let app = Router::new()
        .route(
            "/base/redirect",
            routing::get(|| async { axum::response::Redirect::to("/elsewhere") }),
        )
        .fallback(echo);
    let address = support::serve(app).await;
    Url::parse(&format!("http://{address}/base/")).expect("a URL")
}

#[tokio::test]
async fn upstream_mode_forwards_with_identity_headers_and_strips_spoofed_ones() {
    let upstream = echo_upstream().await;
    let stack = Stack::start(Some(upstream), Duration::from_secs(3600)).await;
    let mut request = post(&stack.url("/api/things/1?a=1"), "application/json", "{\"n\":1}");
    for (name, value) in [
        ("x-credbroker-subject", "mallory"),
        ("x-credbroker-identity-id", "us-east-1:forged"),
        ("x-credbroker-admin", "yes"),
        ("x-custom", "kept"),
    ] {
        request
            .headers_mut()
            .insert(name, value.parse().expect("a header value"));
    }
    let answer = stack.signed(request, Signing::header()).await;
    assert_eq!(answer.status, 200, "{}", answer.text());
    let seen = answer.json();
    assert_eq!(seen["method"], "POST");
    assert_eq!(seen["path"], "/base/things/1");
    assert_eq!(seen["query"], "a=1");
    assert_eq!(seen["body"], "{\"n\":1}");
    let headers = &seen["headers"];
    assert_eq!(headers["x-credbroker-subject"], "alice");
    assert_eq!(headers["x-credbroker-identity-id"], stack.identity_id.as_str());
    assert_eq!(headers["x-credbroker-provider"], stack.provider.as_str());
    assert_eq!(headers["x-custom"], "kept");
    assert!(headers.get("x-credbroker-admin").is_none());
    assert!(headers.get("authorization").is_none());
    let names: Vec<&String> = headers
        .as_object()
        .map(|m| m.keys().collect())
        .unwrap_or_default();
    assert!(!names.iter().any(|n| n.starts_with("x-amz-")), "{names:?}");

    let answer = stack
        .signed(get(&stack.url("/api/list?b=2")), Signing::query())
        .await;
    assert_eq!(answer.status, 200, "{}", answer.text());
    assert_eq!(answer.json()["query"], "b=2");

    let answer = stack
        .signed(get(&stack.url("/api/redirect")), Signing::header())
        .await;
    assert_eq!(answer.status, 303);
    assert_eq!(answer.headers["location"], "/elsewhere");

    let answer = stack.send(get(&stack.url("/api/things/1"))).await;
    answer.assert_forbidden("Missing Authentication Token");
}

#[tokio::test]
async fn an_unreachable_upstream_is_a_bad_gateway() {
    let closed = support::free_port();
    let upstream = Url::parse(&format!("http://127.0.0.1:{closed}/")).expect("a URL");
    let stack = Stack::start(Some(upstream), Duration::from_secs(3600)).await;
    let answer = stack
        .signed(get(&stack.url("/api/anything")), Signing::header())
        .await;
    assert_eq!(answer.status, 502);
    assert_eq!(answer.headers["content-type"], "application/json");
    assert!(answer.json()["message"].is_string());
}
