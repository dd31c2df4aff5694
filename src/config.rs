//! The one typed configuration, read from TOML or JSON (a file, or the `CREDBROKER_CONFIG`
//! environment variable in Lambda) and validated once at start-up.
//!
//! JSON is there for generated configuration: `template.yaml` builds it with `Fn::ToJsonString`
//! from the stack's parameters, where assembling TOML text would take nested string joins. Both
//! formats deserialize into the same types and go through the same validation, so a key means
//! the same thing and an error reads the same in either.
//!
//! Unknown keys are errors, not warnings: a misspelt `audiences` would otherwise silently turn
//! into "no audience check configured". Every [`ConfigError`] names the offending key and says
//! how to fix it.

use std::collections::BTreeMap;
use std::ops::RangeInclusive;
use std::time::Duration;

use serde::Deserialize;
use url::Url;

use crate::authorizer::RoutePattern;
use crate::issuer::Issuer;
use crate::rules::Rule;
use crate::tags::{self, PrincipalTagMap};

/// The environment variable that holds the whole configuration, TOML or JSON (used by the Lambda
/// binaries).
pub const CONFIG_ENV: &str = "CREDBROKER_CONFIG";
/// The environment variable that names a configuration file (an alternative to [`CONFIG_ENV`]).
pub const CONFIG_FILE_ENV: &str = "CREDBROKER_CONFIG_FILE";

/// The validated configuration of a broker.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// Browser origins allowed to call the API (CORS), e.g. `https://app.example.com`.
    #[serde(default)]
    pub allowed_origins: Vec<String>,
    /// Size and clock limits.
    #[serde(default)]
    pub limits: Limits,
    /// JWKS fetching and caching policy.
    #[serde(default)]
    pub jwks: JwksSettings,
    /// The Cognito identity pool credentials come from. Only sign-in needs it: the bearer
    /// authorizer never calls Cognito Identity, and `credbroker dev` replaces it.
    #[serde(default)]
    pub identity_pool: Option<IdentityPoolConfig>,
    /// Named sign-in providers; the name is the `{provider}` in `POST /auth/signin/{provider}`.
    #[serde(default)]
    pub providers: BTreeMap<String, ProviderConfig>,
    /// The bearer authorizer's access rules (`credbroker-authorizer` only; the sign-in API
    /// ignores them).
    #[serde(default)]
    pub authorizer: Option<AuthorizerConfig>,
    /// The identity assertion's signing key in a deployment (`docs/identity.md`); without it the
    /// sign-in API issues no assertion (the dev stack brings its own key).
    #[serde(default)]
    pub identity: Option<IdentityConfig>,
}

/// `[identity]`: the KMS key that signs identity assertions, and the keys apps may verify with.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct IdentityConfig {
    /// The KMS key that signs (`ECC_NIST_P256`, `SIGN_VERIFY`): a key ARN, key id, alias ARN or
    /// `alias/NAME`.
    pub kms_key_id: String,
    /// More KMS keys whose public keys `GET /auth/identity-keys` publishes without signing with
    /// them: the next key before a rotation, the previous one for an hour after it.
    #[serde(default)]
    pub published_kms_key_ids: Vec<String>,
    /// The assertions' `iss`, the `/auth` URL apps verify against. Default: the `/auth` URL the
    /// sign-in request reached, as API Gateway reports it (`requestContext.domainName` and `path`).
    #[serde(default)]
    pub issuer: Option<Url>,
    /// The KMS region; defaults to the region of a key ARN, else the environment's (`AWS_REGION`).
    #[serde(default)]
    pub region: Option<String>,
    /// Endpoint override (moto in tests). `AWS_ENDPOINT_URL_KMS` also works.
    #[serde(default)]
    pub endpoint: Option<Url>,
}

/// The most keys `[identity]` may name (the signing key and the published ones).
pub const MAX_IDENTITY_KEYS: usize = 4;

impl IdentityConfig {
    /// The signing key first, then the published ones.
    pub fn key_ids(&self) -> impl Iterator<Item = &str> {
        std::iter::once(self.kms_key_id.as_str()).chain(self.published_kms_key_ids.iter().map(String::as_str))
    }

    /// The configured region, else the region named in a key ARN (`arn:PARTITION:kms:REGION:…`).
    pub fn key_region(&self) -> Option<&str> {
        self.region.as_deref().or_else(|| {
            let mut parts = self.kms_key_id.split(':');
            (parts.next() == Some("arn")).then(|| parts.nth(2)).flatten()
        })
    }
}

/// `[authorizer]`: which routes a verified bearer token may call, and what the backend learns
/// about the caller.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AuthorizerConfig {
    /// Access rules; a caller may use the routes of every rule that holds for its claims.
    #[serde(default)]
    pub allow: Vec<AccessRule>,
    /// Claims passed to the backend in the authorizer context, besides provider, subject and
    /// issuer.
    #[serde(default = "default_exposed_claims")]
    pub context_claims: Vec<String>,
}

/// One `[[authorizer.allow]]` rule.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AccessRule {
    /// The claim rule that must hold; without one the routes are open to every verified caller.
    #[serde(default)]
    pub when: Option<Rule>,
    /// Routes, `METHOD /path` (see [`RoutePattern`]).
    pub routes: Vec<RoutePattern>,
}

/// Most routes over all access rules: the policy is one statement listing them, and API Gateway
/// caches it per token.
pub const MAX_AUTHORIZER_ROUTES: usize = 64;
/// Largest clock leeway: beyond a few minutes it stops being leeway and keeps expired tokens alive.
pub const MAX_LEEWAY_SECONDS: u64 = 300;
/// Most claims in the authorizer context.
pub const MAX_CONTEXT_CLAIMS: usize = 16;

/// Size and clock limits; every one has a safe default.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Limits {
    /// Largest accepted ID token, in bytes (Entra tokens with many groups run to several KiB).
    pub max_token_bytes: usize,
    /// Largest accepted request body, in bytes.
    pub max_body_bytes: usize,
    /// Clock leeway for `exp`, `nbf` and `iat`, in seconds.
    pub leeway_seconds: u64,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_token_bytes: 16 * 1024,
            max_body_bytes: 64 * 1024,
            leeway_seconds: 60,
        }
    }
}

impl Limits {
    /// The clock leeway as a [`Duration`].
    pub fn leeway(&self) -> Duration {
        Duration::from_secs(self.leeway_seconds)
    }
}

/// How signing keys are fetched and cached.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct JwksSettings {
    /// At most one refresh per issuer within this many seconds when a token names an unknown `kid`.
    pub cooldown_seconds: u64,
    /// Timeout of one JWKS or discovery fetch, in seconds.
    pub timeout_seconds: u64,
    /// Lower bound applied to the IdP's `Cache-Control: max-age`, in seconds.
    pub min_max_age_seconds: u64,
    /// Upper bound applied to the IdP's `Cache-Control: max-age` (and the default without one).
    pub max_max_age_seconds: u64,
    /// Largest accepted JWKS or discovery document, in bytes.
    pub max_document_bytes: usize,
}

impl Default for JwksSettings {
    fn default() -> Self {
        JwksSettings {
            cooldown_seconds: 60,
            timeout_seconds: 5,
            min_max_age_seconds: 60,
            max_max_age_seconds: 24 * 3600,
            max_document_bytes: 256 * 1024,
        }
    }
}

