//! Identity pools: the small [`IdentityPool`] trait the broker needs, and [`CognitoPool`], its
//! implementation on `aws-sdk-cognitoidentity` (`GetId`, `GetCredentialsForIdentity` and, in
//! developer mode, `GetOpenIdTokenForDeveloperIdentity`).
//!
//! # AWS credentials
//!
//! `GetId` and `GetCredentialsForIdentity` are unauthenticated in the Cognito Identity API
//! (`optionalAuth`): they go out unsigned, from a client built with `no_credentials()`, and the
//! ID token in `Logins` is what authenticates the caller. `GetOpenIdTokenForDeveloperIdentity`
//! is the one call that needs AWS credentials (the broker vouches for the user): in developer
//! mode a second client signs it with the broker's own credentials, found by `aws-config`'s
//! default chain (environment — what Lambda provides —, shared profile files, web identity,
//! ECS and EC2 instance metadata). `aws-config` is built without SSO and `credential_process`,
//! which a server has no use for, to keep the Lambda binary small.
//!
//! # Endpoint and region
//!
//! `identity_pool.endpoint` wins; without it `aws-config`'s conventions apply: the standard
//! `AWS_ENDPOINT_URL_COGNITO_IDENTITY` and then `AWS_ENDPOINT_URL` (environment or shared
//! config file), and otherwise the regional AWS endpoint. The region is the pool's.
//!
//! # Time bound
//!
//! Every call is bounded. One attempt may last `attempt_timeout_seconds` (connecting at most
//! [`CONNECT_TIMEOUT`] of it); failed attempts that are worth retrying (throttling, 5xx, timeouts,
//! connection failures) are retried in the SDK's standard mode up to `max_attempts` attempts in
//! all, sleeping a jittered exponential backoff of at most [`MAX_BACKOFF`] between them. The whole
//! call is cut off by an operation timeout of
//!
//! ```text
//! call_bound = max_attempts × attempt_timeout_seconds + (max_attempts − 1) × MAX_BACKOFF
//! ```
//!
//! (see [`call_time_bound`]): 8 s with the defaults (3 attempts of 2 s). The broker adds its own
//! bound over a whole exchange, throttling retries included (`broker::EXCHANGE_BUDGET`). During
//! a long outage the SDK's retry quota (a token bucket shared by the process) runs dry and calls
//! fail sooner.
//!
//! # Errors
//!
//! Every Cognito error becomes a [`PoolError`]. Messages are Cognito's own short texts, with
//! anything that looks like a JWT redacted and cut to [`MAX_MESSAGE_CHARS`]; requests (which
//! carry the tokens) are never formatted, and failures are logged at debug level without
//! `Logins`.

use std::collections::BTreeMap;
use std::future::Future;
use std::pin::Pin;
use std::time::{Duration, SystemTime};

use aws_credential_types::provider::SharedCredentialsProvider;
use aws_sdk_cognitoidentity::Client;
use aws_sdk_cognitoidentity::config::retry::RetryConfig;
use aws_sdk_cognitoidentity::config::timeout::TimeoutConfig;
use aws_sdk_cognitoidentity::config::{BehaviorVersion, Region};
use aws_sdk_cognitoidentity::error::{ProvideErrorMetadata, SdkError};
use aws_sdk_cognitoidentity::operation::get_credentials_for_identity::GetCredentialsForIdentityOutput;
use aws_sdk_cognitoidentity::operation::get_open_id_token_for_developer_identity::GetOpenIdTokenForDeveloperIdentityOutput;
use aws_smithy_runtime_api::client::orchestrator::HttpResponse;
use aws_smithy_runtime_api::client::result::DispatchFailure;

use aws_sdk_cognitoidentity::config::endpoint::{DefaultResolver, Params, ResolveEndpoint};
use aws_types::SdkConfig;
use aws_types::service_config::ServiceConfigKey;
use url::Url;

use crate::config::{IdentityPoolConfig, PoolMode};
use crate::tags::PrincipalTags;

