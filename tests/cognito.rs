//! The `cognito` kind and the bearer authorizer against tokens from a Cognito user pool that
//! nobody on this project wrote: moto server's `cognito-idp` (user pool, app client, groups,
//! `custom:` attributes, `AdminCreateUser` / `AdminSetUserPassword`, `InitiateAuth` with
//! `USER_PASSWORD_AUTH`), which signs real RS256 ID and access tokens shaped as AWS shapes them
//! (access tokens: `token_use: access`, `client_id`, `scope`, no `aud`) and serves its JWKS at
//! `/{user pool id}/.well-known/jwks.json`. Tokens name the real issuer
//! `https://cognito-idp.us-east-1.amazonaws.com/{pool}`, so the providers point `jwks_uri` at moto.

#[allow(dead_code)]
mod support;

use credbroker::authorizer::{Authorizer, AuthorizerEvent, Refusal};
use credbroker::config::Config;
use credbroker::verifier::Verifier;
use lambda_http::aws_lambda_events::iam::IamPolicyEffect;
use serde_json::{Value, json};
use support::{MotoServer, assert_problem, create_identity_pool, moto_json, sign_in, start_broker};

const METHOD_ARN: &str = "arn:aws:execute-api:us-east-1:123456789012:api1/prod/GET/reports/7";

/// One `cognito-idp` JSON call to moto.
async fn idp(moto: &MotoServer, action: &str, body: Value) -> Value {
    let target = format!("AWSCognitoIdentityProviderService.{action}");
    moto_json(moto, "cognito-idp", &target, body).await
}

/// A user pool with an app client, a `custom:tenant` attribute and the groups `admins` and
/// `users`, and two users: `alice` (admins, tenant acme) and `bob` (users, tenant other).
struct Pool {
    moto: MotoServer,
    id: String,
    client_id: String,
}

impl Pool {
    async fn create() -> Pool {
        let moto = MotoServer::start().await;
        let pool = idp(
            &moto,
            "CreateUserPool",
            json!({
                "PoolName": "credbroker-test",
                "Schema": [{"Name": "tenant", "AttributeDataType": "String", "Mutable": true}],
            }),
        )
        .await;
        let id = pool["UserPool"]["Id"].as_str().expect("pool id").to_string();
        let client = idp(
            &moto,
            "CreateUserPoolClient",
            json!({
                "UserPoolId": id,
                "ClientName": "web",
                "ExplicitAuthFlows": ["ALLOW_USER_PASSWORD_AUTH", "ALLOW_REFRESH_TOKEN_AUTH"],
            }),
        )
        .await;
        let client_id = client["UserPoolClient"]["ClientId"]
            .as_str()
            .expect("client id")
            .to_string();
        let pool = Pool { moto, id, client_id };
        for group in ["admins", "users"] {
            pool.call("CreateGroup", json!({"GroupName": group})).await;
        }
        pool.add_user("alice", "acme", "admins").await;
        pool.add_user("bob", "other", "users").await;
        pool
    }

    async fn call(&self, action: &str, mut body: Value) -> Value {
        body["UserPoolId"] = json!(self.id);
        idp(&self.moto, action, body).await
    }

    async fn add_user(&self, name: &str, tenant: &str, group: &str) {
        self.call(
            "AdminCreateUser",
            json!({
                "Username": name,
                "UserAttributes": [
                    {"Name": "email", "Value": format!("{name}@example.com")},
                    {"Name": "custom:tenant", "Value": tenant},
                ],
                "MessageAction": "SUPPRESS",
            }),
        )
        .await;
        self.call(
            "AdminSetUserPassword",
            json!({"Username": name, "Password": "Secret-Passw0rd!", "Permanent": true}),
        )
        .await;
        self.call(
            "AdminAddUserToGroup",
            json!({"Username": name, "GroupName": group}),
        )
        .await;
    }

    /// `InitiateAuth` with the user's password: `(id token, access token)`.
    async fn tokens(&self, name: &str) -> (String, String) {
        let answer = idp(
            &self.moto,
            "InitiateAuth",
            json!({
                "ClientId": self.client_id,
                "AuthFlow": "USER_PASSWORD_AUTH",
                "AuthParameters": {"USERNAME": name, "PASSWORD": "Secret-Passw0rd!"},
            }),
        )
        .await;
        let result = &answer["AuthenticationResult"];
        let token = |field: &str| result[field].as_str().expect(field).to_string();
        (token("IdToken"), token("AccessToken"))
    }

    fn issuer(&self) -> String {
        format!("https://cognito-idp.us-east-1.amazonaws.com/{}", self.id)
    }

    /// `[providers.pool]` for this pool, with `extra` settings.
    fn provider_toml(&self, extra: &str) -> String {
        format!(
            "[providers.pool]\nkind = \"cognito\"\nuser_pool_id = \"{id}\"\n\
             audiences = [\"{client}\"]\njwks_uri = \"{moto}/{id}/.well-known/jwks.json\"\n\
             claims = [\"email\", \"cognito:groups\", \"custom:tenant\"]\n{extra}\n",
            id = self.id,
            client = self.client_id,
            moto = self.moto.endpoint,
        )
    }
}

