//! Settings: the shipped `config.toml` (embedded, so every key has a default),
//! then the operator's file, then `AXN__SECTION__KEY` environment variables,
//! merged in that order and validated before anything connects.
//!
//! The field documentation for users lives in `config.toml` itself; the
//! structs here mirror it one to one and reject unknown keys, so a typo in a
//! key name is an error at start-up instead of a silently ignored setting.

mod platform;
mod secret;
mod validate;

pub use secret::Secret;

pub use platform::{AliyunSettings, CarrierKind, PlatformSettings, Role, SimulatedSettings};

use std::{fmt, path::Path, time::Duration};

use figment::{
    Figment,
    providers::{Env, Format, Toml},
};
use serde::{Deserialize, Serialize};

/// The shipped configuration; its values are the defaults of every key.
pub const DEFAULT_CONFIG: &str = include_str!("../../config.toml");

/// Errors of loading or validating the configuration.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("configuration file {0} does not exist")]
    Missing(String),
    #[error("configuration file {0} cannot be read: {1}")]
    Unreadable(String, String),
    #[error("invalid configuration: {0}")]
    Parse(String),
    #[error("invalid configuration: {0}")]
    Invalid(String),
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Settings {
    pub amqp: AmqpSettings,
    pub redis: RedisSettings,
    pub http: HttpSettings,
    pub log: LogSettings,
    pub shutdown: ShutdownSettings,
    pub queues: QueuesSettings,
    pub publish: PublishSettings,
    pub mapping: MappingSettings,
    pub operations: OperationsSettings,
    pub platform: PlatformSettings,
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct AmqpSettings {
    /// One broker, or the nodes of a cluster. Holds credentials: never printed.
    pub url: AmqpUrl,
    /// Which node of a list a process tries first (absent in older files:
    /// `shuffled`).
    #[serde(default)]
    pub node_order: NodeOrder,
    pub connect_timeout_secs: u64,
    pub reconnect_min_delay_ms: u64,
    pub reconnect_max_delay_ms: u64,
    /// How often the depth of every queue of the worker is read (passive
    /// declares) for `axn_queue_depth`.
    pub queue_depth_interval_ms: u64,
    /// TLS files for `amqps://` (absent in older files: none).
    #[serde(default)]
    pub tls: TlsFiles,
}

/// The files of a TLS client: the CAs to trust beyond the system's roots,
/// and a client certificate with its key for mutual TLS. TLS itself is
/// on when the URL says so (`amqps://`, `rediss://`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct TlsFiles {
    /// PEM file of CA certificates to trust on top of the system's roots.
    pub ca_file: String,
    /// PEM file of the client certificate chain (mutual TLS).
    pub cert_file: String,
    /// PEM file of the client certificate's private key.
    pub key_file: String,
    /// The name the server's certificate must hold, when it is not the
    /// URL's host (a broker reached by IP address or through a load
    /// balancer's name); empty: the URL's host. Broker only: redis-rs checks
    /// the URL's host.
    pub server_name: String,
}