/// Longest wait for a TCP (and TLS) connection to the identity pool, within one attempt.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(2);
/// First retry backoff, before jitter; it doubles with every retry up to [`MAX_BACKOFF`].
pub const INITIAL_BACKOFF: Duration = Duration::from_millis(200);
/// Longest sleep between two attempts (also caps a server's `x-amz-retry-after`).
pub const MAX_BACKOFF: Duration = Duration::from_secs(1);
/// What [`PoolError::Throttled`] asks callers to wait. Cognito sends no `Retry-After`, and the
/// SDK has already backed off between its own attempts, so this is a short, fixed pause.
pub const THROTTLED_RETRY_AFTER: Duration = Duration::from_secs(2);
/// Longest error message kept from Cognito, in characters.
pub const MAX_MESSAGE_CHARS: usize = 200;
/// Longest identity id Cognito produces (`IdentityId` is 1..=55 characters in the API).
const MAX_IDENTITY_ID_CHARS: usize = 55;
/// The `Logins` key of a Cognito OpenID token, the second step of developer mode.
pub const COGNITO_LOGINS_KEY: &str = "cognito-identity.amazonaws.com";
/// How long the Cognito OpenID token of developer mode lives, in seconds: it is used at once,
/// by the very next call, so the shortest lifetime Cognito's API allows (1..=86400).
pub const DEVELOPER_TOKEN_SECONDS: i64 = 60;

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

/// What `GetOpenIdTokenForDeveloperIdentity` answers: the identity of a developer user and a
/// short-lived Cognito OpenID token for it. `Debug` never prints the token.
#[derive(Clone, PartialEq, Eq)]
pub struct DeveloperLogin {
    /// The identity id, `region:uuid`.
    pub identity_id: String,
    /// The Cognito OpenID token, for `Logins` under [`COGNITO_LOGINS_KEY`].
    pub token: String,
}

impl std::fmt::Debug for DeveloperLogin {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DeveloperLogin")
            .field("identity_id", &self.identity_id)
            .field("token", &"<redacted>")
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

    /// `GetOpenIdTokenForDeveloperIdentity`, signed with the broker's AWS credentials: the
    /// identity of `user_id` under the developer provider `provider_name` (created on first
    /// sight), with `tags` as principal tags. Never given a caller's identity id: with one,
    /// Cognito would link the login to that identity.
    fn developer_login<'a>(
        &'a self,
        provider_name: &'a str,
        user_id: &'a str,
        tags: &'a PrincipalTags,
    ) -> PoolFuture<'a, DeveloperLogin>;

    /// Where a readiness probe checks that the pool answers at all (an unsigned GET that is no
    /// API operation, so it costs no quota); `None` for pools that are not reached over HTTP.
    fn reachability_url(&self) -> Option<Url> {
        None
    }
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

/// The longest one Cognito call may take with `config`, retries and backoff included; a
/// sign-in makes two calls. See the [module documentation](self) for the derivation.
pub fn call_time_bound(config: &IdentityPoolConfig) -> Duration {
    let attempts = attempts(config);
    Duration::from_secs(config.attempt_timeout_seconds) * attempts + MAX_BACKOFF * (attempts - 1)
}

/// The Cognito Identity implementation. Create it once at start-up and share it (the SDK clients
/// inside hold the connection pools).
#[derive(Debug, Clone)]
pub struct CognitoPool {
    /// Unsigned: `GetId`, `GetCredentialsForIdentity`.
    client: Client,
    /// Signed with the broker's credentials: `GetOpenIdTokenForDeveloperIdentity` (developer
    /// mode only).
    signed: Option<Client>,
    pool_id: String,
    /// The endpoint the client calls: configured, from the environment, or regional.
    endpoint: Option<Url>,
}

impl CognitoPool {
    /// A pool client for `config` (region, endpoint, timeouts, retries). In developer mode it
    /// also signs `GetOpenIdTokenForDeveloperIdentity` with the default credential chain's
    /// credentials (resolved on first use).
    pub async fn new(config: &IdentityPoolConfig) -> CognitoPool {
        CognitoPool::build(config, None).await
    }

    /// Like [`CognitoPool::new`], signing with `credentials` instead of the default chain's (the
    /// dev stack's own key pair, tests).
    pub async fn with_credentials(
        config: &IdentityPoolConfig,
        credentials: aws_credential_types::Credentials,
    ) -> CognitoPool {
        CognitoPool::build(config, Some(SharedCredentialsProvider::new(credentials))).await
    }

