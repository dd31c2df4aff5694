//! `--upstream`: verified requests go to the user's own app, `upstream + path after /api` with
//! the query, method, body and end-to-end headers, minus the signature (`Authorization`,
//! `X-Amz-*` headers and presigning query parameters, which hold the session token) and plus
//! the caller's identity in `X-Credbroker-*` headers, which the client can never set itself.
//! Redirects are passed through, not followed; the answer is streamed back, bounded.

use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::body::{Body, Bytes};
use axum::extract::{Extension, Request, State};
use axum::http::{HeaderMap, HeaderName, HeaderValue, StatusCode, header};
use axum::response::Response;
use url::Url;

use super::sigv4::strip_presign_params;
use super::{Caller, MAX_BODY_BYTES, json_message};
use crate::identity::extract::IDENTITY_ID_HEADER;

// The identity headers the gateway adds: the identity id (`IDENTITY_ID_HEADER`, the one apps
// trust, as API Gateway's request parameter mapping sets it in AWS), the provider, the subject.
/// The Logins key (provider) header.
const PROVIDER_HEADER: &str = "x-credbroker-provider";
/// The token subject header.
const SUBJECT_HEADER: &str = "x-credbroker-subject";

/// Like API Gateway's 29 s integration timeout, rounded.
const UPSTREAM_TIMEOUT: Duration = Duration::from_secs(30);
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// The largest answer relayed (API Gateway's response limit is 10 MB).
const MAX_RESPONSE_BYTES: usize = MAX_BODY_BYTES;

/// Hop-by-hop headers (RFC 9110 §7.6.1), never forwarded either way.
const HOP_BY_HOP: [&str; 8] = [
    "connection",
    "keep-alive",
    "proxy-authenticate",
    "proxy-authorization",
    "te",
    "trailer",
    "transfer-encoding",
    "upgrade",
];

/// Where to forward, and the client to do it with (`None` if it could not be built).
struct Upstream {
    base: Url,
    client: Option<reqwest::Client>,
}

/// A router sending every request to `upstream`.
pub(super) fn router(upstream: Url) -> Router {
    let client = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .connect_timeout(CONNECT_TIMEOUT)
        .timeout(UPSTREAM_TIMEOUT)
        .build()
        .map_err(|error| tracing::error!(%error, "cannot create the upstream HTTP client"))
        .ok();
    Router::new().fallback(forward).with_state(Arc::new(Upstream {
        base: upstream,
        client,
    }))
}

async fn forward(
    State(upstream): State<Arc<Upstream>>,
    Extension(caller): Extension<Caller>,
    request: Request,
) -> Response {
    let Some(client) = &upstream.client else {
        return json_message(StatusCode::BAD_GATEWAY, "The upstream HTTP client is unavailable");
    };
    let (parts, body) = request.into_parts();
    // The gateway already read (and bounded) the body to verify it; this only unwraps it.
    let body = match axum::body::to_bytes(body, MAX_BODY_BYTES).await {
        Ok(body) => body,
        Err(_) => return json_message(StatusCode::BAD_REQUEST, "Could not read the request body"),
    };
    let Some(headers) = upstream_headers(&parts.headers, &caller) else {
        return json_message(
            StatusCode::INTERNAL_SERVER_ERROR,
            "The caller's identity cannot be sent in HTTP headers",
        );
    };
    let url = upstream_url(&upstream.base, parts.uri.path(), parts.uri.query());
    let sent = client
        .request(parts.method, url)
        .headers(headers)
        .body(body)
        .send()
        .await;
    match sent {
        Ok(answer) => relay(answer),
        Err(error) if error.is_timeout() => {
            json_message(StatusCode::GATEWAY_TIMEOUT, "Endpoint request timed out")
        }
        Err(error) => {
            tracing::warn!(%error, "upstream request failed");
            json_message(StatusCode::BAD_GATEWAY, "The upstream is unreachable")
        }
    }
}

/// `base` + `path` (the part after the gateway's mount point), with the query minus the
/// presigning parameters.
fn upstream_url(base: &Url, path: &str, query: Option<&str>) -> Url {
    let mut url = base.clone();
    let joined = format!("{}{path}", base.path().trim_end_matches('/'));
    url.set_path(&joined);
    let query = query.map(strip_presign_params).filter(|q| !q.is_empty());
    url.set_query(query.as_deref());
    url
}

/// Whether a header is hop-by-hop, named in `Connection`, or framing the proxy redoes.
fn is_connection_specific(name: &HeaderName, connection: &[String]) -> bool {
    let name = name.as_str();
    HOP_BY_HOP.contains(&name)
        || connection.iter().any(|listed| listed == name)
        || name == header::HOST.as_str()
        || name == header::CONTENT_LENGTH.as_str()
}

