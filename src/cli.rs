//! The command line: the `axn-worker` command tree and its dispatch. Each
//! subcommand's arguments live beside the code that runs it (`ops::*`,
//! `startup` for `run`); this file only routes.

use std::path::PathBuf;

use anyhow::Context as _;
use clap::{Parser, Subcommand};

use crate::{config::Settings, ops, startup, telemetry};

/// Keeps the AXN privacy-number platform's Redis state in step with its
/// RabbitMQ queues (XB unbind, blacklist, phone change, call record) and
/// publishes call-log events. Without a command, runs the worker.
///
/// Every setting comes from the configuration file (--config), and any of
/// them can be overridden from the environment as AXN__<SECTION>__<KEY>,
/// e.g. AXN__AMQP__URL or AXN__QUEUES__XB_UNBIND__CONCURRENCY.
#[derive(Parser)]
#[command(name = "axn-worker", version, propagate_version = true)]
pub struct Cli {
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
    Demo(ops::demo::DemoArgs),
    /// Load and validate the configuration (file and AXN__ environment) and
    /// print the effective settings, secrets hidden. Exits non-zero with the
    /// reason when it is invalid.
    CheckConfig,
    /// Ask the running worker whether it is ready (its /readyz): exit 0 when
    /// it is, 1 with what is missing. For the Docker HEALTHCHECK and scripts.
    Health(ops::health::HealthArgs),
    /// Publish JSON messages to an input queue, publisher-confirmed: one JSON
    /// document, or one per line. For smoke tests and manual fixes.
    ///
    /// Example: echo '{"subId":"1","telX":"17111526089"}' | axn-worker publish xb_unbind
    Publish(ops::publish::PublishArgs),
    /// Dead-lettered messages of an input queue (<queue>.dlq).
    #[command(subcommand)]
    Dlq(ops::dlq::DlqCommand),
    /// Messages waiting in an input queue's retry queues.
    #[command(subcommand)]
    Retries(ops::dlq::RetriesCommand),
    /// Call records that matched no XB binding (<call_record queue>.unattributed).
    #[command(subcommand)]
    Parked(ops::dlq::ParkedCommand),
    /// The binding API's number pool: import numbers, count them.
    #[command(subcommand)]
    Pool(ops::pool::PoolCommand),
    /// The callbacks a carrier sends, on request (simulated carrier): an XB
    /// binding's unbind (MQ108) or a call record, to the worker's queues.
    #[command(subcommand)]
    Simulate(ops::simulate::SimulateCommand),
    /// Print the worker's queues as a RabbitMQ definitions file, for brokers
    /// whose topology SREs own (import it, then run with passive = true).
    Definitions(ops::definitions::DefinitionsArgs),
    /// Check messages offline with the worker's own parser: each gets
    /// "accepted" or the reason it would be dead-lettered for. Publishes
    /// nothing. Input: one JSON document, or one message per line.
    ///
    /// Example: axn-worker validate blacklist messages.jsonl
    Validate(ops::validate::ValidateArgs),
    /// Print the worker's channels as an AsyncAPI 3.0 document (queues,
    /// message schemas with the seed's examples, the headers of moved
    /// messages), generated from its topology and parsers.
    Asyncapi(ops::asyncapi::AsyncApiArgs),
}

/// Loads the settings and runs the command (the worker by default).
/// An error that asks for an exit status of its own (the default is 1). The
/// binary looks for it in the error's chain.
#[derive(Debug, thiserror::Error)]
#[error("{message}")]
pub struct ExitStatus {
    pub code: u8,
    pub message: String,
}

/// The exit status for `error`: its [`ExitStatus`] if it carries one, else 1.
pub fn exit_code(error: &anyhow::Error) -> u8 {
    error
        .chain()
        .find_map(|e| e.downcast_ref::<ExitStatus>())
        .map_or(1, |s| s.code)
}

pub fn run(cli: Cli) -> anyhow::Result<()> {
    // Offline commands do without a config file: the shipped defaults.
    let offline = matches!(
        cli.command,
        Some(Command::Validate(_) | Command::Asyncapi(_))
    );
    let load = if offline {
        Settings::load_or_shipped
    } else {
        Settings::load
    };
    let settings = load(&cli.config).with_context(|| {
        format!(
            "Failed to load the configuration from {}",
            cli.config.display()
        )
    })?;
    let command = cli.command.unwrap_or(Command::Run);
    // The worker logs; so do the dead-letter tools (the audit line of an
    // unmasked export).
    if matches!(command, Command::Run | Command::Demo(_) | Command::Dlq(_)) {
        telemetry::init(&settings.log);
    }
    let rt = runtime()?;
    match command {
        Command::Run => rt.block_on(startup::run_until_signal(settings)),
        Command::Demo(args) => rt.block_on(args.run(&settings)),
        Command::CheckConfig => ops::check_config::run(&settings),
        Command::Publish(args) => rt.block_on(args.run(&settings)),
        Command::Health(args) => rt.block_on(args.run(&settings)),
        Command::Dlq(c) => rt.block_on(c.run(&settings)),
        Command::Parked(c) => rt.block_on(c.run(&settings)),
        Command::Retries(c) => rt.block_on(c.run(&settings)),
        Command::Pool(c) => rt.block_on(c.run(&settings)),
        Command::Simulate(c) => rt.block_on(c.run(&settings)),
        Command::Definitions(args) => args.run(&settings),
        Command::Validate(args) => args.run(&settings),
        Command::Asyncapi(args) => args.run(&settings),
    }
}

/// The async runtime every command runs on: one thread. One core serves the
/// worker best on these machines, the broker and Redis need the other
/// (docs/architecture.md, "Runtime").
pub fn runtime() -> anyhow::Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("Failed to start the async runtime")
}
