//! A local identity pool that speaks the Cognito Identity JSON 1.1 protocol (`GetId`,
//! `GetCredentialsForIdentity`, `GetOpenIdTokenForDeveloperIdentity`), so the broker reaches it
//! through the real AWS SDK by endpoint override. Like Cognito it verifies the Logins token
//! again, keeps a stable identity id per (issuer, sub), and issues random temporary credentials
//! that the local gateway can look up.
//!
//! # Modes
//!
//! Like a real pool it is set up either with public login providers (the trusted issuers:
//! enhanced mode) or with only a developer provider name ([`DeveloperProvider`]: developer
//! mode). In developer mode provider tokens are refused outright — as on a real pool with no
//! login providers — so nothing but the broker, holding the developer credentials, can get an
//! identity. `GetOpenIdTokenForDeveloperIdentity` must be SigV4-signed (service
//! `cognito-identity`) with those credentials; the signature is checked by the gateway's
//! verifier ([`crate::local::gateway::sigv4::verify`]). Its Cognito token is an opaque random
//! string here (Cognito's is a JWT that only Cognito reads), accepted under the
//! `cognito-identity.amazonaws.com` login until it expires. Given an `IdentityId`, the call links
//! the developer login to that identity, as Cognito does.
//!
//! # Load emulation
//!
//! [`PoolLoad`] adds a fixed delay to every answer (a network round trip) and, optionally,
//! Cognito's per-account request-rate quotas, answering over-quota calls with Cognito's
//! `TooManyRequestsException`.
//!
//! Differences from Cognito, on purpose:
//! - exactly one login per request (Cognito links several providers to one identity; the local
//!   pool refuses a request with several logins with `InvalidParameterException`);
//! - no unauthenticated identities, no IAM: `CustomRoleArn` is checked for shape only;
//! - everything lives in memory and is bounded: at most [`MAX_IDENTITIES`] identities and
//!   [`MAX_LIVE_CREDENTIALS`] unexpired credentials.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::sync::{Arc, LazyLock, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use axum::Router;
use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{DefaultBodyLimit, OriginalUri, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use base64::Engine as _;
use base64::engine::general_purpose::{STANDARD as BASE64, URL_SAFE_NO_PAD as BASE64_URL};
use serde::Deserialize;
use serde_json::json;

use crate::issuer::Issuer;
use crate::jwks::{JwksCache, KeyError};
use crate::local::gateway::sigv4::{self, Expectations, KeyLookup, SigV4Error, SignedRequest, SigningSecret};
use crate::pool::{AwsCredentials, Logins};
use crate::provider::Provider;
use crate::token::{self, Claims, UnverifiedToken};

/// Largest request body the pool reads.
pub const MAX_BODY_BYTES: usize = 64 * 1024;
/// Largest Logins token the pool parses.
pub const MAX_TOKEN_BYTES: usize = 16 * 1024;
/// Most identities the pool remembers; beyond, `GetId` for a new user fails.
pub const MAX_IDENTITIES: usize = 100_000;
/// Most unexpired credentials the pool holds; beyond, `GetCredentialsForIdentity` is throttled.
pub const MAX_LIVE_CREDENTIALS: usize = 100_000;
/// How long expired credentials are still remembered, so the gateway can answer "expired" (as
/// API Gateway does) rather than "invalid" for a client that kept using them.
pub const EXPIRED_KEPT_FOR: Duration = Duration::from_secs(3600);
/// Clock skew tolerated on the token's `exp`, `nbf` and `iat`.
const TOKEN_LEEWAY: Duration = Duration::from_secs(60);
/// Longest `CustomRoleArn` accepted (IAM's own limit).
const MAX_ROLE_ARN_BYTES: usize = 2048;
/// Longest attacker-supplied value echoed back in an error message.
const MAX_ECHO_CHARS: usize = 64;

/// The media type of the AWS JSON 1.1 protocol.
const AMZ_JSON: &str = "application/x-amz-json-1.1";
/// The `X-Amz-Target` prefix of Cognito Identity operations.
const TARGET_PREFIX: &str = "AWSCognitoIdentityService.";

/// The `Logins` key of a Cognito OpenID token.
const COGNITO_LOGIN: &str = "cognito-identity.amazonaws.com";
/// Most unexpired developer tokens the pool remembers.
const MAX_DEVELOPER_TOKENS: usize = 100_000;
/// The service name `GetOpenIdTokenForDeveloperIdentity` is signed for.
const SIGNING_SERVICE: &str = "cognito-identity";
/// Cognito's bounds on `PrincipalTags` (the Cognito Identity API model: at most 50 entries,
/// names 1..=128 and values 1..=256 characters) and `TokenDuration` (1..=86400 seconds).
const MAX_PRINCIPAL_TAGS: usize = 50;
const MAX_TAG_KEY_CHARS: usize = 128;
const MAX_TAG_VALUE_CHARS: usize = 256;
const MAX_TOKEN_DURATION_SECS: u64 = 86_400;
/// Cognito's default token duration when `TokenDuration` is absent (15 minutes).
const DEFAULT_TOKEN_DURATION_SECS: u64 = 900;
/// Cognito's message for a throttled call.
const RATE_EXCEEDED: &str = "Rate exceeded";

/// What Cognito answers when a login is for an authenticated identity and does not match it.
const LOGINS_DONT_MATCH: &str =
    "Logins don't match. Please include at least one valid login for this identity or identity pool.";

/// The shape of an IAM role ARN, in any partition.
static ROLE_ARN: LazyLock<regex::Regex> = LazyLock::new(|| {
    regex::Regex::new(r"^arn:aws[a-z-]*:iam::[0-9]{12}:role/[A-Za-z0-9_+=,.@/-]+$")
        .expect("the role ARN pattern is a valid regex")
});

/// Who a set of issued credentials belongs to: the identity context the gateway passes on.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Identity {
    /// The identity id, `region:uuid`.
    pub identity_id: String,
    /// The Logins key the identity signed in with (issuer without scheme).
    pub provider: String,
    /// The token's `sub`.
    pub subject: String,
    /// The verified claims of the token the credentials were issued for (none in developer
    /// mode: the pool never sees the provider's token).
    pub claims: Claims,
    /// The principal tags of the session (developer mode).
    pub principal_tags: BTreeMap<String, String>,
}

/// Credentials the pool issued, with the identity they belong to.
#[derive(Debug, Clone)]
pub struct IssuedCredentials {
    /// The credentials.
    pub credentials: AwsCredentials,
    /// Their owner.
    pub identity: Arc<Identity>,
}

