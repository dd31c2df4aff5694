//! `--upstream-lambda`: verified requests go to a Lambda function's Invoke endpoint (the one
//! `cargo lambda watch` and `sam local start-lambda` serve,
//! `POST /2015-03-31/functions/{name}/invocations`) as the event an API Gateway REST API's Lambda
//! proxy integration sends, so an app (serverless-wsgi, apig-wsgi, `lambda_http`) reads the
//! caller from `requestContext.identity.cognitoIdentityId` locally exactly as in AWS.
//!
//! The event and answer shapes are API Gateway's:
//! https://docs.aws.amazon.com/apigateway/latest/developerguide/set-up-lambda-proxy-integrations.html
//! (input: `resource`, `path`, `httpMethod`, `headers`, `multiValueHeaders`,
//! `queryStringParameters`, `multiValueQueryStringParameters`, `pathParameters`,
//! `requestContext`, `body`, `isBase64Encoded`; output: `statusCode`, `headers`,
//! `multiValueHeaders`, `body`, `isBase64Encoded`), and its identity fields are those of the
//! `$context.identity` variables
//! (https://docs.aws.amazon.com/apigateway/latest/developerguide/api-gateway-mapping-template-reference.html).
//! Like API Gateway, the gateway drops the signature (`Authorization`, `X-Amz-*`, presigning
//! query parameters) and adds no identity header: the identity is in the request context.
//! A failed invocation or a malformed answer is a `502 {"message": "Internal server error"}`,
//! as API Gateway answers it.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use axum::Router;
use axum::body::Body;
use axum::extract::{Extension, OriginalUri, Request, State};
use axum::http::{HeaderMap, HeaderName, HeaderValue, StatusCode, header};
use axum::response::Response;
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use serde_json::{Map, Value, json};
use url::Url;

use super::proxy::{forwarded_headers, upstream_client};
use super::sigv4::strip_presign_params;
use super::{Caller, MAX_BODY_BYTES, json_message};

/// The resource every proxied request matches, as the template's `/api/{proxy+}` routes are.
const RESOURCE: &str = "/api/{proxy+}";
/// The stage the local gateway stands for (it serves no stage prefix, like a custom domain).
const STAGE: &str = "local";
/// The largest answer accepted from the function (Lambda's synchronous payload limit is 6 MB).
const MAX_ANSWER_BYTES: usize = 6 * 1024 * 1024;

/// The Invoke endpoint, the client to call it with, and a request counter for `requestId`.
struct Function {
    invoke_url: Url,
    client: Option<reqwest::Client>,
    pool_id: String,
    requests: AtomicU64,
}

/// A router sending every request to the function at `invoke_url`, as identities of `pool_id`.
pub(super) fn router(invoke_url: Url, pool_id: String) -> Router {
    Router::new().fallback(invoke).with_state(Arc::new(Function {
        invoke_url,
        client: upstream_client(),
        pool_id,
        requests: AtomicU64::new(0),
    }))
}

async fn invoke(
    State(function): State<Arc<Function>>,
    Extension(caller): Extension<Caller>,
    OriginalUri(original): OriginalUri,
    request: Request,
) -> Response {
    let Some(client) = &function.client else {
        return json_message(StatusCode::BAD_GATEWAY, "The upstream HTTP client is unavailable");
    };
    let (parts, body) = request.into_parts();
    let Ok(body) = axum::body::to_bytes(body, MAX_BODY_BYTES).await else {
        return json_message(StatusCode::BAD_REQUEST, "Could not read the request body");
    };
    let request_id = function.requests.fetch_add(1, Ordering::Relaxed);
    let event = ProxyEvent {
        method: parts.method.as_str(),
        path: original.path(),
        proxy: parts.uri.path().trim_start_matches('/'),
        query: original.query(),
        headers: &forwarded_headers(&parts.headers),
        body: &body,
        caller: &caller,
        pool_id: &function.pool_id,
        request_id,
    }
    .to_json();
    let answer = client.post(function.invoke_url.clone()).json(&event).send().await;
    match answer {
        Ok(answer) if answer.status().is_success() && !answer.headers().contains_key("x-amz-function-error") => {
            match answer.bytes().await {
                Ok(bytes) if bytes.len() <= MAX_ANSWER_BYTES => proxy_response(&bytes).unwrap_or_else(internal_error),
                _ => internal_error(),
            }
        }
        Ok(answer) => {
            tracing::warn!(status = %answer.status(), "the upstream function failed");
            internal_error()
        }
        Err(error) => {
            tracing::warn!(%error, "the upstream function is unreachable");
            internal_error()
        }
    }
}

/// What API Gateway answers when the integration fails or answers malformed JSON.
fn internal_error() -> Response {
    json_message(StatusCode::BAD_GATEWAY, "Internal server error")
}

/// One verified request, to be written as a REST API Lambda proxy event.
struct ProxyEvent<'a> {
    method: &'a str,
    /// The path the client called (`/api/...`), without a stage.
    path: &'a str,
    /// The part after `/api/`, the `{proxy+}` parameter.
    proxy: &'a str,
    query: Option<&'a str>,
    headers: &'a HeaderMap,
    body: &'a [u8],
    caller: &'a Caller,
    pool_id: &'a str,
    request_id: u64,
}

