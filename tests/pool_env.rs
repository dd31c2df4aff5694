//! The standard `AWS_ENDPOINT_URL_COGNITO_IDENTITY` variable steers `CognitoPool` when the config
//! names no endpoint, and a configured endpoint wins over it. Environment variables are
//! process-global, so this lives alone in its own test binary, with a single test.

#[allow(dead_code)]
mod support;

use credbroker::config::{IdentityPoolConfig, PoolMode};
use credbroker::pool::{CognitoPool, IdentityPool, Logins};
use support::StubCognito;

const POOL_ID: &str = "us-east-1:0123abcd-0000-4000-8000-00000000abcd";
const IDENTITY_ANSWER: &str = r#"{"IdentityId":"us-east-1:9876fedc-0000-4000-8000-00000000dcba"}"#;

fn pool_config(endpoint: Option<&str>) -> IdentityPoolConfig {
    IdentityPoolConfig {
        id: POOL_ID.to_string(),
        region: None,
        endpoint: endpoint.map(|url| url.parse().expect("test endpoints are URLs")),
        attempt_timeout_seconds: 5,
        max_attempts: 1,
        mode: PoolMode::Enhanced,
        developer_provider_name: None,
    }
}

#[tokio::test]
async fn the_endpoint_env_variable_applies_unless_an_endpoint_is_configured() {
    let from_env = StubCognito::answering(200, IDENTITY_ANSWER).await;
    let configured = StubCognito::answering(200, IDENTITY_ANSWER).await;
    // SAFETY: this binary's only test sets the variable before any SDK client reads it, and the
    // current-thread runtime runs nothing else that reads the environment concurrently.
    unsafe { std::env::set_var("AWS_ENDPOINT_URL_COGNITO_IDENTITY", &from_env.endpoint) };
    let logins = Logins::from([("accounts.google.com".to_string(), "token".to_string())]);

    let unset = CognitoPool::new(&pool_config(None)).await;
    unset.get_id(&logins).await.unwrap();
    assert_eq!(from_env.requests().len(), 1, "the variable is honoured");

    let explicit = CognitoPool::new(&pool_config(Some(&configured.endpoint))).await;
    explicit.get_id(&logins).await.unwrap();
    assert_eq!(configured.requests().len(), 1, "the configured endpoint wins");
    assert_eq!(from_env.requests().len(), 1);
}
