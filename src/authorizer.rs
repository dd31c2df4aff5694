//! The bearer authorizer: an API Gateway REQUEST authorizer (`credbroker-authorizer`) for APIs
//! whose clients send `Authorization: Bearer <ID token>` instead of SigV4.
//!
//! The token goes through the same verifier as a sign-in ([`Verifier::verify_bearer`]: the provider
//! is found by the token's issuer, then every check and the provider's `require` rules), and the
//! `[authorizer]` access rules turn the verified claims into an IAM policy.
//!
//! API Gateway caches an authorizer's answer per token (the identity source) and reuses it for
//! *every* route of the stage, so the policy never depends on the route of the request that
//! happened to fill the cache: it allows every route the caller may use and nothing else. Only
//! the API and stage are taken from the request's `methodArn`.
//!
//! Answers, as API Gateway reads them:
//! - a verified caller with at least one matching access rule: an `Allow` policy on the routes of
//!   every matching rule, with the identity in `context`;
//! - a verified caller no access rule admits, whose provider `require` rule fails, or whose
//!   access token lacks a required scope (`insufficient_scope`, RFC 6750 §3.1: a valid token
//!   short of scope is 403, not 401): an explicit `Deny` on the whole stage (API Gateway answers
//!   403). A Lambda authorizer can only Allow, Deny or fail `Unauthorized`, so the RFC's
//!   `WWW-Authenticate: Bearer error="insufficient_scope"` header cannot come from here; the
//!   `code` is in the log line;
//! - no bearer token or a token that fails verification: [`Refusal::Unauthorized`], which the
//!   Lambda reports as the error `Unauthorized` (API Gateway answers 401);
//! - the provider's keys cannot be fetched: [`Refusal::Failed`] (API Gateway answers 500).

use std::fmt;
use std::time::Instant;

use axum::http::StatusCode;
use lambda_http::aws_lambda_events::apigw::{
    ApiGatewayCustomAuthorizerPolicy, ApiGatewayCustomAuthorizerRequest,
    ApiGatewayCustomAuthorizerRequestTypeRequest, ApiGatewayCustomAuthorizerResponse,
};
use lambda_http::aws_lambda_events::iam::{IamPolicyEffect, IamPolicyStatement};
use serde::Deserialize;
use serde_json::{Map, Value};

use crate::config::{AccessRule, AuthorizerConfig};
use crate::provider::VerifiedToken;
use crate::telemetry::{self, Decision};
use crate::verifier::Verifier;

/// HTTP methods a route pattern may name; `*` (or `ANY`) stands for all of them.
const METHODS: [&str; 7] = ["GET", "POST", "PUT", "PATCH", "DELETE", "HEAD", "OPTIONS"];
/// Longest route pattern accepted, so a policy stays far below API Gateway's size limits.
pub const MAX_PATTERN_CHARS: usize = 256;
/// A context value longer than this is left out (API Gateway passes context in headers and
/// mapping templates, where a huge `groups` array does not belong).
const MAX_CONTEXT_VALUE_CHARS: usize = 1024;
/// The IAM action API Gateway authorizes.
const INVOKE: &str = "execute-api:Invoke";
/// The IAM policy language version.
const POLICY_VERSION: &str = "2012-10-17";

/// One route pattern of an access rule: `METHOD /path`, e.g. `GET /reports/*` or `* /admin/*`.
///
/// The method is an HTTP method, `*` or `ANY`. The path starts with `/`; `*` matches any
/// characters (slashes included, as in IAM), and a `{name}` or `{proxy+}` segment, as written in
/// an API definition, matches one or more segments like `*`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RoutePattern {
    /// `GET`, `POST`, ... or `*`.
    method: String,
    /// The path without its leading slash, in IAM wildcard form.
    path: String,
}

