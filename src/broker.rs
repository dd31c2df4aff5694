//! One sign-in, start to end: find the provider, verify the token, apply the claim rules, and
//! exchange the token at the identity pool.
//!
//! # The exchange, and how many Cognito calls it makes
//!
//! | pool mode   | first sign-in                                   | renewal (`identity_id` sent back) |
//! |-------------|-------------------------------------------------|-----------------------------------|
//! | `enhanced`  | `GetId` + `GetCredentialsForIdentity` (2)       | `GetCredentialsForIdentity` (1)   |
//! | `developer` | `GetOpenIdTokenForDeveloperIdentity` + `GetCredentialsForIdentity` (2) | the same (2) |
//!
//! In enhanced mode a renewal skips `GetId` (25 requests/s per account by default) because
//! Cognito itself checks that the identity belongs to the token's login: an identity id that does
//! not (someone else's, a deleted one, garbage) is refused (`NotAuthorizedException` "Logins
//! don't match", `ResourceNotFoundException`, `InvalidParameterException`), and the broker then
//! falls back to `GetId` as for a first sign-in: one wasted call, never an error for the user.
//! `GetCredentialsForIdentity` never links a login to an identity, so a caller gains nothing by
//! sending someone else's id. In developer mode the identity id a client sends is ignored on
//! purpose: `GetOpenIdTokenForDeveloperIdentity` *links* the developer login to an identity id it
//! is given, so a caller-chosen id would hand over another user's identity.
//!
//! # Throttling
//!
//! Cognito's quotas are per account and Region. A throttled call is retried (after the SDK's own
//! retries) with full-jitter exponential backoff, starting at [`THROTTLE_FIRST_BACKOFF`] and
//! capped at [`THROTTLE_MAX_BACKOFF`], so a burst spreads out instead of retrying in lockstep.
//! The whole exchange, retries included, is bounded by [`EXCHANGE_BUDGET`]; when it runs out
//! the client gets `429 pool_throttled` with `Retry-After`.

use std::future::Future;
use std::ops::{Deref, DerefMut};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use tokio::time::Instant;

use crate::config::{Config, ConfigError, PoolMode};
use crate::error::ApiError;
use crate::identity::{self, IdentitySigner, KmsIdentitySigner};
use crate::pool::{
    AwsCredentials, COGNITO_LOGINS_KEY, CognitoPool, IdentityPool, Logins, PoolError, is_identity_id,
};
use crate::telemetry;
use crate::token::Claims;
use crate::verifier::Verifier;

/// Longest the identity-pool part of one sign-in may take, throttling retries included. API
/// Gateway ends a Lambda integration at 29 s; a cold key fetch may take the JWKS timeout (5 s by
/// default) before the exchange starts, and 2 s are left for everything else.
pub const EXCHANGE_BUDGET: Duration = Duration::from_secs(22);
/// First pause after a throttled call, before jitter; it doubles with every further one.
pub const THROTTLE_FIRST_BACKOFF: Duration = Duration::from_millis(250);
/// Longest pause between two throttled calls, before jitter.
pub const THROTTLE_MAX_BACKOFF: Duration = Duration::from_secs(4);

/// Cognito Identity operation names: the `operation` label of the pool-call metrics.
const GET_ID: &str = "GetId";
/// See [`GET_ID`].
const GET_CREDENTIALS: &str = "GetCredentialsForIdentity";
/// See [`GET_ID`].
const DEVELOPER_LOGIN: &str = "GetOpenIdTokenForDeveloperIdentity";

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
}

/// The sign-in service: the [`Verifier`] (providers and their key caches) and the identity pool.
/// It derefs to its verifier, so `broker.providers()` and `broker.limits()` read as before.
pub struct Broker {
    verifier: Verifier,
    pool: Arc<dyn IdentityPool>,
    /// How tokens are exchanged, and the developer provider name in developer mode.
    exchange: Exchange,
    region: String,
    allowed_origins: Vec<String>,
    identity_signer: Option<Arc<dyn IdentitySigner>>,
}

impl Broker {
    /// A broker for `config` that exchanges tokens at Cognito (or the configured endpoint) and,
    /// with `[identity]`, signs identity assertions with that KMS key (its public keys are read
    /// here, once).
    pub async fn from_config(config: &Config) -> Result<Broker, ConfigError> {
        let pool = CognitoPool::new(config.require_identity_pool()?).await;
        let mut broker = Broker::new(config, Arc::new(pool))?;
        if let Some(identity) = &config.identity {
            broker.set_identity_signer(Arc::new(KmsIdentitySigner::connect(identity).await?));
        }
        Ok(broker)
    }

    /// A broker for `config` that exchanges tokens at `pool`.
    pub fn new(config: &Config, pool: Arc<dyn IdentityPool>) -> Result<Broker, ConfigError> {
        let pool_config = config.require_identity_pool()?;
        Ok(Broker {
            verifier: Verifier::from_config(config)?,
            pool,
            exchange: match (pool_config.mode, &pool_config.developer_provider_name) {
                (PoolMode::Developer, Some(name)) => Exchange::Developer {
                    provider_name: name.clone(),
                },
                _ => Exchange::Enhanced,
            },
            region: pool_config.region().to_string(),
            allowed_origins: config.allowed_origins.clone(),
            identity_signer: None,
        })
    }

