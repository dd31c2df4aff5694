//! The identity-pool exchange at production-shaped numbers (issue 13): a dev stack per pool mode
//! whose local pool adds a 20 ms round trip to every Cognito call and enforces Cognito's default
//! quotas (`credbroker dev --pool-mode M --pool-latency-ms 20 --pool-quota`).
//!
//! - first sign-in vs renewal: sequential sign-ins without, then with, the `identity_id` of the
//!   first answer (latency percentiles; sequential so the quotas do not throttle them);
//! - the "9 a.m. storm": 2,000 distinct users starting evenly within one minute, each signing in
//!   once and treating the answer as the browser client (`web/signin.js`) does: a `429` is asked
//!   again after `Retry-After` (at most [`CLIENT_MAX_RETRY_AFTER`]) plus a random part of as much
//!   again, at most [`CLIENT_THROTTLED_RETRIES`] times. A user is "shown an error" when the client
//!   would show one: any other failure, a `429` after the last retry, or an answer slower than
//!   API Gateway's integration timeout ([`GATEWAY_TIMEOUT`], where the user would get a 504).

use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use tokio::task::JoinSet;

use crate::load;
use crate::servers::{Launcher, Server, mint_token_for};
use crate::table::{Row, count, ms};

/// The round trip the local pool adds to every call (a Lambda's to Cognito in its Region).
const POOL_LATENCY_MS: &str = "20";
/// Sequential sign-ins measured per kind (first, renewal).
const SAMPLES: usize = 100;
/// Users in the storm, and the time over which they start.
const STORM_USERS: usize = 2_000;
const STORM_WINDOW: Duration = Duration::from_secs(60);
/// How many times the browser client asks again after a `429` (`THROTTLED_RETRIES` in
/// `web/signin.js`).
const CLIENT_THROTTLED_RETRIES: u32 = 4;
/// The longest `Retry-After` the browser client honours (`MAX_RETRY_AFTER_S` in `web/signin.js`).
const CLIENT_MAX_RETRY_AFTER: Duration = Duration::from_secs(30);
/// API Gateway's integration timeout: a sign-in slower than this reaches the browser as a 504.
const GATEWAY_TIMEOUT: Duration = Duration::from_secs(29);

/// Both modes: latency rows, then storm rows.
pub async fn exchange(launcher: &Launcher) -> Vec<Row> {
    let mut rows = Vec::new();
    for mode in ["enhanced", "developer"] {
        crate::progress(&format!(
            "exchange, {mode} mode: first sign-in vs renewal, then the 9 a.m. storm"
        ));
        match measure_mode(launcher, mode).await {
            Ok(measured) => rows.extend(measured),
            Err(why) => rows.extend(failed(mode, &why)),
        }
    }
    rows
}

async fn measure_mode(launcher: &Launcher, mode: &str) -> Result<Vec<Row>, String> {
    let dev = launcher
        .dev_with(
            &format!("exchange-{mode}"),
            &[
                "--pool-mode",
                mode,
                "--pool-latency-ms",
                POOL_LATENCY_MS,
                "--pool-quota",
            ],
        )
        .await?;
    let client = load::client()?;
    let token = mint_token_for(&client, &dev, "latency-user").await?;
    let first = sequential(&client, &dev, &token, None).await?;
    let identity_id = sign_in(&client, &dev.signin_url("dev"), &token, None)
        .await?
        .1
        .get("identityId")
        .and_then(Value::as_str)
        .map(str::to_string)
        .ok_or("the sign-in answer has no identityId")?;
    let renewal = sequential(&client, &dev, &token, Some(&identity_id)).await?;
    let storm = storm(&client, &dev).await?;
    Ok(vec![
        Row::info(
            metric(mode, "first sign-in (no identity_id), 20 ms pool round trip"),
            percentiles(&first),
        ),
        Row::info(
            metric(mode, "renewal (identity_id sent back), 20 ms pool round trip"),
            percentiles(&renewal),
        ),
        Row::goal(
            metric(mode, "9 a.m. storm: 2,000 users within 60 s, default quotas"),
            "every user signed in, none shown an error",
            storm.describe(),
            storm.errors_shown == 0,
        ),
    ])
}