/// The lowercase header names listed in `Connection`.
fn connection_listed(headers: &HeaderMap) -> Vec<String> {
    headers
        .get_all(header::CONNECTION)
        .iter()
        .filter_map(|value| value.to_str().ok())
        .flat_map(|value| value.split(','))
        .map(|name| name.trim().to_ascii_lowercase())
        .filter(|name| !name.is_empty())
        .collect()
}

/// The headers to send upstream; `None` if the identity is not a valid header value.
fn upstream_headers(incoming: &HeaderMap, caller: &Caller) -> Option<HeaderMap> {
    let connection = connection_listed(incoming);
    let mut headers = HeaderMap::with_capacity(incoming.len() + 3);
    for (name, value) in incoming {
        let n = name.as_str();
        // The identity assertion is the caller's to send (the app checks it against the identity
        // id below); every other `X-Credbroker-*` header is the gateway's alone.
        let signature_or_identity = n == header::AUTHORIZATION.as_str()
            || n.starts_with("x-amz-")
            || (n.starts_with("x-credbroker-") && n != crate::identity::ASSERTION_HEADER);
        if !signature_or_identity && !is_connection_specific(name, &connection) {
            headers.append(name.clone(), value.clone());
        }
    }
    let identity = &caller.identity;
    for (name, value) in [
        (IDENTITY_ID_HEADER, &identity.identity_id),
        (PROVIDER_HEADER, &identity.provider),
        (SUBJECT_HEADER, &identity.subject),
    ] {
        headers.insert(name, HeaderValue::from_str(value).ok()?);
    }
    Some(headers)
}

/// The upstream's answer, status and end-to-end headers as they are, body streamed and capped.
fn relay(answer: reqwest::Response) -> Response {
    let status = answer.status();
    let connection = connection_listed(answer.headers());
    let mut headers = HeaderMap::with_capacity(answer.headers().len());
    for (name, value) in answer.headers() {
        // Content-Length stays: the body is relayed byte for byte.
        let framing = name != header::CONTENT_LENGTH && is_connection_specific(name, &connection);
        if !framing {
            headers.append(name.clone(), value.clone());
        }
    }
    let mut response = Response::new(Body::from_stream(capped_stream(answer)));
    *response.status_mut() = status;
    *response.headers_mut() = headers;
    response
}

/// The answer's body as a stream that fails once it passes [`MAX_RESPONSE_BYTES`].
fn capped_stream(
    answer: reqwest::Response,
) -> impl futures_util::Stream<Item = Result<Bytes, std::io::Error>> {
    futures_util::stream::unfold(Some((answer, 0usize)), |state| async move {
        let (mut answer, relayed) = state?;
        match answer.chunk().await {
            Ok(Some(chunk)) if relayed + chunk.len() > MAX_RESPONSE_BYTES => {
                Some((Err(std::io::Error::other("upstream answer too large")), None))
            }
            Ok(Some(chunk)) => {
                let relayed = relayed + chunk.len();
                Some((Ok(chunk), Some((answer, relayed))))
            }
            Ok(None) => None,
            Err(error) => Some((Err(std::io::Error::other(error)), None)),
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn upstream_url_joins_paths_and_drops_presign_params() {
        let base = Url::parse("http://127.0.0.1:9000/app/").unwrap();
        let url = upstream_url(
            &base,
            "/items/1",
            Some("a=1&X-Amz-Signature=abc&X-Amz-Security-Token=t&b=2"),
        );
        assert_eq!(url.as_str(), "http://127.0.0.1:9000/app/items/1?a=1&b=2");
        let url = upstream_url(&base, "/", Some("X-Amz-Date=1"));
        assert_eq!(url.as_str(), "http://127.0.0.1:9000/app/");
    }

    #[test]
    fn connection_listed_headers_are_not_forwarded() {
        let mut incoming = HeaderMap::new();
        incoming.insert(header::CONNECTION, HeaderValue::from_static("keep-alive, X-Foo"));
        incoming.insert("x-foo", HeaderValue::from_static("1"));
        incoming.insert("x-bar", HeaderValue::from_static("2"));
        let connection = connection_listed(&incoming);
        let kept: Vec<&str> = incoming
            .keys()
            .filter(|name| !is_connection_specific(name, &connection))
            .map(HeaderName::as_str)
            .collect();
        assert_eq!(kept, vec!["x-bar"]);
    }
}
