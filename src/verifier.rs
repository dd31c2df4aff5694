//! The configured providers and how a token finds its provider: by name (a sign-in names it in
//! the URL) or by issuer (a bearer token names none). Everything here verifies tokens and needs no
//! identity pool, so the bearer authorizer runs on a [`Verifier`] alone.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use crate::config::{Config, ConfigError, Limits};
use crate::error::ApiError;
use crate::jwks::JwksPolicy;
use crate::provider::{Provider, TokenUse, VerifiedToken};
use crate::token::{self, TokenError, UnverifiedToken};

/// Connect timeout for every IdP fetch; the per-request timeout comes from the JWKS policy.
const IDP_CONNECT_TIMEOUT: Duration = Duration::from_secs(3);

/// The providers, their key caches and the shared HTTP client.
pub struct Verifier {
    providers: BTreeMap<String, Arc<Provider>>,
    limits: Limits,
    http: reqwest::Client,
    policy: JwksPolicy,
}

impl Verifier {
    /// The providers of validated configuration.
    pub fn from_config(config: &Config) -> Result<Verifier, ConfigError> {
        let http = idp_client().map_err(|e| ConfigError::Invalid {
            key: "jwks".into(),
            problem: format!("cannot build an HTTP client: {e}"),
            fix: "check the system's TLS configuration".into(),
        })?;
        let policy = JwksPolicy::from(&config.jwks);
        let providers = config
            .providers
            .iter()
            .map(|(name, provider)| {
                let built =
                    Provider::from_config(name, provider, &config.limits, http.clone(), policy.clone());
                (name.clone(), Arc::new(built))
            })
            .collect();
        Ok(Verifier {
            providers,
            limits: config.limits.clone(),
            http,
            policy,
        })
    }

    /// Adds a provider built outside the configuration (the dev stack's dev provider).
    pub(crate) fn add_provider(&mut self, provider: Provider) {
        self.providers
            .insert(provider.name().to_string(), Arc::new(provider));
    }

    /// The HTTP client and key policy providers share (for providers added later).
    pub(crate) fn idp_parts(&self) -> (reqwest::Client, JwksPolicy) {
        (self.http.clone(), self.policy.clone())
    }

    /// The size and clock limits.
    pub fn limits(&self) -> &Limits {
        &self.limits
    }

    /// The providers, by name.
    pub fn providers(&self) -> impl Iterator<Item = &Provider> {
        self.providers.values().map(Arc::as_ref)
    }

    /// Whether a provider of this name is configured.
    pub fn has_provider(&self, name: &str) -> bool {
        self.providers.contains_key(name)
    }

    /// The HTTP client of IdP fetches (no redirects, bounded connect), for readiness probes.
    pub fn idp_client(&self) -> &reqwest::Client {
        &self.http
    }

    /// The providers, shared (for the dev stack's local pool, which looks keys up through them).
    pub(crate) fn shared_providers(&self) -> impl Iterator<Item = &Arc<Provider>> {
        self.providers.values()
    }

    /// Verifies a sign-in's ID token for the provider named in its URL, rules included.
    pub async fn verify_sign_in(
        &self,
        provider_name: &str,
        id_token: &str,
    ) -> Result<(&Provider, VerifiedToken), ApiError> {
        let provider = self
            .providers
            .get(provider_name)
            .ok_or_else(|| ApiError::UnknownProvider(truncate(provider_name, 64)))?;
        let verified = verify_with(provider, id_token, TokenUse::SignIn).await?;
        Ok((provider, verified))
    }

    /// Verifies a bearer token that names no provider (the bearer authorizer): the providers
    /// whose issuer policy accepts the token's `iss` are tried in name order, and the first that
    /// verifies it and whose `require` rules hold wins. When none does, the first candidate's
    /// error is returned; a token from an issuer no provider accepts is `wrong_issuer`.
    pub async fn verify_bearer(&self, token: &str) -> Result<VerifiedToken, ApiError> {
        let unverified = UnverifiedToken::parse(token, self.limits.max_token_bytes)?;
        let issuer = unverified.issuer()?;
        let mut first_error = None;
        for provider in self.providers() {
            if !provider.accepts_issuer(issuer, unverified.unverified_claims()) {
                continue;
            }
            match verify_with(provider, token, TokenUse::Bearer).await {
                Ok(verified) => return Ok(verified),
                Err(error) => {
                    first_error.get_or_insert(error);
                }
            }
        }
        Err(first_error.unwrap_or_else(|| {
            ApiError::Token(TokenError::WrongIssuer {
                expected: "the issuer of a configured provider".into(),
                found: token::quote_untrusted(issuer),
            })
        }))
    }
}

/// Every check of `provider` on `raw`, then its `require` rules: what both a sign-in and a
/// bearer token must pass.
async fn verify_with(provider: &Provider, raw: &str, token_use: TokenUse) -> Result<VerifiedToken, ApiError> {
    let verified = provider.verify(raw, token_use, SystemTime::now()).await?;
    if let Some(rule) = provider.unmet_rule(&verified.claims) {
        return Err(ApiError::RuleDenied(rule.to_string()));
    }
    Ok(verified)
}

/// The client for discovery and JWKS fetches. Redirects are not followed: an IdP's key endpoint
/// that redirects elsewhere is a misconfiguration to surface, not a hop to trust.
fn idp_client() -> reqwest::Result<reqwest::Client> {
    reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .connect_timeout(IDP_CONNECT_TIMEOUT)
        .user_agent(concat!("credbroker/", env!("CARGO_PKG_VERSION")))
        .build()
}

/// Caller-supplied text shortened for messages, so a huge path segment can't bloat a response.
fn truncate(text: &str, max_chars: usize) -> String {
    match text.char_indices().nth(max_chars) {
        Some((cut, _)) => format!("{}…", &text[..cut]),
        None => text.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn truncate_keeps_short_text_and_cuts_long_text_on_a_char_boundary() {
        assert_eq!(truncate("corp", 64), "corp");
        assert_eq!(truncate("ééééé", 2), "éé…");
    }
}
