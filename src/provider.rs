//! Sign-in providers: what each kind means for the accepted issuer, where its keys live, which
//! extra checks its tokens get, and which Logins key Cognito knows it by.
//!
//! A [`Provider`] is built once from its [`ProviderConfig`]; [`Provider::verify`] then takes a raw
//! ID token through every check in the order that never trusts unverified data further than
//! needed: the issuer is checked *before* keys are fetched (so a token naming an arbitrary issuer
//! never makes the broker fetch anything), the signature before any claim is believed.

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

const GOOGLE_ISSUERS: [&str; 2] = ["https://accounts.google.com", "accounts.google.com"];
const GOOGLE_LOGINS_KEY: &str = "accounts.google.com";
const GOOGLE_JWKS: &str = "https://www.googleapis.com/oauth2/v3/certs";
const GOOGLE_AUTHORIZE: &str = "https://accounts.google.com/o/oauth2/v2/auth";
const GOOGLE_TOKEN: &str = "https://oauth2.googleapis.com/token";
const MICROSOFT_HOST: &str = "https://login.microsoftonline.com";
const MICROSOFT_JWKS: &str = "https://login.microsoftonline.com/common/discovery/v2.0/keys";
const SALESFORCE_ISSUERS: [&str; 2] = ["https://login.salesforce.com", "https://test.salesforce.com"];

/// A provider's kind as shown to clients: a configured kind, or the dev provider of
/// `credbroker dev` (which no configuration can name).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// One of the configurable kinds.
    Configured(ProviderKind),
    /// The dev stack's own OpenID provider.
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

