//! The per-issuer key cache and its fetch policy: keys fetched at first use, refreshed when
//! `max-age` runs out or a token names an unknown key (at most once per cooldown), the last good
//! keys served while the IdP is down (stale-if-error), and one fetch in flight per issuer.
//!
//! The cache fetches over a `reqwest::Client` the caller builds. That client should limit
//! redirects (or refuse them): the cache checks that the final URL is still https (or http on
//! loopback) before using a document, but cannot stop the client from following a redirect.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::time::Instant;
use url::Url;

use crate::fetch::{FetchGate, fetch_document, lock};
use crate::key::{Algorithm, KeyMiss, KeySet, VerifyingKey};
use crate::telemetry;
use crate::token::TokenError;
use crate::untrusted::quote_untrusted;

/// Fetch and cache policy for one key cache (see `config::JwksSettings`).
#[derive(Debug, Clone)]
pub struct JwksPolicy {
    /// Minimum time between refreshes caused by unknown `kid`s.
    pub cooldown: Duration,
    /// Timeout of one fetch.
    pub timeout: Duration,
    /// Bounds applied to the IdP's `Cache-Control: max-age`.
    pub min_max_age: Duration,
    /// Upper bound (also the lifetime when the IdP sends no max-age).
    pub max_max_age: Duration,
    /// Largest accepted document.
    pub max_document_bytes: usize,
    /// The provider whose keys these are: the `provider` label of the JWKS metrics.
    pub provider: Arc<str>,
}

impl From<&crate::config::JwksSettings> for JwksPolicy {
    fn from(settings: &crate::config::JwksSettings) -> JwksPolicy {
        JwksPolicy {
            cooldown: Duration::from_secs(settings.cooldown_seconds),
            timeout: Duration::from_secs(settings.timeout_seconds),
            min_max_age: Duration::from_secs(settings.min_max_age_seconds),
            max_max_age: Duration::from_secs(settings.max_max_age_seconds),
            max_document_bytes: settings.max_document_bytes,
            provider: telemetry::NO_PROVIDER.into(),
        }
    }
}

impl JwksPolicy {
    /// The same policy for the caches of provider `name`.
    pub fn for_provider(&self, name: &str) -> JwksPolicy {
        JwksPolicy {
            provider: name.into(),
            ..self.clone()
        }
    }

    /// How long a document stays fresh, given the server's `max-age` (if any).
    fn lifetime(&self, max_age: Option<Duration>) -> Duration {
        // min/max rather than `clamp`, which panics when the bounds are inverted.
        max_age
            .unwrap_or(self.max_max_age)
            .min(self.max_max_age)
            .max(self.min_max_age)
    }
}

/// Why no key could be had.
#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    /// The keys are known (fresh or within cooldown) and none matches.
    #[error("no key matches kid {0}")]
    UnknownKey(String),
    /// The token has no `kid` and several of the issuer's keys fit its `alg`.
    #[error("{0}")]
    AmbiguousKey(String),
    /// The keys could not be fetched and nothing usable is cached.
    #[error("{0}")]
    Unavailable(String),
}

impl KeyError {
    fn from_miss(miss: KeyMiss, kid: Option<&str>, alg: Algorithm) -> KeyError {
        match (miss, kid) {
            (KeyMiss::Unknown, Some(kid)) => KeyError::UnknownKey(format!("`{}`", quote_untrusted(kid))),
            (KeyMiss::Unknown, None) => KeyError::UnknownKey(format!(
                "(none: the token has no kid and no key of the issuer allows {})",
                alg.name()
            )),
            (KeyMiss::Ambiguous { fitting }, _) => KeyError::AmbiguousKey(format!(
                "the token has no kid and {fitting} keys of the issuer allow {}",
                alg.name()
            )),
        }
    }
}

impl From<KeyError> for TokenError {
    fn from(error: KeyError) -> TokenError {
        match error {
            KeyError::UnknownKey(kid) => TokenError::UnknownKey(kid),
            KeyError::AmbiguousKey(reason) => TokenError::AmbiguousKey(reason),
            KeyError::Unavailable(reason) => TokenError::KeysUnavailable(reason),
        }
    }
}

