//! The dev stack behind `credbroker dev`: a dev OpenID provider ([`idp`]), a local identity pool
//! speaking the Cognito Identity protocol ([`pool`]), and a gateway that verifies SigV4 like API
//! Gateway with `aws_iam` ([`gateway`]), all on one loopback origin next to the broker API and
//! the browser client. Nothing here is reachable from the Lambda binary or `credbroker serve`:
//! only [`DevStack`] adds the dev provider, and only `credbroker dev` builds a `DevStack`.
//!
//! One origin serves everything, so the whole loop is visible at one address:
//!
//! | path                  | what                                                    |
//! |-----------------------|---------------------------------------------------------|
//! | `/auth/*`             | the broker API, with the `dev` provider added            |
//! | `/dev-idp/*`          | the dev OpenID provider (discovery, JWKS, authorize, token, logout) |
//! | `/cognito-identity/`  | the local identity pool, reached by the broker through the AWS SDK |
//! | `/api/*`              | the SigV4 gateway: demo routes or `--upstream`           |
//! | `/`                   | the browser client (embedded `web/`, or `--web DIR`)     |
//!
//! With `--stage NAME` the parts API Gateway serves in AWS (`/auth/*`, `/api/*`, the client at
//! `/web/`) move under `/NAME/`, the way a REST API's stage URL carries them
//! (`https://{api}.execute-api.{region}.amazonaws.com/{stage}/…`,
//! <https://docs.aws.amazon.com/apigateway/latest/developerguide/how-to-call-api.html>), and
//! any other path gets API Gateway's 403 `Missing Authentication Token` (inside the stage, a
//! navigation gets the template's sign-in page instead, as on an unsigned route); the provider
//! and the pool, other services in AWS, stay at the root. Clients sign the stage-prefixed path, as they
//! do against AWS.

pub mod gateway;
mod html;
pub mod idp;
pub mod pool;
pub mod signing_key;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use tokio::net::TcpListener;
use url::Url;

use crate::api::{self, Cors};
use crate::assets::{self, WebFiles};
use crate::broker::Broker;
use crate::config::{Config, ConfigError, IdentityPoolConfig, PoolMode};
use crate::error::ApiError;
use crate::health::{self, Readiness};
use crate::issuer::Issuer;
use crate::jwks::JwksCache;
use crate::pool::CognitoPool;

/// The local pool's id (any well-formed id works; this one is easy to recognise in logs).
pub const DEV_POOL_ID: &str = "us-east-1:00000000-0000-4000-8000-00000000dec0";

/// How `credbroker dev` is set up.
#[derive(Debug, Clone)]
pub struct DevOptions {
    /// Where to listen (port 0 picks a free port).
    pub listen: SocketAddr,
    /// Extra providers (and limits, origins) from a config file; its `[identity_pool]`, if any, is
    /// replaced by the local pool.
    pub config: Option<Config>,
    /// The user's own app, proxied behind the gateway instead of the demo routes.
    pub upstream: Option<Url>,
    /// The browser client's files: the embedded copy, or a directory (`--web DIR`).
    pub web: WebFiles,
    /// Lifetime of credentials the local pool issues.
    pub credential_lifetime: Duration,
    /// How the broker exchanges tokens at the local pool: enhanced, or developer identities.
    pub pool_mode: PoolMode,
    /// The local pool's emulated round trip and quotas.
    pub pool_load: pool::PoolLoad,
    /// An API Gateway stage name to serve the broker, the gateway and the client under
    /// (`/prod/auth/config`, `/prod/api/`, `/prod/web/`), as `sam deploy` does.
    pub stage: Option<String>,
}

impl Default for DevOptions {
    fn default() -> Self {
        DevOptions {
            listen: SocketAddr::from(([127, 0, 0, 1], 8787)),
            config: None,
            upstream: None,
            web: WebFiles::Embedded,
            credential_lifetime: Duration::from_secs(3600),
            pool_mode: PoolMode::Enhanced,
            pool_load: pool::PoolLoad::default(),
            stage: None,
        }
    }
}

/// Why the dev stack could not start.
#[derive(Debug, thiserror::Error)]
pub enum DevError {
    /// The configuration given with `--config` is invalid.
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// The listen address is taken or not allowed.
    #[error("cannot listen on {addr}: {source}")]
    Listen {
        /// The address.
        addr: SocketAddr,
        /// Why.
        source: std::io::Error,
    },
}

/// A bound, ready-to-serve dev stack.
pub struct DevStack {
    /// The origin everything is served on, e.g. `http://127.0.0.1:8787`.
    pub base_url: Url,
    /// Where the broker, the gateway (`api/`) and the client are: `base_url`, or
    /// `base_url/{stage}/` with `--stage`.
    pub app_url: Url,
    /// The local identity pool (tests look credentials up in it).
    pub pool: Arc<pool::LocalPool>,
    /// The dev OpenID provider.
    pub idp: Arc<idp::DevIdp>,
    router: Router,
    listener: TcpListener,
}

