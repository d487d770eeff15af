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

use crate::config::{NodeOrder, Settings};

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
/// worker goes to another first. `usize::MAX` until the first connection.
static NEXT_NODE: AtomicUsize = AtomicUsize::new(usize::MAX);

/// The node a process tries first: the first listed, or one chosen at
/// random (`seed`) among `nodes`.
pub fn first_node(order: NodeOrder, nodes: usize, seed: u64) -> usize {
    match order {
        NodeOrder::Listed => 0,
        NodeOrder::Shuffled => (seed % nodes.max(1) as u64) as usize,
    }
}

/// Connects to the broker under `name`: to the first node of `[amqp] url`
/// that answers within the configured timeout, starting after the node
/// connected last (the first time, where `[amqp] node_order` says). The
/// error names every node tried (without credentials).
pub async fn connect(settings: &Settings, name: &str) -> anyhow::Result<Connection> {
    let urls = settings.amqp.url.urls();
    let timeout = Duration::from_secs(settings.amqp.connect_timeout_secs);
    let start = match NEXT_NODE.load(Ordering::Relaxed) {
        usize::MAX => {
            use std::hash::{BuildHasher as _, Hasher as _};
            // Random per process (std's hasher keys are).
            let seed = std::collections::hash_map::RandomState::new()
                .build_hasher()
                .finish();
            first_node(settings.amqp.node_order, urls.len(), seed)
        }
        next => next,
    };
    let mut failures = Vec::new();
    for i in 0..urls.len() {
        let index = (start + i) % urls.len();
        let url = urls[index];
        let props = ConnectionProperties::default().with_connection_name(name.into());
        let attempt = tokio::time::timeout(timeout, connect_one(url, props, settings)).await;
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

/// One node: plain TCP for `amqp://`, TLS (rustls, `[amqp.tls]`'s files
/// read again at each connect, so rotated files are picked up) for
/// `amqps://`. Never plain TCP for a URL that asks for TLS.
async fn connect_one(
    url: &str,
    props: ConnectionProperties,
    settings: &Settings,
) -> anyhow::Result<Connection> {
    if !url.starts_with("amqps://") {
        return Ok(Connection::connect(url, props).await?);
    }
    crate::tls::install_provider();
    let loaded = crate::tls::load("broker", &settings.amqp.tls)?;
    let config = crate::tls::amqp_config(&loaded);
    let uri: lapin::uri::AMQPUri = url.parse().map_err(|e: String| anyhow::anyhow!(e))?;
    let expected = settings.amqp.tls.server_name.clone();
    // lapin's own path checks the URL's host; this one the name asked for,
    // when one is (the same steps otherwise: resolve, connect, handshake).
    Ok(Connection::connector(
        uri,
        lapin::runtime::default_runtime()?,
        move |uri, runtime| {
            let config = config.clone();
            let name = if expected.is_empty() {
                uri.authority.host.clone()
            } else {
                expected.clone()
            };
            Box::pin(async move {
                let addrs =
                    runtime.to_socket_addrs((uri.authority.host.clone(), uri.authority.port));
                let plain = lapin::tcp::AsyncTcpStream::connect(&runtime, addrs).await?;
                Ok(plain.into_tls(&name, config.as_ref()).await?)
            })
        },
        props,
    )
    .await?)
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn listed_starts_at_the_first_node_and_shuffled_anywhere() {
        for seed in [0, 1, 7, u64::MAX] {
            assert_eq!(first_node(NodeOrder::Listed, 3, seed), 0);
        }
        let mut seen = [false; 3];
        for seed in 0..30 {
            let i = first_node(NodeOrder::Shuffled, 3, seed);
            assert!(i < 3);
            seen[i] = true;
        }
        assert_eq!(seen, [true; 3], "every node can come first");
        assert_eq!(first_node(NodeOrder::Shuffled, 1, 12345), 0);
        assert_eq!(first_node(NodeOrder::Shuffled, 0, 12345), 0);
    }

    #[test]
    fn node_order_is_read_from_the_file_and_defaults_to_shuffled() {
        let parse = |extra: &str| -> AmqpSettingsProbe {
            toml::from_str(&format!(
                "url = \"amqp://h/%2f\"\n{extra}connect_timeout_secs = 1\nreconnect_min_delay_ms = 1\nreconnect_max_delay_ms = 1\nqueue_depth_interval_ms = 1\n"
            ))
            .unwrap()
        };
        type AmqpSettingsProbe = crate::config::AmqpSettings;
        assert_eq!(parse("").node_order, NodeOrder::Shuffled);
        assert_eq!(
            parse("node_order = \"listed\"\n").node_order,
            NodeOrder::Listed
        );
        assert!(
            toml::from_str::<AmqpSettingsProbe>(
                "url = \"amqp://h/%2f\"\nnode_order = \"first\"\nconnect_timeout_secs = 1\nreconnect_min_delay_ms = 1\nreconnect_max_delay_ms = 1\nqueue_depth_interval_ms = 1\n"
            )
            .is_err()
        );
    }
}
