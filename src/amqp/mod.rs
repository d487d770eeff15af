//! The AMQP layer below the handlers and the consume loops: the connection
//! (named for the broker's management tools), the topology, the
//! publisher-confirmed publisher, and the headers of the copies the worker
//! makes. It knows nothing of messages' meaning.

pub mod forward;
pub mod headers;
pub mod publisher;
pub mod topology;

use std::time::Duration;

use lapin::{Connection, ConnectionProperties};

use crate::config::Settings;

/// The name the connection shows in the broker's management tools:
/// `axn-worker@<host>:<pid>`, then `/<instance>` when the embedding code
/// runs several workers in one process (tests do) and labels them.
pub fn connection_name(instance: Option<&str>) -> String {
    let base = format!(
        "axn-worker@{}:{}",
        gethostname::gethostname().to_string_lossy(),
        std::process::id()
    );
    match instance {
        Some(label) => format!("{base}/{label}"),
        None => base,
    }
}

/// Connects to the broker under `name`, within the configured timeout.
pub async fn connect(settings: &Settings, name: &str) -> anyhow::Result<Connection> {
    use anyhow::Context as _;
    let props = ConnectionProperties::default().with_connection_name(name.into());
    let timeout = Duration::from_secs(settings.amqp.connect_timeout_secs);
    tokio::time::timeout(
        timeout,
        Connection::connect(settings.amqp.url.expose(), props),
    )
    .await
    .map_err(|_| anyhow::anyhow!("no answer from the broker within {} s", timeout.as_secs()))?
    .context("Failed to connect to the broker")
}