/// An OpenID issuer the pool trusts (like an IAM OIDC provider on a real pool, whose client id
/// list holds every audience of the providers that share the issuer).
#[derive(Debug, Clone)]
pub struct TrustedIssuer {
    /// The issuer exactly as its tokens write `iss`.
    pub issuer: Issuer,
    /// Accepted `aud` values.
    pub audiences: Vec<String>,
    /// Where the issuer's keys come from.
    pub keys: TrustedKeys,
}

/// Where a trusted issuer's keys come from.
#[derive(Debug, Clone)]
pub enum TrustedKeys {
    /// A key set at a known URL.
    Fixed(Arc<JwksCache>),
    /// The key set a configured provider locates for the issuer (through discovery for `oidc`),
    /// looked up when a token arrives: a provider that is down when the pool starts is trusted
    /// as soon as it is up, with no restart.
    Provider(Arc<Provider>),
}

impl TrustedKeys {
    async fn cache(&self, issuer: &Issuer) -> Result<Arc<JwksCache>, KeyError> {
        match self {
            TrustedKeys::Fixed(cache) => Ok(Arc::clone(cache)),
            TrustedKeys::Provider(provider) => provider
                .keys_of(issuer)
                .await
                .map_err(|error| KeyError::Unavailable(error.to_string())),
        }
    }
}

impl TrustedIssuer {
    /// The key of this issuer in a `Logins` map: the issuer without its scheme and trailing
    /// `/`, e.g. `127.0.0.1:8787/dev-idp` (see [`Issuer::logins_key`]).
    pub fn logins_key(&self) -> String {
        self.issuer.logins_key()
    }
}

/// Developer mode: the pool's developer provider name and the only AWS credentials allowed to
/// call `GetOpenIdTokenForDeveloperIdentity` (the broker's; like an IAM policy naming the pool).
#[derive(Clone)]
pub struct DeveloperProvider {
    /// The developer provider name, the `Logins` key of developer users.
    pub name: String,
    /// The broker's access key id.
    pub access_key_id: String,
    /// The broker's secret access key.
    pub secret_access_key: String,
}

impl std::fmt::Debug for DeveloperProvider {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DeveloperProvider")
            .field("name", &self.name)
            .field("access_key_id", &self.access_key_id)
            .finish_non_exhaustive()
    }
}

/// Cognito's default request-rate quotas per account and Region, in requests per second, from
/// "Quotas in Amazon Cognito", table "Amazon Cognito identity pools (federated identities) API
/// operation request rate quotas" (docs.aws.amazon.com/cognito/latest/developerguide/quotas.html;
/// read in its published source, awsdocs/amazon-cognito-developer-guide `doc_source/limits.md`
/// at commit becc0bb9): `GetId` 25, `GetCredentialsForIdentity` 200,
/// `GetOpenIdTokenForDeveloperIdentity` 200 (and `GetOpenIdToken` 200, which the broker does not
/// call). All are adjustable on request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Quotas {
    /// `GetId` per second.
    pub get_id: u32,
    /// `GetCredentialsForIdentity` per second.
    pub get_credentials: u32,
    /// `GetOpenIdTokenForDeveloperIdentity` per second.
    pub developer_token: u32,
}

impl Default for Quotas {
    fn default() -> Self {
        Quotas {
            get_id: 25,
            get_credentials: 200,
            developer_token: 200,
        }
    }
}

/// How the pool emulates a production-shaped Cognito: a round trip and, optionally, quotas.
#[derive(Debug, Clone, Copy, Default)]
pub struct PoolLoad {
    /// Added to every answer.
    pub latency: Duration,
    /// Request-rate quotas; `None` answers every call.
    pub quotas: Option<Quotas>,
}

/// A token bucket holding one second of a quota, refilled continuously: a burst of up to the
/// quota passes at once, then calls pass at the quota's rate.
#[derive(Debug)]
struct RateLimit {
    per_second: f64,
    tokens: f64,
    refilled_at: std::time::Instant,
}

impl RateLimit {
    fn new(per_second: u32) -> RateLimit {
        RateLimit {
            per_second: f64::from(per_second),
            tokens: f64::from(per_second),
            refilled_at: std::time::Instant::now(),
        }
    }

    /// Takes one token if there is one.
    fn admit(&mut self) -> bool {
        let now = std::time::Instant::now();
        let elapsed = now.duration_since(self.refilled_at).as_secs_f64();
        self.tokens = (self.tokens + elapsed * self.per_second).min(self.per_second);
        self.refilled_at = now;
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            true
        } else {
            false
        }
    }
}

/// A Cognito token the pool issued: whose, and until when.
#[derive(Debug, Clone)]
struct DeveloperToken {
    identity_id: String,
    owner: Owner,
    principal_tags: BTreeMap<String, String>,
    expires: SystemTime,
}

/// The local pool.
pub struct LocalPool {
    pool_id: String,
    issuers: Vec<TrustedIssuer>,
    developer: Option<DeveloperProvider>,
    load: PoolLoad,
    limits: Mutex<HashMap<&'static str, RateLimit>>,
    /// Calls received per operation, throttled ones included (what a bill or a quota counts).
    calls: Mutex<HashMap<&'static str, u64>>,
    credential_lifetime: Duration,
    /// [`MAX_LIVE_CREDENTIALS`]; a field so tests can reach the cap without 100,000 sign-ins.
    max_live_credentials: usize,
    state: Mutex<PoolState>,
}

/// The user behind an identity: Logins key and `sub`.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
struct Owner {
    provider: String,
    subject: String,
}

/// Everything the pool remembers. One lock: every operation touches it briefly, never across
/// an `.await`.
#[derive(Default)]
struct PoolState {
    identity_of: HashMap<Owner, String>,
    owner_of: HashMap<String, Owner>,
    developer_tokens: HashMap<String, DeveloperToken>,
    credentials: HashMap<String, IssuedCredentials>,
    /// Access key ids in issue order, which is expiry order since the lifetime is fixed: purging
    /// pops from the front until it meets a live entry.
    expiry_queue: VecDeque<(SystemTime, String)>,
}

impl LocalPool {
    /// A pool with this id (`region:uuid`) trusting `issuers`, issuing credentials that live
    /// `credential_lifetime`. Identity ids start with the pool id's region (the text before
    /// `:`, or the whole id when it has none).
    pub fn new(
        pool_id: String,
        issuers: Vec<TrustedIssuer>,
        credential_lifetime: Duration,
    ) -> Arc<LocalPool> {
        LocalPool::with_developer(pool_id, issuers, None, credential_lifetime, PoolLoad::default())
    }

