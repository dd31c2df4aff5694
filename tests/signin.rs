//! The sign-in API end to end over HTTP: the real router on 127.0.0.1, a test OpenID issuer
//! serving discovery and JWKS over HTTP with keys made at test time, and moto server as the
//! Cognito Identity endpoint reached through the real AWS SDK (or a stub endpoint answering with
//! Cognito's error shapes).

#[allow(dead_code)]
mod support;

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use axum::http::{StatusCode, header};
use credbroker::key::Algorithm;
use credbroker::local::signing_key::SigningKey;
use serde_json::{Value, json};
use support::{
    Issuer, ORG, OTHER_TENANT, StubCognito, TENANT, assert_problem, b64, broker_with_moto, broker_with_stub,
    broker_without_pool, cognito_error, corp_claims, issuer_with_rsa_key, post, sign_in, unix_now as now,
    with,
};

#[tokio::test]
async fn a_valid_token_is_exchanged_for_credentials_at_moto() {
    let (rsa, issuer) = issuer_with_rsa_key().await;
    let (broker, _moto) = broker_with_moto(&issuer, "").await;

    let answer = sign_in(&broker, "corp", &rsa.sign_jwt(&corp_claims(&issuer))).await;

    assert_eq!(answer.status, StatusCode::OK, "{}", answer.body);
    assert_eq!(answer.headers[header::CACHE_CONTROL], "no-store");
    let body = &answer.body;
    assert!(
        body["identityId"].as_str().unwrap().starts_with("us-east-1:"),
        "{body}"
    );
    assert_eq!(body["provider"], "corp");
    assert_eq!(body["subject"], "user-1");
    for field in ["accessKeyId", "secretAccessKey", "sessionToken"] {
        assert!(
            !body["credentials"][field].as_str().unwrap().is_empty(),
            "{field}"
        );
    }
    let expiration = time::OffsetDateTime::parse(
        body["credentials"]["expiration"].as_str().unwrap(),
        &time::format_description::well_known::Rfc3339,
    )
    .unwrap();
    assert!(expiration > time::OffsetDateTime::now_utc());
    assert_eq!(
        body["claims"],
        json!({"email": "ann@example.com", "groups": ["staff"]})
    );
    assert!(body["serverTime"].as_str().unwrap().ends_with('Z'));
}

#[tokio::test]
async fn form_bodies_and_es256_keys_work_too() {
    let rsa = SigningKey::generate(Algorithm::RS256, "rsa-1");
    let ec = SigningKey::generate(Algorithm::ES256, "ec-1");
    let issuer = Issuer::start(&[&rsa, &ec]).await;
    let (broker, _moto) = broker_with_moto(&issuer, "").await;

    let token = ec.sign_jwt(&corp_claims(&issuer));
    let form = format!("id_token={token}");
    let answer = post(
        &format!("{broker}/auth/signin/corp"),
        "application/x-www-form-urlencoded",
        form,
    )
    .await;
    assert_eq!(answer.status, StatusCode::OK, "{}", answer.body);
}

