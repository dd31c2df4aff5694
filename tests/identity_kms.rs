//! The identity assertion signed by a KMS key, as the Lambda deployment signs it
//! (`credbroker::identity::kms`), against moto server's KMS (`CreateKey` with `ECC_NIST_P256` /
//! `SIGN_VERIFY`, `GetPublicKey` answering a DER SubjectPublicKeyInfo, `Sign` answering a DER
//! ECDSA signature): a real sign-in at moto's identity pool, the keys published at
//! `/auth/identity-keys`, and the app side (`IdentityVerifier`) accepting the assertion.

#[allow(dead_code)]
mod support;

use std::net::Ipv4Addr;
use std::sync::Arc;

use aws_lc_rs::digest::{SHA256, digest};
use aws_lc_rs::signature::{ECDSA_P256_SHA256_FIXED, UnparsedPublicKey};
use axum::body::Body;
use axum::http::{Request, StatusCode};
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use credbroker::api;
use credbroker::broker::Broker;
use credbroker::config::Config;
use credbroker::identity::kms::{KeyError, KmsIdentitySigner, MAX_RAW_MESSAGE_BYTES};
use credbroker::identity::{IdentitySigner, IdentityVerifier};
use credbroker::pool::CognitoPool;
use http_body_util::BodyExt;
use lambda_http::aws_lambda_events::apigw::ApiGatewayProxyRequestContext;
use lambda_http::request::RequestContext;
use serde_json::{Value, json};
use support::{
    MotoServer, broker_config, corp_claims, create_identity_pool, free_port, issuer_with_rsa_key, moto_json,
    sign_in,
};
use tower::ServiceExt;
use url::Url;

/// A new KMS key of `spec` and `usage` in moto; its ARN.
async fn create_key(moto: &MotoServer, spec: &str, usage: &str) -> String {
    let body = json!({"KeySpec": spec, "KeyUsage": usage});
    let answer = moto_json(moto, "kms", "TrentService.CreateKey", body).await;
    answer["KeyMetadata"]["Arn"]
        .as_str()
        .expect("a key ARN")
        .to_string()
}

/// Moto's dummy credentials (it checks none, but the SDK signs every KMS call).
fn moto_credentials() -> aws_credential_types::Credentials {
    aws_credential_types::Credentials::new("testing", "testing", None, None, "moto")
}

/// `[identity]` for moto with these keys (the first signs) and an optional fixed issuer.
fn identity_toml(moto: &MotoServer, keys: &[&str], issuer: Option<&str>) -> String {
    let published: Vec<String> = keys[1..].iter().map(|key| format!("\"{key}\"")).collect();
    let issuer = issuer
        .map(|issuer| format!("issuer = \"{issuer}\"\n"))
        .unwrap_or_default();
    format!(
        "[identity]\nkms_key_id = \"{}\"\npublished_kms_key_ids = [{}]\nendpoint = \"{}\"\n{issuer}",
        keys[0],
        published.join(", "),
        moto.endpoint
    )
}

/// A broker against moto's pool, signing with moto's KMS as `config`'s `[identity]` says.
async fn broker(config: &Config) -> Broker {
    let pool = CognitoPool::new(config.require_identity_pool().unwrap()).await;
    let mut broker = Broker::new(config, Arc::new(pool)).expect("broker");
    let signer = KmsIdentitySigner::with_credentials(config.identity.as_ref().unwrap(), moto_credentials())
        .await
        .expect("moto's keys are P-256 signing keys");
    broker.set_identity_signer(Arc::new(signer));
    broker
}

/// The JSON of a compact JWS's `part` (0: header, 1: claims).
fn jws_part(jws: &str, part: usize) -> Value {
    let text = jws.split('.').nth(part).expect("a compact JWS");
    serde_json::from_slice(&URL_SAFE_NO_PAD.decode(text).unwrap()).unwrap()
}

/// The request parts an app behind API Gateway sees: the verified identity id in the Lambda
/// proxy request context, and the assertion header.
fn app_request(identity_id: &str, assertion: &str) -> axum::http::request::Parts {
    let mut context = ApiGatewayProxyRequestContext::default();
    context.identity.cognito_identity_id = Some(identity_id.to_string());
    let request = Request::builder()
        .uri("/api/app/")
        .header("x-credbroker-assertion", assertion)
        .extension(RequestContext::ApiGatewayV1(context))
        .body(())
        .unwrap();
    request.into_parts().0
}

