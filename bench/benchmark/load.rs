//! A fixed-concurrency HTTP load generator: `concurrency` workers each send one sign-in at a
//! time until the request budget or the time budget is spent, and every answer's latency is
//! recorded. Any answer other than 200, and any transport failure, counts as an error.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use bytes::Bytes;
use tokio::task::JoinSet;

/// Longest wait for one answer; a slower answer counts as an error.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);

/// One endpoint and the body every request posts to it.
#[derive(Clone)]
pub struct Target {
    client: reqwest::Client,
    url: String,
    body: Bytes,
}

impl Target {
    /// A JSON `POST` of `body` to `url` over loopback HTTP/1.1 keep-alive connections.
    pub fn json_post(url: String, body: &serde_json::Value) -> Result<Target, String> {
        Ok(Target {
            client: client()?,
            url,
            body: Bytes::from(body.to_string()),
        })
    }

    /// Sends the request once; whether the answer was a 200 (its body read to the end).
    async fn send(&self) -> bool {
        let response = self
            .client
            .post(&self.url)
            .header(reqwest::header::CONTENT_TYPE, "application/json")
            .body(self.body.clone())
            .send()
            .await;
        match response {
            Ok(response) => {
                let ok = response.status() == reqwest::StatusCode::OK;
                response.bytes().await.is_ok() && ok
            }
            Err(_) => false,
        }
    }
}

/// An HTTP client for loopback benchmarking: no proxy (an `HTTP_PROXY` in the environment must
/// not reroute loopback traffic), HTTP/1.1 like browsers and API Gateway's clients, bounded waits.
pub fn client() -> Result<reqwest::Client, String> {
    client_with_timeout(REQUEST_TIMEOUT)
}

/// [`client`] with another bound on one answer.
pub fn client_with_timeout(timeout: Duration) -> Result<reqwest::Client, String> {
    reqwest::Client::builder()
        .no_proxy()
        .http1_only()
        .tcp_nodelay(true)
        .timeout(timeout)
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .map_err(|e| format!("cannot build an HTTP client: {e}"))
}

/// When a run stops: after `requests` requests or `duration`, whichever comes first.
#[derive(Debug, Clone, Copy)]
pub struct Budget {
    /// Most requests sent.
    pub requests: u64,
    /// Longest time spent; requests in flight at the deadline still complete.
    pub duration: Duration,
}

/// What one run measured.
#[derive(Debug)]
pub struct Outcome {
    /// The latency of every completed request, sorted ascending.
    latencies: Vec<Duration>,
    /// Requests that did not end in a 200.
    pub errors: u64,
    /// Wall time of the run.
    pub elapsed: Duration,
}

impl Outcome {
    /// Requests completed (successful or not).
    pub fn completed(&self) -> usize {
        self.latencies.len()
    }

    /// Requests completed per second.
    pub fn per_second(&self) -> f64 {
        self.latencies.len() as f64 / self.elapsed.as_secs_f64().max(f64::EPSILON)
    }

    /// The nearest-rank percentile `p` (0 < p ≤ 1), if anything completed.
    pub fn percentile(&self, p: f64) -> Option<Duration> {
        let rank = (p * self.latencies.len() as f64).ceil() as usize;
        self.latencies.get(rank.saturating_sub(1)).copied()
    }
}

/// Runs `concurrency` workers against `target` within `budget`.
pub async fn run(target: &Target, concurrency: usize, budget: Budget) -> Outcome {
    let issued = Arc::new(AtomicU64::new(0));
    let started = Instant::now();
    let deadline = started + budget.duration;
    let mut workers = JoinSet::new();
    for _ in 0..concurrency {
        let target = target.clone();
        let issued = issued.clone();
        workers.spawn(async move {
            let mut latencies = Vec::new();
            let mut errors = 0u64;
            while Instant::now() < deadline && issued.fetch_add(1, Ordering::Relaxed) < budget.requests {
                let sent = Instant::now();
                let ok = target.send().await;
                latencies.push(sent.elapsed());
                errors += u64::from(!ok);
            }
            (latencies, errors)
        });
    }
    let mut outcome = Outcome {
        latencies: Vec::new(),
        errors: 0,
        elapsed: Duration::ZERO,
    };
    while let Some(joined) = workers.join_next().await {
        // A worker only panics on allocation failure; its requests are then simply not counted.
        if let Ok((latencies, errors)) = joined {
            outcome.latencies.extend(latencies);
            outcome.errors += errors;
        }
    }
    outcome.elapsed = started.elapsed();
    outcome.latencies.sort_unstable();
    outcome
}

#[cfg(test)]
mod tests {
    use super::*;

    fn outcome(millis: &[u64]) -> Outcome {
        Outcome {
            latencies: millis.iter().map(|&m| Duration::from_millis(m)).collect(),
            errors: 0,
            elapsed: Duration::from_secs(2),
        }
    }

    #[test]
    fn percentiles_are_nearest_rank() {
        let run = outcome(&(1..=100).collect::<Vec<_>>());
        assert_eq!(run.percentile(0.5), Some(Duration::from_millis(50)));
        assert_eq!(run.percentile(0.99), Some(Duration::from_millis(99)));
        assert_eq!(run.percentile(1.0), Some(Duration::from_millis(100)));
        assert_eq!(outcome(&[7]).percentile(0.99), Some(Duration::from_millis(7)));
        assert_eq!(outcome(&[]).percentile(0.5), None);
    }

    #[test]
    fn rate_is_completed_requests_over_wall_time() {
        assert_eq!(outcome(&[1, 2, 3, 4]).per_second(), 2.0);
    }
}
