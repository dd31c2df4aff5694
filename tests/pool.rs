//! `CognitoPool` through the real AWS SDK over HTTP: against moto (the happy path) and against a
//! stub Cognito endpoint (every error shape, retries, malformed answers, a hanging server).

#[allow(dead_code)]
mod support;

use std::time::{Duration, Instant, SystemTime};

use credbroker::config::{IdentityPoolConfig, PoolMode};
use credbroker::pool::{CognitoPool, IdentityPool, Logins, PoolError, THROTTLED_RETRY_AFTER};
use support::{MotoServer, StubCognito, cognito_error, create_identity_pool};

const POOL_ID: &str = "us-east-1:0123abcd-0000-4000-8000-00000000abcd";
const IDENTITY_ID: &str = "us-east-1:9876fedc-0000-4000-8000-00000000dcba";
const ROLE_ARN: &str = "arn:aws:iam::123456789012:role/credbroker-admins";
/// Shaped like an ID token, so a leak into a message would be recognisable.
const TOKEN: &str = "eyJhbGciOiJSUzI1NiJ9.eyJzdWIiOiJ1c2VyIn0.c2lnbmF0dXJl";

fn pool_config(endpoint: &str, pool_id: &str, max_attempts: u32, timeout: u64) -> IdentityPoolConfig {
    IdentityPoolConfig {
        id: pool_id.to_string(),
        region: None,
        endpoint: Some(endpoint.parse().expect("test endpoints are URLs")),
        attempt_timeout_seconds: timeout,
        max_attempts,
        mode: PoolMode::Enhanced,
        developer_provider_name: None,
    }
}

async fn pool_at(endpoint: &str, max_attempts: u32) -> CognitoPool {
    CognitoPool::new(&pool_config(endpoint, POOL_ID, max_attempts, 5)).await
}

/// A pool making at most `max_attempts` attempts against a stub that answers every call with
/// `status` and `body`; the stub comes back too, to count and inspect what it received.
async fn pool_over_stub(
    status: u16,
    body: impl Into<String>,
    max_attempts: u32,
) -> (CognitoPool, StubCognito) {
    let stub = StubCognito::answering(status, body).await;
    let pool = pool_at(&stub.endpoint, max_attempts).await;
    (pool, stub)
}

/// The error `GetId` ends in for a Google login.
async fn get_id_error(pool: &CognitoPool) -> PoolError {
    pool.get_id(&logins("accounts.google.com")).await.unwrap_err()
}

fn logins(provider: &str) -> Logins {
    Logins::from([(provider.to_string(), TOKEN.to_string())])
}

/// The variant's name, so a table can say which one it expects.
fn kind(error: &PoolError) -> &'static str {
    match error {
        PoolError::NotAuthorized(_) => "NotAuthorized",
        PoolError::NotFound(_) => "NotFound",
        PoolError::Throttled { .. } => "Throttled",
        PoolError::Invalid(_) => "Invalid",
        PoolError::External(_) => "External",
        PoolError::Unavailable(_) => "Unavailable",
    }
}

fn is_identity_id(id: &str) -> bool {
    regex::Regex::new(r"^us-east-1:[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$")
        .expect("static regex")
        .is_match(id)
}

fn credentials_answer() -> String {
    serde_json::json!({
        "IdentityId": IDENTITY_ID,
        "Credentials": {
            "AccessKeyId": "ASIAEXAMPLEEXAMPLE",
            "SecretKey": "secret-key",
            "SessionToken": "session-token",
            "Expiration": 4_000_000_000u64,
        }
    })
    .to_string()
}

#[tokio::test]
async fn moto_signs_in_with_get_id_and_get_credentials() {
    let moto = MotoServer::start().await;
    let pool_id = create_identity_pool(&moto.endpoint, &["accounts.google.com"]).await;
    let pool = CognitoPool::new(&pool_config(&moto.endpoint, &pool_id, 3, 5)).await;
    let logins = logins("accounts.google.com");

    let identity_id = pool.get_id(&logins).await.unwrap();
    assert!(is_identity_id(&identity_id), "{identity_id}");

    let credentials = pool.get_credentials(&identity_id, &logins, None).await.unwrap();
    assert!(!credentials.access_key_id.is_empty());
    assert!(!credentials.secret_access_key.is_empty());
    assert!(!credentials.session_token.is_empty());
    assert!(credentials.expiration > SystemTime::now(), "{credentials:?}");

    let with_role = pool
        .get_credentials(&identity_id, &logins, Some(ROLE_ARN))
        .await
        .unwrap();
    assert!(!with_role.session_token.is_empty());
}