/// A token without `kid` (RFC 7515 §4.1.4 makes it optional) against an issuer that publishes
/// several keys: the one key whose type and `alg` fit the token's `alg` is used; when several fit,
/// the broker refuses with `ambiguous_key` rather than trying keys until one verifies.
#[tokio::test]
async fn a_token_without_kid_uses_the_one_key_that_fits_its_alg() {
    let rsa = SigningKey::generate(Algorithm::RS256, "rsa-1");
    let ec = SigningKey::generate(Algorithm::ES256, "ec-1");
    let issuer = Issuer::start(&[&rsa, &ec]).await;
    let (broker, _moto) = broker_with_moto(&issuer, "").await;
    let without_kid = |key: &SigningKey| {
        key.sign_jwt_with_header(
            &json!({"alg": key.algorithm().name(), "typ": "JWT"}),
            &corp_claims(&issuer),
        )
    };

    for key in [&rsa, &ec] {
        let answer = sign_in(&broker, "corp", &without_kid(key)).await;
        assert_eq!(answer.status, StatusCode::OK, "{}", answer.body);
    }
    // No key of the issuer allows EdDSA: unknown, as for an unknown kid.
    let ed = SigningKey::generate(Algorithm::EdDSA, "ed-1");
    let answer = sign_in(&broker, "corp", &without_kid(&ed)).await;
    assert_problem(&answer, 401, "unknown_key");

    // The IdP adds a second RS256 key: a kid-less RS256 token now fits two keys and is refused,
    // while ES256 still has exactly one. The refusal names no key and quotes nothing of the token.
    let second = SigningKey::generate(Algorithm::RS256, "rsa-2");
    issuer.add_key(&second);
    let (broker, _moto) = broker_with_moto(&issuer, "").await;
    let answer = sign_in(&broker, "corp", &without_kid(&rsa)).await;
    assert_problem(&answer, 401, "ambiguous_key");
    let detail = answer.body["detail"].as_str().unwrap_or_default();
    assert!(detail.contains("no kid") && detail.contains("RS256"), "{detail}");
    let answer = sign_in(&broker, "corp", &without_kid(&ec)).await;
    assert_eq!(answer.status, StatusCode::OK, "{}", answer.body);
    // With a kid, the same keys are no problem.
    let answer = sign_in(&broker, "corp", &second.sign_jwt(&corp_claims(&issuer))).await;
    assert_eq!(answer.status, StatusCode::OK, "{}", answer.body);
}

#[tokio::test]
async fn every_failed_check_has_its_own_code() {
    let rsa = SigningKey::generate(Algorithm::RS256, "rsa-1");
    let impostor = SigningKey::generate(Algorithm::RS256, "rsa-1");
    let issuer = Issuer::start(&[&rsa]).await;
    let broker = broker_without_pool(&issuer).await;
    let good = corp_claims(&issuer);
    let header = |alg: &str, kid: &str| json!({"alg": alg, "kid": kid, "typ": "JWT"});
    let cases: Vec<(&str, String, u16, &str)> = vec![
        (
            "expired",
            rsa.sign_jwt(&with(good.clone(), json!({"exp": now() - 3600}))),
            401,
            "token_expired",
        ),
        (
            "nbf ahead",
            rsa.sign_jwt(&with(good.clone(), json!({"nbf": now() + 3600}))),
            401,
            "token_not_yet_valid",
        ),
        (
            "iat ahead",
            rsa.sign_jwt(&with(good.clone(), json!({"iat": now() + 3600}))),
            401,
            "token_issued_in_future",
        ),
        (
            "other issuer",
            rsa.sign_jwt(&with(good.clone(), json!({"iss": "https://evil.example.com"}))),
            401,
            "wrong_issuer",
        ),
        (
            "no issuer",
            rsa.sign_jwt(&with(good.clone(), json!({"iss": null}))),
            401,
            "missing_claim",
        ),
        (
            "other audience",
            rsa.sign_jwt(&with(good.clone(), json!({"aud": "someone-else"}))),
            401,
            "wrong_audience",
        ),
        (
            "several audiences, no azp",
            rsa.sign_jwt(&with(good.clone(), json!({"aud": ["corp-app", "x"]}))),
            401,
            "wrong_azp",
        ),
        (
            "no exp",
            rsa.sign_jwt(&with(good.clone(), json!({"exp": null}))),
            401,
            "missing_claim",
        ),
        (
            "forged with another key",
            impostor.sign_jwt(&good),
            401,
            "bad_signature",
        ),
        (
            "unknown kid",
            rsa.sign_jwt_with_header(&header("RS256", "nope"), &good),
            401,
            "unknown_key",
        ),
        (
            "alg none",
            format!("{}.{}.", b64(&header("none", "rsa-1")), b64(&good)),
            401,
            "unsupported_algorithm",
        ),
        (
            "HS256",
            rsa.sign_jwt_with_header(&header("HS256", "rsa-1"), &good),
            401,
            "unsupported_algorithm",
        ),
        ("garbage", "not-a-token".to_string(), 401, "malformed_token"),
        ("huge", "a".repeat(20_000), 413, "token_too_large"),
    ];
    for (name, token, status, code) in cases {
        let answer = sign_in(&broker, "corp", &token).await;
        assert_eq!(answer.status.as_u16(), status, "{name}: {}", answer.body);
        assert_eq!(answer.body["code"], code, "{name}: {}", answer.body);
        if status == 401 {
            assert_eq!(
                answer.headers[header::WWW_AUTHENTICATE],
                "Bearer error=\"invalid_token\"",
                "{name}"
            );
        }
        assert!(
            !answer.body.to_string().contains(&token),
            "{name}: the token leaked into the error"
        );
    }
}

