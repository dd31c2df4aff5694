//! Sign-in cost on one core, without network noise:
//! - `verify/*`: one ID token through every provider check (parse, key lookup in a warm cache,
//!   signature, claims), next to `raw_signature/*`, the bare aws-lc-rs signature check on the same
//!   bytes with the JWK decoded once — the difference is the cost of credbroker's checks and of
//!   `jsonwebtoken` around the crypto. For RSA the floor is the `RsaPublicKeyComponents` check that
//!   `jsonwebtoken`'s aws-lc-rs backend makes, which sets the key up anew at each call (about 3 µs
//!   of a 2048-bit check); a key parsed once into a `ParsedPublicKey` would be faster, but
//!   `jsonwebtoken` keeps no such key (see docs/performance.md);
//! - `parse/*`: the strict pre-parse alone (three base64url segments, header and claims JSON),
//!   the part of `verify/*` that is credbroker's own and that no RSA timing noise hides;
//! - `signin/in_process_pool`: a whole `Broker::sign_in` (verify, rules, Logins, both pool calls)
//!   against an identity pool that answers in-process, so only broker work is measured.
//!
//! Run with `cargo bench --bench signin`. The issuer's JWKS is served over loopback HTTP once and
//! then cached, as in production.

use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use axum::Json;
use axum::routing::get;
use credbroker::broker::Broker;
use credbroker::config::Config;
use credbroker::key::Algorithm;
use credbroker::local::signing_key::SigningKey;
use credbroker::pool::{AwsCredentials, DeveloperLogin, IdentityPool, Logins, PoolFuture};
use credbroker::provider::{Provider, TokenUse};
use credbroker::tags::PrincipalTags;
use credbroker::token::UnverifiedToken;
use criterion::{Criterion, criterion_group, criterion_main};
use serde_json::{Value, json};

/// An identity pool that answers at once, so the benchmark measures the broker alone.
struct InProcessPool;

impl IdentityPool for InProcessPool {
    fn get_id<'a>(&'a self, _logins: &'a Logins) -> PoolFuture<'a, String> {
        Box::pin(async { Ok("us-east-1:00000000-0000-4000-8000-000000000001".to_string()) })
    }

    fn get_credentials<'a>(
        &'a self,
        _identity_id: &'a str,
        _logins: &'a Logins,
        _role_arn: Option<&'a str>,
    ) -> PoolFuture<'a, AwsCredentials> {
        Box::pin(async {
            Ok(AwsCredentials {
                access_key_id: "ASIABENCHMARK0000000".into(),
                secret_access_key: "secret".into(),
                session_token: "token".into(),
                expiration: SystemTime::now() + Duration::from_secs(3600),
            })
        })
    }

    fn developer_login<'a>(
        &'a self,
        _provider_name: &'a str,
        _user_id: &'a str,
        _tags: &'a PrincipalTags,
    ) -> PoolFuture<'a, DeveloperLogin> {
        Box::pin(async {
            Ok(DeveloperLogin {
                identity_id: "us-east-1:00000000-0000-4000-8000-000000000001".to_string(),
                token: "cognito-openid-token".to_string(),
            })
        })
    }
}

/// Serves `{"keys": [...]}` at `/jwks` and discovery at the root on loopback; returns the issuer.
async fn serve_issuer(keys: Vec<Value>) -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("loopback port");
    let issuer = format!("http://{}", listener.local_addr().expect("bound"));
    let document = json!({"issuer": issuer, "jwks_uri": format!("{issuer}/jwks")});
    let router = axum::Router::new()
        .route("/jwks", get(move || async move { Json(json!({ "keys": keys })) }))
        .route(
            "/.well-known/openid-configuration",
            get(move || async move { Json(document) }),
        );
    tokio::spawn(async move { axum::serve(listener, router).await });
    issuer
}

fn claims(issuer: &str) -> Value {
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("after 1970")
        .as_secs();
    json!({"iss": issuer, "aud": "bench-app", "sub": "user-1", "email": "a@example.com",
           "iat": now, "exp": now + 3600})
}

