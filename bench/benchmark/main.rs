//! The measuring half of `bench/run`: starts the release `credbroker` as separate processes,
//! drives sign-ins at them over loopback, reads criterion's estimates and the binaries' sizes,
//! and prints one markdown table (metric | goal | measured | met?) on stdout. Progress goes to
//! stderr. `bench/run` builds everything first; see `docs/performance.md` for what each number
//! includes.
//!
//! The load generator runs on one thread (a current-thread runtime), so on a small machine it
//! takes at most one core from the servers under test.

mod exchange;
mod load;
mod phases;
mod servers;
mod table;

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::{Duration, Instant};

use clap::Parser;

use servers::Launcher;
use table::{Row, Verdict};

/// Measures credbroker's sign-in performance and prints one markdown table.
#[derive(Debug, Parser)]
struct Args {
    /// The release `credbroker` binary.
    #[arg(long, default_value = "target/release/credbroker")]
    credbroker: PathBuf,
    /// Criterion's output directory (after `cargo bench --bench signin`).
    #[arg(long, default_value = "target/criterion")]
    criterion: PathBuf,
    /// A Lambda binary to size, as `LABEL=PATH` (repeatable).
    #[arg(long = "lambda-binary", value_name = "LABEL=PATH")]
    lambda_binaries: Vec<String>,
    /// A Lambda binary that was not built, as `LABEL=REASON` (repeatable).
    #[arg(long = "lambda-missing", value_name = "LABEL=REASON")]
    lambda_missing: Vec<String>,
    /// Directory for server logs and generated configs.
    #[arg(long, default_value = "target/bench")]
    work_dir: PathBuf,
    /// Seconds each concurrency step runs (each step also stops at 30,000 sign-ins).
    #[arg(long, default_value_t = 5, value_parser = clap::value_parser!(u64).range(1..=60))]
    step_seconds: u64,
    /// Sign-ins in the soak, warm-up included.
    #[arg(long, default_value_t = 100_000, value_parser = clap::value_parser!(u64).range(2_000..=100_000))]
    soak: u64,
    /// Measure the identity-pool exchange (first sign-in vs renewal, the 9 a.m. storm) in both
    /// pool modes; `--exchange=false` skips it (about 4 minutes).
    #[arg(long, default_value_t = true, action = clap::ArgAction::Set)]
    exchange: bool,
    /// Measure only the identity-pool exchange (for iterating on it).
    #[arg(long, conflicts_with = "exchange")]
    exchange_only: bool,
    /// Cold starts measured (the median is reported).
    #[arg(long, default_value_t = 10, value_parser = clap::value_parser!(u64).range(1..=50))]
    cold_starts: u64,
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> ExitCode {
    let args = Args::parse();
    if let Err(error) = std::fs::create_dir_all(&args.work_dir) {
        eprintln!("cannot create {}: {error}", args.work_dir.display());
        return ExitCode::FAILURE;
    }
    let launcher = Launcher {
        binary: args.credbroker.clone(),
        work_dir: args.work_dir.clone(),
    };
    let started = Instant::now();
    let load_before = load_average();
    let rows = measure_all(&args, &launcher).await;
    println!("{}", table::render(&rows));
    println!(
        "Measured in {:.0} s on {} cores (load average {} before, {} after).",
        started.elapsed().as_secs_f64(),
        std::thread::available_parallelism().map_or(0, usize::from),
        load_before,
        load_average()
    );
    if rows.iter().any(|row| row.verdict() == Verdict::NotMeasured) {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    }
}

/// Every phase in turn; a phase that fails becomes "not measured" rows and the rest still run.
async fn measure_all(args: &Args, launcher: &Launcher) -> Vec<Row> {
    let step = Duration::from_secs(args.step_seconds);
    let mut rows = Vec::new();
    if args.exchange_only {
        return exchange::exchange(launcher).await;
    }
    progress("verification cost (criterion estimates)");
    rows.extend(phases::verification(&args.criterion));
    progress("Lambda binary sizes");
    rows.extend(phases::binary_sizes(&args.lambda_binaries, &args.lambda_missing));
    progress("cold starts");
    rows.extend(
        phases::cold_start(launcher, args.cold_starts)
            .await
            .unwrap_or_else(|why| phases::cold_start_failed(&why)),
    );
    progress("dev stack at concurrency 1, 16, 64");
    rows.extend(
        phases::dev_stack_ladder(launcher, step)
            .await
            .unwrap_or_else(|why| phases::ladder_failed(&why)),
    );
    progress("broker alone at concurrency 64 (peak RSS)");
    rows.extend(
        phases::broker_peak(launcher, step)
            .await
            .unwrap_or_else(|why| phases::broker_peak_failed(&why)),
    );
    if args.exchange {
        rows.extend(exchange::exchange(launcher).await);
    }
    progress(&format!("soak of {} sign-ins", table::count(args.soak)));
    rows.extend(
        phases::soak(launcher, args.soak)
            .await
            .unwrap_or_else(|why| phases::soak_failed(&why)),
    );
    rows
}

pub(crate) fn progress(what: &str) {
    eprintln!("==> {what}");
}

/// The 1-minute load average, or `?` where `/proc/loadavg` is unreadable.
fn load_average() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .ok()
        .and_then(|text| text.split_whitespace().next().map(str::to_string))
        .unwrap_or_else(|| "?".to_string())
}
