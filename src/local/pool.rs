//! A local identity pool that speaks the Cognito Identity JSON 1.1 protocol (`GetId`,
//! `GetCredentialsForIdentity`), so the broker reaches it through the real AWS SDK by endpoint
//! override. Like Cognito it verifies the Logins token again, keeps a stable identity id per
//! (issuer, sub), and issues random temporary credentials that the local gateway can look up.
//!
//! Differences from Cognito, on purpose:
//! - exactly one login per request (Cognito links several providers to one identity; the local
//!   pool refuses a request with several logins with `InvalidParameterException`);
//! - no unauthenticated identities, no IAM: `CustomRoleArn` is checked for shape only;
//! - everything lives in memory and is bounded: at most [`MAX_IDENTITIES`] identities and
//!   [`MAX_LIVE_CREDENTIALS`] unexpired credentials.

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, LazyLock, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use axum::Router;
use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{DefaultBodyLimit, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use serde::Deserialize;
use serde_json::json;
use url::Url;

use crate::jwks::{JwksCache, KeyError};
use crate::pool::{AwsCredentials, Logins};
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
    /// The verified claims of the token the credentials were issued for.
    pub claims: Claims,
}

/// Credentials the pool issued, with the identity they belong to.
#[derive(Debug, Clone)]
pub struct IssuedCredentials {
    /// The credentials.
    pub credentials: AwsCredentials,
    /// Their owner.
    pub identity: Arc<Identity>,
}

/// An OpenID issuer the pool trusts (like an IAM OIDC provider on a real pool).
#[derive(Debug, Clone)]
pub struct TrustedIssuer {
    /// The issuer URL; its Logins key is this without the scheme.
    pub issuer: Url,
    /// Accepted `aud` values.
    pub audiences: Vec<String>,
    /// The issuer's keys.
    pub keys: Arc<JwksCache>,
}

impl TrustedIssuer {
    /// The key of this issuer in a `Logins` map: the issuer without its scheme, e.g.
    /// `127.0.0.1:8787/dev-idp`.
    pub fn logins_key(&self) -> &str {
        logins_key(&self.issuer)
    }
}

/// The issuer as written in tokens. `Url` adds a `/` to a bare origin
/// (`https://idp.example.com/`), which providers do not write in `iss`; this drops it.
fn issuer_text(issuer: &Url) -> &str {
    let text = issuer.as_str();
    let bare_origin = issuer.path() == "/" && issuer.query().is_none() && issuer.fragment().is_none();
    if bare_origin {
        text.strip_suffix('/').unwrap_or(text)
    } else {
        text
    }
}

/// The `Logins` key of `issuer`: its text without the scheme.
fn logins_key(issuer: &Url) -> &str {
    let text = issuer_text(issuer);
    text.split_once("://").map_or(text, |(_, rest)| rest)
}

/// Whether a token's `iss` names `issuer` (either spelling of a bare origin).
fn is_issuer(issuer: &Url, iss: &str) -> bool {
    iss == issuer_text(issuer) || iss == issuer.as_str()
}