impl DevStack {
    /// Binds the listener and builds every part.
    pub async fn bind(options: DevOptions) -> Result<DevStack, DevError> {
        let listener = TcpListener::bind(options.listen)
            .await
            .map_err(|source| DevError::Listen {
                addr: options.listen,
                source,
            })?;
        let bound = listener.local_addr().map_err(|source| DevError::Listen {
            addr: options.listen,
            source,
        })?;
        let base_url = base_url_for(bound);
        let app_url = match &options.stage {
            Some(stage) => base_url
                .join(&format!("{stage}/"))
                .expect("a stage name is a path segment"),
            None => base_url.clone(),
        };
        let mut config = options.config.clone().unwrap_or_else(empty_config);
        let pool_config = local_pool_config(&base_url, config.identity_pool.as_ref(), options.pool_mode);
        config.identity_pool = Some(pool_config.clone());
        let developer = (options.pool_mode == PoolMode::Developer).then(dev_developer_provider);
        let cognito = match &developer {
            Some(developer) => {
                let credentials = aws_credential_types::Credentials::new(
                    &developer.access_key_id,
                    &developer.secret_access_key,
                    None,
                    None,
                    "credbroker-dev",
                );
                CognitoPool::with_credentials(&pool_config, credentials).await
            }
            None => CognitoPool::new(&pool_config).await,
        };
        let mut broker = Broker::new(&config, Arc::new(cognito))?;
        let (http, policy) = broker.idp_parts();

        let issuer = base_url.join("dev-idp").expect("static path");
        // Codes and CORS for the stack's own origins and the configured ones only, as a real
        // provider allows only a client's registered redirect URIs.
        let mut idp_origins = dev_origins(bound);
        idp_origins.extend(broker.allowed_origins().iter().cloned());
        let idp = idp::DevIdp::for_origins(issuer.clone(), idp_origins);
        let dev_keys = Arc::new(JwksCache::new(
            http.clone(),
            base_url.join("dev-idp/jwks").expect("static path"),
            policy.clone(),
        ));
        let dev_issuer = Issuer::parse(issuer.as_str()).expect("the dev issuer is a URL");
        let mut trusted = configured_issuers(&broker);
        trusted.push(pool::TrustedIssuer {
            issuer: dev_issuer.clone(),
            audiences: vec![idp::DEV_CLIENT_ID.to_string()],
            keys: pool::TrustedKeys::Fixed(dev_keys),
        });
        let pool = pool::LocalPool::with_developer(
            DEV_POOL_ID.to_string(),
            trusted,
            developer,
            options.credential_lifetime,
            options.pool_load,
        );
        let dev = idp::provider(&dev_issuer, broker.limits(), http, policy);
        broker.add_provider(dev);
        for origin in dev_origins(bound) {
            broker.allow_origin(origin);
        }
        broker.set_identity_signer(Arc::new(signing_key::DevIdentitySigner::generate(
            app_url.join("auth").expect("static path").to_string(),
        )));
        let router = assemble(Arc::new(broker), idp.clone(), pool.clone(), &options);
        Ok(DevStack {
            base_url,
            app_url,
            pool,
            idp,
            router,
            listener,
        })
    }

    /// Serves until `shutdown` completes, then finishes in-flight requests.
    pub async fn serve(self, shutdown: impl Future<Output = ()> + Send + 'static) -> std::io::Result<()> {
        axum::serve(self.listener, self.router)
            .with_graceful_shutdown(shutdown)
            .await
    }
}

/// The issuers of the providers from `--config`, so the local pool accepts their tokens just as
/// a real pool with those providers configured would: one IAM OIDC provider per issuer, whose
/// client ids are the audiences of every provider sharing it. Keys are looked up through the
/// provider when a token arrives, so a provider that is down now works once it is up.
fn configured_issuers(broker: &Broker) -> Vec<pool::TrustedIssuer> {
    let mut trusted: Vec<pool::TrustedIssuer> = Vec::new();
    for provider in broker.shared_providers() {
        for issuer in provider.accepted_issuers() {
            match trusted.iter_mut().find(|known| known.issuer == issuer) {
                Some(known) => known.audiences.extend(provider.audiences().iter().cloned()),
                None => trusted.push(pool::TrustedIssuer {
                    issuer,
                    audiences: provider.audiences().to_vec(),
                    keys: pool::TrustedKeys::Provider(Arc::clone(provider)),
                }),
            }
        }
    }
    trusted
}