impl TlsFiles {
    pub fn is_empty(&self) -> bool {
        self == &TlsFiles::default()
    }
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct RedisSettings {
    /// One URL, or a list of cluster node URLs. May hold a password: never printed.
    pub url: RedisUrl,
    pub key_prefix: String,
    pub connect_timeout_ms: u64,
    pub response_timeout_ms: u64,
    pub unbound_retention_secs: u64,
    pub calllog_dedupe_ttl_secs: u64,
    /// Replicas that must hold a message's writes before it is acknowledged
    /// (Redis `WAIT`); 0: do not wait.
    pub wait_for_replicas: u32,
    /// How long to wait for them; longer is a transient failure.
    pub wait_timeout_ms: u64,
    /// TLS files for `rediss://` (the single Redis, every cluster node, the
    /// sentinels and the master they name); absent in older files: none.
    #[serde(default)]
    pub tls: TlsFiles,
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct HttpSettings {
    pub listen: String,
    /// Seconds a connection may take to send a request's headers, and stay
    /// idle between requests.
    pub header_read_timeout_secs: u64,
    /// Seconds a request may take from its headers to the answer.
    pub request_timeout_secs: u64,
    /// HTTPS (absent in older files: plain HTTP).
    #[serde(default)]
    pub tls: HttpTls,
}

/// `[http.tls]`: the listener's certificate chain and key (PEM files).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct HttpTls {
    pub cert_file: String,
    pub key_file: String,
    /// How often the files are checked for a new certificate.
    pub reload_check_secs: u64,
}

impl Default for HttpTls {
    fn default() -> Self {
        HttpTls {
            cert_file: String::new(),
            key_file: String::new(),
            reload_check_secs: 10,
        }
    }
}

impl HttpTls {
    pub fn enabled(&self) -> bool {
        !self.cert_file.is_empty() || !self.key_file.is_empty()
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    Text,
    Json,
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct LogSettings {
    pub format: LogFormat,
    pub level: String,
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct ShutdownSettings {
    pub grace_period_secs: u64,
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct QueuesSettings {
    pub xb_unbind: QueueSettings,
    pub blacklist: QueueSettings,
    pub phone_history: QueueSettings,
    pub call_record: QueueSettings,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum QueueType {
    Classic,
    Quorum,
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct QueueSettings {
    pub name: String,
    /// Messages handled at once: the handler slots.
    pub concurrency: u16,
    /// Deliveries the broker may hand this consumer before any is
    /// acknowledged (AMQP prefetch): those running, those waiting for their
    /// entity's turn or a slot, and those waiting for a publish confirm.
    pub prefetch: u16,
    pub timeout_secs: u64,
    pub max_attempts: u32,
    pub retry_delays_ms: Vec<u64>,
    pub max_body_bytes: usize,
    /// Records one call-record array may hold (only call_record uses it).
    pub max_batch_records: usize,
    pub queue_type: QueueType,
    pub passive: bool,
    /// Most messages `.dlq` and `.unattributed` may hold each (0: unbounded).
    pub dlq_max_length: u64,
    /// Most body bytes `.dlq` and `.unattributed` may hold each (0: unbounded).
    pub dlq_max_bytes: u64,
}

impl QueueSettings {
    pub fn timeout(&self) -> Duration {
        Duration::from_secs(self.timeout_secs)
    }
    pub fn dlq_name(&self) -> String {
        format!("{}.dlq", self.name)
    }
    pub fn unattributed_name(&self) -> String {
        format!("{}.unattributed", self.name)
    }
    pub fn retry_queue_name(&self, delay_ms: u64) -> String {
        format!("{}.retry.{delay_ms}ms", self.name)
    }
    /// The retry queue that holds a message after its `failed_attempts`-th
    /// failure (1-based); the last delay repeats.
    pub fn retry_queue_after(&self, failed_attempts: u32) -> String {
        let step = (failed_attempts.max(1) as usize - 1).min(self.retry_delays_ms.len() - 1);
        self.retry_queue_name(self.retry_delays_ms[step])
    }
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct PublishSettings {
    pub call_log: CallLogSettings,
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct CallLogSettings {
    pub exchange: String,
    pub routing_key: String,
    pub passive: bool,
    /// The type the worker declares the call-log queue with (default
    /// exchange only): "quorum" on a cluster, so the events survive a node.
    pub queue_type: QueueType,
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct MappingSettings {
    pub username: String,
    pub password: Secret,
    pub max_batch: usize,
    pub max_body_bytes: usize,
}

/// `[operations]`: what the operator commands may do.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct OperationsSettings {
    /// Allows `dlq export --unmasked` (raw bodies, numbers in full, to a file).
    pub allow_unmasked_export: bool,
}

/// `[amqp] node_order`: where each process starts in a list of nodes.
#[derive(Clone, Copy, Debug, Default, Deserialize, Serialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum NodeOrder {
    /// A node chosen at random per process, so that replicas sharing one
    /// configuration spread over the cluster (as the RabbitMQ Java client
    /// shuffles its address list).
    #[default]
    Shuffled,
    /// The first node of the list, then the next: for a preferred node.
    Listed,
}

/// `[amqp] url`: one broker URL, or the addresses of a RabbitMQ cluster's
/// nodes, tried in turn (as Spring AMQP's `addresses`).
#[derive(Clone, Debug, Deserialize, Serialize, PartialEq, Eq)]
#[serde(untagged)]
pub enum AmqpUrl {
    One(Secret),
    Nodes(Vec<Secret>),
}

impl AmqpUrl {
    pub fn one(url: impl Into<String>) -> Self {
        AmqpUrl::One(Secret::new(url))
    }
    pub fn urls(&self) -> Vec<&str> {
        match self {
            AmqpUrl::One(u) => vec![u.expose()],
            AmqpUrl::Nodes(us) => us.iter().map(Secret::expose).collect(),
        }
    }
    /// What an `AXN__AMQP__URL` variable holds for this value.
    pub fn to_env(&self) -> String {
        match self {
            AmqpUrl::One(u) => u.expose().to_owned(),
            AmqpUrl::Nodes(_) => format!("{:?}", self.urls()),
        }
    }
}

/// `[redis] url`: one Redis, or the seed nodes of a Redis Cluster.
#[derive(Clone, Debug, Deserialize, Serialize, PartialEq, Eq)]
#[serde(untagged)]
pub enum RedisUrl {
    Single(Secret),
    Cluster(Vec<Secret>),
    Sentinel(SentinelSettings),
}

/// `[redis] url = { sentinels = [...], master_name = "..." }`: the master of
/// a Sentinel-managed set, found through its sentinels and followed across
/// failovers.
#[derive(Clone, Debug, Deserialize, Serialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct SentinelSettings {
    /// Sentinel addresses, `redis://host:26379` (a password in one is the
    /// sentinels' own).
    pub sentinels: Vec<Secret>,
    /// The master set's name in the sentinels' configuration.
    pub master_name: String,
    /// The master's credentials and database, when it needs them.
    #[serde(default)]
    pub username: String,
    #[serde(default = "no_secret")]
    pub password: Secret,
    #[serde(default)]
    pub db: i64,
    /// The master (and any replica promoted) is reached over TLS, with
    /// `[redis.tls]`'s files, whatever the sentinels' own URLs say.
    #[serde(default)]
    pub master_tls: bool,
}

fn no_secret() -> Secret {
    Secret::new("")
}

impl RedisUrl {
    pub fn single(url: impl Into<String>) -> Self {
        RedisUrl::Single(Secret::new(url))
    }
    pub fn is_cluster(&self) -> bool {
        matches!(self, RedisUrl::Cluster(_))
    }
    /// The URLs given: the single Redis, the cluster's seed nodes, or the
    /// sentinels.
    pub fn urls(&self) -> Vec<&str> {
        match self {
            RedisUrl::Single(u) => vec![u.expose()],
            RedisUrl::Cluster(us) => us.iter().map(Secret::expose).collect(),
            RedisUrl::Sentinel(s) => s.sentinels.iter().map(Secret::expose).collect(),
        }
    }
    /// The URL of a single Redis, or an error saying a tool needs one.
    pub fn single_url(&self) -> Result<&str, ConfigError> {
        match self {
            RedisUrl::Single(u) => Ok(u.expose()),
            _ => Err(ConfigError::Invalid(
                "this command needs a single Redis ([redis] url = \"redis://...\"), not a cluster or a Sentinel set"
                    .into(),
            )),
        }
    }
    /// What an `AXN__REDIS__URL` variable holds for this value (a Sentinel
    /// set as an inline TOML table, which figment reads from the environment).
    pub fn to_env(&self) -> String {
        match self {
            RedisUrl::Single(u) => u.expose().to_owned(),
            RedisUrl::Cluster(_) => format!("{:?}", self.urls()),
            RedisUrl::Sentinel(s) => format!(
                "{{sentinels={:?},master_name={:?},username={:?},password={:?},db={},master_tls={}}}",
                self.urls(),
                s.master_name,
                s.username,
                s.password.expose(),
                s.db,
                s.master_tls
            ),
        }
    }
}

/// The four input queues. The key names the queue in config, metrics, logs
/// and the operator commands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum QueueKind {
    XbUnbind,
    Blacklist,
    PhoneHistory,
    CallRecord,
}

impl QueueKind {
    pub const ALL: [QueueKind; 4] = [
        QueueKind::XbUnbind,
        QueueKind::Blacklist,
        QueueKind::PhoneHistory,
        QueueKind::CallRecord,
    ];

    pub fn key(self) -> &'static str {
        match self {
            QueueKind::XbUnbind => "xb_unbind",
            QueueKind::Blacklist => "blacklist",
            QueueKind::PhoneHistory => "phone_history",
            QueueKind::CallRecord => "call_record",
        }
    }

    pub fn from_key(key: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|k| k.key() == key)
    }

    /// [`QueueKind::from_key`] with an error that lists the keys (for clap).
    pub fn parse_key(key: &str) -> Result<Self, String> {
        Self::from_key(key).ok_or_else(|| {
            let keys: Vec<&str> = Self::ALL.iter().map(|k| k.key()).collect();
            format!("unknown queue key {key:?}; use one of {}", keys.join(", "))
        })
    }
}

impl fmt::Display for QueueKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.key())
    }
}

impl QueuesSettings {
    pub fn get(&self, kind: QueueKind) -> &QueueSettings {
        match kind {
            QueueKind::XbUnbind => &self.xb_unbind,
            QueueKind::Blacklist => &self.blacklist,
            QueueKind::PhoneHistory => &self.phone_history,
            QueueKind::CallRecord => &self.call_record,
        }
    }

