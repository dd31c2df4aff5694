//! Sign-in providers: what each kind means for the accepted issuer, where its keys live, which
//! extra checks its tokens get, and which Logins key Cognito knows it by.
//!
//! A [`Provider`] is built once from its [`ProviderConfig`]; [`Provider::verify`] then takes a raw
//! ID token through every check in the order that never trusts unverified data further than
//! needed: the issuer is checked *before* keys are fetched (so a token naming an arbitrary issuer
//! never makes the broker fetch anything), the signature before any claim is believed.
//!
//! Each kind lives in its own module (`google`, `microsoft`, `salesforce`, `cognito`, `oidc`),
//! holding that kind's settings typed and implementing `KindRules`; everything common to all
//! kinds (audiences, rules, roles, key caches, limits) stays here. Adding a kind means a variant of
//! [`ProviderKind`] (with its name), one module implementing `KindRules` with its tests, its
//! kind-only keys in `config::check_kind_only`, and one line in `kind_rules`.

mod cognito;
mod google;
mod microsoft;
mod oidc;
mod salesforce;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use serde_json::Value;
use tokio::sync::OnceCell;
use url::Url;

use crate::config::{BrowserFlow, Limits, ProviderConfig, ProviderKind, RoleRule};
use crate::discovery::{MetadataCache, ProviderMetadata};
use crate::issuer::{Issuer, logins_key_of};
use crate::jwks::{JwksCache, JwksPolicy};
use crate::key::{Algorithm, VerifyingKey};
use crate::rules::Rule;
use crate::tags::{PrincipalTagMap, PrincipalTags};
use crate::token::{self, Claims, TokenError, UnverifiedToken};

pub use cognito::hosted_ui_origin;

/// A provider's kind as shown to clients: a configured kind, or the dev provider of
/// `credbroker dev` (which no configuration can name).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// One of the configurable kinds.
    Configured(ProviderKind),
    /// The dev stack's own OpenID provider (an `oidc` provider that `crate::local` builds and
    /// labels so).
    Dev,
}

impl Kind {
    /// The kind's name in `/auth/config`.
    pub fn name(self) -> &'static str {
        match self {
            Kind::Configured(kind) => kind.name(),
            Kind::Dev => "dev",
        }
    }
}

/// What one kind of provider means: the small interface every kind module implements. The
/// provided methods are the standard OpenID behaviour a kind keeps unless it says otherwise.
trait KindRules: std::fmt::Debug + Send + Sync {
    /// OIDC Core §3.1.3.7 step 2: whether `iss` (with the still unverified claims) is this
    /// provider's.
    fn check_issuer(&self, issuer: &str, claims: &Claims) -> Result<(), TokenError>;

    /// Every issuer accepted, in URL form (what a local identity pool trusts; may be empty).
    fn accepted_issuers(&self) -> Vec<String>;

    /// The issuer as browser clients are shown it.
    fn shown_issuer(&self) -> String;

    /// Where the kind keeps its signing keys (unless `jwks_uri` overrides it).
    fn key_home(&self) -> KeyHome;

    /// The issuer whose discovery document the kind reads, if any.
    fn discovery(&self) -> Option<Issuer> {
        None
    }

    /// Endpoints for browser clients known without discovery; `None` reads them from discovery.
    fn fixed_endpoints(&self) -> Option<ClientEndpoints>;

    /// Which token this is and whom it was issued to (OIDC Core §3.1.3.7 step 3).
    fn check_recipient(
        &self,
        claims: &Claims,
        audiences: &[String],
        _token_use: TokenUse,
    ) -> Result<(), TokenError> {
        token::check_audience(claims, audiences)
    }

    /// Checks the kind adds on top of the standard ones.
    fn check_claims(&self, _claims: &Claims) -> Result<(), TokenError> {
        Ok(())
    }

    /// Who the user is: `sub` unless the kind knows better.
    fn subject(&self, claims: &Claims) -> Result<String, TokenError> {
        token::string_claim(claims, "sub").map(str::to_string)
    }

    /// The Logins key: the issuer without its scheme and trailing `/` (how Cognito names an IAM
    /// OIDC provider; see [`Issuer::logins_key`]) unless the kind has a fixed name.
    fn logins_key(&self, issuer: &str) -> String {
        logins_key_of(issuer)
    }

    /// Claims derived from the verified ones (never overwriting what the token has).
    fn add_derived_claims(&self, _claims: &mut Claims) {}
}

