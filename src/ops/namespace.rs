//! A worker under a namespace of its own: the demo, the bench and the tests
//! run the real worker with every queue name, the Redis key prefix and the
//! call-log queue renamed under a prefix, so they never touch the production
//! names and can remove exactly what they made.

use anyhow::Context as _;
use futures_util::StreamExt as _;
use lapin::options::QueueDeleteOptions;
use redis::AsyncCommands as _;

use crate::{
    amqp::{self, topology},
    config::{QueueKind, Settings},
};

/// `base` renamed under `ns`: queues `<ns>.<name>`, keys `<ns>:...`, the
/// call-log queue `<ns>.<routing key>`.
pub fn namespaced(base: &Settings, ns: &str) -> Settings {
    let mut s = base.clone();
    for kind in QueueKind::ALL {
        let q = s.queues.get_mut(kind);
        q.name = format!("{ns}.{}", q.name);
    }
    s.redis.key_prefix = format!("{ns}:");
    s.publish.call_log.routing_key = format!("{ns}.{}", base.publish.call_log.routing_key);
    s
}

/// The `AXN__` environment that turns the shipped `config.toml` into
/// `settings` as far as a namespaced worker differs from it (names, prefix,
/// retries, timeouts, concurrency, the broker and Redis, the grace period):
/// how the bench and the tests run the real binary.
pub fn env(s: &Settings) -> Vec<(String, String)> {
    let mut env = Vec::new();
    for k in QueueKind::ALL {
        let q = s.queues.get(k);
        let at = |field: &str| format!("AXN__QUEUES__{}__{field}", k.key().to_uppercase());
        env.push((at("NAME"), q.name.clone()));
        env.push((at("RETRY_DELAYS_MS"), format!("{:?}", q.retry_delays_ms)));
        env.push((at("MAX_ATTEMPTS"), q.max_attempts.to_string()));
        env.push((at("TIMEOUT_SECS"), q.timeout_secs.to_string()));
        env.push((at("CONCURRENCY"), q.concurrency.to_string()));
        env.push((at("PREFETCH"), q.prefetch.to_string()));
        env.push((at("QUEUE_TYPE"), queue_type(q.queue_type).into()));
    }
    let url = s.redis.url.to_env();
    let pairs = [
        ("AXN__AMQP__URL", s.amqp.url.to_env()),
        (
            "AXN__AMQP__NODE_ORDER",
            match s.amqp.node_order {
                crate::config::NodeOrder::Shuffled => "shuffled",
                crate::config::NodeOrder::Listed => "listed",
            }
            .into(),
        ),
        ("AXN__REDIS__KEY_PREFIX", s.redis.key_prefix.clone()),
        ("AXN__REDIS__URL", url),
        (
            "AXN__PUBLISH__CALL_LOG__ROUTING_KEY",
            s.publish.call_log.routing_key.clone(),
        ),
        (
            "AXN__PUBLISH__CALL_LOG__PASSIVE",
            s.publish.call_log.passive.to_string(),
        ),
        (
            "AXN__PUBLISH__CALL_LOG__QUEUE_TYPE",
            queue_type(s.publish.call_log.queue_type).into(),
        ),
        (
            "AXN__SHUTDOWN__GRACE_PERIOD_SECS",
            s.shutdown.grace_period_secs.to_string(),
        ),
        (
            "AXN__AMQP__RECONNECT_MAX_DELAY_MS",
            s.amqp.reconnect_max_delay_ms.to_string(),
        ),
        (
            "AXN__AMQP__RECONNECT_MIN_DELAY_MS",
            s.amqp.reconnect_min_delay_ms.to_string(),
        ),
    ];
    env.extend(pairs.into_iter().map(|(k, v)| (k.to_owned(), v)));
    for (section, tls) in [("AMQP", &s.amqp.tls), ("REDIS", &s.redis.tls)] {
        for (key, value) in [
            ("CA_FILE", &tls.ca_file),
            ("CERT_FILE", &tls.cert_file),
            ("KEY_FILE", &tls.key_file),
        ] {
            env.push((format!("AXN__{section}__TLS__{key}"), value.clone()));
        }
    }
    env
}

/// Deletes every queue of `settings`' topology and every key under its
/// prefix (on a single Redis): what a namespaced run made. Best effort: a
/// broker or Redis that is gone leaves nothing to delete.
pub async fn cleanup(settings: &Settings) {
    if let Ok(conn) = amqp::connect(settings, &amqp::connection_name(Some("cleanup"))).await {
        if let Ok(ch) = conn.create_channel().await {
            for spec in topology::specs(settings) {
                let _ = ch
                    .queue_delete(spec.name.as_str().into(), QueueDeleteOptions::default())
                    .await;
            }
            let _ = ch.close(200, "cleanup".into()).await;
        }
        let _ = conn.close(200, "cleanup".into()).await;
    }
    if let Err(e) = delete_keys(settings).await {
        tracing::warn!(error = %format!("{e:#}"), "keys not removed");
    }
}

/// Deletes every key under `settings`' prefix on its (single) Redis.
pub async fn delete_keys(settings: &Settings) -> anyhow::Result<()> {
    let url = settings.redis.url.single_url()?;
    let client = crate::store::client(url, url.starts_with("rediss://"), &settings.redis.tls)?;
    // A namespace may hold millions of keys and hashes of millions of
    // fields (the bench's production-size fill): UNLINK frees them off
    // Redis's main thread, and the answers may take longer than redis-rs's
    // default 500 ms.
    let config = redis::AsyncConnectionConfig::new()
        .set_connection_timeout(Some(std::time::Duration::from_secs(5)))
        .set_response_timeout(Some(std::time::Duration::from_secs(60)));
    let mut c = client
        .get_multiplexed_async_connection_with_config(&config)
        .await
        .context("Redis")?;
    let mut keys: Vec<String> = Vec::new();
    {
        let mut it = c
            .scan_match::<_, String>(format!("{}*", settings.redis.key_prefix))
            .await?;
        while let Some(k) = it.next().await {
            keys.push(k?);
        }
    }
    for chunk in keys.chunks(1000) {
        let _: () = c.unlink(chunk).await?;
    }
    Ok(())
}

/// A queue type as the configuration writes it.
fn queue_type(t: crate::config::QueueType) -> &'static str {
    match t {
        crate::config::QueueType::Classic => "classic",
        crate::config::QueueType::Quorum => "quorum",
    }
}
