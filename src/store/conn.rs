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

/// A Redis client for `info`: over TLS when `tls` (a `rediss://` URL, a
/// master reached with `master_tls`), trusting `[redis.tls]`'s CA file on
/// top of the system's roots and presenting its client certificate.
pub fn client<C: redis::IntoConnectionInfo>(
    info: C,
    tls: bool,
    files: &crate::config::TlsFiles,
) -> redis::RedisResult<Client> {
    if tls && let Some(certs) = certificates(files)? {
        return Client::build_with_tls(info, certs);
    }
    Client::open(info)
}

/// `[redis.tls]`'s files as redis-rs's certificates (None: none set), the
/// crypto provider installed.
fn certificates(
    files: &crate::config::TlsFiles,
) -> redis::RedisResult<Option<redis::TlsCertificates>> {
    crate::tls::install_provider();
    let loaded = crate::tls::load("Redis", files).map_err(|e| {
        redis::RedisError::from((
            redis::ErrorKind::InvalidClientConfig,
            "TLS files",
            e.to_string(),
        ))
    })?;
    Ok(crate::tls::redis_certificates(&loaded))
}

impl Backend {
    /// The connection `settings` describe, made lazily (nothing connects
    /// yet); `[redis.tls]`'s files read now.
    fn new(settings: &RedisSettings) -> redis::RedisResult<Self> {
        let connect = Duration::from_millis(settings.connect_timeout_ms);
        let response = Duration::from_millis(settings.response_timeout_ms);
        Ok(match &settings.url {
            RedisUrl::Single(url) => {
                let url = url.expose();
                let client = client(url, url.starts_with("rediss://"), &settings.tls)?;
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
            RedisUrl::Sentinel(s) => {
                Backend::Sentinel(Arc::new(super::sentinel::SentinelBackend::new(
                    s.clone(),
                    settings.tls.clone(),
                    connect,
                    response,
                )))
            }
            RedisUrl::Cluster(_) => {
                let urls = settings.url.urls();
                let mut builder = ClusterClient::builder(urls.clone())
                    .connection_timeout(connect)
                    .response_timeout(response)
                    .retries(3);
                if urls.iter().any(|u| u.starts_with("rediss://"))
                    && let Some(certs) = certificates(&settings.tls)?
                {
                    builder = builder.certs(certs);
                }
                let client = builder.build()?;
                Backend::Cluster {
                    client: Arc::new(client),
                    conn: Arc::new(OnceCell::new()),
                }
            }
        })
    }
}

/// The backend in use, rebuilt when `[redis.tls]`'s files change.
pub(super) struct Swappable {
    /// The backend and the rebuilds so far, under one lock: a generation is
    /// always read together with the backend it counts.
    current: std::sync::RwLock<(Backend, u64)>,
    watch: Option<TlsWatch>,
    /// A cluster (the URL's kind: a rebuild never changes it).
    cluster: bool,
}

/// How often the running worker looks at `[redis.tls]`'s files
/// ([`Store::reload_tls`]) and at the client certificates' expiry.
pub const TLS_RECHECK: Duration = Duration::from_secs(10);

/// `[redis.tls]`'s files' contents as last used (a digest).
struct TlsWatch {
    settings: RedisSettings,
    seen: std::sync::Mutex<u64>,
}

impl TlsWatch {
    fn new(settings: RedisSettings) -> Self {
        let seen = Self::digest(&settings.tls);
        TlsWatch {
            settings,
            seen: std::sync::Mutex::new(seen),
        }
    }

    /// The files' contents, hashed: a `touch` or a rewrite with the same
    /// bytes is no change.
    fn digest(files: &crate::config::TlsFiles) -> u64 {
        use std::hash::{Hash, Hasher};
        let mut h = std::collections::hash_map::DefaultHasher::new();
        for f in [&files.ca_file, &files.cert_file, &files.key_file] {
            std::fs::read(f.as_str()).ok().hash(&mut h);
        }
        h.finish()
    }

    /// A backend made with the files, when their contents changed since
    /// they were last used and they form a usable set (a certificate with
    /// its own key: a pair caught half-written is not used, and tried again
    /// when the files change again).
    fn changed(&self) -> Option<Backend> {
        let now = Self::digest(&self.settings.tls);
        let mut seen = self.seen.lock().unwrap_or_else(|p| p.into_inner());
        if *seen == now {
            return None;
        }
        *seen = now;
        let built = crate::tls::load("Redis", &self.settings.tls)
            .map_err(|e| e.to_string())
            .and_then(|_| Backend::new(&self.settings).map_err(|e| e.to_string()));
        match built {
            Ok(b) => {
                tracing::info!(
                    cert_file = %self.settings.tls.cert_file,
                    "Redis TLS: the files changed; the next connections use them"
                );
                Some(b)
            }
            Err(e) => {
                tracing::warn!(error = %e, "Redis TLS: the changed files cannot be used yet; keeping the current ones");
                None
            }
        }
    }
}

impl Swappable {
    /// The backend to use now.
    pub(super) fn get(&self) -> Backend {
        self.current
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .0
            .clone()
    }

    /// Rebuilds so far, in the high half; the Sentinel moves in the low.
    pub(super) fn generation(&self) -> u64 {
        let current = self.current.read().unwrap_or_else(|p| p.into_inner());
        let moves = match &current.0 {
            Backend::Sentinel(s) => s.generation(),
            _ => 0,
        };
        (current.1 << 32) | (moves & 0xffff_ffff)
    }