#[tokio::test]
async fn a_kms_key_signs_assertions_that_apps_verify_with_the_published_keys() {
    let moto = MotoServer::start().await;
    let pool_id = create_identity_pool(&moto.endpoint, &["accounts.google.com"]).await;
    let signing = create_key(&moto, "ECC_NIST_P256", "SIGN_VERIFY").await;
    let next = create_key(&moto, "ECC_NIST_P256", "SIGN_VERIFY").await;
    let (rsa, issuer) = issuer_with_rsa_key().await;
    let port = free_port();
    let base = format!("http://127.0.0.1:{port}");
    let extra = identity_toml(&moto, &[&signing, &next], Some(&format!("{base}/auth")));
    let config = broker_config(&issuer, &moto.endpoint, &pool_id, &extra);
    let router = api::router(Arc::new(broker(&config).await));
    let listener = tokio::net::TcpListener::bind((Ipv4Addr::LOCALHOST, port))
        .await
        .unwrap();
    tokio::spawn(async move { axum::serve(listener, router).await });

    let answer = sign_in(&base, "corp", &rsa.sign_jwt(&corp_claims(&issuer))).await;
    assert_eq!(answer.status, StatusCode::OK, "{}", answer.body);
    let assertion = answer.body["identityAssertion"].as_str().expect("an assertion");
    let identity_id = answer.body["identityId"].as_str().unwrap();

    // Both keys are published, the signing key first, each under its thumbprint.
    let keys: Value = reqwest::get(format!("{base}/auth/identity-keys"))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let keys = keys["keys"].as_array().unwrap();
    assert_eq!(keys.len(), 2, "{keys:?}");
    assert_ne!(keys[0]["kid"], keys[1]["kid"]);
    let header = jws_part(assertion, 0);
    assert_eq!(
        header,
        json!({"alg": "ES256", "kid": keys[0]["kid"], "typ": "credbroker-identity+jwt"})
    );
    assert_eq!(jws_part(assertion, 1)["iss"], format!("{base}/auth"));

    // The app's side: the identity id API Gateway vouched for + the assertion.
    let verifier = IdentityVerifier::new(
        reqwest::Client::new(),
        &Url::parse(&format!("{base}/auth")).unwrap(),
    );
    let identity = verifier
        .identify(&app_request(identity_id, assertion))
        .await
        .expect("the assertion verifies")
        .expect("an identity");
    assert_eq!(identity.identity_id, identity_id);
    assert_eq!(identity.provider.as_deref(), Some("corp"));
    assert_eq!(identity.subject.as_deref(), Some("user-1"));
    assert_eq!(identity.claims["email"], "ann@example.com");
    // Another identity's request with this assertion is refused.
    let other = "us-east-1:00000000-0000-4000-8000-000000000000";
    assert!(verifier.identify(&app_request(other, assertion)).await.is_err());

    check_issuer_from_the_gateway(&moto, &pool_id, &signing).await;
}

/// Without a configured issuer, the assertion names the `/auth` URL API Gateway routed the
/// sign-in to; outside API Gateway there is no issuer and sign-in says so.
async fn check_issuer_from_the_gateway(moto: &MotoServer, pool_id: &str, signing: &str) {
    let (rsa, issuer) = issuer_with_rsa_key().await;
    let config = broker_config(
        &issuer,
        &moto.endpoint,
        pool_id,
        &identity_toml(moto, &[signing], None),
    );
    let router = api::router(Arc::new(broker(&config).await));
    let token = rsa.sign_jwt(&corp_claims(&issuer));
    let request = |context: Option<RequestContext>| {
        let mut builder = Request::post("/auth/signin/corp").header("content-type", "application/json");
        if let Some(context) = context {
            builder = builder.extension(context);
        }
        builder
            .body(Body::from(json!({"id_token": token}).to_string()))
            .unwrap()
    };
    let mut context = ApiGatewayProxyRequestContext::default();
    context.domain_name = Some("abc123.execute-api.us-east-1.amazonaws.com".into());
    context.path = Some("/prod/auth/signin/corp".into());
    let answer = router
        .clone()
        .oneshot(request(Some(RequestContext::ApiGatewayV1(context))))
        .await
        .unwrap();
    assert_eq!(answer.status(), StatusCode::OK);
    let body: Value =
        serde_json::from_slice(&answer.into_body().collect().await.unwrap().to_bytes()).unwrap();
    let claims = jws_part(body["identityAssertion"].as_str().unwrap(), 1);
    assert_eq!(
        claims["iss"],
        "https://abc123.execute-api.us-east-1.amazonaws.com/prod/auth"
    );

    // Not through API Gateway and no issuer configured: a clear error, no unsigned answer.
    let answer = router.oneshot(request(None)).await.unwrap();
    assert_eq!(answer.status(), StatusCode::INTERNAL_SERVER_ERROR);
    let body: Value =
        serde_json::from_slice(&answer.into_body().collect().await.unwrap().to_bytes()).unwrap();
    assert_eq!(body["code"], "identity_issuer_unknown", "{body}");
}