    /// Signs an identity assertion at every sign-in from now on (the deployment's KMS key, the
    /// dev stack's own key).
    pub fn set_identity_signer(&mut self, signer: Arc<dyn IdentitySigner>) {
        self.identity_signer = Some(signer);
    }

    /// The identity signer, when there is one (`GET /auth/identity-keys` publishes its keys).
    pub fn identity_signer(&self) -> Option<&dyn IdentitySigner> {
        self.identity_signer.as_deref()
    }

    /// The identity pool tokens are exchanged at.
    pub fn identity_pool(&self) -> &dyn IdentityPool {
        self.pool.as_ref()
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
        self.renew(provider_name, id_token, None).await
    }

    /// [`Broker::sign_in`] for a client that already holds an identity id from an earlier
    /// sign-in: in enhanced mode it is tried first, saving `GetId` (see the
    /// [module documentation](self)); a refused or malformed one costs one call, not an error.
    pub async fn renew(
        &self,
        provider_name: &str,
        id_token: &str,
        known_identity_id: Option<&str>,
    ) -> Result<SignIn, ApiError> {
        let (provider, verified) = self.verifier.verify_sign_in(provider_name, id_token).await?;
        let role_arn = provider.role_for(&verified.claims);
        let mut budget = Budget::starting_now();
        let (identity_id, credentials) = match &self.exchange {
            Exchange::Enhanced => {
                let logins: Logins = [(verified.logins_key.clone(), id_token.to_string())].into();
                self.enhanced(&mut budget, &logins, role_arn, known_identity_id)
                    .await?
            }
            Exchange::Developer {
                provider_name: developer,
            } => {
                let user_id = developer_user_id(&verified.issuer, &verified.subject);
                let tags = provider.principal_tags(&verified.claims);
                let login = budget
                    .call(DEVELOPER_LOGIN, || {
                        self.pool.developer_login(developer, &user_id, &tags)
                    })
                    .await?;
                let logins: Logins = [(COGNITO_LOGINS_KEY.to_string(), login.token)].into();
                let credentials = budget
                    .call(GET_CREDENTIALS, || {
                        self.pool.get_credentials(&login.identity_id, &logins, role_arn)
                    })
                    .await?;
                (login.identity_id, credentials)
            }
        };
        tracing::debug!(provider = provider_name, %identity_id, "signed in");
        Ok(SignIn {
            identity_id,
            provider: provider_name.to_string(),
            subject: verified.subject,
            claims: provider.exposed_claims(&verified.claims),
            credentials,
        })
    }

