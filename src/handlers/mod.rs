//! What each input queue's messages mean: parsing and validation (pure), and
//! the effect on Redis (one file per queue). Handlers never ack, retry or
//! dead-letter anything themselves: they return an [`Outcome`] per message (or
//! per record of a batch), and `broker::settle::settle` decides the
//! message's fate from it in one place.
//!
//! # Errors
//! [`HandlerError::Permanent`] carries a [`Reason`] and a detail in which no
//! full phone number appears; it goes to the dead-letter queue at once.
//! [`HandlerError::Transient`] is retried through the broker's delay queues.

pub mod blacklist;
pub mod call_record;
pub mod fields;
pub mod phone_history;
#[cfg(test)]
pub(crate) mod proptests;
pub mod schema;
pub mod xb_unbind;

use std::{collections::BTreeSet, sync::Arc, time::Duration};

use serde_json::Value;

pub use crate::outcome::{HandlerError, Outcome, Part, Reason};
use crate::{
    amqp::{headers::History, publisher::Publisher},
    config::{QueueKind, Settings},
    store::Store,
};

/// A parsed, validated message, ready to apply.
#[derive(Debug)]
pub enum Job {
    XbUnbind(xb_unbind::XbUnbind),
    Blacklist(blacklist::BlacklistChange),
    PhoneChange(phone_history::PhoneChange),
    CallRecords(call_record::Batch),
}

impl Job {
    /// The entities this message is about. Messages that share one are
    /// applied in delivery order (see `broker::ordering`).
    pub fn entity_keys(&self) -> BTreeSet<String> {
        match self {
            Job::XbUnbind(m) => BTreeSet::from([m.sub_id.clone()]),
            Job::Blacklist(m) => BTreeSet::from([format!("{}:{}", m.user_id, m.number)]),
            Job::PhoneChange(m) => BTreeSet::from([m.user_id.to_string()]),
            Job::CallRecords(b) => b.sub_ids(),
        }
    }
}

/// A queue's handler slots: at most `concurrency` messages do their own
/// Redis work at once. Waiting for an
/// entity's turn, for a publish confirm or for a move to a retry queue holds
/// no slot, so deliveries waiting on the broker do not stop others from
/// running; `prefetch` bounds how many deliveries there are in all.
#[derive(Clone)]
pub struct Slots(Arc<tokio::sync::Semaphore>);

impl Slots {
    pub fn new(concurrency: u16) -> Self {
        Slots(Arc::new(tokio::sync::Semaphore::new(
            concurrency.max(1).into(),
        )))
    }

    /// Waits for a free slot; it is given back when the permit is dropped.
    /// (`None` only if the semaphore were closed, which nothing does: the
    /// message then runs without a slot rather than failing.)
    pub async fn take(&self) -> Option<tokio::sync::OwnedSemaphorePermit> {
        Arc::clone(&self.0).acquire_owned().await.ok()
    }
}

/// Everything a handler may touch while applying a message.
#[derive(Clone)]
pub struct Ctx {
    pub store: Store,
    /// This queue's publisher-confirmed channel: call-log events, and the
    /// copies `settle` makes (one per queue, so one queue's publishes never
    /// wait behind another's confirms).
    pub publisher: Publisher,
    /// Read by handlers for the key prefix, retention and call-log target.
    pub settings: Arc<Settings>,
    /// The handler timeout: also the lease on a call record being published.
    pub timeout: Duration,
    pub metrics: Arc<crate::metrics::Metrics>,
    /// This queue's handler slots.
    pub slots: Slots,
}

/// Bounds on one message: its body and, for an array of call records, the
/// records in it.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    pub max_body_bytes: usize,
    pub max_batch_records: usize,
}

impl Limits {
    pub fn of(q: &crate::config::QueueSettings) -> Self {
        Limits {
            max_body_bytes: q.max_body_bytes,
            max_batch_records: q.max_batch_records,
        }
    }
}