#[tokio::test]
async fn long_signing_inputs_go_as_digests_and_unusable_keys_stop_the_start() {
    let moto = MotoServer::start().await;
    let signing = create_key(&moto, "ECC_NIST_P256", "SIGN_VERIFY").await;
    let config = Config::from_toml(&identity_toml(
        &moto,
        &[&signing],
        Some("https://api.example.com/auth"),
    ))
    .unwrap();
    let signer = KmsIdentitySigner::with_credentials(config.identity.as_ref().unwrap(), moto_credentials())
        .await
        .unwrap();
    let jwk = &signer.public_keys()["keys"][0];
    let mut point = vec![0x04];
    for coordinate in ["x", "y"] {
        point.extend(URL_SAFE_NO_PAD.decode(jwk[coordinate].as_str().unwrap()).unwrap());
    }
    let public = UnparsedPublicKey::new(&ECDSA_P256_SHA256_FIXED, point);
    let verify = |jws: &str, message: &[u8]| {
        let signature = URL_SAFE_NO_PAD.decode(jws.rsplit('.').next().unwrap()).unwrap();
        public.verify(message, &signature).is_ok()
    };

    let small = signer.sign(&json!({"sub": "a"})).await.unwrap();
    let input = small.rsplit_once('.').unwrap().0;
    assert!(verify(&small, input.as_bytes()), "RAW: a plain ES256 signature");

    let large = signer
        .sign(&json!({"claims": {"groups": vec!["g".repeat(60); 80]}}))
        .await
        .unwrap();
    let input = large.rsplit_once('.').unwrap().0;
    assert!(input.len() > MAX_RAW_MESSAGE_BYTES);
    // KMS signs a DIGEST message as given; moto ignores MessageType and hashes it once more, so
    // what moto signed is exactly the 32-byte SHA-256 digest of the signing input we sent.
    assert!(verify(&large, digest(&SHA256, input.as_bytes()).as_ref()));

    check_unusable_keys(&moto).await;
}

/// Keys that cannot sign ES256, and keys KMS cannot find, stop the broker at start.
async fn check_unusable_keys(moto: &MotoServer) {
    let rsa = create_key(moto, "RSA_2048", "SIGN_VERIFY").await;
    let p384 = create_key(moto, "ECC_NIST_P384", "SIGN_VERIFY").await;
    let good = create_key(moto, "ECC_NIST_P256", "SIGN_VERIFY").await;
    let missing = "arn:aws:kms:us-east-1:123456789012:key/00000000-0000-4000-8000-000000000000";
    for (keys, unusable) in [
        (vec![rsa.as_str()], true),
        (vec![p384.as_str()], true),
        (vec![good.as_str(), rsa.as_str()], true),
        (vec![missing], false),
    ] {
        let config = Config::from_toml(&identity_toml(moto, &keys, None)).unwrap();
        let error =
            KmsIdentitySigner::with_credentials(config.identity.as_ref().unwrap(), moto_credentials())
                .await
                .expect_err("an unusable key");
        assert_eq!(
            matches!(error, KeyError::Unusable { .. }),
            unusable,
            "{keys:?}: {error}"
        );
        let message = credbroker::config::ConfigError::from(error).to_string();
        assert!(
            message.contains("`identity`") && message.contains("fix:"),
            "{message}"
        );
    }
}
