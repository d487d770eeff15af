//! The carriers behind the platform ids (1 东信, 2 玖云, 3 阿里云): one trait,
//! a `simulated` carrier (the embedded default) and `aliyun` (Dypls API
//! 2017-05-25). A carrier's error becomes the seed's 5000 answer with its
//! meaning; it never panics or hangs past its timeout.

pub mod aliyun;
pub mod simulated;

use std::{collections::BTreeMap, sync::Arc};

use futures_util::future::BoxFuture;

use crate::{
    config::{CarrierKind, PlatformSettings},
    store::Store,
};

/// Why a carrier refused or failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CarrierError {
    #[error("运营商无可用号码 (no available number): {0}")]
    NoNumber(String),
    #[error("号码绑定冲突 (binding conflict): {0}")]
    Conflict(String),
    #[error("运营商限流,请稍后重试 (throttled): {0}")]
    Throttled(String),
    #[error("运营商调用失败 (carrier failed): {0}")]
    Failed(String),
}

/// A binding the carrier made.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Bound {
    pub sub_id: String,
}

/// What every carrier does for the platform.
pub trait Carrier: Send + Sync {
    /// Binds X to the agent's A (the AX binding).
    fn bind_ax<'a>(&'a self, x: &'a str, a: &'a str) -> BoxFuture<'a, Result<Bound, CarrierError>>;
    /// Binds X to the customer's B for `expiration_secs` (the XB binding).
    fn bind_xb<'a>(
        &'a self,
        x: &'a str,
        b: &'a str,
        expiration_secs: u64,
    ) -> BoxFuture<'a, Result<Bound, CarrierError>>;
    /// Ends the binding `sub_id` of X.
    fn unbind<'a>(&'a self, sub_id: &'a str, x: &'a str)
    -> BoxFuture<'a, Result<(), CarrierError>>;
    /// Replaces the A number of the binding `sub_id`.
    fn update_a<'a>(
        &'a self,
        sub_id: &'a str,
        x: &'a str,
        a: &'a str,
    ) -> BoxFuture<'a, Result<(), CarrierError>>;
}

/// The carrier of each platform id, as configured.
#[derive(Clone)]
pub struct Carriers {
    by_platform: BTreeMap<String, Arc<dyn Carrier>>,
}

impl Carriers {
    pub fn new(settings: &PlatformSettings, store: &Store) -> anyhow::Result<Self> {
        let mut by_platform: BTreeMap<String, Arc<dyn Carrier>> = BTreeMap::new();
        for (platform, kind) in &settings.carriers {
            let carrier: Arc<dyn Carrier> = match kind {
                CarrierKind::Simulated => Arc::new(simulated::Simulated::new(store.clone())),
                CarrierKind::Aliyun => Arc::new(aliyun::Aliyun::new(&settings.aliyun)?),
            };
            by_platform.insert(platform.clone(), carrier);
        }
        Ok(Carriers { by_platform })
    }

    /// The carrier of `platform`, if one is configured.
    pub fn of(&self, platform: &str) -> Option<&dyn Carrier> {
        self.by_platform.get(platform).map(|c| c.as_ref())
    }
}

/// The seed's platform names.
pub fn platform_name(platform: &str) -> &'static str {
    match platform {
        "1" => "东信",
        "2" => "玖云",
        "3" => "阿里云",
        _ => "未知平台",
    }
}
