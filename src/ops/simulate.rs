//! `axn-worker simulate unbind|call-record SUBID`: the callbacks a carrier
//! sends, on request, for a binding the platform made with the simulated
//! carrier: the seed's MQ108 unbind, or a call record, published (confirmed)
//! to the worker's queues. The whole flow then runs on one machine.

use std::sync::Arc;

use anyhow::Context as _;
use redis::AsyncCommands as _;

use crate::{config::Settings, health::Health, platform::mq::MqPublisher, store::Store};

/// `simulate` subcommands.
#[derive(clap::Subcommand)]
pub enum SimulateCommand {
    /// The carrier ends the XB binding SUBID (the seed's MQ108 message).
    Unbind { sub_id: String },
    /// The carrier reports a call on the XB binding SUBID.
    CallRecord {
        sub_id: String,
        /// The call's id (default: sim-<SUBID>-<epoch seconds>).
        #[arg(long)]
        call_id: Option<String>,
    },
}

impl SimulateCommand {
    pub async fn run(self, settings: &Settings) -> anyhow::Result<()> {
        let store = Store::new(&settings.redis).context("Failed to set up the Redis client")?;
        let sub_id = match &self {
            SimulateCommand::Unbind { sub_id } | SimulateCommand::CallRecord { sub_id, .. } => {
                sub_id.clone()
            }
        };
        let binding = binding(&store, &sub_id).await?;
        let (queue, body) = match self {
            SimulateCommand::Unbind { .. } => (
                settings.queues.xb_unbind.name.clone(),
                crate::platform::xb::mq108(&binding).context("the binding is not JSON")?,
            ),
            SimulateCommand::CallRecord { call_id, .. } => {
                let v: serde_json::Value = serde_json::from_str(&binding)?;
                let call_id = call_id
                    .unwrap_or_else(|| format!("sim-{sub_id}-{}", crate::handlers::now_epoch()));
                let record = serde_json::json!({
                    "platId": v["platId"], "subId": sub_id, "callId": call_id,
                    "telX": v["telX"], "callType": 0,
                });
                (settings.queues.call_record.name.clone(), record.to_string())
            }
        };
        let mq = MqPublisher::new(Arc::new(settings.clone()), Arc::new(Health::default()));
        mq.publish(&queue, body.as_bytes()).await?;
        mq.close().await;
        outln!(
            "published to {queue} (confirmed): {}",
            crate::phone::mask_digits_in(&body)
        );
        Ok(())
    }
}

/// The XB binding `sub_id`, bound or unbound within the retention.
async fn binding(store: &Store, sub_id: &str) -> anyhow::Result<String> {
    let mut c = store.conn().await.context("Redis")?;
    for key in [store.keys().xb(), store.keys().xb_unbound()] {
        if let Some(b) = c.hget::<_, _, Option<String>>(key, sub_id).await? {
            return Ok(b);
        }
    }
    anyhow::bail!("no XB binding {sub_id} in PrivateNumber_xb or PrivateNumber_xb_unbound")
}