/// The Cognito identity pool the broker exchanges tokens at.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct IdentityPoolConfig {
    /// The identity pool id, `region:uuid`.
    pub id: String,
    /// The pool's region; defaults to the region part of `id`.
    #[serde(default)]
    pub region: Option<String>,
    /// Endpoint override (moto, the local pool). `AWS_ENDPOINT_URL_COGNITO_IDENTITY` also works.
    #[serde(default)]
    pub endpoint: Option<Url>,
    /// Timeout of one Cognito call attempt, in seconds.
    #[serde(default = "default_pool_attempt_timeout")]
    pub attempt_timeout_seconds: u64,
    /// Attempts per Cognito call, the first included (retries back off with jitter).
    #[serde(default = "default_pool_max_attempts")]
    pub max_attempts: u32,
    /// How tokens are exchanged: `enhanced` (the default) or `developer`.
    #[serde(default)]
    pub mode: PoolMode,
    /// `developer` mode: the pool's developer provider name (`DeveloperProviderName`).
    #[serde(default)]
    pub developer_provider_name: Option<String>,
}

/// How the broker exchanges a verified token at the identity pool. See `docs/exchange.md`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum PoolMode {
    /// Cognito's enhanced (simplified) flow: `GetId` and `GetCredentialsForIdentity` with the
    /// provider's ID token in `Logins`; the pool trusts the providers itself.
    #[default]
    Enhanced,
    /// Developer-authenticated identities: the broker vouches for the user with its own AWS
    /// credentials (`GetOpenIdTokenForDeveloperIdentity`), so its rules are the only way in.
    Developer,
}

impl PoolMode {
    /// The name used in configuration and on the command line.
    pub fn name(self) -> &'static str {
        match self {
            PoolMode::Enhanced => "enhanced",
            PoolMode::Developer => "developer",
        }
    }
}

pub(crate) fn default_pool_attempt_timeout() -> u64 {
    2
}

pub(crate) fn default_pool_max_attempts() -> u32 {
    3
}

impl IdentityPoolConfig {
    /// The region the pool lives in.
    pub fn region(&self) -> &str {
        match &self.region {
            Some(region) => region,
            None => self.id.split(':').next().unwrap_or_default(),
        }
    }
}

/// The kinds of sign-in provider credbroker knows.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum ProviderKind {
    /// Google accounts and Google Workspace.
    Google,
    /// Microsoft Entra ID (v2.0 endpoints).
    Microsoft,
    /// Salesforce (production, sandbox and My Domain hosts).
    Salesforce,
    /// An Amazon Cognito user pool.
    Cognito,
    /// Any OpenID Connect issuer, through discovery.
    Oidc,
}

impl ProviderKind {
    /// The name used in configuration and in `/auth/config`.
    pub fn name(self) -> &'static str {
        match self {
            ProviderKind::Google => "google",
            ProviderKind::Microsoft => "microsoft",
            ProviderKind::Salesforce => "salesforce",
            ProviderKind::Cognito => "cognito",
            ProviderKind::Oidc => "oidc",
        }
    }
}

/// A role to request (`CustomRoleArn`) when a claim rule holds.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RoleRule {
    /// The rule, in `claim:value` or `claim~regex` form.
    pub when: Rule,
    /// The role ARN to request when it holds.
    pub role_arn: String,
}

/// One named provider, as written in `[providers.NAME]`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ProviderConfig {
    /// Which kind of provider this is.
    pub kind: ProviderKind,
    /// Accepted `aud` values: the OAuth client ids of your app at this provider.
    #[serde(default)]
    pub audiences: Vec<String>,
    /// Claim rules that must all hold (mod_auth_openidc `Require claim` form).
    #[serde(default)]
    pub require: Vec<Rule>,
    /// Role ARN to request for every sign-in through this provider.
    #[serde(default)]
    pub role_arn: Option<String>,
    /// Roles by rule; the first whose rule holds wins over `role_arn`.
    #[serde(default)]
    pub roles: Vec<RoleRule>,
    /// Claims returned to the browser in the sign-in response (never the token itself).
    #[serde(default = "default_exposed_claims")]
    pub claims: Vec<String>,
    /// Overrides where signing keys are fetched (otherwise the kind's default or discovery).
    #[serde(default)]
    pub jwks_uri: Option<Url>,
    /// `developer` pool mode: principal tags (session tags) from claims, tag name → claim name.
    #[serde(default)]
    pub principal_tags: PrincipalTagMap,
    /// `oidc`: the issuer exactly as the provider writes `iss` (trailing `/` included when it
    /// has one); discovery at `{issuer}/.well-known/openid-configuration`.
    #[serde(default)]
    pub issuer: Option<Issuer>,
    /// `google`: allowed Workspace domains (`hd` claim); empty allows any account.
    #[serde(default)]
    pub hosted_domains: Vec<String>,
    /// `microsoft`: allowed tenant ids.
    #[serde(default)]
    pub tenants: Vec<String>,
    /// `microsoft`: accept every tenant (multi-tenant apps). Off unless set explicitly.
    #[serde(default)]
    pub any_tenant: bool,
    /// `salesforce`: allowed issuers, each exactly as `iss` writes it (defaults to
    /// login.salesforce.com and test.salesforce.com).
    #[serde(default)]
    pub issuers: Vec<Issuer>,
    /// `cognito`: the user pool id, e.g. `eu-west-1_AbCdEf123`.
    #[serde(default)]
    pub user_pool_id: Option<String>,
    /// `cognito`: also accept access tokens as bearer tokens in the authorizer (never at
    /// sign-in); their `client_id` must be one of `audiences`.
    #[serde(default)]
    pub accept_access_tokens: bool,
    /// `cognito`, with `accept_access_tokens`: scopes every bearer access token must carry.
    #[serde(default)]
    pub access_token_scopes: Vec<String>,
    /// `cognito`: the hosted UI domain (`myapp.auth.eu-west-1.amazoncognito.com` or a custom
    /// domain), whose endpoints `/auth/config` gives browser clients.
    #[serde(default)]
    pub hosted_ui_domain: Option<String>,
    /// Browser sign-in: the client id the browser client signs in with, one of `audiences`
    /// (default: the first). Other audiences stay accepted (a mobile app's tokens, say).
    #[serde(default)]
    pub client_id: Option<String>,
    /// Browser sign-in: the scopes to request (must include `openid`); empty leaves it to the
    /// browser client (`openid email profile`, plus what the kind needs for a refresh token).
    #[serde(default)]
    pub scopes: Vec<String>,
    /// Browser sign-in: the flow; default `code` (+ PKCE) where the kind's token endpoint serves
    /// public clients, else `id_token`.
    #[serde(default)]
    pub flow: Option<BrowserFlow>,
}

/// How a browser client gets an ID token from a provider.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum BrowserFlow {
    /// Authorization code with PKCE (RFC 7636), redeemed at the token endpoint from the page:
    /// for providers whose token endpoint lets a public client in (CORS, no secret).
    Code,
    /// The implicit ID-token flow (`response_type=id_token`, OIDC Core §3.2): for providers
    /// whose token endpoint a page cannot call (no CORS, or a client secret required).
    IdToken,
}