fn metric(mode: &str, what: &str) -> String {
    format!("exchange, {mode} mode: {what}")
}

fn failed(mode: &str, why: &str) -> Vec<Row> {
    vec![
        Row::not_measured(metric(mode, "first sign-in vs renewal"), "—", why),
        Row::not_measured(
            metric(mode, "9 a.m. storm: 2,000 users within 60 s, default quotas"),
            "every user signed in, none shown an error",
            why,
        ),
    ]
}

/// One sign-in: status, body, and (for 429) the `Retry-After` it asked for.
async fn sign_in(
    client: &reqwest::Client,
    url: &str,
    token: &str,
    identity_id: Option<&str>,
) -> Result<(u16, Value, Option<Duration>), String> {
    let mut body = json!({ "id_token": token });
    if let Some(identity_id) = identity_id {
        body["identity_id"] = json!(identity_id);
    }
    let response = client
        .post(url)
        .json(&body)
        .send()
        .await
        .map_err(|e| format!("sign-in: {e}"))?;
    let status = response.status().as_u16();
    let retry_after = response
        .headers()
        .get("retry-after")
        .and_then(|value| value.to_str().ok())
        .and_then(|value| value.parse().ok())
        .map(Duration::from_secs);
    let body = response.json().await.unwrap_or(Value::Null);
    Ok((status, body, retry_after))
}

/// [`SAMPLES`] sign-ins one after the other; their latencies, sorted. Any failure fails all.
async fn sequential(
    client: &reqwest::Client,
    dev: &Server,
    token: &str,
    identity_id: Option<&str>,
) -> Result<Vec<Duration>, String> {
    let mut latencies = Vec::with_capacity(SAMPLES);
    for _ in 0..SAMPLES {
        let started = Instant::now();
        let (status, body, _) = sign_in(client, &dev.signin_url("dev"), token, identity_id).await?;
        if status != 200 {
            return Err(format!("a sequential sign-in answered {status}: {body}"));
        }
        latencies.push(started.elapsed());
    }
    latencies.sort();
    Ok(latencies)
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    let rank = ((p * sorted.len() as f64).ceil() as usize).clamp(1, sorted.len());
    sorted[rank - 1]
}

fn percentiles(sorted: &[Duration]) -> String {
    format!(
        "p50 {}, p99 {} ({} sign-ins)",
        ms(percentile(sorted, 0.5)),
        ms(percentile(sorted, 0.99)),
        sorted.len()
    )
}

/// How one storm user fared.
enum UserOutcome {
    /// Signed in this long after starting.
    SignedIn(Duration),
    /// Shown an error: why.
    Error(String),
}

/// What the storm gave.
struct Storm {
    signed_in: usize,
    /// Users shown an error, and the first few reasons.
    errors_shown: usize,
    reasons: Vec<String>,
    /// `429` answers that users asked again after `Retry-After`, and how many users met one.
    retried: u64,
    users_retrying: usize,
    most_retries: u32,
    /// From the first user's start until the last user signed in.
    total: Duration,
    per_user: Vec<Duration>,
}

impl Storm {
    fn describe(&self) -> String {
        let mut text = format!(
            "{} of {} signed in, {} shown an error; {} users got 429 and retried after Retry-After \
             with jitter ({} retries, at most {} for one user); last signed in {:.1} s after the \
             first started; time to sign in per user p50 {}, p99 {}, max {}",
            count(self.signed_in as u64),
            count(STORM_USERS as u64),
            count(self.errors_shown as u64),
            count(self.users_retrying as u64),
            count(self.retried),
            self.most_retries,
            self.total.as_secs_f64(),
            ms(percentile(&self.per_user, 0.5)),
            ms(percentile(&self.per_user, 0.99)),
            ms(percentile(&self.per_user, 1.0)),
        );
        if !self.reasons.is_empty() {
            text.push_str(&format!("; errors: {}", self.reasons.join("; ")));
        }
        text
    }