/// How the `iss` claim is judged.
#[derive(Debug)]
enum IssuerPolicy {
    /// One of these exact strings.
    OneOf(Vec<String>),
    /// `https://login.microsoftonline.com/{tid}/v2.0` with `tid` equal to the token's own `tid`
    /// and, unless `None`, in the allowlist.
    Microsoft { tenants: Option<Vec<String>> },
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
    issuers: IssuerPolicy,
    keys: KeySource,
    require: Vec<Rule>,
    role_arn: Option<String>,
    roles: Vec<RoleRule>,
    exposed_claims: Vec<String>,
    principal_tags: PrincipalTagMap,
    hosted_domains: Vec<String>,
    /// Cognito only: the scopes a bearer access token must carry, when access tokens are
    /// accepted at all (`None`: ID tokens only).
    access_token_scopes: Option<Vec<String>>,
    /// Cognito only: the hosted UI's origin (`https://DOMAIN`), whose `/oauth2/*` endpoints
    /// browser clients use without fetching AWS's discovery document.
    hosted_ui: Option<String>,
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
        let (issuers, keys, metadata_issuer) = kind_parts(config, &http, &policy);
        Provider {
            name: name.to_string(),
            kind: Kind::Configured(config.kind),
            audiences: config.audiences.clone(),
            issuers,
            keys,
            require: config.require.clone(),
            role_arn: config.role_arn.clone(),
            roles: config.roles.clone(),
            exposed_claims: config.claims.clone(),
            principal_tags: config.principal_tags.clone(),
            hosted_domains: config.hosted_domains.clone(),
            access_token_scopes: config
                .accept_access_tokens
                .then(|| config.access_token_scopes.clone()),
            hosted_ui: config.hosted_ui_domain.as_deref().map(hosted_ui_origin),
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

    /// The dev provider of `credbroker dev`: an OpenID issuer (plain http on loopback) found through
    /// discovery, accepting `client_id`. Only the dev stack calls this.
    pub(crate) fn dev(
        issuer: Issuer,
        client_id: &str,
        limits: &Limits,
        http: reqwest::Client,
        policy: JwksPolicy,
    ) -> Provider {
        let policy = policy.for_provider("dev");
        Provider {
            name: "dev".to_string(),
            kind: Kind::Dev,
            audiences: vec![client_id.to_string()],
            issuers: IssuerPolicy::OneOf(vec![issuer.to_string()]),
            keys: KeySource::Discovered(OnceCell::new()),
            require: Vec::new(),
            role_arn: None,
            roles: Vec::new(),
            exposed_claims: ["email", "name", "groups", "hd", "tid", "organization_id"]
                .map(String::from)
                .to_vec(),
            // `groups` as a tag, so the dev stack in developer mode shows per-route IAM rules.
            principal_tags: PrincipalTagMap::from([("groups".to_string(), "groups".to_string())]),
            hosted_domains: Vec::new(),
            access_token_scopes: None,
            hosted_ui: None,
            browser_client_id: client_id.to_string(),
            browser_scopes: Vec::new(),
            browser_flow: None,
            leeway: limits.leeway(),
            max_token_bytes: limits.max_token_bytes,
            metadata: Some(MetadataCache::new(http.clone(), issuer, policy.clone())),
            http,
            policy,
        }
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
        self.check_issuer(&issuer, token.unverified_claims())?;
        let header = token.header();
        let key = self.key_for(&issuer, header.kid.as_deref(), header.alg).await?;
        let mut claims = token.verify_signature(&key)?;
        token::check_times(&claims, now, self.leeway)?;
        self.check_recipient(&claims, token_use)?;
        token::string_claim(&claims, "sub")?;
        self.check_kind_claims(&claims)?;
        let subject = self.subject(&claims)?;
        add_derived_claims(self.kind, &mut claims);
        Ok(VerifiedToken {
            provider: self.name.clone(),
            logins_key: self.logins_key(&issuer),
            issuer,
            subject,
            claims,
        })
    }

    /// Whether this provider accepts `issuer` as the `iss` of a token with these (still
    /// unverified) claims: how a bearer token, which names no provider, finds its provider.
    pub fn accepts_issuer(&self, issuer: &str, unverified_claims: &Claims) -> bool {
        self.check_issuer(issuer, unverified_claims).is_ok()
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
        match self.kind {
            Kind::Configured(ProviderKind::Google) => ClientEndpoints {
                issuer: GOOGLE_ISSUERS[0].to_string(),
                authorization_endpoint: Some(GOOGLE_AUTHORIZE.to_string()),
                token_endpoint: Some(GOOGLE_TOKEN.to_string()),
                public_client: false,
                ..ClientEndpoints::default()
            },
            Kind::Configured(ProviderKind::Microsoft) => self.microsoft_endpoints(),
            Kind::Configured(ProviderKind::Salesforce) => {
                let issuer = self.first_issuer();
                ClientEndpoints {
                    authorization_endpoint: Some(format!("{issuer}/services/oauth2/authorize")),
                    token_endpoint: Some(format!("{issuer}/services/oauth2/token")),
                    // Salesforce's OpenID logout endpoint (help.salesforce.com, "OpenID Connect
                    // Logout"); its discovery document lists it as end_session_endpoint.
                    end_session_endpoint: Some(format!("{issuer}/services/auth/idp/oidc/logout")),
                    issuer,
                    public_client: true,
                    iss_parameter_supported: false,
                }
            }
            Kind::Configured(ProviderKind::Cognito) => match &self.hosted_ui {
                Some(domain) => ClientEndpoints {
                    issuer: self.first_issuer(),
                    authorization_endpoint: Some(format!("{domain}/oauth2/authorize")),
                    token_endpoint: Some(format!("{domain}/oauth2/token")),
                    public_client: true,
                    // The hosted UI's `/logout` takes `client_id` and `logout_uri`, not RP-Initiated
                    // Logout's parameters, so it is not offered as an end-session endpoint.
                    end_session_endpoint: None,
                    iss_parameter_supported: false,
                },
                None => self.discovered_endpoints().await,
            },
            _ => self.discovered_endpoints().await,
        }
    }

    fn microsoft_endpoints(&self) -> ClientEndpoints {
        // A single-tenant app signs in at its tenant; several tenants or any tenant use the
        // multi-tenant `organizations` authority (work and school accounts only).
        let tenant = match &self.issuers {
            IssuerPolicy::Microsoft {
                tenants: Some(tenants),
            } if tenants.len() == 1 => tenants[0].clone(),
            _ => "organizations".to_string(),
        };
        ClientEndpoints {
            issuer: format!("{MICROSOFT_HOST}/{tenant}/v2.0"),
            authorization_endpoint: Some(format!("{MICROSOFT_HOST}/{tenant}/oauth2/v2.0/authorize")),
            token_endpoint: Some(format!("{MICROSOFT_HOST}/{tenant}/oauth2/v2.0/token")),
            // The v2.0 logout endpoint, as the tenant's discovery document publishes it.
            end_session_endpoint: Some(format!("{MICROSOFT_HOST}/{tenant}/oauth2/v2.0/logout")),
            public_client: true,
            iss_parameter_supported: false,
        }
    }

    async fn discovered_endpoints(&self) -> ClientEndpoints {
        let metadata: Option<Arc<ProviderMetadata>> = match &self.metadata {
            Some(cache) => cache.get().await.ok(),
            None => None,
        };
        ClientEndpoints {
            issuer: self.first_issuer(),
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

    fn first_issuer(&self) -> String {
        match &self.issuers {
            IssuerPolicy::OneOf(issuers) => issuers.first().cloned().unwrap_or_default(),
            IssuerPolicy::Microsoft { .. } => self.microsoft_endpoints().issuer,
        }
    }

    /// Every issuer this provider accepts: what a local identity pool trusts to verify the same
    /// tokens again (the dev stack), locating their keys through [`Self::keys_of`] when a token
    /// arrives. An Entra provider with `any_tenant` has no issuer list to give.
    pub(crate) fn accepted_issuers(&self) -> Vec<Issuer> {
        let issuers: Vec<String> = match &self.issuers {
            // Google's scheme-less issuer form is the same provider as its https form.
            IssuerPolicy::OneOf(issuers) => issuers.iter().filter(|i| i.contains("://")).cloned().collect(),
            IssuerPolicy::Microsoft {
                tenants: Some(tenants),
            } => tenants
                .iter()
                .map(|tid| format!("{MICROSOFT_HOST}/{tid}/v2.0"))
                .collect(),
            IssuerPolicy::Microsoft { tenants: None } => Vec::new(),
        };
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

    /// OIDC Core §3.1.3.7 step 2: the issuer must be exactly the provider's.
    fn check_issuer(&self, issuer: &str, claims: &Claims) -> Result<(), TokenError> {
        match &self.issuers {
            IssuerPolicy::OneOf(accepted) if accepted.iter().any(|a| a == issuer) => Ok(()),
            IssuerPolicy::OneOf(accepted) => Err(TokenError::WrongIssuer {
                expected: accepted.join(" or "),
                found: token::quote_untrusted(issuer),
            }),
            IssuerPolicy::Microsoft { tenants } => check_microsoft_issuer(issuer, claims, tenants.as_deref()),
        }
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

    /// Which token this is and whom it was issued to (OIDC Core §3.1.3.7 step 3). Cognito user
    /// pools sign ID and access tokens with the same keys; `token_use` is judged first, because
    /// an access token has no `aud` and `wrong_token_use` says what is wrong where
    /// `missing_claim` would not. Access tokens are accepted only as bearer tokens, only when
    /// configured, and name their app client in `client_id` instead of `aud`.
    fn check_recipient(&self, claims: &Claims, token_use: TokenUse) -> Result<(), TokenError> {
        if self.kind != Kind::Configured(ProviderKind::Cognito) {
            return token::check_audience(claims, &self.audiences);
        }
        let scopes = self
            .access_token_scopes
            .as_ref()
            .filter(|_| token_use == TokenUse::Bearer);
        let accepted: &[&str] = if scopes.is_some() {
            &["id", "access"]
        } else {
            &["id"]
        };
        expect_claim(claims, "token_use", "wrong_token_use", accepted)?;
        match scopes {
            Some(scopes) if claims.get("token_use") == Some(&Value::from("access")) => {
                let clients: Vec<&str> = self.audiences.iter().map(String::as_str).collect();
                expect_claim(claims, "client_id", "wrong_audience", &clients)?;
                check_scopes(claims, scopes)
            }
            _ => token::check_audience(claims, &self.audiences),
        }
    }

    /// Checks a kind adds on top of the standard ones.
    fn check_kind_claims(&self, claims: &Claims) -> Result<(), TokenError> {
        match self.kind {
            Kind::Configured(ProviderKind::Google) if !self.hosted_domains.is_empty() => {
                let domains: Vec<&str> = self.hosted_domains.iter().map(String::as_str).collect();
                expect_claim(claims, "hd", "wrong_hosted_domain", &domains)
            }
            _ => Ok(()),
        }
    }

    /// Who the user is. Microsoft's `sub` is pairwise per application and `email` is mutable
    /// and unverified, so Entra users are keyed on tenant + object id.
    fn subject(&self, claims: &Claims) -> Result<String, TokenError> {
        match self.kind {
            Kind::Configured(ProviderKind::Microsoft) => {
                let tid = token::string_claim(claims, "tid")?;
                let oid = token::string_claim(claims, "oid")?;
                Ok(format!("{tid}/{oid}"))
            }
            _ => token::string_claim(claims, "sub").map(str::to_string),
        }
    }

    /// The Logins key: Google's fixed name, otherwise the issuer without its scheme and trailing
    /// `/` (how Cognito names an IAM OIDC provider; see [`Issuer::logins_key`]).
    fn logins_key(&self, issuer: &str) -> String {
        match self.kind {
            Kind::Configured(ProviderKind::Google) => GOOGLE_LOGINS_KEY.to_string(),
            _ => logins_key_of(issuer),
        }
    }
}

/// `https://DOMAIN` for a configured hosted UI domain, written bare (`auth.example.com`) or as an
/// origin (`https://auth.example.com`; `http://` only on loopback, for tests).
pub fn hosted_ui_origin(domain: &str) -> String {
    let origin = if domain.contains("://") {
        domain.to_string()
    } else {
        format!("https://{domain}")
    };
    origin.trim_end_matches('/').to_string()
}

/// The issuer policy, key source and discovery issuer (if any) for a configured kind.
fn kind_parts(
    config: &ProviderConfig,
    http: &reqwest::Client,
    policy: &JwksPolicy,
) -> (IssuerPolicy, KeySource, Option<Issuer>) {
    let cache = |url: Url| KeySource::Fixed(Arc::new(JwksCache::new(http.clone(), url, policy.clone())));
    // `jwks_uri` in the config wins over where the kind keeps its keys.
    let keys_or = |default: KeySource| config.jwks_uri.clone().map(cache).unwrap_or(default);
    let fixed = |default: &str| keys_or(cache(Url::parse(default).expect("static URL")));
    let per_issuer = |suffix: &'static str| {
        keys_or(KeySource::PerIssuer {
            suffix,
            caches: Mutex::new(HashMap::new()),
        })
    };
    match config.kind {
        ProviderKind::Google => (
            IssuerPolicy::OneOf(GOOGLE_ISSUERS.map(String::from).to_vec()),
            fixed(GOOGLE_JWKS),
            None,
        ),
        ProviderKind::Microsoft => (
            IssuerPolicy::Microsoft {
                tenants: (!config.any_tenant).then(|| config.tenants.clone()),
            },
            fixed(MICROSOFT_JWKS),
            None,
        ),
        ProviderKind::Salesforce => {
            let issuers = if config.issuers.is_empty() {
                SALESFORCE_ISSUERS.map(String::from).to_vec()
            } else {
                config.issuers.iter().map(Issuer::to_string).collect()
            };
            (IssuerPolicy::OneOf(issuers), per_issuer("/id/keys"), None)
        }
        ProviderKind::Cognito => {
            let pool = config.user_pool_id.as_deref().unwrap_or_default();
            let region = pool.split('_').next().unwrap_or_default();
            let issuer = format!("https://cognito-idp.{region}.amazonaws.com/{pool}");
            let discovery = Issuer::parse(&issuer).ok();
            (
                IssuerPolicy::OneOf(vec![issuer]),
                per_issuer("/.well-known/jwks.json"),
                discovery,
            )
        }
        ProviderKind::Oidc => {
            let issuer = config
                .issuer
                .clone()
                .expect("validated: oidc providers have an issuer");
            let keys = keys_or(KeySource::Discovered(OnceCell::new()));
            (IssuerPolicy::OneOf(vec![issuer.to_string()]), keys, Some(issuer))
        }
    }
}

/// Entra ID v2.0: `iss` is `https://login.microsoftonline.com/{tid}/v2.0`, and `{tid}` must be the
/// token's own `tid` — otherwise a token from one tenant could claim another's issuer.
fn check_microsoft_issuer(
    issuer: &str,
    claims: &Claims,
    tenants: Option<&[String]>,
) -> Result<(), TokenError> {
    let tid = token::string_claim(claims, "tid")?;
    let expected = format!("{MICROSOFT_HOST}/{tid}/v2.0");
    if issuer != expected {
        return Err(TokenError::WrongIssuer {
            expected,
            found: token::quote_untrusted(issuer),
        });
    }
    match tenants {
        Some(allowed) if !allowed.iter().any(|t| t == tid) => Err(TokenError::WrongClaim {
            code: "wrong_tenant",
            claim: "tid",
            expected: allowed.join(" or "),
            found: token::quote_untrusted(tid),
        }),
        _ => Ok(()),
    }
}

/// Every configured scope must be one of the space-separated values of the access token's `scope`
/// (RFC 6749 §3.3).
fn check_scopes(claims: &Claims, required: &[String]) -> Result<(), TokenError> {
    let granted: Vec<&str> = claims
        .get("scope")
        .and_then(Value::as_str)
        .map(|scope| scope.split(' ').collect())
        .unwrap_or_default();
    match required.iter().find(|scope| !granted.contains(&scope.as_str())) {
        None => Ok(()),
        Some(missing) => Err(TokenError::WrongClaim {
            code: "insufficient_scope",
            claim: "scope",
            expected: format!("a scope list containing {missing}"),
            found: token::quote_untrusted(&granted.join(" ")),
        }),
    }
}

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

/// Salesforce ID tokens carry the org only inside `sub`, the identity URL
/// `https://{host}/id/{organization_id}/{user_id}`; rules such as `organization_id:00D...` need
/// it as a claim of its own.
fn add_derived_claims(kind: Kind, claims: &mut Claims) {
    if kind != Kind::Configured(ProviderKind::Salesforce) {
        return;
    }
    let Some(sub) = claims.get("sub").and_then(Value::as_str) else {
        return;
    };
    let Ok(url) = Url::parse(sub) else { return };
    let segments: Vec<&str> = url.path_segments().map(Iterator::collect).unwrap_or_default();
    if let ["id", org, user] = segments.as_slice() {
        let (org, user) = (org.to_string(), user.to_string());
        claims.entry("organization_id").or_insert(Value::String(org));
        claims.entry("user_id").or_insert(Value::String(user));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn claims(value: Value) -> Claims {
        value.as_object().cloned().unwrap_or_default()
    }

    const TENANT: &str = "72f988bf-86f1-41af-91ab-2d7cd011db47";

    #[test]
    fn microsoft_issuer_must_match_the_tokens_own_tenant() {
        let tenants = [TENANT.to_string()];
        let issuer = format!("{MICROSOFT_HOST}/{TENANT}/v2.0");
        assert!(check_microsoft_issuer(&issuer, &claims(json!({"tid": TENANT})), Some(&tenants)).is_ok());
        let other = "00000000-0000-0000-0000-000000000001";
        let lying = check_microsoft_issuer(&issuer, &claims(json!({"tid": other})), None).unwrap_err();
        assert_eq!(lying.code(), "wrong_issuer");
    }

    #[test]
    fn microsoft_tenant_outside_the_allowlist_is_refused() {
        let other = "00000000-0000-0000-0000-000000000001";
        let issuer = format!("{MICROSOFT_HOST}/{other}/v2.0");
        let error = check_microsoft_issuer(
            &issuer,
            &claims(json!({"tid": other})),
            Some(&[TENANT.to_string()]),
        )
        .unwrap_err();
        assert_eq!(error.code(), "wrong_tenant");
        assert!(check_microsoft_issuer(&issuer, &claims(json!({"tid": other})), None).is_ok());
    }

    #[test]
    fn microsoft_without_tid_is_refused() {
        let issuer = format!("{MICROSOFT_HOST}/{TENANT}/v2.0");
        assert_eq!(
            check_microsoft_issuer(&issuer, &claims(json!({})), None)
                .unwrap_err()
                .code(),
            "missing_claim"
        );
    }

    #[test]
    fn salesforce_org_and_user_come_from_the_identity_url() {
        let mut found =
            claims(json!({"sub": "https://login.salesforce.com/id/00Dx0000000BV7z/005x00000012Q9P"}));
        add_derived_claims(Kind::Configured(ProviderKind::Salesforce), &mut found);
        assert_eq!(found["organization_id"], "00Dx0000000BV7z");
        assert_eq!(found["user_id"], "005x00000012Q9P");
    }

    #[test]
    fn derived_claims_are_only_for_salesforce_and_never_overwrite() {
        let sub = "https://login.salesforce.com/id/00D/005";
        let mut other = claims(json!({"sub": sub}));
        add_derived_claims(Kind::Configured(ProviderKind::Oidc), &mut other);
        assert!(!other.contains_key("organization_id"));
        let mut own = claims(json!({"sub": sub, "organization_id": "kept"}));
        add_derived_claims(Kind::Configured(ProviderKind::Salesforce), &mut own);
        assert_eq!(own["organization_id"], "kept");
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