    /// A pool in either mode: with a [`DeveloperProvider`] it trusts no public provider (the
    /// `issuers` are ignored) and serves developer identities; `load` sets latency and quotas.
    pub fn with_developer(
        pool_id: String,
        issuers: Vec<TrustedIssuer>,
        developer: Option<DeveloperProvider>,
        credential_lifetime: Duration,
        load: PoolLoad,
    ) -> Arc<LocalPool> {
        let issuers = if developer.is_some() { Vec::new() } else { issuers };
        let limits = load
            .quotas
            .map(|quotas| {
                HashMap::from([
                    ("GetId", RateLimit::new(quotas.get_id)),
                    (
                        "GetCredentialsForIdentity",
                        RateLimit::new(quotas.get_credentials),
                    ),
                    (
                        "GetOpenIdTokenForDeveloperIdentity",
                        RateLimit::new(quotas.developer_token),
                    ),
                ])
            })
            .unwrap_or_default();
        Arc::new(LocalPool {
            pool_id,
            issuers,
            developer,
            load,
            limits: Mutex::new(limits),
            calls: Mutex::default(),
            credential_lifetime,
            max_live_credentials: MAX_LIVE_CREDENTIALS,
            state: Mutex::new(PoolState::default()),
        })
    }

    /// The pool id.
    pub fn pool_id(&self) -> &str {
        &self.pool_id
    }

    /// The protocol endpoint: `POST` with `X-Amz-Target: AWSCognitoIdentityService.*`, at the
    /// router's root.
    ///
    /// Mount it with `Router::nest_service("/cognito-identity", pool.router())`: the SDK posts
    /// to the endpoint path plus `/` (`/cognito-identity/`), and only `nest_service` routes both
    /// `/cognito-identity` and `/cognito-identity/` to the inner root (`nest` maps the inner
    /// `/` to the bare prefix only).
    pub fn router(self: Arc<Self>) -> Router {
        Router::new()
            .route("/", post(handle))
            .layer(DefaultBodyLimit::max(MAX_BODY_BYTES))
            .with_state(self)
    }

    /// The credentials with this access key id, expired ones included for
    /// [`EXPIRED_KEPT_FOR`] after their expiry: callers check `credentials.expiration`.
    pub fn lookup(&self, access_key_id: &str) -> Option<IssuedCredentials> {
        self.lock().credentials.get(access_key_id).cloned()
    }

    /// How many identities the pool knows.
    pub fn identity_count(&self) -> usize {
        self.lock().owner_of.len()
    }

    /// The state, even after a panic elsewhere: every update below leaves it consistent
    /// (inserts only after all checks), so a poisoned lock holds usable data.
    fn lock(&self) -> MutexGuard<'_, PoolState> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// The region prefix of identity ids.
    fn region(&self) -> &str {
        self.pool_id
            .split_once(':')
            .map_or(self.pool_id.as_str(), |(region, _)| region)
    }

    /// `GetId`.
    async fn get_id(&self, request: GetIdRequest) -> Result<serde_json::Value, ProtocolError> {
        if request.identity_pool_id != self.pool_id {
            return Err(ProtocolError::ResourceNotFound(format!(
                "IdentityPool '{}' not found.",
                excerpt(&request.identity_pool_id)
            )));
        }
        let login = self.verify_logins(request.logins.as_ref()).await?;
        let identity_id = self.identity_for(&login.owner)?;
        Ok(json!({ "IdentityId": identity_id }))
    }

    /// `GetCredentialsForIdentity`.
    async fn get_credentials(
        &self,
        request: GetCredentialsRequest,
    ) -> Result<serde_json::Value, ProtocolError> {
        if let Some(role_arn) = &request.custom_role_arn {
            check_role_arn(role_arn)?;
        }
        let owner = self.owner_of(&request.identity_id)?;
        let login = match single_login(request.logins.as_ref())? {
            (COGNITO_LOGIN, token) => self.developer_token(token, &request.identity_id)?,
            _ => self.verify_logins(request.logins.as_ref()).await?,
        };
        if login.owner != owner {
            return Err(ProtocolError::NotAuthorized(LOGINS_DONT_MATCH.to_owned()));
        }
        let identity = Arc::new(Identity {
            identity_id: request.identity_id,
            provider: login.owner.provider,
            subject: login.owner.subject,
            claims: login.claims,
            principal_tags: login.principal_tags,
        });
        let credentials = self.issue(Arc::clone(&identity))?;
        tracing::debug!(
            identity_id = %identity.identity_id,
            access_key_id = %credentials.access_key_id,
            "local pool issued credentials"
        );
        Ok(json!({
            "IdentityId": identity.identity_id,
            "Credentials": {
                "AccessKeyId": credentials.access_key_id,
                "SecretKey": credentials.secret_access_key,
                "SessionToken": credentials.session_token,
                "Expiration": epoch_seconds(credentials.expiration),
            },
        }))
    }

    /// The owner of a known identity.
    fn owner_of(&self, identity_id: &str) -> Result<Owner, ProtocolError> {
        self.lock().owner_of.get(identity_id).cloned().ok_or_else(|| {
            ProtocolError::ResourceNotFound(format!("Identity '{}' not found.", excerpt(identity_id)))
        })
    }

    /// The identity id of `owner`, created on first sight.
    fn identity_for(&self, owner: &Owner) -> Result<String, ProtocolError> {
        let mut state = self.lock();
        if let Some(identity_id) = state.identity_of.get(owner) {
            return Ok(identity_id.clone());
        }
        if state.owner_of.len() >= MAX_IDENTITIES {
            return Err(ProtocolError::LimitExceeded(format!(
                "The local identity pool holds at most {MAX_IDENTITIES} identities."
            )));
        }
        let identity_id = format!("{}:{}", self.region(), random_uuid_v4());
        state.identity_of.insert(owner.clone(), identity_id.clone());
        state.owner_of.insert(identity_id.clone(), owner.clone());
        Ok(identity_id)
    }

