//! Bounded HTTP fetches of an issuer's documents (JWKS, discovery): https or loopback http only,
//! a timeout over the whole exchange, a size bound enforced while reading, `Cache-Control: max-age`
//! read for the caller, and [`FetchGate`] so concurrent callers share one fetch.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use url::Url;

use crate::config::is_acceptable_url;

/// A document fetched over HTTP, with the lifetime its server gave it.
#[derive(Debug)]
pub(crate) struct FetchedDocument {
    /// The body, at most the policy's `max_document_bytes`.
    pub(crate) body: Vec<u8>,
    /// `Cache-Control: max-age`, when the server sent one.
    pub(crate) max_age: Option<Duration>,
}

/// GETs `url`: acceptable URLs only, a timeout over the whole exchange, 2xx only,
/// and a body bound enforced while reading (Content-Length is only used to fail early).
/// The error is a short reason without secrets, fit for logs and problem details.
pub(crate) async fn fetch_document(
    client: &reqwest::Client,
    url: &Url,
    timeout: Duration,
    max_bytes: usize,
) -> Result<FetchedDocument, String> {
    if !is_acceptable_url(url) {
        return Err(format!("{url} is neither https nor http on a loopback host"));
    }
    let describe = |error: reqwest::Error| describe_request_error(url, timeout, &error);
    let mut response = client
        .get(url.clone())
        .header(reqwest::header::ACCEPT, "application/json")
        .timeout(timeout)
        .send()
        .await
        .map_err(describe)?;
    if !is_acceptable_url(response.url()) {
        return Err(format!(
            "GET {url} was redirected to a URL that is not acceptable"
        ));
    }
    let status = response.status();
    if !status.is_success() {
        return Err(format!("GET {url} answered HTTP {}", status.as_u16()));
    }
    let limit = max_bytes;
    let too_large = || format!("GET {url} sent a document over the {limit}-byte limit");
    if response
        .content_length()
        .is_some_and(|length| length > limit as u64)
    {
        return Err(too_large());
    }
    let max_age = max_age(response.headers());
    let mut body = Vec::new();
    while let Some(chunk) = response.chunk().await.map_err(describe)? {
        if body.len().saturating_add(chunk.len()) > limit {
            return Err(too_large());
        }
        body.extend_from_slice(&chunk);
    }
    Ok(FetchedDocument { body, max_age })
}

fn describe_request_error(url: &Url, timeout: Duration, error: &reqwest::Error) -> String {
    if error.is_timeout() {
        format!("GET {url} timed out after {} ms", timeout.as_millis())
    } else if error.is_connect() {
        format!("GET {url}: cannot connect")
    } else if error.is_redirect() {
        format!("GET {url}: too many or refused redirects")
    } else {
        format!("GET {url} failed")
    }
}

/// The `max-age` directive of `Cache-Control` (RFC 9111 §5.2.2.1); `no-store` and `no-cache`
/// count as zero (the policy's minimum then applies).
fn max_age(headers: &reqwest::header::HeaderMap) -> Option<Duration> {
    let mut found = None;
    for value in headers.get_all(reqwest::header::CACHE_CONTROL) {
        let Ok(value) = value.to_str() else { continue };
        for directive in value.split(',').map(str::trim) {
            let (name, argument) = directive.split_once('=').unwrap_or((directive, ""));
            let name = name.trim();
            if name.eq_ignore_ascii_case("no-store") || name.eq_ignore_ascii_case("no-cache") {
                return Some(Duration::ZERO);
            }
            if name.eq_ignore_ascii_case("max-age") {
                found = found.or_else(|| parse_delta_seconds(argument));
            }
        }
    }
    found
}

/// RFC 9111 §1.2.2 delta-seconds: digits, saturating on overflow.
fn parse_delta_seconds(text: &str) -> Option<Duration> {
    let digits = text.trim().trim_matches('"');
    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    Some(Duration::from_secs(digits.parse().unwrap_or(u64::MAX)))
}

/// Lets one fetch run at a time; callers that waited while another fetch ran use its outcome
/// rather than fetching again, so N concurrent callers cost one fetch.
#[derive(Debug, Default)]
pub(crate) struct FetchGate {
    lock: tokio::sync::Mutex<()>,
    completed: AtomicU64,
}

impl FetchGate {
    /// Take a ticket BEFORE looking at the cached state: if a fetch completes after that, the
    /// ticket is outdated and `run` will not fetch again.
    pub(crate) fn ticket(&self) -> u64 {
        self.completed.load(Ordering::SeqCst)
    }

    /// Runs `fetch` unless a fetch completed since `ticket` was taken.
    pub(crate) async fn run(&self, ticket: u64, fetch: impl Future<Output = ()>) {
        let _in_flight = self.lock.lock().await;
        if self.completed.load(Ordering::SeqCst) == ticket {
            fetch.await;
            // Not reached when the fetching caller is cancelled: a waiter then fetches instead.
            self.completed.fetch_add(1, Ordering::SeqCst);
        }
    }
}

/// A std mutex guard, recovering from poisoning (the guarded state is always left consistent:
/// no code panics while holding it).
pub(crate) fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

