//! The local identity pool through the real `aws-sdk-cognitoidentity` client over HTTP, with a
//! real test issuer serving its JWKS.

#[allow(dead_code)]
mod support;

use std::time::{Duration, UNIX_EPOCH};

use aws_sdk_cognitoidentity::operation::get_credentials_for_identity::GetCredentialsForIdentityError;
use aws_sdk_cognitoidentity::operation::get_id::GetIdError;
use credbroker::key::Algorithm;
use credbroker::local::pool::MAX_BODY_BYTES;
use credbroker::local::signing_key::SigningKey;
use serde_json::{Value, json};
use support::{LOCAL_POOL_ID as POOL_ID, LocalPoolServer, unix_now as now};

const TARGET_GET_ID: &str = "AWSCognitoIdentityService.GetId";
/// The content type of the Cognito Identity protocol.
const AMZ_JSON: &str = "application/x-amz-json-1.1";

/// A [`LocalPoolServer`] plus an SDK client pointed at its pool.
struct Stack {
    server: LocalPoolServer,
    client: aws_sdk_cognitoidentity::Client,
}

impl Stack {
    async fn start() -> Stack {
        let server = LocalPoolServer::start(Duration::from_secs(3600), |_| axum::Router::new()).await;
        let client = server.client();
        Stack { server, client }
    }

    /// The pool's Logins key for the test issuer.
    fn provider(&self) -> String {
        self.server.provider()
    }

    /// Valid claims for `sub`, to adjust per test.
    fn claims(&self, sub: &str) -> Value {
        self.server.claims(sub)
    }

    fn token(&self, sub: &str) -> String {
        self.server.key.sign_jwt(&self.claims(sub))
    }

    async fn get_id(&self, provider: &str, token: &str) -> Result<String, GetIdError> {
        let output = self
            .client
            .get_id()
            .identity_pool_id(POOL_ID)
            .logins(provider, token)
            .send()
            .await
            .map_err(|error| error.into_service_error())?;
        Ok(output
            .identity_id()
            .expect("GetId answers an identity id")
            .to_owned())
    }

    async fn get_credentials(
        &self,
        identity_id: &str,
        token: &str,
    ) -> Result<aws_sdk_cognitoidentity::types::Credentials, GetCredentialsForIdentityError> {
        let output = self
            .client
            .get_credentials_for_identity()
            .identity_id(identity_id)
            .logins(self.provider(), token)
            .send()
            .await
            .map_err(|error| error.into_service_error())?;
        assert_eq!(output.identity_id(), Some(identity_id));
        Ok(output.credentials().expect("credentials").clone())
    }

    /// A raw POST to the pool, for what the SDK never sends.
    async fn post(&self, path: &str, target: &str, content_type: &str, body: impl Into<String>) -> RawAnswer {
        let response = reqwest::Client::new()
            .post(format!("{}{path}", self.server.base))
            .header("x-amz-target", target)
            .header("content-type", content_type)
            .body(body.into())
            .send()
            .await
            .expect("the pool answers");
        let status = response.status().as_u16();
        let error_type = response
            .headers()
            .get("x-amzn-errortype")
            .and_then(|value| value.to_str().ok())
            .map(str::to_owned);
        let body: Value = response.json().await.expect("a JSON answer");
        RawAnswer {
            status,
            error_type,
            body,
        }
    }

    /// A raw `GetId` POST to the pool.
    async fn post_get_id(&self, content_type: &str, body: impl Into<String>) -> RawAnswer {
        self.post("/cognito-identity/", TARGET_GET_ID, content_type, body)
            .await
    }
}

struct RawAnswer {
    status: u16,
    error_type: Option<String>,
    body: Value,
}

impl RawAnswer {
    /// Asserts a Cognito-style error: status, header and `__type` agree.
    fn assert_error(&self, status: u16, code: &str) {
        assert_eq!(self.status, status, "{}", self.body);
        assert_eq!(self.error_type.as_deref(), Some(code));
        assert_eq!(self.body["__type"], code);
        assert!(self.body["message"].is_string(), "{}", self.body);
    }
}

/// Asserts a `NotAuthorizedException` from `GetId` whose message mentions `expected` and never
/// the token.
fn assert_not_authorized(result: Result<String, GetIdError>, token: &str, expected: &str) {
    match result {
        Err(GetIdError::NotAuthorizedException(error)) => {
            let message = error.message().unwrap_or_default();
            assert!(message.contains(expected), "{message}");
            assert!(!message.contains(token), "the message leaks the token");
        }
        other => panic!("expected NotAuthorizedException ({expected}), got {other:?}"),
    }
}

