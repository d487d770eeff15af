//! The connection: one multiplexed connection to a single Redis, or a
//! cluster connection made on first use; and the header-signing key kept in
//! Redis.

use std::{sync::Arc, time::Duration};

use redis::{
    AsyncCommands, Client, Cmd, Pipeline, RedisFuture, Value,
    aio::{ConnectionLike, ConnectionManager, ConnectionManagerConfig},
    cluster::ClusterClient,
    cluster_async::ClusterConnection,
};
use tokio::sync::OnceCell;

use super::{Keys, Store};
use crate::{
    amqp::headers::SigningKey,
    config::{RedisSettings, RedisUrl},
};

/// The connection: one multiplexed connection to a single Redis, or a
/// cluster connection made on first use.
#[derive(Clone)]
pub(super) enum Backend {
    Single(ConnectionManager),
    Sentinel(Arc<super::sentinel::SentinelBackend>),
    Cluster {
        client: Arc<ClusterClient>,
        conn: Arc<OnceCell<ClusterConnection>>,
    },
}

/// A live connection of either kind; commands and scripts run on it alike.
#[derive(Clone)]
pub enum Conn {
    Single(ConnectionManager),
    Cluster(ClusterConnection),
}

impl ConnectionLike for Conn {
    fn req_packed_command<'a>(&'a mut self, cmd: &'a Cmd) -> RedisFuture<'a, Value> {
        match self {
            Conn::Single(c) => c.req_packed_command(cmd),
            Conn::Cluster(c) => c.req_packed_command(cmd),
        }
    }
    fn req_packed_commands<'a>(
        &'a mut self,
        cmd: &'a Pipeline,
        offset: usize,
        count: usize,
    ) -> RedisFuture<'a, Vec<Value>> {
        match self {
            Conn::Single(c) => c.req_packed_commands(cmd, offset, count),
            Conn::Cluster(c) => c.req_packed_commands(cmd, offset, count),
        }
    }
    fn get_db(&self) -> i64 {
        match self {
            Conn::Single(c) => c.get_db(),
            Conn::Cluster(c) => c.get_db(),
        }
    }
}

impl Store {
    /// Creates the store without connecting: the first command connects, and
    /// a Redis that is down at start-up only makes the worker not ready.
    pub fn new(settings: &RedisSettings) -> redis::RedisResult<Self> {
        let connect = Duration::from_millis(settings.connect_timeout_ms);
        let response = Duration::from_millis(settings.response_timeout_ms);
        let backend = match &settings.url {
            RedisUrl::Single(url) => {
                let client = Client::open(url.expose())?;
                // Both timeouts deliberately from config (redis-rs's defaults
                // are 500 ms and 1 s). Commands wait on a reconnection in
                // progress, so its retries are few: during an outage a command
                // fails within seconds and the message takes the broker's
                // retry path (nothing hangs until the handler timeout). The
                // next command reconnects anew.
                let config = ConnectionManagerConfig::new()
                    .set_connection_timeout(Some(connect))
                    .set_response_timeout(Some(response))
                    .set_number_of_retries(3)
                    .set_max_delay(Duration::from_secs(1));
                Backend::Single(ConnectionManager::new_lazy_with_config(client, config)?)
            }
            RedisUrl::Sentinel(s) => Backend::Sentinel(Arc::new(
                super::sentinel::SentinelBackend::new(s.clone(), connect, response),
            )),
            RedisUrl::Cluster(_) => {
                let client = ClusterClient::builder(settings.url.urls())
                    .connection_timeout(connect)
                    .response_timeout(response)
                    .retries(3)
                    .build()?;
                Backend::Cluster {
                    client: Arc::new(client),
                    conn: Arc::new(OnceCell::new()),
                }
            }
        };
        Ok(Store {
            backend,
            keys: Keys::new(settings.key_prefix.clone()),
            signing_key: Default::default(),
        })
    }

    pub fn keys(&self) -> &Keys {
        &self.keys
    }

    pub(super) fn is_cluster(&self) -> bool {
        matches!(self.backend, Backend::Cluster { .. })
    }

    /// A live connection (connecting to the cluster on first use).
    pub async fn conn(&self) -> redis::RedisResult<Conn> {
        match &self.backend {
            Backend::Single(c) => Ok(Conn::Single(c.clone())),
            Backend::Sentinel(s) => Ok(Conn::Single(s.conn().await?)),
            Backend::Cluster { client, conn } => {
                let c = conn
                    .get_or_try_init(|| client.get_async_connection())
                    .await?;
                Ok(Conn::Cluster(c.clone()))
            }
        }
    }

    /// The header-signing key if it has been read already (no I/O).
    pub fn cached_signing_key(&self) -> Option<SigningKey> {
        self.signing_key.get().cloned()
    }

    /// The header-signing key: read once from Redis, created there (SET NX,
    /// 32 random bytes) by the first worker that needs it. `None` while Redis
    /// cannot be reached: copies are then forwarded unsigned, and their
    /// history counts as none.
    pub async fn signing_key(&self) -> Option<SigningKey> {
        if let Some(k) = self.signing_key.get() {
            return Some(k.clone());
        }
        let read = async {
            let mut c = self.conn().await?;
            let key = self.keys.signing_key();
            let fresh: String = {
                use rand::RngCore as _;
                let mut bytes = [0u8; 32];
                rand::rng().fill_bytes(&mut bytes);
                bytes.iter().map(|b| format!("{b:02x}")).collect()
            };
            let _: Option<String> = redis::cmd("SET")
                .arg(&key)
                .arg(&fresh)
                .arg("NX")
                .query_async(&mut c)
                .await?;
            c.get::<_, Option<String>>(&key).await
        };
        let text = match tokio::time::timeout(Duration::from_secs(2), read).await {
            Ok(Ok(Some(text))) => text,
            _ => return None,
        };
        let bytes: Vec<u8> = (0..text.len() / 2)
            .filter_map(|i| u8::from_str_radix(text.get(2 * i..2 * i + 2)?, 16).ok())
            .collect();
        let key: [u8; 32] = bytes.try_into().ok()?;
        Some(self.signing_key.get_or_init(|| SigningKey(key)).clone())
    }

    pub async fn ping(&self) -> redis::RedisResult<()> {
        let mut c = self.conn().await?;
        redis::cmd("PING").query_async::<()>(&mut c).await
    }
}