    pub fn get_mut(&mut self, kind: QueueKind) -> &mut QueueSettings {
        match kind {
            QueueKind::XbUnbind => &mut self.xb_unbind,
            QueueKind::Blacklist => &mut self.blacklist,
            QueueKind::PhoneHistory => &mut self.phone_history,
            QueueKind::CallRecord => &mut self.call_record,
        }
    }
}

impl Settings {
    /// Defaults, then `path` (which must exist), then the environment.
    pub fn load(path: &Path) -> Result<Self, ConfigError> {
        if !path.exists() {
            return Err(ConfigError::Missing(path.display().to_string()));
        }
        // figment reads a directory or an unreadable file as empty: the
        // worker would run on the shipped defaults and say "OK".
        if let Err(e) = std::fs::File::open(path).and_then(|f| {
            if f.metadata()?.is_file() {
                Ok(())
            } else {
                Err(std::io::Error::other("not a regular file (a directory?)"))
            }
        }) {
            return Err(ConfigError::Unreadable(
                path.display().to_string(),
                e.to_string(),
            ));
        }
        Self::from_figment(secret_files(
            Figment::from(Toml::string(DEFAULT_CONFIG))
                .merge(Toml::file(path))
                .merge(env()),
        )?)
    }

    /// Like [`Settings::load`], but without the file when it does not exist:
    /// the shipped defaults and the environment. For the commands a
    /// producer's team runs away from any deployment (`validate`, `asyncapi`).
    pub fn load_or_shipped(path: &Path) -> Result<Self, ConfigError> {
        if path.exists() {
            return Self::load(path);
        }
        Self::from_figment(secret_files(
            Figment::from(Toml::string(DEFAULT_CONFIG)).merge(env()),
        )?)
    }