/// The one dispatch from a configured kind to its module.
fn kind_rules(config: &ProviderConfig) -> Box<dyn KindRules> {
    match config.kind {
        ProviderKind::Google => Box::new(google::Google::from_config(config)),
        ProviderKind::Microsoft => Box::new(microsoft::Microsoft::from_config(config)),
        ProviderKind::Salesforce => Box::new(salesforce::Salesforce::from_config(config)),
        ProviderKind::Cognito => Box::new(cognito::Cognito::from_config(config)),
        ProviderKind::Oidc => Box::new(oidc::Oidc::new(
            config
                .issuer
                .clone()
                .expect("validated: oidc providers have an issuer"),
        )),
    }
}

/// The kind's own checks of its settings at start (key + fix errors); [`kind_rules`] builds
/// from settings that passed them. Google has none beyond the kind-only keys.
pub(crate) fn validate_kind(name: &str, config: &ProviderConfig) -> Result<(), crate::config::ConfigError> {
    match config.kind {
        ProviderKind::Google => Ok(()),
        ProviderKind::Microsoft => microsoft::validate(name, config),
        ProviderKind::Salesforce => salesforce::validate(name, config),
        ProviderKind::Cognito => cognito::validate(name, config),
        ProviderKind::Oidc => oidc::validate(name, config),
    }
}

/// Where a kind keeps its signing keys.
#[derive(Debug, Clone, Copy)]
enum KeyHome {
    /// One JWKS for every accepted issuer (Google, Microsoft's common keys).
    Fixed(&'static str),
    /// A JWKS per accepted issuer at `{issuer}{suffix}` (Salesforce My Domain hosts, Cognito).
    PerIssuer(&'static str),
    /// The `jwks_uri` of the issuer's discovery document (any OpenID issuer).
    Discovered,
}

/// Where an issuer's signing keys come from.
#[derive(Debug)]
enum KeySource {
    /// One JWKS for every accepted issuer (Google, Microsoft's common keys, an override).
    Fixed(Arc<JwksCache>),
    /// A JWKS per accepted issuer at `{issuer}{suffix}` (Salesforce My Domain hosts, Cognito).
    PerIssuer {
        suffix: &'static str,
        caches: Mutex<HashMap<String, Arc<JwksCache>>>,
    },
    /// The `jwks_uri` of the issuer's discovery document (any OpenID issuer).
    Discovered(OnceCell<Arc<JwksCache>>),
}

/// Endpoints published to browser clients in `/auth/config`.
#[derive(Debug, Clone, Default, serde::Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ClientEndpoints {
    /// The issuer as the client should show it.
    pub issuer: String,
    /// Where the browser is sent to sign in.
    pub authorization_endpoint: Option<String>,
    /// Where a public client exchanges its code.
    pub token_endpoint: Option<String>,
    /// Whether the provider lets a browser app exchange a code without a client secret (PKCE).
    pub public_client: bool,
    /// `end_session_endpoint` (OpenID Connect RP-Initiated Logout 1.0 §2): where the client
    /// sends the browser on sign-out to end the provider's session too.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub end_session_endpoint: Option<String>,
    /// `authorization_response_iss_parameter_supported` (RFC 9207 §3): the provider puts `iss`
    /// in every authorization response, so the client must refuse one without it.
    pub iss_parameter_supported: bool,
}

/// Where a token is presented: the checks differ only for Cognito access tokens, which a provider
/// may accept as bearer tokens (`accept_access_tokens`) but never at sign-in, since Cognito
/// Identity takes only ID tokens.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TokenUse {
    /// `POST /auth/signin/{provider}`: an ID token.
    SignIn,
    /// `Authorization: Bearer` at the bearer authorizer.
    Bearer,
}

/// A token that passed every check of its provider.
#[derive(Debug, Clone)]
pub struct VerifiedToken {
    /// The provider's configured name.
    pub provider: String,
    /// The `iss` claim.
    pub issuer: String,
    /// The key of this token in Cognito's `Logins` map.
    pub logins_key: String,
    /// Who the user is for this provider (Microsoft: `tid/oid`; others: `sub`).
    pub subject: String,
    /// The verified claims, plus claims derived from them (Salesforce `organization_id`).
    pub claims: Claims,
}