/// Everything on one router.
fn assemble(
    broker: Arc<Broker>,
    idp: Arc<idp::DevIdp>,
    pool: Arc<pool::LocalPool>,
    options: &DevOptions,
) -> Router {
    // Only the broker API refuses unlisted origins; the dev provider and the gateway behave like
    // the real services they stand in for.
    // Where API Gateway's routes start: `/{stage}` under a stage, the root otherwise.
    let stage_path = options
        .stage
        .as_ref()
        .map_or_else(String::new, |stage| format!("/{stage}"));
    let cors = Cors::refusing(broker.allowed_origins(), &format!("{stage_path}/auth/"));
    let settings = gateway::GatewaySettings {
        region: broker.region().to_string(),
        upstream: options.upstream.clone(),
        stage: options.stage.clone(),
    };
    let gateway = gateway::router(pool.clone(), settings);
    let other_services = Router::new()
        .nest("/dev-idp", idp.router())
        // nest_service routes `/cognito-identity/`, the path the SDK posts to, to the pool.
        .nest_service("/cognito-identity", pool.router())
        .merge(health::routes(Arc::new(Readiness::new(
            broker.clone(),
            health::DEFAULT_READINESS_INTERVAL,
        ))));
    // What API Gateway serves in AWS.
    let gateway_served = Router::new().nest("/api", gateway).merge(api::routes(broker));
    let app = match &options.stage {
        None => other_services
            .merge(gateway_served)
            .merge(assets::router(options.web.clone(), "")),
        Some(stage) => other_services
            .nest(
                &stage_path,
                gateway_served.merge(assets::router(options.web.clone(), "/web")),
            )
            .fallback_service(gateway::unrouted(stage)),
    };
    let app = app.method_not_allowed_fallback(|| async { ApiError::MethodNotAllowed });
    api::with_cors(app, cors)
}

/// The origin clients use: a wildcard listen address is reached through loopback.
fn base_url_for(bound: SocketAddr) -> Url {
    let host = if bound.ip().is_unspecified() {
        "127.0.0.1".to_string()
    } else {
        match bound {
            SocketAddr::V4(v4) => v4.ip().to_string(),
            SocketAddr::V6(v6) => format!("[{}]", v6.ip()),
        }
    };
    Url::parse(&format!("http://{host}:{}/", bound.port())).expect("host and port make a URL")
}

/// The stack's own origins, under both loopback names people type.
fn dev_origins(bound: SocketAddr) -> Vec<String> {
    let own = base_url_for(bound).origin().ascii_serialization();
    vec![own, format!("http://localhost:{}", bound.port())]
}

/// The developer provider name of the local pool in developer mode.
pub const DEV_DEVELOPER_PROVIDER: &str = "login.credbroker.dev";

/// The broker's pool settings pointed at the local pool, through the real SDK.
fn local_pool_config(
    base_url: &Url,
    configured: Option<&IdentityPoolConfig>,
    mode: PoolMode,
) -> IdentityPoolConfig {
    let defaults = (
        crate::config::default_pool_attempt_timeout(),
        crate::config::default_pool_max_attempts(),
    );
    let (attempt_timeout_seconds, max_attempts) =
        configured.map_or(defaults, |pool| (pool.attempt_timeout_seconds, pool.max_attempts));
    IdentityPoolConfig {
        id: DEV_POOL_ID.to_string(),
        region: Some("us-east-1".to_string()),
        endpoint: Some(base_url.join("cognito-identity").expect("static path")),
        attempt_timeout_seconds,
        max_attempts,
        mode,
        developer_provider_name: (mode == PoolMode::Developer).then(|| DEV_DEVELOPER_PROVIDER.to_string()),
    }
}

/// The developer provider of the local pool, with a fresh random key pair that only this
/// process's broker knows (it plays the broker's IAM credentials).
fn dev_developer_provider() -> pool::DeveloperProvider {
    let (access_key_id, secret_access_key) = pool::random_key_pair("AKIA");
    pool::DeveloperProvider {
        name: DEV_DEVELOPER_PROVIDER.to_string(),
        access_key_id,
        secret_access_key,
    }
}

fn empty_config() -> Config {
    Config::from_toml("").expect("an empty config is valid")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wildcard_listen_addresses_are_reached_through_loopback() {
        let url = base_url_for(SocketAddr::from(([0, 0, 0, 0], 8787)));
        assert_eq!(url.as_str(), "http://127.0.0.1:8787/");
        let v6 = base_url_for("[::1]:9000".parse().unwrap());
        assert_eq!(v6.as_str(), "http://[::1]:9000/");
    }

    #[test]
    fn both_loopback_names_are_allowed_origins() {
        let origins = dev_origins(SocketAddr::from(([127, 0, 0, 1], 8787)));
        assert_eq!(origins, ["http://127.0.0.1:8787", "http://localhost:8787"]);
    }

    #[test]
    fn the_dev_pool_config_is_valid() {
        let url = Url::parse("http://127.0.0.1:8787/").unwrap();
        let pool = local_pool_config(&url, empty_config().identity_pool.as_ref(), PoolMode::Enhanced);
        assert_eq!(pool.region(), "us-east-1");
        assert_eq!(pool.max_attempts, 3);
    }
}