impl RoutePattern {
    /// Parses `METHOD /path`; the error says what is wrong.
    pub fn parse(text: &str) -> Result<RoutePattern, String> {
        if text.chars().count() > MAX_PATTERN_CHARS {
            return Err(format!("is longer than {MAX_PATTERN_CHARS} characters"));
        }
        let Some((method, path)) = text.trim().split_once(' ') else {
            return Err(format!("`{text}` is not `METHOD /path`"));
        };
        let method = match method.to_ascii_uppercase().as_str() {
            "*" | "ANY" => "*".to_string(),
            known if METHODS.contains(&known) => known.to_string(),
            _ => return Err(format!("`{method}` is not an HTTP method, `*` or `ANY`")),
        };
        let Some(path) = path.trim().strip_prefix('/') else {
            return Err(format!("the path of `{text}` does not start with `/`"));
        };
        let segments: Result<Vec<&str>, String> = path.split('/').map(pattern_segment).collect();
        Ok(RoutePattern {
            method,
            path: segments?.join("/"),
        })
    }

    /// The `execute-api` resource ARN of this route in `api`.
    pub fn arn(&self, api: &ApiArn) -> String {
        format!("{}/{}/{}", api.0, self.method, self.path)
    }
}

/// One path segment in IAM form: `{param}` becomes `*`; anything else must be plain URL path
/// characters (no `?`, `#`, spaces or quotes that could change what the ARN means).
fn pattern_segment(segment: &str) -> Result<&str, String> {
    if segment.starts_with('{') && segment.ends_with('}') && segment.len() > 2 {
        return Ok("*");
    }
    let plain = |c: char| c.is_ascii_alphanumeric() || "-._~!$&'()+,;=:@%*".contains(c);
    if segment.chars().all(plain) {
        Ok(segment)
    } else {
        Err(format!(
            "the path segment `{segment}` has characters a route cannot have"
        ))
    }
}

impl<'de> Deserialize<'de> for RoutePattern {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<RoutePattern, D::Error> {
        let text = String::deserialize(deserializer)?;
        RoutePattern::parse(&text).map_err(serde::de::Error::custom)
    }
}

impl fmt::Display for RoutePattern {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} /{}", self.method, self.path)
    }
}

/// The API and stage of a request: `arn:{partition}:execute-api:{region}:{account}:{api}/{stage}`,
/// taken from the event's `methodArn`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiArn(String);

impl ApiArn {
    /// The API and stage part of a `methodArn`, or `None` when it is not an execute-api ARN.
    pub fn from_method_arn(method_arn: &str) -> Option<ApiArn> {
        let fields: Vec<&str> = method_arn.splitn(6, ':').collect();
        let [arn, partition, service, region, account, resource] = fields.as_slice() else {
            return None;
        };
        let mut resource = resource.splitn(3, '/');
        let (api_id, stage) = (resource.next()?, resource.next()?);
        let word = |s: &str| {
            !s.is_empty()
                && s.chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
        };
        let well_formed = *arn == "arn"
            && partition.starts_with("aws")
            && *service == "execute-api"
            && [*partition, *region, *account, api_id, stage]
                .into_iter()
                .all(word);
        well_formed.then(|| {
            ApiArn(format!(
                "arn:{partition}:execute-api:{region}:{account}:{api_id}/{stage}"
            ))
        })
    }

    /// Every route of the stage.
    pub fn everything(&self) -> String {
        format!("{}/*", self.0)
    }
}

/// An API Gateway Lambda authorizer event, as `aws_lambda_events` models it: a `REQUEST`
/// authorizer's (headers, request context, ...) or a `TOKEN` authorizer's (the identity source
/// value alone), told apart by the event's `type`.
#[derive(Debug, Clone, Deserialize)]
#[serde(tag = "type", rename_all = "UPPERCASE")]
pub enum AuthorizerEvent {
    /// A TOKEN authorizer's event: `authorizationToken` and `methodArn`.
    Token(ApiGatewayCustomAuthorizerRequest),
    /// A REQUEST authorizer's event.
    Request(Box<ApiGatewayCustomAuthorizerRequestTypeRequest>),
}

impl AuthorizerEvent {
    /// The ARN of the method being called (empty when the event has none).
    pub fn method_arn(&self) -> &str {
        match self {
            AuthorizerEvent::Token(event) => event.method_arn.as_deref(),
            AuthorizerEvent::Request(event) => event.method_arn.as_deref(),
        }
        .unwrap_or_default()
    }

