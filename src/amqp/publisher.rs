//! Publisher-confirmed publishing: every publish the worker makes (call-log
//! events, retries, dead letters, parked records) waits for the broker's
//! confirm, and a returned (unroutable) message counts as a failure, so an
//! input message is never acknowledged on the strength of a lost publish.
//!
//! A publish to a missing exchange makes the broker close the channel. A
//! publisher made on a connection ([`Publisher::on_connection`]) opens a new
//! channel for the next publish instead of failing forever on a dead one;
//! when the target is one of the worker's own queues (a retry queue, `.dlq`,
//! `.unattributed`, or the call-log queue it declares) and the topology is
//! not passive, it declares the queue again and publishes once more. A
//! target still missing is reported to [`Health`] (not ready, and the
//! `axn_publish_targets_missing` gauge) until a publish to it succeeds.

use std::sync::{Arc, Mutex};

use lapin::{
    BasicProperties, Channel, Confirmation, Connection,
    options::BasicPublishOptions,
    protocol::{AMQPErrorKind, AMQPSoftError},
};

use crate::amqp::topology::{self, QueueSpec};
use crate::health::Health;

/// The frame size assumed for a publisher made on a bare channel (RabbitMQ's
/// default).
const DEFAULT_FRAME_MAX: u32 = 131_072;

#[derive(Debug, thiserror::Error)]
pub enum PublishError {
    #[error("broker error: {0}")]
    Broker(#[from] lapin::Error),
    #[error("the broker returned the message to {target} as unroutable ({reply})")]
    Returned { target: String, reply: String },
    #[error("the broker refused the message to {target} (nack)")]
    Nacked { target: String },
    #[error("{target} does not exist (the broker closed the channel: {reply})")]
    NotFound { target: String, reply: String },
}

impl PublishError {
    /// True when the broker cannot have routed the message: a retry
    /// publishes it for the first time. A broker or connection error after
    /// the publish was sent leaves that unknown.
    pub fn definitely_not_published(&self) -> bool {
        !matches!(self, PublishError::Broker(_))
    }

    fn target_missing(&self) -> bool {
        match self {
            PublishError::NotFound { .. } => true,
            PublishError::Returned { reply, .. } => reply.starts_with("312"),
            _ => false,
        }
    }
}

/// A channel in confirm mode, reopened when the broker closes it. Cheap to
/// clone.
#[derive(Clone)]
pub struct Publisher {
    inner: Arc<Inner>,
}

struct Inner {
    /// Where a new channel comes from; `None` for a publisher on a bare
    /// channel (operator commands), which is never reopened.
    conn: Option<Arc<Connection>>,
    channel: Mutex<Channel>,
    /// Serializes reopening, so that many failing publishes open one channel.
    reopening: tokio::sync::Mutex<()>,
    /// The worker's own queues it may declare again (empty when passive).
    redeclare: Vec<QueueSpec>,
    health: Option<Arc<Health>>,
    frame_max: u32,
}

impl Publisher {
    /// Puts `channel` in confirm mode; it is not reopened if it closes.
    pub async fn new(channel: Channel) -> Result<Self, lapin::Error> {
        channel.confirm_select(Default::default()).await?;
        Ok(Publisher {
            inner: Arc::new(Inner {
                conn: None,
                channel: Mutex::new(channel),
                reopening: Default::default(),
                redeclare: Vec::new(),
                health: None,
                frame_max: DEFAULT_FRAME_MAX,
            }),
        })
    }

    /// A publisher on a channel of its own on `conn`, reopened when closed;
    /// `redeclare` are the queues it may declare again when one is missing.
    pub async fn on_connection(
        conn: Arc<Connection>,
        redeclare: Vec<QueueSpec>,
        health: Arc<Health>,
    ) -> Result<Self, lapin::Error> {
        let channel = conn.create_channel().await?;
        channel.confirm_select(Default::default()).await?;
        let frame_max = match conn.configuration().frame_max() {
            0 => u32::MAX,
            n => n,
        };
        Ok(Publisher {
            inner: Arc::new(Inner {
                conn: Some(conn),
                channel: Mutex::new(channel),
                reopening: Default::default(),
                redeclare: redeclare.into_iter().filter(|s| !s.passive).collect(),
                health: Some(health),
                frame_max,
            }),
        })
    }

