//! The `oidc` kind against an OpenID provider nobody on this project wrote: panva's
//! `oidc-provider` (OpenID Certified; pinned in package.json, installed by `npm ci`), run in Node
//! by `tests/oidc/provider.mjs` on 127.0.0.1. Its ID tokens come from a real authorization-code
//! flow with PKCE, so what the broker meets here is what a deployment meets: discovery, an issuer
//! written with a trailing `/` (as Auth0 writes it), ES256, a namespaced claim
//! (`https://example.com/roles`) and a key rotation.

#[allow(dead_code)]
mod support;

use std::io::{BufRead, BufReader};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::time::Duration;

use serde_json::{Value, json};
use support::{StubCognito, assert_problem, cognito_success, sign_in, start_broker};

/// A running `tests/oidc/provider.mjs`; the Node process ends when this is dropped.
struct OidcProvider {
    /// The issuer as the provider writes it, e.g. `http://127.0.0.1:40123/`.
    issuer: String,
    /// The client id its tokens are issued to.
    client_id: String,
    control: String,
    child: Child,
    /// Held open: the harness exits when its stdin closes.
    _stdin: ChildStdin,
}

impl OidcProvider {
    fn start() -> OidcProvider {
        let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/oidc/provider.mjs");
        let mut child = Command::new("node")
            .arg(script)
            .current_dir(env!("CARGO_MANIFEST_DIR"))
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            // oidc-provider prints development notices there; the answers carry any error.
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| panic!("cannot run node ({e}); tests/run installs it"));
        let stdin = child.stdin.take().expect("piped stdin");
        let stdout = child.stdout.take().expect("piped stdout");
        let mut lines = BufReader::new(stdout).lines().map_while(Result::ok);
        let ready = lines
            .find(|line| line.starts_with('{'))
            .expect("the harness prints its ready line (is `npm ci` done?)");
        // oidc-provider may print notices later; a closed pipe would end the process.
        std::thread::spawn(move || lines.for_each(drop));
        let ready: Value = serde_json::from_str(&ready).expect("the ready line is JSON");
        let field = |name: &str| ready[name].as_str().expect("ready fields").to_string();
        OidcProvider {
            issuer: field("issuer"),
            client_id: field("clientId"),
            control: field("control"),
            child,
            _stdin: stdin,
        }
    }

    /// The tokens of a completed code flow for the harness's account `sub`.
    async fn id_token(&self, sub: &str) -> String {
        let answer = self.control("mint", json!({ "sub": sub })).await;
        answer["id_token"].as_str().expect("an id_token").to_string()
    }

    /// Rolls the provider's keys: a new one signs, the old one stays published. Returns its kid.
    async fn rotate(&self) -> String {
        let answer = self.control("rotate", json!({})).await;
        answer["kid"].as_str().expect("a kid").to_string()
    }

    async fn control(&self, action: &str, body: Value) -> Value {
        let response = reqwest::Client::new()
            .post(format!("{}/{action}", self.control))
            .json(&body)
            .send()
            .await
            .expect("the harness answers");
        let status = response.status();
        let text = response.text().await.expect("a body");
        assert!(status.is_success(), "{action}: {status} {text}");
        serde_json::from_str(&text).expect("JSON")
    }
}