/// One configured provider.
#[derive(Debug)]
pub struct Provider {
    name: String,
    kind: Kind,
    audiences: Vec<String>,
    /// What the kind means, with its own settings.
    rules: Box<dyn KindRules>,
    keys: KeySource,
    require: Vec<Rule>,
    role_arn: Option<String>,
    roles: Vec<RoleRule>,
    exposed_claims: Vec<String>,
    principal_tags: PrincipalTagMap,
    /// What the browser client signs in with: client id, scopes (empty: the client's default)
    /// and flow (`None`: by whether the token endpoint serves public clients).
    browser_client_id: String,
    browser_scopes: Vec<String>,
    browser_flow: Option<BrowserFlow>,
    leeway: Duration,
    max_token_bytes: usize,
    /// The discovery document, for kinds whose endpoints are not fixed.
    metadata: Option<MetadataCache>,
    http: reqwest::Client,
    policy: JwksPolicy,
}

impl Provider {
    /// Builds a provider from validated configuration.
    pub fn from_config(
        name: &str,
        config: &ProviderConfig,
        limits: &Limits,
        http: reqwest::Client,
        policy: JwksPolicy,
    ) -> Provider {
        let policy = policy.for_provider(name);
        let rules = kind_rules(config);
        let keys = key_source(rules.key_home(), config.jwks_uri.clone(), &http, &policy);
        let metadata_issuer = rules.discovery();
        Provider {
            name: name.to_string(),
            kind: Kind::Configured(config.kind),
            audiences: config.audiences.clone(),
            rules,
            keys,
            require: config.require.clone(),
            role_arn: config.role_arn.clone(),
            roles: config.roles.clone(),
            exposed_claims: config.claims.clone(),
            principal_tags: config.principal_tags.clone(),
            browser_client_id: config
                .client_id
                .clone()
                .or_else(|| config.audiences.first().cloned())
                .unwrap_or_default(),
            browser_scopes: config.scopes.clone(),
            browser_flow: config.flow,
            leeway: limits.leeway(),
            max_token_bytes: limits.max_token_bytes,
            metadata: metadata_issuer.map(|issuer| MetadataCache::new(http.clone(), issuer, policy.clone())),
            http,
            policy,
        }
    }

    /// The provider, shown to clients as `kind` (the dev stack shows its own provider as
    /// [`Kind::Dev`]).
    pub(crate) fn shown_as(mut self, kind: Kind) -> Provider {
        self.kind = kind;
        self
    }

    /// The configured name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The kind.
    pub fn kind(&self) -> Kind {
        self.kind
    }

    /// The accepted audiences (client ids).
    pub fn audiences(&self) -> &[String] {
        &self.audiences
    }

    /// The client id the browser client signs in with (`client_id`, else the first audience).
    pub fn browser_client_id(&self) -> &str {
        &self.browser_client_id
    }

    /// The scopes the browser client requests; empty leaves them to the client.
    pub fn browser_scopes(&self) -> &[String] {
        &self.browser_scopes
    }

    /// The browser flow: as configured, else `code` (+ PKCE) where the token endpoint serves
    /// public clients and the implicit `id_token` flow where it does not.
    pub fn browser_flow(&self, endpoints: &ClientEndpoints) -> BrowserFlow {
        self.browser_flow.unwrap_or(if endpoints.public_client {
            BrowserFlow::Code
        } else {
            BrowserFlow::IdToken
        })
    }

    /// Runs every check on a raw token presented as `token_use`.
    pub async fn verify(
        &self,
        raw: &str,
        token_use: TokenUse,
        now: SystemTime,
    ) -> Result<VerifiedToken, TokenError> {
        let token = UnverifiedToken::parse(raw, self.max_token_bytes)?;
        // The issuer decides which keys to fetch, so it is judged before any fetch happens.
        let issuer = token.issuer()?.to_string();
        self.rules.check_issuer(&issuer, token.unverified_claims())?;
        let header = token.header();
        let key = self.key_for(&issuer, header.kid.as_deref(), header.alg).await?;
        let mut claims = token.verify_signature(&key)?;
        token::check_times(&claims, now, self.leeway)?;
        self.rules.check_recipient(&claims, &self.audiences, token_use)?;
        token::string_claim(&claims, "sub")?;
        self.rules.check_claims(&claims)?;
        let subject = self.rules.subject(&claims)?;
        self.rules.add_derived_claims(&mut claims);
        Ok(VerifiedToken {
            provider: self.name.clone(),
            logins_key: self.rules.logins_key(&issuer),
            issuer,
            subject,
            claims,
        })
    }