    async fn build(
        config: &IdentityPoolConfig,
        credentials: Option<SharedCredentialsProvider>,
    ) -> CognitoPool {
        let signed = match config.mode {
            PoolMode::Enhanced => None,
            PoolMode::Developer => Some(client(config, Signing::Signed(credentials)).await),
        };
        let (client, endpoint) = client(config, Signing::Unsigned).await;
        CognitoPool {
            client,
            signed: signed.map(|(client, _)| client),
            pool_id: config.id.clone(),
            endpoint,
        }
    }
}

/// Which credentials a client signs with.
enum Signing {
    /// None: unauthenticated calls only.
    Unsigned,
    /// These, or the default chain's when `None`.
    Signed(Option<SharedCredentialsProvider>),
}

/// A Cognito Identity client for `config`: region, endpoint and credential conventions from
/// `aws-config`, then the pool's own endpoint, retry and timeout settings; with the URL it calls.
async fn client(config: &IdentityPoolConfig, signing: Signing) -> (Client, Option<Url>) {
    let mut loader =
        aws_config::defaults(BehaviorVersion::latest()).region(Region::new(config.region().to_string()));
    loader = match signing {
        Signing::Unsigned => loader.no_credentials(),
        Signing::Signed(Some(credentials)) => loader.credentials_provider(credentials),
        Signing::Signed(None) => loader,
    };
    let shared = loader.load().await;
    let mut service = aws_sdk_cognitoidentity::config::Builder::from(&shared)
        .retry_config(retry_config(config))
        .timeout_config(timeout_config(config));
    // The configured endpoint wins over the standard variables (tests/pool_env.rs checks both).
    if let Some(endpoint) = &config.endpoint {
        service = service.endpoint_url(endpoint.as_str().trim_end_matches('/'));
    }
    let endpoint = endpoint_of(config, &shared).await;
    (Client::from_conf(service.build()), endpoint)
}

/// The URL a client built from `shared` for `config` sends requests to, by the SDK's own
/// endpoint resolver (regional, FIPS and dual-stack rules included). The override's precedence
/// is the SDK's `From<&SdkConfig>`: the pool's `endpoint`, then `AWS_ENDPOINT_URL_COGNITO_IDENTITY`
/// (environment or profile), then `AWS_ENDPOINT_URL`; the built client keeps no getter for it.
async fn endpoint_of(config: &IdentityPoolConfig, shared: &SdkConfig) -> Option<Url> {
    let service_key = ServiceConfigKey::builder()
        .service_id("Cognito Identity")
        .env("AWS_ENDPOINT_URL")
        .profile("endpoint_url")
        .build()
        .ok()?;
    let endpoint = config
        .endpoint
        .as_ref()
        .map(|endpoint| endpoint.as_str().trim_end_matches('/').to_string())
        .or_else(|| shared.service_config()?.load_config(service_key))
        .or_else(|| shared.endpoint_url().map(str::to_string));
    let params = Params::builder()
        .region(config.region())
        .use_fips(shared.use_fips().unwrap_or(false))
        .use_dual_stack(shared.use_dual_stack().unwrap_or(false))
        .set_endpoint(endpoint)
        .build()
        .ok()?;
    let resolved = DefaultResolver::new().resolve_endpoint(&params).await.ok()?;
    Url::parse(resolved.url()).ok()
}

/// Attempts per call; a hand-built config with 0 still makes the one attempt a call needs.
fn attempts(config: &IdentityPoolConfig) -> u32 {
    config.max_attempts.max(1)
}

fn retry_config(config: &IdentityPoolConfig) -> RetryConfig {
    RetryConfig::standard()
        .with_max_attempts(attempts(config))
        .with_initial_backoff(INITIAL_BACKOFF)
        .with_max_backoff(MAX_BACKOFF)
}

fn timeout_config(config: &IdentityPoolConfig) -> TimeoutConfig {
    TimeoutConfig::builder()
        .connect_timeout(CONNECT_TIMEOUT)
        .operation_attempt_timeout(Duration::from_secs(config.attempt_timeout_seconds))
        .operation_timeout(call_time_bound(config))
        .build()
}

impl IdentityPool for CognitoPool {
    fn get_id<'a>(&'a self, logins: &'a Logins) -> PoolFuture<'a, String> {
        Box::pin(async move {
            let output = self
                .client
                .get_id()
                .identity_pool_id(&self.pool_id)
                .set_logins(Some(logins.clone().into_iter().collect()))
                .send()
                .await
                .map_err(|error| pool_error("GetId", error))?;
            identity_id(output.identity_id)
        })
    }

