//! The `axn-worker` binary: parses the command line, loads the settings,
//! starts logging and runs the worker (or an operator command).

use std::{io::Read as _, path::PathBuf};

use anyhow::Context as _;
use axn_worker::{
    config::{QueueKind, Settings},
    ops,
    startup::Application,
    telemetry,
};
use clap::{Args, Parser, Subcommand};
use tokio_util::sync::CancellationToken;

/// Keeps the AXN privacy-number platform's Redis state in step with its
/// RabbitMQ queues (XB unbind, blacklist, phone change, call record) and
/// publishes call-log events. Without a command, runs the worker.
///
/// Every setting comes from the configuration file (--config), and any of
/// them can be overridden from the environment as AXN__<SECTION>__<KEY>,
/// e.g. AXN__AMQP__URL or AXN__QUEUES__XB_UNBIND__CONCURRENCY.
#[derive(Parser)]
#[command(version, propagate_version = true)]
struct Cli {
    #[command(subcommand)]
    command: Option<Command>,
    /// Configuration file.
    #[arg(
        long,
        short,
        global = true,
        default_value = "config.toml",
        env = "AXN_CONFIG"
    )]
    config: PathBuf,
}

#[derive(Subcommand)]
enum Command {
    /// Run all consumers and the HTTP server (the default). Stops cleanly on
    /// SIGTERM or Ctrl-C: no new messages, in-flight ones finished and acked.
    Run,
    /// A guided tour: run a worker under demo names (queues axn-demo.*, keys
    /// axn-demo:*), publish the seed's example message of each kind, and show
    /// what changed in Redis and what was published.
    Demo {
        /// Leave the demo's queues and keys in place to look at them.
        #[arg(long)]
        keep: bool,
    },
    /// Load and validate the configuration (file and AXN__ environment) and
    /// print the effective settings, secrets hidden. Exits non-zero with the
    /// reason when it is invalid.
    CheckConfig,
    /// Publish JSON messages to an input queue, publisher-confirmed: one JSON
    /// document, or one per line. For smoke tests and manual fixes.
    ///
    /// Example: echo '{"subId":"1","telX":"17111526089"}' | axn-worker publish xb_unbind
    Publish {
        /// The input queue: xb_unbind, blacklist, phone_history or call_record.
        #[arg(value_parser = parse_queue_key)]
        queue: QueueKind,
        /// File to read, or - for standard input.
        #[arg(default_value = "-")]
        file: PathBuf,
    },
    /// Dead-lettered messages of an input queue (<queue>.dlq).
    #[command(subcommand)]
    Dlq(DlqCommand),
    /// Call records that matched no XB binding (<call_record queue>.unattributed).
    #[command(subcommand)]
    Parked(ParkedCommand),
    /// Measure the worker against the broker's own limit on this machine (see
    /// docs/performance.md): drain rate vs a bare consumer, CPU per message,
    /// peak memory; or, with --latency, publish-to-Redis latency at a fixed
    /// rate. Uses its own queues (axn-bench.*) and keys (axn-bench:*),
    /// removed at the end.
    /// Build with --release for meaningful figures.
    Bench {
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
        /// Override every queue's concurrency (= prefetch).
        #[arg(long)]
        prefetch: Option<u16>,
        /// Measure latency at a fixed publish rate instead of throughput.
        #[arg(long)]
        latency: bool,
        /// Only messages of this queue instead of the 40/30/20/10 mix
        /// (call_record, xb_unbind, blacklist, phone_history).
        #[arg(long, value_parser = parse_queue_key)]
        only: Option<QueueKind>,
        /// Messages per second in latency mode.
        #[arg(long, default_value_t = 2000)]
        rate: u32,
        /// Seconds of publishing in latency mode.
        #[arg(long, default_value_t = 30)]
        duration: u64,
        /// Append the results to this file (default docs/performance.md; "-" for none).
        #[arg(long, default_value = "docs/performance.md")]
        append: PathBuf,
        /// Start each worker under this command, to profile it as measured,
        /// e.g. "valgrind --tool=callgrind" (words split at spaces). Its
        /// figures are then the profiler's, not the worker's: use --append -.
        #[arg(long, value_name = "COMMAND")]
        wrap: Option<String>,
        /// Prefix of the bench's queue names and Redis keys, so that two
        /// benches (or a bench and the tests) can share a broker.
        #[arg(long, default_value = "axn-bench")]
        namespace: String,
    },
    /// Print the worker's queues as a RabbitMQ definitions file, for brokers
    /// whose topology SREs own (import it, then run with passive = true).
    Definitions {
        /// The vhost to put the queues in.
        #[arg(long, default_value = "/")]
        vhost: String,
    },
}

