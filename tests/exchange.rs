//! The identity-pool exchange in both pool modes (issue 13): developer identities through the
//! real SDK against moto and the local pool, the signed call checked by independent verifiers
//! (moto's IAM check, which recomputes with botocore's signer, and botocore-signed requests at
//! the local pool), renewal with `identity_id` and how many Cognito calls each path makes,
//! throttling, and rules that hold when the broker is bypassed.

#[allow(dead_code)]
mod support;

use std::net::{Ipv4Addr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use aws_credential_types::Credentials;
use credbroker::broker::Broker;
use credbroker::config::{Config, IdentityPoolConfig, PoolMode};
use credbroker::local::pool::{DeveloperProvider, LocalPool, PoolLoad, Quotas};
use credbroker::local::{DevOptions, DevStack};
use credbroker::pool::{CognitoPool, IdentityPool, PoolError};
use credbroker::tags::PrincipalTags;
use reqwest::StatusCode;
use serde_json::{Value, json};
use support::{MotoServer, broker_config, corp_claims, issuer_with_rsa_key, send, serve, with};

const DEVELOPER_PROVIDER: &str = "login.credbroker";
const POOL_ID: &str = "us-east-1:22222222-3333-4444-8555-666666666666";
const ACCESS_KEY: &str = "AKIAEXCHANGETEST0001";
const SECRET_KEY: &str = "exchange-test-secret-key-0000000000000000";

fn developer_pool_config(endpoint: &str, pool_id: &str) -> IdentityPoolConfig {
    IdentityPoolConfig {
        id: pool_id.to_string(),
        region: None,
        endpoint: Some(endpoint.parse().expect("test endpoints are URLs")),
        attempt_timeout_seconds: 5,
        max_attempts: 2,
        mode: PoolMode::Developer,
        developer_provider_name: Some(DEVELOPER_PROVIDER.to_string()),
    }
}

fn credentials(secret: &str) -> Credentials {
    Credentials::new(ACCESS_KEY, secret, None, None, "exchange-test")
}

/// The Python that runs `moto_server` (it has botocore and boto3): the `python3` beside the real
/// `moto_server` on `PATH` (`tests/run` links it from its virtualenv), else `python3`.
fn moto_python() -> std::path::PathBuf {
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .map(|dir| dir.join("moto_server"))
        .find(|candidate| candidate.is_file())
        .and_then(|found| std::fs::canonicalize(found).ok())
        .and_then(|real| real.parent().map(|dir| dir.join("python3")))
        .filter(|python| python.is_file())
        .unwrap_or_else(|| "python3".into())
}

/// Runs a Python snippet with [`moto_python`] and parses its JSON output.
fn python(script: &str, input: &Value) -> Value {
    use std::io::Write;
    let mut child = std::process::Command::new(moto_python())
        .args(["-c", script])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .expect("python3 runs");
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(input.to_string().as_bytes())
        .expect("input written");
    let output = child.wait_with_output().expect("python3 finishes");
    assert!(output.status.success(), "the Python helper succeeds");
    serde_json::from_slice(&output.stdout).expect("the Python helper prints JSON")
}

/// Sets moto up as AWS would be for a developer-mode broker — an IAM user allowed only
/// `GetOpenIdTokenForDeveloperIdentity`, its access key, a pool with a developer provider —
/// and then turns on moto's request authentication, so from then on every signed call is
/// recomputed with botocore's SigV4 signer and checked against the user's IAM policy.
fn moto_with_iam_checks(endpoint: &str) -> Value {
    const SETUP: &str = r#"
import json, sys, urllib.request, boto3
endpoint = json.load(sys.stdin)["endpoint"]
session = boto3.session.Session(aws_access_key_id="setup", aws_secret_access_key="setup", region_name="us-east-1")
iam = session.client("iam", endpoint_url=endpoint)
iam.create_user(UserName="broker")
iam.put_user_policy(UserName="broker", PolicyName="developer-identities", PolicyDocument=json.dumps({
    "Version": "2012-10-17",
    "Statement": [{"Effect": "Allow", "Action": "cognito-identity:GetOpenIdTokenForDeveloperIdentity", "Resource": "*"}],
}))
key = iam.create_access_key(UserName="broker")["AccessKey"]
pool = session.client("cognito-identity", endpoint_url=endpoint).create_identity_pool(
    IdentityPoolName="credbroker_developer", AllowUnauthenticatedIdentities=False,
    DeveloperProviderName="login.credbroker")
urllib.request.urlopen(urllib.request.Request(endpoint + "/moto-api/reset-auth", data=b"0", method="POST",
                                              headers={"Content-Type": "text/plain"}))
print(json.dumps({"pool_id": pool["IdentityPoolId"], "access_key_id": key["AccessKeyId"],
                  "secret_access_key": key["SecretAccessKey"]}))
"#;
    python(SETUP, &json!({ "endpoint": endpoint }))
}

#[tokio::test]
async fn moto_checks_the_developer_call_signature_and_iam_permission() {
    let moto = MotoServer::start().await;
    let setup = moto_with_iam_checks(&moto.endpoint);
    let pool_id = setup["pool_id"].as_str().expect("pool id");
    let config = developer_pool_config(&moto.endpoint, pool_id);
    let key = |secret: &str| {
        Credentials::new(
            setup["access_key_id"].as_str().expect("key id"),
            secret,
            None,
            None,
            "moto-iam",
        )
    };
    let tags = PrincipalTags::from([("groups".to_string(), ":admins:".to_string())]);

    let signed =
        CognitoPool::with_credentials(&config, key(setup["secret_access_key"].as_str().expect("secret")))
            .await;
    let login = signed
        .developer_login(DEVELOPER_PROVIDER, "user-hash", &tags)
        .await
        .expect("botocore's recomputation agrees with the SDK's signature");
    assert!(login.identity_id.starts_with("us-east-1:"), "{login:?}");
    assert!(!login.token.is_empty());

    let wrong_secret = CognitoPool::with_credentials(&config, key("not-the-secret")).await;
    let refused = wrong_secret
        .developer_login(DEVELOPER_PROVIDER, "user-hash", &tags)
        .await
        .expect_err("a signature over the wrong secret is refused");
    // moto answers its IAM refusal (SignatureDoesNotMatch) as an XML 403, which the JSON
    // protocol client cannot read; real Cognito answers JSON. Either way: no login.
    assert!(
        matches!(&refused, PoolError::Unavailable(message) if message.contains("HTTP 403")),
        "{refused:?}"
    );
}

#[tokio::test]
async fn the_broker_signs_in_through_moto_in_developer_mode() {
    let (key, issuer) = issuer_with_rsa_key().await;
    let moto = MotoServer::start().await;
    let pool_id = python(
        r#"
import json, sys, boto3
endpoint = json.load(sys.stdin)["endpoint"]
client = boto3.client("cognito-identity", endpoint_url=endpoint, region_name="us-east-1",
                      aws_access_key_id="testing", aws_secret_access_key="testing")
print(json.dumps(client.create_identity_pool(IdentityPoolName="credbroker_developer",
      AllowUnauthenticatedIdentities=False, DeveloperProviderName="login.credbroker")["IdentityPoolId"]))
"#,
        &json!({ "endpoint": moto.endpoint }),
    );
    let pool_id = pool_id.as_str().expect("pool id");
    let config = broker_config(
        &issuer,
        &moto.endpoint,
        pool_id,
        &format!("mode = \"developer\"\ndeveloper_provider_name = \"{DEVELOPER_PROVIDER}\"\n"),
    );
    let pool = CognitoPool::with_credentials(
        config.identity_pool.as_ref().expect("a pool"),
        credentials(SECRET_KEY),
    )
    .await;
    let broker = Broker::new(&config, Arc::new(pool)).expect("broker");
    let signed_in = broker
        .sign_in("corp", &key.sign_jwt(&corp_claims(&issuer)))
        .await
        .expect("developer-mode sign-in through moto");
    assert!(signed_in.identity_id.starts_with("us-east-1:"));
    assert!(!signed_in.credentials.session_token.is_empty());
    let denied = broker
        .sign_in(
            "corp",
            &key.sign_jwt(&with(corp_claims(&issuer), json!({"email": "eve@evil.test"}))),
        )
        .await
        .expect_err("the regex rule holds");
    assert_eq!(denied.code(), "claim_rule_denied");
}

/// A local pool in developer mode with known broker keys, and optional load emulation.
async fn developer_pool(load: PoolLoad) -> (String, Arc<LocalPool>) {
    let pool = LocalPool::with_developer(
        POOL_ID.to_string(),
        Vec::new(),
        Some(DeveloperProvider {
            name: DEVELOPER_PROVIDER.to_string(),
            access_key_id: ACCESS_KEY.to_string(),
            secret_access_key: SECRET_KEY.to_string(),
        }),
        Duration::from_secs(3600),
        load,
    );
    let address =
        serve(axum::Router::new().nest_service("/cognito-identity", Arc::clone(&pool).router())).await;
    (format!("http://{address}/cognito-identity"), pool)
}

#[tokio::test]
async fn the_local_pool_serves_developer_identities_to_signed_calls_only() {
    let (endpoint, local) = developer_pool(PoolLoad::default()).await;
    let config = developer_pool_config(&endpoint, POOL_ID);
    let tags = PrincipalTags::from([("groups".to_string(), ":admins:".to_string())]);
    let pool = CognitoPool::with_credentials(&config, credentials(SECRET_KEY)).await;

    let first = pool
        .developer_login(DEVELOPER_PROVIDER, "user-a", &tags)
        .await
        .expect("signed call");
    let again = pool
        .developer_login(DEVELOPER_PROVIDER, "user-a", &tags)
        .await
        .expect("signed call");
    assert_eq!(first.identity_id, again.identity_id, "stable per developer user");
    let other = pool
        .developer_login(DEVELOPER_PROVIDER, "user-b", &tags)
        .await
        .expect("signed call");
    assert_ne!(other.identity_id, first.identity_id);

    let logins = [("cognito-identity.amazonaws.com".to_string(), first.token.clone())].into();
    let issued = pool
        .get_credentials(&first.identity_id, &logins, None)
        .await
        .expect("credentials");
    let session = local.lookup(&issued.access_key_id).expect("the pool knows them");
    assert_eq!(session.identity.principal_tags["groups"], ":admins:");
    let mismatch = pool
        .get_credentials(&other.identity_id, &logins, None)
        .await
        .expect_err("a token is for its own identity only");
    assert!(
        matches!(mismatch, PoolError::NotAuthorized(ref m) if m.starts_with("Logins don't match")),
        "{mismatch:?}"
    );

    let forged = CognitoPool::with_credentials(&config, credentials("wrong-secret")).await;
    let refused = forged
        .developer_login(DEVELOPER_PROVIDER, "user-a", &tags)
        .await
        .unwrap_err();
    assert!(
        matches!(refused, PoolError::Unavailable(ref m) if m.contains("InvalidSignatureException")),
        "{refused:?}"
    );
    let too_many: PrincipalTags = (0..51).map(|i| (format!("t{i}"), "v".to_string())).collect();
    let bounded = pool
        .developer_login(DEVELOPER_PROVIDER, "user-a", &too_many)
        .await
        .unwrap_err();
    assert!(matches!(bounded, PoolError::Invalid(_)), "{bounded:?}");
}

// Multi-threaded: the Python client blocks this thread while the pool answers on another.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn botocore_signed_developer_calls_verify_at_the_local_pool() {
    let (endpoint, _pool) = developer_pool(PoolLoad::default()).await;
    const SIGN_AND_SEND: &str = r#"
import json, sys, urllib.request, urllib.error
from botocore.auth import SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials
args = json.load(sys.stdin)
body = json.dumps({"IdentityPoolId": args["pool"], "Logins": {"login.credbroker": "botocore-user"}})
request = AWSRequest(method="POST", url=args["endpoint"] + "/", data=body, headers={
    "Content-Type": "application/x-amz-json-1.1",
    "X-Amz-Target": "AWSCognitoIdentityService.GetOpenIdTokenForDeveloperIdentity"})
SigV4Auth(Credentials(args["key"], args["secret"]), "cognito-identity", "us-east-1").add_auth(request)
prepared = request.prepare()
try:
    with urllib.request.urlopen(urllib.request.Request(prepared.url, data=body.encode(), headers=dict(prepared.headers), method="POST")) as answer:
        print(json.dumps({"status": answer.status, "body": json.loads(answer.read())}))
except urllib.error.HTTPError as error:
    print(json.dumps({"status": error.code, "body": json.loads(error.read())}))
"#;
    let input =
        |secret: &str| json!({"endpoint": endpoint, "pool": POOL_ID, "key": ACCESS_KEY, "secret": secret});
    let accepted = python(SIGN_AND_SEND, &input(SECRET_KEY));
    assert_eq!(accepted["status"], 200, "{accepted}");
    assert!(
        accepted["body"]["IdentityId"]
            .as_str()
            .is_some_and(|id| id.starts_with("us-east-1:"))
    );
    let refused = python(SIGN_AND_SEND, &input("another-secret"));
    assert_eq!(refused["status"], 403, "{refused}");
    assert_eq!(refused["body"]["__type"], "InvalidSignatureException");
}