fn default_exposed_claims() -> Vec<String> {
    ["email", "name"].map(String::from).to_vec()
}

/// Claims that identify a session or carry secrets and so are never echoed to the browser.
const NEVER_EXPOSED_CLAIMS: &[&str] = &["nonce", "at_hash", "c_hash", "s_hash", "sid"];

/// Why a configuration cannot be used. Start-up errors, never returned over HTTP.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The configuration file could not be read.
    #[error("cannot read config file {path}: {source}")]
    Read {
        /// The file.
        path: String,
        /// The I/O error.
        source: std::io::Error,
    },
    /// Neither `CREDBROKER_CONFIG` nor `CREDBROKER_CONFIG_FILE` is set.
    #[error(
        "no configuration: set {CONFIG_ENV} to the TOML or JSON text or {CONFIG_FILE_ENV} to a file path"
    )]
    Missing,
    /// The text is not well-formed TOML or JSON.
    #[error("invalid config: {problem}; fix: {fix}")]
    Syntax {
        /// What the parser found, and where (line and column).
        problem: String,
        /// What to do about it.
        fix: &'static str,
    },
    /// A key has a value credbroker cannot work with.
    #[error("invalid config key `{key}`: {problem}; fix: {fix}")]
    Invalid {
        /// The dotted path of the key, e.g. `providers.corp.tenants`.
        key: String,
        /// What is wrong with it.
        problem: String,
        /// What to write instead.
        fix: String,
    },
}

/// A well-formed document of the wrong shape (unknown key, missing key, wrong type) as the usual
/// "key + fix" message, naming the dotted key instead of quoting the parser's dump of the file.
fn shape_error(path: String, message: &str) -> ConfigError {
    let problem = message.lines().next().unwrap_or_default().trim().to_string();
    let fix = if problem.starts_with("unknown field") {
        "remove it or correct its spelling (the keys this table accepts are listed above)"
    } else if problem.starts_with("missing field") {
        "add it (see the configuration table in the README)"
    } else if problem.starts_with("unknown variant") {
        "use one of the values listed above"
    } else if problem.starts_with("invalid type") {
        "write a value of the expected type (see the configuration table in the README)"
    } else {
        "see the configuration table in the README"
    };
    let key = if path == "." {
        "(top level)".to_string()
    } else {
        path
    };
    invalid(key, problem, fix)
}

/// `line L, column C` of a byte offset (1-based), for syntax errors.
fn line_and_column(text: &str, span: Option<std::ops::Range<usize>>) -> String {
    let offset = span.map_or(0, |span| span.start).min(text.len());
    let before = text.get(..offset).unwrap_or_default();
    let line = before.matches('\n').count() + 1;
    let column = before.rsplit('\n').next().map_or(0, |tail| tail.chars().count()) + 1;
    format!("line {line}, column {column}")
}

/// Removes `null` object members, at every depth.
fn drop_nulls(value: &mut serde_json::Value) {
    match value {
        serde_json::Value::Object(members) => {
            members.retain(|_, member| !member.is_null());
            members.values_mut().for_each(drop_nulls);
        }
        serde_json::Value::Array(items) => items.iter_mut().for_each(drop_nulls),
        _ => {}
    }
}

/// A numeric setting must lie in `range`; the error names the value, the range and, when
/// `why` is not empty, what a value outside it would do.
fn within<T>(key: &str, value: T, range: RangeInclusive<T>, why: &str, fix: &str) -> Result<(), ConfigError>
where
    T: PartialOrd + std::fmt::Display,
{
    if range.contains(&value) {
        return Ok(());
    }
    let why = if why.is_empty() {
        String::new()
    } else {
        format!(": {why}")
    };
    Err(invalid(
        key,
        format!("{value} is outside {}..={}{why}", range.start(), range.end()),
        fix,
    ))
}

pub(crate) fn invalid(
    key: impl Into<String>,
    problem: impl Into<String>,
    fix: impl Into<String>,
) -> ConfigError {
    ConfigError::Invalid {
        key: key.into(),
        problem: problem.into(),
        fix: fix.into(),
    }
}

impl Config {
    /// Parses and validates configuration text in either format. A JSON configuration is an
    /// object, so text whose first non-blank character is `{` is JSON; a TOML document cannot
    /// start with `{` (its top level holds only `key = value` pairs, tables and comments).
    pub fn parse(text: &str) -> Result<Config, ConfigError> {
        if text.trim_start().starts_with('{') {
            Config::from_json(text)
        } else {
            Config::from_toml(text)
        }
    }

    /// Parses and validates TOML text.
    pub fn from_toml(text: &str) -> Result<Config, ConfigError> {
        let document = toml::Deserializer::parse(text).map_err(|e| ConfigError::Syntax {
            problem: format!(
                "{} at {}",
                e.message().trim_end(),
                line_and_column(text, e.span())
            ),
            fix: "check the TOML syntax there (strings in double quotes, one [table] per name)",
        })?;
        let config: Config = serde_path_to_error::deserialize(document)
            .map_err(|e| shape_error(e.path().to_string(), e.inner().message()))?;
        config.validate()?;
        Ok(config)
    }

    /// Parses and validates JSON text (one object with the same keys as the TOML form). A member
    /// whose value is `null` counts as absent: that is how a template's `AWS::NoValue` may come
    /// out of `Fn::ToJsonString` (SAM CLI's implementation of it renders `null`), and TOML has
    /// no null to mean anything else. A `null` list item stays an error: dropping it could drop
    /// a `require` rule.
    pub fn from_json(text: &str) -> Result<Config, ConfigError> {
        let mut value: serde_json::Value = serde_json::from_str(text).map_err(|e| ConfigError::Syntax {
            problem: format!("JSON: {e}"),
            fix: "check the JSON syntax there",
        })?;
        drop_nulls(&mut value);
        let config: Config = serde_path_to_error::deserialize(value)
            .map_err(|e| shape_error(e.path().to_string(), &e.inner().to_string()))?;
        config.validate()?;
        Ok(config)
    }

