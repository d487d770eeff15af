//! [`settle`]: the only place where a delivery is acknowledged, retried,
//! parked or dead-lettered.
//!
//! It publishes (with confirms) whatever must outlive the delivery: a copy
//! to a retry queue, to `.dlq`, or to `.unattributed`, with the properties
//! [`forwarded_properties`] gives it. Only when every such publish is
//! confirmed does it ack; if one fails it nacks with requeue, and the whole
//! message comes back (its effects are idempotent). Acks of deliveries
//! settled at about the same time share one frame ([`AckBatcher`]).

use std::{sync::Arc, time::Duration};

use lapin::message::Delivery;

use super::{
    acks::{AckBatcher, Verdict},
    consumer::QueueRuntime,
};
use crate::{
    amqp::{
        forward::{Forward, forwarded_properties},
        headers::History,
        publisher::PublishError,
    },
    handlers::Ctx,
    outcome::{HandlerError, Outcome, Part, Reason},
    phone::mask_digits_in,
};

/// Publishes the copy of `delivery` that `to` describes (a retry, a dead
/// letter, a parked record), with its headers, and waits for the confirm.
async fn move_copy(
    ctx: &Ctx,
    from: &str,
    delivery: &Delivery,
    body: &[u8],
    history: &History,
    to: Forward<'_>,
) -> Result<(), PublishError> {
    let key = ctx.store.signing_key().await;
    let props = forwarded_properties(
        &delivery.properties,
        body,
        from,
        history,
        &to,
        key.as_ref(),
        ctx.publisher.frame_max(),
    );
    ctx.publisher.publish("", to.queue, body, props).await
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
            let moving = Forward {
                queue: &to,
                reason,
                error: &error,
                attempts,
                confirmed_call_id: part.confirmed_call_id.as_deref(),
            };
            // Boxed: the publish's future is large and only this path needs it;
            // unboxed it would quadruple every settle's size (copied per message).
            let moved = Box::pin(move_copy(ctx, &q.name, &delivery, body, history, moving)).await;
            if let Err(e) = moved {
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