#[tokio::test]
async fn throttled_calls_get_cognitos_error_shape_and_the_broker_retries_them() {
    let quotas = Quotas {
        get_id: 2,
        get_credentials: 200,
        developer_token: 2,
    };
    let (endpoint, local) = developer_pool(PoolLoad {
        latency: Duration::ZERO,
        quotas: Some(quotas),
    })
    .await;
    let raw = reqwest::Client::new();
    let get_id = || {
        raw.post(format!("{endpoint}/"))
            .header("content-type", "application/x-amz-json-1.1")
            .header("x-amz-target", "AWSCognitoIdentityService.GetId")
            .body(json!({"IdentityPoolId": POOL_ID}).to_string())
    };
    let mut types = Vec::new();
    for _ in 0..4 {
        let answer = send(get_id()).await;
        types.push(answer.body["__type"].clone());
        if answer.body["__type"] == "TooManyRequestsException" {
            // A client error of Cognito's JSON protocol: HTTP 400, not 429.
            assert_eq!(answer.status, StatusCode::BAD_REQUEST);
            assert_eq!(
                answer.body,
                json!({"__type": "TooManyRequestsException", "message": "Rate exceeded"})
            );
            assert_eq!(answer.headers["x-amzn-errortype"], "TooManyRequestsException");
        }
    }
    assert!(types.contains(&json!("TooManyRequestsException")), "{types:?}");

    // Ten users at once against 2 developer calls per second: every one gets credentials.
    let (key, issuer) = issuer_with_rsa_key().await;
    let config = broker_config(
        &issuer,
        &endpoint,
        POOL_ID,
        &format!("mode = \"developer\"\ndeveloper_provider_name = \"{DEVELOPER_PROVIDER}\"\n"),
    );
    let pool = CognitoPool::with_credentials(
        config.identity_pool.as_ref().expect("a pool"),
        credentials(SECRET_KEY),
    )
    .await;
    let broker = Arc::new(Broker::new(&config, Arc::new(pool)).expect("broker"));
    let users: Vec<_> = (0..10)
        .map(|i| {
            let broker = Arc::clone(&broker);
            let token = key.sign_jwt(&with(corp_claims(&issuer), json!({"sub": format!("user-{i}")})));
            tokio::spawn(async move { broker.sign_in("corp", &token).await.map(|s| s.identity_id) })
        })
        .collect();
    for user in users {
        user.await.expect("task").expect("signed in despite throttling");
    }
    assert!(
        local.calls("GetOpenIdTokenForDeveloperIdentity") > 10,
        "some calls were throttled and retried"
    );
}