    /// Reads and validates a configuration file, TOML or JSON (see [`Config::parse`]).
    pub fn from_file(path: &str) -> Result<Config, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.to_string(),
            source,
        })?;
        Config::parse(&text)
    }

    /// Reads the configuration the way the Lambda binaries do: `CREDBROKER_CONFIG` (TOML or JSON
    /// text) or `CREDBROKER_CONFIG_FILE` (a path).
    pub fn from_env() -> Result<Config, ConfigError> {
        if let Ok(text) = std::env::var(CONFIG_ENV) {
            return Config::parse(&text);
        }
        if let Ok(path) = std::env::var(CONFIG_FILE_ENV) {
            return Config::from_file(&path);
        }
        Err(ConfigError::Missing)
    }

    fn validate(&self) -> Result<(), ConfigError> {
        if let Some(pool) = &self.identity_pool {
            validate_pool(pool)?;
        }
        for (index, origin) in self.allowed_origins.iter().enumerate() {
            validate_origin(&format!("allowed_origins[{index}]"), origin)?;
        }
        within(
            "limits.max_token_bytes",
            self.limits.max_token_bytes,
            512..=1024 * 1024,
            "",
            "use a value such as 16384",
        )?;
        if self.limits.max_body_bytes < self.limits.max_token_bytes + 64 {
            return Err(invalid(
                "limits.max_body_bytes",
                "a body that can hold no token of max_token_bytes",
                "make it at least max_token_bytes + 64",
            ));
        }
        within(
            "limits.leeway_seconds",
            self.limits.leeway_seconds,
            0..=MAX_LEEWAY_SECONDS,
            "expired tokens would stay usable for that long",
            "use 60 (fix the server's clock rather than widening the leeway)",
        )?;
        within(
            "jwks.cooldown_seconds",
            self.jwks.cooldown_seconds,
            1..=3600,
            "0 would let every token with an unknown kid make a key fetch",
            "use 60",
        )?;
        within(
            "jwks.timeout_seconds",
            self.jwks.timeout_seconds,
            1..=30,
            "",
            "use 5",
        )?;
        if self.jwks.min_max_age_seconds > self.jwks.max_max_age_seconds {
            return Err(invalid(
                "jwks.min_max_age_seconds",
                "is larger than jwks.max_max_age_seconds",
                "make min_max_age_seconds <= max_max_age_seconds",
            ));
        }
        for (name, provider) in &self.providers {
            validate_provider(name, provider)?;
            validate_principal_tags(
                name,
                provider,
                self.identity_pool
                    .as_ref()
                    .map_or(PoolMode::Enhanced, |pool| pool.mode),
            )?;
        }
        if let Some(authorizer) = &self.authorizer {
            validate_authorizer(authorizer)?;
        }
        if let Some(identity) = &self.identity {
            validate_identity(identity)?;
        }
        Ok(())
    }

    /// The `[identity_pool]` table, which sign-in cannot run without.
    pub fn require_identity_pool(&self) -> Result<&IdentityPoolConfig, ConfigError> {
        self.identity_pool.as_ref().ok_or_else(|| {
            invalid(
                "identity_pool",
                "is missing, so sign-in has nowhere to exchange tokens",
                "add [identity_pool] with id = \"REGION:UUID\" (only the bearer authorizer and \
                 `credbroker dev` run without it)",
            )
        })
    }

    /// The `[authorizer]` section, which the bearer authorizer cannot run without.
    pub fn require_authorizer(&self) -> Result<&AuthorizerConfig, ConfigError> {
        self.authorizer.as_ref().ok_or_else(|| {
            invalid(
                "authorizer",
                "is missing, so the bearer authorizer would allow nothing",
                "add [[authorizer.allow]] rules, e.g. routes = [\"GET /*\"]",
            )
        })
    }
}

fn validate_authorizer(authorizer: &AuthorizerConfig) -> Result<(), ConfigError> {
    if authorizer.allow.is_empty() {
        return Err(invalid(
            "authorizer.allow",
            "is empty, so every caller would be denied",
            "add [[authorizer.allow]] with routes = [\"METHOD /path\", ...]",
        ));
    }
    for (index, rule) in authorizer.allow.iter().enumerate() {
        if rule.routes.is_empty() {
            return Err(invalid(
                format!("authorizer.allow[{index}].routes"),
                "is empty",
                "list routes such as \"GET /reports/*\", or remove the rule",
            ));
        }
    }
    let routes: usize = authorizer.allow.iter().map(|rule| rule.routes.len()).sum();
    if routes > MAX_AUTHORIZER_ROUTES {
        return Err(invalid(
            "authorizer.allow",
            format!("lists {routes} routes, over {MAX_AUTHORIZER_ROUTES}"),
            "use wildcards, e.g. \"GET /reports/*\"",
        ));
    }
    if authorizer.context_claims.len() > MAX_CONTEXT_CLAIMS {
        return Err(invalid(
            "authorizer.context_claims",
            format!("lists more than {MAX_CONTEXT_CLAIMS} claims"),
            "keep the claims the backend reads",
        ));
    }
    let reserved = ["provider", "subject", "issuer"];
    for claim in &authorizer.context_claims {
        if NEVER_EXPOSED_CLAIMS.contains(&claim.as_str()) || reserved.contains(&claim.as_str()) {
            return Err(invalid(
                "authorizer.context_claims",
                format!(
                    "`{claim}` cannot be passed on (session material, or a name the context already uses)"
                ),
                "remove it from the list",
            ));
        }
    }
    Ok(())
}

fn validate_identity(identity: &IdentityConfig) -> Result<(), ConfigError> {
    // KMS's own KeyId pattern and length (1..=2048), narrowed to the characters ids, ARNs and
    // aliases use: https://docs.aws.amazon.com/kms/latest/APIReference/API_Sign.html
    let key_id = regex_lite::Regex::new(r"^[A-Za-z0-9:/_.+=,@-]{1,2048}$").expect("static regex");
    let keys: Vec<&str> = identity.key_ids().collect();
    if keys.len() > MAX_IDENTITY_KEYS {
        return Err(invalid(
            "identity.published_kms_key_ids",
            format!(
                "{} keys with the signing key, over {MAX_IDENTITY_KEYS}",
                keys.len()
            ),
            "publish only the next and the previous key",
        ));
    }
    for (index, key) in keys.iter().enumerate() {
        let name = match index {
            0 => "identity.kms_key_id".to_string(),
            n => format!("identity.published_kms_key_ids[{}]", n - 1),
        };
        if !key_id.is_match(key) {
            return Err(invalid(
                name,
                format!("`{key}` is not a KMS key id, key ARN or alias"),
                "use the key's ARN, e.g. arn:aws:kms:eu-west-1:111122223333:key/1234abcd-...",
            ));
        }
        if keys[..index].contains(key) {
            return Err(invalid(
                name,
                format!("`{key}` is listed twice"),
                "list each key once",
            ));
        }
    }
    if let Some(issuer) = &identity.issuer {
        validate_url("identity.issuer", issuer)?;
    }
    if let Some(endpoint) = &identity.endpoint {
        validate_url("identity.endpoint", endpoint)?;
    }
    if identity.region.as_deref() == Some("") {
        return Err(invalid(
            "identity.region",
            "is empty",
            "set the key's region, e.g. us-east-1",
        ));
    }
    Ok(())
}

fn validate_pool(pool: &IdentityPoolConfig) -> Result<(), ConfigError> {
    let pool_id = regex_lite::Regex::new(
        r"^[a-z]{2}(-[a-z]+)+-\d:[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$",
    )
    .expect("static regex");
    if !pool_id.is_match(&pool.id) {
        return Err(invalid(
            "identity_pool.id",
            format!("`{}` is not an identity pool id", pool.id),
            "copy it from the Cognito console: REGION:UUID, e.g. us-east-1:0123abcd-...",
        ));
    }
    if pool.region().is_empty() {
        return Err(invalid(
            "identity_pool.region",
            "is empty",
            "set the pool's region, e.g. us-east-1",
        ));
    }
    if let Some(endpoint) = &pool.endpoint {
        validate_url("identity_pool.endpoint", endpoint)?;
    }
    within(
        "identity_pool.max_attempts",
        pool.max_attempts,
        1..=10,
        "",
        "use 3",
    )?;
    within(
        "identity_pool.attempt_timeout_seconds",
        pool.attempt_timeout_seconds,
        1..=30,
        "",
        "use 3",
    )?;
    validate_developer_provider_name(pool)
}