#[tokio::test]
async fn identity_ids_are_stable_per_user_and_distinct_between_users() {
    let stack = Stack::start().await;
    let provider = stack.provider();
    let alice = stack
        .get_id(&provider, &stack.token("alice"))
        .await
        .expect("GetId alice");
    let alice_again = stack
        .get_id(&provider, &stack.token("alice"))
        .await
        .expect("GetId alice");
    let bob = stack
        .get_id(&provider, &stack.token("bob"))
        .await
        .expect("GetId bob");
    assert_eq!(alice, alice_again);
    assert_ne!(alice, bob);
    for id in [&alice, &bob] {
        let uuid = id.strip_prefix("us-east-1:").expect("region prefix");
        assert_eq!(uuid.len(), 36, "{id}");
    }
    assert_eq!(stack.server.pool.identity_count(), 2);
}

#[tokio::test]
async fn credentials_are_issued_and_looked_up_with_their_identity() {
    let stack = Stack::start().await;
    let token = stack.token("alice");
    let identity_id = stack.get_id(&stack.provider(), &token).await.expect("GetId");
    let credentials = stack
        .get_credentials(&identity_id, &token)
        .await
        .expect("credentials");

    let access_key_id = credentials.access_key_id().expect("access key id");
    assert!(
        access_key_id.starts_with("ASIA") && access_key_id.len() == 20,
        "{access_key_id}"
    );
    let secret = credentials.secret_key().expect("secret key");
    assert_eq!(secret.len(), 40);
    let session_token = credentials.session_token().expect("session token");
    let expiration = credentials.expiration().expect("expiration").secs();
    let now = i64::try_from(now()).expect("fits");
    assert!(
        expiration > now + 3500 && expiration <= now + 3600,
        "{expiration} vs {now}"
    );

    let issued = stack
        .server
        .pool
        .lookup(access_key_id)
        .expect("the pool knows its credentials");
    assert_eq!(issued.credentials.secret_access_key, secret);
    assert_eq!(issued.credentials.session_token, session_token);
    assert_eq!(
        issued.credentials.expiration,
        UNIX_EPOCH + Duration::from_secs(u64::try_from(expiration).expect("positive"))
    );
    assert_eq!(issued.identity.identity_id, identity_id);
    assert_eq!(issued.identity.provider, stack.provider());
    assert_eq!(issued.identity.subject, "alice");
    assert_eq!(issued.identity.claims["email"], "alice@example.com");

    let second = stack
        .get_credentials(&identity_id, &token)
        .await
        .expect("credentials");
    assert_ne!(second.access_key_id(), Some(access_key_id), "fresh keys per call");
    assert!(stack.server.pool.lookup("ASIAAAAAAAAAAAAAAAAA").is_none());
}

#[tokio::test]
async fn custom_role_arn_must_look_like_a_role() {
    let stack = Stack::start().await;
    let token = stack.token("alice");
    let identity_id = stack.get_id(&stack.provider(), &token).await.expect("GetId");
    let send = |role: &'static str| {
        stack
            .client
            .get_credentials_for_identity()
            .identity_id(&identity_id)
            .logins(stack.provider(), &token)
            .custom_role_arn(role)
            .send()
    };
    send("arn:aws:iam::123456789012:role/credbroker-user")
        .await
        .expect("a role ARN is accepted");
    let refused = send("arn:aws:iam::123456789012:user/alice").await;
    assert!(
        matches!(
            refused.map_err(|error| error.into_service_error()),
            Err(GetCredentialsForIdentityError::InvalidParameterException(_))
        ),
        "a user ARN is refused"
    );
}

#[tokio::test]
async fn wrong_pool_is_resource_not_found() {
    let stack = Stack::start().await;
    let result = stack
        .client
        .get_id()
        .identity_pool_id("us-east-1:00000000-0000-4000-8000-000000000000")
        .logins(stack.provider(), stack.token("alice"))
        .send()
        .await
        .map_err(|error| error.into_service_error());
    assert!(
        matches!(result, Err(GetIdError::ResourceNotFoundException(_))),
        "{result:?}"
    );
}

#[tokio::test]
async fn unknown_identity_is_resource_not_found() {
    let stack = Stack::start().await;
    let result = stack
        .get_credentials(
            "us-east-1:00000000-0000-4000-8000-000000000000",
            &stack.token("alice"),
        )
        .await;
    assert!(
        matches!(
            result,
            Err(GetCredentialsForIdentityError::ResourceNotFoundException(_))
        ),
        "{result:?}"
    );
}

#[tokio::test]
async fn expired_misaddressed_or_forged_tokens_are_not_authorized() {
    let stack = Stack::start().await;
    let impostor = SigningKey::generate(Algorithm::ES256, "k1");
    let mut expired = stack.claims("alice");
    expired["iat"] = json!(now() - 7200);
    expired["exp"] = json!(now() - 3600);
    let mut for_another_client = stack.claims("alice");
    for_another_client["aud"] = json!("another-client");
    for (token, expected) in [
        (stack.server.key.sign_jwt(&expired), "expired"),
        (stack.server.key.sign_jwt(&for_another_client), "audience"),
        (impostor.sign_jwt(&stack.claims("alice")), "signature"),
    ] {
        assert_not_authorized(stack.get_id(&stack.provider(), &token).await, &token, expected);
    }
}

