//! Publisher-confirmed publishing: every publish the worker makes (call-log
//! events, retries, dead letters, parked records) waits for the broker's
//! confirm, and a returned (unroutable) message counts as a failure, so an
//! input message is never acknowledged on the strength of a lost publish.

use lapin::{BasicProperties, Channel, Confirmation, options::BasicPublishOptions};

#[derive(Debug, thiserror::Error)]
pub enum PublishError {
    #[error("broker error: {0}")]
    Broker(#[from] lapin::Error),
    #[error("the broker returned the message to {target} as unroutable ({reply})")]
    Returned { target: String, reply: String },
    #[error("the broker refused the message to {target} (nack)")]
    Nacked { target: String },
}

/// A channel in confirm mode. Cheap to clone.
#[derive(Clone)]
pub struct Publisher {
    channel: Channel,
}

impl Publisher {
    /// Puts `channel` in confirm mode.
    pub async fn new(channel: Channel) -> Result<Self, lapin::Error> {
        channel.confirm_select(Default::default()).await?;
        Ok(Publisher { channel })
    }

    /// Publishes with `mandatory` and waits for the broker's confirm.
    pub async fn publish(
        &self,
        exchange: &str,
        routing_key: &str,
        body: &[u8],
        properties: BasicProperties,
    ) -> Result<(), PublishError> {
        let target = || format!("exchange {exchange:?} routing key {routing_key:?}");
        let confirm = self
            .channel
            .basic_publish(
                exchange.into(),
                routing_key.into(),
                BasicPublishOptions {
                    mandatory: true,
                    ..Default::default()
                },
                body,
                properties,
            )
            .await?
            .await?;
        match confirm {
            Confirmation::Ack(None) => Ok(()),
            Confirmation::Ack(Some(returned)) => Err(PublishError::Returned {
                target: target(),
                reply: format!("{} {}", returned.reply_code, returned.reply_text),
            }),
            Confirmation::Nack(_) => Err(PublishError::Nacked { target: target() }),
            // confirm_select was called in new(); a channel recovered without
            // it would land here, and that must not pass for a confirm.
            Confirmation::NotRequested => Err(PublishError::Nacked { target: target() }),
        }
    }
}