/// A dev stack in `mode` whose extra providers come from [`broker_config`] (the `corp` provider
/// with its regex rule `email~@example\.com$`), started in this process.
async fn dev_stack(mode: PoolMode, config: Config) -> (String, Arc<LocalPool>) {
    let options = DevOptions {
        listen: SocketAddr::from((Ipv4Addr::LOCALHOST, 0)),
        config: Some(config),
        pool_mode: mode,
        ..DevOptions::default()
    };
    let stack = DevStack::bind(options).await.expect("the dev stack binds");
    let base = stack.base_url.to_string();
    let pool = Arc::clone(&stack.pool);
    tokio::spawn(stack.serve(std::future::pending()));
    (base, pool)
}

async fn sign_in(base: &str, token: &str, identity_id: Option<&str>) -> support::Answer {
    let mut body = json!({ "id_token": token });
    if let Some(identity_id) = identity_id {
        body["identity_id"] = json!(identity_id);
    }
    send(
        reqwest::Client::new()
            .post(format!("{base}auth/signin/corp"))
            .json(&body),
    )
    .await
}

/// `GetId` sent straight to the stack's pool, skipping the broker.
async fn get_id_directly(base: &str, logins_key: &str, token: &str) -> support::Answer {
    let body = json!({"IdentityPoolId": credbroker::local::DEV_POOL_ID, "Logins": { logins_key: token }});
    send(
        reqwest::Client::new()
            .post(format!("{base}cognito-identity/"))
            .header("content-type", "application/x-amz-json-1.1")
            .header("x-amz-target", "AWSCognitoIdentityService.GetId")
            .body(body.to_string()),
    )
    .await
}