    /// Defaults, then the TOML `text` (no environment): for checking a config
    /// that lives elsewhere, such as the Kubernetes ConfigMap.
    pub fn from_toml(text: &str) -> Result<Self, ConfigError> {
        Self::from_figment(Figment::from(Toml::string(DEFAULT_CONFIG)).merge(Toml::string(text)))
    }

    /// The shipped defaults alone, without file or environment (for tests and
    /// tools that build their settings in code).
    pub fn defaults() -> Result<Self, ConfigError> {
        Self::from_figment(Figment::from(Toml::string(DEFAULT_CONFIG)))
    }

    fn from_figment(figment: Figment) -> Result<Self, ConfigError> {
        // Keys set from a secret file arrive as (key, value) providers.
        let settings: Settings = figment
            .extract()
            .map_err(|e| ConfigError::Parse(validate::describe(&e)))?;
        settings.validate()?;
        Ok(settings)
    }
}

/// The secrets that may come from a file: `AXN__<KEY>_FILE` names a file
/// whose content (one trailing newline dropped) is the key's value, as
/// Kubernetes Secret volumes and systemd's `LoadCredential=` provide them.
pub const SECRET_KEYS: [&str; 7] = [
    "amqp.url",
    "redis.url",
    "mapping.password",
    "platform.password",
    "platform.bearer_token",
    "platform.aliyun.access_key_id",
    "platform.aliyun.access_key_secret",
];

/// The key a `AXN__..._FILE` variable fills, when it names a secret.
fn secret_file_key(var: &str) -> Option<&'static str> {
    let key = var
        .strip_prefix("AXN__")?
        .strip_suffix("_FILE")?
        .replace("__", ".")
        .to_ascii_lowercase();
    SECRET_KEYS.into_iter().find(|k| *k == key)
}