#[derive(Subcommand)]
enum DlqCommand {
    /// Show dead-lettered messages (reason, attempts, first and last failure,
    /// body with numbers masked) without consuming them.
    List {
        /// xb_unbind, blacklist, phone_history or call_record.
        #[arg(value_parser = parse_queue_key)]
        queue: QueueKind,
        #[command(flatten)]
        limit: Limit,
    },
    /// Move dead-lettered messages back to their input queue, each acked on the
    /// dead-letter queue only after the broker confirmed the republish. Moves
    /// at most the messages present when it starts.
    Replay {
        /// xb_unbind, blacklist, phone_history or call_record.
        #[arg(value_parser = parse_queue_key)]
        queue: QueueKind,
        #[command(flatten)]
        limit: OptionalLimit,
    },
}

#[derive(Subcommand)]
enum ParkedCommand {
    /// Show parked call records without consuming them.
    List {
        #[command(flatten)]
        limit: Limit,
    },
    /// Move parked call records back to the call-record queue (for instance
    /// once their bindings exist), each acked only after a confirmed republish.
    Replay {
        #[command(flatten)]
        limit: OptionalLimit,
    },
}

#[derive(Args)]
struct Limit {
    /// Show at most this many messages.
    #[arg(long, short = 'n', default_value_t = 20)]
    limit: usize,
}

#[derive(Args)]
struct OptionalLimit {
    /// Move at most this many messages (default: all present at the start).
    #[arg(long, short = 'n')]
    limit: Option<usize>,
}

fn parse_queue_key(key: &str) -> Result<QueueKind, String> {
    QueueKind::from_key(key).ok_or_else(|| {
        let keys: Vec<&str> = QueueKind::ALL.iter().map(|k| k.key()).collect();
        format!("unknown queue key {key:?}; use one of {}", keys.join(", "))
    })
}

