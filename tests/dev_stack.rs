//! `credbroker dev` end to end over HTTP, as a developer meets it: the dev provider's code flow,
//! sign-in through the broker (which reaches the local identity pool through the AWS SDK), and
//! SigV4-signed calls through the local gateway — plus `--upstream` proxying, the static client,
//! and the `token` / `signin` / `curl` commands run as the real binary.

#[allow(dead_code)]
mod support;

use std::collections::HashMap;
use std::time::{Duration, SystemTime};

use axum::http::{HeaderMap, StatusCode, header};
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use credbroker::cli::{SigningCredentials, sign_request};
use credbroker::key::Algorithm;
use credbroker::local::signing_key::SigningKey;
use credbroker::local::{DevOptions, DevStack};
use serde_json::{Value, json};
use url::Url;

/// Under the stack's own origin: its dev provider sends codes nowhere else.
const REDIRECT_PATH: &str = "callback.html";
const VERIFIER: &str = "dev-stack-test-verifier-0123456789-abcdefghijklmn";

/// A running dev stack on a free loopback port.
struct Stack {
    base: Url,
    http: reqwest::Client,
}

impl Stack {
    async fn start() -> Stack {
        Stack::start_with(DevOptions::default()).await
    }

    async fn start_with(options: DevOptions) -> Stack {
        let options = DevOptions {
            listen: "127.0.0.1:0".parse().unwrap(),
            ..options
        };
        let stack = DevStack::bind(options).await.expect("dev stack binds");
        let base = stack.base_url.clone();
        tokio::spawn(stack.serve(std::future::pending()));
        let http = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .timeout(Duration::from_secs(20))
            .build()
            .unwrap();
        Stack { base, http }
    }

    fn url(&self, path: &str) -> String {
        self.base.join(path).unwrap().to_string()
    }

    /// The dev provider's authorization-code flow with PKCE, as the browser client runs it.
    async fn code_flow(&self, sub: &str, claims: &str) -> String {
        let redirect_uri = self.url(REDIRECT_PATH);
        let challenge = URL_SAFE_NO_PAD
            .encode(aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, VERIFIER.as_bytes()).as_ref());
        let mut authorize = Url::parse(&self.url("dev-idp/authorize")).unwrap();
        authorize.query_pairs_mut().extend_pairs([
            ("response_type", "code"),
            ("client_id", "credbroker-dev"),
            ("redirect_uri", redirect_uri.as_str()),
            ("scope", "openid email profile"),
            ("state", "s1"),
            ("nonce", "n1"),
            ("code_challenge", challenge.as_str()),
            ("code_challenge_method", "S256"),
        ]);
        let page = self
            .http
            .get(authorize)
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap();
        let request = regex::Regex::new(r#"name="request" value="([A-Za-z0-9_-]+)""#)
            .unwrap()
            .captures(&page)
            .expect("the sign-in page carries a request token")[1]
            .to_string();
        let chosen = self
            .http
            .post(self.url("dev-idp/authorize"))
            .form(&[
                ("request", request.as_str()),
                ("sub", sub),
                ("email", &format!("{sub}@example.com")),
                ("name", sub),
                ("claims", claims),
            ])
            .send()
            .await
            .unwrap();
        assert_eq!(
            chosen.status(),
            StatusCode::FOUND,
            "{}",
            chosen.text().await.unwrap()
        );
        let location = Url::parse(chosen.headers()[header::LOCATION].to_str().unwrap()).unwrap();
        let query: HashMap<_, _> = location.query_pairs().into_owned().collect();
        assert_eq!(query["state"], "s1");
        let tokens: Value = self
            .http
            .post(self.url("dev-idp/token"))
            .form(&[
                ("grant_type", "authorization_code"),
                ("code", query["code"].as_str()),
                ("redirect_uri", redirect_uri.as_str()),
                ("client_id", "credbroker-dev"),
                ("code_verifier", VERIFIER),
            ])
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        tokens["id_token"].as_str().expect("an id_token").to_string()
    }

    async fn sign_in(&self, id_token: &str) -> (StatusCode, Value) {
        self.sign_in_with("dev", id_token).await
    }

    async fn sign_in_with(&self, provider: &str, id_token: &str) -> (StatusCode, Value) {
        self.sign_in_at(&format!("auth/signin/{provider}"), id_token)
            .await
    }