#[tokio::test]
async fn a_broken_rule_is_named_but_the_claim_value_is_not() {
    let (rsa, issuer) = issuer_with_rsa_key().await;
    let broker = broker_without_pool(&issuer).await;
    let token = rsa.sign_jwt(&with(corp_claims(&issuer), json!({"email": "mallory@evil.test"})));
    let answer = sign_in(&broker, "corp", &token).await;
    assert_problem(&answer, 403, "claim_rule_denied");
    let detail = answer.body["detail"].as_str().unwrap();
    assert!(detail.contains(r"email~@example\.com$"), "{detail}");
    assert!(!detail.contains("mallory"), "{detail}");
}

#[tokio::test]
async fn provider_kinds_apply_their_own_checks() {
    let (rsa, issuer) = issuer_with_rsa_key().await;
    let (broker, _moto) = broker_with_moto(&issuer, "").await;
    let base =
        |iss: &str, aud: &str| json!({"iss": iss, "aud": aud, "sub": "s", "iat": now(), "exp": now() + 600});
    let entra_iss = format!("https://login.microsoftonline.com/{TENANT}/v2.0");
    let other_iss = format!("https://login.microsoftonline.com/{OTHER_TENANT}/v2.0");
    let entra = with(
        base(&entra_iss, "entra-app"),
        json!({"tid": TENANT, "oid": "oid-1"}),
    );
    let salesforce = base("https://login.salesforce.com", "sf-app");
    let google = with(base("accounts.google.com", "g-app"), json!({"hd": "example.com"}));
    let cognito = with(
        base(
            "https://cognito-idp.us-east-1.amazonaws.com/us-east-1_TestPool",
            "cognito-app",
        ),
        json!({"token_use": "id"}),
    );
    let org_sub = format!("https://login.salesforce.com/id/{ORG}/005000000000001AAA");

    let ok = sign_in(&broker, "entra", &rsa.sign_jwt(&entra)).await;
    assert_eq!(ok.status, StatusCode::OK, "{}", ok.body);
    assert_eq!(ok.body["subject"], format!("{TENANT}/oid-1"));

    let ok = sign_in(
        &broker,
        "sfdc",
        &rsa.sign_jwt(&with(salesforce.clone(), json!({"sub": org_sub}))),
    )
    .await;
    assert_eq!(ok.status, StatusCode::OK, "{}", ok.body);
    assert_eq!(ok.body["claims"]["organization_id"], ORG);

    let ok = sign_in(&broker, "gws", &rsa.sign_jwt(&google)).await;
    assert_eq!(ok.status, StatusCode::OK, "{}", ok.body);

    let ok = sign_in(&broker, "pool", &rsa.sign_jwt(&cognito)).await;
    assert_eq!(ok.status, StatusCode::OK, "{}", ok.body);

    let refusals = [
        (
            "entra",
            with(entra.clone(), json!({"iss": other_iss, "tid": OTHER_TENANT})),
            401,
            "wrong_tenant",
        ),
        (
            "entra",
            with(entra.clone(), json!({"tid": OTHER_TENANT})),
            401,
            "wrong_issuer",
        ),
        (
            "entra",
            with(entra.clone(), json!({"oid": null})),
            401,
            "missing_claim",
        ),
        (
            "sfdc",
            with(
                salesforce.clone(),
                json!({"sub": "https://login.salesforce.com/id/00Dother/005x"}),
            ),
            403,
            "claim_rule_denied",
        ),
        (
            "sfdc",
            with(salesforce, json!({"iss": "https://evil.my.salesforce.com"})),
            401,
            "wrong_issuer",
        ),
        (
            "gws",
            with(google.clone(), json!({"hd": "gmail.example"})),
            401,
            "wrong_hosted_domain",
        ),
        (
            "gws",
            with(google.clone(), json!({"hd": null})),
            401,
            "wrong_hosted_domain",
        ),
        (
            "pool",
            with(cognito.clone(), json!({"token_use": "access"})),
            401,
            "wrong_token_use",
        ),
        // A valid Google token posted to the Cognito provider.
        ("pool", google, 401, "wrong_issuer"),
    ];
    for (provider, claims, status, code) in refusals {
        let answer = sign_in(&broker, provider, &rsa.sign_jwt(&claims)).await;
        assert_eq!(
            answer.status.as_u16(),
            status,
            "{provider} {code}: {}",
            answer.body
        );
        assert_eq!(answer.body["code"], code, "{provider}: {}", answer.body);
    }
}