/// `AXN__` variables, but the secret-file ones (read by `secret_files`).
fn env() -> Env {
    Env::prefixed("AXN__")
        .split("__")
        .filter(|k| secret_file_key(&format!("AXN__{}", k.as_str().to_ascii_uppercase())).is_none())
}

/// `figment` with every `AXN__<KEY>_FILE` secret read in; an unreadable
/// file, or a key given both ways, is an error naming the variable and the
/// file (never the content).
fn secret_files(mut figment: Figment) -> Result<Figment, ConfigError> {
    let mut vars: Vec<(String, String)> = std::env::vars().collect();
    vars.sort();
    for (var, file) in vars {
        let Some(key) = secret_file_key(&var) else {
            continue;
        };
        let direct = format!("AXN__{}", key.replace('.', "__").to_ascii_uppercase());
        if std::env::var_os(&direct).is_some() {
            return Err(ConfigError::Invalid(format!(
                "{var} and {direct} are both set: give the secret one way"
            )));
        }
        let mut value = std::fs::read_to_string(&file).map_err(|e| {
            ConfigError::Invalid(format!("{var}: the secret file {file} cannot be read: {e}"))
        })?;
        if value.ends_with('\n') {
            value.pop();
            if value.ends_with('\r') {
                value.pop();
            }
        }
        figment = figment.merge((key, value));
    }
    Ok(figment)
}

#[cfg(test)]
#[allow(clippy::result_large_err)] // figment::Jail's closures return figment::Error
mod tests {
    use super::*;

    #[test]
    fn shipped_config_is_valid_and_matches_the_contract() {
        let s = Settings::defaults().expect("shipped config.toml must load");
        assert_eq!(
            s.queues.xb_unbind.name,
            "service_exchange1_privatenumberXNB"
        );
        assert_eq!(s.queues.blacklist.name, "service_exchange1_SetBlackNumber");
        assert_eq!(
            s.queues.phone_history.name,
            "house_exchange1_SaleCallPhoneNumberPool"
        );
        assert_eq!(
            s.queues.call_record.name,
            "service_exchange1_privatenumberCallRecord"
        );
        let conc: Vec<u16> = QueueKind::ALL
            .iter()
            .map(|k| s.queues.get(*k).concurrency)
            .collect();
        assert_eq!(conc, [10, 10, 5, 10]);
        assert!(
            QueueKind::ALL
                .iter()
                .all(|k| s.queues.get(*k).timeout_secs == 120)
        );
        assert_eq!(s.queues.xb_unbind.max_body_bytes, 64 * 1024);
        assert_eq!(s.redis.key_prefix, "4011:1:");
        assert_eq!(
            s.publish.call_log.routing_key,
            "house_exchange1_GetPhoneWriteLog"
        );
        assert_eq!(s.redis.unbound_retention_secs, 24 * 3600);
    }

    #[test]
    fn environment_overrides_nested_keys() {
        figment::Jail::expect_with(|jail| {
            jail.create_file("c.toml", "[queues.blacklist]\nconcurrency = 3\n")?;
            jail.set_env("AXN__QUEUES__XB_UNBIND__NAME", "other_queue");
            jail.set_env("AXN__QUEUES__CALL_RECORD__RETRY_DELAYS_MS", "[10,20]");
            jail.set_env("AXN__MAPPING__PASSWORD", "s3cret");
            let s = Settings::load(Path::new("c.toml")).expect("loads");
            assert_eq!(s.queues.xb_unbind.name, "other_queue");
            assert_eq!(s.queues.blacklist.concurrency, 3);
            assert_eq!(s.queues.call_record.retry_delays_ms, [10, 20]);
            assert_eq!(s.mapping.password.expose(), "s3cret");
            Ok(())
        });
    }

