//! The consume loop of one input queue, and [`settle`]: the only place where
//! a delivery is acknowledged, retried, parked or dead-lettered.
//!
//! # The flow of one message
//! 1. The loop receives a delivery (prefetch = concurrency), parses it, and
//!    takes its place in line for the entities it is about
//!    ([`Sequencer`](super::ordering::Sequencer)); a body that does not parse
//!    goes straight to `settle` as a permanent failure.
//! 2. A task waits for its turn, applies the message under the queue's
//!    timeout, and hands the [`Part`]s to `settle`.
//! 3. `settle` publishes (with confirms) whatever must outlive the delivery:
//!    a copy to a retry queue, to `.dlq`, or to `.unattributed`. Only when
//!    every such publish is confirmed does it ack; if one fails it nacks with
//!    requeue, and the whole message comes back (its effects are idempotent).
//!    Acks of deliveries settled at about the same time share one frame
//!    ([`AckBatcher`]).

use std::{sync::Arc, time::Duration};

use futures_util::StreamExt;
use lapin::{
    Channel,
    message::Delivery,
    options::{BasicCancelOptions, BasicConsumeOptions, BasicQosOptions},
    types::FieldTable,
};
use tokio_util::{sync::CancellationToken, task::TaskTracker};
use tracing::Instrument;

use super::{
    acks::{AckBatcher, Verdict},
    headers::{self, Forward, History},
    ordering::Sequencer,
};
use crate::{
    config::{QueueKind, QueueSettings},
    handlers::{self, Ctx, HandlerError, Outcome, Part, Reason},
    health::Health,
    metrics::QueueMetrics,
    phone::mask_digits_in,
};

/// An input queue: its settings and its ordering state, shared across
/// reconnections.
pub struct QueueRuntime {
    pub kind: QueueKind,
    pub settings: QueueSettings,
    pub sequencer: Arc<Sequencer>,
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
        .basic_qos(q.settings.concurrency, BasicQosOptions::default())
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
    tracing::info!(queue = %queue, concurrency = q.settings.concurrency, "consuming");
    let result = loop {
        tokio::select! {
            biased;
            _ = stop.cancelled() => break Ok(()),
            next = consumer.next() => match next {
                Some(Ok(delivery)) => dispatch(&q, &ctx, &acks, delivery, &tracker),
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

fn dispatch(
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
    let span = tracing::info_span!(
        "message",
        queue = %q.kind,
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
                let applying = Box::pin(handlers::apply(job, &ctx, &history));
                let parts = match tokio::time::timeout(timeout, applying).await {
                    Ok(parts) => parts,
                    Err(_) => vec![Part::whole(Outcome::Failed(HandlerError::transient(
                        format!("handler timed out after {} s", timeout.as_secs()),
                    )))],
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

/// Decides the fate of one delivery from its parts' outcomes, in one place.
/// Takes the delivery by value: it is acked or nacked exactly once.
pub async fn settle(
    rt: &QueueRuntime,
    ctx: &Ctx,
    acks: &Arc<AckBatcher>,
    delivery: Delivery,
    history: &History,
    parts: Vec<Part>,
) {
    let (q, metrics) = (&rt.settings, &rt.metrics);
    let attempt = history.attempts.saturating_add(1);
    let mut durable = true;
    for part in &parts {
        let body = part.body.as_deref().unwrap_or(&delivery.data);
        let forward = match &part.outcome {
            Outcome::Applied(effect) => {
                tracing::debug!(effect, "applied");
                None
            }
            Outcome::Parked => {
                metrics.parked();
                tracing::info!("call record matches no binding: parked");
                Some((
                    q.unattributed_name(),
                    "unattributed",
                    "no XB binding has this subId".to_owned(),
                    attempt - 1,
                ))
            }
            Outcome::Failed(HandlerError::Permanent { reason, detail }) => {
                metrics.dead_lettered(reason.as_str());
                tracing::warn!(reason = reason.as_str(), error = %mask_digits_in(detail), "permanent failure: dead-lettered");
                Some((q.dlq_name(), reason.as_str(), detail.clone(), attempt))
            }
            Outcome::Failed(HandlerError::Transient(e)) if attempt < q.max_attempts => {
                let to = q.retry_queue_after(attempt);
                metrics.retried();
                tracing::warn!(error = %mask_digits_in(e), retry_queue = %to, "transient failure: retrying");
                Some((to, "transient", e.clone(), attempt))
            }
            Outcome::Failed(HandlerError::Transient(e)) => {
                metrics.dead_lettered(Reason::RetriesExhausted.as_str());
                tracing::error!(error = %mask_digits_in(e), attempts = attempt, "transient failures exhausted the attempts: dead-lettered");
                Some((
                    q.dlq_name(),
                    Reason::RetriesExhausted.as_str(),
                    e.clone(),
                    attempt,
                ))
            }
        };
        if let Some((to, reason, error, attempts)) = forward {
            let key = ctx.store.signing_key().await;
            let props = headers::forwarded_properties(
                &delivery.properties,
                body,
                &q.name,
                history,
                &Forward {
                    queue: &to,
                    reason,
                    error: &error,
                    attempts,
                    confirmed_call_id: part.confirmed_call_id.as_deref(),
                },
                key.as_ref(),
                ctx.publisher.frame_max(),
            );
            if let Err(e) = ctx.publisher.publish("", &to, body, props).await {
                metrics.publish_failed();
                tracing::error!(error = %e, to = %to, "could not move the message: it goes back to its queue");
                durable = false;
                break;
            }
        }
    }
    metrics.settled(durable);
    let verdict = if durable {
        Verdict::Ack
    } else {
        // Give a failing broker a moment before the message comes straight back.
        tokio::time::sleep(Duration::from_millis(500)).await;
        Verdict::Requeue
    };
    acks.settle(delivery.delivery_tag, verdict, delivery.acker);
}
