//! Shared helpers for integration tests: a real `moto_server` (Cognito Identity included), a
//! one-line way to serve an axum router on a free loopback port, [`StubCognito`], a Cognito
//! Identity endpoint that gives one fixed answer (any error, a malformed body, or none at all)
//! and records what it was sent, and [`LocalPoolServer`], a [`LocalPool`] trusting a test issuer,
//! reached through the real SDK client.
//!
//! Use it from a test file with `mod support;`. Each test binary compiles this module on its
//! own, so a binary that uses only some helpers imports it as
//! `#[allow(dead_code)] mod support;` to silence warnings about the others.
//!
//! `moto_server` comes from `pip install 'moto[server]'` (CI installs it too).

use std::net::{Ipv4Addr, SocketAddr, TcpListener};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use aws_sdk_cognitoidentity::config::{BehaviorVersion, Credentials, Region};
use credbroker::jwks::{Algorithm, JwksCache, JwksPolicy, SigningKey};
use credbroker::local::pool::{LocalPool, TrustedIssuer};
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
                issuer: Url::parse(&issuer).expect("issuer URL"),
                audiences: vec![LOCAL_CLIENT_ID.to_owned()],
                keys: Arc::new(jwks_cache(&issuer)),
            }],
            lifetime,
        );
        let jwks = json!({ "keys": [key.public_jwk()] });
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
    let listener = tokio::net::TcpListener::bind((Ipv4Addr::LOCALHOST, 0))
        .await
        .expect("the OS gives out a loopback port");
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
        let status = http::StatusCode::from_u16(status).expect("tests pass a valid status");
        StubCognito::start(Some((status, body.into()))).await
    }

    /// Accepts every request and never answers.
    pub async fn hanging() -> StubCognito {
        StubCognito::start(None).await
    }

    /// Every request received so far, oldest first.
    pub fn requests(&self) -> Vec<StubRequest> {
        self.requests
            .lock()
            .expect("no test panics while recording")
            .clone()
    }

    async fn start(answer: Option<(http::StatusCode, String)>) -> StubCognito {
        let requests = Arc::new(Mutex::new(Vec::new()));
        let recorder = Arc::clone(&requests);
        let handler = move |headers: http::HeaderMap, body: bytes::Bytes| {
            let recorder = Arc::clone(&recorder);
            let answer = answer.clone();
            async move {
                let body = serde_json::from_slice(&body).unwrap_or(serde_json::Value::Null);
                recorder
                    .lock()
                    .expect("no test panics while recording")
                    .push(StubRequest { headers, body });
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

/// A Cognito Identity error body in the JSON 1.1 protocol's shape, e.g.
/// `{"__type":"NotAuthorizedException","message":"..."}` (sent with status 400, or 500 for
/// `InternalErrorException`).
pub fn cognito_error(code: &str, message: &str) -> String {
    serde_json::json!({ "__type": code, "message": message }).to_string()
}
