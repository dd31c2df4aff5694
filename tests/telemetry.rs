//! The Lambda metrics: the embedded-metric-format lines a sign-in or an authorizer event leaves,
//! parsed as CloudWatch would, for every outcome `code` a sign-in can answer with (every code of
//! docs/openapi.yaml's `Problem` except the three answered before a sign-in starts —
//! `origin_not_allowed`, `not_found`, `method_not_allowed` — and `ambiguous_key`, which needs an
//! issuer with two keys of one algorithm) and every authorizer decision — and
//! never a token, a key or a claim value in any of them.
//!
//! The recorder is the binaries' own ([`EmfRecorder`]), installed for this test process; the
//! broker is the real router over HTTP with a test issuer and a stub identity pool. The cases
//! run one after another in one test, since the recorder is process-wide.

#[allow(dead_code)]
mod support;

use std::collections::BTreeSet;
use std::sync::OnceLock;

use credbroker::authorizer::{Authorizer, AuthorizerEvent};
use credbroker::key::Algorithm;
use credbroker::local::signing_key::SigningKey;
use credbroker::telemetry::{self, emf::EmfRecorder};
use credbroker::verifier::Verifier;
use serde_json::{Value, json};
use support::{
    Issuer, OTHER_TENANT, StubCognito, b64, broker_config, broker_with_stub, cognito_error, cognito_success,
    corp_claims, post, unix_now, with,
};

const SECRET_KEY: &str = "wJalrXUtnFEMI/K7MDENG/bPxRfiCYSECRETKEYEXAMPLE";
const SESSION_TOKEN: &str = "IQoJb3JpZ2luX2VjEXAMPLESESSIONTOKENVALUE0123456789";
/// Secrets shorter than this are too generic to search for.
const MIN_SECRET_CHARS: usize = 16;

/// The process's recorder (installed once; every test here shares it).
fn recorder() -> &'static EmfRecorder {
    static RECORDER: OnceLock<EmfRecorder> = OnceLock::new();
    RECORDER.get_or_init(|| {
        let recorder = EmfRecorder::new("credbroker-test");
        recorder
            .clone()
            .install()
            .expect("no other recorder in this process");
        recorder
    })
}

/// What was recorded since the last call, as the lines the Lambda writes, parsed back.
fn flushed_documents() -> Vec<Value> {
    let mut out = Vec::new();
    recorder().flush(Some("lambda-req-1"), &mut out).unwrap();
    let text = String::from_utf8(out).unwrap();
    text.lines()
        .map(|line| serde_json::from_str(line).unwrap_or_else(|e| panic!("not JSON ({e}): {line}")))
        .collect()
}

/// Checks one document against the EMF specification's rules that CloudWatch enforces.
fn assert_valid_emf(document: &Value) {
    let metadata = &document["_aws"];
    assert!(
        metadata["Timestamp"].as_u64().unwrap() > 1_600_000_000_000,
        "{document}"
    );
    let directives = metadata["CloudWatchMetrics"]
        .as_array()
        .expect("CloudWatchMetrics array");
    assert!(!directives.is_empty());
    for directive in directives {
        assert_eq!(directive["Namespace"], "credbroker-test");
        for set in directive["Dimensions"].as_array().unwrap() {
            let keys = set.as_array().unwrap();
            assert!(keys.len() <= 30);
            for key in keys {
                let value = &document[key.as_str().unwrap()];
                assert!(
                    value.is_string(),
                    "dimension {key} has no string value: {document}"
                );
            }
        }
        let metrics = directive["Metrics"].as_array().unwrap();
        assert!(!metrics.is_empty() && metrics.len() <= 100);
        for metric in metrics {
            let name = metric["Name"].as_str().unwrap();
            assert!(["Seconds", "Count"].contains(&metric["Unit"].as_str().unwrap()));
            match &document[name] {
                Value::Number(_) => {}
                Value::Array(values) => {
                    assert!(!values.is_empty() && values.len() <= 100);
                    assert!(values.iter().all(Value::is_number), "{document}");
                }
                other => panic!("metric {name} has value {other}"),
            }
        }
    }
    assert_eq!(document["RequestId"], "lambda-req-1");
}