#[tokio::test]
async fn rotated_keys_are_picked_up_and_unknown_kid_storms_cost_one_fetch_per_cooldown() {
    let old = SigningKey::generate(Algorithm::RS256, "old");
    let issuer = Issuer::start(&[&old]).await;
    let (broker, _moto) = broker_with_moto(&issuer, "[jwks]\ncooldown_seconds = 1\n").await;

    let first = sign_in(&broker, "corp", &old.sign_jwt(&corp_claims(&issuer))).await;
    assert_eq!(first.status, StatusCode::OK, "{}", first.body);
    assert_eq!(issuer.hits(), 1);

    // The IdP rotates; once the cooldown since the last fetch has passed, the new kid is fetched.
    let new = SigningKey::generate(Algorithm::ES256, "new");
    issuer.add_key(&new);
    tokio::time::sleep(Duration::from_millis(1100)).await;
    let rotated = sign_in(&broker, "corp", &new.sign_jwt(&corp_claims(&issuer))).await;
    assert_eq!(rotated.status, StatusCode::OK, "{}", rotated.body);
    assert_eq!(issuer.hits(), 2);
}

#[tokio::test]
async fn an_unknown_kid_storm_costs_one_shared_fetch_and_then_none_within_the_cooldown() {
    let key = SigningKey::generate(Algorithm::RS256, "key");
    let issuer = Issuer::start(&[&key]).await;
    let broker = broker_without_pool(&issuer).await;
    // 50 requests in flight at a time: enough for the first wave to meet a cold cache together,
    // few enough that a loaded machine's listen backlog never drops connections.
    let in_flight = Arc::new(tokio::sync::Semaphore::new(50));
    let storm = |offset: usize| {
        let mut requests = tokio::task::JoinSet::new();
        for n in 0..500 {
            let header = json!({"alg": "RS256", "kid": format!("unknown-{}", n + offset), "typ": "JWT"});
            let token = key.sign_jwt_with_header(&header, &corp_claims(&issuer));
            let (broker, in_flight) = (broker.clone(), in_flight.clone());
            requests.spawn(async move {
                let _slot = in_flight.acquire_owned().await.expect("never closed");
                sign_in(&broker, "corp", &token).await.body["code"].clone()
            });
        }
        requests
    };
    // Cold cache: the first 50 concurrent requests share the first fetch; none refreshes again.
    let mut cold = storm(0);
    while let Some(code) = cold.join_next().await {
        assert_eq!(code.unwrap(), "unknown_key");
    }
    assert_eq!(issuer.hits(), 1, "JWKS fetches for a cold storm");
    // Warm cache, still within the 60 s cooldown: no fetch at all.
    let mut warm = storm(500);
    while let Some(code) = warm.join_next().await {
        assert_eq!(code.unwrap(), "unknown_key");
    }
    assert_eq!(issuer.hits(), 1, "JWKS fetches within the cooldown");
}

