//! The `credbroker` command. `cargo run` starts the local dev stack; see `credbroker --help`.

use clap::Parser;
use credbroker::cli::{self, Cli};

#[tokio::main]
async fn main() -> std::process::ExitCode {
    let cli = Cli::parse();
    // Servers log at info; the one-shot tools stay quiet unless RUST_LOG asks otherwise.
    let default_level = if cli::is_server(&cli) { "info" } else { "warn" };
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default_level));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .init();
    match cli::run(cli).await {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("credbroker: {error}");
            std::process::ExitCode::FAILURE
        }
    }
}
