//! `axn-bench`: a load generator that measures the worker on this machine,
//! as RabbitMQ's PerfTest measures a broker: a separate tool, not part of the
//! product. It starts real `axn-worker` processes (the binary beside this
//! one unless `--worker` names another) against the local RabbitMQ and
//! Redis, under names of its own; see `bench.rs` and docs/performance.md.

mod bench;

use std::path::PathBuf;

use anyhow::Context as _;
use axn_worker::config::{QueueKind, Settings};
use clap::Parser;

/// Measure the worker against the broker's own limit on this machine (see
/// docs/performance.md): drain rate vs bare consumers, CPU per message, peak
/// memory; or, with --latency, publish-to-Redis latency at a fixed rate. Uses
/// its own queues (axn-bench.*) and keys (axn-bench:*), removed at the end.
/// Build with --release for meaningful figures.
#[derive(Parser)]
#[command(name = "axn-bench", version)]
struct Args {
    /// The worker's configuration file (names are then put under --namespace).
    #[arg(long, short, default_value = "config.toml", env = "AXN_CONFIG")]
    config: PathBuf,
    /// The axn-worker binary to measure (default: the one beside axn-bench).
    #[arg(long)]
    worker: Option<PathBuf>,
    /// Messages to pre-load (throughput mode).
    #[arg(long, short = 'n', default_value_t = 100_000)]
    messages: usize,
    /// Throughput runs (worker and bare consumer alternating) whose
    /// medians are reported; this machine's rates vary between runs.
    #[arg(long, default_value_t = 1)]
    repeat: usize,
    /// Worker processes draining the same queues.
    #[arg(long, default_value_t = 1)]
    workers: usize,
    /// Override every queue's prefetch (concurrency stays the config's).
    #[arg(long)]
    prefetch: Option<u16>,
    /// Measure latency at a fixed publish rate instead of throughput.
    #[arg(long)]
    latency: bool,
    /// Only messages of this queue instead of the 40/30/20/10 mix
    /// (call_record, xb_unbind, blacklist, phone_history).
    #[arg(long, value_parser = QueueKind::parse_key)]
    only: Option<QueueKind>,
    /// Messages per second in latency mode.
    #[arg(long, default_value_t = 2000)]
    rate: u32,
    /// Seconds of publishing in latency mode.
    #[arg(long, default_value_t = 30)]
    duration: u64,
    /// Also append the results to this file (e.g. docs/performance.md).
    /// Without it the results are only printed.
    #[arg(long, value_name = "FILE")]
    append: Option<PathBuf>,
    /// Start each worker under this command, to profile it as measured,
    /// e.g. "valgrind --tool=callgrind" (words split at spaces). Its
    /// figures are then the profiler's, not the worker's.
    #[arg(long, value_name = "COMMAND")]
    wrap: Option<String>,
    /// Measure the binding API instead: -n cycles of BindAxByplatform +
    /// GetCallNumber + ReleaseTelX over HTTP, by --clients concurrent clients.
    #[arg(long)]
    platform: bool,
    /// Concurrent clients in --platform mode.
    #[arg(long, default_value_t = 4)]
    clients: usize,
    /// Measure the worker on an empty Redis and on one filled to
    /// production size first: 10^6 live XB bindings, 10^6 unbound ones,
    /// 10^6 call-log marks, 10^5 pool numbers, 10^5 users (times this
    /// factor; --fill alone: 1). Reports both, and Redis's memory per item.
    #[arg(long, value_name = "SCALE", num_args = 0..=1, default_missing_value = "1")]
    fill: Option<f64>,
    /// Measure an expiry storm: this many XB bindings due at the same
    /// second, while --clients loops call GetCallNumber (e.g. 100000).
    #[arg(long, value_name = "N")]
    expiry_storm: Option<usize>,
    /// Prefix of the bench's queue names and Redis keys, so that two
    /// benches (or a bench and the tests) can share a broker.
    #[arg(long, default_value = "axn-bench")]
    namespace: String,
}

fn main() -> std::process::ExitCode {
    match run(Args::parse()) {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}

fn run(a: Args) -> anyhow::Result<()> {
    let settings = Settings::load(&a.config).with_context(|| {
        format!(
            "Failed to load the configuration from {}",
            a.config.display()
        )
    })?;
    let binary = match a.worker {
        Some(path) => path,
        None => std::env::current_exe()
            .context("Failed to find axn-bench's own path")?
            .with_file_name("axn-worker"),
    };
    anyhow::ensure!(
        binary.exists(),
        "no axn-worker binary at {} (build the workspace: cargo build --release --workspace, or pass --worker)",
        binary.display()
    );
    let opts = bench::BenchOptions {
        messages: a.messages,
        repeat: a.repeat,
        workers: a.workers.max(1),
        prefetch: a.prefetch,
        latency: a.latency,
        only: a.only,
        rate: a.rate.max(1),
        duration: std::time::Duration::from_secs(a.duration.max(1)),
        append_to: a.append,
        binary,
        config: a.config,
        wrap: a
            .wrap
            .map(|w| w.split_whitespace().map(str::to_owned).collect())
            .unwrap_or_default(),
        namespace: a.namespace,
        platform: a.platform,
        clients: a.clients,
        fill: a.fill.filter(|f| *f > 0.0),
        expiry_storm: a.expiry_storm.filter(|n| *n > 0),
    };
    axn_worker::cli::runtime()?.block_on(bench::run(&settings, &opts, &mut std::io::stdout()))
}