    /// Fresh credentials for `identity`, remembered until they expire.
    fn issue(&self, identity: Arc<Identity>) -> Result<AwsCredentials, ProtocolError> {
        let now = SystemTime::now();
        let credentials = random_credentials(whole_seconds(now + self.credential_lifetime));
        let mut state = self.lock();
        state.purge_expired_before(now.checked_sub(EXPIRED_KEPT_FOR).unwrap_or(UNIX_EPOCH));
        if state.credentials.len() >= self.max_live_credentials {
            // At the cap, expired credentials give way before anyone is throttled.
            state.purge_expired_before(now);
        }
        if state.credentials.len() >= self.max_live_credentials {
            return Err(ProtocolError::TooManyRequests(format!(
                "The local identity pool holds at most {MAX_LIVE_CREDENTIALS} live credentials; \
                 try again when some expire."
            )));
        }
        state
            .expiry_queue
            .push_back((credentials.expiration, credentials.access_key_id.clone()));
        state.credentials.insert(
            credentials.access_key_id.clone(),
            IssuedCredentials {
                credentials: credentials.clone(),
                identity,
            },
        );
        Ok(credentials)
    }

    /// Checks the request's one login like Cognito does: a trusted provider, then the token's
    /// issuer, signature, audience and times.
    async fn verify_logins(&self, logins: Option<&Logins>) -> Result<VerifiedLogin, ProtocolError> {
        let (provider, raw_token) = single_login(logins)?;
        let issuer = self
            .issuers
            .iter()
            .find(|issuer| issuer.logins_key() == provider)
            .ok_or_else(|| {
                ProtocolError::NotAuthorized(
                    "Invalid login token. Token is not from a supported provider of this \
                     identity pool."
                        .to_owned(),
                )
            })?;
        let claims = verify_token(issuer, raw_token).await?;
        let subject = token::string_claim(&claims, "sub")
            .map_err(invalid_token)?
            .to_owned();
        Ok(VerifiedLogin {
            owner: Owner {
                provider: provider.to_owned(),
                subject,
            },
            claims,
            principal_tags: BTreeMap::new(),
        })
    }

    /// `GetOpenIdTokenForDeveloperIdentity`, after its signature checked out.
    fn developer_identity(
        &self,
        request: DeveloperIdentityRequest,
    ) -> Result<serde_json::Value, ProtocolError> {
        let Some(developer) = &self.developer else {
            return Err(ProtocolError::NotAuthorized(
                "This identity pool has no developer provider.".to_owned(),
            ));
        };
        if request.identity_pool_id != self.pool_id {
            return Err(ProtocolError::ResourceNotFound(format!(
                "IdentityPool '{}' not found.",
                excerpt(&request.identity_pool_id)
            )));
        }
        let (provider, user_id) = single_login(Some(&request.logins))?;
        if provider != developer.name {
            return Err(ProtocolError::NotAuthorized(format!(
                "Invalid login provider '{}': not the developer provider of this identity pool.",
                excerpt(provider)
            )));
        }
        if user_id.is_empty() || user_id.chars().count() > 1024 {
            return Err(ProtocolError::InvalidParameter(
                "The developer user identifier must be 1 to 1024 characters.".to_owned(),
            ));
        }
        let principal_tags = request.principal_tags.unwrap_or_default();
        check_principal_tags(&principal_tags)?;
        let duration = request.token_duration.unwrap_or(DEFAULT_TOKEN_DURATION_SECS);
        if !(1..=MAX_TOKEN_DURATION_SECS).contains(&duration) {
            return Err(ProtocolError::InvalidParameter(format!(
                "TokenDuration must be 1 to {MAX_TOKEN_DURATION_SECS} seconds."
            )));
        }
        let owner = Owner {
            provider: provider.to_owned(),
            subject: user_id.to_owned(),
        };
        let identity_id = match request.identity_id {
            Some(identity_id) => self.link(&owner, identity_id)?,
            None => self.identity_for(&owner)?,
        };
        let token = BASE64_URL.encode(random_bytes::<32>());
        let mut state = self.lock();
        let now = SystemTime::now();
        state.developer_tokens.retain(|_, issued| issued.expires > now);
        if state.developer_tokens.len() >= MAX_DEVELOPER_TOKENS {
            return Err(ProtocolError::TooManyRequests(format!(
                "The local identity pool holds at most {MAX_DEVELOPER_TOKENS} live developer tokens."
            )));
        }
        state.developer_tokens.insert(
            token.clone(),
            DeveloperToken {
                identity_id: identity_id.clone(),
                owner,
                principal_tags,
                expires: now + Duration::from_secs(duration),
            },
        );
        Ok(json!({ "IdentityId": identity_id, "Token": token }))
    }

    /// Links the developer login `owner` to `identity_id`, as Cognito does when the call names
    /// an identity: a login already on another identity is a conflict.
    fn link(&self, owner: &Owner, identity_id: String) -> Result<String, ProtocolError> {
        let mut state = self.lock();
        if !state.owner_of.contains_key(&identity_id) {
            return Err(ProtocolError::ResourceNotFound(format!(
                "Identity '{}' not found.",
                excerpt(&identity_id)
            )));
        }
        match state.identity_of.get(owner) {
            Some(existing) if *existing == identity_id => Ok(identity_id),
            Some(_) => Err(ProtocolError::ResourceConflict(
                "The developer user identifier is already linked to another identity.".to_owned(),
            )),
            None => {
                state.identity_of.insert(owner.clone(), identity_id.clone());
                Ok(identity_id)
            }
        }
    }

    /// The login behind a Cognito token this pool issued for `identity_id`.
    fn developer_token(&self, token: &str, identity_id: &str) -> Result<VerifiedLogin, ProtocolError> {
        let state = self.lock();
        let issued = state
            .developer_tokens
            .get(token)
            .filter(|issued| issued.expires > SystemTime::now())
            .ok_or_else(|| {
                ProtocolError::NotAuthorized("Invalid login token. Token expired or unknown.".to_owned())
            })?;
        if issued.identity_id != identity_id {
            return Err(ProtocolError::NotAuthorized(LOGINS_DONT_MATCH.to_owned()));
        }
        // The owner is the identity's first owner: a linked login gets the identity's credentials.
        let owner = state
            .owner_of
            .get(identity_id)
            .cloned()
            .unwrap_or_else(|| issued.owner.clone());
        Ok(VerifiedLogin {
            owner,
            claims: Claims::new(),
            principal_tags: issued.principal_tags.clone(),
        })
    }

    /// How many calls of `operation` (e.g. `"GetId"`) the pool has received, throttled ones
    /// included.
    pub fn calls(&self, operation: &str) -> u64 {
        let calls = self.calls.lock().unwrap_or_else(PoisonError::into_inner);
        calls.get(operation).copied().unwrap_or(0)
    }

