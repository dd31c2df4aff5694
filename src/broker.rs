//! One sign-in, start to end: find the provider, verify the token, apply the claim rules, and
//! exchange the token at the identity pool (`GetId`, then `GetCredentialsForIdentity`).

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use crate::config::{Config, ConfigError, Limits};
use crate::error::ApiError;
use crate::identity::{self, IdentitySigner};
use crate::jwks::JwksPolicy;
use crate::pool::{AwsCredentials, CognitoPool, IdentityPool, Logins};
use crate::provider::{Provider, VerifiedToken};
use crate::telemetry;
use crate::token::{self, Claims, TokenError, UnverifiedToken};

/// Connect timeout for every IdP fetch; the per-request timeout comes from the JWKS policy.
const IDP_CONNECT_TIMEOUT: Duration = Duration::from_secs(3);

/// A successful sign-in.
#[derive(Debug, Clone)]
pub struct SignIn {
    /// The Cognito identity id.
    pub identity_id: String,
    /// The provider's configured name.
    pub provider: String,
    /// The user's subject at the provider.
    pub subject: String,
    /// The temporary credentials.
    pub credentials: AwsCredentials,
    /// The claims the provider is configured to expose.
    pub claims: Claims,
    /// The broker's signed statement of all of the above for the apps behind the API
    /// ([`crate::identity`]), when the broker has an identity signer.
    pub identity_assertion: Option<String>,
}

/// The sign-in service: providers, their key caches, and the identity pool.
pub struct Broker {
    providers: BTreeMap<String, Arc<Provider>>,
    pool: Arc<dyn IdentityPool>,
    region: String,
    allowed_origins: Vec<String>,
    limits: Limits,
    http: reqwest::Client,
    policy: JwksPolicy,
    identity_signer: Option<Arc<dyn IdentitySigner>>,
}

impl Broker {
    /// A broker for `config` that exchanges tokens at Cognito (or the configured endpoint).
    pub async fn from_config(config: &Config) -> Result<Broker, ConfigError> {
        let pool = CognitoPool::new(&config.identity_pool).await;
        Broker::new(config, Arc::new(pool))
    }

    /// A broker for `config` that exchanges tokens at `pool`.
    pub fn new(config: &Config, pool: Arc<dyn IdentityPool>) -> Result<Broker, ConfigError> {
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
        Ok(Broker {
            providers,
            pool,
            region: config.identity_pool.region().to_string(),
            allowed_origins: config.allowed_origins.clone(),
            limits: config.limits.clone(),
            http,
            policy,
            identity_signer: None,
        })
    }

    /// Signs an identity assertion at every sign-in from now on (the dev stack's own key).
    pub(crate) fn set_identity_signer(&mut self, signer: Arc<dyn IdentitySigner>) {
        self.identity_signer = Some(signer);
    }

    /// The identity signer, when there is one (`GET /auth/identity-keys` publishes its keys).
    pub fn identity_signer(&self) -> Option<&dyn IdentitySigner> {
        self.identity_signer.as_deref()
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

    /// The identity pool's region.
    pub fn region(&self) -> &str {
        &self.region
    }

    /// Browser origins allowed to call the API.
    pub fn allowed_origins(&self) -> &[String] {
        &self.allowed_origins
    }

    /// Allows one more browser origin (the dev stack's own).
    pub(crate) fn allow_origin(&mut self, origin: String) {
        if !self.allowed_origins.contains(&origin) {
            self.allowed_origins.push(origin);
        }
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

    /// The identity pool tokens are exchanged at.
    pub fn identity_pool(&self) -> &dyn IdentityPool {
        self.pool.as_ref()
    }

    /// The HTTP client of IdP fetches (no redirects, bounded connect), for readiness probes.
    pub fn idp_client(&self) -> &reqwest::Client {
        &self.http
    }

    /// Verifies `id_token` for `provider_name` and exchanges it for credentials.
    pub async fn sign_in(&self, provider_name: &str, id_token: &str) -> Result<SignIn, ApiError> {
        let provider = self
            .providers
            .get(provider_name)
            .ok_or_else(|| ApiError::UnknownProvider(truncate(provider_name, 64)))?;
        let verified = verify_with(provider, id_token).await?;
        let role_arn = provider.role_for(&verified.claims);
        let logins: Logins = [(verified.logins_key.clone(), id_token.to_string())].into();
        let started = Instant::now();
        let identity_id = self.pool.get_id(&logins).await;
        telemetry::record_pool_call("GetId", started, &identity_id);
        let identity_id = identity_id?;
        let started = Instant::now();
        let credentials = self.pool.get_credentials(&identity_id, &logins, role_arn).await;
        telemetry::record_pool_call("GetCredentialsForIdentity", started, &credentials);
        let credentials = credentials?;
        tracing::debug!(provider = provider_name, %identity_id, "signed in");
        let mut signed_in = SignIn {
            identity_id,
            provider: provider_name.to_string(),
            subject: verified.subject,
            claims: provider.exposed_claims(&verified.claims),
            credentials,
            identity_assertion: None,
        };
        signed_in.identity_assertion = self
            .identity_signer()
            .map(|signer| identity::sign_assertion(signer, &signed_in, SystemTime::now()));
        Ok(signed_in)
    }

    /// Verifies a bearer ID token that names no provider (the bearer authorizer): the providers
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
            match verify_with(provider, token).await {
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

/// Every check of `provider` on `id_token`, then its `require` rules: what both a sign-in and a
/// bearer token must pass.
async fn verify_with(provider: &Provider, id_token: &str) -> Result<VerifiedToken, ApiError> {
    let verified = provider.verify(id_token, SystemTime::now()).await?;
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
