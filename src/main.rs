//! The `axn-worker` binary: parses the command line, loads the settings,
//! starts logging and runs the application until SIGTERM or Ctrl-C.

use std::path::PathBuf;

use anyhow::Context as _;
use axn_worker::{config::Settings, startup::Application, telemetry};
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
    }
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