fn payload(token: &str) -> Value {
    use base64::Engine;
    let part = token.split('.').nth(1).expect("a JWT");
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(part)
        .expect("base64url");
    serde_json::from_slice(&bytes).expect("JSON payload")
}

#[tokio::test]
async fn moto_tokens_look_like_cognitos() {
    let pool = Pool::create().await;
    let (id_token, access_token) = pool.tokens("alice").await;
    let id = payload(&id_token);
    assert_eq!(id["iss"], pool.issuer());
    assert_eq!(id["token_use"], "id");
    assert_eq!(id["aud"], pool.client_id);
    assert_eq!(id["cognito:groups"], json!(["admins"]));
    assert_eq!(id["custom:tenant"], "acme");
    let access = payload(&access_token);
    assert_eq!(access["token_use"], "access");
    assert_eq!(access["client_id"], pool.client_id);
    assert!(access.get("aud").is_none(), "{access}");
}

#[tokio::test]
async fn cognito_sign_in_with_group_and_tenant_rules() {
    let pool = Pool::create().await;
    let identity_pool = create_identity_pool(
        &pool.moto.endpoint,
        &[&format!("cognito-idp.us-east-1.amazonaws.com/{}", pool.id)],
    )
    .await;
    let config = Config::from_toml(&format!(
        "[identity_pool]\nid = \"{identity_pool}\"\nendpoint = \"{}\"\n{}",
        pool.moto.endpoint,
        pool.provider_toml("require = [\"cognito:groups:admins\", \"custom:tenant:acme\"]"),
    ))
    .expect("config");
    let broker = start_broker(&config).await;

    let (alice_id, alice_access) = pool.tokens("alice").await;
    let answer = sign_in(&broker, "pool", &alice_id).await;
    assert_eq!(answer.status, 200, "{}", answer.text);
    assert_eq!(answer.body["claims"]["cognito:groups"], json!(["admins"]));
    assert_eq!(answer.body["claims"]["custom:tenant"], "acme");
    assert!(
        answer.body["identityId"]
            .as_str()
            .is_some_and(|id| id.starts_with("us-east-1:"))
    );

    // An access token at sign-in: the token type is what is wrong, not a missing `aud`.
    let access = sign_in(&broker, "pool", &alice_access).await;
    assert_problem(&access, 401, "wrong_token_use");

    let (bob_id, _) = pool.tokens("bob").await;
    let denied = sign_in(&broker, "pool", &bob_id).await;
    assert_problem(&denied, 403, "claim_rule_denied");
    assert!(denied.text.contains("cognito:groups:admins"), "{}", denied.text);
}

/// The bearer authorizer: rules on `cognito:groups` and `custom:tenant`, access tokens opted in.
async fn authorizer_for(pool: &Pool, provider_extra: &str) -> (Verifier, Authorizer) {
    let config = Config::from_toml(&format!(
        "{}\n[[authorizer.allow]]\nroutes = [\"GET /me\"]\n\
         [[authorizer.allow]]\nwhen = \"cognito:groups:admins\"\nroutes = [\"* /admin/*\"]\n\
         [[authorizer.allow]]\nwhen = \"custom:tenant:acme\"\nroutes = [\"GET /tenants/acme/*\"]\n",
        pool.provider_toml(provider_extra),
    ))
    .expect("an authorizer config without [identity_pool] is valid");
    assert!(config.identity_pool.is_none());
    let verifier = Verifier::from_config(&config).expect("verifier");
    let authorizer = Authorizer::new(config.require_authorizer().expect("[authorizer]"));
    (verifier, authorizer)
}

fn event(token: &str) -> AuthorizerEvent {
    serde_json::from_value(json!({
        "type": "REQUEST",
        "methodArn": METHOD_ARN,
        "headers": {"Authorization": format!("Bearer {token}")},
        "requestContext": {},
    }))
    .expect("event")
}

fn allowed_routes(answer: &credbroker::authorizer::AuthorizerResponse) -> Vec<String> {
    let statement = &answer.policy_document.statement[0];
    assert_eq!(statement.effect, IamPolicyEffect::Allow);
    let prefix = "arn:aws:execute-api:us-east-1:123456789012:api1/prod/";
    statement
        .resource
        .iter()
        .map(|arn| arn.strip_prefix(prefix).expect("stage ARN").to_string())
        .collect()
}

