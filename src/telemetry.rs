//! Metrics: every metric's name and labels, in one place, and the two places they go.
//!
//! Code records through the [`metrics`] facade (`metrics::counter!(telemetry::SIGNINS, ...)`),
//! so recording is one line at the call site and costs nothing when no recorder is installed.
//! The process picks the recorder:
//!
//! - the Lambda binaries: [`emf`], CloudWatch's embedded metric format — one JSON log line per
//!   invocation (rarely two), no API call and no added latency;
//! - `credbroker serve` and `credbroker dev`: [`prometheus`], the Prometheus text format at
//!   `GET /metrics` (`metrics-exporter-prometheus` without its HTTP listener or push gateway).
//!
//! # Metrics
//!
//! | name | kind | labels | what |
//! |---|---|---|---|
//! | [`SIGNINS`] | counter | `provider`, `code`, `outcome` | sign-ins answered |
//! | [`SIGNIN_DURATION`] | histogram (s) | `provider`, `outcome` | time to answer a sign-in |
//! | [`COGNITO_CALL_DURATION`] | histogram (s) | `operation` | one identity-pool call, retries included |
//! | [`COGNITO_THROTTLES`] | counter | `operation` | calls answered throttled after the SDK's retries (the broker's own backoff retries count again) |
//! | [`JWKS_FETCHES`] | counter | `provider` | key-set fetches started |
//! | [`JWKS_FETCH_FAILURES`] | counter | `provider` | key-set fetches that failed |
//! | [`JWKS_STALE_SERVED`] | counter | `provider` | keys answered from an expired key set while the IdP is failing |
//! | [`AUTHORIZER_DECISIONS`] | counter | `decision` | bearer-authorizer answers |
//! | [`AUTHORIZER_DURATION`] | histogram (s) | `decision` | time to answer an authorizer event |
//!
//! # Labels never carry user input
//!
//! Every label value comes from a bounded set the deployment controls: a provider name from the
//! configuration (or [`UNKNOWN_PROVIDER`] when the request named another), a stable error `code`
//! (`ok` on success), an [`Outcome`], a Cognito operation name, an authorizer [`Decision`]. No
//! token, key, claim value, subject, identity id or request path ever becomes a label: labels
//! are CloudWatch dimensions and Prometheus series, public to anyone who reads the dashboards,
//! and each distinct value costs a metric.

pub mod emf;
pub mod prometheus;

use std::time::Duration;

use axum::http::StatusCode;

use crate::pool::PoolError;

/// Sign-ins answered, by `provider`, `code` (`ok` or the problem's `code`) and `outcome`.
pub const SIGNINS: &str = "credbroker_signins_total";
/// Seconds from a sign-in request to its answer, by `provider` and `outcome`.
pub const SIGNIN_DURATION: &str = "credbroker_signin_duration_seconds";
/// Seconds one identity-pool call took, SDK retries included, by `operation`.
pub const COGNITO_CALL_DURATION: &str = "credbroker_cognito_call_duration_seconds";
/// Identity-pool calls that still failed throttled after the SDK's retries, by `operation`; each
/// of the broker's backoff retries within its exchange budget counts again.
pub const COGNITO_THROTTLES: &str = "credbroker_cognito_throttles_total";
/// JWKS fetches started, by `provider`.
pub const JWKS_FETCHES: &str = "credbroker_jwks_fetches_total";
/// JWKS fetches that failed (unreachable, error status, timeout, unusable document), by `provider`.
pub const JWKS_FETCH_FAILURES: &str = "credbroker_jwks_fetch_failures_total";
/// Keys served from an expired key set because refreshing it failed (stale-if-error), by `provider`.
pub const JWKS_STALE_SERVED: &str = "credbroker_jwks_stale_keys_served_total";
/// Bearer-authorizer answers, by `decision`.
pub const AUTHORIZER_DECISIONS: &str = "credbroker_authorizer_decisions_total";
/// Seconds the bearer authorizer took to answer, by `decision`.
pub const AUTHORIZER_DURATION: &str = "credbroker_authorizer_duration_seconds";

/// Label: the configured provider name.
pub const PROVIDER: &str = "provider";
/// Label: the stable problem `code`, or [`OK`].
pub const CODE: &str = "code";
/// Label: an [`Outcome`].
pub const OUTCOME: &str = "outcome";
/// Label: the Cognito Identity operation (`GetId`, `GetCredentialsForIdentity`,
/// `GetOpenIdTokenForDeveloperIdentity`).
pub const OPERATION: &str = "operation";
/// Label: a [`Decision`].
pub const DECISION: &str = "decision";

/// The `code` of a successful sign-in.
pub const OK: &str = "ok";
/// The `provider` of a sign-in naming no configured provider (not a valid provider name, so it
/// never collides with one).
pub const UNKNOWN_PROVIDER: &str = "(unknown)";
/// The `provider` of key caches built outside any provider (the dev stack's local pool, the
/// identity-assertion extractor of the apps behind the API).
pub const NO_PROVIDER: &str = "(none)";