#[tokio::test]
async fn cached_keys_keep_serving_while_the_idp_is_down() {
    let (rsa, issuer) = issuer_with_rsa_key().await;
    // Keys go stale at once, so every sign-in after the first tries to refresh them.
    issuer.max_age.store(0, Ordering::SeqCst);
    let (broker, _moto) =
        broker_with_moto(&issuer, "[jwks]\nmin_max_age_seconds = 0\ncooldown_seconds = 1\n").await;
    let token = rsa.sign_jwt(&corp_claims(&issuer));
    assert_eq!(sign_in(&broker, "corp", &token).await.status, StatusCode::OK);

    issuer.down.store(true, Ordering::SeqCst);
    // The smallest cooldown (1 s) between two refreshes.
    tokio::time::sleep(Duration::from_millis(1100)).await;
    let hits_before = issuer.hits();
    let answer = sign_in(&broker, "corp", &token).await;
    assert_eq!(answer.status, StatusCode::OK, "{}", answer.body);
    assert!(
        issuer.hits() > hits_before,
        "the stale keys were not even re-fetched"
    );
}

#[tokio::test]
async fn an_idp_down_before_any_key_was_fetched_is_a_502() {
    let (rsa, issuer) = issuer_with_rsa_key().await;
    issuer.down.store(true, Ordering::SeqCst);
    let broker = broker_without_pool(&issuer).await;
    let answer = sign_in(&broker, "corp", &rsa.sign_jwt(&corp_claims(&issuer))).await;
    assert_problem(&answer, 502, "jwks_unavailable");
}

#[tokio::test]
async fn cognito_errors_map_to_documented_statuses() {
    let (rsa, issuer) = issuer_with_rsa_key().await;
    let token = rsa.sign_jwt(&corp_claims(&issuer));
    let cases = [
        (
            400,
            cognito_error("NotAuthorizedException", "Invalid login token."),
            403,
            "pool_not_authorized",
        ),
        (
            400,
            cognito_error("ResourceNotFoundException", "IdentityPool not found"),
            502,
            "pool_not_found",
        ),
        (
            400,
            cognito_error("InvalidParameterException", "bad"),
            502,
            "pool_rejected_request",
        ),
        (
            400,
            cognito_error("ExternalServiceException", "idp down"),
            502,
            "pool_external_error",
        ),
        (
            400,
            cognito_error("TooManyRequestsException", "slow down"),
            429,
            "pool_throttled",
        ),
        (
            500,
            cognito_error("InternalErrorException", "oops"),
            502,
            "pool_unavailable",
        ),
        (200, "{not json".to_string(), 502, "pool_unavailable"),
    ];
    for (stub_status, stub_body, status, code) in cases {
        let stub = StubCognito::answering(stub_status, stub_body).await;
        let broker = broker_with_stub(&stub, &issuer).await;
        let answer = sign_in(&broker, "corp", &token).await;
        assert_problem(&answer, status, code);
        if status == 429 {
            assert!(answer.headers.contains_key(header::RETRY_AFTER), "{code}");
        }
        assert!(!answer.body.to_string().contains(&token), "{code}: token leaked");
    }
}

#[tokio::test]
async fn a_hanging_pool_ends_in_a_bounded_502() {
    let (rsa, issuer) = issuer_with_rsa_key().await;
    let stub = StubCognito::hanging().await;
    let broker = broker_with_stub(&stub, &issuer).await;
    let started = std::time::Instant::now();
    let answer = sign_in(&broker, "corp", &rsa.sign_jwt(&corp_claims(&issuer))).await;
    assert_problem(&answer, 502, "pool_unavailable");
    // Two attempts of 2 s each plus back-off: the sign-in must end, well before a client gives up.
    assert!(
        started.elapsed() < Duration::from_secs(15),
        "took {:?}",
        started.elapsed()
    );
    assert_eq!(stub.requests().len(), 2, "max_attempts = 2");
}

#[tokio::test]
async fn the_http_envelope_is_checked() {
    let (_, issuer) = issuer_with_rsa_key().await;
    let broker = broker_without_pool(&issuer).await;
    let url = format!("{broker}/auth/signin/corp");
    let envelopes: [(&str, Vec<u8>, u16, &str); 5] = [
        ("application/json", b"{oops".to_vec(), 400, "malformed_request"),
        ("application/json", Vec::new(), 400, "malformed_request"),
        ("application/json", b"{}".to_vec(), 400, "missing_id_token"),
        ("text/plain", b"a.b.c".to_vec(), 415, "unsupported_media_type"),
        ("application/json", vec![b' '; 10 << 20], 413, "body_too_large"),
    ];
    for (content_type, body, status, code) in envelopes {
        assert_problem(&post(&url, content_type, body).await, status, code);
    }
    assert_problem(
        &sign_in(&broker, "nobody", "a.b.c").await,
        404,
        "unknown_provider",
    );
    assert_problem(
        &post(&format!("{broker}/nowhere"), "application/json", "{}").await,
        404,
        "not_found",
    );
    let get = reqwest::get(&url).await.unwrap();
    assert_eq!(get.status(), StatusCode::METHOD_NOT_ALLOWED);
}

