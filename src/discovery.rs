//! OpenID Connect Discovery 1.0: the provider metadata document, fetched lazily and cached.
//!
//! The document is fetched with the same bounds as a JWKS (timeout, size, https or loopback http)
//! and kept for the life of the process once it checks out; failures are remembered for the
//! cooldown so a down IdP costs one request per cooldown, not one per sign-in.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde_json::Value;
use tokio::time::Instant;
use url::Url;

use crate::config::is_acceptable_url;
use crate::fetch::{FetchGate, fetch_document, lock};
use crate::issuer::Issuer;
use crate::jwks::{JwksPolicy, KeyError};
use crate::untrusted::quote_untrusted;

/// The parts of a provider's metadata credbroker uses.
#[derive(Debug, Clone, serde::Serialize)]
pub struct ProviderMetadata {
    /// `issuer`; identical to the issuer discovery was made for (Discovery §4.3).
    pub issuer: String,
    /// `jwks_uri`.
    pub jwks_uri: Url,
    /// `authorization_endpoint`.
    pub authorization_endpoint: Option<Url>,
    /// `token_endpoint`.
    pub token_endpoint: Option<Url>,
    /// `end_session_endpoint` (OpenID Connect RP-Initiated Logout 1.0 §2.1).
    pub end_session_endpoint: Option<Url>,
    /// `authorization_response_iss_parameter_supported` (RFC 9207 §3; absent means false).
    pub iss_parameter_supported: bool,
}

/// The metadata of one issuer, fetched at first use and kept; a failed fetch is retried no
/// sooner than the policy's cooldown, so a down IdP is not hammered.
#[derive(Debug)]
pub struct MetadataCache {
    client: reqwest::Client,
    issuer: Issuer,
    policy: JwksPolicy,
    state: Mutex<MetadataState>,
    gate: FetchGate,
}

#[derive(Debug, Default)]
struct MetadataState {
    metadata: Option<Arc<ProviderMetadata>>,
    /// When the last failed fetch started, and why it failed.
    failure: Option<(Instant, String)>,
}

impl MetadataState {
    fn answer(&self) -> Result<Arc<ProviderMetadata>, KeyError> {
        match (&self.metadata, &self.failure) {
            (Some(metadata), _) => Ok(Arc::clone(metadata)),
            (None, Some((_, reason))) => Err(KeyError::Unavailable(reason.clone())),
            (None, None) => Err(KeyError::Unavailable("provider metadata not fetched yet".into())),
        }
    }

    fn needs_fetch(&self, now: Instant, cooldown: Duration) -> bool {
        self.metadata.is_none()
            && self
                .failure
                .as_ref()
                .is_none_or(|(at, _)| now.saturating_duration_since(*at) >= cooldown)
    }
}

impl MetadataCache {
    /// A cache for `issuer`'s `/.well-known/openid-configuration`.
    pub fn new(client: reqwest::Client, issuer: Issuer, policy: JwksPolicy) -> MetadataCache {
        MetadataCache {
            client,
            issuer,
            policy,
            state: Mutex::default(),
            gate: FetchGate::default(),
        }
    }

    /// The metadata, fetching it when not yet known.
    pub async fn get(&self) -> Result<Arc<ProviderMetadata>, KeyError> {
        self.get_at(Instant::now()).await
    }

    /// [`MetadataCache::get`] as if the clock read `now` (tests move the clock without sleeping).
    async fn get_at(&self, now: Instant) -> Result<Arc<ProviderMetadata>, KeyError> {
        let ticket = self.gate.ticket();
        {
            let state = lock(&self.state);
            if !state.needs_fetch(now, self.policy.cooldown) {
                return state.answer();
            }
        }
        self.gate.run(ticket, self.fetch(now)).await;
        lock(&self.state).answer()
    }

    async fn fetch(&self, started: Instant) {
        let url = self.issuer.discovery_url();
        let outcome = match fetch_document(
            &self.client,
            &url,
            self.policy.timeout,
            self.policy.max_document_bytes,
        )
        .await
        {
            Ok(document) => {
                parse_metadata(&document.body, &self.issuer).map_err(|problem| format!("{url}: {problem}"))
            }
            Err(reason) => Err(reason),
        };
        let mut state = lock(&self.state);
        match outcome {
            Ok(metadata) => state.metadata = Some(Arc::new(metadata)),
            Err(reason) => {
                tracing::warn!(%reason, "OpenID discovery failed");
                state.failure = Some((started, reason));
            }
        }
    }
}

