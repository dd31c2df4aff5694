//! The dev OpenID provider over real HTTP, driven the way a browser and a browser app drive it:
//! sign-in page, form post, redirect, token request. ID tokens are checked with credbroker's own
//! verifier (`UnverifiedToken` + `JwksCache` on the published `jwks_uri`).

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use axum::Router;
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use credbroker::config::JwksSettings;
use credbroker::jwks::{JwksCache, JwksPolicy};
use credbroker::local::idp::{DEV_CLIENT_ID, DevIdp};
use credbroker::token::{Claims, UnverifiedToken, check_audience, check_times};
use reqwest::StatusCode;
use reqwest::header::{
    ACCESS_CONTROL_ALLOW_ORIGIN, CACHE_CONTROL, CONTENT_TYPE, COOKIE, LOCATION, ORIGIN, SET_COOKIE,
};
use serde_json::{Map, Value, json};
use url::Url;

const REDIRECT_URI: &str = "http://127.0.0.1:5173/callback";
const VERIFIER: &str = "dev-idp-test-verifier-0123456789-abcdefghijklmnop";
const OTHER_VERIFIER: &str = "a-different-verifier-0123456789-abcdefghijklmnopq";
const MAX_TOKEN_BYTES: usize = 16 * 1024;

/// A dev provider served on a loopback port, nested at `/dev-idp` as `credbroker dev` does.
struct Provider {
    idp: Arc<DevIdp>,
    issuer: Url,
    http: reqwest::Client,
}

impl Provider {
    async fn start() -> Provider {
        Provider::start_with(DevIdp::new).await
    }

    async fn start_with(make: impl FnOnce(Url) -> Arc<DevIdp>) -> Provider {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind a loopback port");
        let address = listener.local_addr().expect("local address");
        let issuer = Url::parse(&format!("http://{address}/dev-idp")).expect("issuer URL");
        let idp = make(issuer.clone());
        let app = Router::new().nest("/dev-idp", idp.clone().router());
        tokio::spawn(async move {
            axum::serve(listener, app.into_make_service_with_connect_info::<SocketAddr>()).await
        });
        let http = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .timeout(Duration::from_secs(10))
            .build()
            .expect("HTTP client");
        Provider { idp, issuer, http }
    }

    fn url(&self, path: &str) -> String {
        format!("{}/{path}", self.issuer)
    }

    /// An authorization URL with the usual parameters; `overrides` replace or remove
    /// (empty value) them.
    fn authorize_url(&self, overrides: &[(&str, &str)]) -> Url {
        let challenge = s256(VERIFIER);
        let mut params: Vec<(&str, &str)> = vec![
            ("response_type", "code"),
            ("client_id", DEV_CLIENT_ID),
            ("redirect_uri", REDIRECT_URI),
            ("scope", "openid email"),
            ("state", "state-123"),
            ("nonce", "nonce-456"),
            ("code_challenge", &challenge),
            ("code_challenge_method", "S256"),
        ];
        for (name, value) in overrides {
            params.retain(|(existing, _)| existing != name);
            if !value.is_empty() {
                params.push((name, value));
            }
        }
        let mut url = Url::parse(&self.url("authorize")).expect("authorize URL");
        url.query_pairs_mut().extend_pairs(params);
        url
    }

    async fn get(&self, url: impl reqwest::IntoUrl, cookie: Option<&str>) -> reqwest::Response {
        let mut request = self.http.get(url);
        if let Some(cookie) = cookie {
            request = request.header(COOKIE, cookie);
        }
        request.send().await.expect("GET")
    }

    async fn post_form(&self, path: &str, pairs: &[(&str, &str)]) -> reqwest::Response {
        self.http
            .post(self.url(path))
            .header(CONTENT_TYPE, "application/x-www-form-urlencoded")
            .body(form(pairs))
            .send()
            .await
            .expect("POST form")
    }

    /// Opens the sign-in page and returns its HTML.
    async fn sign_in_page(&self, overrides: &[(&str, &str)]) -> String {
        let response = self.get(self.authorize_url(overrides), None).await;
        assert_eq!(response.status(), StatusCode::OK);
        response.text().await.expect("page body")
    }