    fn get_credentials<'a>(
        &'a self,
        identity_id: &'a str,
        logins: &'a Logins,
        role_arn: Option<&'a str>,
    ) -> PoolFuture<'a, AwsCredentials> {
        Box::pin(async move {
            let output = self
                .client
                .get_credentials_for_identity()
                .identity_id(identity_id)
                .set_logins(Some(logins.clone().into_iter().collect()))
                .set_custom_role_arn(role_arn.map(str::to_string))
                .send()
                .await
                .map_err(|error| pool_error("GetCredentialsForIdentity", error))?;
            aws_credentials(output)
        })
    }

    fn developer_login<'a>(
        &'a self,
        provider_name: &'a str,
        user_id: &'a str,
        tags: &'a PrincipalTags,
    ) -> PoolFuture<'a, DeveloperLogin> {
        Box::pin(async move {
            let Some(signed) = &self.signed else {
                return Err(PoolError::Invalid(
                    "developer identities need identity_pool.mode = \"developer\"".to_string(),
                ));
            };
            let principal_tags = (!tags.is_empty()).then(|| tags.clone().into_iter().collect());
            let output = signed
                .get_open_id_token_for_developer_identity()
                .identity_pool_id(&self.pool_id)
                .logins(provider_name, user_id)
                .set_principal_tags(principal_tags)
                .token_duration(DEVELOPER_TOKEN_SECONDS)
                .send()
                .await
                .map_err(|error| pool_error("GetOpenIdTokenForDeveloperIdentity", error))?;
            developer_login_of(output)
        })
    }

    fn reachability_url(&self) -> Option<Url> {
        self.endpoint.clone()
    }
}

fn developer_login_of(output: GetOpenIdTokenForDeveloperIdentityOutput) -> Result<DeveloperLogin, PoolError> {
    Ok(DeveloperLogin {
        identity_id: identity_id(output.identity_id)?,
        token: required(output.token, "Token")?,
    })
}

fn malformed(what: &str) -> PoolError {
    PoolError::Unavailable(format!("malformed answer: {what}"))
}

/// The identity id of an answer, checked against the API's shape since it is sent back to
/// Cognito and may be shown to the user.
fn identity_id(id: Option<String>) -> Result<String, PoolError> {
    let id = id.ok_or_else(|| malformed("no IdentityId"))?;
    if is_identity_id(&id) {
        Ok(id)
    } else {
        Err(malformed("IdentityId is not REGION:UUID"))
    }
}

/// Whether `id` has the API's `IdentityId` shape, `[\w-]+:[0-9a-f-]+` of at most 55 characters
/// (also how the broker judges an identity id a client sends back).
pub fn is_identity_id(id: &str) -> bool {
    id.chars().count() <= MAX_IDENTITY_ID_CHARS
        && id.split_once(':').is_some_and(|(region, uuid)| {
            !region.is_empty()
                && region
                    .chars()
                    .all(|c| c.is_alphanumeric() || c == '_' || c == '-')
                && !uuid.is_empty()
                && uuid
                    .chars()
                    .all(|c| c.is_ascii_digit() || ('a'..='f').contains(&c) || c == '-')
        })
}

fn aws_credentials(output: GetCredentialsForIdentityOutput) -> Result<AwsCredentials, PoolError> {
    let credentials = output.credentials.ok_or_else(|| malformed("no Credentials"))?;
    let expiration = credentials
        .expiration
        .ok_or_else(|| malformed("no Credentials.Expiration"))?;
    Ok(AwsCredentials {
        access_key_id: required(credentials.access_key_id, "Credentials.AccessKeyId")?,
        secret_access_key: required(credentials.secret_key, "Credentials.SecretKey")?,
        session_token: required(credentials.session_token, "Credentials.SessionToken")?,
        expiration: SystemTime::try_from(expiration)
            .map_err(|_| malformed("Credentials.Expiration is out of range"))?,
    })
}

fn required(value: Option<String>, field: &str) -> Result<String, PoolError> {
    value
        .filter(|value| !value.is_empty())
        .ok_or_else(|| malformed(&format!("no {field}")))
}

