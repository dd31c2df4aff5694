//! The operator's endpoints of `credbroker serve` (and `credbroker dev`), never of the Lambda:
//!
//! - `GET /healthz`: liveness — the process answers HTTP. Always 200 while it runs.
//! - `GET /readyz`: readiness — 200 when every provider's signing keys can be fetched right now
//!   and the identity pool's endpoint answers, else 503 naming each failing check and why.
//! - `GET /metrics`: every metric of [`crate::telemetry`] in the Prometheus text format.
//!
//! # What "ready" checks, and what it costs upstream
//!
//! A provider is ready when each key set it verifies tokens with is fetched afresh (after
//! discovery, for kinds that need it) and holds a usable key; the broker's key caches are not
//! touched, so a probe neither hides an outage behind cached keys nor forces a refresh. The
//! identity pool is ready when an unsigned `GET` of its endpoint gets any HTTP answer within
//! [`POOL_PROBE_TIMEOUT`]: no API operation is called, so no AWS credentials are needed and no
//! Cognito quota is spent, and a broken network, DNS or endpoint override still shows.
//!
//! One probe runs at a time, and its report is reused for `--readiness-interval` seconds (10 by
//! default): however often `/readyz` is asked, each IdP and the pool see at most one request per
//! interval from it, each bounded by the JWKS fetch timeout or [`POOL_PROBE_TIMEOUT`].

use std::sync::Arc;
use std::time::Duration;

use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use futures_util::future::join_all;
use serde::Serialize;
use tokio::sync::Mutex;
use tokio::time::Instant;

use crate::broker::Broker;
use crate::telemetry::prometheus;

/// Longest wait for the identity pool's endpoint to answer a readiness probe.
pub const POOL_PROBE_TIMEOUT: Duration = Duration::from_secs(3);
/// How long a readiness report is reused when nothing else is configured.
pub const DEFAULT_READINESS_INTERVAL: Duration = Duration::from_secs(10);

/// One readiness check's result.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct Check {
    /// `provider:NAME` or `identity_pool`.
    pub name: String,
    /// Whether it passed.
    pub ready: bool,
    /// Why not, when it failed.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
}

impl Check {
    fn of(name: String, result: Result<(), String>) -> Check {
        match result {
            Ok(()) => Check {
                name,
                ready: true,
                reason: None,
            },
            Err(reason) => Check {
                name,
                ready: false,
                reason: Some(reason),
            },
        }
    }
}

/// The `/readyz` body.
#[derive(Debug, Clone, Serialize)]
pub struct Report {
    /// `ready` or `not_ready`.
    pub status: &'static str,
    /// Every check, providers first (by name), then the identity pool.
    pub checks: Vec<Check>,
}

/// Readiness probing with its cached report.
pub struct Readiness {
    broker: Arc<Broker>,
    interval: Duration,
    last: Mutex<Option<(Instant, Arc<Report>)>>,
}

impl Readiness {
    /// Probes for `broker`, reusing each report for `interval`.
    pub fn new(broker: Arc<Broker>, interval: Duration) -> Readiness {
        Readiness {
            broker,
            interval,
            last: Mutex::new(None),
        }
    }

    /// The current report: the cached one while it is younger than the interval, else a new
    /// probe (concurrent callers wait for the one probe in flight and share its report).
    pub async fn report(&self) -> Arc<Report> {
        let mut last = self.last.lock().await;
        if let Some((at, report)) = last.as_ref()
            && at.elapsed() < self.interval
        {
            return report.clone();
        }
        let report = Arc::new(self.probe().await);
        *last = Some((Instant::now(), report.clone()));
        report
    }

    async fn probe(&self) -> Report {
        let providers = self.broker.providers().map(|provider| async move {
            Check::of(
                format!("provider:{}", provider.name()),
                provider.probe_keys().await,
            )
        });
        let (mut checks, pool) = tokio::join!(join_all(providers), self.probe_pool());
        checks.push(Check::of("identity_pool".into(), pool));
        let ready = checks.iter().all(|check| check.ready);
        for check in checks.iter().filter(|check| !check.ready) {
            tracing::warn!(check = %check.name, reason = check.reason.as_deref().unwrap_or(""), "not ready");
        }
        Report {
            status: if ready { "ready" } else { "not_ready" },
            checks,
        }
    }

    async fn probe_pool(&self) -> Result<(), String> {
        let Some(url) = self.broker.identity_pool().reachability_url() else {
            return Ok(());
        };
        match self
            .broker
            .idp_client()
            .get(url.clone())
            .timeout(POOL_PROBE_TIMEOUT)
            .send()
            .await
        {
            Ok(_) => Ok(()),
            Err(error) if error.is_timeout() => Err(format!(
                "identity pool endpoint {url} did not answer within {} s",
                POOL_PROBE_TIMEOUT.as_secs()
            )),
            Err(error) if error.is_connect() => {
                Err(format!("cannot connect to identity pool endpoint {url}"))
            }
            Err(_) => Err(format!("identity pool endpoint {url} is unreachable")),
        }
    }
}

/// `/healthz`, `/readyz` and `/metrics`, for merging into a server's router.
pub fn routes(readiness: Arc<Readiness>) -> Router {
    Router::new()
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics_text))
        .with_state(readiness)
}

async fn healthz() -> Response {
    (
        [(header::CACHE_CONTROL, "no-store")],
        Json(serde_json::json!({"status": "ok"})),
    )
        .into_response()
}

async fn readyz(State(readiness): State<Arc<Readiness>>) -> Response {
    let report = readiness.report().await;
    let status = if report.status == "ready" {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    (
        status,
        [(header::CACHE_CONTROL, "no-store")],
        Json(report.as_ref().clone()),
    )
        .into_response()
}

async fn metrics_text() -> Response {
    (
        [
            (header::CONTENT_TYPE, prometheus::CONTENT_TYPE),
            (header::CACHE_CONTROL, "no-store"),
        ],
        prometheus::render(),
    )
        .into_response()
}