/// `developer_provider_name` is required in developer mode (and meaningless otherwise), shaped
/// as Cognito's `DeveloperProviderName`: 1..=128 of `[\w._-]`.
fn validate_developer_provider_name(pool: &IdentityPoolConfig) -> Result<(), ConfigError> {
    let key = "identity_pool.developer_provider_name";
    match (pool.mode, pool.developer_provider_name.as_deref()) {
        (PoolMode::Enhanced, Some(_)) => Err(invalid(
            key,
            "applies only to mode = \"developer\"",
            "remove it, or set mode = \"developer\"",
        )),
        (PoolMode::Enhanced, None) => Ok(()),
        (PoolMode::Developer, None) => Err(invalid(
            key,
            "is required for mode = \"developer\"",
            "set it to the pool's developer provider name, e.g. \"login.credbroker\"",
        )),
        (PoolMode::Developer, Some(name)) => {
            let well_formed = (1..=128).contains(&name.chars().count())
                && name
                    .chars()
                    .all(|c| c.is_alphanumeric() || matches!(c, '_' | '.' | '-'));
            if well_formed {
                Ok(())
            } else {
                Err(invalid(
                    key,
                    format!("`{name}` is not a developer provider name"),
                    "use 1 to 128 letters, digits, `_`, `.` and `-`, as on the pool",
                ))
            }
        }
    }
}

/// Principal tags are sent by the broker only in developer mode; in enhanced mode Cognito maps
/// claims to tags itself (the pool's principal tag attribute map), so a map here would be
/// silently ignored.
fn validate_principal_tags(name: &str, provider: &ProviderConfig, mode: PoolMode) -> Result<(), ConfigError> {
    let key = format!("providers.{name}.principal_tags");
    if mode == PoolMode::Enhanced && !provider.principal_tags.is_empty() {
        return Err(invalid(
            key,
            "applies only to identity_pool.mode = \"developer\"",
            "in enhanced mode map claims to tags on the pool (SetPrincipalTagAttributeMap; \
             the template's GroupsClaim parameter), or switch to developer mode",
        ));
    }
    tags::validate_map(&provider.principal_tags).map_err(|problem| {
        invalid(
            key,
            problem,
            format!(
                "at most {} tags; names of 1..={} letters, digits, spaces and _.:/=+-@, not starting with aws:",
                tags::MAX_PRINCIPAL_TAGS,
                tags::MAX_TAG_KEY_CHARS
            ),
        )
    })
}

fn validate_origin(key: &str, origin: &str) -> Result<(), ConfigError> {
    let fix = "write scheme://host[:port] with no path, e.g. https://app.example.com";
    let url = Url::parse(origin).map_err(|e| invalid(key, format!("`{origin}`: {e}"), fix))?;
    if url.origin().ascii_serialization() != origin {
        return Err(invalid(key, format!("`{origin}` is not a bare origin"), fix));
    }
    Ok(())
}

/// Whether `url` is http(s) and, when plain `http`, on a loopback host (the only place an
/// unencrypted issuer or key endpoint is acceptable: a local test or dev provider).
pub fn is_acceptable_url(url: &Url) -> bool {
    match url.scheme() {
        "https" => true,
        "http" => is_loopback_host(url),
        _ => false,
    }
}

/// Whether the URL's host is a loopback address or `localhost`.
pub fn is_loopback_host(url: &Url) -> bool {
    match url.host() {
        Some(url::Host::Domain(domain)) => domain == "localhost",
        Some(url::Host::Ipv4(ip)) => ip.is_loopback(),
        Some(url::Host::Ipv6(ip)) => ip.is_loopback(),
        None => false,
    }
}

pub(crate) fn validate_url(key: &str, url: &Url) -> Result<(), ConfigError> {
    if is_acceptable_url(url) {
        Ok(())
    } else {
        Err(invalid(
            key,
            format!("`{url}` is neither https nor http on a loopback host"),
            "use an https:// URL (http:// only for 127.0.0.1 or localhost)",
        ))
    }
}

fn validate_provider(name: &str, provider: &ProviderConfig) -> Result<(), ConfigError> {
    let key = |field: &str| format!("providers.{name}.{field}");
    let name_ok = name.len() <= 64
        && name
            .bytes()
            .next()
            .is_some_and(|b| b.is_ascii_lowercase() || b.is_ascii_digit())
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'_');
    if !name_ok {
        return Err(invalid(
            format!("providers.{name}"),
            "provider names appear in URLs and must be lowercase letters, digits, - and _",
            "rename the table, e.g. [providers.corp]",
        ));
    }
    if name == "dev" {
        return Err(invalid(
            "providers.dev",
            "`dev` is reserved for the dev provider of `credbroker dev`",
            "choose another name",
        ));
    }
    if provider.audiences.is_empty() {
        return Err(invalid(
            key("audiences"),
            "is empty, so no token could ever be accepted",
            "list your app's OAuth client id(s) at this provider",
        ));
    }
    check_kind_only(name, provider)?;
    validate_browser_options(name, provider)?;
    if let Some(arn) = &provider.role_arn {
        validate_role_arn(&key("role_arn"), arn)?;
    }
    for (index, role) in provider.roles.iter().enumerate() {
        validate_role_arn(&key(&format!("roles[{index}].role_arn")), &role.role_arn)?;
    }
    for claim in &provider.claims {
        if NEVER_EXPOSED_CLAIMS.contains(&claim.as_str()) {
            return Err(invalid(
                key("claims"),
                format!("`{claim}` is session material and is never returned"),
                "remove it from the list",
            ));
        }
    }
    if let Some(uri) = &provider.jwks_uri {
        validate_url(&key("jwks_uri"), uri)?;
    }
    crate::provider::validate_kind(name, provider)
}

/// Rejects fields that belong to another kind, which would otherwise be silently ignored.
fn check_kind_only(name: &str, provider: &ProviderConfig) -> Result<(), ConfigError> {
    let owned: [(&str, bool, ProviderKind); 9] = [
        ("issuer", provider.issuer.is_some(), ProviderKind::Oidc),
        (
            "hosted_domains",
            !provider.hosted_domains.is_empty(),
            ProviderKind::Google,
        ),
        ("tenants", !provider.tenants.is_empty(), ProviderKind::Microsoft),
        ("any_tenant", provider.any_tenant, ProviderKind::Microsoft),
        ("issuers", !provider.issuers.is_empty(), ProviderKind::Salesforce),
        (
            "user_pool_id",
            provider.user_pool_id.is_some(),
            ProviderKind::Cognito,
        ),
        (
            "accept_access_tokens",
            provider.accept_access_tokens,
            ProviderKind::Cognito,
        ),
        (
            "access_token_scopes",
            !provider.access_token_scopes.is_empty(),
            ProviderKind::Cognito,
        ),
        (
            "hosted_ui_domain",
            provider.hosted_ui_domain.is_some(),
            ProviderKind::Cognito,
        ),
    ];
    for (field, present, kind) in owned {
        if present && provider.kind != kind {
            return Err(invalid(
                format!("providers.{name}.{field}"),
                format!("applies only to kind = \"{}\"", kind.name()),
                "remove it, or change the kind",
            ));
        }
    }
    Ok(())
}