    /// Whether this provider accepts `issuer` as the `iss` of a token with these (still
    /// unverified) claims: how a bearer token, which names no provider, finds its provider.
    pub fn accepts_issuer(&self, issuer: &str, unverified_claims: &Claims) -> bool {
        self.rules.check_issuer(issuer, unverified_claims).is_ok()
    }

    /// The first `require` rule the claims break, if any.
    pub fn unmet_rule(&self, claims: &Claims) -> Option<&Rule> {
        crate::rules::first_unmet(&self.require, claims)
    }

    /// The role to request: the first matching role rule's, else the provider's default.
    pub fn role_for(&self, claims: &Claims) -> Option<&str> {
        self.roles
            .iter()
            .find(|role| role.when.holds(claims))
            .map(|role| role.role_arn.as_str())
            .or(self.role_arn.as_deref())
    }

    /// The principal tags the claims give (developer pool mode; see [`crate::tags`]).
    pub fn principal_tags(&self, claims: &Claims) -> PrincipalTags {
        crate::tags::from_claims(&self.principal_tags, claims)
    }

    /// The configured subset of claims that may be returned to the browser.
    pub fn exposed_claims(&self, claims: &Claims) -> Claims {
        self.exposed_claims
            .iter()
            .filter_map(|name| claims.get(name).map(|value| (name.clone(), value.clone())))
            .collect()
    }

    /// Endpoints for browser clients. Fixed for the big providers; from discovery otherwise
    /// (`None` fields when discovery is unavailable right now).
    pub async fn client_endpoints(&self) -> ClientEndpoints {
        match self.rules.fixed_endpoints() {
            Some(endpoints) => endpoints,
            None => self.discovered_endpoints().await,
        }
    }

    async fn discovered_endpoints(&self) -> ClientEndpoints {
        let metadata: Option<Arc<ProviderMetadata>> = match &self.metadata {
            Some(cache) => cache.get().await.ok(),
            None => None,
        };
        ClientEndpoints {
            issuer: self.rules.shown_issuer(),
            authorization_endpoint: metadata
                .as_ref()
                .and_then(|m| m.authorization_endpoint.as_ref().map(Url::to_string)),
            token_endpoint: metadata
                .as_ref()
                .and_then(|m| m.token_endpoint.as_ref().map(Url::to_string)),
            end_session_endpoint: metadata
                .as_ref()
                .and_then(|m| m.end_session_endpoint.as_ref().map(Url::to_string)),
            public_client: true,
            iss_parameter_supported: metadata.as_ref().is_some_and(|m| m.iss_parameter_supported),
        }
    }

    /// Every issuer this provider accepts: what a local identity pool trusts to verify the same
    /// tokens again (the dev stack), locating their keys through [`Self::keys_of`] when a token
    /// arrives. An Entra provider with `any_tenant` has no issuer list to give.
    pub(crate) fn accepted_issuers(&self) -> Vec<Issuer> {
        let issuers = self.rules.accepted_issuers();
        issuers
            .iter()
            .filter_map(|issuer| Issuer::parse(issuer).ok())
            .collect()
    }

    /// The key cache of one of [`Self::accepted_issuers`] (only those: per-issuer caches are
    /// bounded by that list), located now, discovery included, so an issuer that was down a
    /// moment ago is found as soon as it is up.
    pub(crate) async fn keys_of(&self, issuer: &Issuer) -> Result<Arc<JwksCache>, TokenError> {
        self.cache_for(issuer.as_str()).await
    }

    /// Whether this provider's signing keys can be loaded right now (readiness): every key set
    /// its tokens would be verified with is fetched afresh (discovery first, where the kind
    /// needs it) and must hold a usable key. The reason names the first that fails.
    pub async fn probe_keys(&self) -> Result<(), String> {
        let caches = match &self.keys {
            KeySource::Fixed(cache) => vec![cache.clone()],
            KeySource::PerIssuer { .. } | KeySource::Discovered(_) => {
                let mut caches = Vec::new();
                for issuer in self.accepted_issuers() {
                    caches.push(self.keys_of(&issuer).await.map_err(|error| error.to_string())?);
                }
                caches
            }
        };
        for cache in caches {
            cache.probe().await?;
        }
        Ok(())
    }

