//! RabbitMQ: the connection supervisor, the topology, the consume loops and
//! the confirmed publisher.
//!
//! The supervisor owns one connection at a time (named
//! `axn-worker@<host>:<pid>` for the broker's management tools). On it, it
//! declares the topology and starts one consumer per input queue, each on its
//! own channel with its own confirm-mode publishing channel. When any of them
//! fails (the broker closed the connection, a network error), it tears the
//! session down, reports not-ready, and connects again with exponential
//! backoff, forever. Deliveries of the lost session are requeued by the
//! broker; their in-flight work completes idempotently and its acks fail
//! harmlessly. A configuration the broker rejects (a passive queue that does
//! not exist, a queue with other arguments) stops the worker with the reason.

pub mod acks;
pub mod consumer;
mod depths;
pub mod ordering;
pub mod settle;

use std::{sync::Arc, time::Duration};

use backon::{BackoffBuilder, ExponentialBuilder};
use lapin::Connection;
use tokio::task::JoinSet;
use tokio_util::{sync::CancellationToken, task::TaskTracker};

use crate::amqp::{connect, connection_name, publisher::Publisher, topology};
use crate::{
    config::{QueueKind, Settings},
    handlers::{Ctx, Slots},
    health::Health,
    metrics::Metrics,
    store::Store,
};
use consumer::QueueRuntime;

#[derive(Debug, thiserror::Error)]
pub enum BrokerError {
    #[error(transparent)]
    Topology(#[from] topology::TopologyError),
}

/// How long each closing step (a consumer's cancel, closing channels and the
/// connection) may wait for a broker that does not answer.
pub const CLOSE_TIMEOUT: Duration = Duration::from_secs(2);

/// Closes `conn` (and its channels), waiting at most [`CLOSE_TIMEOUT`].
async fn close_within(conn: &Connection, text: &str) {
    if tokio::time::timeout(CLOSE_TIMEOUT, conn.close(200, text.into()))
        .await
        .is_err()
    {
        tracing::warn!("the broker did not answer the connection close in time");
    }
}

/// Why a session ended.
enum SessionEnd {
    Shutdown,
    Fatal(BrokerError),
    /// The session was lost; `established` when it had been consuming (so the
    /// backoff starts over).
    Lost {
        error: String,
        established: bool,
    },
}

/// The broker side of the worker.
pub struct Broker {
    settings: Arc<Settings>,
    /// Handed to every session's handlers (cheap clones of one connection).
    store: Store,
    /// Where consumers report that they consume; `/readyz` reads it.
    health: Arc<Health>,
    /// One per input queue, kept across sessions (ordering state, metric
    /// handles).
    queues: Vec<Arc<QueueRuntime>>,
    /// Every message task and ack sender of every session: the shutdown
    /// drain waits on it.
    tracker: TaskTracker,
    /// The AMQP connection_name.
    name: String,
    metrics: Arc<Metrics>,
}

impl Broker {
    pub fn new(
        settings: Arc<Settings>,
        store: Store,
        health: Arc<Health>,
        metrics: Arc<Metrics>,
        instance: Option<&str>,
    ) -> Self {
        let queues = QueueKind::ALL
            .into_iter()
            .map(|kind| {
                Arc::new(QueueRuntime {
                    kind,
                    settings: settings.queues.get(kind).clone(),
                    sequencer: Default::default(),
                    slots: Slots::new(settings.queues.get(kind).concurrency),
                    metrics: metrics.queue(kind),
                })
            })
            .collect();
        Broker {
            settings,
            store,
            health,
            queues,
            tracker: TaskTracker::new(),
            name: connection_name(instance),
            metrics,
        }
    }

    /// Runs sessions until `shutdown`; then stops consuming, waits up to the
    /// grace period for in-flight messages, and closes the connection.
    pub async fn run(self, shutdown: CancellationToken) -> Result<(), BrokerError> {
        let a = &self.settings.amqp;
        let builder = ExponentialBuilder::default()
            .with_min_delay(Duration::from_millis(a.reconnect_min_delay_ms))
            .with_max_delay(Duration::from_millis(a.reconnect_max_delay_ms))
            .without_max_times()
            .with_jitter();
        let mut backoff = builder.build();
        // Each change logged once: the first failure of a kind at warn, the
        // same failure again at debug, a session after failures at info.
        let (mut ever_connected, mut last_error) = (false, None::<String>);
        loop {
            let end = self.session(&shutdown).await;
            self.health.set_broker_down();
            match end {
                SessionEnd::Shutdown => return Ok(()),
                SessionEnd::Fatal(e) => return Err(e),
                SessionEnd::Lost { error, established } => {
                    self.health.count_reconnect();
                    self.health.set_broker_error(&error);
                    if established {
                        backoff = builder.build();
                        ever_connected = true;
                    }
                    let delay = backoff
                        .next()
                        .unwrap_or(Duration::from_millis(a.reconnect_max_delay_ms));
                    let retry_in_ms = delay.as_millis() as u64;
                    if established {
                        tracing::warn!(%error, retry_in_ms, "broker session lost; reconnecting");
                    } else if last_error.as_deref() == Some(error.as_str()) {
                        tracing::debug!(%error, retry_in_ms, "the broker still cannot be reached; retrying");
                    } else if ever_connected {
                        tracing::warn!(%error, retry_in_ms, "cannot reconnect to the broker; retrying");
                    } else {
                        tracing::warn!(%error, retry_in_ms, "cannot connect to the broker; retrying");
                    }
                    last_error = (!established).then_some(error);
                    tokio::select! {
                        _ = shutdown.cancelled() => return Ok(()),
                        _ = tokio::time::sleep(delay) => {}
                    }
                }
            }
        }
    }