/// Keys from the last successful fetch.
#[derive(Debug)]
struct CachedKeys {
    keys: KeySet,
    /// `None` when the lifetime reaches beyond what `Instant` can represent.
    fresh_until: Option<Instant>,
}

#[derive(Debug, Default)]
struct CacheState {
    keys: Option<CachedKeys>,
    /// When the last completed fetch started (the cooldown runs from there).
    last_fetch: Option<Instant>,
    /// Why the last fetch failed, when it did.
    last_error: Option<String>,
}

impl CacheState {
    /// Whether a lookup for `kid` and `alg` at `now` should fetch before answering: when the keys
    /// are stale, or none is known for the token (a rotation); an ambiguous choice is not fixed
    /// by fetching the same keys again.
    fn needs_fetch(&self, kid: Option<&str>, alg: Algorithm, now: Instant, cooldown: Duration) -> bool {
        let cooling_down = self
            .last_fetch
            .is_some_and(|started| now.saturating_duration_since(started) < cooldown);
        if cooling_down {
            return false;
        }
        match &self.keys {
            None => true,
            Some(cached) => {
                let fresh = cached.fresh_until.is_none_or(|until| now < until);
                !fresh || matches!(cached.keys.select(kid, alg), Err(KeyMiss::Unknown))
            }
        }
    }

    /// Whether the cached keys are past their lifetime (kept because refreshing them failed).
    fn is_stale(&self, now: Instant) -> bool {
        self.keys
            .as_ref()
            .and_then(|cached| cached.fresh_until)
            .is_some_and(|until| now >= until)
    }

    /// The answer from what is cached, stale keys included (stale-if-error).
    fn answer(&self, kid: Option<&str>, alg: Algorithm) -> Result<Arc<VerifyingKey>, KeyError> {
        match &self.keys {
            Some(cached) => cached
                .keys
                .select(kid, alg)
                .map_err(|miss| KeyError::from_miss(miss, kid, alg)),
            None => Err(KeyError::Unavailable(
                self.last_error
                    .clone()
                    .unwrap_or_else(|| "signing keys not fetched yet".into()),
            )),
        }
    }
}

/// The keys of one issuer: fetched at first use, refreshed when `max-age` runs out or a token
/// names an unknown `kid` (at most once per cooldown), the last good keys kept while the IdP is
/// down, and concurrent requests sharing one fetch.
#[derive(Debug)]
pub struct JwksCache {
    client: reqwest::Client,
    jwks_uri: Url,
    policy: JwksPolicy,
    state: Mutex<CacheState>,
    gate: FetchGate,
    fetches: AtomicU64,
}

impl JwksCache {
    /// A cache for `jwks_uri`, fetched with `client` (which should limit redirects).
    pub fn new(client: reqwest::Client, jwks_uri: Url, policy: JwksPolicy) -> JwksCache {
        JwksCache {
            client,
            jwks_uri,
            policy,
            state: Mutex::default(),
            gate: FetchGate::default(),
            fetches: AtomicU64::new(0),
        }
    }

    /// The key for a token's `kid` and `alg` (see [`KeySet::select`]), fetching or refreshing as
    /// the policy allows.
    pub async fn key(&self, kid: Option<&str>, alg: Algorithm) -> Result<Arc<VerifyingKey>, KeyError> {
        self.key_at(kid, alg, Instant::now()).await
    }

    /// How many fetches this cache has started (for tests and metrics).
    pub fn fetch_count(&self) -> u64 {
        self.fetches.load(Ordering::SeqCst)
    }

    /// The JWKS URI.
    pub fn jwks_uri(&self) -> &Url {
        &self.jwks_uri
    }

    /// [`JwksCache::key`] as if the clock read `now` (tests move the clock without sleeping).
    async fn key_at(
        &self,
        kid: Option<&str>,
        alg: Algorithm,
        now: Instant,
    ) -> Result<Arc<VerifyingKey>, KeyError> {
        let ticket = self.gate.ticket();
        {
            let state = lock(&self.state);
            if !state.needs_fetch(kid, alg, now, self.policy.cooldown) {
                return self.answer_counting_stale(&state, kid, alg, now);
            }
        }
        self.gate.run(ticket, self.refresh(now)).await;
        self.answer_counting_stale(&lock(&self.state), kid, alg, now)
    }