    /// Submits the page's editable form as `sub` with `claims` lines.
    async fn submit(&self, page: &str, sub: &str, claims: &str) -> reqwest::Response {
        let request = form_request_token(page);
        self.post_form(
            "authorize",
            &[
                ("request", &request),
                ("sub", sub),
                ("email", &format!("{sub}@example.org")),
                ("name", "Test User"),
                ("claims", claims),
            ],
        )
        .await
    }

    /// Signs in as `sub` through the page; returns the redirect's query and the session cookie.
    async fn sign_in(&self, sub: &str, claims: &str) -> (HashMap<String, String>, String) {
        let page = self.sign_in_page(&[]).await;
        let response = self.submit(&page, sub, claims).await;
        assert_eq!(response.status(), StatusCode::FOUND);
        let cookie = response
            .headers()
            .get(SET_COOKIE)
            .and_then(|value| value.to_str().ok())
            .expect("session cookie")
            .to_string();
        let session = cookie.split(';').next().expect("cookie name=value").to_string();
        (redirect_query(&response), session)
    }

    async fn redeem(&self, code: &str, verifier: &str, redirect_uri: &str) -> (StatusCode, Value) {
        let response = self
            .post_form(
                "token",
                &[
                    ("grant_type", "authorization_code"),
                    ("code", code),
                    ("redirect_uri", redirect_uri),
                    ("client_id", DEV_CLIENT_ID),
                    ("code_verifier", verifier),
                ],
            )
            .await;
        let status = response.status();
        assert_eq!(response.headers()[CACHE_CONTROL], "no-store");
        (status, response.json().await.expect("JSON token response"))
    }

    async fn refresh(&self, refresh_token: &str) -> reqwest::Response {
        self.post_form(
            "token",
            &[
                ("grant_type", "refresh_token"),
                ("refresh_token", refresh_token),
                ("client_id", DEV_CLIENT_ID),
            ],
        )
        .await
    }

    /// Asks `/mint` for a token with the JSON `request`.
    async fn mint(&self, request: &Value) -> reqwest::Response {
        self.http
            .post(self.url("mint"))
            .json(request)
            .send()
            .await
            .expect("POST /mint")
    }

    /// Verifies the `id_token` of a token or mint response (see [`Provider::verify`]).
    async fn verify_id_token_of(&self, response: &Value) -> Claims {
        self.verify(response["id_token"].as_str().expect("id_token"))
            .await
    }

    /// Verifies an ID token the way the broker does, with keys from the published `jwks_uri`.
    async fn verify(&self, id_token: &str) -> Claims {
        let discovery: Value = self
            .get(self.url(".well-known/openid-configuration"), None)
            .await
            .json()
            .await
            .expect("discovery JSON");
        let jwks_uri = Url::parse(discovery["jwks_uri"].as_str().expect("jwks_uri")).expect("jwks_uri URL");
        let keys = JwksCache::new(
            reqwest::Client::new(),
            jwks_uri,
            JwksPolicy::from(&JwksSettings::default()),
        );
        let token = UnverifiedToken::parse(id_token, MAX_TOKEN_BYTES).expect("well-formed JWT");
        assert_eq!(token.header().alg.name(), "RS256");
        let key = keys
            .key(token.header().kid.as_deref(), token.header().alg)
            .await
            .expect("the token's key is published");
        let claims = token.verify_signature(&key).expect("signature verifies");
        check_audience(&claims, &[DEV_CLIENT_ID.to_string()]).expect("audience");
        check_times(&claims, SystemTime::now(), Duration::from_secs(60)).expect("times");
        assert_eq!(claims["iss"], json!(self.issuer.as_str()));
        assert_eq!(claims["azp"], json!(DEV_CLIENT_ID));
        claims
    }
}

fn s256(verifier: &str) -> String {
    let digest = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, verifier.as_bytes());
    URL_SAFE_NO_PAD.encode(digest.as_ref())
}

fn form(pairs: &[(&str, &str)]) -> String {
    url::form_urlencoded::Serializer::new(String::new())
        .extend_pairs(pairs)
        .finish()
}