    async fn session(&self, shutdown: &CancellationToken) -> SessionEnd {
        let lost = |error: String| SessionEnd::Lost {
            error,
            established: false,
        };
        let conn = tokio::select! {
            _ = shutdown.cancelled() => return SessionEnd::Shutdown,
            c = connect(&self.settings, &self.name) => match c {
                Ok(c) => Arc::new(c),
                Err(e) => return lost(format!("{e:#}")),
            },
        };
        let declared = tokio::select! {
            _ = shutdown.cancelled() => {
                close_within(&conn, "axn-worker shutting down").await;
                return SessionEnd::Shutdown;
            }
            d = topology::declare(&conn, &self.settings) => d,
        };
        if let Err(e) = declared {
            close_within(&conn, "topology failed").await;
            return if e.is_fatal() {
                SessionEnd::Fatal(e.into())
            } else {
                lost(e.to_string())
            };
        }

        let stop = shutdown.child_token();
        let mut consumers = JoinSet::new();
        // Kept to close them after the drain: in-flight messages ack on them.
        let mut open_channels = Vec::new();
        // Warm the header-signing key (if Redis answers now; else on first use).
        let _ = self.store.signing_key().await;
        let own_queues = topology::specs(&self.settings);
        for q in &self.queues {
            let channels = async {
                let consume = conn.create_channel().await?;
                let publisher = Publisher::on_connection(
                    Arc::clone(&conn),
                    own_queues.clone(),
                    Arc::clone(&self.health),
                )
                .await?;
                Ok::<_, lapin::Error>((consume, publisher))
            };
            let (consume_channel, publisher) = match channels.await {
                Ok(c) => c,
                Err(e) => {
                    stop.cancel();
                    return lost(e.to_string());
                }
            };
            open_channels.push(consume_channel.clone());
            let ctx = Ctx {
                store: self.store.clone(),
                publisher,
                settings: Arc::clone(&self.settings),
                timeout: q.settings.timeout(),
                metrics: Arc::clone(&self.metrics),
                slots: q.slots.clone(),
            };
            consumers.spawn(consumer::consume(
                Arc::clone(q),
                consume_channel,
                ctx,
                Arc::clone(&self.health),
                self.tracker.clone(),
                stop.clone(),
            ));
        }

        tokio::spawn(topology::watch_publish_exchange(
            Arc::clone(&conn),
            Arc::clone(&self.settings),
            Arc::clone(&self.health),
            stop.clone(),
            std::time::Duration::from_secs(5),
        ));
        tokio::spawn(depths::probe(
            Arc::clone(&conn),
            Arc::clone(&self.settings),
            Arc::clone(&self.metrics),
            stop.clone(),
        ));

        // The first consumer to end decides: Ok means shutdown was asked for.
        let first = consumers.join_next().await;
        stop.cancel();
        let failure = match first {
            Some(Ok(Ok(()))) | None => None,
            Some(Ok(Err(e))) => Some(e.to_string()),
            Some(Err(join)) => Some(format!("consumer task failed: {join}")),
        };
        while consumers.join_next().await.is_some() {}
        match failure {
            None => {
                self.health.set_broker_down();
                self.drain().await;
                let channels = async {
                    for channel in open_channels {
                        let _ = channel.close(200, "axn-worker shutting down".into()).await;
                    }
                };
                let _ = tokio::time::timeout(CLOSE_TIMEOUT, channels).await;
                close_within(&conn, "axn-worker shutting down").await;
                SessionEnd::Shutdown
            }
            Some(error) => {
                close_within(&conn, "axn-worker reconnecting").await;
                SessionEnd::Lost {
                    error,
                    established: true,
                }
            }
        }
    }

    /// Waits, up to the grace period, for the messages in flight to be
    /// settled. What is still running after it goes back to its queue when
    /// the connection closes.
    async fn drain(&self) {
        let grace = Duration::from_secs(self.settings.shutdown.grace_period_secs);
        self.tracker.close();
        let in_flight = self.tracker.len();
        tracing::info!(
            in_flight,
            grace_secs = grace.as_secs(),
            "stopped consuming; finishing messages in flight"
        );
        if tokio::time::timeout(grace, self.tracker.wait())
            .await
            .is_err()
        {
            tracing::warn!(
                unfinished = self.tracker.len(),
                "grace period over: unfinished messages return to their queues"
            );
        }
    }
}
