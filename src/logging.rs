//! Log set-up shared by every binary.
//!
//! `RUST_LOG` chooses the level, with one exception that no setting can lift: at TRACE,
//! `aws-smithy-runtime` prints raw Cognito response bodies and SDK outputs (secret keys and
//! session tokens included) and `aws-sigv4` prints the requests it signs (security tokens
//! included). Those two targets are therefore capped at DEBUG by a second filter that can only
//! remove events, never add them, so not even `RUST_LOG=trace` can put a credential in a log
//! line, and the default level stays what `RUST_LOG` says.

use std::io::IsTerminal;

use tracing::Subscriber;
use tracing_subscriber::Layer;
use tracing_subscriber::filter::{FilterExt, LevelFilter, Targets};
use tracing_subscriber::layer::{Filter, SubscriberExt};
use tracing_subscriber::registry::LookupSpan;
use tracing_subscriber::util::SubscriberInitExt;

/// Dependency targets whose TRACE output carries credentials.
const SECRET_BEARING_TARGETS: [&str; 2] = ["aws_smithy_runtime", "aws_sigv4"];

/// The variable that chooses the level.
const LEVEL_ENV: &str = "RUST_LOG";

/// The filter: `RUST_LOG` when set and not empty (else `default_level`), and then the cap.
///
/// `RUST_LOG` takes a level (`debug`) and `target=level` directives, comma-separated
/// (`info,credbroker=debug`). `tracing-subscriber`'s `EnvFilter` would also take span and field
/// filters, but it brings a regex DFA compiler into both Lambda binaries (their size budget is
/// 8 MB), for a syntax no one filters this broker's logs with.
pub fn filter<S>(default_level: &str) -> impl Filter<S> + use<S>
where
    S: Subscriber + for<'a> LookupSpan<'a>,
{
    // An empty RUST_LOG counts as unset (an empty filter would silently keep only errors).
    let chosen = std::env::var(LEVEL_ENV)
        .ok()
        .filter(|value| !value.trim().is_empty());
    let chosen = chosen_targets(chosen.as_deref(), default_level);
    let cap = SECRET_BEARING_TARGETS
        .iter()
        .fold(Targets::new().with_default(LevelFilter::TRACE), |cap, target| {
            cap.with_target(*target, LevelFilter::DEBUG)
        });
    chosen.and(cap)
}

/// `RUST_LOG`'s directives, or `default_level` when there are none or they do not parse (said
/// on stderr: no subscriber exists yet to log it).
fn chosen_targets(directives: Option<&str>, default_level: &str) -> Targets {
    let fallback = || {
        default_level
            .parse()
            .unwrap_or_else(|_| Targets::new().with_default(LevelFilter::INFO))
    };
    match directives.map(str::parse::<Targets>) {
        None => fallback(),
        Some(Ok(targets)) => targets,
        Some(Err(error)) => {
            eprintln!("ignoring {LEVEL_ENV}: {error}; logging at {default_level}");
            fallback()
        }
    }
}

/// Where log lines go.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Destination {
    /// A terminal or a file: timestamps, and colours only when stderr is a terminal.
    Terminal,
    /// AWS Lambda: plain text without timestamps (CloudWatch stamps every line itself).
    Lambda,
}

/// Installs the process's subscriber, writing to stderr.
pub fn init(default_level: &str, destination: Destination) {
    let lines = tracing_subscriber::fmt::layer().with_writer(std::io::stderr);
    let registry = tracing_subscriber::registry();
    match destination {
        Destination::Terminal => registry
            .with(
                lines
                    .with_ansi(std::io::stderr().is_terminal())
                    .with_filter(filter(default_level)),
            )
            .init(),
        Destination::Lambda => registry
            .with(
                lines
                    .with_ansi(false)
                    .without_time()
                    .with_filter(filter(default_level)),
            )
            .init(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::{Arc, Mutex};

    /// Runs `emit` under a subscriber with [`filter`] at `level`; returns what it wrote.
    fn logged_at(level: &str, emit: impl FnOnce()) -> String {
        let buffer = Arc::new(Mutex::new(Vec::new()));
        let writer = buffer.clone();
        let lines = tracing_subscriber::fmt::layer()
            .with_ansi(false)
            .with_writer(move || CaptureWriter(writer.clone()))
            .with_filter(filter(level));
        tracing::subscriber::with_default(tracing_subscriber::registry().with(lines), emit);
        let bytes = buffer.lock().unwrap().clone();
        String::from_utf8(bytes).unwrap()
    }

    struct CaptureWriter(Arc<Mutex<Vec<u8>>>);

    impl std::io::Write for CaptureWriter {
        fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(bytes);
            Ok(bytes.len())
        }

        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    fn emit_everything() {
        tracing::trace!(target: "aws_sigv4::http_request::sign", "sigv4-trace");
        tracing::debug!(target: "aws_sigv4::http_request::sign", "sigv4-debug");
        tracing::trace!(target: "aws_smithy_runtime::client::orchestrator", "smithy-trace");
        tracing::debug!(target: "aws_smithy_runtime::client::orchestrator", "smithy-debug");
        tracing::info!(target: "aws_smithy_runtime", "smithy-info");
        tracing::trace!(target: "credbroker::broker", "own-trace");
    }

    #[test]
    fn at_trace_the_credential_printing_targets_stop_at_debug() {
        let logged = logged_at("trace", emit_everything);
        for shown in ["sigv4-debug", "smithy-debug", "smithy-info", "own-trace"] {
            assert!(logged.contains(shown), "{shown} missing from:\n{logged}");
        }
        for hidden in ["sigv4-trace", "smithy-trace"] {
            assert!(!logged.contains(hidden), "{hidden} leaked into:\n{logged}");
        }
    }

    #[test]
    fn directives_choose_levels_per_target_and_bad_ones_fall_back() {
        let directives = chosen_targets(Some("warn,credbroker=debug"), "info");
        assert_eq!(directives.default_level(), Some(LevelFilter::WARN));
        assert!(directives.would_enable("credbroker::broker", &tracing::Level::DEBUG));
        assert!(!directives.would_enable("hyper", &tracing::Level::INFO));
        let bad = chosen_targets(Some("credbroker=loud"), "info");
        assert_eq!(bad.default_level(), Some(LevelFilter::INFO));
        assert_eq!(
            chosen_targets(None, "warn").default_level(),
            Some(LevelFilter::WARN)
        );
    }

    #[test]
    fn the_cap_never_raises_the_chosen_level() {
        let logged = logged_at("info", emit_everything);
        assert!(logged.contains("smithy-info"), "{logged}");
        for hidden in ["sigv4-debug", "smithy-debug", "own-trace"] {
            assert!(!logged.contains(hidden), "{hidden} shown at info:\n{logged}");
        }
    }
}