/// The local pool.
pub struct LocalPool {
    pool_id: String,
    issuers: Vec<TrustedIssuer>,
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
        Arc::new(LocalPool {
            pool_id,
            issuers,
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
        let login = self.verify_logins(request.logins.as_ref()).await?;
        if login.owner != owner {
            return Err(ProtocolError::NotAuthorized(LOGINS_DONT_MATCH.to_owned()));
        }
        let identity = Arc::new(Identity {
            identity_id: request.identity_id,
            provider: login.owner.provider,
            subject: login.owner.subject,
            claims: login.claims,
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
        })
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
    if !is_issuer(&issuer.issuer, iss) {
        return Err(ProtocolError::NotAuthorized(format!(
            "Invalid login token. Issuer doesn't match providerName: expected {}, found {}",
            issuer_text(&issuer.issuer),
            excerpt(iss)
        )));
    }
    let header = token.header();
    let key = issuer
        .keys
        .key(header.kid.as_deref(), header.alg)
        .await
        .map_err(|error| match error {
            KeyError::UnknownKey(_) | KeyError::AmbiguousKey(_) => {
                ProtocolError::NotAuthorized(format!("Invalid login token. {error}"))
            }
            KeyError::Unavailable(_) => ProtocolError::ExternalService(format!(
                "Could not fetch the signing keys of {}: {error}",
                issuer_text(&issuer.issuer)
            )),
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

/// The Cognito Identity operations the pool serves.
enum Operation {
    GetId,
    GetCredentialsForIdentity,
}

/// The one handler: checks the envelope, dispatches on `X-Amz-Target`.
async fn handle(
    State(pool): State<Arc<LocalPool>>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Response {
    let result = match check_envelope(&headers, body) {
        Ok((Operation::GetId, body)) => match parse_body(&body) {
            Ok(request) => pool.get_id(request).await,
            Err(error) => Err(error),
        },
        Ok((Operation::GetCredentialsForIdentity, body)) => match parse_body(&body) {
            Ok(request) => pool.get_credentials(request).await,
            Err(error) => Err(error),
        },
        Err(error) => Err(error),
    };
    match result {
        Ok(answer) => amz_json(StatusCode::OK, answer.to_string()),
        Err(error) => error.into_response(),
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
        Some(other) => {
            return Err(ProtocolError::UnknownOperation(format!(
                "Operation '{}' is not supported by the local identity pool.",
                excerpt(other)
            )));
        }
        None => {
            return Err(ProtocolError::UnknownOperation(format!(
                "X-Amz-Target must be {TARGET_PREFIX}GetId or \
                 {TARGET_PREFIX}GetCredentialsForIdentity."
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
    ExternalService(String),
    Serialization(String),
    UnknownOperation(String),
    /// The body could not be read (too large, connection cut): the status says which.
    UnreadableBody {
        status: StatusCode,
        message: String,
    },
}

impl ProtocolError {
    /// The `__type` and HTTP status Cognito Identity's model gives this error.
    fn code_and_status(&self) -> (&'static str, StatusCode) {
        match self {
            ProtocolError::InvalidParameter(_) => ("InvalidParameterException", StatusCode::BAD_REQUEST),
            ProtocolError::NotAuthorized(_) => ("NotAuthorizedException", StatusCode::FORBIDDEN),
            ProtocolError::ResourceNotFound(_) => ("ResourceNotFoundException", StatusCode::NOT_FOUND),
            ProtocolError::LimitExceeded(_) => ("LimitExceededException", StatusCode::BAD_REQUEST),
            ProtocolError::TooManyRequests(_) => ("TooManyRequestsException", StatusCode::TOO_MANY_REQUESTS),
            ProtocolError::ExternalService(_) => ("ExternalServiceException", StatusCode::BAD_REQUEST),
            ProtocolError::Serialization(_) => ("SerializationException", StatusCode::BAD_REQUEST),
            ProtocolError::UnknownOperation(_) => ("UnknownOperationException", StatusCode::BAD_REQUEST),
            ProtocolError::UnreadableBody { status, .. } => ("SerializationException", *status),
        }
    }

    fn message(&self) -> &str {
        match self {
            ProtocolError::InvalidParameter(message)
            | ProtocolError::NotAuthorized(message)
            | ProtocolError::ResourceNotFound(message)
            | ProtocolError::LimitExceeded(message)
            | ProtocolError::TooManyRequests(message)
            | ProtocolError::ExternalService(message)
            | ProtocolError::Serialization(message)
            | ProtocolError::UnknownOperation(message)
            | ProtocolError::UnreadableBody { message, .. } => message,
        }
    }
}

impl IntoResponse for ProtocolError {
    fn into_response(self) -> Response {
        let (code, status) = self.code_and_status();
        tracing::debug!(code, message = self.message(), "local pool refused a request");
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

/// Fresh random credentials expiring at `expiration`, shaped like STS temporary credentials.
fn random_credentials(expiration: SystemTime) -> AwsCredentials {
    // 256 is a multiple of 32, so taking each byte modulo 32 is unbiased.
    let key_id_chars: String = random_bytes::<16>()
        .iter()
        .map(|byte| char::from(BASE32_ALPHABET[usize::from(byte % 32)]))
        .collect();
    AwsCredentials {
        access_key_id: format!("ASIA{key_id_chars}"),
        // 30 bytes are exactly 40 base64 characters, the length of an AWS secret key.
        secret_access_key: BASE64.encode(random_bytes::<30>()),
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
    fn logins_key_is_issuer_without_scheme_or_added_slash() {
        let dev = Url::parse("http://127.0.0.1:8787/dev-idp").expect("test URL");
        assert_eq!(logins_key(&dev), "127.0.0.1:8787/dev-idp");
        assert!(is_issuer(&dev, "http://127.0.0.1:8787/dev-idp"));
        assert!(!is_issuer(&dev, "http://127.0.0.1:8787/dev-idp/"));
        let google = Url::parse("https://accounts.google.com").expect("test URL");
        assert_eq!(logins_key(&google), "accounts.google.com");
        assert!(is_issuer(&google, "https://accounts.google.com"));
        assert!(is_issuer(&google, "https://accounts.google.com/"));
        assert!(!is_issuer(&google, "http://accounts.google.com"));
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