fn main() -> std::process::ExitCode {
    match real_main() {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            // The whole cause chain on one line; no backtrace for operators.
            eprintln!("error: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}

fn real_main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    let settings = Settings::load(&cli.config).with_context(|| {
        format!(
            "Failed to load the configuration from {}",
            cli.config.display()
        )
    })?;
    let command = cli.command.unwrap_or(Command::Run);
    if matches!(command, Command::Run | Command::Demo { .. }) {
        telemetry::init(&settings.log);
    }
    // One core serves the worker best here: the broker and Redis need the
    // other (see docs/architecture.md).
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("Failed to start the async runtime")?;
    match command {
        Command::Run => runtime.block_on(run(settings)),
        Command::Demo { keep } => {
            runtime.block_on(ops::demo::run(&settings, &mut std::io::stdout(), keep))
        }
        Command::CheckConfig => {
            print!("{}", ops::check_config::render(&settings)?);
            eprintln!("configuration OK");
            Ok(())
        }
        Command::Publish { queue, file } => {
            let input = read_input(&file)?;
            let n = runtime.block_on(ops::publish::publish(&settings, queue, &input))?;
            println!(
                "published {n} message(s) to {} (confirmed)",
                settings.queues.get(queue).name
            );
            Ok(())
        }
        Command::Dlq(DlqCommand::List { queue, limit }) => runtime.block_on(list(
            &settings,
            &settings.queues.get(queue).dlq_name(),
            limit.limit,
        )),
        Command::Dlq(DlqCommand::Replay { queue, limit }) => {
            let q = settings.queues.get(queue);
            runtime.block_on(replay(&settings, &q.dlq_name(), &q.name, limit.limit))
        }
        Command::Parked(ParkedCommand::List { limit }) => runtime.block_on(list(
            &settings,
            &settings.queues.call_record.unattributed_name(),
            limit.limit,
        )),
        Command::Parked(ParkedCommand::Replay { limit }) => {
            let q = &settings.queues.call_record;
            runtime.block_on(replay(
                &settings,
                &q.unattributed_name(),
                &q.name,
                limit.limit,
            ))
        }
        Command::Bench {
            messages,
            repeat,
            workers,
            prefetch,
            latency,
            only,
            rate,
            duration,
            append,
            wrap,
            namespace,
        } => {
            let opts = ops::bench::BenchOptions {
                messages,
                repeat,
                workers: workers.max(1),
                prefetch,
                latency,
                only,
                rate: rate.max(1),
                duration: std::time::Duration::from_secs(duration.max(1)),
                append_to: (append.as_os_str() != "-").then_some(append),
                binary: std::env::current_exe().context("Failed to find the axn-worker binary")?,
                config: cli.config.clone(),
                wrap: wrap
                    .map(|w| w.split_whitespace().map(str::to_owned).collect())
                    .unwrap_or_default(),
                namespace,
            };
            runtime.block_on(ops::bench::run(&settings, &opts, &mut std::io::stdout()))
        }
        Command::Definitions { vhost } => {
            println!("{:#}", ops::definitions::definitions(&settings, &vhost));
            Ok(())
        }
    }
}

async fn run(settings: Settings) -> anyhow::Result<()> {
    let app = Application::bind(settings).await?;
    let shutdown = CancellationToken::new();
    tokio::spawn(stop_on_signal(shutdown.clone()));
    app.run_until_stopped(shutdown).await
}

async fn list(settings: &Settings, queue: &str, limit: usize) -> anyhow::Result<()> {
    let entries = ops::dlq::list(settings, queue, limit).await?;
    if entries.is_empty() {
        println!("{queue} is empty");
    }
    for (i, e) in entries.iter().enumerate() {
        println!("--- {queue} #{}\n{e}", i + 1);
    }
    Ok(())
}

async fn replay(
    settings: &Settings,
    from: &str,
    to: &str,
    limit: Option<usize>,
) -> anyhow::Result<()> {
    // Drawn only when stderr is a terminal.
    let bar = indicatif::ProgressBar::new(0);
    bar.set_style(
        indicatif::ProgressStyle::with_template("{msg} [{bar:40}] {pos}/{len} ({per_sec})")
            .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
    );
    bar.set_message(format!("{from} -> {to}"));
    let progress = |done: u64, total: u64| {
        bar.set_length(total);
        bar.set_position(done);
    };
    let moved = ops::dlq::replay(settings, from, to, limit, &progress).await;
    bar.finish_and_clear();
    let moved = moved?;
    println!("replayed {moved} message(s) from {from} to {to}");
    Ok(())
}

fn read_input(file: &std::path::Path) -> anyhow::Result<String> {
    let mut input = String::new();
    if file.as_os_str() == "-" {
        std::io::stdin()
            .read_to_string(&mut input)
            .context("Failed to read standard input")?;
    } else {
        input = std::fs::read_to_string(file)
            .with_context(|| format!("Failed to read {}", file.display()))?;
    }
    Ok(input)
}

/// Cancels `shutdown` on SIGTERM or Ctrl-C.
async fn stop_on_signal(shutdown: CancellationToken) {
    let ctrl_c = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        match signal(SignalKind::terminate()) {
            Ok(mut term) => {
                tokio::select! {
                    _ = ctrl_c => {},
                    _ = term.recv() => {},
                }
            }
            Err(_) => {
                let _ = ctrl_c.await;
            }
        }
    }
    #[cfg(not(unix))]
    let _ = ctrl_c.await;
    tracing::info!("stop requested: finishing messages in flight");
    shutdown.cancel();
}