/// RFC 6749 §3.3: a scope token is printable ASCII without space, `"` or `\\`.
pub(crate) fn is_scope_token(scope: &str) -> bool {
    !scope.is_empty()
        && scope.len() <= 256
        && scope
            .bytes()
            .all(|b| b.is_ascii_graphic() && b != b'"' && b != b'\\')
}

/// Most scopes a browser sign-in may request.
const MAX_BROWSER_SCOPES: usize = 32;

/// `client_id` must be an accepted audience (the ID token's `aud` is the client it was issued
/// to, so any other client's tokens would all be refused); `scopes` must be scope tokens and
/// include `openid` (OIDC Core §3.1.2.1: without it no ID token is issued).
fn validate_browser_options(name: &str, provider: &ProviderConfig) -> Result<(), ConfigError> {
    let key = |field: &str| format!("providers.{name}.{field}");
    if let Some(client_id) = &provider.client_id
        && !provider.audiences.contains(client_id)
    {
        return Err(invalid(
            key("client_id"),
            format!("`{client_id}` is not one of audiences, so its ID tokens would be refused"),
            "add it to audiences, or pick one of them",
        ));
    }
    if provider.scopes.is_empty() {
        return Ok(());
    }
    let fix = "list scopes such as [\"openid\", \"email\", \"profile\"], openid included";
    if provider.scopes.len() > MAX_BROWSER_SCOPES {
        return Err(invalid(
            key("scopes"),
            format!("more than {MAX_BROWSER_SCOPES} scopes"),
            fix,
        ));
    }
    if let Some(scope) = provider.scopes.iter().find(|s| !is_scope_token(s)) {
        return Err(invalid(key("scopes"), format!("`{scope}` is not a scope"), fix));
    }
    if !provider.scopes.iter().any(|s| s == "openid") {
        return Err(invalid(
            key("scopes"),
            "lacks `openid`, so no ID token would be issued",
            fix,
        ));
    }
    Ok(())
}

