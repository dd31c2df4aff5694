//! One sign-in, start to end: find the provider, verify the token, apply the claim rules, and
//! exchange the token at the identity pool (`GetId`, then `GetCredentialsForIdentity`).

use std::ops::{Deref, DerefMut};
use std::sync::Arc;
use std::time::SystemTime;

use crate::config::{Config, ConfigError};
use crate::error::ApiError;
use crate::identity::{self, IdentitySigner};
use crate::pool::{AwsCredentials, CognitoPool, IdentityPool, Logins};
use crate::token::Claims;
use crate::verifier::Verifier;

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

/// The sign-in service: the [`Verifier`] (providers and their key caches) and the identity pool.
/// It derefs to its verifier, so `broker.providers()` and `broker.limits()` read as before.
pub struct Broker {
    verifier: Verifier,
    pool: Arc<dyn IdentityPool>,
    region: String,
    allowed_origins: Vec<String>,
    identity_signer: Option<Arc<dyn IdentitySigner>>,
}

impl Broker {
    /// A broker for `config` that exchanges tokens at Cognito (or the configured endpoint).
    pub async fn from_config(config: &Config) -> Result<Broker, ConfigError> {
        let pool = CognitoPool::new(config.require_identity_pool()?).await;
        Broker::new(config, Arc::new(pool))
    }

    /// A broker for `config` that exchanges tokens at `pool`.
    pub fn new(config: &Config, pool: Arc<dyn IdentityPool>) -> Result<Broker, ConfigError> {
        Ok(Broker {
            verifier: Verifier::from_config(config)?,
            pool,
            region: config.require_identity_pool()?.region().to_string(),
            allowed_origins: config.allowed_origins.clone(),
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

    /// Verifies `id_token` for `provider_name` and exchanges it for credentials.
    pub async fn sign_in(&self, provider_name: &str, id_token: &str) -> Result<SignIn, ApiError> {
        let (provider, verified) = self.verifier.verify_sign_in(provider_name, id_token).await?;
        let role_arn = provider.role_for(&verified.claims);
        let logins: Logins = [(verified.logins_key.clone(), id_token.to_string())].into();
        let identity_id = self.pool.get_id(&logins).await?;
        let credentials = self.pool.get_credentials(&identity_id, &logins, role_arn).await?;
        tracing::info!(provider = provider_name, %identity_id, "signed in");
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
}

impl Deref for Broker {
    type Target = Verifier;

    fn deref(&self) -> &Verifier {
        &self.verifier
    }
}

impl DerefMut for Broker {
    fn deref_mut(&mut self) -> &mut Verifier {
        &mut self.verifier
    }
}