    fn record(&mut self, outcome: UserOutcome, retries: u32, finished: Duration) {
        self.retried += u64::from(retries);
        self.users_retrying += usize::from(retries > 0);
        self.most_retries = self.most_retries.max(retries);
        match outcome {
            UserOutcome::SignedIn(latency) => {
                self.signed_in += 1;
                self.per_user.push(latency);
                self.total = self.total.max(finished);
            }
            UserOutcome::Error(reason) => {
                self.errors_shown += 1;
                if self.reasons.len() < 3 {
                    self.reasons.push(reason);
                }
            }
        }
    }
}

/// [`STORM_USERS`] users, user `i` starting at `i × window / users`.
async fn storm(client: &reqwest::Client, dev: &Server) -> Result<Storm, String> {
    let mut tokens = Vec::with_capacity(STORM_USERS);
    for user in 0..STORM_USERS {
        tokens.push(mint_token_for(client, dev, &format!("storm-user-{user}")).await?);
    }
    // A browser's fetch waits as long as API Gateway lets the sign-in run.
    let browser = crate::load::client_with_timeout(GATEWAY_TIMEOUT)?;
    let url: Arc<str> = dev.signin_url("dev").into();
    let started = Instant::now();
    let mut users = JoinSet::new();
    for (user, token) in tokens.into_iter().enumerate() {
        let browser = browser.clone();
        let url = Arc::clone(&url);
        let start_at = started + STORM_WINDOW.mul_f64(user as f64 / STORM_USERS as f64);
        users.spawn(async move {
            tokio::time::sleep_until(start_at.into()).await;
            let (outcome, retries) = storm_user(&browser, &url, &token).await;
            (outcome, retries, started.elapsed())
        });
    }
    let mut result = Storm {
        signed_in: 0,
        errors_shown: 0,
        reasons: Vec::new(),
        retried: 0,
        users_retrying: 0,
        most_retries: 0,
        total: Duration::ZERO,
        per_user: Vec::with_capacity(STORM_USERS),
    };
    while let Some(user) = users.join_next().await {
        let (outcome, retries, finished) = user.map_err(|e| format!("storm user task: {e}"))?;
        result.record(outcome, retries, finished);
    }
    if result.per_user.is_empty() {
        return Err("no storm user signed in".to_string());
    }
    result.per_user.sort();
    Ok(result)
}

/// One user signing in as the browser client does; the outcome and the retries it took.
async fn storm_user(browser: &reqwest::Client, url: &str, token: &str) -> (UserOutcome, u32) {
    let began = Instant::now();
    let mut retries = 0;
    loop {
        let outcome = match sign_in(browser, url, token, None).await {
            Ok((200, _, _)) => UserOutcome::SignedIn(began.elapsed()),
            Ok((429, _, retry_after)) if retries < CLIENT_THROTTLED_RETRIES => {
                retries += 1;
                tokio::time::sleep(client_pause(retry_after)).await;
                continue;
            }
            Ok((status, body, _)) => UserOutcome::Error(format!("{status} {}", body["code"])),
            Err(why) => UserOutcome::Error(why),
        };
        return (outcome, retries);
    }
}

/// The browser client's wait after a `429`: `Retry-After` (1 s when absent, at most
/// [`CLIENT_MAX_RETRY_AFTER`]) plus a uniformly random part of as much again.
fn client_pause(retry_after: Option<Duration>) -> Duration {
    let base = retry_after
        .unwrap_or(Duration::from_secs(1))
        .clamp(Duration::from_secs(1), CLIENT_MAX_RETRY_AFTER);
    base.mul_f64(1.0 + credbroker::broker::random_fraction())
}