    /// POSTs the ID token to the sign-in route at `path` (under the stack's origin).
    async fn sign_in_at(&self, path: &str, id_token: &str) -> (StatusCode, Value) {
        let response = self
            .http
            .post(self.url(path))
            .json(&json!({ "id_token": id_token }))
            .send()
            .await
            .unwrap();
        (response.status(), response.json().await.unwrap_or(Value::Null))
    }

    async fn get(&self, path: &str) -> reqwest::Response {
        self.http.get(self.url(path)).send().await.unwrap()
    }

    /// Sends `method path` signed with `credentials` at `at`; returns status, headers and body.
    async fn signed(
        &self,
        method: &str,
        path: &str,
        body: &[u8],
        credentials: &SigningCredentials,
        at: SystemTime,
    ) -> (StatusCode, HeaderMap, String) {
        let mut request = http::Request::builder()
            .method(method)
            .uri(self.url(path))
            .header(header::CONTENT_TYPE, "application/json")
            .body(body.to_vec())
            .unwrap();
        sign_for_gateway(&mut request, credentials, at);
        send(&self.http, request).await
    }
}

/// Signs `request` for the gateway (us-east-1, `execute-api`) as of `at`, as the CLI does.
fn sign_for_gateway(request: &mut http::Request<Vec<u8>>, credentials: &SigningCredentials, at: SystemTime) {
    sign_request(request, credentials, "us-east-1", "execute-api", at).unwrap();
}

async fn send(http: &reqwest::Client, request: http::Request<Vec<u8>>) -> (StatusCode, HeaderMap, String) {
    let response = http
        .execute(reqwest::Request::try_from(request).unwrap())
        .await
        .unwrap();
    let status = response.status();
    let headers = response.headers().clone();
    (status, headers, response.text().await.unwrap())
}

fn credentials_of(answer: &Value) -> SigningCredentials {
    let field = |name: &str| answer["credentials"][name].as_str().unwrap().to_string();
    SigningCredentials {
        access_key_id: field("accessKeyId"),
        secret_access_key: field("secretAccessKey"),
        session_token: Some(field("sessionToken")),
    }
}

fn message(body: &str) -> String {
    serde_json::from_str::<Value>(body).unwrap()["message"]
        .as_str()
        .unwrap_or_default()
        .to_string()
}