#[tokio::test]
async fn the_authorizer_reads_cognito_groups_and_custom_attributes() {
    let pool = Pool::create().await;
    let (verifier, authorizer) = authorizer_for(&pool, "").await;
    let (alice_id, alice_access) = pool.tokens("alice").await;
    let (bob_id, _) = pool.tokens("bob").await;

    let alice = authorizer.authorize(&verifier, &event(&alice_id)).await.unwrap();
    assert_eq!(
        allowed_routes(&alice),
        ["GET/me", "*/admin/*", "GET/tenants/acme/*"]
    );
    assert_eq!(alice.context["issuer"], pool.issuer());
    let bob = authorizer.authorize(&verifier, &event(&bob_id)).await.unwrap();
    assert_eq!(allowed_routes(&bob), ["GET/me"]);
    // A TOKEN authorizer's event with the bare token, as the Python authorizer's clients send it.
    let token_event: AuthorizerEvent = serde_json::from_value(json!({
        "type": "TOKEN", "methodArn": METHOD_ARN, "authorizationToken": bob_id,
    }))
    .expect("event");
    let bare = authorizer.authorize(&verifier, &token_event).await.unwrap();
    assert_eq!(allowed_routes(&bare), ["GET/me"]);

    // Not opted in: an access token is refused (401), never silently treated as an ID token.
    let refused = authorizer.authorize(&verifier, &event(&alice_access)).await;
    assert_eq!(refused.unwrap_err(), Refusal::Unauthorized);
}

#[tokio::test]
async fn opted_in_access_tokens_are_checked_for_client_and_scope() {
    let pool = Pool::create().await;
    let (alice_id, alice_access) = pool.tokens("alice").await;

    let (verifier, authorizer) = authorizer_for(&pool, "accept_access_tokens = true").await;
    let alice = authorizer
        .authorize(&verifier, &event(&alice_access))
        .await
        .unwrap();
    // Access tokens carry `cognito:groups` but no custom attributes: only the group rule holds.
    assert_eq!(allowed_routes(&alice), ["GET/me", "*/admin/*"]);
    let by_id = authorizer.authorize(&verifier, &event(&alice_id)).await.unwrap();
    assert_eq!(
        allowed_routes(&by_id),
        ["GET/me", "*/admin/*", "GET/tenants/acme/*"]
    );

    let scoped = "accept_access_tokens = true\naccess_token_scopes = [\"aws.cognito.signin.user.admin\"]";
    let (verifier, authorizer) = authorizer_for(&pool, scoped).await;
    assert!(
        authorizer
            .authorize(&verifier, &event(&alice_access))
            .await
            .is_ok()
    );
    let missing = "accept_access_tokens = true\naccess_token_scopes = [\"https://api.example.com/read\"]";
    let (verifier, authorizer) = authorizer_for(&pool, missing).await;
    // RFC 6750 §3.1: a valid token short of scope is refused with 403, an explicit Deny.
    let refused = authorizer
        .authorize(&verifier, &event(&alice_access))
        .await
        .unwrap();
    assert_eq!(refused.policy_document.statement[0].effect, IamPolicyEffect::Deny);
    let direct = verifier.verify_bearer(&alice_access).await.unwrap_err();
    assert_eq!(direct.code(), "insufficient_scope");
    assert_eq!(direct.status(), 403);

    // Another app client's access token: its `client_id` is not one of `audiences`.
    let other = idp(
        &pool.moto,
        "CreateUserPoolClient",
        json!({"UserPoolId": pool.id, "ClientName": "other", "ExplicitAuthFlows": ["ALLOW_USER_PASSWORD_AUTH"]}),
    )
    .await;
    let other_client = other["UserPoolClient"]["ClientId"].as_str().unwrap();
    let answer = idp(
        &pool.moto,
        "InitiateAuth",
        json!({
            "ClientId": other_client,
            "AuthFlow": "USER_PASSWORD_AUTH",
            "AuthParameters": {"USERNAME": "alice", "PASSWORD": "Secret-Passw0rd!"},
        }),
    )
    .await;
    let foreign = answer["AuthenticationResult"]["AccessToken"].as_str().unwrap();
    let (verifier, _) = authorizer_for(&pool, "accept_access_tokens = true").await;
    let error = verifier.verify_bearer(foreign).await.unwrap_err();
    assert_eq!(error.code(), "wrong_audience");
}

#[tokio::test]
async fn auth_config_gives_the_hosted_ui_endpoints_without_discovery() {
    let pool = Pool::create().await;
    let config = Config::from_toml(&format!(
        "[identity_pool]\nid = \"us-east-1:00000000-0000-0000-0000-000000000000\"\n{}",
        pool.provider_toml("hosted_ui_domain = \"myapp.auth.us-east-1.amazoncognito.com\""),
    ))
    .expect("config");
    let broker = start_broker(&config).await;
    // The issuer is AWS's real one, which this machine cannot reach: the endpoints come from
    // the configured domain alone.
    let provider = support::client_config_of(&broker, "pool").await;
    assert_eq!(
        provider["authorizationEndpoint"], "https://myapp.auth.us-east-1.amazoncognito.com/oauth2/authorize",
        "{provider}"
    );
    assert_eq!(
        provider["tokenEndpoint"],
        "https://myapp.auth.us-east-1.amazoncognito.com/oauth2/token"
    );
    assert_eq!(provider["issuer"], pool.issuer());
}