/// Parses and validates a body for the queue `kind`; a failure here is
/// always permanent.
pub fn parse(kind: QueueKind, body: &[u8], limits: Limits) -> Result<Job, HandlerError> {
    let max_body_bytes = limits.max_body_bytes;
    if body.len() > max_body_bytes {
        return Err(HandlerError::permanent(
            Reason::BodyTooLarge,
            format!(
                "body is {} bytes, the limit is {max_body_bytes}",
                body.len()
            ),
        ));
    }
    let text = std::str::from_utf8(body).map_err(|e| {
        HandlerError::permanent(Reason::NotUtf8, format!("body is not UTF-8 ({e})"))
    })?;
    let value: Value = serde_json::from_str(text).map_err(|e| {
        HandlerError::permanent(Reason::InvalidJson, format!("body is not JSON ({e})"))
    })?;
    match kind {
        QueueKind::XbUnbind => xb_unbind::parse(&value).map(Job::XbUnbind),
        QueueKind::Blacklist => blacklist::parse(&value).map(Job::Blacklist),
        QueueKind::PhoneHistory => phone_history::parse(&value).map(Job::PhoneChange),
        QueueKind::CallRecord => {
            call_record::parse(value, limits.max_batch_records).map(Job::CallRecords)
        }
    }
}

/// The object at the top of a body, or a permanent `not_an_object`.
pub(crate) fn object(value: &Value) -> Result<&serde_json::Map<String, Value>, HandlerError> {
    value.as_object().ok_or_else(|| {
        HandlerError::permanent(
            Reason::NotAnObject,
            format!("body is JSON {}, not an object", kind_of(value)),
        )
    })
}

pub(crate) fn kind_of(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

/// Applies a parsed message; never panics, never acks. `history` is what the
/// worker itself recorded on an earlier attempt (signed headers).
pub async fn apply(job: Job, ctx: &Ctx, history: &History) -> Vec<Part> {
    let whole = |r: Result<&'static str, HandlerError>| {
        vec![Part::whole(match r {
            Ok(label) => Outcome::Applied(label),
            Err(e) => Outcome::Failed(e),
        })]
    };
    match job {
        Job::XbUnbind(m) => {
            let _slot = ctx.slots.take().await;
            whole(xb_unbind::apply(&m, ctx).await)
        }
        Job::Blacklist(m) => {
            let _slot = ctx.slots.take().await;
            whole(blacklist::apply(&m, ctx).await)
        }
        Job::PhoneChange(m) => {
            let _slot = ctx.slots.take().await;
            whole(phone_history::apply(&m, ctx).await)
        }
        // Takes a slot per record, and gives it back while the broker
        // confirms the record's event.
        Job::CallRecords(b) => {
            call_record::apply(b, ctx, history.confirmed_call_id.as_deref()).await
        }
    }
}

/// Seconds since the Unix epoch, as the contract's timestamps are.
pub fn now_epoch() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn body_level_failures_are_permanent_with_their_reason() {
        let cases: [(&[u8], Reason); 5] = [
            (b"\xff\xfe", Reason::NotUtf8),
            (b"{not json", Reason::InvalidJson),
            (b"[1,2]", Reason::NotAnObject),
            (b"\"text\"", Reason::NotAnObject),
            (&[b' '; 100], Reason::BodyTooLarge),
        ];
        for (body, reason) in cases {
            let limits = Limits {
                max_body_bytes: 64,
                max_batch_records: 10,
            };
            let err = parse(QueueKind::XbUnbind, body, limits).unwrap_err();
            assert_eq!(err.reason(), Some(reason), "{body:?}");
        }
        let deep = "[".repeat(10_000);
        let limits = Limits {
            max_body_bytes: 1 << 20,
            max_batch_records: 10,
        };
        let err = parse(QueueKind::CallRecord, deep.as_bytes(), limits).unwrap_err();
        assert_eq!(err.reason(), Some(Reason::InvalidJson));
    }
}