/// Reads and checks a metadata document.
fn parse_metadata(body: &[u8], issuer: &Issuer) -> Result<ProviderMetadata, String> {
    let document: Value =
        serde_json::from_slice(body).map_err(|e| format!("the metadata is not JSON: {e}"))?;
    let Value::Object(members) = document else {
        return Err("the metadata is not a JSON object".into());
    };
    // Discovery §4.3: the issuer in the document MUST be identical to the one discovery was
    // made for (exactly, trailing `/` included); otherwise another tenant's or host's keys could
    // be substituted.
    let found = members
        .get("issuer")
        .and_then(Value::as_str)
        .ok_or("the metadata has no `issuer`")?;
    if !issuer.is(found) {
        return Err(format!(
            "the metadata names issuer `{}`, expected `{issuer}`",
            quote_untrusted(found)
        ));
    }
    let jwks_uri = members
        .get("jwks_uri")
        .and_then(Value::as_str)
        .ok_or("the metadata has no `jwks_uri`")?;
    let jwks_uri = Url::parse(jwks_uri)
        .ok()
        .filter(is_acceptable_url)
        .ok_or_else(|| {
            format!(
                "jwks_uri `{}` is not an https (or loopback http) URL",
                quote_untrusted(jwks_uri)
            )
        })?;
    Ok(ProviderMetadata {
        issuer: found.to_string(),
        jwks_uri,
        authorization_endpoint: optional_endpoint(&members, "authorization_endpoint"),
        token_endpoint: optional_endpoint(&members, "token_endpoint"),
        end_session_endpoint: optional_endpoint(&members, "end_session_endpoint"),
        iss_parameter_supported: members
            .get("authorization_response_iss_parameter_supported")
            .and_then(Value::as_bool)
            .unwrap_or(false),
    })
}

