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
    BasicProperties, Channel,
    message::Delivery,
    options::{BasicCancelOptions, BasicConsumeOptions, BasicQosOptions},
    types::{AMQPValue, FieldTable, ShortString},
};
use tokio_util::{sync::CancellationToken, task::TaskTracker};
use tracing::Instrument;

use super::{
    acks::{AckBatcher, Verdict},
    ordering::Sequencer,
    publisher::Publisher,
};
use crate::{
    config::{QueueKind, QueueSettings},
    handlers::{self, Ctx, HandlerError, Outcome, Part, Reason},
    health::Health,
    metrics::QueueMetrics,
    phone::mask_digits_in,
};

/// Header counting the attempts that failed transiently so far. Our own: the
/// broker owns `x-` headers (and no longer counts a client-set `x-death`).
pub const ATTEMPTS_HEADER: &str = "axn-attempts";
/// Dead-letter and parking headers.
pub const REASON_HEADER: &str = "axn-reason";
pub const ERROR_HEADER: &str = "axn-error";
pub const ORIGINAL_QUEUE_HEADER: &str = "axn-original-queue";
/// RFC 3339 time of the failure that sent the message where it is.
pub const FAILED_AT_HEADER: &str = "axn-failed-at";
/// RFC 3339 time of the message's first failure (kept across retries).
pub const FIRST_FAILED_AT_HEADER: &str = "axn-first-failed-at";

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
        // channel closes.
        let _ = channel
            .basic_cancel(tag.as_str().into(), BasicCancelOptions::default())
            .await;
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
    let attempt = failed_attempts(&delivery.properties) + 1;
    let span = tracing::info_span!(
        "message",
        queue = %q.kind,
        tag = delivery.delivery_tag,
        attempt,
        redelivered = delivery.redelivered,
    );
    let q = Arc::clone(q);
    match handlers::parse(q.kind, &delivery.data, q.settings.max_body_bytes) {
        Err(e) => {
            let publisher = ctx.publisher.clone();
            q.metrics.handled("permanent", 0.0);
            tracker.spawn(
                async move {
                    settle(
                        &q,
                        &publisher,
                        &acks,
                        delivery,
                        attempt,
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
                let parts =
                    match tokio::time::timeout(timeout, Box::pin(handlers::apply(job, &ctx))).await
                    {
                        Ok(parts) => parts,
                        Err(_) => vec![Part::whole(Outcome::Failed(HandlerError::transient(
                            format!("handler timed out after {} s", timeout.as_secs()),
                        )))],
                    };
                q.metrics
                    .handled(outcome_label(&parts), started.elapsed().as_secs_f64());
                Box::pin(settle(&q, &ctx.publisher, &acks, delivery, attempt, parts)).await;
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
    publisher: &Publisher,
    acks: &Arc<AckBatcher>,
    delivery: Delivery,
    attempt: u32,
    parts: Vec<Part>,
) {
    let (q, metrics) = (&rt.settings, &rt.metrics);
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
            let props =
                forwarded_properties(&delivery.properties, &q.name, reason, &error, attempts);
            if let Err(e) = publisher.publish("", &to, body, props).await {
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

/// How many attempts have failed transiently so far (0 when never retried).
pub fn failed_attempts(props: &BasicProperties) -> u32 {
    let Some(value) = props
        .headers()
        .as_ref()
        .and_then(|h| h.inner().get(ATTEMPTS_HEADER))
    else {
        return 0;
    };
    let n: i64 = match value {
        AMQPValue::ShortShortInt(v) => (*v).into(),
        AMQPValue::ShortShortUInt(v) => (*v).into(),
        AMQPValue::ShortInt(v) => (*v).into(),
        AMQPValue::ShortUInt(v) => (*v).into(),
        AMQPValue::LongInt(v) => (*v).into(),
        AMQPValue::LongUInt(v) => (*v).into(),
        AMQPValue::LongLongInt(v) => *v,
        AMQPValue::LongString(s) => String::from_utf8_lossy(s.as_bytes())
            .trim()
            .parse()
            .unwrap_or(0),
        _ => 0,
    };
    n.clamp(0, u32::MAX as i64 / 2) as u32
}

/// Properties of a message moved to a retry, dead-letter or parking queue:
/// the producer's properties that matter downstream, persistent, and our
/// headers. `user_id` and `expiration` are dropped on purpose: the broker
/// rejects a foreign user_id, and a dead letter must not expire.
fn forwarded_properties(
    orig: &BasicProperties,
    queue: &str,
    reason: &str,
    error: &str,
    attempts: u32,
) -> BasicProperties {
    let now = humantime::format_rfc3339_seconds(std::time::SystemTime::now()).to_string();
    let mut headers = orig.headers().clone().unwrap_or_default();
    let first_failed = headers
        .inner()
        .get(FIRST_FAILED_AT_HEADER)
        .cloned()
        .unwrap_or_else(|| AMQPValue::LongString(now.as_str().into()));
    let text = |s: &str| AMQPValue::LongString(s.into());
    headers.insert(
        ATTEMPTS_HEADER.into(),
        AMQPValue::LongLongInt(attempts as i64),
    );
    headers.insert(REASON_HEADER.into(), text(reason));
    headers.insert(
        ERROR_HEADER.into(),
        text(&crate::phone::mask_digits_in(error)),
    );
    headers.insert(ORIGINAL_QUEUE_HEADER.into(), text(queue));
    headers.insert(FAILED_AT_HEADER.into(), text(&now));
    headers.insert(FIRST_FAILED_AT_HEADER.into(), first_failed);

    let mut p = BasicProperties::default()
        .with_delivery_mode(2)
        .with_headers(headers);
    let copy = |v: &Option<ShortString>| v.clone();
    if let Some(v) = copy(orig.content_type()) {
        p = p.with_content_type(v);
    }
    if let Some(v) = copy(orig.content_encoding()) {
        p = p.with_content_encoding(v);
    }
    if let Some(v) = copy(orig.message_id()) {
        p = p.with_message_id(v);
    }
    if let Some(v) = copy(orig.correlation_id()) {
        p = p.with_correlation_id(v);
    }
    if let Some(v) = copy(orig.kind()) {
        p = p.with_type(v);
    }
    if let Some(v) = copy(orig.app_id()) {
        p = p.with_app_id(v);
    }
    if let Some(v) = *orig.timestamp() {
        p = p.with_timestamp(v);
    }
    if let Some(v) = *orig.priority() {
        p = p.with_priority(v);
    }
    p
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn attempts_header_round_trips_and_first_failure_is_kept() {
        let orig = BasicProperties::default()
            .with_content_type("application/json".into())
            .with_user_id("producer".into());
        assert_eq!(failed_attempts(&orig), 0);
        let once = forwarded_properties(&orig, "q", "transient", "redis: down 13988888888", 1);
        assert_eq!(failed_attempts(&once), 1);
        assert_eq!(once.user_id(), &None);
        assert_eq!(once.delivery_mode(), &Some(2));
        let headers = once.headers().clone().unwrap();
        let first = headers.inner().get(FIRST_FAILED_AT_HEADER).cloned();
        assert_eq!(
            headers.inner().get(ERROR_HEADER),
            Some(&AMQPValue::LongString("redis: down 139****8888".into()))
        );
        let twice = forwarded_properties(&once, "q", "transient", "again", 2);
        assert_eq!(failed_attempts(&twice), 2);
        assert_eq!(
            twice
                .headers()
                .clone()
                .unwrap()
                .inner()
                .get(FIRST_FAILED_AT_HEADER)
                .cloned(),
            first
        );
        let mut h = FieldTable::default();
        h.insert(ATTEMPTS_HEADER.into(), AMQPValue::LongString("3".into()));
        assert_eq!(
            failed_attempts(&BasicProperties::default().with_headers(h)),
            3
        );
    }
}
