//! The consume loop of one input queue, and `process`: what happens to one
//! delivery until it is handed to [`settle`](super::settle::settle), the only
//! place that decides its fate.
//!
//! # The flow of one message
//! 1. The loop receives a delivery (up to `prefetch` unacknowledged) and calls
//!    `process`, which reads the worker's own signed history off it
//!    ([`History`](crate::amqp::headers::History)), parses the body, and takes the message's place in line
//!    for the entities it is about ([`Sequencer`](super::ordering::Sequencer));
//!    a body that does not parse goes straight to `settle` as a permanent
//!    failure.
//! 2. A task waits for its turn, applies the message under the queue's
//!    timeout, and hands the [`Part`]s to `settle` (see there). The handler
//!    takes one of the queue's `concurrency` slots ([`Slots`](handlers::Slots))
//!    for its own work only: waiting for the turn, for a publish confirm, or
//!    in `settle` holds none.

use std::sync::Arc;

use futures_util::StreamExt;
use lapin::{
    Channel,
    message::Delivery,
    options::{BasicCancelOptions, BasicConsumeOptions, BasicQosOptions},
    types::FieldTable,
};
use tokio_util::{sync::CancellationToken, task::TaskTracker};
use tracing::Instrument;

use super::{acks::AckBatcher, ordering::Sequencer, settle::settle};
use crate::{
    amqp::headers,
    config::{QueueKind, QueueSettings},
    handlers::{self, Ctx},
    health::Health,
    metrics::QueueMetrics,
    outcome::{HandlerError, Outcome, Part},
};

/// An input queue: its settings and its ordering state, shared across
/// reconnections.
pub struct QueueRuntime {
    pub kind: QueueKind,
    pub settings: QueueSettings,
    /// Kept across sessions: a redelivered message still waits for one of
    /// the lost session that is still running.
    pub sequencer: Arc<Sequencer>,
    /// The queue's `concurrency` handler slots, also kept across sessions:
    /// work of a lost session still running holds its slots.
    pub slots: handlers::Slots,
    /// This queue's metric handles, resolved once.
    pub metrics: QueueMetrics,
}

#[derive(Debug, thiserror::Error)]
pub enum ConsumeError {
    #[error("broker error on queue {queue}: {source}")]
    Broker { queue: String, source: lapin::Error },
    #[error("the broker cancelled the consumer of queue {0} (queue deleted?)")]
    Cancelled(String),
}

/// Consumes `q` on `channel` until `stop` (then cancels the consumer and
/// returns Ok) or until the channel fails. Work is spawned on `tracker`, so
/// the caller can wait for in-flight messages at shutdown.
pub async fn consume(
    q: Arc<QueueRuntime>,
    channel: Channel,
    ctx: Ctx,
    health: Arc<Health>,
    tracker: TaskTracker,
    stop: CancellationToken,
) -> Result<(), ConsumeError> {
    let queue = q.settings.name.clone();
    let broker = |source| ConsumeError::Broker {
        queue: queue.clone(),
        source,
    };
    channel
        .basic_qos(q.settings.prefetch, BasicQosOptions::default())
        .await
        .map_err(broker)?;
    let tag = format!("axn-worker.{}.{}", q.kind, std::process::id());
    let mut consumer = channel
        .basic_consume(
            queue.as_str().into(),
            tag.as_str().into(),
            BasicConsumeOptions::default(),
            FieldTable::default(),
        )
        .await
        .map_err(broker)?;
    // Tags are per channel: one batcher per channel of this session.
    let acks = AckBatcher::new(tracker.clone());
    health.set_consuming(q.kind, true);
    tracing::info!(queue = %queue, concurrency = q.settings.concurrency, prefetch = q.settings.prefetch, "consuming");
    let result = loop {
        tokio::select! {
            biased;
            _ = stop.cancelled() => break Ok(()),
            next = consumer.next() => match next {
                Some(Ok(delivery)) => process(&q, &ctx, &acks, delivery, &tracker),
                Some(Err(e)) => break Err(broker(e)),
                None => break Err(ConsumeError::Cancelled(queue.clone())),
            },
        }
    };
    health.set_consuming(q.kind, false);
    if result.is_ok() {
        // Stop deliveries; those already prefetched go back when the
        // channel closes. A broker that does not answer does not hold the
        // shutdown: the cancel is given a few seconds.
        let cancel = channel.basic_cancel(tag.as_str().into(), BasicCancelOptions::default());
        if tokio::time::timeout(super::CLOSE_TIMEOUT, cancel)
            .await
            .is_err()
        {
            tracing::warn!(queue = %queue, "the broker did not confirm the consumer's cancel in time");
        }
    }
    result
}