    /// The negotiated maximum frame size: a message's properties must fit in
    /// one frame of this size.
    pub fn frame_max(&self) -> u32 {
        self.inner.frame_max
    }

    fn current(&self) -> Channel {
        self.inner
            .channel
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// The channel to publish on: the current one, or a new one if the
    /// broker closed it.
    async fn channel(&self) -> Result<Channel, lapin::Error> {
        let ch = self.current();
        let Some(conn) = &self.inner.conn else {
            return Ok(ch);
        };
        if ch.status().connected() {
            return Ok(ch);
        }
        let _one_at_a_time = self.inner.reopening.lock().await;
        let ch = self.current();
        if ch.status().connected() {
            return Ok(ch);
        }
        let fresh = conn.create_channel().await?;
        fresh.confirm_select(Default::default()).await?;
        tracing::warn!("the broker had closed the publishing channel; opened a new one");
        *self.inner.channel.lock().unwrap_or_else(|p| p.into_inner()) = fresh.clone();
        Ok(fresh)
    }

    /// Publishes with `mandatory` and waits for the broker's confirm. A
    /// missing queue of the worker's own is declared again and the publish
    /// retried once.
    pub async fn publish(
        &self,
        exchange: &str,
        routing_key: &str,
        body: &[u8],
        properties: BasicProperties,
    ) -> Result<(), PublishError> {
        let target = if exchange.is_empty() {
            format!("queue {routing_key:?}")
        } else {
            format!("exchange {exchange:?}")
        };
        let mut result = self
            .publish_once(exchange, routing_key, body, properties.clone(), &target)
            .await;
        if let Err(e) = &result
            && e.target_missing()
            && exchange.is_empty()
            && self.redeclare(routing_key).await
        {
            result = self
                .publish_once(exchange, routing_key, body, properties, &target)
                .await;
        }
        if let Some(health) = &self.inner.health {
            match &result {
                Ok(()) => health.set_target_missing(&target, false),
                Err(e) if e.target_missing() => health.set_target_missing(&target, true),
                Err(_) => {}
            }
        }
        result
    }

    async fn publish_once(
        &self,
        exchange: &str,
        routing_key: &str,
        body: &[u8],
        properties: BasicProperties,
        target: &str,
    ) -> Result<(), PublishError> {
        let not_found = |e: lapin::Error| match e.kind() {
            lapin::ErrorKind::ProtocolError(amqp)
                if matches!(amqp.kind(), AMQPErrorKind::Soft(AMQPSoftError::NOTFOUND)) =>
            {
                PublishError::NotFound {
                    target: target.to_owned(),
                    reply: amqp.get_message().to_string(),
                }
            }
            _ => PublishError::Broker(e),
        };
        let channel = self.channel().await?;
        let confirm = channel
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
            .await
            .map_err(not_found)?
            .await
            .map_err(not_found)?;
        match confirm {
            Confirmation::Ack(None) => Ok(()),
            Confirmation::Ack(Some(returned)) => Err(PublishError::Returned {
                target: target.to_owned(),
                reply: format!("{} {}", returned.reply_code, returned.reply_text),
            }),
            Confirmation::Nack(_) => Err(PublishError::Nacked {
                target: target.to_owned(),
            }),
            // confirm_select was called on every channel; one without it
            // would land here, and that must not pass for a confirm.
            Confirmation::NotRequested => Err(PublishError::Nacked {
                target: target.to_owned(),
            }),
        }
    }

    /// Declares `queue` again if it is one of the worker's own (not passive).
    async fn redeclare(&self, queue: &str) -> bool {
        let Some(spec) = self.inner.redeclare.iter().find(|s| s.name == queue) else {
            return false;
        };
        let Ok(channel) = self.channel().await else {
            return false;
        };
        match topology::declare_one(&channel, spec).await {
            Ok(()) => {
                tracing::warn!(
                    queue,
                    "a queue of the worker's was missing: declared it again"
                );
                true
            }
            Err(e) => {
                tracing::warn!(queue, error = %e, "could not declare a missing queue again");
                false
            }
        }
    }
}