fn validate_role_arn(key: &str, arn: &str) -> Result<(), ConfigError> {
    // IAM role paths and names are ASCII, at most 512 + 64 characters.
    let role = regex_lite::Regex::new(r"^arn:aws[a-z-]*:iam::\d{12}:role/[A-Za-z0-9_+=,.@/-]+$")
        .expect("static regex");
    if arn.len() <= 640 && role.is_match(arn) {
        Ok(())
    } else {
        Err(invalid(
            key,
            format!("`{arn}` is not an IAM role ARN"),
            "write arn:aws:iam::ACCOUNT:role/NAME",
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const POOL: &str = "[identity_pool]\nid = \"us-east-1:00000000-0000-0000-0000-000000000000\"\n";

    fn error_for(extra: &str) -> String {
        Config::from_toml(&format!("{POOL}{extra}"))
            .unwrap_err()
            .to_string()
    }

    #[test]
    fn the_readme_example_parses() {
        let config = Config::from_toml(&format!(
            "allowed_origins = [\"http://127.0.0.1:8787\"]\n{POOL}region = \"us-east-1\"\n\
             [providers.corp]\nkind = \"microsoft\"\naudiences = [\"app\"]\n\
             tenants = [\"72f988bf-86f1-41af-91ab-2d7cd011db47\"]\nrequire = [\"groups:admins\"]\n"
        ))
        .unwrap();
        assert_eq!(config.require_identity_pool().unwrap().region(), "us-east-1");
        assert_eq!(config.providers["corp"].kind, ProviderKind::Microsoft);
        assert_eq!(config.limits.max_token_bytes, 16 * 1024);
    }

    /// The README example as the template renders it (`Fn::ToJsonString`): the same config.
    const README_JSON: &str = r#"{"allowed_origins":["http://127.0.0.1:8787"],
        "identity_pool":{"id":"us-east-1:00000000-0000-0000-0000-000000000000","region":"us-east-1"},
        "providers":{"corp":{"kind":"microsoft","audiences":["app"],
          "tenants":["72f988bf-86f1-41af-91ab-2d7cd011db47"],"require":["groups:admins"]}}}"#;

    #[test]
    fn json_is_detected_by_content_and_reads_like_toml() {
        let config = Config::parse(&format!("\n  {README_JSON}")).unwrap();
        assert_eq!(config.allowed_origins, ["http://127.0.0.1:8787"]);
        assert_eq!(config.require_identity_pool().unwrap().region(), "us-east-1");
        assert_eq!(config.providers["corp"].kind, ProviderKind::Microsoft);
        assert_eq!(config.limits.max_token_bytes, 16 * 1024);
        // TOML, even starting with blank lines and a comment, is still TOML.
        let toml = Config::parse(&format!("\n# comment\n{POOL}")).unwrap();
        assert_eq!(toml.require_identity_pool().unwrap().region(), "us-east-1");
    }

    #[test]
    fn json_errors_name_the_key_and_the_fix_like_toml_errors() {
        let unknown = Config::parse(&README_JSON.replace("\"audiences\"", "\"audience\""))
            .unwrap_err()
            .to_string();
        assert!(unknown.starts_with("invalid config key `providers."), "{unknown}");
        assert!(
            unknown.contains("unknown field `audience`") && unknown.contains("fix:"),
            "{unknown}"
        );
        let json = Config::parse(&README_JSON.replace("72f988bf-86f1-41af-91ab-2d7cd011db47", "contoso.com"))
            .unwrap_err()
            .to_string();
        let toml = error_for(
            "[providers.corp]\nkind = \"microsoft\"\naudiences = [\"app\"]\ntenants = [\"contoso.com\"]\n",
        );
        assert_eq!(json, toml);
        assert!(
            json.contains("`providers.corp.tenants`") && json.contains("fix:"),
            "{json}"
        );
        let broken = Config::parse("{\"identity_pool\": ").unwrap_err().to_string();
        assert!(broken.starts_with("invalid config: JSON: "), "{broken}");
    }

    #[test]
    fn json_null_members_are_absent_but_null_list_items_are_errors() {
        let config = Config::parse(
            r#"{"allowed_origins":null,"identity_pool":{"id":"us-east-1:00000000-0000-0000-0000-000000000000"},
                "providers":{"google":null,"corp":{"kind":"microsoft","audiences":["app"],
                  "tenants":["72f988bf-86f1-41af-91ab-2d7cd011db47"]}},"authorizer":null}"#,
        )
        .unwrap();
        assert!(config.allowed_origins.is_empty());
        assert_eq!(config.providers.keys().collect::<Vec<_>>(), ["corp"]);
        assert!(config.authorizer.is_none());
        let message = Config::parse(&README_JSON.replace(r#""groups:admins""#, r#""groups:admins",null"#))
            .unwrap_err()
            .to_string();
        assert!(message.contains("null"), "{message}");
    }

    #[test]
    fn region_defaults_to_the_pool_id_prefix() {
        let config = Config::from_toml(POOL).unwrap();
        assert_eq!(config.require_identity_pool().unwrap().region(), "us-east-1");
    }

    #[test]
    fn the_identity_pool_is_only_required_where_it_is_used() {
        let config = Config::from_toml("[[authorizer.allow]]\nroutes = [\"GET /\"]\n").unwrap();
        assert!(config.require_authorizer().is_ok());
        let message = config.require_identity_pool().unwrap_err().to_string();
        assert!(
            message.contains("`identity_pool`") && message.contains("fix:"),
            "{message}"
        );
    }

    #[test]
    fn shape_errors_name_the_key_and_a_fix_without_dumping_the_file() {
        let missing = Config::from_toml("[identity_pool]\nregion = \"us-east-1\"\n")
            .unwrap_err()
            .to_string();
        assert!(
            missing.contains("`identity_pool`")
                && missing.contains("missing field `id`")
                && missing.contains("fix:"),
            "{missing}"
        );
        let wrong_type = error_for("[providers.g]\nkind = \"google\"\naudiences = \"x\"\n");
        assert!(
            wrong_type.contains("`providers.g.audiences`") && wrong_type.contains("fix:"),
            "{wrong_type}"
        );
        let unknown_kind = error_for("[providers.g]\nkind = \"okta\"\naudiences = [\"x\"]\n");
        assert!(unknown_kind.contains("`providers.g.kind`"), "{unknown_kind}");
        let not_a_table = Config::from_toml("identity_pool = 3\n").unwrap_err().to_string();
        assert!(not_a_table.contains("`identity_pool`"), "{not_a_table}");
        let syntax = Config::from_toml("[identity_pool\nid = 1\n")
            .unwrap_err()
            .to_string();
        assert!(
            syntax.contains("line 1") && syntax.contains("fix:") && !syntax.contains('|'),
            "{syntax}"
        );
        for message in [missing, wrong_type, unknown_kind, not_a_table] {
            assert!(
                !message.contains('|') && !message.contains('^'),
                "a parser dump: {message}"
            );
        }
    }

    #[test]
    fn settings_that_switch_protections_off_are_bounded() {
        let cooldown = error_for("[jwks]\ncooldown_seconds = 0\n");
        assert!(
            cooldown.contains("`jwks.cooldown_seconds`")
                && cooldown.contains("0 is outside 1..=3600")
                && cooldown.contains("fix:"),
            "{cooldown}"
        );
        let leeway = error_for("[limits]\nleeway_seconds = 301\n");
        assert!(
            leeway.contains("`limits.leeway_seconds`") && leeway.contains("fix:"),
            "{leeway}"
        );
        Config::from_toml(&format!(
            "{POOL}[limits]\nleeway_seconds = 300\n[jwks]\ncooldown_seconds = 1\n"
        ))
        .unwrap();
    }

    #[test]
    fn cognito_only_settings_are_checked() {
        let cognito =
            "[providers.c]\nkind = \"cognito\"\naudiences = [\"a\"]\nuser_pool_id = \"eu-west-1_Ab1\"\n";
        let scopes_alone = error_for(&format!("{cognito}access_token_scopes = [\"r\"]\n"));
        assert!(
            scopes_alone.contains("accept_access_tokens = true"),
            "{scopes_alone}"
        );
        let bad_scope = error_for(&format!(
            "{cognito}accept_access_tokens = true\naccess_token_scopes = [\"a b\"]\n"
        ));
        assert!(bad_scope.contains("not a scope"), "{bad_scope}");
        let path = error_for(&format!(
            "{cognito}hosted_ui_domain = \"auth.example.com/login\"\n"
        ));
        assert!(path.contains("providers.c.hosted_ui_domain"), "{path}");
        let elsewhere =
            error_for("[providers.g]\nkind = \"google\"\naudiences = [\"a\"]\naccept_access_tokens = true\n");
        assert!(
            elsewhere.contains("applies only to kind = \"cognito\""),
            "{elsewhere}"
        );
        Config::from_toml(&format!(
            "{POOL}{cognito}accept_access_tokens = true\naccess_token_scopes = [\"https://api.example.com/read\"]\n\
             hosted_ui_domain = \"myapp.auth.eu-west-1.amazoncognito.com\"\n"
        ))
        .unwrap();
    }

    #[test]
    fn unknown_keys_are_errors() {
        let message = error_for("[providers.g]\nkind = \"google\"\naudience = [\"x\"]\n");
        assert!(message.contains("audience"), "{message}");
    }

    #[test]
    fn bad_pool_id_names_the_key() {
        let message = Config::from_toml("[identity_pool]\nid = \"nope\"\n")
            .unwrap_err()
            .to_string();
        assert!(
            message.contains("identity_pool.id") && message.contains("fix:"),
            "{message}"
        );
    }

    #[test]
    fn empty_audiences_are_rejected() {
        let message = error_for("[providers.g]\nkind = \"google\"\n");
        assert!(message.contains("providers.g.audiences"), "{message}");
    }

    #[test]
    fn microsoft_needs_tenants_or_any_tenant_but_not_both() {
        let none = error_for("[providers.m]\nkind = \"microsoft\"\naudiences = [\"a\"]\n");
        assert!(none.contains("providers.m.tenants"), "{none}");
        let both = error_for(
            "[providers.m]\nkind = \"microsoft\"\naudiences = [\"a\"]\nany_tenant = true\n\
             tenants = [\"72f988bf-86f1-41af-91ab-2d7cd011db47\"]\n",
        );
        assert!(both.contains("any_tenant"), "{both}");
        let domain = error_for(
            "[providers.m]\nkind = \"microsoft\"\naudiences = [\"a\"]\ntenants = [\"contoso.com\"]\n",
        );
        assert!(domain.contains("not a tenant id"), "{domain}");
    }

    #[test]
    fn fields_of_another_kind_are_rejected() {
        let message = error_for("[providers.g]\nkind = \"google\"\naudiences = [\"a\"]\ntenants = [\"x\"]\n");
        assert!(
            message.contains("providers.g.tenants") && message.contains("microsoft"),
            "{message}"
        );
    }

    #[test]
    fn plain_http_is_only_for_loopback() {
        let remote = error_for(
            "[providers.o]\nkind = \"oidc\"\naudiences = [\"a\"]\nissuer = \"http://idp.example.com\"\n",
        );
        assert!(remote.contains("providers.o.issuer"), "{remote}");
        Config::from_toml(&format!(
            "{POOL}[providers.o]\nkind = \"oidc\"\naudiences = [\"a\"]\nissuer = \"http://127.0.0.1:9000\"\n"
        ))
        .unwrap();
    }

    #[test]
    fn origins_must_be_bare() {
        let message = Config::from_toml(&format!(
            "allowed_origins = [\"https://a.example.com/app\"]\n{POOL}"
        ))
        .unwrap_err()
        .to_string();
        assert!(message.contains("allowed_origins[0]"), "{message}");
    }

    #[test]
    fn the_dev_name_is_reserved() {
        let message = error_for("[providers.dev]\nkind = \"google\"\naudiences = [\"a\"]\n");
        assert!(message.contains("reserved"), "{message}");
    }

    #[test]
    fn role_arns_are_checked() {
        let message =
            error_for("[providers.g]\nkind = \"google\"\naudiences = [\"a\"]\nrole_arn = \"admin\"\n");
        assert!(
            message.contains("providers.g.role_arn") && message.contains("not an IAM role ARN"),
            "{message}"
        );
        let in_roles = error_for(
            "[providers.g]\nkind = \"google\"\naudiences = [\"a\"]\n\
             roles = [{ when = \"hd:x\", role_arn = \"arn:aws:iam::123:role/short-account\" }]\n",
        );
        assert!(in_roles.contains("providers.g.roles[0].role_arn"), "{in_roles}");
        Config::from_toml(&format!(
            "{POOL}[providers.g]\nkind = \"google\"\naudiences = [\"a\"]\n\
             role_arn = \"arn:aws:iam::123456789012:role/path/credbroker-user\"\n"
        ))
        .unwrap();
    }

    #[test]
    fn bad_rules_fail_at_start() {
        let message =
            error_for("[providers.g]\nkind = \"google\"\naudiences = [\"a\"]\nrequire = [\"hd~(\"]\n");
        assert!(message.contains("require"), "{message}");
    }

    #[test]
    fn authorizer_rules_parse_and_are_validated() {
        let config = Config::from_toml(&format!(
            "{POOL}[authorizer]\ncontext_claims = [\"email\"]\n\
             [[authorizer.allow]]\nroutes = [\"GET /me\"]\n\
             [[authorizer.allow]]\nwhen = \"groups:admins\"\nroutes = [\"* /admin/*\"]\n"
        ))
        .unwrap();
        let authorizer = config.require_authorizer().unwrap();
        assert_eq!(authorizer.allow.len(), 2);
        assert_eq!(authorizer.allow[1].routes[0].to_string(), "* /admin/*");
        let missing = Config::from_toml(POOL)
            .unwrap()
            .require_authorizer()
            .unwrap_err()
            .to_string();
        assert!(missing.contains("`authorizer`"), "{missing}");
        let empty = error_for("[authorizer]\n");
        assert!(empty.contains("authorizer.allow"), "{empty}");
        let no_routes = error_for("[[authorizer.allow]]\nroutes = []\n");
        assert!(no_routes.contains("authorizer.allow[0].routes"), "{no_routes}");
        let bad_route = error_for("[[authorizer.allow]]\nroutes = [\"GET reports\"]\n");
        assert!(bad_route.contains("does not start with `/`"), "{bad_route}");
        let bad_rule = error_for("[[authorizer.allow]]\nwhen = \"groups\"\nroutes = [\"GET /\"]\n");
        assert!(bad_rule.contains("groups"), "{bad_rule}");
        let too_many = error_for(&format!(
            "[[authorizer.allow]]\nroutes = [{}]\n",
            vec!["\"GET /x\""; MAX_AUTHORIZER_ROUTES + 1].join(",")
        ));
        assert!(too_many.contains("over 64"), "{too_many}");
        let reserved = error_for(
            "[authorizer]\ncontext_claims = [\"nonce\"]\n[[authorizer.allow]]\nroutes = [\"GET /\"]\n",
        );
        assert!(reserved.contains("authorizer.context_claims"), "{reserved}");
    }

    #[test]
    fn cognito_needs_a_user_pool_id() {
        let message = error_for("[providers.c]\nkind = \"cognito\"\naudiences = [\"a\"]\n");
        assert!(message.contains("user_pool_id"), "{message}");
    }

    #[test]
    fn the_identity_key_is_validated_and_its_region_read_from_the_arn() {
        let arn = "arn:aws:kms:eu-west-1:111122223333:key/0b7e6f4c-3c1a-4d5e-9f00-123456789abc";
        let config = Config::from_toml(&format!(
            "[identity]\nkms_key_id = \"{arn}\"\npublished_kms_key_ids = [\"alias/next\"]\n"
        ))
        .unwrap();
        let identity = config.identity.unwrap();
        assert_eq!(identity.key_region(), Some("eu-west-1"));
        assert_eq!(identity.key_ids().collect::<Vec<_>>(), vec![arn, "alias/next"]);
        let alias = Config::from_toml("[identity]\nkms_key_id = \"alias/a\"\n").unwrap();
        assert_eq!(alias.identity.unwrap().key_region(), None);
        let bad = error_for("[identity]\nkms_key_id = \"key id with spaces\"\n");
        assert!(
            bad.contains("identity.kms_key_id") && bad.contains("fix:"),
            "{bad}"
        );
        let twice = error_for("[identity]\nkms_key_id = \"a\"\npublished_kms_key_ids = [\"b\", \"a\"]\n");
        assert!(twice.contains("published_kms_key_ids[1]"), "{twice}");
        let many = error_for(
            "[identity]\nkms_key_id = \"a\"\npublished_kms_key_ids = [\"b\", \"c\", \"d\", \"e\"]\n",
        );
        assert!(many.contains("over 4"), "{many}");
        let plain = error_for("[identity]\nkms_key_id = \"a\"\nissuer = \"http://api.example.com/auth\"\n");
        assert!(plain.contains("identity.issuer"), "{plain}");
        let unknown = error_for("[identity]\nkms_key_id = \"a\"\nkey = \"b\"\n");
        assert!(unknown.contains("identity"), "{unknown}");
    }

    #[test]
    fn browser_options_are_checked_at_start() {
        let oidc = "[providers.o]\nkind = \"oidc\"\nissuer = \"https://idp.example.com/\"\naudiences = [\"web\", \"mobile\"]\n";
        let config = Config::from_toml(&format!(
            "{oidc}client_id = \"mobile\"\nscopes = [\"openid\", \"groups\"]\nflow = \"id_token\"\n"
        ))
        .unwrap();
        let provider = &config.providers["o"];
        assert_eq!(provider.client_id.as_deref(), Some("mobile"));
        assert_eq!(provider.flow, Some(BrowserFlow::IdToken));
        for (extra, key, problem) in [
            ("client_id = \"other\"", "client_id", "not one of audiences"),
            ("scopes = [\"email\"]", "scopes", "lacks `openid`"),
            ("scopes = [\"openid\", \"a b\"]", "scopes", "is not a scope"),
            ("flow = \"implicit\"", "flow", "unknown variant"),
        ] {
            let message = error_for(&format!("{oidc}{extra}\n"));
            assert!(
                message.contains(&format!("providers.o.{key}")),
                "{extra}: {message}"
            );
            assert!(message.contains(problem), "{extra}: {message}");
        }
    }

    /// The README's Okta, Auth0 and Keycloak recipes are configuration that starts, with each
    /// issuer kept as written.
    #[test]
    fn the_readme_recipes_are_valid_configuration() {
        let recipes = include_str!("../README.md")
            .split("### Recipes")
            .nth(1)
            .and_then(|section| section.split("```toml\n").nth(1))
            .and_then(|block| block.split("```").next())
            .expect("the README has a recipes block");
        let config = Config::from_toml(recipes).unwrap_or_else(|e| panic!("{e}"));
        let issuer = |name: &str| config.providers[name].issuer.as_ref().unwrap().to_string();
        assert_eq!(issuer("auth0"), "https://TENANT.auth0.com/");
        assert_eq!(issuer("okta"), "https://ORG.okta.com");
        assert_eq!(issuer("keycloak"), "https://HOST/realms/REALM");
    }
}