    /// The token of the `Authorization` header (any case of the name), or of a TOKEN
    /// authorizer's `authorizationToken`: `Bearer <token>` (any case of the scheme), or the bare
    /// token. Both forms are what clients of the authorizers this one replaces send: API Gateway's
    /// own JWT authorizer takes "only the token, or the token prefixed with Bearer" (API Gateway
    /// developer guide, "Control access to HTTP APIs with JWT authorizers"), and a TOKEN
    /// authorizer such as the Python one in the README's migration guide reads
    /// `authorizationToken` as the JWT itself. Any other scheme (`Basic ...`) is no token.
    pub fn bearer_token(&self) -> Option<&str> {
        let header = match self {
            AuthorizerEvent::Token(event) => event.authorization_token.as_deref(),
            // Header names are case-insensitive in a `HeaderMap`; a value that is not visible
            // ASCII cannot hold a JWT.
            AuthorizerEvent::Request(event) => event
                .headers
                .get(http::header::AUTHORIZATION)
                .and_then(|value| value.to_str().ok()),
        }?
        .trim();
        let token = match header.split_once(' ') {
            Some((scheme, token)) if scheme.eq_ignore_ascii_case("bearer") => token.trim(),
            Some(_) => return None,
            // `Bearer` alone is the scheme with no token.
            None if header.eq_ignore_ascii_case("bearer") => return None,
            None => header,
        };
        (!token.is_empty() && !token.contains(' ')).then_some(token)
    }
}

/// An IAM policy answer, in the shape API Gateway expects from a Lambda authorizer; `context`
/// carries the identity for the backend (`event.requestContext.authorizer` in Lambda proxy events).
pub type AuthorizerResponse = ApiGatewayCustomAuthorizerResponse<Map<String, Value>>;

/// Why no policy is returned.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Refusal {
    /// No bearer token, or one that fails verification: API Gateway must answer 401, which it
    /// does when the authorizer fails with exactly this message.
    #[error("Unauthorized")]
    Unauthorized,
    /// The authorizer cannot decide right now (keys unavailable, bad event); API Gateway
    /// answers 500. The text names the problem, never the token.
    #[error("{0}")]
    Failed(String),
}

/// The access rules of `[authorizer]`, ready to answer events.
#[derive(Debug, Clone)]
pub struct Authorizer {
    allow: Vec<AccessRule>,
    context_claims: Vec<String>,
}

impl Authorizer {
    /// The authorizer for validated configuration.
    pub fn new(config: &AuthorizerConfig) -> Authorizer {
        Authorizer {
            allow: config.allow.clone(),
            context_claims: config.context_claims.clone(),
        }
    }

    /// [`Authorizer::authorize`], recording the decision and how long it took.
    pub async fn answer(
        &self,
        verifier: &Verifier,
        event: &AuthorizerEvent,
    ) -> Result<AuthorizerResponse, Refusal> {
        let started = Instant::now();
        let answer = self.authorize(verifier, event).await;
        telemetry::record_decision(decision_of(&answer), started.elapsed());
        answer
    }

    /// Answers one event: verifies its bearer token with `verifier` and builds the policy.
    pub async fn authorize(
        &self,
        verifier: &Verifier,
        event: &AuthorizerEvent,
    ) -> Result<AuthorizerResponse, Refusal> {
        let api = ApiArn::from_method_arn(event.method_arn())
            .ok_or_else(|| Refusal::Failed("the event's methodArn is not an execute-api ARN".into()))?;
        let token = event.bearer_token().ok_or(Refusal::Unauthorized)?;
        match verifier.verify_bearer(token).await {
            Ok(verified) => Ok(self.policy_for(&verified, &api)),
            Err(error) if error.status() == StatusCode::FORBIDDEN => {
                tracing::info!(code = error.code(), "bearer token denied");
                Ok(deny("unknown".into(), &api, Map::new()))
            }
            Err(error) if error.status().is_client_error() => {
                tracing::info!(code = error.code(), "bearer token refused");
                Err(Refusal::Unauthorized)
            }
            Err(error) => {
                tracing::warn!(code = error.code(), %error, "bearer token could not be checked");
                Err(Refusal::Failed(format!(
                    "cannot verify tokens right now ({})",
                    error.code()
                )))
            }
        }
    }

