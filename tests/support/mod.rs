//! Shared helpers for integration tests: a real `moto_server` (Cognito Identity included), a
//! one-line way to serve an axum router on a free loopback port, [`StubCognito`], a Cognito
//! Identity endpoint that gives one fixed answer (any error, a malformed body, or none at all)
//! and records what it was sent, and [`LocalPoolServer`], a [`LocalPool`] trusting a test issuer,
//! reached through the real SDK client.
//!
//! For the sign-in API: [`Issuer`], a test OpenID issuer whose JWKS endpoint can go down, turn
//! slow or serve garbage; [`broker_config`] and the `broker_*` functions, the real router over
//! HTTP with every provider kind; [`sign_in`], [`post`] and [`assert_problem`]; [`Tripwire`], a
//! server that counts requests nobody should make. For the dev stack: [`DevClient`].
//!
//! Use it from a test file with `mod support;`. Each test binary compiles this module on its
//! own, so a binary that uses only some helpers imports it as
//! `#[allow(dead_code)] mod support;` to silence warnings about the others.
//!
//! `moto_server` comes from `pip install 'moto[server]'` (CI installs it too).

use std::net::{Ipv4Addr, SocketAddr, TcpListener};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

use aws_sdk_cognitoidentity::config::{BehaviorVersion, Credentials, Region};
use axum::Json;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use credbroker::api;
use credbroker::broker::Broker;
use credbroker::cli::SigningCredentials;
use credbroker::config::Config;
use credbroker::jwks::{JwksCache, JwksPolicy};
use credbroker::key::Algorithm;
use credbroker::local::pool::{LocalPool, TrustedIssuer, TrustedKeys};
use credbroker::local::signing_key::SigningKey;
use credbroker::local::{DevOptions, DevStack};
use serde_json::{Value, json};
use url::Url;

/// The region [`create_identity_pool`] creates pools in.
pub const MOTO_REGION: &str = "us-east-1";

/// How long [`MotoServer::start`] waits for `moto_server` to accept connections (Python start-up
/// on a loaded CI machine can take several seconds).
const MOTO_START_TIMEOUT: Duration = Duration::from_secs(20);

/// A `moto_server` child process on a free 127.0.0.1 port, killed when dropped.
pub struct MotoServer {
    /// Its base URL, e.g. `http://127.0.0.1:40123`; use it as an endpoint override.
    pub endpoint: String,
    child: Child,
}