#[tokio::test]
async fn cors_is_an_allowlist_and_errors_carry_its_headers() {
    let (_, issuer) = issuer_with_rsa_key().await;
    let broker = broker_without_pool(&issuer).await;
    let client = reqwest::Client::new();
    let url = format!("{broker}/auth/signin/corp");
    let preflight = |origin: &'static str| {
        client
            .request(reqwest::Method::OPTIONS, &url)
            .header(header::ORIGIN, origin)
            .header(header::ACCESS_CONTROL_REQUEST_METHOD, "POST")
            .header(header::ACCESS_CONTROL_REQUEST_HEADERS, "content-type")
            .send()
    };
    let allowed = preflight("https://app.example.com").await.unwrap();
    assert_eq!(allowed.status(), StatusCode::NO_CONTENT);
    assert_eq!(
        allowed.headers()[header::ACCESS_CONTROL_ALLOW_ORIGIN],
        "https://app.example.com"
    );
    assert!(
        allowed.headers()[header::ACCESS_CONTROL_ALLOW_HEADERS]
            .to_str()
            .unwrap()
            .contains("content-type")
    );

    let refused = preflight("https://evil.example.com").await.unwrap();
    assert_eq!(refused.status(), StatusCode::FORBIDDEN);
    assert!(
        !refused
            .headers()
            .contains_key(header::ACCESS_CONTROL_ALLOW_ORIGIN)
    );

    let error = client
        .post(&url)
        .header(header::ORIGIN, "https://app.example.com")
        .json(&json!({"id_token": "x"}))
        .send()
        .await
        .unwrap();
    assert_eq!(error.status(), StatusCode::UNAUTHORIZED);
    assert_eq!(
        error.headers()[header::ACCESS_CONTROL_ALLOW_ORIGIN],
        "https://app.example.com"
    );
}

#[tokio::test]
async fn client_config_describes_every_provider() {
    let (_, issuer) = issuer_with_rsa_key().await;
    let broker = broker_without_pool(&issuer).await;
    let response = reqwest::get(format!("{broker}/auth/config")).await.unwrap();
    assert!(
        response.headers()[header::CACHE_CONTROL]
            .to_str()
            .unwrap()
            .starts_with("public")
    );
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["region"], "us-east-1");
    let providers = body["providers"].as_array().unwrap();
    let find = |name: &str| providers.iter().find(|p| p["name"] == name).unwrap().clone();
    let corp = find("corp");
    assert_eq!(corp["kind"], "oidc");
    assert_eq!(corp["clientIds"], json!(["corp-app"]));
    assert_eq!(corp["clientId"], "corp-app");
    assert_eq!(corp["flow"], "code");
    assert!(corp.get("scopes").is_none(), "{corp}");
    assert_eq!(find("gws")["flow"], "id_token");
    assert_eq!(corp["authorizationEndpoint"], format!("{}/authorize", issuer.url));
    assert_eq!(corp["tokenEndpoint"], format!("{}/token", issuer.url));
    let entra = find("entra");
    assert_eq!(
        entra["authorizationEndpoint"],
        format!("https://login.microsoftonline.com/{TENANT}/oauth2/v2.0/authorize")
    );
    assert_eq!(
        entra["endSessionEndpoint"],
        format!("https://login.microsoftonline.com/{TENANT}/oauth2/v2.0/logout")
    );
    assert_eq!(find("gws")["publicClient"], false);
    // Google has no RP-initiated logout; nobody here advertises the RFC 9207 `iss` parameter.
    assert!(find("gws").get("endSessionEndpoint").is_none());
    assert_eq!(corp["issParameterSupported"], false);
    assert_eq!(body["signinPath"], "/auth/signin/{provider}");
}