#[tokio::test]
async fn the_whole_loop_works_over_http() {
    let stack = Stack::start().await;
    let id_token = stack.code_flow("dana", "groups=[\"admins\"]").await;

    let (status, answer) = stack.sign_in(&id_token).await;
    assert_eq!(status, StatusCode::OK, "{answer}");
    assert_eq!(answer["provider"], "dev");
    assert_eq!(answer["subject"], "dana");
    assert!(
        answer["credentials"]["accessKeyId"]
            .as_str()
            .unwrap()
            .starts_with("ASIA")
    );
    let credentials = credentials_of(&answer);

    let (status, _, body) = stack
        .signed("GET", "api/whoami", b"", &credentials, SystemTime::now())
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let whoami: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(whoami["identityId"], answer["identityId"]);
    assert_eq!(whoami["subject"], "dana");
    assert_eq!(whoami["claims"]["groups"], json!(["admins"]));

    let (status, _, body) = stack
        .signed(
            "POST",
            "api/echo",
            br#"{"hello":"world"}"#,
            &credentials,
            SystemTime::now(),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(
        serde_json::from_str::<Value>(&body).unwrap(),
        json!({"hello": "world"})
    );

    // The same user signing in again keeps the same identity id.
    let again = stack.code_flow("dana", "").await;
    assert_eq!(stack.sign_in(&again).await.1["identityId"], answer["identityId"]);
}

#[tokio::test]
async fn the_gateway_refuses_what_api_gateway_refuses() {
    let stack = Stack::start().await;
    let (_, answer) = stack.sign_in(&stack.code_flow("erin", "").await).await;
    let credentials = credentials_of(&answer);

    let unsigned = stack.get("api/whoami").await;
    assert_eq!(unsigned.status(), StatusCode::FORBIDDEN);
    assert_eq!(
        message(&unsigned.text().await.unwrap()),
        "Missing Authentication Token"
    );

    let stale = SystemTime::now() - Duration::from_secs(600);
    let (status, _, body) = stack.signed("GET", "api/whoami", b"", &credentials, stale).await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    assert!(message(&body).starts_with("Signature expired"), "{body}");

    let wrong_secret = SigningCredentials {
        secret_access_key: "not-the-secret".into(),
        ..credentials_of(&answer)
    };
    let (status, _, body) = stack
        .signed("GET", "api/whoami", b"", &wrong_secret, SystemTime::now())
        .await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    assert!(
        message(&body).starts_with("The request signature we calculated does not match"),
        "{body}"
    );

    let unknown = SigningCredentials {
        access_key_id: "ASIAUNKNOWNUNKNOWN00".into(),
        ..credentials_of(&answer)
    };
    let (status, _, body) = stack
        .signed("GET", "api/whoami", b"", &unknown, SystemTime::now())
        .await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    assert_eq!(
        message(&body),
        "The security token included in the request is invalid."
    );

    // A body changed after signing.
    let mut request = http::Request::builder()
        .method("POST")
        .uri(stack.url("api/echo"))
        .body(br#"{"amount":1}"#.to_vec())
        .unwrap();
    sign_for_gateway(&mut request, &credentials, SystemTime::now());
    *request.body_mut() = br#"{"amount":1000}"#.to_vec();
    let (status, _, body) = send(&stack.http, request).await;
    assert_eq!(status, StatusCode::FORBIDDEN, "{body}");
}

#[tokio::test]
async fn a_dev_token_is_refused_by_a_provider_it_was_not_issued_for() {
    let stack = Stack::start().await;
    let id_token = stack.code_flow("frank", "").await;
    let (status, body) = stack.sign_in_with("nobody", &id_token).await;
    assert_eq!(status, StatusCode::NOT_FOUND, "{body}");
    let (status, body) = stack.sign_in(&format!("{id_token}x")).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED, "{body}");
}

#[tokio::test]
async fn upstream_apps_get_the_identity_in_headers() {
    // The user's own app: echoes the headers it received.
    let app = axum::Router::new().fallback(|headers: HeaderMap, uri: axum::http::Uri| async move {
        let seen: HashMap<String, String> = headers
            .iter()
            .filter(|(name, _)| name.as_str().starts_with("x-credbroker-"))
            .map(|(name, value)| (name.to_string(), value.to_str().unwrap_or_default().to_string()))
            .collect();
        axum::Json(json!({ "path": uri.to_string(), "headers": seen }))
    });
    let upstream = support::serve(app).await;
    let stack = Stack::start_with(DevOptions {
        upstream: Some(Url::parse(&format!("http://{upstream}")).unwrap()),
        ..DevOptions::default()
    })
    .await;
    let (_, answer) = stack.sign_in(&stack.code_flow("gina", "").await).await;
    let credentials = credentials_of(&answer);

    let mut request = http::Request::builder()
        .method("GET")
        .uri(stack.url("api/reports/7?format=html"))
        .header("x-credbroker-subject", "someone-else")
        .body(Vec::new())
        .unwrap();
    sign_for_gateway(&mut request, &credentials, SystemTime::now());
    let (status, _, body) = send(&stack.http, request).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let seen: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(seen["path"], "/reports/7?format=html");
    assert_eq!(
        seen["headers"]["x-credbroker-subject"], "gina",
        "the spoofed header must be replaced"
    );
    assert_eq!(seen["headers"]["x-credbroker-identity-id"], answer["identityId"]);
    assert_eq!(
        seen["headers"]["x-credbroker-provider"],
        "127.0.0.1:".to_string() + &stack.base.port().unwrap().to_string() + "/dev-idp"
    );
}

#[tokio::test]
async fn the_browser_client_and_config_are_served() {
    let stack = Stack::start().await;
    let index = stack.get("").await;
    assert_eq!(index.status(), StatusCode::OK);
    assert!(index.text().await.unwrap().contains("<html"), "index.html at /");
    let worker = stack.get("credbroker-sw.js").await;
    assert_eq!(worker.status(), StatusCode::OK);
    assert_eq!(worker.headers()["service-worker-allowed"], "/");

    let config: Value = stack.get("auth/config").await.json().await.unwrap();
    let dev = config["providers"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["name"] == "dev")
        .unwrap()
        .clone();
    assert_eq!(dev["kind"], "dev");
    assert_eq!(dev["clientIds"], json!(["credbroker-dev"]));
    assert_eq!(dev["authorizationEndpoint"], stack.url("dev-idp/authorize"));
    assert_eq!(dev["tokenEndpoint"], stack.url("dev-idp/token"));
    // From the dev provider's discovery document: RP-initiated logout and RFC 9207 `iss`.
    assert_eq!(dev["endSessionEndpoint"], stack.url("dev-idp/logout"));
    assert_eq!(dev["issParameterSupported"], true);
}

/// `--stage prod`: what API Gateway serves moves under `/prod/` (the client at `/prod/web/`,
/// signatures over the stage-prefixed path), the provider stays at the root, and anything else
/// gets API Gateway's 403.
#[tokio::test]
async fn under_a_stage_the_broker_gateway_and_client_are_served_under_it() {
    let stack = Stack::start_with(DevOptions {
        stage: Some("prod".to_string()),
        ..DevOptions::default()
    })
    .await;
    assert_eq!(stack.get("prod/auth/config").await.status(), StatusCode::OK);
    let index = stack.get("prod/web/").await;
    assert_eq!(index.status(), StatusCode::OK);
    assert!(
        index.text().await.unwrap().contains("<html"),
        "index.html at /prod/web/"
    );
    let worker = stack.get("prod/web/credbroker-sw.js").await;
    // The worker at /prod/web/ may control /prod/api/.
    assert_eq!(worker.headers()["service-worker-allowed"], "/");
    for outside in [
        "auth/config",
        "api/whoami",
        "",
        "index.html",
        "web/index.html",
        "prod/nothing",
    ] {
        let response = stack.get(outside).await;
        assert_eq!(response.status(), StatusCode::FORBIDDEN, "/{outside}");
        assert_eq!(
            response.json::<Value>().await.unwrap(),
            json!({ "message": "Missing Authentication Token" }),
            "/{outside}"
        );
    }

    // A navigation to a path the stage has no route for gets the template's sign-in page (this
    // API's MISSING_AUTHENTICATION_TOKEN gateway response for text/html); outside the stage no
    // gateway response of this API applies, so it stays the JSON 403.
    let navigate = |path: &str| {
        stack
            .http
            .get(stack.url(path))
            .header("accept", "text/html,application/xhtml+xml;q=0.9,*/*;q=0.8")
            .send()
    };
    for inside in ["prod/nothing", "prod/app/reports?month=11", "prod"] {
        let page = navigate(inside).await.unwrap();
        assert_eq!(page.status(), StatusCode::FORBIDDEN, "/{inside}");
        assert_eq!(
            page.headers()["x-amzn-errortype"],
            "MissingAuthenticationTokenException"
        );
        assert_eq!(page.headers()["cache-control"], "no-store");
        let html = page.text().await.unwrap();
        assert!(html.contains(r#"const stage = "prod";"#), "/{inside}: {html}");
    }
    for outside in ["nothing", "index.html", "staging/web/"] {
        let answer = navigate(outside).await.unwrap();
        assert_eq!(answer.status(), StatusCode::FORBIDDEN, "/{outside}");
        assert_eq!(
            answer.json::<Value>().await.unwrap(),
            json!({ "message": "Missing Authentication Token" }),
            "/{outside}"
        );
    }

    let (status, answer) = stack
        .sign_in_at("prod/auth/signin/dev", &stack.code_flow("gina", "").await)
        .await;
    assert_eq!(status, StatusCode::OK, "{answer}");
    let mut request = http::Request::builder()
        .method("GET")
        .uri(stack.url("prod/api/whoami"))
        .body(Vec::new())
        .unwrap();
    sign_for_gateway(&mut request, &credentials_of(&answer), SystemTime::now());
    let (status, _, body) = send(&stack.http, request).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(serde_json::from_str::<Value>(&body).unwrap()["subject"], "gina");
}

/// Runs the `credbroker` binary; returns (success, stdout, stderr).
fn credbroker(args: &[&str]) -> (bool, String, String) {
    let output = std::process::Command::new(env!("CARGO_BIN_EXE_credbroker"))
        .args(args)
        .env_remove("AWS_ACCESS_KEY_ID")
        .output()
        .expect("the credbroker binary runs");
    (
        output.status.success(),
        String::from_utf8_lossy(&output.stdout).into_owned(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

/// A stage name is what API Gateway accepts (a path segment of letters, digits, `-`, `_`).
#[test]
fn the_cli_refuses_a_stage_name_api_gateway_would_refuse() {
    for stage in ["", "../web", "prod/v1", "a b", &"x".repeat(129)] {
        let (ok, _, stderr) = credbroker(&["dev", "--listen", "127.0.0.1:0", "--stage", stage]);
        assert!(!ok, "--stage {stage:?} was accepted");
        assert!(stderr.contains("a stage name is 1 to 128 letters"), "{stderr}");
    }
}

#[tokio::test]
async fn the_cli_mints_signs_in_and_sends_signed_requests() {
    let stack = Stack::start().await;
    let base = stack.base.as_str().trim_end_matches('/').to_string();
    let idp = format!("{base}/dev-idp");
    let run = |args: &[&str]| {
        let args: Vec<String> = args.iter().map(|arg| arg.to_string()).collect();
        tokio::task::spawn_blocking(move || credbroker(&args.iter().map(String::as_str).collect::<Vec<_>>()))
    };

    let (ok, token, err) = run(&[
        "token",
        "--idp",
        &idp,
        "--sub",
        "hal",
        "--claim",
        "groups=[\"ops\"]",
    ])
    .await
    .unwrap();
    assert!(ok, "{err}");
    let token = token.trim().to_string();

    let (ok, process, err) = run(&[
        "signin",
        "--broker",
        &base,
        "--id-token",
        &token,
        "--format",
        "process",
    ])
    .await
    .unwrap();
    assert!(ok, "{err}");
    let process: Value = serde_json::from_str(&process).unwrap();
    assert_eq!(process["Version"], 1);
    assert!(process["AccessKeyId"].as_str().unwrap().starts_with("ASIA"));

    let file = std::env::temp_dir().join(format!("credbroker-cli-{}.json", std::process::id()));
    std::fs::write(&file, process.to_string()).unwrap();
    let whoami_url = format!("{base}/api/whoami");
    let (ok, body, err) = run(&["curl", "--credentials", &file.display().to_string(), &whoami_url])
        .await
        .unwrap();
    std::fs::remove_file(&file).ok();
    assert!(ok, "{err}");
    let whoami: Value = serde_json::from_str(body.trim()).unwrap();
    assert_eq!(whoami["subject"], "hal");
    assert_eq!(whoami["claims"]["groups"], json!(["ops"]));

    // Failures are one line and a non-zero exit.
    let (ok, _, err) = run(&["signin", "--broker", &base, "--id-token", "bogus"])
        .await
        .unwrap();
    assert!(!ok);
    assert_eq!(err.trim().lines().count(), 1, "{err}");
    assert!(err.contains("malformed_token"), "{err}");
    let (ok, _, err) = run(&["curl", &whoami_url]).await.unwrap();
    assert!(!ok);
    assert!(err.contains("AWS_ACCESS_KEY_ID"), "{err}");
}

#[tokio::test]
async fn only_the_broker_api_refuses_unlisted_origins() {
    let stack = Stack::start().await;
    let post = |path: &str, origin: &'static str| {
        stack
            .http
            .post(stack.url(path))
            .header(header::ORIGIN, origin)
            .header(header::CONTENT_TYPE, "application/x-www-form-urlencoded")
            .body("x=1")
            .send()
    };
    // The dev provider's own form posts carry `Origin: null` under its no-referrer policy.
    let idp = post("dev-idp/authorize", "null").await.unwrap();
    assert_ne!(idp.status(), StatusCode::FORBIDDEN);
    assert!(!idp.text().await.unwrap().contains("origin_not_allowed"));
    // The gateway answers like API Gateway (auth first) and leaves CORS to the browser.
    let api = post("api/echo", "https://evil.example").await.unwrap();
    assert!(!api.headers().contains_key(header::ACCESS_CONTROL_ALLOW_ORIGIN));
    assert_eq!(
        message(&api.text().await.unwrap()),
        "Missing Authentication Token"
    );
    // The broker refuses, and the stack's own origin is listed.
    let broker = post("auth/signin/dev", "https://evil.example").await.unwrap();
    assert_eq!(broker.status(), StatusCode::FORBIDDEN);
    let own = stack.base.origin().ascii_serialization();
    let listed = stack
        .http
        .get(stack.url("auth/config"))
        .header(header::ORIGIN, own.as_str())
        .send()
        .await
        .unwrap();
    assert_eq!(
        listed.headers()[header::ACCESS_CONTROL_ALLOW_ORIGIN],
        own.as_str()
    );
}

/// Signs `method url body` with botocore (the Python SDK's signer, installed with moto) and
/// returns the headers it set.
fn botocore_headers(
    method: &str,
    url: &str,
    body: &str,
    credentials: &SigningCredentials,
) -> Vec<(String, String)> {
    const SIGN: &str = r#"
import json, sys
from botocore.auth import SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials
args = json.load(sys.stdin)
request = AWSRequest(method=args["method"], url=args["url"], data=args["body"].encode(),
                     headers={"content-type": "application/json"})
SigV4Auth(Credentials(args["key"], args["secret"], args["token"]), "execute-api", "us-east-1").add_auth(request)
print(json.dumps(list(request.headers.items())))
"#;
    let input = json!({
        "method": method, "url": url, "body": body,
        "key": credentials.access_key_id, "secret": credentials.secret_access_key,
        "token": credentials.session_token,
    });
    let mut child = std::process::Command::new("python3")
        .args(["-c", SIGN])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .expect("python3 runs");
    std::io::Write::write_all(&mut child.stdin.take().unwrap(), input.to_string().as_bytes()).unwrap();
    let output = child.wait_with_output().unwrap();
    assert!(output.status.success(), "botocore (installed with moto) signs");
    serde_json::from_slice(&output.stdout).unwrap()
}

#[tokio::test]
async fn requests_signed_by_botocore_verify_at_the_gateway() {
    let stack = Stack::start().await;
    let (_, answer) = stack.sign_in(&stack.code_flow("ivy", "").await).await;
    let credentials = credentials_of(&answer);
    let cases = [
        ("GET", "api/whoami?b=2&a=1&empty=", ""),
        ("POST", "api/echo", r#"{"from":"botocore","unicode":"é ✓"}"#),
        ("GET", "api/app/notes", ""),
    ];
    for (method, path, body) in cases {
        let url = stack.url(path);
        let mut request = stack
            .http
            .request(method.parse().unwrap(), &url)
            .body(body.to_string());
        for (name, value) in botocore_headers(method, &url, body, &credentials) {
            request = request.header(name, value);
        }
        let response = request.send().await.unwrap();
        let status = response.status();
        assert_eq!(
            status,
            StatusCode::OK,
            "{method} {path}: {}",
            response.text().await.unwrap()
        );
    }
}

/// The parts of a compact JWS: header, claims, signing input and signature bytes.
fn jws_parts(jws: &str) -> (Value, Value, String, Vec<u8>) {
    let parts: Vec<&str> = jws.split('.').collect();
    assert_eq!(parts.len(), 3, "a compact JWS");
    let json_of =
        |part: &str| serde_json::from_slice::<Value>(&URL_SAFE_NO_PAD.decode(part).unwrap()).unwrap();
    (
        json_of(parts[0]),
        json_of(parts[1]),
        format!("{}.{}", parts[0], parts[1]),
        URL_SAFE_NO_PAD.decode(parts[2]).unwrap(),
    )
}

#[tokio::test]
async fn sign_in_answers_an_identity_assertion_verifiable_with_the_published_keys() {
    let stack = Stack::start().await;
    let (status, answer) = stack
        .sign_in(&stack.code_flow("hana", r#"groups=["admins"]"#).await)
        .await;
    assert_eq!(status, StatusCode::OK, "{answer}");
    let assertion = answer["identityAssertion"]
        .as_str()
        .expect("an identity assertion");
    let (head, claims, signing_input, signature) = jws_parts(assertion);
    assert_eq!(head["alg"], "ES256");
    assert_eq!(head["typ"], credbroker::identity::ASSERTION_TYPE);

    let keys = stack
        .http
        .get(stack.url("auth/identity-keys"))
        .send()
        .await
        .unwrap();
    assert_eq!(keys.status(), StatusCode::OK);
    let keys = credbroker::key::KeySet::from_json(&keys.bytes().await.unwrap()).unwrap();
    let key = keys
        .select(head["kid"].as_str(), credbroker::key::Algorithm::ES256)
        .unwrap();
    assert!(key.verify(
        credbroker::key::Algorithm::ES256,
        signing_input.as_bytes(),
        &signature
    ));
    let mut tampered = signing_input.clone().into_bytes();
    tampered[signing_input.len() - 2] ^= 1;
    assert!(!key.verify(credbroker::key::Algorithm::ES256, &tampered, &signature));

    // Bound to the identity id API Gateway will vouch for, and no longer-lived than the credentials.
    assert_eq!(claims["sub"], answer["identityId"]);
    assert_eq!(claims["aud"], credbroker::identity::AUDIENCE);
    assert_eq!(claims["iss"], stack.url("auth"));
    assert_eq!(claims["provider"], "dev");
    assert_eq!(claims["subject"], "hana");
    assert_eq!(claims["claims"], answer["claims"]);
    let expiration = time::OffsetDateTime::parse(
        answer["credentials"]["expiration"].as_str().unwrap(),
        &time::format_description::well_known::Rfc3339,
    )
    .unwrap();
    assert_eq!(claims["exp"], expiration.unix_timestamp());
}

#[tokio::test]
async fn upstream_apps_get_the_assertion_next_to_the_identity_id_the_gateway_verified() {
    let app = axum::Router::new().fallback(|headers: HeaderMap| async move {
        let header = |name: &str| {
            headers
                .get(name)
                .map(|v| v.to_str().unwrap_or_default().to_string())
        };
        axum::Json(json!({
            "identityId": header("x-credbroker-identity-id"),
            "assertion": header(credbroker::identity::ASSERTION_HEADER),
        }))
    });
    let upstream = support::serve(app).await;
    let stack = Stack::start_with(DevOptions {
        upstream: Some(Url::parse(&format!("http://{upstream}")).unwrap()),
        ..DevOptions::default()
    })
    .await;
    let (_, answer) = stack.sign_in(&stack.code_flow("ivan", "").await).await;
    let assertion = answer["identityAssertion"].as_str().unwrap();
    let mut request = http::Request::builder()
        .method("GET")
        .uri(stack.url("api/me"))
        .header(
            "x-credbroker-identity-id",
            "us-east-1:00000000-0000-4000-8000-00000000f0e9",
        )
        .header(credbroker::identity::ASSERTION_HEADER, assertion)
        .body(Vec::new())
        .unwrap();
    sign_for_gateway(&mut request, &credentials_of(&answer), SystemTime::now());
    let (status, _, body) = send(&stack.http, request).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let seen: Value = serde_json::from_str(&body).unwrap();
    // The caller's identity id is replaced by the one the signature proves; the assertion passes.
    assert_eq!(seen["identityId"], answer["identityId"]);
    assert_eq!(seen["assertion"], assertion);
    let (_, claims, _, _) = jws_parts(assertion);
    assert_eq!(claims["sub"], seen["identityId"]);
}

/// Two `--config` providers sharing one issuer (different audiences), which is down when the
/// stack starts: sign-ins fail while it is down and work through both providers, at the broker
/// and at the local pool, once it is up — no restart. A real pool holds one IAM OIDC provider
/// per issuer with every client id, so both audiences must pass there too.
#[tokio::test]
async fn a_configured_provider_down_at_start_works_once_up_and_shared_issuers_keep_both_audiences() {
    let port = support::free_port();
    let issuer_url = format!("http://127.0.0.1:{port}");
    let config = credbroker::config::Config::from_toml(&format!(
        r#"
[jwks]
cooldown_seconds = 1
[providers.corp]
kind = "oidc"
issuer = "{issuer_url}"
audiences = ["corp-app"]
[providers.corp-mobile]
kind = "oidc"
issuer = "{issuer_url}"
audiences = ["corp-mobile-app"]
"#
    ))
    .expect("test config is valid");
    let stack = Stack::start_with(DevOptions {
        config: Some(config),
        ..DevOptions::default()
    })
    .await;
    let key = SigningKey::generate(Algorithm::ES256, "k1");
    let token_for = |aud: &str| {
        let now = support::unix_now();
        key.sign_jwt(&json!({
            "iss": issuer_url, "sub": "ann", "aud": aud, "iat": now, "exp": now + 600,
        }))
    };
    let (status, body) = stack.sign_in_with("corp", &token_for("corp-app")).await;
    assert_eq!(body["code"], "jwks_unavailable", "{status} {body}");

    let _issuer = support::Issuer::start_at(port, &[&key]).await;
    tokio::time::sleep(Duration::from_millis(1100)).await;
    for (provider, audience) in [("corp", "corp-app"), ("corp-mobile", "corp-mobile-app")] {
        let (status, body) = stack.sign_in_with(provider, &token_for(audience)).await;
        assert_eq!(status, StatusCode::OK, "{provider}: {body}");
        assert!(body["identityId"].is_string(), "{provider}: {body}");
    }
}