impl Drop for OidcProvider {
    fn drop(&mut self) {
        // Errors only mean the child is already gone.
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A broker trusting the provider twice: `auth0like` with the issuer exactly as written (with
/// its `/`) and an admin-only rule on the namespaced claim, `noslash` with the issuer written
/// without the `/`. The pool is a stub that always answers.
async fn broker_for(provider: &OidcProvider, pool: &StubCognito) -> String {
    let config = credbroker::config::Config::from_toml(&format!(
        r#"
allowed_origins = ["https://app.example.com"]
[identity_pool]
id = "{pool_id}"
endpoint = "{endpoint}"
[jwks]
cooldown_seconds = 1
[providers.auth0like]
kind = "oidc"
issuer = "{issuer}"
audiences = ["{client}"]
require = ["https://example.com/roles:admin"]
[providers.noslash]
kind = "oidc"
issuer = "{issuer_without_slash}"
audiences = ["{client}"]
"#,
        pool_id = support::UNUSED_POOL_ID,
        endpoint = pool.endpoint,
        issuer = provider.issuer,
        issuer_without_slash = provider.issuer.trim_end_matches('/'),
        client = provider.client_id,
    ))
    .expect("test config is valid");
    start_broker(&config).await
}

/// A JWT's decoded header.
fn header_of(token: &str) -> Value {
    use base64::Engine;
    let segment = token.split('.').next().expect("a JWT");
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(segment)
        .expect("base64url");
    serde_json::from_slice(&bytes).expect("a JSON header")
}

/// A started provider, a stub pool that always answers, and a [`broker_for`] them.
async fn started() -> (OidcProvider, StubCognito, String) {
    let provider = OidcProvider::start();
    let pool = StubCognito::answering(200, cognito_success("secret", "session")).await;
    let broker = broker_for(&provider, &pool).await;
    (provider, pool, broker)
}

#[tokio::test]
async fn a_real_es256_id_token_from_an_issuer_with_a_trailing_slash_signs_in() {
    let (provider, pool, broker) = started().await;
    assert!(provider.issuer.ends_with('/'), "{}", provider.issuer);
    let token = provider.id_token("ann").await;
    assert_eq!(header_of(&token)["alg"], "ES256");

    let answer = sign_in(&broker, "auth0like", &token).await;
    assert_eq!(answer.status, 200, "{}", answer.body);
    // The Logins key names the IAM OIDC provider: no scheme, no trailing `/`.
    let get_id = &pool.requests()[0];
    let logins = get_id.body["Logins"].as_object().expect("Logins");
    let expected_key = provider
        .issuer
        .trim_start_matches("http://")
        .trim_end_matches('/');
    assert_eq!(logins.keys().collect::<Vec<_>>(), vec![expected_key]);
    assert_eq!(logins[expected_key], token.as_str());

    // Discovery went to `{issuer without /}/.well-known/openid-configuration` and its endpoints
    // reach the browser client as the provider published them.
    let auth0like = support::client_config_of(&broker, "auth0like").await;
    assert_eq!(auth0like["issuer"], provider.issuer);
    assert_eq!(
        auth0like["authorizationEndpoint"],
        format!("{}auth", provider.issuer)
    );
    assert_eq!(auth0like["tokenEndpoint"], format!("{}token", provider.issuer));
}

#[tokio::test]
async fn the_issuer_written_without_its_slash_is_another_issuer() {
    let (provider, pool, broker) = started().await;
    let answer = sign_in(&broker, "noslash", &provider.id_token("ann").await).await;
    assert_problem(&answer, 401, "wrong_issuer");
    assert!(pool.requests().is_empty());
}

#[tokio::test]
async fn a_rule_on_a_namespaced_claim_holds_for_its_value_only() {
    let (provider, _pool, broker) = started().await;
    let admin = sign_in(&broker, "auth0like", &provider.id_token("ann").await).await;
    assert_eq!(admin.status, 200, "{}", admin.body);
    let viewer = sign_in(&broker, "auth0like", &provider.id_token("bob").await).await;
    assert_problem(&viewer, 403, "claim_rule_denied");
    assert!(
        viewer.text.contains("https://example.com/roles:admin"),
        "{}",
        viewer.text
    );
}

#[tokio::test]
async fn after_a_key_rotation_tokens_with_the_new_kid_are_accepted() {
    let (provider, _pool, broker) = started().await;
    let before = sign_in(&broker, "auth0like", &provider.id_token("ann").await).await;
    assert_eq!(before.status, 200, "{}", before.body);

    let kid = provider.rotate().await;
    let token = provider.id_token("ann").await;
    assert_eq!(header_of(&token)["kid"], kid.as_str());
    // The broker's cached key set lacks the new kid: one refetch (after the 1 s cooldown since
    // the last fetch) finds it.
    tokio::time::sleep(Duration::from_millis(1100)).await;
    let after = sign_in(&broker, "auth0like", &token).await;
    assert_eq!(after.status, 200, "{}", after.body);
}