/// The one-time token in the page's forms.
fn form_request_token(page: &str) -> String {
    let pattern = regex::Regex::new(r#"name="request" value="([A-Za-z0-9_-]+)""#).expect("regex");
    pattern
        .captures(page)
        .and_then(|captures| captures.get(1))
        .expect("the page carries a request token")
        .as_str()
        .to_string()
}

/// The query of a redirect's `Location`, which must point at [`REDIRECT_URI`].
fn redirect_query(response: &reqwest::Response) -> HashMap<String, String> {
    let location = response
        .headers()
        .get(LOCATION)
        .and_then(|value| value.to_str().ok())
        .expect("a Location header");
    let location = Url::parse(location).expect("absolute Location");
    assert_eq!(
        format!(
            "{}://{}{}",
            location.scheme(),
            location.host_str().unwrap_or_default(),
            location.port().map(|p| format!(":{p}")).unwrap_or_default()
        ) + location.path(),
        REDIRECT_URI
    );
    location.query_pairs().into_owned().collect()
}

#[tokio::test]
async fn full_code_flow_issues_a_verifiable_id_token() {
    let provider = Provider::start().await;
    let page = provider.sign_in_page(&[]).await;
    for user in [
        "Alice Example — alice@example.com",
        "Bob Admin — bob@corp.example",
        "Carol Partner — carol@partner.example",
        "groups=[&quot;admins&quot;]",
        "organization_id=org_dev_carol",
    ] {
        assert!(page.contains(user), "the page lists {user}");
    }

    let response = provider
        .submit(&page, "dana", "groups=[\"a\",\"b\"]\nhd=corp.example\n")
        .await;
    assert_eq!(response.status(), StatusCode::FOUND);
    let cookie = response.headers()[SET_COOKIE].to_str().expect("ASCII cookie");
    for attribute in ["HttpOnly", "SameSite=Lax", "Path=/dev-idp"] {
        assert!(cookie.contains(attribute), "cookie has {attribute}: {cookie}");
    }
    let query = redirect_query(&response);
    assert_eq!(query["state"], "state-123");
    assert_eq!(query["iss"], provider.issuer.as_str());

    let (status, tokens) = provider.redeem(&query["code"], VERIFIER, REDIRECT_URI).await;
    assert_eq!(status, StatusCode::OK, "{tokens}");
    assert_eq!(tokens["token_type"], "Bearer");
    assert_eq!(tokens["expires_in"], 3600);
    assert_eq!(tokens["scope"], "openid email");
    assert!(tokens["access_token"].as_str().is_some_and(|t| t.len() >= 32));
    assert!(tokens["refresh_token"].as_str().is_some_and(|t| t.len() >= 32));

    let claims = provider.verify_id_token_of(&tokens).await;
    assert_eq!(claims["sub"], "dana");
    assert_eq!(claims["nonce"], "nonce-456");
    assert_eq!(claims["email"], "dana@example.org");
    assert_eq!(claims["email_verified"], true);
    assert_eq!(claims["name"], "Test User");
    assert_eq!(claims["groups"], json!(["a", "b"]));
    assert_eq!(claims["hd"], "corp.example");
    assert_eq!(
        claims["exp"].as_u64(),
        claims["iat"].as_u64().map(|iat| iat + 3600)
    );
    assert!(claims["auth_time"].as_u64().is_some());
}

#[tokio::test]
async fn discovery_and_jwks_describe_the_provider() {
    let provider = Provider::start().await;
    let response = provider
        .get(provider.url(".well-known/openid-configuration"), None)
        .await;
    assert_eq!(response.status(), StatusCode::OK);
    assert!(
        response.headers()[CACHE_CONTROL]
            .to_str()
            .is_ok_and(|value| value.starts_with("max-age="))
    );
    assert_eq!(response.headers()[ACCESS_CONTROL_ALLOW_ORIGIN], "*");
    let document: Value = response.json().await.expect("discovery JSON");
    let issuer = provider.issuer.as_str();
    assert_eq!(document["issuer"], issuer);
    assert_eq!(provider.idp.issuer().as_str(), issuer);
    assert_eq!(document["authorization_endpoint"], format!("{issuer}/authorize"));
    assert_eq!(document["token_endpoint"], format!("{issuer}/token"));
    assert_eq!(document["jwks_uri"], format!("{issuer}/jwks"));
    assert_eq!(document["response_types_supported"], json!(["code"]));
    assert_eq!(
        document["grant_types_supported"],
        json!(["authorization_code", "refresh_token"])
    );
    assert_eq!(document["subject_types_supported"], json!(["public"]));
    assert_eq!(
        document["id_token_signing_alg_values_supported"],
        json!(["RS256"])
    );
    assert_eq!(document["code_challenge_methods_supported"], json!(["S256"]));
    assert_eq!(
        document["scopes_supported"],
        json!(["openid", "email", "profile"])
    );
    assert_eq!(document["token_endpoint_auth_methods_supported"], json!(["none"]));
    assert!(
        document["claims_supported"]
            .as_array()
            .is_some_and(|claims| claims.contains(&json!("groups")))
    );

    let response = provider.get(provider.url("jwks"), None).await;
    assert_eq!(response.headers()[CACHE_CONTROL], "max-age=300");
    let jwks: Value = response.json().await.expect("JWKS JSON");
    let keys = jwks["keys"].as_array().expect("keys");
    assert_eq!(keys.len(), 1);
    assert_eq!(keys[0]["kty"], "RSA");
    assert_eq!(keys[0]["alg"], "RS256");
    assert!(keys[0].get("d").is_none(), "no private key material");
}

#[tokio::test]
async fn a_pkce_or_redirect_uri_mismatch_is_invalid_grant() {
    let provider = Provider::start().await;
    for (verifier, redirect_uri, mentioned) in [
        (OTHER_VERIFIER, REDIRECT_URI, "PKCE"),
        (VERIFIER, "http://127.0.0.1:5173/elsewhere", "redirect_uri"),
    ] {
        let (query, _) = provider.sign_in("alice", "").await;
        let (status, body) = provider.redeem(&query["code"], verifier, redirect_uri).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{mentioned}");
        assert_eq!(body["error"], "invalid_grant");
        assert!(
            body["error_description"]
                .as_str()
                .is_some_and(|d| d.contains(mentioned))
        );
    }
}

#[tokio::test]
async fn a_code_is_single_use() {
    let provider = Provider::start().await;
    let (query, _) = provider.sign_in("alice", "").await;
    let (status, _) = provider.redeem(&query["code"], VERIFIER, REDIRECT_URI).await;
    assert_eq!(status, StatusCode::OK);
    let (status, body) = provider.redeem(&query["code"], VERIFIER, REDIRECT_URI).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(body["error"], "invalid_grant");
}

#[tokio::test]
async fn untrusted_client_or_redirect_uri_gets_a_page_never_a_redirect() {
    let provider = Provider::start().await;
    for (overrides, expected) in [
        (
            vec![("redirect_uri", "https://attacker.example/callback")],
            "loopback",
        ),
        (vec![("client_id", "someone-else")], "Unknown client_id"),
        (vec![("redirect_uri", "")], "redirect_uri"),
    ] {
        let response = provider.get(provider.authorize_url(&overrides), None).await;
        assert_eq!(response.status(), StatusCode::BAD_REQUEST, "{overrides:?}");
        assert!(response.headers().get(LOCATION).is_none());
        assert!(
            response.headers()[CONTENT_TYPE]
                .to_str()
                .is_ok_and(|value| value.starts_with("text/html"))
        );
        let body = response.text().await.expect("page");
        assert!(body.contains(expected), "{overrides:?}: {body}");
    }
}

#[tokio::test]
async fn bad_parameters_are_redirected_back_as_errors() {
    let provider = Provider::start().await;
    for (overrides, expected) in [
        (vec![("code_challenge", "")], "invalid_request"),
        (vec![("code_challenge_method", "plain")], "invalid_request"),
        (vec![("response_type", "token")], "unsupported_response_type"),
        (vec![("scope", "email")], "invalid_scope"),
    ] {
        let response = provider.get(provider.authorize_url(&overrides), None).await;
        assert_eq!(response.status(), StatusCode::FOUND, "{overrides:?}");
        let query = redirect_query(&response);
        assert_eq!(query["error"], expected, "{overrides:?}");
        assert_eq!(query["state"], "state-123");
        assert!(!query.contains_key("code"));
    }
}

#[tokio::test]
async fn prompt_none_needs_a_session_and_then_renews_silently() {
    let provider = Provider::start().await;
    let response = provider
        .get(provider.authorize_url(&[("prompt", "none")]), None)
        .await;
    assert_eq!(response.status(), StatusCode::FOUND);
    let query = redirect_query(&response);
    assert_eq!(query["error"], "login_required");
    assert_eq!(query["state"], "state-123");

    let (_, session) = provider.sign_in("erin", "tid=tenant-1").await;
    let renewal = provider.authorize_url(&[
        ("prompt", "none"),
        ("nonce", "second-nonce"),
        ("state", "state-2"),
    ]);
    let response = provider.get(renewal, Some(&session)).await;
    assert_eq!(response.status(), StatusCode::FOUND);
    let query = redirect_query(&response);
    assert_eq!(query["state"], "state-2");
    let (status, tokens) = provider.redeem(&query["code"], VERIFIER, REDIRECT_URI).await;
    assert_eq!(status, StatusCode::OK, "{tokens}");
    let claims = provider.verify_id_token_of(&tokens).await;
    assert_eq!(claims["sub"], "erin");
    assert_eq!(claims["tid"], "tenant-1");
    assert_eq!(claims["nonce"], "second-nonce");

    // The session also pre-fills the page when the user comes back interactively.
    let response = provider.get(provider.authorize_url(&[]), Some(&session)).await;
    let page = response.text().await.expect("page");
    assert!(page.contains(r#"name="sub" required maxlength="255" value="erin""#));
}

#[tokio::test]
async fn refresh_token_grant_reissues_for_the_same_user() {
    let provider = Provider::start().await;
    let (query, _) = provider.sign_in("frank", "groups=[\"ops\"]").await;
    let (_, tokens) = provider.redeem(&query["code"], VERIFIER, REDIRECT_URI).await;
    let refresh_token = tokens["refresh_token"].as_str().expect("refresh_token");

    let response = provider.refresh(refresh_token).await;
    assert_eq!(response.status(), StatusCode::OK);
    let refreshed: Value = response.json().await.expect("JSON");
    assert_ne!(refreshed["id_token"], tokens["id_token"]);
    let claims = provider.verify_id_token_of(&refreshed).await;
    assert_eq!(claims["sub"], "frank");
    assert_eq!(claims["groups"], json!(["ops"]));
    assert!(claims.get("nonce").is_none());

    let response = provider.refresh("not-a-refresh-token").await;
    assert_eq!(response.status(), StatusCode::BAD_REQUEST);
    let body: Value = response.json().await.expect("JSON");
    assert_eq!(body["error"], "invalid_grant");
}

#[tokio::test]
async fn token_endpoint_refuses_malformed_requests() {
    let provider = Provider::start().await;
    for (pairs, status, error) in [
        (
            vec![("grant_type", "password"), ("client_id", DEV_CLIENT_ID)],
            StatusCode::BAD_REQUEST,
            "unsupported_grant_type",
        ),
        (
            vec![("grant_type", "refresh_token"), ("client_id", "other")],
            StatusCode::UNAUTHORIZED,
            "invalid_client",
        ),
        (
            vec![
                ("grant_type", "authorization_code"),
                ("grant_type", "authorization_code"),
                ("client_id", DEV_CLIENT_ID),
            ],
            StatusCode::BAD_REQUEST,
            "invalid_request",
        ),
    ] {
        let response = provider.post_form("token", &pairs).await;
        assert_eq!(response.status(), status, "{pairs:?}");
        let body: Value = response.json().await.expect("JSON");
        assert_eq!(body["error"], error, "{pairs:?}");
    }
}

#[tokio::test]
async fn token_endpoint_allows_loopback_origins_only() {
    let provider = Provider::start().await;
    let preflight = provider
        .http
        .request(reqwest::Method::OPTIONS, provider.url("token"))
        .header(ORIGIN, "http://localhost:5173")
        .header("Access-Control-Request-Method", "POST")
        .send()
        .await
        .expect("preflight");
    assert_eq!(preflight.status(), StatusCode::NO_CONTENT);
    assert_eq!(
        preflight.headers()[ACCESS_CONTROL_ALLOW_ORIGIN],
        "http://localhost:5173"
    );
    assert_eq!(preflight.headers()["access-control-allow-methods"], "POST");

    for (origin, allowed) in [("http://127.0.0.1:3000", true), ("https://evil.example", false)] {
        let response = provider
            .http
            .post(provider.url("token"))
            .header(ORIGIN, origin)
            .header(CONTENT_TYPE, "application/x-www-form-urlencoded")
            .body(form(&[("grant_type", "refresh_token")]))
            .send()
            .await
            .expect("POST");
        assert_eq!(
            response.headers().get(ACCESS_CONTROL_ALLOW_ORIGIN).is_some(),
            allowed,
            "{origin}"
        );
    }
}

#[tokio::test]
async fn oversized_bodies_are_refused() {
    let provider = Provider::start().await;
    let huge = "x".repeat(64 * 1024);
    let response = provider
        .post_form("token", &[("grant_type", "refresh_token"), ("padding", &huge)])
        .await;
    assert_eq!(response.status(), StatusCode::PAYLOAD_TOO_LARGE);
}

#[tokio::test]
async fn the_form_needs_a_fresh_page_token() {
    let provider = Provider::start().await;
    let forged = provider
        .post_form("authorize", &[("request", "forged"), ("sub", "mallory")])
        .await;
    assert_eq!(forged.status(), StatusCode::BAD_REQUEST);
    assert!(forged.headers().get(LOCATION).is_none());

    let page = provider.sign_in_page(&[]).await;
    assert_eq!(
        provider.submit(&page, "alice", "").await.status(),
        StatusCode::FOUND
    );
    let replay = provider.submit(&page, "alice", "").await;
    assert_eq!(replay.status(), StatusCode::BAD_REQUEST);
    assert!(replay.headers().get(LOCATION).is_none());
}

#[tokio::test]
async fn a_refused_form_is_shown_again_with_the_reason() {
    let provider = Provider::start().await;
    let page = provider.sign_in_page(&[]).await;
    let response = provider.submit(&page, "gina", "iss=https://elsewhere").await;
    assert_eq!(response.status(), StatusCode::BAD_REQUEST);
    let again = response.text().await.expect("page");
    assert!(again.contains("claim `iss` is set by the provider"));
    assert!(again.contains("iss=https://elsewhere"), "typed text is kept");

    let response = provider.submit(&again, "gina", "hd=example.org").await;
    assert_eq!(response.status(), StatusCode::FOUND);
    assert!(redirect_query(&response).contains_key("code"));
}

#[tokio::test]
async fn the_page_escapes_what_the_client_sent() {
    let provider = Provider::start().await;
    let page = provider
        .sign_in_page(&[(
            "redirect_uri",
            "http://127.0.0.1:5173/callback?x=<script>alert(1)</script>",
        )])
        .await;
    assert!(!page.contains("<script>"));
    assert!(page.contains("x=&lt;script&gt;alert(1)&lt;/script&gt;"));
    let hinted = provider
        .sign_in_page(&[("login_hint", "\"><img src=x>@example.com")])
        .await;
    assert!(!hinted.contains("<img"));
    assert!(hinted.contains("&quot;&gt;&lt;img src=x&gt;@example.com"));
}

#[tokio::test]
async fn mint_signs_for_presets_and_custom_users() {
    let provider = Provider::start().await;
    let response = provider
        .mint(&json!({ "sub": "bob", "claims": { "tid": "tenant-9" } }))
        .await;
    assert_eq!(response.status(), StatusCode::OK);
    let body: Value = response.json().await.expect("JSON");
    let claims = provider.verify_id_token_of(&body).await;
    assert_eq!(claims["sub"], "bob");
    assert_eq!(claims["email"], "bob@corp.example");
    assert_eq!(claims["groups"], json!(["admins"]));
    assert_eq!(claims["tid"], "tenant-9");

    let refused = provider
        .mint(&json!({ "sub": "bob", "claims": { "aud": "someone-else" } }))
        .await;
    assert_eq!(refused.status(), StatusCode::BAD_REQUEST);
    let body: Value = refused.json().await.expect("JSON");
    assert_eq!(body["error"], "invalid_request");

    let mut extra = Map::new();
    extra.insert("organization_id".into(), json!("org_1"));
    extra.insert("iss".into(), json!("https://not-the-issuer"));
    let claims = provider.verify(&provider.idp.mint("henry", extra)).await;
    assert_eq!(claims["sub"], "henry");
    assert_eq!(claims["organization_id"], "org_1");
}

#[tokio::test]
async fn token_lifetime_is_configurable() {
    let provider =
        Provider::start_with(|issuer| DevIdp::with_token_lifetime(issuer, Duration::from_secs(120))).await;
    let claims = provider.verify(&provider.idp.mint("ivy", Map::new())).await;
    assert_eq!(
        claims["exp"].as_u64(),
        claims["iat"].as_u64().map(|iat| iat + 120)
    );
    let (query, _) = provider.sign_in("ivy", "").await;
    let (_, tokens) = provider.redeem(&query["code"], VERIFIER, REDIRECT_URI).await;
    assert_eq!(tokens["expires_in"], 120);
}
