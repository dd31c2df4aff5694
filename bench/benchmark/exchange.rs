//! The identity-pool exchange at production-shaped numbers (issue 13): a dev stack per pool mode
//! whose local pool adds a 20 ms round trip to every Cognito call and enforces Cognito's default
//! quotas (`credbroker dev --pool-mode M --pool-latency-ms 20 --pool-quota`).
//!
//! - first sign-in vs renewal: sequential sign-ins without, then with, the `identity_id` of the
//!   first answer (latency percentiles; sequential so the quotas do not throttle them);
//! - the "9 a.m. storm": 2,000 distinct users starting evenly within one minute, each signing in
//!   once and, like the browser client, trying again after `Retry-After` when the broker answers
//!   `429` (a user is "shown an error" only if that never succeeds within [`STORM_GIVE_UP`]).

use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use tokio::task::JoinSet;

use crate::load;
use crate::servers::{Launcher, Server};
use crate::table::{Row, count, ms};

/// The round trip the local pool adds to every call (a Lambda's to Cognito in its Region).
const POOL_LATENCY_MS: &str = "20";
/// Sequential sign-ins measured per kind (first, renewal).
const SAMPLES: usize = 100;
/// Users in the storm, and the time over which they start.
const STORM_USERS: usize = 2_000;
const STORM_WINDOW: Duration = Duration::from_secs(60);
/// A storm user who has not signed in after this long counts as shown an error.
const STORM_GIVE_UP: Duration = Duration::from_secs(180);
/// The longest `Retry-After` a storm user honours, as the client bounds it.
const MAX_RETRY_AFTER: Duration = Duration::from_secs(10);

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
    let token = mint(&client, &dev, "latency-user").await?;
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

/// A dev-provider token for `sub`.
async fn mint(client: &reqwest::Client, dev: &Server, sub: &str) -> Result<String, String> {
    let answer: Value = client
        .post(format!("{}dev-idp/mint", dev.base))
        .json(&json!({ "sub": sub }))
        .send()
        .await
        .map_err(|e| format!("mint: {e}"))?
        .json()
        .await
        .map_err(|e| format!("mint: {e}"))?;
    answer["id_token"]
        .as_str()
        .map(str::to_string)
        .ok_or_else(|| "mint: no id_token".to_string())
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

/// What the storm gave.
struct Storm {
    signed_in: usize,
    errors_shown: usize,
    /// 429 answers that users retried after `Retry-After`.
    retried: u64,
    total: Duration,
    per_user: Vec<Duration>,
}

impl Storm {
    fn describe(&self) -> String {
        format!(
            "{} of {} signed in, {} shown an error, {} retried after 429; last signed in after {:.1} s; \
             per user p50 {}, p99 {}",
            count(self.signed_in as u64),
            count(STORM_USERS as u64),
            count(self.errors_shown as u64),
            count(self.retried),
            self.total.as_secs_f64(),
            ms(percentile(&self.per_user, 0.5)),
            ms(percentile(&self.per_user, 0.99)),
        )
    }
}

/// [`STORM_USERS`] users, user `i` starting at `i × window / users`.
async fn storm(client: &reqwest::Client, dev: &Server) -> Result<Storm, String> {
    let mut tokens = Vec::with_capacity(STORM_USERS);
    for user in 0..STORM_USERS {
        tokens.push(mint(client, dev, &format!("storm-user-{user}")).await?);
    }
    let url: Arc<str> = dev.signin_url("dev").into();
    let started = Instant::now();
    let mut users = JoinSet::new();
    for (user, token) in tokens.into_iter().enumerate() {
        let client = client.clone();
        let url = Arc::clone(&url);
        let start_at = started + STORM_WINDOW.mul_f64(user as f64 / STORM_USERS as f64);
        users.spawn(async move {
            tokio::time::sleep_until(start_at.into()).await;
            let began = Instant::now();
            let mut retried = 0u64;
            while began.elapsed() < STORM_GIVE_UP {
                match sign_in(&client, &url, &token, None).await {
                    Ok((200, _, _)) => return (Some(began.elapsed()), retried, Instant::now()),
                    Ok((429, _, retry_after)) => {
                        retried += 1;
                        let pause = retry_after.unwrap_or(Duration::from_secs(1)).min(MAX_RETRY_AFTER);
                        tokio::time::sleep(pause).await;
                    }
                    _ => break,
                }
            }
            (None, retried, Instant::now())
        });
    }
    let mut result = Storm {
        signed_in: 0,
        errors_shown: 0,
        retried: 0,
        total: Duration::ZERO,
        per_user: Vec::with_capacity(STORM_USERS),
    };
    while let Some(user) = users.join_next().await {
        let (outcome, retried, finished) = user.map_err(|e| format!("storm user task: {e}"))?;
        result.retried += retried;
        match outcome {
            Some(latency) => {
                result.signed_in += 1;
                result.per_user.push(latency);
                result.total = result.total.max(finished - started);
            }
            None => result.errors_shown += 1,
        }
    }
    if result.per_user.is_empty() {
        return Err("no storm user signed in".to_string());
    }
    result.per_user.sort();
    Ok(result)
}