    /// [`CacheState::answer`], counting keys served from an expired set (stale-if-error).
    fn answer_counting_stale(
        &self,
        state: &CacheState,
        kid: Option<&str>,
        alg: Algorithm,
        now: Instant,
    ) -> Result<Arc<VerifyingKey>, KeyError> {
        let answer = state.answer(kid, alg);
        if answer.is_ok() && state.is_stale(now) {
            metrics::counter!(telemetry::JWKS_STALE_SERVED, telemetry::PROVIDER => self.policy.provider.to_string())
                .increment(1);
        }
        answer
    }

    /// Fetches the key set afresh without touching the cache: `Ok` when it holds a usable key.
    /// Readiness probes use it, so a probe neither hides nor causes a refresh.
    pub async fn probe(&self) -> Result<(), String> {
        let document = fetch_document(
            &self.client,
            &self.jwks_uri,
            self.policy.timeout,
            self.policy.max_document_bytes,
        )
        .await?;
        // A set without a usable key is an error of `from_json` already.
        KeySet::from_json(&document.body)
            .map(|_| ())
            .map_err(|e| format!("{}: {e}", self.jwks_uri))
    }

    /// Fetches the JWKS and records the outcome; a failure keeps the previous keys.
    async fn refresh(&self, started: Instant) {
        self.fetches.fetch_add(1, Ordering::SeqCst);
        metrics::counter!(telemetry::JWKS_FETCHES, telemetry::PROVIDER => self.policy.provider.to_string())
            .increment(1);
        let outcome = match fetch_document(
            &self.client,
            &self.jwks_uri,
            self.policy.timeout,
            self.policy.max_document_bytes,
        )
        .await
        {
            Ok(document) => KeySet::from_json(&document.body)
                .map(|keys| (keys, document.max_age))
                .map_err(|e| format!("{}: {e}", self.jwks_uri)),
            Err(reason) => Err(reason),
        };
        let mut state = lock(&self.state);
        state.last_fetch = Some(started);
        match outcome {
            Ok((keys, max_age)) => {
                state.keys = Some(CachedKeys {
                    keys,
                    fresh_until: started.checked_add(self.policy.lifetime(max_age)),
                });
                state.last_error = None;
            }
            Err(reason) => {
                metrics::counter!(telemetry::JWKS_FETCH_FAILURES, telemetry::PROVIDER => self.policy.provider.to_string())
                    .increment(1);
                tracing::warn!(%reason, "JWKS fetch failed; keeping the last good keys, if any");
                state.last_error = Some(reason);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fetch::test_idp::{Reply, TestIdp, test_policy};
    use crate::local::signing_key::SigningKey;

    fn jwks(keys: &[&SigningKey]) -> String {
        SigningKey::jwks(keys).to_string()
    }

    #[test]
    fn policy_from_settings() {
        let policy = JwksPolicy::from(&crate::config::JwksSettings::default());
        assert_eq!(policy.cooldown, Duration::from_secs(60));
        assert_eq!(policy.timeout, Duration::from_secs(5));
        assert_eq!(policy.min_max_age, Duration::from_secs(60));
        assert_eq!(policy.max_max_age, Duration::from_secs(24 * 3600));
        assert_eq!(policy.max_document_bytes, 256 * 1024);
    }

    #[test]
    fn lifetimes_are_clamped() {
        let policy = test_policy();
        assert_eq!(policy.lifetime(None), policy.max_max_age);
        assert_eq!(policy.lifetime(Some(Duration::ZERO)), policy.min_max_age);
        assert_eq!(
            policy.lifetime(Some(Duration::from_secs(120))),
            Duration::from_secs(120)
        );
        assert_eq!(policy.lifetime(Some(Duration::MAX)), policy.max_max_age);
    }

    fn cache_for(idp: &TestIdp, policy: JwksPolicy) -> Arc<JwksCache> {
        Arc::new(JwksCache::new(reqwest::Client::new(), idp.url("/jwks"), policy))
    }

    fn secs(seconds: u64) -> Duration {
        Duration::from_secs(seconds)
    }

    // The cache tests run on the real clock and pass the cache a virtual `now` (`key_at`), so
    // cooldowns and lifetimes are exact and no request timeout is ever auto-advanced.

    #[tokio::test]
    async fn the_first_use_fetches_and_later_uses_do_not() {
        let a = SigningKey::generate(Algorithm::ES256, "a");
        let idp = TestIdp::start(Reply::json(jwks(&[&a]))).await;
        let cache = cache_for(&idp, test_policy());
        let t0 = Instant::now();
        assert_eq!(
            cache.key_at(Some("a"), Algorithm::ES256, t0).await.unwrap().kid(),
            Some("a")
        );
        assert_eq!(
            cache
                .key_at(Some("a"), Algorithm::ES256, t0 + secs(30))
                .await
                .unwrap()
                .kid(),
            Some("a")
        );
        assert_eq!(
            cache
                .key_at(None, Algorithm::ES256, t0 + secs(31))
                .await
                .unwrap()
                .kid(),
            Some("a")
        );
        assert_eq!((idp.hits(), cache.fetch_count()), (1, 1));
        assert_eq!(idp.paths(), vec!["/jwks"]);
        // The public entry point uses the real clock.
        assert_eq!(
            cache.key(Some("a"), Algorithm::ES256).await.unwrap().kid(),
            Some("a")
        );
        assert_eq!(idp.hits(), 1);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn concurrent_first_uses_share_one_fetch() {
        let a = SigningKey::generate(Algorithm::ES256, "a");
        let idp = TestIdp::start(Reply::json(jwks(&[&a]))).await;
        let cache = cache_for(&idp, test_policy());
        let t0 = Instant::now();
        let lookups: Vec<_> = (0..200)
            .map(|_| {
                let cache = Arc::clone(&cache);
                tokio::spawn(async move {
                    cache
                        .key_at(Some("a"), Algorithm::ES256, t0)
                        .await
                        .map(|key| key.kid().map(str::to_string))
                })
            })
            .collect();
        for lookup in lookups {
            assert_eq!(lookup.await.unwrap().unwrap().as_deref(), Some("a"));
        }
        assert_eq!((idp.hits(), cache.fetch_count()), (1, 1));
    }

    #[tokio::test]
    async fn rotated_keys_are_picked_up_after_the_cooldown() {
        let (a, b) = (
            SigningKey::generate(Algorithm::ES256, "a"),
            SigningKey::generate(Algorithm::EdDSA, "b"),
        );
        let idp = TestIdp::start(Reply::json(jwks(&[&a]))).await;
        let cache = cache_for(&idp, test_policy());
        let t0 = Instant::now();
        cache.key_at(Some("a"), Algorithm::ES256, t0).await.unwrap();
        idp.set(Reply::json(jwks(&[&b])));
        // Within the cooldown an unknown kid is refused without a fetch.
        let refused = cache
            .key_at(Some("b"), Algorithm::ES256, t0 + secs(59))
            .await
            .unwrap_err();
        assert!(
            matches!(&refused, KeyError::UnknownKey(kid) if kid.contains('b')),
            "{refused:?}"
        );
        assert_eq!(idp.hits(), 1);
        // After it, the unknown kid triggers one refresh that finds the new key.
        assert_eq!(
            cache
                .key_at(Some("b"), Algorithm::ES256, t0 + secs(60))
                .await
                .unwrap()
                .kid(),
            Some("b")
        );
        assert_eq!(idp.hits(), 2);
        // The old key is gone and, within the new cooldown, asking again costs nothing.
        assert!(matches!(
            cache.key_at(Some("a"), Algorithm::ES256, t0 + secs(61)).await,
            Err(KeyError::UnknownKey(_))
        ));
        assert_eq!(idp.hits(), 2);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_burst_of_unknown_kids_costs_at_most_one_fetch() {
        let a = SigningKey::generate(Algorithm::ES256, "a");
        let idp = TestIdp::start(Reply::json(jwks(&[&a]))).await;
        let cache = cache_for(&idp, test_policy());
        let t0 = Instant::now();
        cache.key_at(Some("a"), Algorithm::ES256, t0).await.unwrap();
        let burst = |now: Instant| {
            let lookups: Vec<_> = (0..200)
                .map(|i| {
                    let cache = Arc::clone(&cache);
                    tokio::spawn(async move {
                        cache
                            .key_at(Some(&format!("forged-{i}")), Algorithm::ES256, now)
                            .await
                    })
                })
                .collect();
            async move {
                for lookup in lookups {
                    assert!(matches!(lookup.await.unwrap(), Err(KeyError::UnknownKey(_))));
                }
            }
        };
        burst(t0 + secs(10)).await;
        assert_eq!(idp.hits(), 1, "within the cooldown");
        burst(t0 + secs(61)).await;
        assert_eq!(idp.hits(), 2, "one refresh after the cooldown");
        assert_eq!(cache.fetch_count(), 2);
    }

    #[tokio::test]
    async fn max_age_is_honoured_within_bounds() {
        let a = SigningKey::generate(Algorithm::ES256, "a");
        let with_max_age = |seconds: u64| Reply::Json {
            body: jwks(&[&a]),
            cache_control: Some(format!("public, max-age={seconds}")),
        };
        let idp = TestIdp::start(with_max_age(600)).await;
        let cache = cache_for(&idp, test_policy());
        let t0 = Instant::now();
        cache.key_at(Some("a"), Algorithm::ES256, t0).await.unwrap();
        cache
            .key_at(Some("a"), Algorithm::ES256, t0 + secs(599))
            .await
            .unwrap();
        assert_eq!(idp.hits(), 1, "fresh for max-age");
        cache
            .key_at(Some("a"), Algorithm::ES256, t0 + secs(600))
            .await
            .unwrap();
        assert_eq!(idp.hits(), 2, "refreshed when max-age ran out");

        // A max-age below the policy's minimum is raised to it (60 s).
        idp.set(with_max_age(5));
        let t1 = t0 + secs(1_200);
        cache.key_at(Some("a"), Algorithm::ES256, t1).await.unwrap();
        assert_eq!(idp.hits(), 3);
        cache
            .key_at(Some("a"), Algorithm::ES256, t1 + secs(59))
            .await
            .unwrap();
        assert_eq!(idp.hits(), 3);
        cache
            .key_at(Some("a"), Algorithm::ES256, t1 + secs(60))
            .await
            .unwrap();
        assert_eq!(idp.hits(), 4);

        // Without max-age, and above the maximum, the maximum (3600 s) applies.
        idp.set(with_max_age(1_000_000));
        let t2 = t1 + secs(1_000);
        cache.key_at(Some("a"), Algorithm::ES256, t2).await.unwrap();
        cache
            .key_at(Some("a"), Algorithm::ES256, t2 + secs(3_599))
            .await
            .unwrap();
        assert_eq!(idp.hits(), 5);
        idp.set(Reply::json(jwks(&[&a])));
        cache
            .key_at(Some("a"), Algorithm::ES256, t2 + secs(3_600))
            .await
            .unwrap();
        assert_eq!(idp.hits(), 6);
        cache
            .key_at(Some("a"), Algorithm::ES256, t2 + secs(7_199))
            .await
            .unwrap();
        assert_eq!(idp.hits(), 6);
    }

    #[tokio::test]
    async fn stale_keys_are_served_while_the_idp_is_down() {
        let (a, b) = (
            SigningKey::generate(Algorithm::ES256, "a"),
            SigningKey::generate(Algorithm::ES256, "b"),
        );
        let idp = TestIdp::start(Reply::json(jwks(&[&a]))).await;
        let cache = cache_for(
            &idp,
            JwksPolicy {
                cooldown: secs(30),
                ..test_policy()
            },
        );
        let t0 = Instant::now();
        cache.key_at(Some("a"), Algorithm::ES256, t0).await.unwrap();
        idp.set(Reply::Status(503));
        let expired = t0 + secs(3_600);
        assert_eq!(
            cache
                .key_at(Some("a"), Algorithm::ES256, expired)
                .await
                .unwrap()
                .kid(),
            Some("a")
        );
        assert_eq!(idp.hits(), 2, "the expiry caused one refresh attempt");
        // No retry within the cooldown after the failure, whatever is asked.
        assert_eq!(
            cache
                .key_at(Some("a"), Algorithm::ES256, expired + secs(29))
                .await
                .unwrap()
                .kid(),
            Some("a")
        );
        assert!(matches!(
            cache
                .key_at(Some("b"), Algorithm::ES256, expired + secs(29))
                .await,
            Err(KeyError::UnknownKey(_))
        ));
        assert_eq!(idp.hits(), 2);
        // After the cooldown it tries again, and still serves the old key on failure.
        idp.set(Reply::json("{\"keys\": garbage"));
        assert_eq!(
            cache
                .key_at(Some("a"), Algorithm::ES256, expired + secs(30))
                .await
                .unwrap()
                .kid(),
            Some("a")
        );
        assert_eq!(idp.hits(), 3);
        // Once the IdP is back the new keys replace the old ones.
        idp.set(Reply::json(jwks(&[&b])));
        assert_eq!(
            cache
                .key_at(Some("b"), Algorithm::ES256, expired + secs(60))
                .await
                .unwrap()
                .kid(),
            Some("b")
        );
        assert!(matches!(
            cache
                .key_at(Some("a"), Algorithm::ES256, expired + secs(61))
                .await,
            Err(KeyError::UnknownKey(_))
        ));
        assert_eq!(idp.hits(), 4);
    }

    #[tokio::test]
    async fn without_cached_keys_a_failure_is_unavailable_and_retried_after_the_cooldown() {
        let a = SigningKey::generate(Algorithm::ES256, "a");
        let idp = TestIdp::start(Reply::Status(500)).await;
        let cache = cache_for(&idp, test_policy());
        let t0 = Instant::now();
        match cache.key_at(Some("a"), Algorithm::ES256, t0).await {
            Err(KeyError::Unavailable(reason)) => assert!(reason.contains("HTTP 500"), "{reason}"),
            other => panic!("{other:?}"),
        }
        match cache.key_at(Some("a"), Algorithm::ES256, t0 + secs(59)).await {
            Err(KeyError::Unavailable(reason)) => assert!(reason.contains("HTTP 500"), "{reason}"),
            other => panic!("{other:?}"),
        }
        assert_eq!(idp.hits(), 1);
        idp.set(Reply::json(jwks(&[&a])));
        assert_eq!(
            cache
                .key_at(Some("a"), Algorithm::ES256, t0 + secs(60))
                .await
                .unwrap()
                .kid(),
            Some("a")
        );
        assert_eq!(idp.hits(), 2);
    }

    async fn first_fetch_error(reply: Reply, policy: JwksPolicy) -> String {
        let idp = TestIdp::start(reply).await;
        let cache = cache_for(&idp, policy);
        let error = cache.key(Some("a"), Algorithm::ES256).await.unwrap_err();
        assert_eq!((idp.hits(), cache.fetch_count()), (1, 1));
        match error {
            KeyError::Unavailable(reason) => reason,
            other => panic!("{other:?}"),
        }
    }

    #[tokio::test]
    async fn a_slow_idp_times_out() {
        let policy = JwksPolicy {
            timeout: Duration::from_millis(300),
            ..test_policy()
        };
        let reason = first_fetch_error(Reply::Slow, policy).await;
        assert!(reason.contains("timed out after 300 ms"), "{reason}");
    }

    #[tokio::test]
    async fn oversized_documents_are_refused_with_or_without_content_length() {
        let a = SigningKey::generate(Algorithm::ES256, "a");
        let padded = format!("{}{}", jwks(&[&a]), " ".repeat(16 * 1024));
        let reason = first_fetch_error(Reply::json(padded.clone()), test_policy()).await;
        assert!(reason.contains("16384-byte limit"), "{reason}");
        let reason = first_fetch_error(Reply::Chunked(padded), test_policy()).await;
        assert!(reason.contains("16384-byte limit"), "{reason}");
        // The same document within the limit is fine when streamed.
        let idp = TestIdp::start(Reply::Chunked(jwks(&[&a]))).await;
        assert!(
            cache_for(&idp, test_policy())
                .key(Some("a"), Algorithm::ES256)
                .await
                .is_ok()
        );
    }

    #[tokio::test]
    async fn garbage_is_refused() {
        let reason = first_fetch_error(Reply::json("<html>oops</html>"), test_policy()).await;
        assert!(reason.contains("not JSON"), "{reason}");
        let reason = first_fetch_error(Reply::json(r#"{"issuer": "x"}"#), test_policy()).await;
        assert!(reason.contains("no `keys` array"), "{reason}");
    }

    #[tokio::test]
    async fn redirects_are_not_followed_by_a_client_that_refuses_them() {
        let idp = TestIdp::start(Reply::Status(302)).await;
        let client = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .unwrap();
        let cache = JwksCache::new(client, idp.url("/jwks"), test_policy());
        match cache.key(Some("a"), Algorithm::ES256).await {
            Err(KeyError::Unavailable(reason)) => assert!(reason.contains("HTTP 302"), "{reason}"),
            other => panic!("{other:?}"),
        }
    }

    #[tokio::test]
    async fn unacceptable_urls_are_never_fetched() {
        for uri in [
            "http://jwks.example.com/keys",
            "ftp://127.0.0.1/keys",
            "file:///etc/passwd",
        ] {
            let cache = JwksCache::new(reqwest::Client::new(), Url::parse(uri).unwrap(), test_policy());
            match cache.key(Some("a"), Algorithm::ES256).await {
                Err(KeyError::Unavailable(reason)) => {
                    assert!(reason.contains("neither https nor http"), "{reason}")
                }
                other => panic!("{uri}: {other:?}"),
            }
        }
    }

    #[test]
    fn unknown_kid_errors_are_bounded() {
        let hostile = "k\n".repeat(100_000);
        let KeyError::UnknownKey(kid) =
            KeyError::from_miss(KeyMiss::Unknown, Some(&hostile), Algorithm::RS256)
        else {
            panic!("not UnknownKey");
        };
        assert!(kid.len() < 300 && !kid.contains('\n'), "{kid}");
        let error = KeyError::from_miss(KeyMiss::Unknown, None, Algorithm::RS256);
        assert!(
            matches!(&error, KeyError::UnknownKey(kid) if kid.contains("no kid")),
            "{error}"
        );
        let error = KeyError::from_miss(KeyMiss::Ambiguous { fitting: 2 }, None, Algorithm::RS256);
        assert_eq!(TokenError::from(error).code(), "ambiguous_key");
    }

    #[tokio::test]
    async fn without_kid_an_ambiguous_choice_costs_no_fetch() {
        let (a, b) = (
            SigningKey::generate(Algorithm::ES256, "a"),
            SigningKey::generate(Algorithm::ES256, "b"),
        );
        let idp = TestIdp::start(Reply::json(jwks(&[&a, &b]))).await;
        let cache = cache_for(&idp, test_policy());
        let t0 = Instant::now();
        let error = cache.key_at(None, Algorithm::ES256, t0).await.unwrap_err();
        assert!(
            matches!(&error, KeyError::AmbiguousKey(reason) if reason.contains("2 keys")),
            "{error:?}"
        );
        cache
            .key_at(None, Algorithm::ES256, t0 + secs(120))
            .await
            .unwrap_err();
        assert_eq!(
            idp.hits(),
            1,
            "the keys are fresh: fetching them again changes nothing"
        );
        // No key fits EdDSA: like an unknown kid, a possible rotation, so one refresh.
        let error = cache
            .key_at(None, Algorithm::EdDSA, t0 + secs(121))
            .await
            .unwrap_err();
        assert!(matches!(error, KeyError::UnknownKey(_)), "{error:?}");
        assert_eq!(idp.hits(), 2);
    }
}