    async fn key_for(
        &self,
        issuer: &str,
        kid: Option<&str>,
        alg: Algorithm,
    ) -> Result<Arc<VerifyingKey>, TokenError> {
        let cache = self.cache_for(issuer).await?;
        Ok(cache.key(kid, alg).await?)
    }

    async fn cache_for(&self, issuer: &str) -> Result<Arc<JwksCache>, TokenError> {
        match &self.keys {
            KeySource::Fixed(cache) => Ok(cache.clone()),
            KeySource::PerIssuer { suffix, caches } => Ok(self.per_issuer_cache(issuer, suffix, caches)),
            KeySource::Discovered(cell) => {
                let metadata = self.metadata.as_ref().ok_or_else(|| {
                    TokenError::KeysUnavailable("no discovery configured for this provider".into())
                })?;
                cell.get_or_try_init(|| async {
                    let document = metadata
                        .get()
                        .await
                        .map_err(|e| TokenError::KeysUnavailable(e.to_string()))?;
                    Ok::<_, TokenError>(Arc::new(JwksCache::new(
                        self.http.clone(),
                        document.jwks_uri.clone(),
                        self.policy.clone(),
                    )))
                })
                .await
                .cloned()
            }
        }
    }

    /// One cache per accepted issuer; only issuers that passed [`Self::check_issuer`] get here,
    /// so the map is bounded by the configured allowlist.
    fn per_issuer_cache(
        &self,
        issuer: &str,
        suffix: &str,
        caches: &Mutex<HashMap<String, Arc<JwksCache>>>,
    ) -> Arc<JwksCache> {
        let mut caches = caches.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        caches
            .entry(issuer.to_string())
            .or_insert_with(|| {
                let url = Url::parse(&format!("{}{suffix}", issuer.trim_end_matches('/')))
                    .expect("accepted issuers are URLs from validated config");
                Arc::new(JwksCache::new(self.http.clone(), url, self.policy.clone()))
            })
            .clone()
    }
}

/// Where this provider's keys come from: `jwks_uri` in the config wins over the kind's own home.
fn key_source(
    home: KeyHome,
    jwks_uri: Option<Url>,
    http: &reqwest::Client,
    policy: &JwksPolicy,
) -> KeySource {
    let cache = |url: Url| KeySource::Fixed(Arc::new(JwksCache::new(http.clone(), url, policy.clone())));
    if let Some(url) = jwks_uri {
        return cache(url);
    }
    match home {
        KeyHome::Fixed(url) => cache(Url::parse(url).expect("static URL")),
        KeyHome::PerIssuer(suffix) => KeySource::PerIssuer {
            suffix,
            caches: Mutex::new(HashMap::new()),
        },
        KeyHome::Discovered => KeySource::Discovered(OnceCell::new()),
    }
}

/// The issuer must be exactly one of `accepted`.
fn one_of_issuers<S: AsRef<str>>(accepted: &[S], issuer: &str) -> Result<(), TokenError> {
    if accepted.iter().any(|a| a.as_ref() == issuer) {
        return Ok(());
    }
    let accepted: Vec<&str> = accepted.iter().map(AsRef::as_ref).collect();
    Err(TokenError::WrongIssuer {
        expected: accepted.join(" or "),
        found: token::quote_untrusted(issuer),
    })
}

/// The string claim `claim` must be one of `accepted`, else `code`.
fn expect_claim(
    claims: &Claims,
    claim: &'static str,
    code: &'static str,
    accepted: &[&str],
) -> Result<(), TokenError> {
    let found = claims.get(claim).and_then(Value::as_str);
    if found.is_some_and(|value| accepted.contains(&value)) {
        return Ok(());
    }
    Err(TokenError::WrongClaim {
        code,
        claim,
        expected: accepted.join(" or "),
        found: found.map_or_else(|| "(none)".to_string(), token::quote_untrusted),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn claims(value: Value) -> Claims {
        value.as_object().cloned().unwrap_or_default()
    }

    #[test]
    fn expect_claim_names_what_was_found() {
        let error = expect_claim(
            &claims(json!({"token_use": "access"})),
            "token_use",
            "wrong_token_use",
            &["id"],
        )
        .unwrap_err();
        assert_eq!(error.code(), "wrong_token_use");
        assert!(error.to_string().contains("expected id, found access"), "{error}");
    }
}