/// The one document holding `metric`, checked.
fn document_with<'a>(documents: &'a [Value], metric: &str) -> &'a Value {
    let holding: Vec<&Value> = documents.iter().filter(|d| d.get(metric).is_some()).collect();
    assert_eq!(holding.len(), 1, "{metric} in {documents:#?}");
    holding[0]
}

fn assert_no_secret(documents: &[Value], secrets: &[String]) {
    for document in documents {
        let line = document.to_string();
        for secret in secrets.iter().filter(|s| s.len() >= MIN_SECRET_CHARS) {
            assert!(!line.contains(secret.as_str()), "a secret leaked into {line}");
            for segment in secret.split('.').filter(|s| s.len() >= MIN_SECRET_CHARS) {
                assert!(!line.contains(segment), "a token segment leaked into {line}");
            }
        }
    }
}

/// One sign-in request: provider, content type, body, and the code it must be answered with.
struct Case {
    code: &'static str,
    provider: &'static str,
    content_type: &'static str,
    body: String,
}

fn token_case(code: &'static str, token: &str) -> Case {
    Case {
        code,
        provider: "corp",
        content_type: "application/json",
        body: json!({ "id_token": token }).to_string(),
    }
}

/// Every sign-in answer that needs no failing identity pool or IdP, each with its code.
fn request_and_token_cases(key: &SigningKey, issuer: &Issuer) -> Vec<Case> {
    let claims = corp_claims(issuer);
    let sign = |changes: Value| key.sign_jwt(&with(claims.clone(), changes));
    let stranger = SigningKey::generate(Algorithm::RS256, "rsa-1");
    let unknown = SigningKey::generate(Algorithm::RS256, "not-published");
    let none_header = json!({"alg": "none", "kid": "rsa-1"});
    let mut cases = vec![
        token_case("ok", &sign(json!({}))),
        token_case("bad_signature", &stranger.sign_jwt(&claims)),
        token_case("unknown_key", &unknown.sign_jwt(&claims)),
        token_case(
            "unsupported_algorithm",
            &format!("{}.{}.", b64(&none_header), b64(&claims)),
        ),
        token_case("malformed_token", "not-a-jwt"),
        token_case("token_expired", &sign(json!({"exp": unix_now() - 3600}))),
        token_case("token_not_yet_valid", &sign(json!({"nbf": unix_now() + 3600}))),
        token_case("token_issued_in_future", &sign(json!({"iat": unix_now() + 3600}))),
        token_case("wrong_audience", &sign(json!({"aud": "someone-else"}))),
        token_case(
            "wrong_azp",
            &sign(json!({"aud": ["corp-app", "other"], "azp": "other"})),
        ),
        token_case("wrong_issuer", &sign(json!({"iss": "https://elsewhere.example"}))),
        token_case("missing_claim", &sign(json!({"sub": null}))),
        token_case(
            "claim_rule_denied",
            &sign(json!({"email": "mallory@evil.example"})),
        ),
        token_case("token_too_large", &"a".repeat(20 * 1024)),
        token_case("missing_id_token", ""),
    ];
    let standard = |iss: &str, aud: &str, extra: Value| {
        let claims =
            json!({"iss": iss, "aud": aud, "sub": "user-1", "iat": unix_now(), "exp": unix_now() + 600});
        key.sign_jwt(&with(claims, extra))
    };
    let other_tenant = format!("https://login.microsoftonline.com/{OTHER_TENANT}/v2.0");
    let cognito = "https://cognito-idp.us-east-1.amazonaws.com/us-east-1_TestPool";
    cases.extend([
        Case {
            code: "wrong_tenant",
            provider: "entra",
            ..token_case(
                "",
                &standard(
                    &other_tenant,
                    "entra-app",
                    json!({"tid": OTHER_TENANT, "oid": "o-1"}),
                ),
            )
        },
        Case {
            code: "wrong_hosted_domain",
            provider: "gws",
            ..token_case(
                "",
                &standard(
                    "https://accounts.google.com",
                    "g-app",
                    json!({"hd": "evil.example"}),
                ),
            )
        },
        Case {
            code: "wrong_token_use",
            provider: "pool",
            ..token_case(
                "",
                &standard(cognito, "cognito-app", json!({"token_use": "access"})),
            )
        },
        Case {
            code: "unknown_provider",
            provider: "nobody",
            ..token_case("", &sign(json!({})))
        },
        Case {
            code: "malformed_request",
            content_type: "application/json",
            body: "{".into(),
            ..token_case("", "")
        },
        Case {
            code: "unsupported_media_type",
            content_type: "text/plain",
            body: sign(json!({})),
            ..token_case("", "")
        },
        Case {
            code: "body_too_large",
            body: "x".repeat(70 * 1024),
            ..token_case("", "")
        },
    ]);
    cases
}