#[tokio::test]
async fn untrusted_issuer_is_not_authorized() {
    let stack = Stack::start().await;
    let untrusted = SigningKey::generate(Algorithm::ES256, "k1");
    let mut claims = stack.claims("alice");
    claims["iss"] = json!("http://127.0.0.1:9/evil");
    let token = untrusted.sign_jwt(&claims);
    // Under its own Logins key, the issuer is not a provider of the pool...
    assert_not_authorized(
        stack.get_id("127.0.0.1:9/evil", &token).await,
        &token,
        "not from a supported provider",
    );
    // ...and under the trusted key its `iss` gives it away.
    assert_not_authorized(
        stack.get_id(&stack.provider(), &token).await,
        &token,
        "Issuer doesn't match",
    );
}

#[tokio::test]
async fn another_users_login_gets_no_credentials() {
    let stack = Stack::start().await;
    let alice_token = stack.token("alice");
    let alice = stack
        .get_id(&stack.provider(), &alice_token)
        .await
        .expect("GetId");
    let bob_token = stack.token("bob");
    stack.get_id(&stack.provider(), &bob_token).await.expect("GetId");
    match stack.get_credentials(&alice, &bob_token).await {
        Err(GetCredentialsForIdentityError::NotAuthorizedException(error)) => {
            assert!(error.message().unwrap_or_default().contains("Logins don't match"));
        }
        other => panic!("expected NotAuthorizedException, got {other:?}"),
    }
}

#[tokio::test]
async fn several_logins_are_refused_clearly() {
    let stack = Stack::start().await;
    let result = stack
        .client
        .get_id()
        .identity_pool_id(POOL_ID)
        .logins(stack.provider(), stack.token("alice"))
        .logins("accounts.google.com", "x.y.z")
        .send()
        .await
        .map_err(|error| error.into_service_error());
    match result {
        Err(GetIdError::InvalidParameterException(error)) => {
            assert!(error.message().unwrap_or_default().contains("exactly one login"));
        }
        other => panic!("expected InvalidParameterException, got {other:?}"),
    }
}

#[tokio::test]
async fn no_logins_is_not_authorized() {
    let stack = Stack::start().await;
    let result = stack
        .client
        .get_id()
        .identity_pool_id(POOL_ID)
        .send()
        .await
        .map_err(|error| error.into_service_error());
    assert!(
        matches!(result, Err(GetIdError::NotAuthorizedException(_))),
        "{result:?}"
    );
}

#[tokio::test]
async fn pool_answers_with_and_without_trailing_slash() {
    let stack = Stack::start().await;
    let body = json!({ "IdentityPoolId": "us-east-1:other" }).to_string();
    for path in ["/cognito-identity", "/cognito-identity/"] {
        stack
            .post(path, TARGET_GET_ID, AMZ_JSON, body.clone())
            .await
            .assert_error(400, "ResourceNotFoundException");
    }
}

#[tokio::test]
async fn malformed_body_is_a_serialization_error() {
    let stack = Stack::start().await;
    let answer = stack.post_get_id(AMZ_JSON, "{\"IdentityPoolId\":").await;
    answer.assert_error(400, "SerializationException");
}

#[tokio::test]
async fn missing_member_is_an_invalid_parameter() {
    let stack = Stack::start().await;
    let answer = stack.post_get_id(AMZ_JSON, "{}").await;
    answer.assert_error(400, "InvalidParameterException");
}

#[tokio::test]
async fn wrong_content_type_is_refused() {
    let stack = Stack::start().await;
    let body = json!({ "IdentityPoolId": POOL_ID }).to_string();
    let answer = stack.post_get_id("text/plain", body).await;
    answer.assert_error(400, "SerializationException");
}

#[tokio::test]
async fn oversized_body_is_refused() {
    let stack = Stack::start().await;
    let body = json!({ "IdentityPoolId": "x".repeat(MAX_BODY_BYTES) }).to_string();
    let answer = stack.post_get_id(AMZ_JSON, body).await;
    answer.assert_error(413, "SerializationException");
}

#[tokio::test]
async fn unknown_target_is_an_unknown_operation() {
    let stack = Stack::start().await;
    for target in ["AWSCognitoIdentityService.DeleteIdentityPool", "Nonsense"] {
        let answer = stack.post("/cognito-identity/", target, AMZ_JSON, "{}").await;
        answer.assert_error(400, "UnknownOperationException");
    }
}