/// Takes one delivery from receipt to a spawned task that applies it and
/// settles it.
fn process(
    q: &Arc<QueueRuntime>,
    ctx: &Ctx,
    acks: &Arc<AckBatcher>,
    delivery: Delivery,
    tracker: &TaskTracker,
) {
    q.metrics.received();
    acks.register(delivery.delivery_tag);
    let acks = Arc::clone(acks);
    let history = headers::history(
        &delivery.properties,
        &delivery.data,
        &q.settings.name,
        ctx.store.cached_signing_key().as_ref(),
    );
    let attempt = history.attempts.saturating_add(1);
    // The producer's message id (also on any dead letter), so a log line
    // and a dead letter can be matched; the log writer masks numbers in it.
    let message_id = delivery
        .properties
        .message_id()
        .as_ref()
        .map(|m| m.as_str())
        .unwrap_or("");
    let span = tracing::info_span!(
        "message",
        queue = %q.kind,
        message_id,
        tag = delivery.delivery_tag,
        attempt,
        redelivered = delivery.redelivered,
    );
    let q = Arc::clone(q);
    match handlers::parse(q.kind, &delivery.data, handlers::Limits::of(&q.settings)) {
        Err(e) => {
            let ctx = ctx.clone();
            q.metrics.handled("permanent", 0.0);
            tracker.spawn(
                async move {
                    settle(
                        &q,
                        &ctx,
                        &acks,
                        delivery,
                        &history,
                        vec![Part::whole(Outcome::Failed(e))],
                    )
                    .await
                }
                .instrument(span),
            );
        }
        Ok(job) => {
            let mut turn = q.sequencer.enter(job.entity_keys());
            let ctx = ctx.clone();
            // The handler and settle futures are boxed: the task, moved a few
            // times on its way into the runtime, stays ~1 KiB instead of ~3.5.
            let fut = async move {
                turn.ready().await;
                let started = std::time::Instant::now();
                let timeout = q.settings.timeout();
                let generation = ctx.store.generation();
                let applying = Box::pin(handlers::apply(job, &ctx, &history));
                let parts = match tokio::time::timeout(timeout, applying).await {
                    Ok(parts) => parts,
                    Err(_) => vec![Part::whole(Outcome::Failed(HandlerError::transient(
                        format!("handler timed out after {} s", timeout.as_secs()),
                    )))],
                };
                // Boxed, and only when WAIT is configured: its Redis future
                // would otherwise triple the size of every message's task.
                let parts = if ctx.store.waits_for_replicas() {
                    Box::pin(replicated(&ctx, generation, parts)).await
                } else {
                    parts
                };
                q.metrics
                    .handled(outcome_label(&parts), started.elapsed().as_secs_f64());
                Box::pin(settle(&q, &ctx, &acks, delivery, &history, parts)).await;
                drop(turn);
            }
            .instrument(span);
            tracker.spawn(fut);
        }
    }
}

/// With `[redis] wait_for_replicas`, the applied parts of a message count
/// only once replicas hold their writes; if they do not in time, those parts
/// become transient failures and the message is retried (after a failover,
/// on the new master; applying again is harmless).
async fn replicated(ctx: &Ctx, generation: u64, parts: Vec<Part>) -> Vec<Part> {
    if !parts
        .iter()
        .any(|p| matches!(p.outcome, Outcome::Applied(_)))
    {
        return parts;
    }
    match ctx.store.wait_for_replicas(generation).await {
        Ok(()) => parts,
        Err(e) => {
            let why = format!("Redis replicas do not hold the writes: {e}");
            parts
                .into_iter()
                .map(|p| match p.outcome {
                    Outcome::Applied(_) => Part {
                        outcome: Outcome::Failed(HandlerError::transient(why.clone())),
                        ..p
                    },
                    _ => p,
                })
                .collect()
        }
    }
}

/// The handler-latency label of a message: its worst part.
fn outcome_label(parts: &[Part]) -> &'static str {
    let worst = |p: &Part| match &p.outcome {
        Outcome::Applied(_) => 0,
        Outcome::Parked => 1,
        Outcome::Failed(HandlerError::Permanent { .. }) => 2,
        Outcome::Failed(HandlerError::Transient(_)) => 3,
    };
    match parts.iter().map(worst).max().unwrap_or(0) {
        0 => "applied",
        1 => "parked",
        2 => "permanent",
        _ => "transient",
    }
}