    /// Moves to a backend made with `[redis.tls]`'s files if they changed.
    fn reload(&self) -> bool {
        let Some(fresh) = self.watch.as_ref().and_then(TlsWatch::changed) else {
            return false;
        };
        let mut current = self.current.write().unwrap_or_else(|p| p.into_inner());
        let rebuilt = current.1 + 1;
        *current = (fresh, rebuilt);
        true
    }
}

impl Store {
    /// Creates the store without connecting: the first command connects, and
    /// a Redis that is down at start-up only makes the worker not ready.
    pub fn new(settings: &RedisSettings) -> redis::RedisResult<Self> {
        let backend = Backend::new(settings)?;
        // Client certificates rotate (cert-manager, Vault): see `reload_tls`.
        let watch = (!settings.tls.is_empty()).then(|| TlsWatch::new(settings.clone()));
        Ok(Store {
            backend: Arc::new(Swappable {
                current: std::sync::RwLock::new((backend, 0)),
                watch,
                cluster: settings.url.is_cluster(),
            }),
            keys: Keys::new(settings.key_prefix.clone()),
            replicas: Arc::new(ReplicaWait::new(
                settings.wait_for_replicas,
                Duration::from_millis(settings.wait_timeout_ms),
            )),
            signing_key: Default::default(),
            prune: Default::default(),
        })
    }

    pub fn keys(&self) -> &Keys {
        &self.keys
    }

    /// When `[redis.tls]`'s files changed (and form a usable set), moves to
    /// connections made with them: commands already sent finish on the old
    /// connection, which then closes; the next ones use a new connection.
    /// A message whose writes went to the old connection and that waits for
    /// replicas is retried (its `WAIT` would prove nothing). The worker calls
    /// this every [`TLS_RECHECK`]; returns whether it moved.
    pub fn reload_tls(&self) -> bool {
        self.backend.reload()
    }

    pub(super) fn is_cluster(&self) -> bool {
        self.backend.cluster
    }

    /// A live connection (connecting to the cluster on first use).
    pub async fn conn(&self) -> redis::RedisResult<Conn> {
        match &self.backend.get() {
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

/// Waits until replicas hold what this process wrote (Redis `WAIT`). `WAIT`
/// covers every write sent before it on the connection, and the worker's
/// writes share one connection, so one `WAIT` answers every message whose
/// writes had returned when it was sent: concurrent callers share it
/// instead of queueing one each behind each other.
pub(super) struct ReplicaWait {
    replicas: u32,
    timeout: Duration,
    /// Callers so far (each has finished its writes when it counts itself).
    started: std::sync::atomic::AtomicU64,
    /// The count a successful `WAIT` covered; held while one is in flight.
    covered: tokio::sync::Mutex<u64>,
}

impl ReplicaWait {
    fn new(replicas: u32, timeout: Duration) -> Self {
        ReplicaWait {
            replicas,
            timeout,
            started: Default::default(),
            covered: tokio::sync::Mutex::new(0),
        }
    }
}

impl Store {
    /// Which master the writes go to: changes when a Sentinel failover moved
    /// the worker to another one (always 0 otherwise).
    pub fn generation(&self) -> u64 {
        self.backend.generation()
    }

    /// After a message's writes, made since [`generation`](Self::generation)
    /// read `generation`: returns once `[redis] wait_for_replicas` replicas
    /// hold them (at once when 0), or an error saying how many did. A WAIT
    /// on another master than the writes' proves nothing: if the worker
    /// moved meanwhile, that is an error too.
    /// Whether [`Self::wait_for_replicas`] waits at all (`[redis]
    /// wait_for_replicas` set, and not a cluster).
    pub fn waits_for_replicas(&self) -> bool {
        self.replicas.replicas != 0 && !self.is_cluster()
    }

    pub async fn wait_for_replicas(&self, generation: u64) -> redis::RedisResult<()> {
        use std::sync::atomic::Ordering;
        let w = &self.replicas;
        if !self.waits_for_replicas() {
            return Ok(());
        }
        let moved = || {
            redis::RedisError::from((
                redis::ErrorKind::Io,
                "the Redis master changed while the message was applied",
            ))
        };
        if self.generation() != generation {
            return Err(moved());
        }
        let mine = w.started.fetch_add(1, Ordering::SeqCst) + 1;
        let mut covered = w.covered.lock().await;
        // Again under the lock: a WAIT another caller made after a move
        // counts this caller but not the connection its writes went to.
        if self.generation() != generation {
            return Err(moved());
        }
        if *covered >= mine {
            return Ok(());
        }
        // Everyone counted so far had finished writing: this WAIT covers them.
        let upto = w.started.load(Ordering::SeqCst);
        let mut c = self.conn().await?;
        if self.generation() != generation {
            return Err(moved());
        }
        let acked: u32 = redis::cmd("WAIT")
            .arg(w.replicas)
            .arg(w.timeout.as_millis() as u64)
            .query_async(&mut c)
            .await?;
        if acked < w.replicas {
            return Err(redis::RedisError::from((
                redis::ErrorKind::Io,
                "writes not yet on enough replicas",
                format!(
                    "{acked} of {} replicas within {} ms",
                    w.replicas,
                    w.timeout.as_millis()
                ),
            )));
        }
        *covered = upto;
        Ok(())
    }
}
