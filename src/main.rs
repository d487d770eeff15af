//! The `axn-worker` binary: parses the command line, loads the settings,
//! starts logging and runs the application until SIGTERM or Ctrl-C.

use std::{io::Read as _, path::PathBuf};

use anyhow::Context as _;
use axn_worker::{
    config::{QueueKind, Settings},
    ops,
    startup::Application,
    telemetry,
};
use clap::{Parser, Subcommand};
use tokio_util::sync::CancellationToken;

/// Keeps the AXN privacy-number platform's Redis state in step with its
/// RabbitMQ queues (XB unbind, blacklist, phone change, call record) and
/// publishes call-log events.
#[derive(Parser)]
#[command(version, propagate_version = true)]
struct Cli {
    #[command(subcommand)]
    command: Option<Command>,
    /// Configuration file (when no subcommand is given, `run` uses it).
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
}

fn parse_queue_key(key: &str) -> Result<QueueKind, String> {
    QueueKind::from_key(key).ok_or_else(|| {
        let keys: Vec<&str> = QueueKind::ALL.iter().map(|k| k.key()).collect();
        format!("unknown queue key {key:?}; use one of {}", keys.join(", "))
    })
}

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    let settings = Settings::load(&cli.config).with_context(|| {
        format!(
            "Failed to load the configuration from {}",
            cli.config.display()
        )
    })?;
    telemetry::init(&settings.log);
    // One core serves the worker best here: the broker and Redis need the
    // other (see docs/architecture.md).
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("Failed to start the async runtime")?;
    match cli.command.unwrap_or(Command::Run) {
        Command::Run => runtime.block_on(run(settings)),
        Command::Publish { queue, file } => {
            let input = read_input(&file)?;
            let n = runtime.block_on(ops::publish::publish(&settings, queue, &input))?;
            println!(
                "published {n} message(s) to {} (confirmed)",
                settings.queues.get(queue).name
            );
            Ok(())
        }
    }
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

async fn run(settings: Settings) -> anyhow::Result<()> {
    let app = Application::bind(settings).await?;
    let shutdown = CancellationToken::new();
    tokio::spawn(stop_on_signal(shutdown.clone()));
    app.run_until_stopped(shutdown).await
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