/// Labels that CloudWatch also aggregates over on their own (see [`emf`]): an alarm on the error
/// rate of all providers needs `outcome` alone, since alarms cannot sum across dimension values.
pub const ROLLUP_LABELS: [&str; 2] = [OUTCOME, DECISION];

/// Every metric with its help text, for exporters that publish descriptions.
pub const DESCRIPTIONS: [(&str, &str); 9] = [
    (SIGNINS, "Sign-ins answered, by provider, code and outcome."),
    (SIGNIN_DURATION, "Seconds from a sign-in request to its answer."),
    (
        COGNITO_CALL_DURATION,
        "Seconds one Cognito Identity call took, SDK retries included.",
    ),
    (
        COGNITO_THROTTLES,
        "Cognito Identity calls that stayed throttled after the SDK's retries.",
    ),
    (JWKS_FETCHES, "JWKS fetches started."),
    (JWKS_FETCH_FAILURES, "JWKS fetches that failed."),
    (
        JWKS_STALE_SERVED,
        "Keys served from an expired key set while refreshing it fails.",
    ),
    (AUTHORIZER_DECISIONS, "Bearer-authorizer answers, by decision."),
    (
        AUTHORIZER_DURATION,
        "Seconds the bearer authorizer took to answer.",
    ),
];

/// How a request ended, for error-rate alarms: `error` is the service's fault (5xx, or the
/// identity pool throttling), `refused` the request's (every other 4xx).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// Answered as asked.
    Success,
    /// The request was refused: bad token, rule denied, malformed body...
    Refused,
    /// The service could not answer: keys or identity pool unavailable, throttled.
    Error,
}

impl Outcome {
    /// The outcome of an answer with `status`.
    pub fn of_status(status: StatusCode) -> Outcome {
        if status.is_success() {
            Outcome::Success
        } else if status.is_server_error() || status == StatusCode::TOO_MANY_REQUESTS {
            Outcome::Error
        } else {
            Outcome::Refused
        }
    }

    /// The label value.
    pub fn label(self) -> &'static str {
        match self {
            Outcome::Success => "success",
            Outcome::Refused => "refused",
            Outcome::Error => "error",
        }
    }
}

/// What the bearer authorizer answered.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Decision {
    /// An `Allow` policy.
    Allow,
    /// An explicit `Deny` policy (API Gateway answers 403).
    Deny,
    /// `Unauthorized` (API Gateway answers 401).
    Unauthorized,
    /// The authorizer could not decide (API Gateway answers 500).
    Error,
}

impl Decision {
    /// The label value.
    pub fn label(self) -> &'static str {
        match self {
            Decision::Allow => "allow",
            Decision::Deny => "deny",
            Decision::Unauthorized => "unauthorized",
            Decision::Error => "error",
        }
    }
}

/// Records one identity-pool call of `operation` that took `took`: its duration, and a throttle
/// when it ended throttled (`result` is `None` when the call was cut off unanswered).
pub fn record_pool_call<T>(operation: &'static str, took: Duration, result: Option<&Result<T, PoolError>>) {
    metrics::histogram!(COGNITO_CALL_DURATION, OPERATION => operation).record(took);
    if let Some(Err(PoolError::Throttled { .. })) = result {
        metrics::counter!(COGNITO_THROTTLES, OPERATION => operation).increment(1);
    }
}

/// Records one answered sign-in.
pub fn record_sign_in(provider: &str, code: &'static str, status: StatusCode, took: Duration) {
    let outcome = Outcome::of_status(status).label();
    let provider = provider.to_string();
    metrics::counter!(SIGNINS, PROVIDER => provider.clone(), CODE => code, OUTCOME => outcome).increment(1);
    metrics::histogram!(SIGNIN_DURATION, PROVIDER => provider, OUTCOME => outcome).record(took);
}

/// Records one bearer-authorizer answer.
pub fn record_decision(decision: Decision, took: Duration) {
    metrics::counter!(AUTHORIZER_DECISIONS, DECISION => decision.label()).increment(1);
    metrics::histogram!(AUTHORIZER_DURATION, DECISION => decision.label()).record(took);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn outcomes_separate_the_services_faults_from_the_requests() {
        let outcome = |status: u16| Outcome::of_status(StatusCode::from_u16(status).unwrap()).label();
        assert_eq!(outcome(200), "success");
        for refused in [400, 401, 403, 404, 413, 415] {
            assert_eq!(outcome(refused), "refused", "{refused}");
        }
        for error in [429, 500, 502, 503] {
            assert_eq!(outcome(error), "error", "{error}");
        }
    }

    #[test]
    fn every_metric_is_described_once() {
        let names = [
            SIGNINS,
            SIGNIN_DURATION,
            COGNITO_CALL_DURATION,
            COGNITO_THROTTLES,
            JWKS_FETCHES,
            JWKS_FETCH_FAILURES,
            JWKS_STALE_SERVED,
            AUTHORIZER_DECISIONS,
            AUTHORIZER_DURATION,
        ];
        for name in names {
            let described = DESCRIPTIONS
                .iter()
                .filter(|(described, _)| *described == name)
                .count();
            assert_eq!(described, 1, "{name}");
        }
    }
}