/// A real HTTP server on 127.0.0.1 playing an IdP for the cache tests: it counts requests and
/// answers whatever the test last told it to.
#[cfg(test)]
pub(crate) mod test_idp {
    use std::sync::atomic::{AtomicU64, Ordering};
    use std::sync::{Arc, Mutex};
    use std::time::Duration;

    use axum::body::Body;
    use axum::http::{HeaderValue, StatusCode, Uri, header};
    use axum::response::Response;
    use url::Url;

    use super::lock;
    use crate::jwks::JwksPolicy;

    /// What the server answers.
    #[derive(Debug, Clone)]
    pub(crate) enum Reply {
        /// 200 with this JSON body (with Content-Length) and an optional Cache-Control.
        Json {
            body: String,
            cache_control: Option<String>,
        },
        /// 200 with this body sent in chunks, without Content-Length.
        Chunked(String),
        /// An empty answer with this status.
        Status(u16),
        /// Nothing for a minute.
        Slow,
    }

    impl Reply {
        pub(crate) fn json(body: impl Into<String>) -> Reply {
            Reply::Json {
                body: body.into(),
                cache_control: None,
            }
        }
    }

    #[derive(Debug)]
    struct Shared {
        hits: AtomicU64,
        reply: Mutex<Reply>,
        paths: Mutex<Vec<String>>,
    }

    /// A running test IdP.
    #[derive(Debug)]
    pub(crate) struct TestIdp {
        base: Url,
        shared: Arc<Shared>,
    }

    impl TestIdp {
        pub(crate) async fn start(reply: Reply) -> TestIdp {
            let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
            let base = Url::parse(&format!("http://{}", listener.local_addr().unwrap())).unwrap();
            let shared = Arc::new(Shared {
                hits: AtomicU64::new(0),
                reply: Mutex::new(reply),
                paths: Mutex::default(),
            });
            let handler_state = Arc::clone(&shared);
            let app = axum::Router::new().fallback(move |uri: Uri| respond(Arc::clone(&handler_state), uri));
            tokio::spawn(async move { axum::serve(listener, app).await });
            TestIdp { base, shared }
        }

        /// `http://127.0.0.1:PORT/` joined with `path`.
        pub(crate) fn url(&self, path: &str) -> Url {
            self.base.join(path).unwrap()
        }

        pub(crate) fn set(&self, reply: Reply) {
            *lock(&self.shared.reply) = reply;
        }

        pub(crate) fn hits(&self) -> u64 {
            self.shared.hits.load(Ordering::SeqCst)
        }

        pub(crate) fn paths(&self) -> Vec<String> {
            lock(&self.shared.paths).clone()
        }
    }

    /// A policy for tests against a [`TestIdp`]: a one-minute cooldown, lifetimes clamped to
    /// 1 min..1 h, and small documents.
    pub(crate) fn test_policy() -> JwksPolicy {
        JwksPolicy {
            cooldown: Duration::from_secs(60),
            timeout: Duration::from_secs(5),
            min_max_age: Duration::from_secs(60),
            max_max_age: Duration::from_secs(3600),
            max_document_bytes: 16 * 1024,
            provider: "test".into(),
        }
    }

    async fn respond(shared: Arc<Shared>, uri: Uri) -> Response {
        shared.hits.fetch_add(1, Ordering::SeqCst);
        lock(&shared.paths).push(uri.path().to_string());
        let reply = lock(&shared.reply).clone();
        let mut response = Response::new(Body::empty());
        match reply {
            Reply::Json { body, cache_control } => {
                *response.body_mut() = Body::from(body);
                if let Some(value) = cache_control {
                    response
                        .headers_mut()
                        .insert(header::CACHE_CONTROL, HeaderValue::from_str(&value).unwrap());
                }
            }
            Reply::Chunked(body) => {
                let chunks: Vec<Result<Vec<u8>, std::convert::Infallible>> = body
                    .into_bytes()
                    .chunks(1024)
                    .map(|chunk| Ok(chunk.to_vec()))
                    .collect();
                *response.body_mut() = Body::from_stream(futures_util::stream::iter(chunks));
            }
            Reply::Status(status) => *response.status_mut() = StatusCode::from_u16(status).unwrap(),
            Reply::Slow => tokio::time::sleep(Duration::from_secs(60)).await,
        }
        response
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    #[test]
    fn cache_control_max_age() {
        let parse = |values: &[&str]| {
            let mut headers = reqwest::header::HeaderMap::new();
            for value in values {
                headers.append(reqwest::header::CACHE_CONTROL, value.parse().unwrap());
            }
            max_age(&headers)
        };
        assert_eq!(parse(&[]), None);
        assert_eq!(
            parse(&["public, max-age=300, must-revalidate"]),
            Some(Duration::from_secs(300))
        );
        assert_eq!(
            parse(&["public", "Max-Age=\"60\""]),
            Some(Duration::from_secs(60))
        );
        assert_eq!(parse(&["max-age=300, no-store"]), Some(Duration::ZERO));
        assert_eq!(parse(&["no-cache"]), Some(Duration::ZERO));
        assert_eq!(parse(&["max-age=soon"]), None);
        assert_eq!(parse(&["max-age=-5"]), None);
        assert_eq!(
            parse(&["max-age=99999999999999999999999"]),
            Some(Duration::from_secs(u64::MAX))
        );
    }
}
