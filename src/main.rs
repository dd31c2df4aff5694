//! The `credbroker` command. `cargo run` starts the local dev stack; see `credbroker --help`.

use clap::Parser;
use credbroker::cli::{self, Cli};

/// `serve` and `dev` are many-threaded servers whose requests allocate a lot (HTTP, JSON, the AWS
/// SDK); under glibc's malloc, allocation and copies were 17% of the CPU of a sign-in load. With
/// mimalloc, measured by `bench/run`'s measuring program on the same build and machine: the dev
/// stack at concurrency 16 went from 2,893 to 4,393–4,672 sign-ins/s and the broker alone at 64
/// from 3,570 to 6,129–6,184/s, for a higher resting RSS (broker peak 21.2 → 33.1 MB, still under
/// its 40 MB goal). The Lambda binaries serve one request at a time and keep the system
/// allocator.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

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