impl ProxyEvent<'_> {
    fn to_json(&self) -> Value {
        let (headers, multi_headers) = single_and_multi(
            self.headers
                .iter()
                .map(|(name, value)| (name.as_str().to_string(), String::from_utf8_lossy(value.as_bytes()).into_owned())),
        );
        let query = self.query.map(strip_presign_params).unwrap_or_default();
        let (query, multi_query) = single_and_multi(url::form_urlencoded::parse(query.as_bytes()).into_owned());
        let (body, base64) = match std::str::from_utf8(self.body) {
            _ if self.body.is_empty() => (Value::Null, false),
            Ok(text) => (Value::from(text), false),
            Err(_) => (Value::from(STANDARD.encode(self.body)), true),
        };
        let user_agent = self.headers.get(header::USER_AGENT).and_then(|v| v.to_str().ok());
        json!({
            "resource": RESOURCE,
            "path": self.path,
            "httpMethod": self.method,
            "headers": headers,
            "multiValueHeaders": multi_headers,
            "queryStringParameters": query,
            "multiValueQueryStringParameters": multi_query,
            "pathParameters": {"proxy": self.proxy},
            "stageVariables": null,
            "requestContext": {
                "resourcePath": RESOURCE,
                "httpMethod": self.method,
                "path": self.path,
                "stage": STAGE,
                "requestId": format!("local-{:012}", self.request_id),
                "apiId": "local",
                "domainName": self.headers.get(header::HOST).and_then(|v| v.to_str().ok()),
                // What `$context.identity` holds for a SigV4 caller with Cognito identity-pool
                // credentials. `caller`, `user` and `userArn` name the role session in AWS (no
                // role here), and `cognitoAuthenticationProvider`'s format depends on the
                // provider: apps read provider and claims from the assertion instead.
                "identity": {
                    "cognitoIdentityPoolId": self.pool_id,
                    "cognitoIdentityId": self.caller.identity.identity_id,
                    "cognitoAuthenticationType": "authenticated",
                    "cognitoAuthenticationProvider": null,
                    "accessKey": self.caller.access_key_id,
                    "accountId": null,
                    "caller": null,
                    "user": null,
                    "userArn": null,
                    "sourceIp": "127.0.0.1",
                    "userAgent": user_agent,
                },
            },
            "body": body,
            "isBase64Encoded": base64,
        })
    }
}

/// `(name, value)` pairs as API Gateway's two maps: the last value of each name, and all of them
/// (`null` when there are none, as API Gateway sends it).
fn single_and_multi(pairs: impl Iterator<Item = (String, String)>) -> (Value, Value) {
    let mut all: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for (name, value) in pairs {
        all.entry(name).or_default().push(value);
    }
    if all.is_empty() {
        return (Value::Null, Value::Null);
    }
    let last: Map<String, Value> = all
        .iter()
        .map(|(name, values)| (name.clone(), Value::from(values.last().cloned().unwrap_or_default())))
        .collect();
    (Value::Object(last), json!(all))
}

/// The function's proxy answer as an HTTP response; `None` if it is not one.
fn proxy_response(bytes: &[u8]) -> Option<Response> {
    let answer: Map<String, Value> = serde_json::from_slice(bytes).ok()?;
    let status = StatusCode::from_u16(u16::try_from(answer.get("statusCode")?.as_u64()?).ok()?).ok()?;
    let body = match answer.get("body") {
        None | Some(Value::Null) => Vec::new(),
        Some(Value::String(text)) if answer.get("isBase64Encoded") == Some(&Value::Bool(true)) => {
            STANDARD.decode(text).ok()?
        }
        Some(Value::String(text)) => text.clone().into_bytes(),
        Some(_) => return None,
    };
    let mut headers = HeaderMap::new();
    for (name, value) in answer.get("headers").and_then(Value::as_object).into_iter().flatten() {
        headers.insert(HeaderName::try_from(name.as_str()).ok()?, HeaderValue::try_from(value.as_str()?).ok()?);
    }
    let multi = answer.get("multiValueHeaders").and_then(Value::as_object);
    for (name, values) in multi.into_iter().flatten() {
        let name = HeaderName::try_from(name.as_str()).ok()?;
        headers.remove(&name);
        for value in values.as_array()? {
            headers.append(name.clone(), HeaderValue::try_from(value.as_str()?).ok()?);
        }
    }
    let mut response = Response::new(Body::from(body));
    *response.status_mut() = status;
    *response.headers_mut() = headers;
    Some(response)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn repeated_names_keep_the_last_value_and_all_values() {
        let (single, multi) = single_and_multi(
            [("a", "1"), ("b", "2"), ("a", "3")]
                .into_iter()
                .map(|(n, v)| (n.to_string(), v.to_string())),
        );
        assert_eq!(single, json!({"a": "3", "b": "2"}));
        assert_eq!(multi, json!({"a": ["1", "3"], "b": ["2"]}));
        assert_eq!(single_and_multi(std::iter::empty()), (Value::Null, Value::Null));
    }

    #[test]
    fn proxy_answers_become_responses_and_anything_else_is_refused() {
        let response = proxy_response(
            br#"{"statusCode": 201, "headers": {"x-a": "1"}, "multiValueHeaders": {"set-cookie": ["a=1", "b=2"]},
                 "body": "aGk=", "isBase64Encoded": true}"#,
        )
        .unwrap();
        assert_eq!(response.status(), StatusCode::CREATED);
        assert_eq!(response.headers()["x-a"], "1");
        assert_eq!(response.headers().get_all("set-cookie").iter().count(), 2);
        for malformed in [&b"[]"[..], br#"{"body": "x"}"#, br#"{"statusCode": 99}"#, br#"{"statusCode": 200, "body": 7}"#] {
            assert!(proxy_response(malformed).is_none(), "{}", String::from_utf8_lossy(malformed));
        }
    }
}
