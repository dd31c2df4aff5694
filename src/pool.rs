//! Identity pools: the small [`IdentityPool`] trait the broker needs, and [`CognitoPool`], its
//! implementation on `aws-sdk-cognitoidentity` (`GetId` + `GetCredentialsForIdentity`).
//!
//! OWNER: helper "pool". Contract (keep these signatures; add private helpers freely).

use std::collections::BTreeMap;
use std::future::Future;
use std::pin::Pin;
use std::time::{Duration, SystemTime};

use crate::config::IdentityPoolConfig;

/// The `Logins` map: provider name (issuer without scheme, or `accounts.google.com`) → ID token.
pub type Logins = BTreeMap<String, String>;

/// A boxed future, so the trait stays object-safe.
pub type PoolFuture<'a, T> = Pin<Box<dyn Future<Output = Result<T, PoolError>> + Send + 'a>>;

/// Temporary AWS credentials. `Debug` never prints the secret or the session token.
#[derive(Clone, PartialEq, Eq)]
pub struct AwsCredentials {
    /// The access key id (`ASIA...`).
    pub access_key_id: String,
    /// The secret access key.
    pub secret_access_key: String,
    /// The session token.
    pub session_token: String,
    /// When they expire.
    pub expiration: SystemTime,
}

impl std::fmt::Debug for AwsCredentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AwsCredentials")
            .field("access_key_id", &self.access_key_id)
            .field("secret_access_key", &"<redacted>")
            .field("session_token", &"<redacted>")
            .field("expiration", &self.expiration)
            .finish()
    }
}

/// What an identity pool answers, and how it fails.
pub trait IdentityPool: Send + Sync {
    /// `GetId`: the identity id for these logins.
    fn get_id<'a>(&'a self, logins: &'a Logins) -> PoolFuture<'a, String>;

    /// `GetCredentialsForIdentity`, with `CustomRoleArn` when `role_arn` is given.
    fn get_credentials<'a>(
        &'a self,
        identity_id: &'a str,
        logins: &'a Logins,
        role_arn: Option<&'a str>,
    ) -> PoolFuture<'a, AwsCredentials>;
}

/// Why the pool gave no credentials. Messages never contain tokens or secrets.
#[derive(Debug, thiserror::Error)]
pub enum PoolError {
    /// `NotAuthorizedException`: Cognito refused the login (e.g. provider not configured on the
    /// pool, token rejected, role not allowed).
    #[error("identity pool refused the sign-in: {0}")]
    NotAuthorized(String),
    /// `ResourceNotFoundException`: no such pool or identity.
    #[error("identity pool resource not found: {0}")]
    NotFound(String),
    /// Throttled (`TooManyRequestsException`, `LimitExceededException`) after bounded retries.
    #[error("identity pool is throttling requests")]
    Throttled {
        /// When to try again.
        retry_after: Duration,
    },
    /// `InvalidParameterException`, `InvalidIdentityPoolConfigurationException`: a
    /// configuration problem on our side or the pool's.
    #[error("identity pool rejected the request: {0}")]
    Invalid(String),
    /// `ExternalServiceException`: Cognito could not reach the provider.
    #[error("identity pool could not reach the identity provider: {0}")]
    External(String),
    /// Timeouts, connection failures, 5xx, malformed answers.
    #[error("identity pool unavailable: {0}")]
    Unavailable(String),
}

/// The Cognito Identity implementation.
pub struct CognitoPool {
    _todo: (),
}

impl CognitoPool {
    /// A pool client for `config` (region, endpoint override, timeouts, retries). It uses no AWS
    /// credentials: `GetId` and `GetCredentialsForIdentity` are unauthenticated calls.
    pub async fn new(_config: &IdentityPoolConfig) -> CognitoPool {
        todo!()
    }
}