    /// The policy for a verified caller: `Allow` on the routes of every access rule that holds,
    /// or an explicit `Deny` on the whole stage when none does.
    pub fn policy_for(&self, verified: &VerifiedToken, api: &ApiArn) -> AuthorizerResponse {
        let mut resources: Vec<String> = Vec::new();
        for rule in self
            .allow
            .iter()
            .filter(|rule| rule.when.as_ref().is_none_or(|when| when.holds(&verified.claims)))
        {
            for route in &rule.routes {
                let arn = route.arn(api);
                if !resources.contains(&arn) {
                    resources.push(arn);
                }
            }
        }
        let context = self.context_for(verified);
        if resources.is_empty() {
            return deny(verified.subject.clone(), api, context);
        }
        answer(
            verified.subject.clone(),
            IamPolicyEffect::Allow,
            resources,
            context,
        )
    }

    /// The identity for the backend: provider, subject, issuer and the configured claims.
    /// Context values must be strings, numbers or booleans, so arrays and objects travel as
    /// JSON text.
    fn context_for(&self, verified: &VerifiedToken) -> Map<String, Value> {
        let mut context = Map::new();
        context.insert("provider".into(), Value::String(verified.provider.clone()));
        context.insert("subject".into(), Value::String(verified.subject.clone()));
        context.insert("issuer".into(), Value::String(verified.issuer.clone()));
        for name in &self.context_claims {
            let value = match verified.claims.get(name) {
                Some(Value::Null) | None => continue,
                Some(scalar @ (Value::String(_) | Value::Number(_) | Value::Bool(_))) => scalar.clone(),
                Some(other) => Value::String(other.to_string()),
            };
            if value.to_string().len() > MAX_CONTEXT_VALUE_CHARS {
                tracing::warn!(claim = %name, "claim left out of the authorizer context: too long");
                continue;
            }
            context.entry(name.clone()).or_insert(value);
        }
        context
    }
}

/// What an answer means to API Gateway.
pub fn decision_of(answer: &Result<AuthorizerResponse, Refusal>) -> Decision {
    match answer {
        Ok(response)
            if response
                .policy_document
                .statement
                .iter()
                .all(|statement| matches!(statement.effect, IamPolicyEffect::Allow)) =>
        {
            Decision::Allow
        }
        Ok(_) => Decision::Deny,
        Err(Refusal::Unauthorized) => Decision::Unauthorized,
        Err(Refusal::Failed(_)) => Decision::Error,
    }
}

/// The answer for `principal_id`: one statement with `effect` on `resource`.
fn answer(
    principal_id: String,
    effect: IamPolicyEffect,
    resource: Vec<String>,
    context: Map<String, Value>,
) -> AuthorizerResponse {
    // The `aws_lambda_events` types are `#[non_exhaustive]`: built from their defaults.
    let mut statement = IamPolicyStatement::default();
    statement.action = vec![INVOKE.to_owned()];
    statement.effect = effect;
    statement.resource = resource;
    let mut policy = ApiGatewayCustomAuthorizerPolicy::default();
    policy.version = Some(POLICY_VERSION.to_owned());
    policy.statement = vec![statement];
    let mut response = AuthorizerResponse::default();
    response.principal_id = Some(principal_id);
    response.policy_document = policy;
    response.context = context;
    response
}

