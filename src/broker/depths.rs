//! What waits in the worker's queues, for `axn_queue_depth` and
//! `axn_dead_letter_oldest_age_seconds`: read from the broker with passive
//! declares (no management plugin needed) and, for the age, a look at the
//! head of each non-empty `.dlq` and `.unattributed`.

use std::{sync::Arc, time::Duration};

use lapin::{
    Channel, Connection,
    options::{BasicGetOptions, BasicRejectOptions, QueueDeclareOptions},
};
use tokio_util::sync::CancellationToken;

use crate::{
    amqp::headers::{FAILED_AT_HEADER, header_text},
    config::{QueueKind, Settings},
    metrics::Metrics,
};

/// Reads every `[amqp] queue_depth_interval_ms` until `stop` or the
/// connection is gone.
pub(super) async fn probe(
    conn: Arc<Connection>,
    settings: Arc<Settings>,
    metrics: Arc<Metrics>,
    stop: CancellationToken,
) {
    let every = Duration::from_millis(settings.amqp.queue_depth_interval_ms.max(100));
    let mut channel = None;
    loop {
        if channel
            .as_ref()
            .is_none_or(|c: &Channel| !c.status().connected())
        {
            channel = conn.create_channel().await.ok();
        }
        if let Some(ch) = &channel {
            'kinds: for kind in QueueKind::ALL {
                for (name, role) in queues(&settings, kind) {
                    let passive = QueueDeclareOptions {
                        passive: true,
                        ..Default::default()
                    };
                    let depth = match ch
                        .queue_declare(name.as_str().into(), passive, Default::default())
                        .await
                    {
                        Ok(q) => q.message_count(),
                        // A missing queue closes the channel: the next round
                        // opens another.
                        Err(_) => break 'kinds,
                    };
                    metrics.set_queue_depth(kind, &role, depth);
                    if role == "dlq" || role == "unattributed" {
                        let age = if depth == 0 {
                            Some(0.0)
                        } else {
                            head_age(ch, &name).await
                        };
                        if let Some(age) = age {
                            metrics.set_dead_letter_age(kind, &role, age);
                        }
                    }
                }
            }
        }
        tokio::select! {
            _ = stop.cancelled() => return,
            _ = tokio::time::sleep(every) => {}
        }
    }
}

/// The queues of `kind` and their `role` label.
fn queues(settings: &Settings, kind: QueueKind) -> Vec<(String, String)> {
    let q = settings.queues.get(kind);
    let mut queues = vec![
        (q.name.clone(), "input".to_owned()),
        (q.dlq_name(), "dlq".to_owned()),
    ];
    queues.extend(
        q.retry_delays_ms
            .iter()
            .map(|d| (q.retry_queue_name(*d), format!("retry_{d}ms"))),
    );
    if kind == QueueKind::CallRecord {
        queues.push((q.unattributed_name(), "unattributed".to_owned()));
    }
    queues
}

/// Seconds since the message at the head of `queue` (its oldest) was moved
/// there, from its `axn-failed-at` header, or its AMQP timestamp when a
/// producer put it there by hand. AMQP has no peek: the message is taken
/// unacknowledged and rejected back at once, which returns it to the head
/// (it is marked redelivered; on a quorum queue its delivery count grows,
/// which is why the worker never gives its dead-letter queues a delivery
/// limit). None when the queue emptied meanwhile or the time is unknown.
async fn head_age(ch: &Channel, queue: &str) -> Option<f64> {
    let got = ch
        .basic_get(queue.into(), BasicGetOptions { no_ack: false })
        .await
        .ok()??;
    let props = &got.delivery.properties;
    let at = props
        .headers()
        .as_ref()
        .and_then(|h| header_text(h, FAILED_AT_HEADER))
        .and_then(|t| humantime::parse_rfc3339_weak(&t).ok())
        .or_else(|| {
            props
                .timestamp()
                .map(|s| std::time::UNIX_EPOCH + Duration::from_secs(s))
        });
    let _ = got
        .delivery
        .acker
        .reject(BasicRejectOptions { requeue: true })
        .await;
    let age = std::time::SystemTime::now().duration_since(at?).ok()?;
    Some(age.as_secs_f64())
}
