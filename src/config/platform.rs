//! `[platform]`: the binding API's settings (config.toml documents each key).

use serde::{Deserialize, Serialize};

use super::Secret;

/// `[platform]`: the binding API (see config.toml for each key).
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct PlatformSettings {
    pub enabled: bool,
    pub role: Role,
    pub username: String,
    pub password: Secret,
    pub bearer_token: Secret,
    /// Serve the API without credentials on a non-loopback listen.
    pub allow_unauthenticated: bool,
    pub xb_default_expiration_secs: u64,
    pub xb_expiry_interval_ms: u64,
    /// At most this many MQ108 unbinds a second per replica while bindings
    /// are due in bulk (an expiry storm): the rest wait for the next passes.
    #[serde(default = "default_xb_expiry_max_per_sec")]
    pub xb_expiry_max_per_sec: u32,
    pub max_body_bytes: usize,
    /// Platform id ("1", "2", "3") -> its carrier.
    pub carriers: std::collections::BTreeMap<String, CarrierKind>,
    pub simulated: SimulatedSettings,
    pub aliyun: AliyunSettings,
}

/// What one process runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    All,
    Consumers,
    Api,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum CarrierKind {
    Simulated,
    Aliyun,
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct SimulatedSettings {
    pub call_record_after_ms: u64,
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct AliyunSettings {
    pub endpoint: String,
    pub pool_key: String,
    pub access_key_id: Secret,
    pub access_key_secret: Secret,
    pub timeout_secs: u64,
}

fn default_xb_expiry_max_per_sec() -> u32 {
    6_000
}