impl MotoServer {
    /// Starts `moto_server` and waits (at most 20 s) until it accepts connections.
    ///
    /// Panics with a hint when `moto_server` is not installed, exits early, or never answers.
    pub async fn start() -> MotoServer {
        let port = free_port();
        let child = Command::new("moto_server")
            .args(["-H", "127.0.0.1", "-p", &port.to_string()])
            .stdin(Stdio::null())
            // moto logs every request; keep test output readable.
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| {
                panic!("cannot run moto_server ({e}); install it with: pip install 'moto[server]'")
            });
        let mut server = MotoServer {
            endpoint: format!("http://127.0.0.1:{port}"),
            child,
        };
        server.wait_until_listening(port).await;
        server
    }

    async fn wait_until_listening(&mut self, port: u16) {
        let deadline = Instant::now() + MOTO_START_TIMEOUT;
        loop {
            if tokio::net::TcpStream::connect((Ipv4Addr::LOCALHOST, port))
                .await
                .is_ok()
            {
                return;
            }
            if let Ok(Some(status)) = self.child.try_wait() {
                panic!("moto_server exited before answering ({status}); is port {port} taken?");
            }
            assert!(
                Instant::now() < deadline,
                "moto_server did not answer on port {port} within {MOTO_START_TIMEOUT:?}"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
}

impl Drop for MotoServer {
    fn drop(&mut self) {
        // Errors only mean the child is already gone.
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A port that was free a moment ago (the OS picks it; a tiny race with other processes remains),
/// to start a server on or to stand for a closed port.
pub fn free_port() -> u16 {
    TcpListener::bind((Ipv4Addr::LOCALHOST, 0))
        .and_then(|listener| listener.local_addr())
        .map(|address| address.port())
        .expect("the OS gives out a loopback port")
}

/// Creates an identity pool in the moto at `endpoint` (region [`MOTO_REGION`]) and returns its id
/// (`us-east-1:UUID`). Each entry of `providers` becomes a `SupportedLoginProviders` key (with a
/// dummy app id); moto does not check tokens, so any `Logins` work later anyway.
///
/// `CreateIdentityPool` is a signed call, so this setup client (unlike the broker's) carries
/// static dummy credentials.
pub async fn create_identity_pool(endpoint: &str, providers: &[&str]) -> String {
    let config = cognito_config(endpoint)
        .credentials_provider(Credentials::new("testing", "testing", None, None, "moto"))
        .build();
    let logins = providers
        .iter()
        .map(|provider| (provider.to_string(), "credbroker-test".to_string()))
        .collect();
    let answer = aws_sdk_cognitoidentity::Client::from_conf(config)
        .create_identity_pool()
        .identity_pool_name("credbroker_test")
        .allow_unauthenticated_identities(false)
        .set_supported_login_providers(Some(logins))
        .send()
        .await
        .unwrap_or_else(|e| panic!("moto refused CreateIdentityPool: {e:?}"));
    answer.identity_pool_id
}

/// One JSON-protocol call to moto (`X-Amz-Target: {target}`), its answer (`Null` if not JSON).
/// Moto checks no signature; it routes by the credential scope of the `Authorization` header,
/// so a dummy one names `service` (`kms`, `cognito-idp`). Moto then works in us-east-1.
pub async fn moto_json(moto: &MotoServer, service: &str, target: &str, body: Value) -> Value {
    let scope = format!("testing/20260101/{MOTO_REGION}/{service}/aws4_request");
    let answer = reqwest::Client::new()
        .post(format!("{}/", moto.endpoint))
        .header("content-type", "application/x-amz-json-1.1")
        .header("x-amz-target", target)
        .header(
            "authorization",
            format!("AWS4-HMAC-SHA256 Credential={scope}, SignedHeaders=host, Signature=00"),
        )
        .body(body.to_string())
        .send()
        .await
        .expect("moto answers");
    let status = answer.status();
    let text = answer.text().await.expect("moto body");
    assert!(status.is_success(), "moto refused {target}: {status} {text}");
    serde_json::from_str(&text).unwrap_or(Value::Null)
}

/// An SDK config for the Cognito Identity endpoint at `endpoint` in [`MOTO_REGION`], without
/// credentials: `GetId` and `GetCredentialsForIdentity` are unsigned calls.
fn cognito_config(endpoint: &str) -> aws_sdk_cognitoidentity::config::Builder {
    aws_sdk_cognitoidentity::Config::builder()
        .behavior_version(BehaviorVersion::latest())
        .region(Region::new(MOTO_REGION))
        .endpoint_url(endpoint)
}

/// The identity pool id a [`LocalPoolServer`] answers to.
pub const LOCAL_POOL_ID: &str = "us-east-1:11111111-2222-4333-8444-555555555555";
/// The audience a [`LocalPoolServer`]'s pool accepts from its test issuer.
pub const LOCAL_CLIENT_ID: &str = "test-client";

/// One server on a free 127.0.0.1 port holding a test issuer (`/idp`, its JWKS at `/idp/jwks`)
/// and a [`LocalPool`] trusting that issuer (`/cognito-identity`), plus whatever routes the
/// test adds.
pub struct LocalPoolServer {
    /// Its base URL, e.g. `http://127.0.0.1:40123`.
    pub base: String,
    /// The test issuer, `{base}/idp`.
    pub issuer: String,
    /// The issuer's signing key.
    pub key: SigningKey,
    /// The pool, to look into what it issued.
    pub pool: Arc<LocalPool>,
}

impl LocalPoolServer {
    /// Starts the server; the pool issues credentials valid for `lifetime`, and `routes` (given
    /// the pool) are merged into the server's router.
    pub async fn start(
        lifetime: Duration,
        routes: impl FnOnce(Arc<LocalPool>) -> axum::Router,
    ) -> LocalPoolServer {
        let listener = tokio::net::TcpListener::bind((Ipv4Addr::LOCALHOST, 0))
            .await
            .expect("the OS gives out a loopback port");
        let address = listener.local_addr().expect("a bound listener has an address");
        let base = format!("http://{address}");
        let issuer = format!("{base}/idp");
        let key = SigningKey::generate(Algorithm::ES256, "k1");
        let pool = LocalPool::new(
            LOCAL_POOL_ID.to_owned(),
            vec![TrustedIssuer {
                issuer: credbroker::issuer::Issuer::parse(&issuer).expect("issuer URL"),
                audiences: vec![LOCAL_CLIENT_ID.to_owned()],
                keys: TrustedKeys::Fixed(Arc::new(jwks_cache(&issuer))),
            }],
            lifetime,
        );
        let jwks = SigningKey::jwks(&[&key]);
        let app = axum::Router::new()
            .route(
                "/idp/jwks",
                axum::routing::get(move || async move { axum::Json(jwks) }),
            )
            .nest_service("/cognito-identity", Arc::clone(&pool).router())
            .merge(routes(Arc::clone(&pool)));
        tokio::spawn(async move {
            // The test is over when this ends; there is nobody left to tell.
            let _ = axum::serve(listener, app).await;
        });
        LocalPoolServer {
            base,
            issuer,
            key,
            pool,
        }
    }

    /// The pool's `Logins` key for the test issuer (its URL without `http://`).
    pub fn provider(&self) -> String {
        self.issuer.trim_start_matches("http://").to_owned()
    }

    /// Valid ID token claims from the test issuer for `sub` (email `{sub}@example.com`), to
    /// adjust per test.
    pub fn claims(&self, sub: &str) -> Value {
        let now = unix_now();
        json!({
            "iss": self.issuer,
            "sub": sub,
            "aud": LOCAL_CLIENT_ID,
            "iat": now,
            "exp": now + 600,
            "email": format!("{sub}@example.com"),
        })
    }

    /// An SDK client for the pool, configured as the broker's is.
    pub fn client(&self) -> aws_sdk_cognitoidentity::Client {
        let config = cognito_config(&format!("{}/cognito-identity", self.base)).build();
        aws_sdk_cognitoidentity::Client::from_conf(config)
    }
}

/// The pool's cache of the test issuer's keys, with short test-sized bounds.
fn jwks_cache(issuer: &str) -> JwksCache {
    JwksCache::new(
        reqwest::Client::new(),
        Url::parse(&format!("{issuer}/jwks")).expect("JWKS URL"),
        JwksPolicy {
            cooldown: Duration::from_secs(1),
            timeout: Duration::from_secs(5),
            min_max_age: Duration::from_secs(60),
            max_max_age: Duration::from_secs(600),
            max_document_bytes: 64 * 1024,
            provider: "local-pool".into(),
        },
    )
}

/// Seconds since the Unix epoch, for `iat` and `exp`.
pub fn unix_now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("the clock is after 1970")
        .as_secs()
}

/// Serves `router` on a free 127.0.0.1 port in a background task and returns its address. The
/// server lives as long as the test's tokio runtime.
pub async fn serve(router: axum::Router) -> SocketAddr {
    serve_at(0, router).await
}

/// [`serve`] on 127.0.0.1:`port` (0: a free port the OS picks).
pub async fn serve_at(port: u16, router: axum::Router) -> SocketAddr {
    let listener = tokio::net::TcpListener::bind((Ipv4Addr::LOCALHOST, port))
        .await
        .expect("the loopback port is free");
    let address = listener.local_addr().expect("a bound listener has an address");
    tokio::spawn(async move {
        // The test is over when this ends; there is nobody left to tell.
        let _ = axum::serve(listener, router).await;
    });
    address
}

/// One request a [`StubCognito`] received.
#[derive(Debug, Clone)]
pub struct StubRequest {
    /// Its headers (`x-amz-target` names the operation).
    pub headers: http::HeaderMap,
    /// Its JSON body, or `Null` when the body was not JSON.
    pub body: serde_json::Value,
}

impl StubRequest {
    /// The operation called, e.g. `AWSCognitoIdentityService.GetId`.
    pub fn target(&self) -> Option<&str> {
        self.headers
            .get("x-amz-target")
            .and_then(|value| value.to_str().ok())
    }
}

/// A stand-in Cognito Identity endpoint on 127.0.0.1: it answers every request the same way
/// and records each one, so tests can count attempts and inspect what the client sent.
pub struct StubCognito {
    /// Its base URL, e.g. `http://127.0.0.1:40123`; use it as an endpoint override.
    pub endpoint: String,
    requests: Arc<Mutex<Vec<StubRequest>>>,
}

impl StubCognito {
    /// Answers every request with `status` and `body` (`application/x-amz-json-1.1`). See
    /// [`cognito_error`] for error bodies.
    pub async fn answering(status: u16, body: impl Into<String>) -> StubCognito {
        let answer = stub_answer(status, body.into());
        StubCognito::start(answer.clone(), answer).await
    }

    /// Accepts every request and never answers.
    pub async fn hanging() -> StubCognito {
        StubCognito::start(None, None).await
    }

    /// Answers `GetId` with `get_id` and every other operation (`GetCredentialsForIdentity`)
    /// with `get_credentials`, each `(status, body)`; `None` never answers. For faults in the
    /// second call of a sign-in.
    pub async fn per_operation(
        get_id: Option<(u16, String)>,
        get_credentials: Option<(u16, String)>,
    ) -> StubCognito {
        let answer =
            |given: Option<(u16, String)>| given.and_then(|(status, body)| stub_answer(status, body));
        StubCognito::start(answer(get_id), answer(get_credentials)).await
    }

    /// Every request received so far, oldest first.
    pub fn requests(&self) -> Vec<StubRequest> {
        self.requests
            .lock()
            .expect("no test panics while recording")
            .clone()
    }

    async fn start(get_id: StubAnswer, other: StubAnswer) -> StubCognito {
        let requests = Arc::new(Mutex::new(Vec::new()));
        let recorder = Arc::clone(&requests);
        let handler = move |headers: http::HeaderMap, body: bytes::Bytes| {
            let recorder = Arc::clone(&recorder);
            let request = StubRequest {
                body: serde_json::from_slice(&body).unwrap_or(serde_json::Value::Null),
                headers,
            };
            let answer = if request.target() == Some("AWSCognitoIdentityService.GetId") {
                get_id.clone()
            } else {
                other.clone()
            };
            async move {
                recorder
                    .lock()
                    .expect("no test panics while recording")
                    .push(request);
                let Some((status, body)) = answer else {
                    return std::future::pending().await;
                };
                (
                    status,
                    [(http::header::CONTENT_TYPE, "application/x-amz-json-1.1")],
                    body,
                )
            }
        };
        let address = serve(axum::Router::new().fallback(handler)).await;
        StubCognito {
            endpoint: format!("http://{address}"),
            requests,
        }
    }
}

/// What a [`StubCognito`] answers one operation with; `None` never answers.
type StubAnswer = Option<(http::StatusCode, String)>;

fn stub_answer(status: u16, body: String) -> StubAnswer {
    let status = http::StatusCode::from_u16(status).expect("tests pass a valid status");
    Some((status, body))
}

/// The identity id [`cognito_success`] answers with.
pub const STUB_IDENTITY_ID: &str = "us-east-1:0000aaaa-1111-4222-8333-444455556666";
/// The access key id [`cognito_success`] answers with.
pub const STUB_ACCESS_KEY_ID: &str = "ASIASTUBSTUBSTUBSTUB";

/// One body that answers both calls of a sign-in successfully: `GetId` reads its `IdentityId`
/// and `GetCredentialsForIdentity` its `Credentials` (the SDK skips members it does not expect),
/// so a [`StubCognito::answering`] with it is a pool that always signs in.
pub fn cognito_success(secret_access_key: &str, session_token: &str) -> String {
    json!({
        "IdentityId": STUB_IDENTITY_ID,
        "Credentials": {
            "AccessKeyId": STUB_ACCESS_KEY_ID,
            "SecretKey": secret_access_key,
            "SessionToken": session_token,
            "Expiration": unix_now() + 3600,
        },
    })
    .to_string()
}

/// A Cognito Identity error body in the JSON 1.1 protocol's shape, e.g.
/// `{"__type":"NotAuthorizedException","message":"..."}` (sent with status 400, or 500 for
/// `InternalErrorException`).
pub fn cognito_error(code: &str, message: &str) -> String {
    serde_json::json!({ "__type": code, "message": message }).to_string()
}

/// The Entra tenant the `entra` provider of [`broker_config`] allows.
pub const TENANT: &str = "72f988bf-86f1-41af-91ab-2d7cd011db47";
/// An Entra tenant outside that allowlist.
pub const OTHER_TENANT: &str = "00000000-0000-0000-0000-0000000000aa";
/// The Salesforce org the `sfdc` provider of [`broker_config`] requires.
pub const ORG: &str = "00D000000000001EAA";

/// An OpenID issuer on 127.0.0.1: discovery and JWKS, counting JWKS fetches (and when each
/// arrived), able to rotate keys, to go down, to answer slowly and to serve garbage.
#[derive(Clone)]
pub struct Issuer {
    /// Its URL, the `iss` of its tokens, e.g. `http://127.0.0.1:40123`.
    pub url: String,
    /// Answer the JWKS with 503.
    pub down: Arc<AtomicBool>,
    /// The `Cache-Control: max-age` of the JWKS, in seconds.
    pub max_age: Arc<AtomicUsize>,
    jwks: Arc<Mutex<Vec<Value>>>,
    fetches: Arc<Mutex<Vec<Instant>>>,
    /// Sent instead of the keys when set.
    garbage: Arc<Mutex<Option<String>>>,
    /// How long the JWKS endpoint waits before answering.
    delay: Arc<Mutex<Duration>>,
}

/// One RSA key (kid `rsa-1`) and an issuer publishing it, the setup most tests start from.
pub async fn issuer_with_rsa_key() -> (SigningKey, Issuer) {
    let rsa = SigningKey::generate(Algorithm::RS256, "rsa-1");
    let issuer = Issuer::start(&[&rsa]).await;
    (rsa, issuer)
}

impl Issuer {
    /// Starts an issuer publishing the public halves of `keys`.
    pub async fn start(keys: &[&SigningKey]) -> Issuer {
        Issuer::start_at(0, keys).await
    }

    /// [`Issuer::start`] on 127.0.0.1:`port` (0: any free port), for an issuer that comes up
    /// after the service that trusts it.
    pub async fn start_at(port: u16, keys: &[&SigningKey]) -> Issuer {
        let jwks = keys.iter().map(|key| key.public_jwk()).collect();
        let issuer = Issuer {
            url: String::new(),
            down: Arc::new(AtomicBool::new(false)),
            max_age: Arc::new(AtomicUsize::new(300)),
            jwks: Arc::new(Mutex::new(jwks)),
            fetches: Arc::new(Mutex::new(Vec::new())),
            garbage: Arc::new(Mutex::new(None)),
            delay: Arc::new(Mutex::new(Duration::ZERO)),
        };
        let router = axum::Router::new()
            .route("/.well-known/openid-configuration", get(discovery))
            .route("/jwks", get(jwks_document))
            .with_state(issuer.clone());
        let address = serve_at(port, router).await;
        Issuer {
            url: format!("http://{address}"),
            ..issuer
        }
    }

    /// Publishes one more key.
    pub fn add_key(&self, key: &SigningKey) {
        self.jwks
            .lock()
            .expect("no test panics holding it")
            .push(key.public_jwk());
    }

    /// Stops publishing the key with this `kid`.
    pub fn remove_key(&self, kid: &str) {
        self.jwks
            .lock()
            .expect("no test panics holding it")
            .retain(|jwk| jwk["kid"] != kid);
    }

    /// Serves `body` (as `application/json`, status 200) instead of the keys; `None` goes back
    /// to the keys.
    pub fn serve_garbage(&self, body: Option<&str>) {
        *self.garbage.lock().expect("no test panics holding it") = body.map(str::to_string);
    }

    /// Makes the JWKS endpoint wait `delay` before answering.
    pub fn delay_jwks(&self, delay: Duration) {
        *self.delay.lock().expect("no test panics holding it") = delay;
    }

    /// JWKS requests received so far.
    pub fn hits(&self) -> usize {
        self.fetch_times().len()
    }

    /// When each JWKS request arrived, oldest first.
    pub fn fetch_times(&self) -> Vec<Instant> {
        self.fetches.lock().expect("no test panics holding it").clone()
    }
}

async fn discovery(headers: HeaderMap) -> Json<Value> {
    let host = headers
        .get(header::HOST)
        .and_then(|host| host.to_str().ok())
        .unwrap_or_default();
    let url = format!("http://{host}");
    Json(json!({
        "issuer": url,
        "jwks_uri": format!("{url}/jwks"),
        "authorization_endpoint": format!("{url}/authorize"),
        "token_endpoint": format!("{url}/token"),
    }))
}

async fn jwks_document(State(issuer): State<Issuer>) -> Response {
    issuer
        .fetches
        .lock()
        .expect("no test panics holding it")
        .push(Instant::now());
    let delay = *issuer.delay.lock().expect("no test panics holding it");
    tokio::time::sleep(delay).await;
    if issuer.down.load(Ordering::SeqCst) {
        return StatusCode::SERVICE_UNAVAILABLE.into_response();
    }
    let max_age = issuer.max_age.load(Ordering::SeqCst);
    let cache_control = [(header::CACHE_CONTROL, format!("max-age={max_age}"))];
    let garbage = issuer.garbage.lock().expect("no test panics holding it").clone();
    if let Some(garbage) = garbage {
        let json = [(header::CONTENT_TYPE, "application/json".to_string())];
        return (cache_control, json, garbage).into_response();
    }
    let keys = issuer.jwks.lock().expect("no test panics holding it").clone();
    (cache_control, Json(json!({ "keys": keys }))).into_response()
}

/// A server that answers every request with `body` (as JSON) and counts them: what a token's
/// `jku` or `x5u` points at, which the broker must never fetch.
pub struct Tripwire {
    /// Its base URL.
    pub url: String,
    hits: Arc<AtomicUsize>,
}

impl Tripwire {
    /// Starts one serving `body` at every path.
    pub async fn serving(body: Value) -> Tripwire {
        let hits = Arc::new(AtomicUsize::new(0));
        let counter = Arc::clone(&hits);
        let handler = move || {
            counter.fetch_add(1, Ordering::SeqCst);
            let body = body.clone();
            async move { Json(body) }
        };
        let address = serve(axum::Router::new().fallback(handler)).await;
        Tripwire {
            url: format!("http://{address}"),
            hits,
        }
    }

    /// Requests received so far.
    pub fn hits(&self) -> usize {
        self.hits.load(Ordering::SeqCst)
    }
}

/// Valid claims for the `corp` (oidc) provider of [`broker_config`].
pub fn corp_claims(issuer: &Issuer) -> Value {
    json!({
        "iss": issuer.url,
        "aud": "corp-app",
        "sub": "user-1",
        "email": "ann@example.com",
        "groups": ["staff"],
        "iat": unix_now(),
        "exp": unix_now() + 600,
    })
}

/// `claims` with `changes` applied: each member set, or removed when its value is `null`.
pub fn with(mut claims: Value, changes: Value) -> Value {
    let (Some(members), Some(changes)) = (claims.as_object_mut(), changes.as_object()) else {
        panic!("claims and changes are JSON objects");
    };
    for (key, value) in changes {
        if value.is_null() {
            members.remove(key);
        } else {
            members.insert(key.clone(), value.clone());
        }
    }
    claims
}

/// base64url without padding of a JSON value's text: a JWT header or payload segment.
pub fn b64(value: &Value) -> String {
    use base64::Engine;
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(value.to_string())
}

/// The broker's config: every provider kind (`corp` oidc at `issuer`, `entra`, `sfdc`, `gws`,
/// `pool`), keys of the fixed-JWKS kinds pointed at `issuer`; the identity pool at
/// `pool_endpoint` with 2 attempts of 2 s; `extra` TOML appended (e.g. a `[jwks]` table).
pub fn broker_config(issuer: &Issuer, pool_endpoint: &str, pool_id: &str, extra: &str) -> Config {
    let jwks = format!("{}/jwks", issuer.url);
    Config::from_toml(&format!(
        r#"
allowed_origins = ["https://app.example.com"]
[identity_pool]
id = "{pool_id}"
endpoint = "{pool_endpoint}"
attempt_timeout_seconds = 2
max_attempts = 2
{extra}
[providers.corp]
kind = "oidc"
issuer = "{issuer}"
audiences = ["corp-app"]
require = ["email~@example\\.com$"]
claims = ["email", "groups"]

[providers.entra]
kind = "microsoft"
audiences = ["entra-app"]
tenants = ["{TENANT}"]
jwks_uri = "{jwks}"

[providers.sfdc]
kind = "salesforce"
audiences = ["sf-app"]
jwks_uri = "{jwks}"
require = ["organization_id:{ORG}"]
claims = ["organization_id"]

[providers.gws]
kind = "google"
audiences = ["g-app"]
hosted_domains = ["example.com"]
jwks_uri = "{jwks}"

[providers.pool]
kind = "cognito"
user_pool_id = "us-east-1_TestPool"
audiences = ["cognito-app"]
jwks_uri = "{jwks}"
"#,
        issuer = issuer.url,
    ))
    .expect("test config is valid")
}

/// Serves the real API router for `config` on 127.0.0.1; returns its base URL.
pub async fn start_broker(config: &Config) -> String {
    let broker = Broker::from_config(config).await.expect("broker starts");
    let address = serve(api::router(Arc::new(broker))).await;
    format!("http://{address}")
}

/// The entry for provider `name` in the broker's `GET /auth/config`.
pub async fn client_config_of(broker: &str, name: &str) -> Value {
    let config: Value = reqwest::get(format!("{broker}/auth/config"))
        .await
        .expect("the broker answers")
        .json()
        .await
        .expect("the client config is JSON");
    config["providers"]
        .as_array()
        .and_then(|providers| providers.iter().find(|p| p["name"] == name))
        .unwrap_or_else(|| panic!("{name} is listed in {config}"))
        .clone()
}

/// The pool id of brokers that never reach a real pool.
pub const UNUSED_POOL_ID: &str = "us-east-1:00000000-0000-0000-0000-000000000000";

/// A broker with [`broker_config`] whose pool is at `pool_endpoint`.
pub async fn broker_at(issuer: &Issuer, pool_endpoint: &str, extra: &str) -> String {
    start_broker(&broker_config(issuer, pool_endpoint, UNUSED_POOL_ID, extra)).await
}

/// A broker whose pool endpoint is a closed port: enough wherever no pool call happens (a
/// refused token, an envelope error, the client config).
pub async fn broker_without_pool(issuer: &Issuer) -> String {
    broker_at(issuer, "http://127.0.0.1:9", "").await
}

/// A broker whose pool endpoint is a stub answering every call the same way.
pub async fn broker_with_stub(stub: &StubCognito, issuer: &Issuer) -> String {
    broker_at(issuer, &stub.endpoint, "").await
}

/// A broker against a fresh moto pool; the moto server lives as long as the returned guard.
pub async fn broker_with_moto(issuer: &Issuer, extra: &str) -> (String, MotoServer) {
    let moto = MotoServer::start().await;
    let pool_id = create_identity_pool(&moto.endpoint, &["accounts.google.com"]).await;
    let url = start_broker(&broker_config(issuer, &moto.endpoint, &pool_id, extra)).await;
    (url, moto)
}

/// An HTTP answer: status, headers, the body as text and as JSON (`Null` when not JSON).
pub struct Answer {
    /// The status.
    pub status: StatusCode,
    /// The headers.
    pub headers: HeaderMap,
    /// The body as JSON, `Null` when it is not.
    pub body: Value,
    /// The body as text (lossy).
    pub text: String,
}

/// Sends `request` and reads the whole answer; panics when the server does not answer (a
/// handler that panics drops the connection, so this also catches panics).
pub async fn send(request: reqwest::RequestBuilder) -> Answer {
    read_answer(request.send().await.expect("the server answers")).await
}

async fn read_answer(response: reqwest::Response) -> Answer {
    let status = response.status();
    let headers = response.headers().clone();
    let bytes = response.bytes().await.expect("the whole body arrives");
    Answer {
        status,
        headers,
        body: serde_json::from_slice(&bytes).unwrap_or(Value::Null),
        text: String::from_utf8_lossy(&bytes).into_owned(),
    }
}

/// POSTs `body` as `content_type` to `url`.
pub async fn post(url: &str, content_type: &str, body: impl Into<reqwest::Body>) -> Answer {
    let request = reqwest::Client::new()
        .post(url)
        .header(header::CONTENT_TYPE, content_type)
        .body(body);
    send(request).await
}

/// `POST {broker}/auth/signin/{provider}` with `{"id_token": token}`.
pub async fn sign_in(broker: &str, provider: &str, token: &str) -> Answer {
    let body = json!({ "id_token": token }).to_string();
    post(
        &format!("{broker}/auth/signin/{provider}"),
        "application/json",
        body,
    )
    .await
}

/// Asserts a problem+json answer with this status and code.
pub fn assert_problem(answer: &Answer, status: u16, code: &str) {
    assert_eq!(answer.status.as_u16(), status, "{code}: {}", answer.body);
    assert_eq!(answer.body["code"], code, "{}", answer.body);
    assert_eq!(answer.body["status"], status);
    assert_eq!(answer.headers[header::CONTENT_TYPE], "application/problem+json");
}

/// A client of a running dev stack (in this process or the `credbroker dev` binary): mints dev
/// tokens, signs in with them, and sends SigV4-signed calls to its gateway.
pub struct DevClient {
    /// The stack's origin with a trailing `/`, e.g. `http://127.0.0.1:40123/`.
    pub base: Url,
    http: reqwest::Client,
}

impl DevClient {
    /// A client of the stack at `base`.
    pub fn new(base: Url) -> DevClient {
        let http = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .timeout(Duration::from_secs(20))
            .build()
            .expect("a client");
        DevClient { base, http }
    }

    /// Starts a dev stack in this process on a free port (credentials living `lifetime`) and
    /// returns a client of it.
    pub async fn start_stack(lifetime: Duration) -> DevClient {
        let options = DevOptions {
            listen: SocketAddr::from((Ipv4Addr::LOCALHOST, 0)),
            credential_lifetime: lifetime,
            ..DevOptions::default()
        };
        let stack = DevStack::bind(options).await.expect("the dev stack binds");
        let base = stack.base_url.clone();
        tokio::spawn(stack.serve(std::future::pending()));
        DevClient::new(base)
    }

    /// `base` joined with `path` (no leading `/`).
    pub fn url(&self, path: &str) -> String {
        self.base.join(path).expect("a relative path").to_string()
    }

    /// An ID token for `sub` from the dev provider's `/mint`.
    pub async fn mint(&self, sub: &str) -> String {
        let request = self
            .http
            .post(self.url("dev-idp/mint"))
            .json(&json!({ "sub": sub }));
        let answer = send(request).await;
        assert_eq!(answer.status, StatusCode::OK, "{}", answer.text);
        answer.body["id_token"].as_str().expect("an id_token").to_string()
    }

    /// `POST auth/signin/{provider}` with `token`.
    pub async fn sign_in(&self, provider: &str, token: &str) -> Answer {
        let url = self.url(&format!("auth/signin/{provider}"));
        send(self.http.post(url).json(&json!({ "id_token": token }))).await
    }

    /// Sends `request` as it is (signed or not).
    pub async fn send(&self, request: http::Request<Vec<u8>>) -> Answer {
        let request = reqwest::Request::try_from(request).expect("a sendable request");
        read_answer(self.http.execute(request).await.expect("the stack answers")).await
    }

    /// A request to the stack's `path`, SigV4-signed for its gateway (`us-east-1`,
    /// `execute-api`) with `credentials` as of `at`, as the CLI signs.
    pub fn signed_request(
        &self,
        method: &str,
        path: &str,
        headers: &[(&str, &str)],
        body: &[u8],
        credentials: &SigningCredentials,
        at: SystemTime,
    ) -> http::Request<Vec<u8>> {
        let mut request = http::Request::builder().method(method).uri(self.url(path));
        for (name, value) in headers {
            request = request.header(*name, *value);
        }
        let mut request = request.body(body.to_vec()).expect("a valid request");
        credbroker::cli::sign_request(&mut request, credentials, "us-east-1", "execute-api", at)
            .expect("the request can be signed");
        request
    }
}

/// The credentials of a sign-in answer, for signing.
pub fn signing_credentials(answer: &Value) -> SigningCredentials {
    let field = |name: &str| {
        answer["credentials"][name]
            .as_str()
            .unwrap_or_else(|| panic!("the answer has credentials.{name}: {answer}"))
            .to_string()
    };
    SigningCredentials {
        access_key_id: field("accessKeyId"),
        secret_access_key: field("secretAccessKey"),
        session_token: Some(field("sessionToken")),
    }
}