/// Runs one sign-in case and checks its metrics line; returns the documents.
async fn run_case(broker: &str, case: &Case) -> Vec<Value> {
    let answer = post(
        &format!("{broker}/auth/signin/{}", case.provider),
        case.content_type,
        case.body.clone(),
    )
    .await;
    let answered = answer.body["code"]
        .as_str()
        .unwrap_or(if answer.status == 200 { "ok" } else { "" });
    assert_eq!(answered, case.code, "{}", answer.text);
    let documents = flushed_documents();
    for document in &documents {
        assert_valid_emf(document);
    }
    let signin = document_with(&documents, telemetry::SIGNINS);
    assert_eq!(signin[telemetry::SIGNINS], 1);
    assert_eq!(signin["code"], case.code);
    let provider = if case.provider == "nobody" {
        telemetry::UNKNOWN_PROVIDER
    } else {
        case.provider
    };
    assert_eq!(signin["provider"], provider);
    let expected_outcome = if case.code == "ok" {
        "success"
    } else if answer.status.is_server_error() || answer.status == 429 {
        "error"
    } else {
        "refused"
    };
    assert_eq!(signin["outcome"], expected_outcome, "{}", case.code);
    let duration = document_with(&documents, telemetry::SIGNIN_DURATION);
    assert_eq!(duration[telemetry::SIGNIN_DURATION].as_array().unwrap().len(), 1);
    documents
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_outcome_leaves_a_parsable_metrics_line_without_secrets() {
    recorder();
    let key = SigningKey::generate(Algorithm::RS256, "rsa-1");
    let issuer = Issuer::start(&[&key]).await;
    let mut secrets = vec![SECRET_KEY.to_string(), SESSION_TOKEN.to_string()];
    let mut codes = BTreeSet::new();

    let stub = StubCognito::answering(200, cognito_success(SECRET_KEY, SESSION_TOKEN)).await;
    let broker = broker_with_stub(&stub, &issuer).await;
    for case in request_and_token_cases(&key, &issuer) {
        secrets.push(case.body.clone());
        let documents = run_case(&broker, &case).await;
        if case.code == "ok" {
            let operations: BTreeSet<&str> = documents
                .iter()
                .filter_map(|d| d.get("operation").and_then(Value::as_str))
                .collect();
            assert_eq!(operations, BTreeSet::from(["GetId", "GetCredentialsForIdentity"]));
            assert!(documents.len() <= 2, "{documents:#?}");
            let fetches = document_with(&documents, telemetry::JWKS_FETCHES);
            assert_eq!(fetches["provider"], "corp");
        }
        assert_no_secret(&documents, &secrets);
        codes.insert(case.code);
    }

    let token = key.sign_jwt(&corp_claims(&issuer));
    secrets.push(token.clone());
    let pool_failures = [
        ("pool_not_authorized", 400, "NotAuthorizedException"),
        ("pool_not_found", 400, "ResourceNotFoundException"),
        ("pool_throttled", 400, "TooManyRequestsException"),
        ("pool_rejected_request", 400, "InvalidParameterException"),
        ("pool_external_error", 400, "ExternalServiceException"),
        ("pool_unavailable", 500, "InternalErrorException"),
    ];
    for (code, status, exception) in pool_failures {
        let stub = StubCognito::answering(status, cognito_error(exception, "no")).await;
        let broker = broker_with_stub(&stub, &issuer).await;
        let documents = run_case(&broker, &token_case(code, &token)).await;
        let throttles = documents
            .iter()
            .find(|d| d.get(telemetry::COGNITO_THROTTLES).is_some());
        assert_eq!(throttles.is_some(), code == "pool_throttled", "{documents:#?}");
        if let Some(throttled) = throttles {
            assert_eq!(throttled["operation"], "GetId");
        }
        assert_no_secret(&documents, &secrets);
        codes.insert(code);
    }

    // The IdP down before any key was fetched: keys unavailable, a failed fetch counted.
    issuer.down.store(true, std::sync::atomic::Ordering::SeqCst);
    let broker = broker_with_stub(&stub, &issuer).await;
    let documents = run_case(&broker, &token_case("jwks_unavailable", &token)).await;
    assert_eq!(
        document_with(&documents, telemetry::JWKS_FETCH_FAILURES)["provider"],
        "corp"
    );
    assert_no_secret(&documents, &secrets);
    codes.insert("jwks_unavailable");

    let all: BTreeSet<&str> = [
        "ok",
        "bad_signature",
        "unknown_key",
        "unsupported_algorithm",
        "malformed_token",
        "token_expired",
        "token_not_yet_valid",
        "token_issued_in_future",
        "wrong_audience",
        "wrong_azp",
        "wrong_issuer",
        "missing_claim",
        "wrong_tenant",
        "wrong_hosted_domain",
        "wrong_token_use",
        "claim_rule_denied",
        "token_too_large",
        "missing_id_token",
        "unknown_provider",
        "malformed_request",
        "unsupported_media_type",
        "body_too_large",
        "pool_not_authorized",
        "pool_not_found",
        "pool_throttled",
        "pool_rejected_request",
        "pool_external_error",
        "pool_unavailable",
        "jwks_unavailable",
    ]
    .into();
    assert_eq!(codes, all);

    authorizer_decisions(&key, &issuer).await;
}

/// Allow, deny and unauthorized each leave one decision line.
async fn authorizer_decisions(key: &SigningKey, issuer: &Issuer) {
    issuer.down.store(false, std::sync::atomic::Ordering::SeqCst);
    let mut config = broker_config(
        issuer,
        "http://127.0.0.1:9",
        support::UNUSED_POOL_ID,
        "[authorizer]\nallow = [{ when = \"groups:staff\", routes = [\"GET /reports/*\"] }]\n",
    );
    // As the authorizer Lambda runs: providers only, no identity pool.
    config.identity_pool = None;
    let verifier = Verifier::from_config(&config).unwrap();
    let authorizer = Authorizer::new(config.require_authorizer().unwrap());
    let claims = corp_claims(issuer);
    let staff = key.sign_jwt(&claims);
    let outsider = key.sign_jwt(&with(claims, json!({"groups": ["guests"]})));
    let cases = [
        (Some(staff.as_str()), "allow"),
        (Some(outsider.as_str()), "deny"),
        (None, "unauthorized"),
    ];
    for (token, decision) in cases {
        let mut event = json!({
            "type": "REQUEST",
            "methodArn": "arn:aws:execute-api:eu-west-1:123456789012:abc123/prod/GET/reports/7",
            "requestContext": {},
        });
        if let Some(token) = token {
            event["headers"] = json!({ "Authorization": format!("Bearer {token}") });
        }
        let event: AuthorizerEvent = serde_json::from_value(event).unwrap();
        let _ = authorizer.answer(&verifier, &event).await;
        let documents = flushed_documents();
        for document in &documents {
            assert_valid_emf(document);
        }
        let line = document_with(&documents, telemetry::AUTHORIZER_DECISIONS);
        assert_eq!(line["decision"], decision);
        assert_eq!(line[telemetry::AUTHORIZER_DECISIONS], 1);
        assert_no_secret(&documents, &[staff.clone(), outsider.clone(), "user-1@".into()]);
        for claim_value in ["ann@example.com", "staff", "guests", "user-1"] {
            let dimensions: Vec<&Value> = documents
                .iter()
                .flat_map(|d| d.as_object().unwrap().values())
                .filter(|v| v.is_string())
                .collect();
            assert!(
                !dimensions.iter().any(|v| *v == claim_value),
                "{claim_value} in {documents:#?}"
            );
        }
    }
}
