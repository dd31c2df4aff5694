//! CloudWatch embedded metric format (EMF) for the Lambda binaries: a [`metrics`] recorder that
//! keeps what one invocation recorded and writes it to stdout as a JSON log line once the
//! invocation's answer is sent ([`EmfLayer`]). CloudWatch Logs extracts the metrics from the
//! line: no PutMetricData call, no credentials, nothing added to the answer's latency.
//!
//! # Documents
//!
//! Each label set becomes one `CloudWatchMetrics` directive whose dimension values sit on the
//! document's root, so two label sets that give one label different values (the two Cognito
//! operations of a sign-in) cannot share a document: label sets are packed greedily, and a
//! sign-in usually writes two lines, an authorizer event one. Besides its full label set, every
//! directive also publishes the metric under the [`ROLLUP_LABELS`] it carries and under no
//! dimension at all, so an alarm can watch the error rate of all providers
//! (alarms cannot sum across dimension values). Counters are written when they moved; histogram
//! samples as an array (EMF allows at most 100 values per metric: later ones wait for the next
//! flush). The Lambda request id rides along as the `RequestId` property, searchable in Logs
//! Insights but not a dimension. Units follow the name: `_seconds` → `Seconds`, else `Count`.
//!
//! # Why hand-written
//!
//! `metrics_cloudwatch_embedded` (maintained, built on the same facade) was the first choice;
//! it was not taken because it publishes each metric under exactly its full label set — so no
//! alarm could sum sign-in errors across providers — and its Lambda integration pulls in
//! `lambda_http` with every default event type (ALB, WebSocket), growing a binary that must stay
//! under 8 MB. What remains here is the storage for two metric kinds and the JSON layout.
//!
//! Under Lambda's managed concurrency (several invocations in one process) the counts stay
//! exact — every value is written exactly once — but a line's `RequestId` names only the
//! invocation that flushed it.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::future::Future;
use std::io::Write;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::SystemTime;

use lambda_http::lambda_runtime::LambdaInvocation;
use metrics::{
    Counter, CounterFn, Gauge, Histogram, HistogramFn, Key, KeyName, Metadata, Recorder, SharedString, Unit,
};
use serde_json::{Map, Value, json};

use super::ROLLUP_LABELS;
use crate::fetch::lock;

/// EMF's limit on values per metric in one document.
const MAX_VALUES_PER_METRIC: usize = 100;
/// The CloudWatch namespace when `CREDBROKER_METRICS_NAMESPACE` is unset.
pub const DEFAULT_NAMESPACE: &str = "credbroker";
/// The environment variable naming the namespace (the template sets it per stack).
pub const NAMESPACE_ENV: &str = "CREDBROKER_METRICS_NAMESPACE";
/// Longest namespace accepted (CloudWatch's limit is 255).
const MAX_NAMESPACE_CHARS: usize = 255;

/// A counter's running total since the last flush.
#[derive(Debug, Default)]
struct CounterCell(AtomicU64);

impl CounterFn for CounterCell {
    fn increment(&self, value: u64) {
        self.0.fetch_add(value, Ordering::Relaxed);
    }

    fn absolute(&self, value: u64) {
        self.0.store(value, Ordering::Relaxed);
    }
}

/// A histogram's samples since the last flush.
#[derive(Debug, Default)]
struct HistogramCell(Mutex<Vec<f64>>);

impl HistogramFn for HistogramCell {
    fn record(&self, value: f64) {
        lock(&self.0).push(value);
    }
}

#[derive(Debug, Clone)]
enum Cell {
    Counter(Arc<CounterCell>),
    Histogram(Arc<HistogramCell>),
}

/// The recorder. Gauges are not recorded: no metric of this crate is one.
#[derive(Debug, Clone)]
pub struct EmfRecorder {
    namespace: String,
    cells: Arc<Mutex<HashMap<Key, Cell>>>,
}