/// Real Cognito answers `ResourceNotFoundException` (see the stub tests below); moto 5.x instead
/// fails inside (a Python KeyError) and answers HTTP 500 with an HTML page, which is retried
/// and then reported as the pool being unavailable.
#[tokio::test]
async fn moto_fails_for_an_unknown_pool() {
    let moto = MotoServer::start().await;
    let pool = pool_at(&moto.endpoint, 2).await;

    let error = get_id_error(&pool).await;
    assert!(
        matches!(error, PoolError::Unavailable(ref m) if m.contains("HTTP 500")),
        "{error:?}"
    );
}

#[tokio::test]
async fn get_id_is_unsigned_and_carries_pool_id_and_logins() {
    let (pool, stub) = pool_over_stub(200, format!(r#"{{"IdentityId":"{IDENTITY_ID}"}}"#), 3).await;

    let identity_id = pool.get_id(&logins("accounts.google.com")).await.unwrap();
    assert_eq!(identity_id, IDENTITY_ID);

    let [request] = stub.requests().try_into().expect("exactly one request");
    assert_eq!(request.target(), Some("AWSCognitoIdentityService.GetId"));
    assert!(request.headers.get("authorization").is_none(), "{request:?}");
    assert!(request.headers.get("x-amz-security-token").is_none());
    assert_eq!(
        request.body,
        serde_json::json!({
            "IdentityPoolId": POOL_ID,
            "Logins": { "accounts.google.com": TOKEN },
        })
    );
}

#[tokio::test]
async fn get_credentials_is_unsigned_and_carries_identity_logins_and_role() {
    let (pool, stub) = pool_over_stub(200, credentials_answer(), 3).await;
    let logins = logins("issuer.example.com");

    let credentials = pool
        .get_credentials(IDENTITY_ID, &logins, Some(ROLE_ARN))
        .await
        .unwrap();
    assert_eq!(credentials.access_key_id, "ASIAEXAMPLEEXAMPLE");
    assert_eq!(credentials.secret_access_key, "secret-key");
    assert_eq!(credentials.session_token, "session-token");
    assert_eq!(
        credentials.expiration,
        SystemTime::UNIX_EPOCH + Duration::from_secs(4_000_000_000)
    );
    pool.get_credentials(IDENTITY_ID, &logins, None).await.unwrap();

    let [with_role, without_role] = stub.requests().try_into().expect("exactly two requests");
    assert_eq!(
        with_role.target(),
        Some("AWSCognitoIdentityService.GetCredentialsForIdentity")
    );
    assert!(with_role.headers.get("authorization").is_none(), "{with_role:?}");
    assert_eq!(
        with_role.body,
        serde_json::json!({
            "IdentityId": IDENTITY_ID,
            "Logins": { "issuer.example.com": TOKEN },
            "CustomRoleArn": ROLE_ARN,
        })
    );
    assert!(
        without_role.body.get("CustomRoleArn").is_none(),
        "{:?}",
        without_role.body
    );
}

#[tokio::test]
async fn client_errors_map_to_their_kind_without_retrying() {
    let cases = [
        ("NotAuthorizedException", "NotAuthorized"),
        ("ResourceNotFoundException", "NotFound"),
        ("InvalidParameterException", "Invalid"),
        ("InvalidIdentityPoolConfigurationException", "Invalid"),
        ("ExternalServiceException", "External"),
        ("ResourceConflictException", "Unavailable"),
    ];
    for (code, expected) in cases {
        let (pool, stub) = pool_over_stub(400, cognito_error(code, "Cognito says no."), 3).await;

        let error = pool
            .get_credentials(IDENTITY_ID, &logins("accounts.google.com"), None)
            .await
            .unwrap_err();
        assert_eq!(kind(&error), expected, "{code}: {error:?}");
        assert!(error.to_string().contains("Cognito says no."), "{code}: {error}");
        assert_eq!(stub.requests().len(), 1, "{code} is not worth retrying");
    }
}

#[tokio::test]
async fn namespaced_error_types_are_recognised() {
    let code = "com.amazonaws.cognito.identity.model#NotAuthorizedException";
    let (pool, _stub) = pool_over_stub(400, cognito_error(code, "Invalid login token."), 3).await;

    let error = get_id_error(&pool).await;
    assert!(
        matches!(error, PoolError::NotAuthorized(ref m) if m == "Invalid login token."),
        "{error:?}"
    );
}

#[tokio::test]
async fn a_token_echoed_in_a_message_is_redacted() {
    let message = format!("Invalid login token. Token '{TOKEN}' is not valid.");
    let (pool, _stub) = pool_over_stub(400, cognito_error("NotAuthorizedException", &message), 3).await;

    let error = get_id_error(&pool).await;
    let shown = format!("{error} {error:?}");
    assert!(!shown.contains("eyJ"), "{shown}");
    assert!(
        matches!(error, PoolError::NotAuthorized(ref m) if m == "Invalid login token. Token <redacted> is not valid."),
        "{error:?}"
    );
}

#[tokio::test]
async fn throttling_is_retried_max_attempts_times_then_reported() {
    for code in ["TooManyRequestsException", "LimitExceededException"] {
        let (pool, stub) = pool_over_stub(400, cognito_error(code, "Rate exceeded"), 3).await;

        let error = get_id_error(&pool).await;
        assert!(
            matches!(error, PoolError::Throttled { retry_after } if retry_after == THROTTLED_RETRY_AFTER),
            "{code}: {error:?}"
        );
        assert_eq!(stub.requests().len(), 3, "{code}");
    }
}

#[tokio::test]
async fn server_errors_are_retried_then_unavailable() {
    let cases = [
        (
            500,
            cognito_error("InternalErrorException", "Service error"),
            "InternalErrorException",
        ),
        // A gateway's error page, without a Cognito error code.
        (503, "<html>Service Unavailable</html>".to_string(), "HTTP 503"),
    ];
    for (status, body, mentioned) in cases {
        let (pool, stub) = pool_over_stub(status, body, 2).await;

        let error = get_id_error(&pool).await;
        assert!(
            matches!(error, PoolError::Unavailable(ref m) if m.contains(mentioned)),
            "{status}: {error:?}"
        );
        assert_eq!(stub.requests().len(), 2, "{status}");
    }
}

#[tokio::test]
async fn unparseable_answers_and_bad_identity_ids_are_unavailable() {
    for body in ["{not json", r#"{"IdentityId":"<script>"}"#] {
        let (pool, _stub) = pool_over_stub(200, body, 3).await;

        let error = get_id_error(&pool).await;
        assert!(
            matches!(error, PoolError::Unavailable(ref m) if m.starts_with("malformed answer")),
            "{body}: {error:?}"
        );
    }
}

#[tokio::test]
async fn an_answer_without_credentials_is_unavailable() {
    let (pool, _stub) = pool_over_stub(200, format!(r#"{{"IdentityId":"{IDENTITY_ID}"}}"#), 3).await;

    let error = pool
        .get_credentials(IDENTITY_ID, &logins("accounts.google.com"), None)
        .await
        .unwrap_err();
    assert!(
        matches!(error, PoolError::Unavailable(ref m) if m == "malformed answer: no Credentials"),
        "{error:?}"
    );
}

/// A correctness bound ("nothing hangs"), not a speed goal: 2 attempts of 1 s plus backoff
/// end in about 3 s, and the limit is far above that.
#[tokio::test]
async fn a_hanging_pool_is_unavailable_in_bounded_time() {
    let stub = StubCognito::hanging().await;
    let pool = CognitoPool::new(&pool_config(&stub.endpoint, POOL_ID, 2, 1)).await;

    let started = Instant::now();
    let error = get_id_error(&pool).await;
    assert!(
        started.elapsed() < Duration::from_secs(15),
        "{:?}",
        started.elapsed()
    );
    assert!(
        matches!(error, PoolError::Unavailable(ref m) if m.contains("timed out")),
        "{error:?}"
    );
    assert_eq!(stub.requests().len(), 2, "the timed-out attempt is retried once");
}

#[tokio::test]
async fn a_closed_port_is_unavailable() {
    let closed = support::free_port();
    let pool = pool_at(&format!("http://127.0.0.1:{closed}"), 2).await;

    let error = get_id_error(&pool).await;
    assert!(
        matches!(error, PoolError::Unavailable(ref m) if m.contains("connection failed")),
        "{error:?}"
    );
}
