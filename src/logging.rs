//! Log set-up shared by every binary.
//!
//! `RUST_LOG` chooses the level, with one exception that no setting can lift: at TRACE,
//! `aws-smithy-runtime` prints raw Cognito response bodies and SDK outputs (secret keys and
//! session tokens included) and `aws-sigv4` prints the requests it signs (security tokens
//! included). Those two targets are therefore capped at DEBUG, so not even `RUST_LOG=trace`
//! can put a credential in a log line.

use tracing_subscriber::EnvFilter;

/// Dependency targets whose TRACE output carries credentials, capped at DEBUG.
const SECRET_BEARING_TARGETS: [&str; 2] = ["aws_smithy_runtime=debug", "aws_sigv4=debug"];

/// The filter: `RUST_LOG` when set (else `default_level`), with the caps applied last so they win.
pub fn filter(default_level: &str) -> EnvFilter {
    // An empty RUST_LOG counts as unset (an empty filter would silently keep only errors).
    let chosen = std::env::var(EnvFilter::DEFAULT_ENV)
        .ok()
        .filter(|value| !value.trim().is_empty());
    let mut filter = EnvFilter::new(chosen.as_deref().unwrap_or(default_level));
    for cap in SECRET_BEARING_TARGETS {
        filter = filter.add_directive(cap.parse().expect("static directive"));
    }
    filter
}

/// Where log lines go.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Destination {
    /// A terminal: timestamps and colours.
    Terminal,
    /// AWS Lambda: plain text without timestamps (CloudWatch stamps every line itself).
    Lambda,
}

/// Installs the process's subscriber, writing to stderr.
pub fn init(default_level: &str, destination: Destination) {
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter(default_level))
        .with_writer(std::io::stderr);
    match destination {
        Destination::Terminal => builder.init(),
        Destination::Lambda => builder.with_ansi(false).without_time().init(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_caps_hold_even_when_everything_is_traced() {
        let filter = EnvFilter::new("trace");
        let capped = SECRET_BEARING_TARGETS
            .iter()
            .fold(filter, |f, cap| f.add_directive(cap.parse().unwrap()))
            .to_string();
        assert!(capped.contains("aws_smithy_runtime=debug"), "{capped}");
        assert!(capped.contains("aws_sigv4=debug"), "{capped}");
    }
}