#[tokio::test]
async fn a_token_failing_a_regex_rule_gets_nothing_in_developer_mode_even_at_the_pool() {
    let (key, issuer) = issuer_with_rsa_key().await;
    let outsider = key.sign_jwt(&with(corp_claims(&issuer), json!({"email": "eve@evil.test"})));
    let logins_key = issuer.url.trim_start_matches("http://").to_string();
    let config = || broker_config(&issuer, "http://127.0.0.1:9", support::UNUSED_POOL_ID, "");

    // Enhanced mode: the broker refuses, but the pool trusts the issuer and would not know.
    let (enhanced, _) = dev_stack(PoolMode::Enhanced, config()).await;
    assert_eq!(
        sign_in(&enhanced, &outsider, None).await.status,
        StatusCode::FORBIDDEN
    );
    let bypass = get_id_directly(&enhanced, &logins_key, &outsider).await;
    assert_eq!(
        bypass.status,
        StatusCode::OK,
        "the gap developer mode closes: {}",
        bypass.text
    );

    // Developer mode: the pool trusts no provider, only the broker's signed calls.
    let (developer, pool) = dev_stack(PoolMode::Developer, config()).await;
    assert_eq!(
        sign_in(&developer, &outsider, None).await.status,
        StatusCode::FORBIDDEN
    );
    let refused = get_id_directly(&developer, &logins_key, &outsider).await;
    assert_eq!(refused.status, StatusCode::BAD_REQUEST, "{}", refused.text);
    assert_eq!(refused.body["__type"], "NotAuthorizedException");
    assert_eq!(
        pool.identity_count(),
        0,
        "no identity was created for the outsider"
    );

    let member = key.sign_jwt(&corp_claims(&issuer));
    let answer = sign_in(&developer, &member, None).await;
    assert_eq!(answer.status, StatusCode::OK, "{}", answer.text);
}