/// Maps any SDK failure of `operation` to a [`PoolError`], logging what kind it was.
fn pool_error<E: ProvideErrorMetadata>(
    operation: &'static str,
    error: SdkError<E, HttpResponse>,
) -> PoolError {
    let mapped = match &error {
        SdkError::ServiceError(context) => service_error(
            context.err().code(),
            context.err().message(),
            context.raw().status().as_u16(),
        ),
        SdkError::TimeoutError(_) => PoolError::Unavailable("timed out".to_string()),
        SdkError::DispatchFailure(failure) => PoolError::Unavailable(dispatch_problem(failure)),
        SdkError::ResponseError(context) => malformed(&format!(
            "unreadable HTTP {} response",
            context.raw().status().as_u16()
        )),
        SdkError::ConstructionFailure(_) => PoolError::Unavailable("could not build the request".to_string()),
        _ => PoolError::Unavailable("unexpected SDK failure".to_string()),
    };
    tracing::debug!(operation, error = %mapped, "identity pool call failed");
    mapped
}

fn dispatch_problem(failure: &DispatchFailure) -> String {
    let kind = if failure.is_timeout() {
        "timed out"
    } else if failure.is_io() {
        "connection failed"
    } else {
        "request could not be sent"
    };
    format!("{kind} reaching the identity pool")
}

/// Maps a Cognito error answer (its `__type` code, message and HTTP status).
fn service_error(code: Option<&str>, message: Option<&str>, status: u16) -> PoolError {
    let text = safe_message(message);
    match code {
        Some("NotAuthorizedException") => PoolError::NotAuthorized(text),
        Some("ResourceNotFoundException") => PoolError::NotFound(text),
        Some("TooManyRequestsException" | "LimitExceededException") => PoolError::Throttled {
            retry_after: THROTTLED_RETRY_AFTER,
        },
        Some("InvalidParameterException" | "InvalidIdentityPoolConfigurationException") => {
            PoolError::Invalid(text)
        }
        Some("ExternalServiceException") => PoolError::External(text),
        // InternalErrorException, ResourceConflictException and codes this client doesn't know.
        Some(code) => PoolError::Unavailable(format!("{} (HTTP {status}): {text}", safe_message(Some(code)))),
        None if (200..300).contains(&status) => malformed(&format!("HTTP {status}")),
        None => PoolError::Unavailable(format!("HTTP {status} without an error code")),
    }
}

/// Cognito's message made safe to log and return: words that look like a JWT (its header
/// always starts `eyJ`, base64 of `{"`) are redacted, control characters dropped, and the text
/// cut to [`MAX_MESSAGE_CHARS`].
fn safe_message(message: Option<&str>) -> String {
    let printable: String = message
        .unwrap_or_default()
        .chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect();
    let words: Vec<&str> = printable
        .split_whitespace()
        .map(|word| if word.contains("eyJ") { "<redacted>" } else { word })
        .collect();
    if words.is_empty() {
        return "no message".to_string();
    }
    let text = words.join(" ");
    let mut kept: String = text.chars().take(MAX_MESSAGE_CHARS).collect();
    if kept.len() < text.len() {
        kept.push('…');
    }
    kept
}

#[cfg(test)]
mod tests {
    use super::*;
    use aws_sdk_cognitoidentity::types::Credentials;

    fn config(attempts: u32, attempt_timeout_seconds: u64) -> IdentityPoolConfig {
        IdentityPoolConfig {
            id: "us-east-1:00000000-0000-0000-0000-000000000000".to_string(),
            region: None,
            endpoint: None,
            attempt_timeout_seconds,
            max_attempts: attempts,
            mode: PoolMode::Enhanced,
            developer_provider_name: None,
        }
    }

    fn credentials() -> Credentials {
        Credentials::builder()
            .access_key_id("ASIAEXAMPLE")
            .secret_key("secret")
            .session_token("session")
            .expiration(aws_smithy_types::DateTime::from_secs(4_000_000_000))
            .build()
    }

    #[test]
    fn the_call_bound_covers_every_attempt_and_backoff() {
        assert_eq!(call_time_bound(&config(3, 3)), Duration::from_secs(11));
        assert_eq!(call_time_bound(&config(1, 5)), Duration::from_secs(5));
        assert_eq!(call_time_bound(&config(10, 30)), Duration::from_secs(309));
    }