    /// Admits one call of `operation` under the quotas, then waits the emulated round trip.
    async fn admit(&self, operation: &'static str) -> Result<(), ProtocolError> {
        *self
            .calls
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .entry(operation)
            .or_default() += 1;
        let admitted = self
            .limits
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .get_mut(operation)
            .is_none_or(RateLimit::admit);
        if !self.load.latency.is_zero() {
            tokio::time::sleep(self.load.latency).await;
        }
        if admitted {
            Ok(())
        } else {
            Err(ProtocolError::TooManyRequests(RATE_EXCEEDED.to_owned()))
        }
    }

    /// Checks the SigV4 signature of a developer call against the developer credentials.
    fn check_signature(&self, request: &SignedRequest<'_>) -> Result<(), ProtocolError> {
        let Some(developer) = &self.developer else {
            return Ok(());
        };
        let expect = Expectations {
            now: SystemTime::now(),
            region: self.region(),
            service: SIGNING_SERVICE,
            normalize_uri_path: true,
            presigned_token_signed: true,
            presigned_max_age: None,
        };
        sigv4::verify(request, &expect, |access_key_id| {
            if access_key_id == developer.access_key_id {
                KeyLookup::Live(SigningSecret {
                    secret_access_key: developer.secret_access_key.clone(),
                    session_token: None,
                    owner: (),
                })
            } else {
                KeyLookup::Unknown
            }
        })
        .map(|_| ())
        .map_err(ProtocolError::Signature)
    }
}

/// Cognito's bounds on principal tags.
fn check_principal_tags(tags: &BTreeMap<String, String>) -> Result<(), ProtocolError> {
    let in_bounds = tags.len() <= MAX_PRINCIPAL_TAGS
        && tags.iter().all(|(key, value)| {
            (1..=MAX_TAG_KEY_CHARS).contains(&key.chars().count())
                && (1..=MAX_TAG_VALUE_CHARS).contains(&value.chars().count())
        });
    if in_bounds {
        Ok(())
    } else {
        Err(ProtocolError::InvalidParameter(format!(
            "PrincipalTags: at most {MAX_PRINCIPAL_TAGS} tags, names of 1 to {MAX_TAG_KEY_CHARS} and values of 1 to \
             {MAX_TAG_VALUE_CHARS} characters."
        )))
    }
}

impl PoolState {
    /// Forgets credentials that expired by `now`.
    /// Forgets credentials that expired at or before `cutoff`.
    fn purge_expired_before(&mut self, cutoff: SystemTime) {
        while let Some((expiration, _)) = self.expiry_queue.front() {
            if *expiration > cutoff {
                break;
            }
            if let Some((_, access_key_id)) = self.expiry_queue.pop_front() {
                self.credentials.remove(&access_key_id);
            }
        }
    }
}

/// A login whose token verified.
struct VerifiedLogin {
    owner: Owner,
    claims: Claims,
    principal_tags: BTreeMap<String, String>,
}

/// The only (provider, token) pair of `logins`.
fn single_login(logins: Option<&Logins>) -> Result<(&str, &str), ProtocolError> {
    let mut entries = logins.into_iter().flatten();
    match (entries.next(), entries.next()) {
        (Some((provider, token)), None) => Ok((provider, token)),
        (None, _) => Err(ProtocolError::NotAuthorized(
            "Unauthenticated access is not supported for this identity pool.".to_owned(),
        )),
        (Some(_), Some(_)) => Err(ProtocolError::InvalidParameter(
            "The local identity pool supports exactly one login per request; Logins has several.".to_owned(),
        )),
    }
}

/// The verified claims of `raw_token` from `issuer`.
async fn verify_token(issuer: &TrustedIssuer, raw_token: &str) -> Result<Claims, ProtocolError> {
    let token = UnverifiedToken::parse(raw_token, MAX_TOKEN_BYTES).map_err(invalid_token)?;
    let iss = token.issuer().map_err(invalid_token)?;
    // Exactly as written, like the broker (OpenID Connect Core 1.0 §3.1.3.7 step 2).
    if !issuer.issuer.is(iss) {
        return Err(ProtocolError::NotAuthorized(format!(
            "Invalid login token. Issuer doesn't match providerName: expected {}, found {}",
            issuer.issuer,
            excerpt(iss)
        )));
    }
    let header = token.header();
    let unavailable = |error: KeyError| {
        ProtocolError::ExternalService(format!(
            "Could not fetch the signing keys of {}: {error}",
            issuer.issuer
        ))
    };
    let keys = issuer.keys.cache(&issuer.issuer).await.map_err(unavailable)?;
    let key = keys
        .key(header.kid.as_deref(), header.alg)
        .await
        .map_err(|error| match error {
            KeyError::UnknownKey(_) | KeyError::AmbiguousKey(_) => {
                ProtocolError::NotAuthorized(format!("Invalid login token. {error}"))
            }
            KeyError::Unavailable(_) => unavailable(error),
        })?;
    let claims = token.verify_signature(&key).map_err(invalid_token)?;
    token::check_audience(&claims, &issuer.audiences).map_err(invalid_token)?;
    token::check_times(&claims, SystemTime::now(), TOKEN_LEEWAY).map_err(invalid_token)?;
    Ok(claims)
}

/// A token refusal as Cognito words it. `TokenError` messages never contain the token.
fn invalid_token(error: token::TokenError) -> ProtocolError {
    ProtocolError::NotAuthorized(format!("Invalid login token. {error}"))
}

/// Accepts only values shaped like an IAM role ARN.
fn check_role_arn(role_arn: &str) -> Result<(), ProtocolError> {
    if role_arn.len() <= MAX_ROLE_ARN_BYTES && ROLE_ARN.is_match(role_arn) {
        Ok(())
    } else {
        Err(ProtocolError::InvalidParameter(format!(
            "CustomRoleArn '{}' is not an IAM role ARN (arn:aws:iam::<12-digit account>:role/<name>).",
            excerpt(role_arn)
        )))
    }
}

/// The body of `GetId`.
#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct GetIdRequest {
    identity_pool_id: String,
    logins: Option<Logins>,
    // `AccountId` is ignored like any unknown member: there are no accounts locally.
}

/// The body of `GetCredentialsForIdentity`.
#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct GetCredentialsRequest {
    identity_id: String,
    logins: Option<Logins>,
    custom_role_arn: Option<String>,
}

/// The body of `GetOpenIdTokenForDeveloperIdentity`.
#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct DeveloperIdentityRequest {
    identity_pool_id: String,
    identity_id: Option<String>,
    logins: Logins,
    principal_tags: Option<BTreeMap<String, String>>,
    token_duration: Option<u64>,
}