    #[test]
    fn unknown_keys_and_bad_values_are_rejected() {
        figment::Jail::expect_with(|jail| {
            jail.create_file("typo.toml", "[queues.blacklist]\nconcurency = 3\n")?;
            let err = Settings::load(Path::new("typo.toml"))
                .unwrap_err()
                .to_string();
            assert!(err.contains("concurency"), "{err}");
            jail.create_file("zero.toml", "[queues.blacklist]\nconcurrency = 0\n")?;
            let err = Settings::load(Path::new("zero.toml"))
                .unwrap_err()
                .to_string();
            assert!(err.contains("queues.blacklist.concurrency"), "{err}");
            jail.create_file(
                "dup.toml",
                "[queues.blacklist]\nname = \"service_exchange1_privatenumberXNB\"\n",
            )?;
            let err = Settings::load(Path::new("dup.toml"))
                .unwrap_err()
                .to_string();
            assert!(err.contains("used by another queue"), "{err}");
            Ok(())
        });
        let err = Settings::load(Path::new("/nonexistent/axn.toml")).unwrap_err();
        assert!(matches!(err, ConfigError::Missing(_)));
    }

    #[test]
    fn redis_url_is_one_url_or_a_list_of_cluster_nodes() {
        figment::Jail::expect_with(|jail| {
            jail.create_file(
                "c.toml",
                "[redis]\nurl = [\"redis://10.0.0.1:7000\", \"redis://10.0.0.2:7000\"]\n",
            )?;
            let s = Settings::load(Path::new("c.toml")).expect("loads");
            assert!(s.redis.url.is_cluster());
            assert_eq!(
                s.redis.url.urls(),
                ["redis://10.0.0.1:7000", "redis://10.0.0.2:7000"]
            );
            jail.create_file("bad.toml", "[redis]\nurl = []\n")?;
            assert!(Settings::load(Path::new("bad.toml")).is_err());
            jail.set_env("AXN__REDIS__URL", "redis://:pw@single:6379/0");
            let s = Settings::load(Path::new("c.toml")).expect("loads");
            assert_eq!(s.redis.url, RedisUrl::single("redis://:pw@single:6379/0"));
            Ok(())
        });
    }

    #[test]
    fn secrets_never_print() {
        let mut s = Settings::defaults().unwrap();
        s.mapping.password = Secret::new("hunter2");
        let shown = format!("{s:?} {}", serde_json::to_string(&s).unwrap());
        assert!(!shown.contains("hunter2"));
        assert!(!shown.contains("guest:guest"));
        // Where a URL points stays visible; only its password is hidden.
        assert!(
            shown.contains("amqp://guest:***@127.0.0.1:5672/%2f"),
            "{shown}"
        );
        assert_eq!(
            Secret::new("redis://:pw@r1:6379/0").redacted(),
            "redis://:***@r1:6379/0"
        );
        assert_eq!(
            Secret::new("redis://u@r1:6379").redacted(),
            "redis://***@r1:6379"
        );
        assert_eq!(
            Secret::new("redis://127.0.0.1:6379/0").redacted(),
            "redis://127.0.0.1:6379/0"
        );
        assert_eq!(Secret::new("hunter2").redacted(), "***");
    }

    #[test]
    fn retry_queue_steps_repeat_the_last_delay() {
        let mut q = Settings::defaults().unwrap().queues.blacklist;
        q.retry_delays_ms = vec![100, 500];
        assert_eq!(q.retry_queue_after(1), format!("{}.retry.100ms", q.name));
        assert_eq!(q.retry_queue_after(2), format!("{}.retry.500ms", q.name));
        assert_eq!(q.retry_queue_after(7), format!("{}.retry.500ms", q.name));
    }
}