#[tokio::test]
async fn renewals_skip_get_id_and_a_foreign_identity_id_costs_one_call_not_an_error() {
    let (key, issuer) = issuer_with_rsa_key().await;
    let config = broker_config(&issuer, "http://127.0.0.1:9", support::UNUSED_POOL_ID, "");
    let (base, pool) = dev_stack(PoolMode::Enhanced, config).await;
    let calls = || (pool.calls("GetId"), pool.calls("GetCredentialsForIdentity"));
    let ann = || key.sign_jwt(&corp_claims(&issuer));

    let first = sign_in(&base, &ann(), None).await;
    assert_eq!(first.status, StatusCode::OK, "{}", first.text);
    let identity_id = first.body["identityId"]
        .as_str()
        .expect("identity id")
        .to_string();
    assert_eq!(
        calls(),
        (1, 1),
        "a first sign-in: GetId + GetCredentialsForIdentity"
    );

    let renewal = sign_in(&base, &ann(), Some(&identity_id)).await;
    assert_eq!(renewal.body["identityId"], identity_id.as_str());
    assert_eq!(calls(), (1, 2), "a renewal: GetCredentialsForIdentity only");

    // Bob sends Ann's identity id: Cognito refuses it, the broker falls back to GetId, and Bob
    // gets his own identity — never Ann's, never an error.
    let bob = key.sign_jwt(&with(corp_claims(&issuer), json!({"sub": "bob"})));
    let answer = sign_in(&base, &bob, Some(&identity_id)).await;
    assert_eq!(answer.status, StatusCode::OK, "{}", answer.text);
    assert_ne!(answer.body["identityId"], identity_id.as_str());
    assert_eq!(
        calls(),
        (2, 4),
        "refused GetCredentialsForIdentity, then GetId + GetCredentialsForIdentity"
    );

    // Garbage is ignored before any call.
    let garbage = sign_in(&base, &ann(), Some("not-an-identity")).await;
    assert_eq!(garbage.body["identityId"], identity_id.as_str());
    assert_eq!(calls(), (3, 5));
}

#[tokio::test]
async fn developer_mode_renewals_ignore_the_identity_id_sent_back() {
    let (key, issuer) = issuer_with_rsa_key().await;
    let config = broker_config(&issuer, "http://127.0.0.1:9", support::UNUSED_POOL_ID, "");
    let (base, pool) = dev_stack(PoolMode::Developer, config).await;
    let ann = key.sign_jwt(&corp_claims(&issuer));
    let first = sign_in(&base, &ann, None).await;
    assert_eq!(first.status, StatusCode::OK, "{}", first.text);
    let ann_id = first.body["identityId"]
        .as_str()
        .expect("identity id")
        .to_string();

    // Bob claims Ann's identity id: in developer mode it is never passed to Cognito (which
    // would link Bob's login to Ann's identity), so Bob gets his own.
    let bob = key.sign_jwt(&with(corp_claims(&issuer), json!({"sub": "bob"})));
    let answer = sign_in(&base, &bob, Some(&ann_id)).await;
    assert_eq!(answer.status, StatusCode::OK, "{}", answer.text);
    assert_ne!(answer.body["identityId"], ann_id.as_str());
    let renewal = sign_in(&base, &ann, Some(&ann_id)).await;
    assert_eq!(renewal.body["identityId"], ann_id.as_str());
    assert_eq!(pool.calls("GetId"), 0);
    assert_eq!(pool.calls("GetOpenIdTokenForDeveloperIdentity"), 3);
    assert_eq!(pool.calls("GetCredentialsForIdentity"), 3);
}