/// The Cognito Identity operations the pool serves, by their API names.
#[derive(Clone, Copy)]
#[allow(clippy::enum_variant_names)] // Cognito's own operation names all start with `Get`.
enum Operation {
    GetId,
    GetCredentialsForIdentity,
    GetOpenIdTokenForDeveloperIdentity,
}

impl Operation {
    fn name(self) -> &'static str {
        match self {
            Operation::GetId => "GetId",
            Operation::GetCredentialsForIdentity => "GetCredentialsForIdentity",
            Operation::GetOpenIdTokenForDeveloperIdentity => "GetOpenIdTokenForDeveloperIdentity",
        }
    }
}

/// The one handler: checks the envelope (and, for the developer call, the signature), applies
/// the quotas and latency, dispatches on `X-Amz-Target`.
async fn handle(
    State(pool): State<Arc<LocalPool>>,
    OriginalUri(uri): OriginalUri,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Response {
    let result = match check_envelope(&headers, body) {
        Ok((operation, body)) => dispatch(&pool, operation, &uri, &headers, &body).await,
        Err(error) => Err(error),
    };
    match result {
        Ok(answer) => amz_json(StatusCode::OK, answer.to_string()),
        Err(error) => error.into_response(),
    }
}

async fn dispatch(
    pool: &LocalPool,
    operation: Operation,
    uri: &axum::http::Uri,
    headers: &HeaderMap,
    body: &[u8],
) -> Result<serde_json::Value, ProtocolError> {
    if let Operation::GetOpenIdTokenForDeveloperIdentity = operation {
        // Authentication comes before anything else, throttling included, as in AWS.
        let target = uri.path_and_query().map_or("/", |target| target.as_str());
        pool.check_signature(&SignedRequest {
            method: "POST",
            target,
            headers,
            body,
        })?;
    }
    pool.admit(operation.name()).await?;
    match operation {
        Operation::GetId => pool.get_id(parse_body(body)?).await,
        Operation::GetCredentialsForIdentity => pool.get_credentials(parse_body(body)?).await,
        Operation::GetOpenIdTokenForDeveloperIdentity => pool.developer_identity(parse_body(body)?),
    }
}

/// The operation and body of a well-formed AWS JSON 1.1 request.
fn check_envelope(
    headers: &HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<(Operation, Bytes), ProtocolError> {
    let operation = match target(headers) {
        Some("GetId") => Operation::GetId,
        Some("GetCredentialsForIdentity") => Operation::GetCredentialsForIdentity,
        Some("GetOpenIdTokenForDeveloperIdentity") => Operation::GetOpenIdTokenForDeveloperIdentity,
        Some(other) => {
            return Err(ProtocolError::UnknownOperation(format!(
                "Operation '{}' is not supported by the local identity pool.",
                excerpt(other)
            )));
        }
        None => {
            return Err(ProtocolError::UnknownOperation(format!(
                "X-Amz-Target must be {TARGET_PREFIX}GetId, {TARGET_PREFIX}GetCredentialsForIdentity \
                 or {TARGET_PREFIX}GetOpenIdTokenForDeveloperIdentity."
            )));
        }
    };
    if !is_amz_json(headers) {
        return Err(ProtocolError::Serialization(format!(
            "Content-Type must be {AMZ_JSON}."
        )));
    }
    let body = body.map_err(|rejection| ProtocolError::UnreadableBody {
        status: rejection.status(),
        message: rejection.body_text(),
    })?;
    Ok((operation, body))
}

/// The operation named by `X-Amz-Target`, without the service prefix.
fn target(headers: &HeaderMap) -> Option<&str> {
    headers
        .get("x-amz-target")
        .and_then(|value| value.to_str().ok())
        .and_then(|value| value.strip_prefix(TARGET_PREFIX))
}

/// Whether the request is `application/x-amz-json-1.1` (parameters allowed).
fn is_amz_json(headers: &HeaderMap) -> bool {
    headers
        .get(header::CONTENT_TYPE)
        .and_then(|value| value.to_str().ok())
        .and_then(|value| value.split(';').next())
        .is_some_and(|media_type| media_type.trim().eq_ignore_ascii_case(AMZ_JSON))
}

/// The request structure: broken JSON is a `SerializationException`, well-formed JSON with
/// missing or mistyped members an `InvalidParameterException`.
fn parse_body<T: serde::de::DeserializeOwned>(body: &[u8]) -> Result<T, ProtocolError> {
    serde_json::from_slice(body).map_err(|error| {
        if error.is_data() {
            ProtocolError::InvalidParameter(format!("Invalid request: {error}"))
        } else {
            ProtocolError::Serialization(format!("The request body is not valid JSON: {error}"))
        }
    })
}

/// A response in the protocol's media type.
fn amz_json(status: StatusCode, body: String) -> Response {
    let mut response = (status, body).into_response();
    let headers = response.headers_mut();
    headers.insert(header::CONTENT_TYPE, HeaderValue::from_static(AMZ_JSON));
    if let Ok(request_id) = HeaderValue::from_str(&random_uuid_v4()) {
        headers.insert("x-amzn-requestid", request_id);
    }
    response
}

/// An error as Cognito reports it: status, `x-amzn-ErrorType`, `{"__type", "message"}`.
#[derive(Debug)]
enum ProtocolError {
    InvalidParameter(String),
    NotAuthorized(String),
    ResourceNotFound(String),
    LimitExceeded(String),
    TooManyRequests(String),
    ResourceConflict(String),
    ExternalService(String),
    /// A developer call whose signature did not verify.
    Signature(SigV4Error),
    Serialization(String),
    UnknownOperation(String),
    /// The body could not be read (too large, connection cut): the status says which.
    UnreadableBody {
        status: StatusCode,
        message: String,
    },
}

impl ProtocolError {
    /// The `__type` and HTTP status Cognito answers for this error. Cognito Identity speaks AWS
    /// JSON 1.1, and its model (botocore's `data/cognito-identity/2014-06-30/service-2.json`)
    /// gives none of its exceptions an `httpStatusCode`, so the protocol's default applies: HTTP
    /// 400 for every client error — `NotAuthorizedException`, `ResourceNotFoundException` and the
    /// throttling `TooManyRequestsException` included (not 403, 404 or 429) — and 500 only for
    /// the `InternalErrorException` fault. moto answers its Cognito errors with 400 too. Clients
    /// (the SDK's error parser and retry classifier, the broker's mapping) go by `__type`.
    fn code_and_status(&self) -> (&'static str, StatusCode) {
        let code = match self {
            ProtocolError::InvalidParameter(_) => "InvalidParameterException",
            ProtocolError::NotAuthorized(_) => "NotAuthorizedException",
            ProtocolError::ResourceNotFound(_) => "ResourceNotFoundException",
            ProtocolError::LimitExceeded(_) => "LimitExceededException",
            ProtocolError::TooManyRequests(_) => "TooManyRequestsException",
            ProtocolError::ResourceConflict(_) => "ResourceConflictException",
            ProtocolError::ExternalService(_) => "ExternalServiceException",
            ProtocolError::Signature(error) => error.error_type(),
            ProtocolError::Serialization(_) | ProtocolError::UnreadableBody { .. } => {
                "SerializationException"
            }
            ProtocolError::UnknownOperation(_) => "UnknownOperationException",
        };
        let status = match self {
            // The error types AWS answers for a bad signature (the common errors of every
            // service); like API Gateway, 403 for credentials and signatures, 400 for
            // malformed ones.
            ProtocolError::Signature(
                SigV4Error::IncompleteSignature(_)
                | SigV4Error::ConflictingAuthentication
                | SigV4Error::HeaderNotSigned(_),
            ) => StatusCode::BAD_REQUEST,
            ProtocolError::Signature(_) => StatusCode::FORBIDDEN,
            ProtocolError::UnreadableBody { status, .. } => *status,
            _ => StatusCode::BAD_REQUEST,
        };
        (code, status)
    }

    fn message(&self) -> std::borrow::Cow<'_, str> {
        match self {
            ProtocolError::InvalidParameter(message)
            | ProtocolError::NotAuthorized(message)
            | ProtocolError::ResourceNotFound(message)
            | ProtocolError::LimitExceeded(message)
            | ProtocolError::TooManyRequests(message)
            | ProtocolError::ResourceConflict(message)
            | ProtocolError::ExternalService(message)
            | ProtocolError::Serialization(message)
            | ProtocolError::UnknownOperation(message)
            | ProtocolError::UnreadableBody { message, .. } => std::borrow::Cow::Borrowed(message),
            ProtocolError::Signature(error) => std::borrow::Cow::Owned(error.to_string()),
        }
    }
}

impl IntoResponse for ProtocolError {
    fn into_response(self) -> Response {
        let (code, status) = self.code_and_status();
        tracing::debug!(code, message = %self.message(), "local pool refused a request");
        let body = json!({ "__type": code, "message": self.message() });
        let mut response = amz_json(status, body.to_string());
        response
            .headers_mut()
            .insert("x-amzn-errortype", HeaderValue::from_static(code));
        response
    }
}

/// At most [`MAX_ECHO_CHARS`] characters of an attacker-supplied value, for messages.
fn excerpt(value: &str) -> String {
    match value.char_indices().nth(MAX_ECHO_CHARS) {
        Some((end, _)) => format!("{}...", &value[..end]),
        None => value.to_owned(),
    }
}

/// `time` truncated to whole seconds, so what the pool remembers is exactly what the client is
/// told (the protocol's `Expiration` is epoch seconds).
fn whole_seconds(time: SystemTime) -> SystemTime {
    UNIX_EPOCH + Duration::from_secs(epoch_seconds(time))
}

/// Seconds since the epoch (0 before it).
fn epoch_seconds(time: SystemTime) -> u64 {
    time.duration_since(UNIX_EPOCH)
        .map_or(0, |elapsed| elapsed.as_secs())
}

/// `N` bytes from the system's secure random generator.
fn random_bytes<const N: usize>() -> [u8; N] {
    let mut bytes = [0u8; N];
    aws_lc_rs::rand::fill(&mut bytes).expect("the operating system's random generator is available");
    bytes
}

/// A random (version 4) UUID, lowercase hex with dashes.
fn random_uuid_v4() -> String {
    let mut bytes: [u8; 16] = random_bytes();
    bytes[6] = (bytes[6] & 0x0f) | 0x40;
    bytes[8] = (bytes[8] & 0x3f) | 0x80;
    let hex = hex::encode(bytes);
    format!(
        "{}-{}-{}-{}-{}",
        &hex[..8],
        &hex[8..12],
        &hex[12..16],
        &hex[16..20],
        &hex[20..]
    )
}

/// The RFC 4648 base32 alphabet, which is what AWS access key ids are written in.
const BASE32_ALPHABET: &[u8; 32] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZ234567";

/// A random access key id with `prefix` (`ASIA` temporary, `AKIA` long-term) and its secret,
/// shaped like AWS's.
pub fn random_key_pair(prefix: &str) -> (String, String) {
    // 256 is a multiple of 32, so taking each byte modulo 32 is unbiased.
    let key_id_chars: String = random_bytes::<16>()
        .iter()
        .map(|byte| char::from(BASE32_ALPHABET[usize::from(byte % 32)]))
        .collect();
    // 30 bytes are exactly 40 base64 characters, the length of an AWS secret key.
    (
        format!("{prefix}{key_id_chars}"),
        BASE64.encode(random_bytes::<30>()),
    )
}

/// Fresh random credentials expiring at `expiration`, shaped like STS temporary credentials.
fn random_credentials(expiration: SystemTime) -> AwsCredentials {
    let (access_key_id, secret_access_key) = random_key_pair("ASIA");
    AwsCredentials {
        access_key_id,
        secret_access_key,
        session_token: BASE64.encode(random_bytes::<384>()),
        expiration,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn uuid_is_version_4_with_dashes() {
        let uuid = random_uuid_v4();
        let groups: Vec<&str> = uuid.split('-').collect();
        let lengths: Vec<usize> = groups.iter().map(|group| group.len()).collect();
        assert_eq!(lengths, [8, 4, 4, 4, 12], "{uuid}");
        assert!(
            uuid.chars()
                .all(|c| c == '-' || (c.is_ascii_hexdigit() && !c.is_ascii_uppercase()))
        );
        assert!(groups[2].starts_with('4'), "{uuid}");
        assert!(
            matches!(groups[3].chars().next(), Some('8' | '9' | 'a' | 'b')),
            "{uuid}"
        );
        assert_ne!(uuid, random_uuid_v4());
    }

    #[test]
    fn credentials_look_like_sts_ones() {
        let expiration = UNIX_EPOCH + Duration::from_secs(2_000_000_000);
        let credentials = random_credentials(expiration);
        let key_id = &credentials.access_key_id;
        assert_eq!(key_id.len(), 20);
        assert!(key_id.starts_with("ASIA"));
        assert!(key_id.bytes().all(|b| BASE32_ALPHABET.contains(&b)), "{key_id}");
        assert_eq!(credentials.secret_access_key.len(), 40);
        assert!(credentials.session_token.len() > 400);
        assert_eq!(credentials.expiration, expiration);
        let other = random_credentials(expiration);
        assert_ne!(other.access_key_id, credentials.access_key_id);
        assert_ne!(other.secret_access_key, credentials.secret_access_key);
        assert_ne!(other.session_token, credentials.session_token);
    }

    #[test]
    fn debug_of_issued_credentials_hides_secrets() {
        let credentials = random_credentials(SystemTime::now());
        let printed = format!("{credentials:?}");
        assert!(!printed.contains(&credentials.secret_access_key));
        assert!(!printed.contains(&credentials.session_token));
    }

    #[test]
    fn role_arns_are_checked_for_shape() {
        for good in [
            "arn:aws:iam::123456789012:role/credbroker-user",
            "arn:aws-us-gov:iam::123456789012:role/path/to/Role_1+=,.@-",
        ] {
            assert!(check_role_arn(good).is_ok(), "{good}");
        }
        for bad in [
            "",
            "arn:aws:iam::12345678901:role/short-account",
            "arn:aws:iam::123456789012:user/not-a-role",
            "arn:aws:sts::123456789012:role/wrong-service",
            "arn:aws:iam::123456789012:role/",
            "role/x",
            &format!(
                "arn:aws:iam::123456789012:role/{}",
                "a".repeat(MAX_ROLE_ARN_BYTES)
            ),
        ] {
            assert!(
                matches!(check_role_arn(bad), Err(ProtocolError::InvalidParameter(_))),
                "{bad}"
            );
        }
    }

    #[test]
    fn one_login_exactly() {
        assert!(matches!(single_login(None), Err(ProtocolError::NotAuthorized(_))));
        let mut logins = Logins::new();
        assert!(matches!(
            single_login(Some(&logins)),
            Err(ProtocolError::NotAuthorized(_))
        ));
        logins.insert("a".to_owned(), "t".to_owned());
        assert_eq!(single_login(Some(&logins)).ok(), Some(("a", "t")));
        logins.insert("b".to_owned(), "u".to_owned());
        assert!(matches!(
            single_login(Some(&logins)),
            Err(ProtocolError::InvalidParameter(_))
        ));
    }

    #[test]
    fn at_the_cap_expired_credentials_give_way_and_live_ones_throttle() {
        let identity = || {
            Arc::new(Identity {
                identity_id: "us-east-1:id".to_owned(),
                provider: "p".to_owned(),
                subject: "s".to_owned(),
                claims: Claims::new(),
                principal_tags: BTreeMap::new(),
            })
        };
        let capped = |lifetime| {
            let mut pool = LocalPool::new("us-east-1:pool".to_owned(), Vec::new(), lifetime);
            Arc::get_mut(&mut pool).expect("sole owner").max_live_credentials = 2;
            pool
        };
        // Expired (zero lifetime) but still remembered: they make room at the cap.
        let expired = capped(Duration::ZERO);
        for _ in 0..5 {
            expired.issue(identity()).expect("expired credentials give way");
        }
        // Live ones do not: the third is throttled.
        let live = capped(Duration::from_secs(3600));
        live.issue(identity()).expect("first");
        live.issue(identity()).expect("second");
        assert!(matches!(
            live.issue(identity()),
            Err(ProtocolError::TooManyRequests(_))
        ));
    }

    #[test]
    fn expired_credentials_are_remembered_for_a_while_then_purged() {
        let pool = LocalPool::new("us-east-1:pool".to_owned(), Vec::new(), Duration::ZERO);
        let identity = Arc::new(Identity {
            identity_id: "us-east-1:id".to_owned(),
            provider: "p".to_owned(),
            subject: "s".to_owned(),
            claims: Claims::new(),
            principal_tags: BTreeMap::new(),
        });
        let first = pool.issue(Arc::clone(&identity)).expect("issued");
        let remembered = pool.lookup(&first.access_key_id).expect("kept after expiry");
        assert!(
            remembered.credentials.expiration <= SystemTime::now(),
            "zero lifetime: already expired"
        );
        pool.issue(identity).expect("issued");
        assert!(
            pool.lookup(&first.access_key_id).is_some(),
            "still within EXPIRED_KEPT_FOR"
        );
        let mut state = pool.lock();
        state.purge_expired_before(SystemTime::now() - EXPIRED_KEPT_FOR - Duration::from_secs(1));
        assert!(
            state.credentials.contains_key(&first.access_key_id),
            "kept within EXPIRED_KEPT_FOR"
        );
        state.purge_expired_before(SystemTime::now());
        assert!(
            !state.credentials.contains_key(&first.access_key_id),
            "purged once expired before the cutoff"
        );
        assert_eq!(state.credentials.len(), state.expiry_queue.len());
    }

    #[test]
    fn live_credentials_are_looked_up() {
        let pool = LocalPool::new("eu-west-1:pool".to_owned(), Vec::new(), Duration::from_secs(3600));
        let identity = Arc::new(Identity {
            identity_id: "eu-west-1:id".to_owned(),
            provider: "p".to_owned(),
            subject: "s".to_owned(),
            claims: Claims::new(),
            principal_tags: BTreeMap::new(),
        });
        let issued = pool.issue(identity).expect("issued");
        let found = pool.lookup(&issued.access_key_id).expect("live");
        assert_eq!(found.credentials, issued);
        assert_eq!(found.identity.subject, "s");
        assert!(pool.lookup("ASIAAAAAAAAAAAAAAAAA").is_none());
    }

    #[test]
    fn identity_ids_are_stable_per_owner_and_carry_the_region() {
        let pool = LocalPool::new("eu-west-1:0000".to_owned(), Vec::new(), Duration::from_secs(60));
        let alice = Owner {
            provider: "p".to_owned(),
            subject: "alice".to_owned(),
        };
        let bob = Owner {
            provider: "p".to_owned(),
            subject: "bob".to_owned(),
        };
        let alice_id = pool.identity_for(&alice).expect("id");
        assert!(alice_id.starts_with("eu-west-1:"), "{alice_id}");
        assert_eq!(pool.identity_for(&alice).expect("id"), alice_id);
        assert_ne!(pool.identity_for(&bob).expect("id"), alice_id);
        assert_eq!(pool.identity_count(), 2);
        assert_eq!(pool.owner_of(&alice_id).expect("known"), alice);
    }

    #[test]
    fn excerpt_bounds_echoed_values() {
        assert_eq!(excerpt("short"), "short");
        let long = "é".repeat(100);
        assert_eq!(excerpt(&long).chars().count(), MAX_ECHO_CHARS + 3);
    }
}
