//! The AMQP layer below the handlers and the consume loops: the connection
//! (named for the broker's management tools), the topology, the
//! publisher-confirmed publisher, and the headers of the copies the worker
//! makes. It knows nothing of messages' meaning.

pub mod forward;
pub mod headers;
pub mod publisher;
pub mod topology;

use std::{
    sync::atomic::{AtomicUsize, Ordering},
    time::Duration,
};

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

/// Where the next connection attempt starts in the `[amqp] url` list: the
/// node after the one connected last, so that after losing a node the
/// worker goes to another first.
static NEXT_NODE: AtomicUsize = AtomicUsize::new(0);

/// Connects to the broker under `name`: to the first node of `[amqp] url`
/// that answers within the configured timeout, starting after the node
/// connected last. The error names every node tried (without credentials).
pub async fn connect(settings: &Settings, name: &str) -> anyhow::Result<Connection> {
    let urls = settings.amqp.url.urls();
    let timeout = Duration::from_secs(settings.amqp.connect_timeout_secs);
    let start = NEXT_NODE.load(Ordering::Relaxed);
    let mut failures = Vec::new();
    for i in 0..urls.len() {
        let index = (start + i) % urls.len();
        let url = urls[index];
        let props = ConnectionProperties::default().with_connection_name(name.into());
        let attempt = tokio::time::timeout(timeout, Connection::connect(url, props)).await;
        let node = node_of(url);
        match attempt {
            Ok(Ok(conn)) => {
                NEXT_NODE.store(index + 1, Ordering::Relaxed);
                if urls.len() > 1 {
                    tracing::info!(node = %node, "connected to the broker node");
                }
                return Ok(conn);
            }
            Ok(Err(e)) => failures.push(format!("{node}: {e}")),
            Err(_) => failures.push(format!("{node}: no answer within {} s", timeout.as_secs())),
        }
    }
    anyhow::bail!("Failed to connect to the broker: {}", failures.join("; "))
}

/// `host:port` of an AMQP URL, for logs and errors (no credentials).
fn node_of(url: &str) -> String {
    let rest = url.split_once("://").map_or(url, |(_, r)| r);
    let authority = rest.split('/').next().unwrap_or(rest);
    authority
        .rsplit_once('@')
        .map_or(authority, |(_, host)| host)
        .to_owned()
}
