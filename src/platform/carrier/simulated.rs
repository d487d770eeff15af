//! The simulated carrier: answers at once with a new subscription id, as a
//! carrier would, so the whole flow runs on one machine. It fails on demand:
//! an operator or a test sets a field of the hash
//! `<prefix>axn_simulated_carrier_fail` (`bind_ax`, `bind_xb`, `unbind`,
//! `update_a`) to `no_number`, `conflict`, `throttled` or `failed`, and the
//! next such call fails that way once. `slow:<ms>` (at most 10000) makes the
//! next such call take that long and then succeed, as a carrier's slow
//! answer does: how tests put a release between a read and a write.

use futures_util::future::BoxFuture;
use rand::Rng as _;

use super::{Bound, Carrier, CarrierError};
use crate::store::Store;

pub struct Simulated {
    /// Where the fail-on-demand switches are read.
    store: Store,
}

impl Simulated {
    pub fn new(store: Store) -> Self {
        Simulated { store }
    }

    async fn fail_if_asked(&self, op: &str) -> Result<(), CarrierError> {
        match self.store.take_simulated_failure(op).await {
            Ok(None) => Ok(()),
            Ok(Some(kind)) if kind.starts_with("slow:") => {
                let ms = kind["slow:".len()..]
                    .parse::<u64>()
                    .unwrap_or(0)
                    .min(10_000);
                tokio::time::sleep(std::time::Duration::from_millis(ms)).await;
                Ok(())
            }
            Ok(Some(kind)) => {
                let what = format!("simulated {op}");
                Err(match kind.as_str() {
                    "no_number" => CarrierError::NoNumber(what),
                    "conflict" => CarrierError::Conflict(what),
                    "throttled" => CarrierError::Throttled(what),
                    _ => CarrierError::Failed(what),
                })
            }
            Err(e) => Err(CarrierError::Failed(format!(
                "simulated carrier: redis: {e}"
            ))),
        }
    }
}

/// A subscription id in the shape carriers use (16 digits).
fn sub_id() -> String {
    format!(
        "1000{:012}",
        rand::rng().random_range(0..1_000_000_000_000u64)
    )
}

impl Carrier for Simulated {
    fn bind_ax<'a>(
        &'a self,
        _x: &'a str,
        _a: &'a str,
    ) -> BoxFuture<'a, Result<Bound, CarrierError>> {
        Box::pin(async move {
            self.fail_if_asked("bind_ax").await?;
            Ok(Bound { sub_id: sub_id() })
        })
    }
    fn bind_xb<'a>(
        &'a self,
        _x: &'a str,
        _b: &'a str,
        _expiration_secs: u64,
    ) -> BoxFuture<'a, Result<Bound, CarrierError>> {
        Box::pin(async move {
            self.fail_if_asked("bind_xb").await?;
            Ok(Bound { sub_id: sub_id() })
        })
    }
    fn unbind<'a>(
        &'a self,
        _sub_id: &'a str,
        _x: &'a str,
    ) -> BoxFuture<'a, Result<(), CarrierError>> {
        Box::pin(async move { self.fail_if_asked("unbind").await })
    }
    fn update_a<'a>(
        &'a self,
        _sub_id: &'a str,
        _x: &'a str,
        _a: &'a str,
    ) -> BoxFuture<'a, Result<(), CarrierError>> {
        Box::pin(async move { self.fail_if_asked("update_a").await })
    }
}