    #[test]
    fn every_cognito_error_code_has_its_kind() {
        let map = |code| service_error(Some(code), Some("text"), 400);
        assert!(matches!(map("NotAuthorizedException"), PoolError::NotAuthorized(m) if m == "text"));
        assert!(matches!(map("ResourceNotFoundException"), PoolError::NotFound(_)));
        for throttled in ["TooManyRequestsException", "LimitExceededException"] {
            assert!(matches!(
                map(throttled),
                PoolError::Throttled { retry_after } if retry_after == THROTTLED_RETRY_AFTER
            ));
        }
        for invalid in [
            "InvalidParameterException",
            "InvalidIdentityPoolConfigurationException",
        ] {
            assert!(matches!(map(invalid), PoolError::Invalid(_)));
        }
        assert!(matches!(map("ExternalServiceException"), PoolError::External(_)));
        for unavailable in [
            "InternalErrorException",
            "ResourceConflictException",
            "SomethingNew",
        ] {
            assert!(matches!(map(unavailable), PoolError::Unavailable(ref m) if m.contains(unavailable)));
        }
    }

    #[test]
    fn answers_without_a_code_are_unavailable() {
        let ok = service_error(None, None, 200);
        assert!(matches!(ok, PoolError::Unavailable(ref m) if m.starts_with("malformed answer")));
        let bad_gateway = service_error(None, None, 502);
        assert!(matches!(bad_gateway, PoolError::Unavailable(ref m) if m.contains("502")));
    }

    #[test]
    fn messages_never_carry_a_token_and_are_bounded() {
        let token = "eyJhbGciOiJSUzI1NiJ9.eyJzdWIiOiIxIn0.c2lnbmF0dXJl";
        let message = safe_message(Some(&format!("Invalid login token '{token}'\n now")));
        assert_eq!(message, "Invalid login token <redacted> now");
        let long = safe_message(Some(&"x".repeat(1000)));
        assert_eq!(long.chars().count(), MAX_MESSAGE_CHARS + 1);
        assert!(long.ends_with('…'));
        assert_eq!(safe_message(None), "no message");
        assert_eq!(safe_message(Some(" \u{7}")), "no message");
    }

    #[test]
    fn identity_ids_must_be_region_colon_uuid() {
        let parse = |id: &str| identity_id(Some(id.to_string()));
        let good = "us-east-1:0123abcd-0000-4000-8000-00000000abcd";
        assert_eq!(parse(good).unwrap(), good);
        for bad in [
            "",
            "no-colon",
            "us-east-1:",
            ":abc",
            "us-east-1:XYZ",
            &format!("{good}0123456789"),
        ] {
            assert!(matches!(parse(bad), Err(PoolError::Unavailable(_))), "{bad}");
        }
        assert!(matches!(
            identity_id(None),
            Err(PoolError::Unavailable(m)) if m == "malformed answer: no IdentityId"
        ));
    }

    #[test]
    fn complete_credentials_convert() {
        let output = GetCredentialsForIdentityOutput::builder()
            .credentials(credentials())
            .build();
        let converted = aws_credentials(output).unwrap();
        assert_eq!(converted.access_key_id, "ASIAEXAMPLE");
        assert_eq!(converted.secret_access_key, "secret");
        assert_eq!(converted.session_token, "session");
        assert_eq!(
            converted.expiration,
            SystemTime::UNIX_EPOCH + Duration::from_secs(4_000_000_000)
        );
        let debug = format!("{converted:?}");
        assert!(
            !debug.contains("secret\"") && !debug.contains("session\""),
            "{debug}"
        );
    }

    #[test]
    fn missing_credential_fields_are_malformed_answers() {
        let mut no_secret = credentials();
        no_secret.secret_key = None;
        let mut empty_token = credentials();
        empty_token.session_token = Some(String::new());
        let mut no_expiration = credentials();
        no_expiration.expiration = None;
        let cases = [
            (None, "no Credentials"),
            (Some(no_secret), "no Credentials.SecretKey"),
            (Some(empty_token), "no Credentials.SessionToken"),
            (Some(no_expiration), "no Credentials.Expiration"),
        ];
        for (credentials, missing) in cases {
            let output = GetCredentialsForIdentityOutput::builder()
                .set_credentials(credentials)
                .build();
            assert!(
                matches!(aws_credentials(output), Err(PoolError::Unavailable(ref m)) if m == &format!("malformed answer: {missing}")),
                "{missing}"
            );
        }
    }
}