fn deny(principal_id: String, api: &ApiArn, context: Map<String, Value>) -> AuthorizerResponse {
    answer(
        principal_id,
        IamPolicyEffect::Deny,
        vec![api.everything()],
        context,
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    const METHOD_ARN: &str = "arn:aws:execute-api:eu-west-1:123456789012:abc123/prod/GET/reports/7";

    fn api() -> ApiArn {
        ApiArn::from_method_arn(METHOD_ARN).unwrap()
    }

    fn authorizer(toml_rules: &str) -> Authorizer {
        let config: AuthorizerConfig = toml::from_str(toml_rules).unwrap();
        Authorizer::new(&config)
    }

    fn caller(claims: Value) -> VerifiedToken {
        VerifiedToken {
            provider: "corp".into(),
            issuer: "https://idp.example.com".into(),
            logins_key: "idp.example.com".into(),
            subject: "user-1".into(),
            claims: claims.as_object().cloned().unwrap_or_default(),
        }
    }

    const RULES: &str = r#"
        context_claims = ["email", "groups", "email_verified"]
        [[allow]]
        routes = ["GET /reports/*", "GET /me"]
        [[allow]]
        when = "groups:admins"
        routes = ["* /admin/*", "GET /reports/*"]
    "#;

    #[test]
    fn route_patterns_become_execute_api_arns() {
        let arn = |text: &str| RoutePattern::parse(text).unwrap().arn(&api());
        assert_eq!(
            arn("GET /reports/*"),
            "arn:aws:execute-api:eu-west-1:123456789012:abc123/prod/GET/reports/*"
        );
        assert_eq!(
            arn("any /"),
            "arn:aws:execute-api:eu-west-1:123456789012:abc123/prod/*/"
        );
        assert_eq!(
            arn("DELETE /items/{id}/tags/{proxy+}"),
            format!("{}/DELETE/items/*/tags/*", api().0)
        );
    }

    #[test]
    fn bad_route_patterns_say_why() {
        let why = |text: &str| RoutePattern::parse(text).unwrap_err();
        assert!(why("GET").contains("METHOD /path"));
        assert!(why("FETCH /x").contains("not an HTTP method"));
        assert!(why("GET reports").contains("does not start with `/`"));
        assert!(why("GET /a?b=1").contains("`a?b=1`"));
        assert!(why(&format!("GET /{}", "a".repeat(300))).contains("longer"));
    }

    #[test]
    fn the_api_and_stage_come_from_the_method_arn() {
        assert_eq!(
            api().everything(),
            "arn:aws:execute-api:eu-west-1:123456789012:abc123/prod/*"
        );
        let china =
            ApiArn::from_method_arn("arn:aws-cn:execute-api:cn-north-1:123456789012:a1/v1/POST/").unwrap();
        assert_eq!(
            china.everything(),
            "arn:aws-cn:execute-api:cn-north-1:123456789012:a1/v1/*"
        );
        for bad in [
            "",
            "arn:aws:lambda:eu-west-1:123456789012:abc123/prod/GET/",
            "arn:aws:execute-api:r:1:api",
            "arn:aws:execute-api:r:1:a*/prod/GET/",
        ] {
            assert_eq!(ApiArn::from_method_arn(bad), None, "{bad}");
        }
    }

    #[test]
    fn the_policy_covers_every_allowed_route_not_just_this_request() {
        let answer = authorizer(RULES).policy_for(&caller(json!({"groups": ["admins"]})), &api());
        let statement = &answer.policy_document.statement[0];
        assert_eq!(statement.effect, IamPolicyEffect::Allow);
        let prefix = api().0;
        assert_eq!(
            statement.resource,
            [
                format!("{prefix}/GET/reports/*"),
                format!("{prefix}/GET/me"),
                format!("{prefix}/*/admin/*")
            ]
        );
        assert_eq!(answer.principal_id.as_deref(), Some("user-1"));
    }

    #[test]
    fn rules_that_do_not_hold_add_nothing() {
        let answer = authorizer(RULES).policy_for(&caller(json!({"groups": ["staff"]})), &api());
        let resources = &answer.policy_document.statement[0].resource;
        assert!(
            resources.iter().all(|arn| !arn.contains("admin")),
            "{resources:?}"
        );
    }

    #[test]
    fn a_caller_no_rule_admits_gets_an_explicit_deny_on_the_stage() {
        let only_admins = authorizer("[[allow]]\nwhen = \"groups:admins\"\nroutes = [\"* /*\"]\n");
        let answer = only_admins.policy_for(&caller(json!({"groups": "staff"})), &api());
        assert_eq!(answer.policy_document.statement[0].effect, IamPolicyEffect::Deny);
        assert_eq!(answer.policy_document.statement[0].resource, [api().everything()]);
    }

    #[test]
    fn the_context_carries_the_identity_as_scalars() {
        let answer = authorizer(RULES).policy_for(
            &caller(
                json!({"email": "a@example.com", "groups": ["x", "y"], "email_verified": true, "name": "A"}),
            ),
            &api(),
        );
        assert_eq!(
            Value::Object(answer.context),
            json!({
                "provider": "corp", "subject": "user-1", "issuer": "https://idp.example.com",
                "email": "a@example.com", "groups": "[\"x\",\"y\"]", "email_verified": true
            })
        );
    }

    #[test]
    fn huge_claims_stay_out_of_the_context() {
        let groups: Vec<String> = (0..200).map(|i| format!("group-{i}")).collect();
        let answer = authorizer(RULES).policy_for(&caller(json!({"groups": groups})), &api());
        assert!(!answer.context.contains_key("groups"));
    }

    #[test]
    fn the_response_has_api_gateways_shape() {
        let answer = authorizer(RULES).policy_for(&caller(json!({})), &api());
        let shape = serde_json::to_value(&answer).unwrap();
        assert_eq!(shape["principalId"], "user-1");
        assert_eq!(shape["policyDocument"]["Version"], "2012-10-17");
        let statement = &shape["policyDocument"]["Statement"][0];
        assert_eq!(statement["Action"], json!(["execute-api:Invoke"]));
        assert_eq!(statement["Effect"], "Allow");
        assert!(statement.get("Condition").is_none(), "{statement}");
        assert_eq!(shape["context"]["provider"], "corp");
    }

    #[test]
    fn the_bearer_token_comes_from_the_authorization_header() {
        let event = |headers: Value| -> AuthorizerEvent {
            serde_json::from_value(json!({
                "type": "REQUEST", "methodArn": METHOD_ARN, "headers": headers, "requestContext": {}
            }))
            .unwrap()
        };
        assert_eq!(
            event(json!({"authorization": "Bearer a.b.c"})).bearer_token(),
            Some("a.b.c")
        );
        assert_eq!(
            event(json!({"Authorization": "bearer  a.b.c "})).bearer_token(),
            Some("a.b.c")
        );
        assert_eq!(event(json!({"Authorization": "Basic abc"})).bearer_token(), None);
        // The bare token, as clients of API Gateway's JWT and Cognito authorizers send it.
        assert_eq!(
            event(json!({"Authorization": " a.b.c "})).bearer_token(),
            Some("a.b.c")
        );
        assert_eq!(event(json!({"Authorization": "   "})).bearer_token(), None);
        assert_eq!(event(json!({"Authorization": "Bearer "})).bearer_token(), None);
        assert_eq!(event(json!({"Authorization": "Bearer a b"})).bearer_token(), None);
        assert_eq!(event(json!(null)).bearer_token(), None);
        assert_eq!(event(json!(null)).method_arn(), METHOD_ARN);
        let token_event: AuthorizerEvent = serde_json::from_value(json!({
            "type": "TOKEN", "methodArn": METHOD_ARN, "authorizationToken": "Bearer x.y.z"
        }))
        .unwrap();
        assert_eq!(token_event.bearer_token(), Some("x.y.z"));
        assert_eq!(token_event.method_arn(), METHOD_ARN);
    }

    #[test]
    fn events_of_an_unknown_type_are_refused() {
        let unknown =
            serde_json::from_value::<AuthorizerEvent>(json!({"type": "JWT", "methodArn": METHOD_ARN}));
        assert!(unknown.is_err());
    }

    #[test]
    fn the_api_gateway_fixtures_parse() {
        for (fixture, token) in [
            ("apigw-authorizer-bearer.json", Some("${ID_TOKEN}")),
            ("apigw-authorizer-malformed-token.json", Some("not-a-jwt")),
            ("apigw-authorizer-no-token.json", None),
        ] {
            let path = format!("{}/tests/data/{fixture}", env!("CARGO_MANIFEST_DIR"));
            let text = std::fs::read_to_string(&path).unwrap();
            let event: AuthorizerEvent = serde_json::from_str(&text).unwrap();
            assert_eq!(event.bearer_token(), token, "{fixture}");
            assert!(ApiArn::from_method_arn(event.method_arn()).is_some(), "{fixture}");
        }
    }

    #[test]
    fn refusals_read_as_api_gateway_expects() {
        assert_eq!(Refusal::Unauthorized.to_string(), "Unauthorized");
    }
}
