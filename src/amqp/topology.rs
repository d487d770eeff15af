//! The queues the worker uses, declared (or, with `passive = true`, only
//! checked) on every connection:
//!
//! ```text
//! <name>                   the input queue
//! <name>.retry.<d>ms       one per retry delay d: x-message-ttl = d, dead-letters
//!                          back to <name> through the default exchange
//! <name>.dlq               dead letters, kept until an operator replays them
//! <name>.unattributed      call records no binding explains (call_record only)
//! house_exchange1_GetPhoneWriteLog   the call-log output, when published
//!                          through the default exchange
//! ```
//! All durable; `queue_type` applies to a queue and its derived queues.

use lapin::{
    Channel, Connection,
    options::QueueDeclareOptions,
    types::{AMQPValue, FieldTable},
};

use crate::config::{QueueKind, QueueSettings, QueueType, Settings};

#[derive(Debug, thiserror::Error)]
pub enum TopologyError {
    /// Configuration and broker disagree; reconnecting cannot fix it.
    #[error("queue {queue:?} cannot be used: {reason}")]
    Unusable { queue: String, reason: String },
    #[error("broker error while declaring queues: {0}")]
    Broker(#[from] lapin::Error),
}

impl TopologyError {
    pub fn is_fatal(&self) -> bool {
        matches!(self, TopologyError::Unusable { .. })
    }
}

/// A queue to declare: its name, arguments and whether only to check it.
#[derive(Debug, Clone, PartialEq)]
pub struct QueueSpec {
    pub name: String,
    pub arguments: FieldTable,
    pub passive: bool,
}

/// Every queue the worker needs, in declaration order.
pub fn specs(settings: &Settings) -> Vec<QueueSpec> {
    let mut out = Vec::new();
    for kind in QueueKind::ALL {
        let q = settings.queues.get(kind);
        out.push(spec(q, q.name.clone(), FieldTable::default()));
        let mut delays = q.retry_delays_ms.clone();
        delays.sort_unstable();
        delays.dedup();
        for d in delays {
            let mut args = FieldTable::default();
            args.insert("x-message-ttl".into(), AMQPValue::LongLongInt(d as i64));
            if q.queue_type == QueueType::Quorum {
                // A quorum queue dead-letters at most once by default: a
                // message expiring while its leader moves could be lost on
                // its way back. At-least-once needs reject-publish (a retry
                // queue has no length limit, so nothing is ever refused).
                args.insert(
                    "x-dead-letter-strategy".into(),
                    AMQPValue::LongString("at-least-once".into()),
                );
                args.insert(
                    "x-overflow".into(),
                    AMQPValue::LongString("reject-publish".into()),
                );
            }
            args.insert(
                "x-dead-letter-exchange".into(),
                AMQPValue::LongString("".into()),
            );
            args.insert(
                "x-dead-letter-routing-key".into(),
                AMQPValue::LongString(q.name.as_str().into()),
            );
            out.push(spec(q, q.retry_queue_name(d), args));
        }
        out.push(spec(q, q.dlq_name(), bounds(q)));
        if kind == QueueKind::CallRecord {
            out.push(spec(q, q.unattributed_name(), bounds(q)));
        }
    }
    let call_log = &settings.publish.call_log;
    if call_log.exchange.is_empty() {
        let mut arguments = FieldTable::default();
        if call_log.queue_type == QueueType::Quorum {
            arguments.insert(
                "x-queue-type".into(),
                AMQPValue::LongString("quorum".into()),
            );
        }
        out.push(QueueSpec {
            name: call_log.routing_key.clone(),
            arguments,
            passive: call_log.passive,
        });
    }
    out
}

/// The bounds of `.dlq` and `.unattributed`, when configured. A full queue
/// refuses (nacks) the publish instead of dropping its oldest message: the
/// worker then sends the delivery back to its input queue, so a full
/// dead-letter queue shows as publish failures and requeues, never as loss.
fn bounds(q: &QueueSettings) -> FieldTable {
    let mut args = FieldTable::default();
    if q.dlq_max_length > 0 {
        args.insert(
            "x-max-length".into(),
            AMQPValue::LongLongInt(q.dlq_max_length.min(i64::MAX as u64) as i64),
        );
    }
    if q.dlq_max_bytes > 0 {
        args.insert(
            "x-max-length-bytes".into(),
            AMQPValue::LongLongInt(q.dlq_max_bytes.min(i64::MAX as u64) as i64),
        );
    }
    if q.dlq_max_length > 0 || q.dlq_max_bytes > 0 {
        args.insert(
            "x-overflow".into(),
            AMQPValue::LongString("reject-publish".into()),
        );
    }
    args
}

fn spec(q: &QueueSettings, name: String, mut arguments: FieldTable) -> QueueSpec {
    // Classic is the broker's default: leave the argument out so that queues
    // declared before without it still match.
    if q.queue_type == QueueType::Quorum {
        arguments.insert(
            "x-queue-type".into(),
            AMQPValue::LongString("quorum".into()),
        );
    }
    QueueSpec {
        name,
        arguments,
        passive: q.passive,
    }
}

/// Declares (or checks) every queue; the first failure ends the attempt (it
/// closes the channel anyway).
pub async fn declare(conn: &Connection, settings: &Settings) -> Result<(), TopologyError> {
    let channel: Channel = conn.create_channel().await?;
    for s in specs(settings) {
        declare_one(&channel, &s).await?;
    }
    let _ = channel.close(200, "topology declared".into()).await;
    Ok(())
}

/// Declares (or checks, when passive) one queue on `channel`.
pub async fn declare_one(channel: &Channel, s: &QueueSpec) -> Result<(), TopologyError> {
    let options = QueueDeclareOptions {
        passive: s.passive,
        durable: true,
        ..Default::default()
    };
    let Err(e) = channel
        .queue_declare(s.name.as_str().into(), options, s.arguments.clone())
        .await
    else {
        return Ok(());
    };
    let text = e.to_string();
    let reason =
        if text.contains("NOT_FOUND") || text.contains("NOT-FOUND") || text.contains("no queue") {
            Some("it does not exist, and passive = true forbids creating it".to_owned())
        } else if text.contains("PRECONDITION") || text.contains("inequivalent") {
            Some(format!(
                "it exists with other arguments (queue_type or retry delays changed?): {text}"
            ))
        } else {
            None
        };
    Err(match reason {
        Some(reason) => TopologyError::Unusable {
            queue: s.name.clone(),
            reason,
        },
        None => TopologyError::Broker(e),
    })
}

/// Checks, passively, that the exchange the call-log events go to exists
/// (an exchange is never declared by the worker: SREs own it). Until it
/// does, readiness names it under `missing_targets`; checked again every
/// `every` until found or `stop`, so a misspelled exchange is seen at start,
/// not at the first call record, and an exchange created later is noticed.
pub async fn watch_publish_exchange(
    conn: std::sync::Arc<Connection>,
    settings: std::sync::Arc<Settings>,
    health: std::sync::Arc<crate::health::Health>,
    stop: tokio_util::sync::CancellationToken,
    every: std::time::Duration,
) {
    let exchange = settings.publish.call_log.exchange.clone();
    if exchange.is_empty() {
        return;
    }
    let target = format!("exchange {exchange:?}");
    loop {
        // A passive declare of a missing exchange closes its channel: a
        // channel of its own each time.
        let found = match conn.create_channel().await {
            Ok(channel) => {
                let r = channel
                    .exchange_declare(
                        exchange.as_str().into(),
                        lapin::ExchangeKind::Direct,
                        lapin::options::ExchangeDeclareOptions {
                            passive: true,
                            ..Default::default()
                        },
                        FieldTable::default(),
                    )
                    .await;
                let _ = channel.close(200, "checked".into()).await;
                match r {
                    Ok(()) => Some(true),
                    Err(e)
                        if e.to_string().contains("NOT_FOUND")
                            || e.to_string().contains("NOT-FOUND") =>
                    {
                        Some(false)
                    }
                    // The connection is going: the next session checks again.
                    Err(_) => None,
                }
            }
            Err(_) => None,
        };
        match found {
            Some(true) => {
                health.set_target_missing(&target, false);
                return;
            }
            Some(false) => health.set_target_missing(&target, true),
            None => return,
        }
        tokio::select! {
            _ = stop.cancelled() => return,
            _ = tokio::time::sleep(every) => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retry_queues_dead_letter_back_to_their_queue() {
        let mut s = Settings::defaults().unwrap();
        s.queues.call_record.retry_delays_ms = vec![500, 100, 500];
        s.queues.call_record.queue_type = QueueType::Quorum;
        let specs = specs(&s);
        let names: Vec<&str> = specs.iter().map(|s| s.name.as_str()).collect();
        let cr = "service_exchange1_privatenumberCallRecord";
        for n in [
            cr.to_string(),
            format!("{cr}.retry.100ms"),
            format!("{cr}.retry.500ms"),
            format!("{cr}.dlq"),
            format!("{cr}.unattributed"),
            "house_exchange1_GetPhoneWriteLog".into(),
        ] {
            assert!(names.contains(&n.as_str()), "{n} missing from {names:?}");
        }
        let retry = specs
            .iter()
            .find(|s| s.name == format!("{cr}.retry.100ms"))
            .unwrap();
        let args = retry.arguments.inner();
        assert_eq!(
            args.get("x-message-ttl"),
            Some(&AMQPValue::LongLongInt(100))
        );
        assert_eq!(
            args.get("x-dead-letter-routing-key"),
            Some(&AMQPValue::LongString(cr.into()))
        );
        assert_eq!(
            args.get("x-queue-type"),
            Some(&AMQPValue::LongString("quorum".into()))
        );
        assert_eq!(
            args.get("x-dead-letter-strategy"),
            Some(&AMQPValue::LongString("at-least-once".into())),
            "a quorum retry queue dead-letters back at least once"
        );
        assert!(
            !specs
                .iter()
                .any(|s| s.name.ends_with("SetBlackNumber.unattributed"))
        );
    }

    #[test]
    fn dead_letter_bounds_refuse_rather_than_drop() {
        let mut s = Settings::defaults().unwrap();
        let dlq = |s: &Settings, name: &str| {
            specs(s)
                .into_iter()
                .find(|q| q.name == name)
                .unwrap()
                .arguments
        };
        let cr = "service_exchange1_privatenumberCallRecord";
        assert_eq!(dlq(&s, &format!("{cr}.dlq")), FieldTable::default());
        s.queues.call_record.dlq_max_length = 1000;
        s.queues.call_record.dlq_max_bytes = 1 << 20;
        for name in [format!("{cr}.dlq"), format!("{cr}.unattributed")] {
            let args = dlq(&s, &name);
            let args = args.inner();
            assert_eq!(
                args.get("x-max-length"),
                Some(&AMQPValue::LongLongInt(1000))
            );
            assert_eq!(
                args.get("x-max-length-bytes"),
                Some(&AMQPValue::LongLongInt(1 << 20))
            );
            assert_eq!(
                args.get("x-overflow"),
                Some(&AMQPValue::LongString("reject-publish".into()))
            );
        }
        // Input and retry queues stay unbounded: bounding them would refuse
        // producers' messages or retries.
        assert_eq!(dlq(&s, cr), FieldTable::default());
    }
}
