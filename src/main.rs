//! The `credbroker` command. `cargo run` starts the local dev stack; see `credbroker --help`.

use clap::Parser;
use credbroker::cli::{self, Cli};

#[tokio::main]
async fn main() -> std::process::ExitCode {
    let cli = Cli::parse();
    // Servers log at info; the one-shot tools stay quiet unless RUST_LOG asks otherwise.
    let default_level = if cli::is_server(&cli) { "info" } else { "warn" };
    credbroker::logging::init(default_level, credbroker::logging::Destination::Terminal);
    match cli::run(cli).await {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("credbroker: {error}");
            std::process::ExitCode::FAILURE
        }
    }
}
