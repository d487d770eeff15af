//! Aliyun's privacy-number API (Dypls, version 2017-05-25): BindAxn,
//! UnbindSubscription, UpdateSubscription, with Aliyun's RPC request signing.
//! Not wired yet: see docs/platform-api.md, "Not yet".

use futures_util::future::BoxFuture;

use super::{Bound, Carrier, CarrierError};
use crate::config::AliyunSettings;

pub struct Aliyun;

impl Aliyun {
    pub fn new(_settings: &AliyunSettings) -> anyhow::Result<Self> {
        anyhow::bail!(
            "the aliyun carrier is not available in this build yet (docs/platform-api.md)"
        )
    }
}

impl Carrier for Aliyun {
    fn bind_ax<'a>(
        &'a self,
        _x: &'a str,
        _a: &'a str,
    ) -> BoxFuture<'a, Result<Bound, CarrierError>> {
        Box::pin(async { Err(CarrierError::Failed("aliyun: not available".into())) })
    }
    fn bind_xb<'a>(
        &'a self,
        _x: &'a str,
        _b: &'a str,
        _e: u64,
    ) -> BoxFuture<'a, Result<Bound, CarrierError>> {
        Box::pin(async { Err(CarrierError::Failed("aliyun: not available".into())) })
    }
    fn unbind<'a>(&'a self, _s: &'a str, _x: &'a str) -> BoxFuture<'a, Result<(), CarrierError>> {
        Box::pin(async { Err(CarrierError::Failed("aliyun: not available".into())) })
    }
    fn update_a<'a>(
        &'a self,
        _s: &'a str,
        _x: &'a str,
        _a: &'a str,
    ) -> BoxFuture<'a, Result<(), CarrierError>> {
        Box::pin(async { Err(CarrierError::Failed("aliyun: not available".into())) })
    }
}