fn config(issuer: &str) -> Config {
    Config::from_toml(&format!(
        "[identity_pool]\nid = \"us-east-1:00000000-0000-4000-8000-000000000000\"\n\
         [providers.corp]\nkind = \"oidc\"\nissuer = \"{issuer}\"\naudiences = [\"bench-app\"]\n\
         require = [\"email~@example\\\\.com$\"]\n"
    ))
    .expect("bench config is valid")
}

fn bench_signin(c: &mut Criterion) {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let keys = [
        SigningKey::generate(Algorithm::RS256, "rs"),
        SigningKey::generate(Algorithm::ES256, "es"),
    ];
    let issuer = runtime.block_on(serve_issuer(keys.iter().map(SigningKey::public_jwk).collect()));
    let config = config(&issuer);
    let broker = Broker::new(&config, Arc::new(InProcessPool)).expect("broker");
    let provider: &Provider = broker.providers().next().expect("one provider");

    for key in &keys {
        let alg = key.algorithm().name();
        let token = key.sign_jwt(&claims(&issuer));
        // Warm the key cache (one JWKS fetch), as every sign-in after the first finds it.
        runtime
            .block_on(provider.verify(&token, TokenUse::SignIn, SystemTime::now()))
            .expect("token verifies");
        c.bench_function(&format!("verify/{alg}"), |b| {
            b.to_async(&runtime)
                .iter(|| provider.verify(&token, TokenUse::SignIn, SystemTime::now()))
        });

        c.bench_function(&format!("parse/{alg}"), |b| {
            b.iter(|| UnverifiedToken::parse(&token, config.limits.max_token_bytes).map(|t| t.header().alg))
        });

        let (signing_input, signature) = split_signature(&token);
        let raw_verify = raw_verifier(&key.public_jwk());
        assert!(raw_verify(signing_input.as_bytes(), &signature));
        c.bench_function(&format!("raw_signature/{alg}"), |b| {
            b.iter(|| raw_verify(signing_input.as_bytes(), &signature))
        });
    }

    let token = keys[0].sign_jwt(&claims(&issuer));
    runtime
        .block_on(broker.sign_in("corp", &token))
        .expect("sign-in works");
    c.bench_function("signin/in_process_pool", |b| {
        b.to_async(&runtime).iter(|| broker.sign_in("corp", &token))
    });
}

/// The signing input and the decoded signature of a compact JWS.
fn split_signature(token: &str) -> (String, Vec<u8>) {
    let (input, signature) = token.rsplit_once('.').expect("three segments");
    (input.to_string(), base64url(signature))
}

fn base64url(text: &str) -> Vec<u8> {
    use base64::Engine;
    base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(text)
        .expect("base64url")
}

/// A bare check of (message, signature).
type RawVerify = Box<dyn Fn(&[u8], &[u8]) -> bool>;

/// The bare aws-lc-rs check for an RS256 or ES256 `jwk`, its members decoded once: for RSA the
/// `RsaPublicKeyComponents` check `jsonwebtoken`'s backend makes (the key set up at each call);
/// for EC the point parsed once into a `ParsedPublicKey`, where `jsonwebtoken` parses it at each
/// call.
fn raw_verifier(jwk: &Value) -> RawVerify {
    use aws_lc_rs::signature::{self as sig, ParsedPublicKey, RsaPublicKeyComponents};
    let member = |name: &str| base64url(jwk[name].as_str().expect("JWK member"));
    match jwk["kty"].as_str() {
        Some("RSA") => {
            let key = RsaPublicKeyComponents {
                n: member("n"),
                e: member("e"),
            };
            Box::new(move |message, signature| {
                key.verify(&sig::RSA_PKCS1_2048_8192_SHA256, message, signature)
                    .is_ok()
            })
        }
        _ => {
            let point = [&[0x04][..], &member("x"), &member("y")].concat();
            let key = ParsedPublicKey::new(&sig::ECDSA_P256_SHA256_FIXED, point).expect("P-256 point");
            Box::new(move |message, signature| key.verify_sig(message, signature).is_ok())
        }
    }
}

criterion_group!(benches, bench_signin);
criterion_main!(benches);
