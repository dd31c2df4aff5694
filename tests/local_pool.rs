//! The local identity pool through the real `aws-sdk-cognitoidentity` client over HTTP, with a
//! real test issuer serving its JWKS.

use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use aws_sdk_cognitoidentity::config::{BehaviorVersion, Region};
use aws_sdk_cognitoidentity::operation::get_credentials_for_identity::GetCredentialsForIdentityError;
use aws_sdk_cognitoidentity::operation::get_id::GetIdError;
use axum::Router;
use axum::routing::get;
use credbroker::jwks::{Algorithm, JwksCache, JwksPolicy, SigningKey};
use credbroker::local::pool::{LocalPool, MAX_BODY_BYTES, TrustedIssuer};
use serde_json::{Value, json};
use url::Url;

const POOL_ID: &str = "us-east-1:11111111-2222-4333-8444-555555555555";
const CLIENT_ID: &str = "test-client";
const TARGET_GET_ID: &str = "AWSCognitoIdentityService.GetId";

/// One server holding a test issuer (`/idp`, JWKS at `/idp/jwks`) and the pool
/// (`/cognito-identity`), plus an SDK client pointed at the pool.
struct Stack {
    pool: Arc<LocalPool>,
    client: aws_sdk_cognitoidentity::Client,
    base: String,
    issuer: String,
    key: Arc<SigningKey>,
}

impl Stack {
    async fn start() -> Stack {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind a loopback port");
        let base = format!("http://{}", listener.local_addr().expect("local address"));
        let issuer = format!("{base}/idp");
        let key = Arc::new(SigningKey::generate(Algorithm::ES256, "k1"));
        let keys = JwksCache::new(
            reqwest::Client::new(),
            Url::parse(&format!("{issuer}/jwks")).expect("JWKS URL"),
            JwksPolicy {
                cooldown: Duration::from_secs(1),
                timeout: Duration::from_secs(5),
                min_max_age: Duration::from_secs(60),
                max_max_age: Duration::from_secs(600),
                max_document_bytes: 64 * 1024,
            },
        );
        let pool = LocalPool::new(
            POOL_ID.to_owned(),
            vec![TrustedIssuer {
                issuer: Url::parse(&issuer).expect("issuer URL"),
                audiences: vec![CLIENT_ID.to_owned()],
                keys: Arc::new(keys),
            }],
            Duration::from_secs(3600),
        );
        let jwks = json!({ "keys": [key.public_jwk()] });
        let app = Router::new()
            .route("/idp/jwks", get(move || async move { axum::Json(jwks) }))
            .nest_service("/cognito-identity", Arc::clone(&pool).router());
        tokio::spawn(async move { axum::serve(listener, app).await });
        let config = aws_sdk_cognitoidentity::Config::builder()
            .behavior_version(BehaviorVersion::latest())
            .region(Region::new("us-east-1"))
            .endpoint_url(format!("{base}/cognito-identity"))
            .build();
        Stack {
            pool,
            client: aws_sdk_cognitoidentity::Client::from_conf(config),
            base,
            issuer,
            key,
        }
    }

    /// The pool's Logins key for the test issuer.
    fn provider(&self) -> String {
        self.issuer.trim_start_matches("http://").to_owned()
    }

    /// Valid claims for `sub`, to adjust per test.
    fn claims(&self, sub: &str) -> Value {
        let now = now();
        json!({
            "iss": self.issuer,
            "sub": sub,
            "aud": CLIENT_ID,
            "iat": now,
            "exp": now + 600,
            "email": format!("{sub}@example.com"),
        })
    }

    fn token(&self, sub: &str) -> String {
        self.key.sign_jwt(&self.claims(sub))
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
    async fn post(&self, path: &str, target: &str, content_type: &str, body: String) -> RawAnswer {
        let response = reqwest::Client::new()
            .post(format!("{}{path}", self.base))
            .header("x-amz-target", target)
            .header("content-type", content_type)
            .body(body)
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

fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("after the epoch")
        .as_secs()
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
    assert_eq!(stack.pool.identity_count(), 2);
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
    assert!(stack.pool.lookup("ASIAAAAAAAAAAAAAAAAA").is_none());
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
async fn expired_token_is_not_authorized() {
    let stack = Stack::start().await;
    let mut claims = stack.claims("alice");
    claims["iat"] = json!(now() - 7200);
    claims["exp"] = json!(now() - 3600);
    let token = stack.key.sign_jwt(&claims);
    assert_not_authorized(stack.get_id(&stack.provider(), &token).await, &token, "expired");
}

#[tokio::test]
async fn wrong_audience_is_not_authorized() {
    let stack = Stack::start().await;
    let mut claims = stack.claims("alice");
    claims["aud"] = json!("another-client");
    let token = stack.key.sign_jwt(&claims);
    assert_not_authorized(stack.get_id(&stack.provider(), &token).await, &token, "audience");
}

#[tokio::test]
async fn bad_signature_is_not_authorized() {
    let stack = Stack::start().await;
    let impostor = SigningKey::generate(Algorithm::ES256, "k1");
    let token = impostor.sign_jwt(&stack.claims("alice"));
    assert_not_authorized(stack.get_id(&stack.provider(), &token).await, &token, "signature");
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
            .post(path, TARGET_GET_ID, "application/x-amz-json-1.1", body.clone())
            .await
            .assert_error(404, "ResourceNotFoundException");
    }
}

#[tokio::test]
async fn malformed_body_is_a_serialization_error() {
    let stack = Stack::start().await;
    let answer = stack
        .post(
            "/cognito-identity/",
            TARGET_GET_ID,
            "application/x-amz-json-1.1",
            "{\"IdentityPoolId\":".to_owned(),
        )
        .await;
    answer.assert_error(400, "SerializationException");
}

#[tokio::test]
async fn missing_member_is_an_invalid_parameter() {
    let stack = Stack::start().await;
    let answer = stack
        .post(
            "/cognito-identity/",
            TARGET_GET_ID,
            "application/x-amz-json-1.1",
            "{}".to_owned(),
        )
        .await;
    answer.assert_error(400, "InvalidParameterException");
}

#[tokio::test]
async fn wrong_content_type_is_refused() {
    let stack = Stack::start().await;
    let body = json!({ "IdentityPoolId": POOL_ID }).to_string();
    let answer = stack
        .post("/cognito-identity/", TARGET_GET_ID, "text/plain", body)
        .await;
    answer.assert_error(400, "SerializationException");
}

#[tokio::test]
async fn oversized_body_is_refused() {
    let stack = Stack::start().await;
    let body = json!({ "IdentityPoolId": "x".repeat(MAX_BODY_BYTES) }).to_string();
    let answer = stack
        .post(
            "/cognito-identity/",
            TARGET_GET_ID,
            "application/x-amz-json-1.1",
            body,
        )
        .await;
    answer.assert_error(413, "SerializationException");
}

#[tokio::test]
async fn unknown_target_is_an_unknown_operation() {
    let stack = Stack::start().await;
    for target in ["AWSCognitoIdentityService.DeleteIdentityPool", "Nonsense"] {
        let answer = stack
            .post(
                "/cognito-identity/",
                target,
                "application/x-amz-json-1.1",
                "{}".to_owned(),
            )
            .await;
        answer.assert_error(400, "UnknownOperationException");
    }
}