/// One flushed metric: its name, unit and value (a count or an array of samples).
type Flushed = (String, &'static str, Value);

impl EmfRecorder {
    /// A recorder publishing under `namespace`.
    pub fn new(namespace: &str) -> EmfRecorder {
        EmfRecorder {
            namespace: namespace.to_string(),
            cells: Arc::default(),
        }
    }

    /// A recorder for the namespace in `CREDBROKER_METRICS_NAMESPACE` (or [`DEFAULT_NAMESPACE`]).
    pub fn from_env() -> EmfRecorder {
        let namespace = std::env::var(NAMESPACE_ENV)
            .ok()
            .map(|value| value.trim().chars().take(MAX_NAMESPACE_CHARS).collect::<String>())
            .filter(|value| !value.is_empty())
            .unwrap_or_else(|| DEFAULT_NAMESPACE.to_string());
        EmfRecorder::new(&namespace)
    }

    /// Installs a clone as the process's recorder and returns the layer that flushes it after
    /// every invocation. Fails if a recorder is already installed.
    pub fn install(self) -> Result<EmfLayer, metrics::SetRecorderError<EmfRecorder>> {
        metrics::set_global_recorder(self.clone())?;
        Ok(EmfLayer { recorder: self })
    }

    fn cell(&self, key: &Key, make: impl FnOnce() -> Cell) -> Cell {
        lock(&self.cells).entry(key.clone()).or_insert_with(make).clone()
    }

    /// The EMF documents for everything recorded since the last flush (which it resets), stamped
    /// `at` and carrying `request_id`. Empty when nothing was recorded.
    pub fn documents(&self, at: SystemTime, request_id: Option<&str>) -> Vec<Value> {
        let timestamp = at
            .duration_since(SystemTime::UNIX_EPOCH)
            .map(|since| since.as_millis() as u64)
            .unwrap_or(0);
        let mut packed: Vec<Document> = Vec::new();
        for (labels, metrics) in self.take_by_labels() {
            match packed
                .iter_mut()
                .find(|document| document.fits(&labels, &metrics))
            {
                Some(document) => document.add(&self.namespace, labels, metrics),
                None => {
                    let mut document = Document::default();
                    document.add(&self.namespace, labels, metrics);
                    packed.push(document);
                }
            }
        }
        packed
            .into_iter()
            .map(|document| document.into_json(timestamp, request_id))
            .collect()
    }

    /// Writes [`EmfRecorder::documents`] as one line each.
    pub fn flush(&self, request_id: Option<&str>, out: &mut impl Write) -> std::io::Result<()> {
        for document in self.documents(SystemTime::now(), request_id) {
            writeln!(out, "{document}")?;
        }
        out.flush()
    }

    /// What moved since the last flush, grouped by label set, each reset as it is taken.
    fn take_by_labels(&self) -> BTreeMap<Vec<(String, String)>, Vec<Flushed>> {
        let cells: Vec<(Key, Cell)> = lock(&self.cells)
            .iter()
            .map(|(key, cell)| (key.clone(), cell.clone()))
            .collect();
        let mut grouped: BTreeMap<Vec<(String, String)>, Vec<Flushed>> = BTreeMap::new();
        for (key, cell) in cells {
            let Some(value) = take(&cell) else { continue };
            let mut labels: Vec<(String, String)> = key
                .labels()
                .map(|label| (label.key().to_string(), label.value().to_string()))
                .collect();
            labels.sort();
            let name = key.name().to_string();
            let unit = if name.ends_with("_seconds") {
                "Seconds"
            } else {
                "Count"
            };
            grouped.entry(labels).or_default().push((name, unit, value));
        }
        grouped
    }
}

/// A cell's value since the last flush, reset; `None` when it did not move.
fn take(cell: &Cell) -> Option<Value> {
    match cell {
        Cell::Counter(counter) => match counter.0.swap(0, Ordering::Relaxed) {
            0 => None,
            count => Some(json!(count)),
        },
        Cell::Histogram(histogram) => {
            let mut samples = lock(&histogram.0);
            if samples.is_empty() {
                return None;
            }
            let kept = samples.len().min(MAX_VALUES_PER_METRIC);
            let taken: Vec<f64> = samples.drain(..kept).collect();
            Some(json!(taken))
        }
    }
}

/// One EMF document being packed.
#[derive(Debug, Default)]
struct Document {
    dimensions: BTreeMap<String, String>,
    values: BTreeMap<String, Value>,
    directives: Vec<Value>,
}

impl Document {
    /// Whether a label set can join: no label with another value, no metric already present.
    fn fits(&self, labels: &[(String, String)], metrics: &[Flushed]) -> bool {
        labels
            .iter()
            .all(|(key, value)| self.dimensions.get(key).is_none_or(|present| present == value))
            && metrics.iter().all(|(name, _, _)| !self.values.contains_key(name))
    }

    fn add(&mut self, namespace: &str, labels: Vec<(String, String)>, metrics: Vec<Flushed>) {
        let keys: Vec<String> = labels.iter().map(|(key, _)| key.clone()).collect();
        let described: Vec<Value> = metrics
            .iter()
            .map(|(name, unit, _)| json!({"Name": name, "Unit": unit}))
            .collect();
        self.directives.push(json!({
            "Namespace": namespace,
            "Dimensions": dimension_sets(&keys),
            "Metrics": described,
        }));
        self.dimensions.extend(labels);
        self.values
            .extend(metrics.into_iter().map(|(name, _, value)| (name, value)));
    }

    fn into_json(self, timestamp: u64, request_id: Option<&str>) -> Value {
        let mut root = Map::new();
        root.insert(
            "_aws".into(),
            json!({"Timestamp": timestamp, "CloudWatchMetrics": self.directives}),
        );
        if let Some(id) = request_id {
            root.insert("RequestId".into(), Value::String(id.to_string()));
        }
        root.extend(
            self.dimensions
                .into_iter()
                .map(|(key, value)| (key, Value::String(value))),
        );
        root.extend(self.values);
        Value::Object(root)
    }
}

/// The dimension sets a label set is published under: all of it, its rollup labels alone, and
/// none at all (without repeats).
fn dimension_sets(keys: &[String]) -> Vec<Vec<String>> {
    let rollup: Vec<String> = keys
        .iter()
        .filter(|key| ROLLUP_LABELS.contains(&key.as_str()))
        .cloned()
        .collect();
    let mut seen = BTreeSet::new();
    [keys.to_vec(), rollup, Vec::new()]
        .into_iter()
        .filter(|set| seen.insert(set.clone()))
        .collect()
}

impl Recorder for EmfRecorder {
    fn describe_counter(&self, _: KeyName, _: Option<Unit>, _: SharedString) {}

    fn describe_gauge(&self, _: KeyName, _: Option<Unit>, _: SharedString) {}

    fn describe_histogram(&self, _: KeyName, _: Option<Unit>, _: SharedString) {}

    fn register_counter(&self, key: &Key, _: &Metadata<'_>) -> Counter {
        match self.cell(key, || Cell::Counter(Arc::default())) {
            Cell::Counter(cell) => Counter::from_arc(cell),
            // The same name registered as another kind: a programming error, not recorded.
            Cell::Histogram(_) => Counter::noop(),
        }
    }

    fn register_gauge(&self, _: &Key, _: &Metadata<'_>) -> Gauge {
        Gauge::noop()
    }

    fn register_histogram(&self, key: &Key, _: &Metadata<'_>) -> Histogram {
        match self.cell(key, || Cell::Histogram(Arc::default())) {
            Cell::Histogram(cell) => Histogram::from_arc(cell),
            Cell::Counter(_) => Histogram::noop(),
        }
    }
}

/// A `lambda_runtime` layer that flushes the recorder to stdout after every invocation, once its
/// answer has been sent to the Runtime API.
#[derive(Debug, Clone)]
pub struct EmfLayer {
    recorder: EmfRecorder,
}

impl<S> tower::Layer<S> for EmfLayer {
    type Service = EmfService<S>;

    fn layer(&self, inner: S) -> EmfService<S> {
        EmfService {
            inner,
            recorder: self.recorder.clone(),
        }
    }
}

/// The service of [`EmfLayer`].
#[derive(Debug, Clone)]
pub struct EmfService<S> {
    inner: S,
    recorder: EmfRecorder,
}

impl<S> tower::Service<LambdaInvocation> for EmfService<S>
where
    S: tower::Service<LambdaInvocation>,
    S::Future: Send + 'static,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = Pin<Box<dyn Future<Output = Result<S::Response, S::Error>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), S::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, invocation: LambdaInvocation) -> Self::Future {
        let request_id = invocation.context.request_id.clone();
        let recorder = self.recorder.clone();
        let answered = self.inner.call(invocation);
        Box::pin(async move {
            let result = answered.await;
            if let Err(error) = recorder.flush(Some(&request_id), &mut std::io::stdout().lock()) {
                tracing::warn!(%error, "could not write the invocation's metrics");
            }
            result
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::telemetry::{self, Decision};
    use std::time::Duration;

    fn recorded(record: impl FnOnce()) -> Vec<Value> {
        let recorder = EmfRecorder::new("test-ns");
        metrics::with_local_recorder(&recorder, record);
        recorder.documents(
            SystemTime::UNIX_EPOCH + Duration::from_millis(1234),
            Some("req-1"),
        )
    }

    fn dimension_sets_of(document: &Value) -> Vec<Value> {
        document["_aws"]["CloudWatchMetrics"]
            .as_array()
            .unwrap()
            .iter()
            .map(|directive| directive["Dimensions"].clone())
            .collect()
    }

    #[test]
    fn a_sign_in_writes_one_document_per_cognito_operation() {
        let documents = recorded(|| {
            telemetry::record_sign_in(
                "corp",
                "ok",
                axum::http::StatusCode::OK,
                Duration::from_millis(40),
            );
            let done: Result<(), crate::pool::PoolError> = Ok(());
            telemetry::record_pool_call("GetId", Duration::ZERO, Some(&done));
            telemetry::record_pool_call("GetCredentialsForIdentity", Duration::ZERO, Some(&done));
        });
        assert_eq!(documents.len(), 2, "{documents:#?}");
        let first = &documents[0];
        assert_eq!(first["_aws"]["Timestamp"], 1234);
        assert_eq!(first["RequestId"], "req-1");
        assert_eq!(first["provider"], "corp");
        assert_eq!(first["code"], "ok");
        assert_eq!(first["outcome"], "success");
        assert_eq!(first[telemetry::SIGNINS], 1);
        assert_eq!(first[telemetry::SIGNIN_DURATION], json!([0.04]));
        let operations: BTreeSet<&str> = documents
            .iter()
            .map(|d| d["operation"].as_str().unwrap())
            .collect();
        assert_eq!(operations, BTreeSet::from(["GetId", "GetCredentialsForIdentity"]));
        for document in &documents {
            assert_eq!(document["_aws"]["CloudWatchMetrics"][0]["Namespace"], "test-ns");
        }
    }

    #[test]
    fn labels_are_published_in_full_by_rollup_and_in_total() {
        let documents = recorded(|| telemetry::record_decision(Decision::Deny, Duration::from_millis(2)));
        assert_eq!(documents.len(), 1);
        assert_eq!(dimension_sets_of(&documents[0]), vec![json!([["decision"], []])]);
        let documents = recorded(|| {
            telemetry::record_sign_in(
                "corp",
                "bad_signature",
                axum::http::StatusCode::UNAUTHORIZED,
                Duration::ZERO,
            )
        });
        assert_eq!(
            dimension_sets_of(&documents[0])[0],
            json!([["code", "outcome", "provider"], ["outcome"], []])
        );
        let metrics = &documents[0]["_aws"]["CloudWatchMetrics"][1]["Metrics"];
        assert_eq!(metrics[0]["Unit"], "Seconds");
    }

    #[test]
    fn a_flush_resets_and_an_idle_flush_writes_nothing() {
        let recorder = EmfRecorder::new("ns");
        metrics::with_local_recorder(&recorder, || {
            metrics::counter!(telemetry::JWKS_FETCHES, telemetry::PROVIDER => "corp").increment(2);
        });
        let mut out = Vec::new();
        recorder.flush(None, &mut out).unwrap();
        let line = String::from_utf8(out).unwrap();
        assert_eq!(line.lines().count(), 1, "{line}");
        let document: Value = serde_json::from_str(&line).unwrap();
        assert_eq!(document[telemetry::JWKS_FETCHES], 2);
        assert!(document.get("RequestId").is_none());
        let mut again = Vec::new();
        recorder.flush(None, &mut again).unwrap();
        assert!(again.is_empty());
    }

    #[test]
    fn at_most_100_samples_per_document_and_the_rest_later() {
        let recorder = EmfRecorder::new("ns");
        metrics::with_local_recorder(&recorder, || {
            for _ in 0..150 {
                metrics::histogram!(telemetry::SIGNIN_DURATION).record(0.5);
            }
        });
        let now = SystemTime::now();
        let first = recorder.documents(now, None);
        assert_eq!(
            first[0][telemetry::SIGNIN_DURATION].as_array().unwrap().len(),
            100
        );
        let second = recorder.documents(now, None);
        assert_eq!(
            second[0][telemetry::SIGNIN_DURATION].as_array().unwrap().len(),
            50
        );
        assert!(recorder.documents(now, None).is_empty());
    }
}