/// An endpoint credbroker only passes on: kept when it is an acceptable URL, dropped otherwise.
fn optional_endpoint(members: &serde_json::Map<String, Value>, name: &str) -> Option<Url> {
    members
        .get(name)
        .and_then(Value::as_str)
        .and_then(|text| Url::parse(text).ok())
        .filter(is_acceptable_url)
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;
    use crate::fetch::test_idp::{Reply, TestIdp, test_policy};

    fn metadata_cache(issuer: &Issuer) -> MetadataCache {
        MetadataCache::new(reqwest::Client::new(), issuer.clone(), test_policy())
    }

    /// The test IdP's URL for `path`, written as `text` (the IdP's origin and `path` as given,
    /// not normalised by `Url`).
    fn issuer_at(idp: &TestIdp, path: &str) -> Issuer {
        let origin = idp.url("/").origin().ascii_serialization();
        Issuer::parse(&format!("{origin}{path}")).unwrap()
    }

    fn document(issuer: &str, jwks_uri: &str) -> Reply {
        Reply::json(
            json!({
                "issuer": issuer,
                "jwks_uri": jwks_uri,
                "authorization_endpoint": format!("{issuer}/authorize"),
                "token_endpoint": "http://idp.example.com/token",
                "response_types_supported": ["code"],
            })
            .to_string(),
        )
    }

    /// A test IdP whose document names it as issuer: `http://127.0.0.1:PORT` + `path`, exactly.
    async fn idp_serving_itself(path: &str) -> (TestIdp, Issuer) {
        let idp = TestIdp::start(Reply::Status(500)).await;
        let issuer = issuer_at(&idp, path);
        let base = issuer.as_str().trim_end_matches('/');
        idp.set(document(issuer.as_str(), &format!("{base}/jwks")));
        (idp, issuer)
    }

    fn unavailable(result: Result<Arc<ProviderMetadata>, KeyError>) -> String {
        match result {
            Err(KeyError::Unavailable(reason)) => reason,
            other => panic!("expected Unavailable, got {other:?}"),
        }
    }

    #[tokio::test]
    async fn metadata_is_fetched_once_and_kept() {
        let (idp, issuer) = idp_serving_itself("").await;
        let cache = metadata_cache(&issuer);
        let metadata = cache.get().await.unwrap();
        assert_eq!(metadata.issuer, issuer.as_str());
        assert_eq!(metadata.jwks_uri, idp.url("/jwks"));
        assert_eq!(metadata.authorization_endpoint, Some(idp.url("/authorize")));
        assert_eq!(
            metadata.token_endpoint, None,
            "plain http off loopback is dropped"
        );
        let later = cache
            .get_at(Instant::now() + Duration::from_secs(1_000_000))
            .await
            .unwrap();
        assert!(Arc::ptr_eq(&metadata, &later));
        assert_eq!(idp.hits(), 1);
        assert_eq!(idp.paths(), vec!["/.well-known/openid-configuration"]);
    }

    #[tokio::test]
    async fn issuers_with_paths_are_discovered_under_their_path() {
        let (idp, issuer) = idp_serving_itself("/tenant/v2.0").await;
        let cache = metadata_cache(&issuer);
        assert_eq!(cache.get().await.unwrap().issuer, issuer.as_str());
        assert_eq!(idp.paths(), vec!["/tenant/v2.0/.well-known/openid-configuration"]);
    }

    /// Auth0 writes its issuer with a trailing `/`: discovery drops it before the well-known
    /// path (§4.1) and the document must name the issuer with it (§4.3).
    #[tokio::test]
    async fn an_issuer_with_a_trailing_slash_is_discovered_and_matched_as_written() {
        let (idp, issuer) = idp_serving_itself("/").await;
        assert!(issuer.as_str().ends_with('/'));
        let cache = metadata_cache(&issuer);
        assert_eq!(cache.get().await.unwrap().issuer, issuer.as_str());
        assert_eq!(idp.paths(), vec!["/.well-known/openid-configuration"]);
    }

    #[tokio::test]
    async fn the_document_must_name_the_configured_issuer() {
        let idp = TestIdp::start(Reply::Status(500)).await;
        for (configured, found) in [
            ("", "https://evil.example".to_string()),
            ("", format!("{}other", idp.url("/"))),
            // The slash is part of the issuer: either way round, the document names another.
            ("", idp.url("/").to_string()),
            ("/", idp.url("/").as_str().trim_end_matches('/').to_string()),
            ("", idp.url("/").as_str().trim_end_matches('/').to_uppercase()),
        ] {
            let issuer = issuer_at(&idp, configured);
            idp.set(document(&found, idp.url("/jwks").as_str()));
            let cache = metadata_cache(&issuer);
            let reason = unavailable(cache.get().await);
            assert!(reason.contains("expected"), "{found}: {reason}");
        }
    }

    #[tokio::test]
    async fn jwks_uri_is_required_and_must_be_acceptable() {
        let idp = TestIdp::start(Reply::Status(500)).await;
        let issuer = issuer_at(&idp, "");
        let name = issuer.as_str();
        for (jwks_uri, problem) in [
            (json!(null), "no `jwks_uri`"),
            (json!("http://keys.example.com/jwks"), "not an https"),
            (json!("not a url"), "not an https"),
        ] {
            idp.set(Reply::json(
                json!({"issuer": name, "jwks_uri": jwks_uri}).to_string(),
            ));
            let cache = metadata_cache(&issuer);
            let reason = unavailable(cache.get().await);
            assert!(reason.contains(problem), "{jwks_uri}: {reason}");
        }
        idp.set(Reply::json("[1, 2]"));
        let cache = metadata_cache(&issuer);
        assert!(unavailable(cache.get().await).contains("not a JSON object"));
    }

    #[tokio::test]
    async fn a_failure_is_not_retried_before_the_cooldown() {
        let (idp, issuer) = idp_serving_itself("").await;
        idp.set(Reply::Status(503));
        let cache = metadata_cache(&issuer);
        let t0 = Instant::now();
        assert!(unavailable(cache.get_at(t0).await).contains("HTTP 503"));
        assert!(unavailable(cache.get_at(t0 + Duration::from_secs(59)).await).contains("HTTP 503"));
        assert_eq!(idp.hits(), 1);
        let name = issuer.as_str();
        idp.set(document(name, &format!("{name}/jwks")));
        assert!(cache.get_at(t0 + Duration::from_secs(60)).await.is_ok());
        assert_eq!(idp.hits(), 2);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn concurrent_gets_share_one_fetch() {
        let (idp, issuer) = idp_serving_itself("").await;
        let cache = Arc::new(metadata_cache(&issuer));
        let gets: Vec<_> = (0..100)
            .map(|_| {
                let cache = Arc::clone(&cache);
                tokio::spawn(async move { cache.get().await.map(|metadata| metadata.jwks_uri.clone()) })
            })
            .collect();
        for get in gets {
            assert!(get.await.unwrap().is_ok());
        }
        assert_eq!(idp.hits(), 1);
    }

    #[tokio::test]
    async fn a_slow_idp_times_out() {
        let idp = TestIdp::start(Reply::Slow).await;
        let policy = JwksPolicy {
            timeout: Duration::from_millis(300),
            ..test_policy()
        };
        let cache = MetadataCache::new(reqwest::Client::new(), issuer_at(&idp, ""), policy);
        assert!(unavailable(cache.get().await).contains("timed out"));
    }
}