    /// The broker's signed statement of `signed_in` for the apps behind the API
    /// ([`crate::identity`]) when it has an identity signer: issued as the signer's configured
    /// issuer, else as `request_issuer` (the `/auth` URL the sign-in request reached).
    pub async fn identity_assertion(
        &self,
        signed_in: &SignIn,
        request_issuer: Option<&str>,
    ) -> Result<Option<String>, ApiError> {
        let Some(signer) = self.identity_signer() else {
            return Ok(None);
        };
        let assertion =
            identity::sign_assertion(signer, request_issuer, signed_in, SystemTime::now()).await?;
        Ok(Some(assertion))
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

/// How the broker exchanges a verified token (from `identity_pool.mode`).
enum Exchange {
    /// `GetId` (skipped on renewal) + `GetCredentialsForIdentity` with the provider's token.
    Enhanced,
    /// `GetOpenIdTokenForDeveloperIdentity` + `GetCredentialsForIdentity` with Cognito's token.
    Developer {
        /// The pool's developer provider name.
        provider_name: String,
    },
}

impl Broker {
    /// The enhanced flow: the known identity first when there is one, else (or when Cognito
    /// refuses it) `GetId`; then `GetCredentialsForIdentity`.
    async fn enhanced(
        &self,
        budget: &mut Budget,
        logins: &Logins,
        role_arn: Option<&str>,
        known_identity_id: Option<&str>,
    ) -> Result<(String, AwsCredentials), PoolError> {
        if let Some(identity_id) = known_identity_id.filter(|id| is_identity_id(id)) {
            match budget
                .call(GET_CREDENTIALS, || {
                    self.pool.get_credentials(identity_id, logins, role_arn)
                })
                .await
            {
                Ok(credentials) => return Ok((identity_id.to_string(), credentials)),
                Err(PoolError::NotAuthorized(_) | PoolError::NotFound(_) | PoolError::Invalid(_)) => {
                    tracing::debug!("the identity id sent back was refused; asking GetId");
                }
                Err(other) => return Err(other),
            }
        }
        let identity_id = budget.call(GET_ID, || self.pool.get_id(logins)).await?;
        let credentials = budget
            .call(GET_CREDENTIALS, || {
                self.pool.get_credentials(&identity_id, logins, role_arn)
            })
            .await?;
        Ok((identity_id, credentials))
    }
}

/// The developer user identifier of a user: stable per (issuer, subject), bounded (Cognito
/// allows 1..=1024 characters) and without personal data: base64url of
/// SHA-256(`issuer` NUL `subject`). An issuer is a URL and holds no NUL, so no two pairs meet.
pub fn developer_user_id(issuer: &str, subject: &str) -> String {
    let mut context = aws_lc_rs::digest::Context::new(&aws_lc_rs::digest::SHA256);
    context.update(issuer.as_bytes());
    context.update(&[0]);
    context.update(subject.as_bytes());
    URL_SAFE_NO_PAD.encode(context.finish().as_ref())
}

/// The time left for one exchange, and the throttling backoff state within it.
struct Budget {
    deadline: Instant,
    throttled: u32,
    /// The `retry_after` of the last throttled answer, if any.
    last_throttle: Option<Duration>,
}

impl Budget {
    fn starting_now() -> Budget {
        Budget {
            deadline: Instant::now() + EXCHANGE_BUDGET,
            throttled: 0,
            last_throttle: None,
        }
    }

    /// Runs one pool call of `operation` within the budget, retrying it while it is throttled
    /// and a jittered pause still fits. Out of time, the last throttling (or a timeout) is the
    /// answer. Every attempt's duration and throttling is recorded.
    async fn call<T, F, Fut>(&mut self, operation: &'static str, mut call: F) -> Result<T, PoolError>
    where
        F: FnMut() -> Fut,
        Fut: Future<Output = Result<T, PoolError>>,
    {
        loop {
            let started = Instant::now();
            let outcome = tokio::time::timeout_at(self.deadline, call()).await;
            telemetry::record_pool_call(operation, started.elapsed(), outcome.as_ref().ok());
            let Ok(result) = outcome else {
                // Cut off while retrying throttled calls: the pool is busy, not broken.
                return Err(match self.last_throttle {
                    Some(retry_after) => PoolError::Throttled { retry_after },
                    None => PoolError::Unavailable(format!(
                        "no answer within the exchange budget of {} s",
                        EXCHANGE_BUDGET.as_secs()
                    )),
                });
            };
            match result {
                Err(PoolError::Throttled { retry_after }) => {
                    let pause = full_jitter(self.throttled);
                    if Instant::now() + pause >= self.deadline {
                        return Err(PoolError::Throttled { retry_after });
                    }
                    self.throttled += 1;
                    self.last_throttle = Some(retry_after);
                    tracing::debug!(
                        pause_ms = pause.as_millis() as u64,
                        "identity pool throttled; retrying"
                    );
                    tokio::time::sleep(pause).await;
                }
                other => return other,
            }
        }
    }
}

/// A uniformly random pause in `[0, min(cap, first × 2^n)]` ("full jitter").
fn full_jitter(retries_so_far: u32) -> Duration {
    let ceiling = THROTTLE_FIRST_BACKOFF
        .saturating_mul(1u32 << retries_so_far.min(16))
        .min(THROTTLE_MAX_BACKOFF);
    ceiling.mul_f64(random_fraction())
}

/// A uniformly random number in `[0, 1]`, for jitter, from the OS RNG (jitter needs no DRBG;
/// see `fresh_request_id` in `api.rs`). Without randomness (never on a working system) it is 1,
/// so a jittered pause is at its bound: longer, never unbounded.
pub fn random_fraction() -> f64 {
    let mut random = [0u8; 4];
    match getrandom::fill(&mut random) {
        Ok(()) => f64::from(u32::from_le_bytes(random)) / f64::from(u32::MAX),
        Err(_) => 1.0,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn developer_user_ids_are_stable_bounded_and_distinct() {
        let alice = developer_user_id("https://idp.example.com", "alice");
        assert_eq!(alice, developer_user_id("https://idp.example.com", "alice"));
        assert_eq!(alice.len(), 43);
        assert!(
            alice
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
        );
        assert_ne!(alice, developer_user_id("https://idp.example.com", "bob"));
        assert_ne!(alice, developer_user_id("https://other.example.com", "alice"));
        // The separator keeps (issuer, subject) pairs apart however they are split.
        assert_ne!(
            developer_user_id("https://a", "bc"),
            developer_user_id("https://ab", "c")
        );
    }

    #[test]
    fn full_jitter_stays_under_its_ceiling() {
        for retries in [0, 1, 2, 5, 40] {
            let ceiling = THROTTLE_FIRST_BACKOFF
                .saturating_mul(1 << retries.min(16))
                .min(THROTTLE_MAX_BACKOFF);
            for _ in 0..50 {
                assert!(full_jitter(retries) <= ceiling);
            }
        }
        let pauses: std::collections::HashSet<Duration> = (0..20).map(|_| full_jitter(3)).collect();
        assert!(pauses.len() > 1, "pauses are random");
    }
}
