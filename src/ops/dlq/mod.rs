//! Dead-letter and parking queues for operators: list what is there without
//! consuming it, and replay it into processing.
//!
//! `list` takes up to N messages unacknowledged and then closes its channel,
//! so the broker puts every one of them back, in order. `replay` moves
//! messages one at a time: republish to the input queue, wait for the broker's
//! confirm, and only then ack the original, so an interrupted replay loses
//! nothing (at worst one message is in both queues, and applying it twice is
//! harmless). It moves at most the messages present when it starts, so a
//! message that fails again and comes back is not replayed in a loop.

use anyhow::Context as _;
use lapin::{
    BasicProperties,
    options::{BasicAckOptions, BasicGetOptions, QueueDeclareOptions},
    types::{AMQPValue, FieldTable},
};

mod cli;
mod tools;

use crate::{
    amqp::{
        self,
        headers::{
            ATTEMPTS_HEADER, CONFIRMED_HEADER, ERROR_HEADER, FAILED_AT_HEADER,
            FIRST_FAILED_AT_HEADER, HEADERS_CUT_HEADER, HISTORY_ATTEMPTS_HEADER,
            HISTORY_FIRST_FAILED_AT_HEADER, ORIGINAL_QUEUE_HEADER, REASON_HEADER,
            REPLAY_COUNT_HEADER, REPLAYED_AT_HEADER, REPLAYED_FROM_HEADER, SIGNATURE_HEADER,
        },
        publisher::Publisher,
    },
    config::Settings,
    phone,
};
pub use cli::{DlqCommand, ParkedCommand, RetriesCommand};
pub use tools::{Filter, ReasonSummary, SCAN_MAX, purge, scan, summarize};

/// A dead-lettered (or parked) message as an operator sees it.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
pub struct Entry {
    /// The producer's message id, to find one message (and its log lines).
    pub message_id: Option<String>,
    pub reason: Option<String>,
    pub error: Option<String>,
    pub attempts: Option<String>,
    pub first_failed_at: Option<String>,
    pub failed_at: Option<String>,
    pub original_queue: Option<String>,
    /// Earlier lives of a replayed message: replays, attempts, first failure.
    pub history: Option<String>,
    /// The body with its phone numbers masked (ids and times stay readable).
    pub body: String,
}

impl std::fmt::Display for Entry {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let v = |o: &Option<String>| o.clone().unwrap_or_else(|| "-".into());
        writeln!(f, "message id:    {}", v(&self.message_id))?;
        writeln!(f, "reason:        {}", v(&self.reason))?;
        writeln!(f, "error:         {}", v(&self.error))?;
        writeln!(f, "attempts:      {}", v(&self.attempts))?;
        writeln!(f, "first failure: {}", v(&self.first_failed_at))?;
        writeln!(f, "last failure:  {}", v(&self.failed_at))?;
        writeln!(f, "from queue:    {}", v(&self.original_queue))?;
        if let Some(h) = &self.history {
            writeln!(f, "history:       {h}")?;
        }
        write!(f, "body:          {}", self.body)
    }
}

/// A header's value as text (strings as they are, numbers in decimal).
pub fn header(props: &BasicProperties, name: &str) -> Option<String> {
    match props.headers().as_ref()?.inner().get(name)? {
        AMQPValue::LongString(s) => Some(String::from_utf8_lossy(s.as_bytes()).into_owned()),
        AMQPValue::ShortString(s) => Some(s.as_str().to_owned()),
        AMQPValue::LongLongInt(n) => Some(n.to_string()),
        AMQPValue::LongInt(n) => Some(n.to_string()),
        other => Some(format!("{other:?}")),
    }
}

pub(crate) fn entry(props: &BasicProperties, body: &[u8]) -> Entry {
    Entry {
        message_id: props.message_id().as_ref().map(|m| m.as_str().to_owned()),
        reason: header(props, REASON_HEADER),
        error: header(props, ERROR_HEADER),
        attempts: header(props, ATTEMPTS_HEADER),
        first_failed_at: header(props, FIRST_FAILED_AT_HEADER),
        failed_at: header(props, FAILED_AT_HEADER),
        original_queue: header(props, ORIGINAL_QUEUE_HEADER),
        history: header(props, REPLAY_COUNT_HEADER).map(|n| {
            format!(
                "replayed {n} time(s); {} attempt(s) before; first failure {}",
                header(props, HISTORY_ATTEMPTS_HEADER).unwrap_or_else(|| "0".into()),
                header(props, HISTORY_FIRST_FAILED_AT_HEADER).unwrap_or_else(|| "-".into())
            )
        }),
        body: phone::mask_phones_in(&String::from_utf8_lossy(body)),
    }
}

/// Messages in `queue` now (the queue must exist).
pub async fn depth(channel: &lapin::Channel, queue: &str) -> anyhow::Result<u32> {
    let q = channel
        .queue_declare(
            queue.into(),
            QueueDeclareOptions {
                passive: true,
                ..Default::default()
            },
            FieldTable::default(),
        )
        .await
        .with_context(|| format!("queue {queue} does not exist (has the worker run once?)"))?;
    Ok(q.message_count())
}

/// The next message of `queue`, taken unacknowledged. An empty answer is
/// asked once more 50 ms later: a worker's age probe (which takes the head
/// and returns it at once) may hold the only message left for a moment.
pub(crate) async fn next(
    channel: &lapin::Channel,
    queue: &str,
) -> anyhow::Result<Option<lapin::message::BasicGetMessage>> {
    let get = || channel.basic_get(queue.into(), BasicGetOptions { no_ack: false });
    if let Some(m) = get().await? {
        return Ok(Some(m));
    }
    tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    Ok(get().await?)
}

/// Up to `limit` messages of `queue`, left in the queue.
pub async fn list(settings: &Settings, queue: &str, limit: usize) -> anyhow::Result<Vec<Entry>> {
    let conn = amqp::connect(settings, &amqp::connection_name(Some("dlq-list"))).await?;
    let channel = conn.create_channel().await?;
    depth(&channel, queue).await?;
    let mut out = Vec::new();
    while out.len() < limit {
        match next(&channel, queue).await? {
            Some(m) => out.push(entry(&m.delivery.properties, &m.delivery.data)),
            None => break,
        }
    }
    // Closing the channel returns every unacknowledged message, in order.
    let _ = channel.close(200, "listed".into()).await;
    let _ = conn.close(200, "listed".into()).await;
    Ok(out)
}

/// The properties of a replayed message: the original ones, without the
/// failure headers (so it gets its full attempts again), stamped with where
/// and when it was replayed from.
pub fn replay_properties(props: &BasicProperties, from: &str) -> BasicProperties {
    let mut headers = FieldTable::default();
    if let Some(h) = props.headers() {
        for (k, v) in h.inner() {
            let drop = [
                ATTEMPTS_HEADER,
                REASON_HEADER,
                ERROR_HEADER,
                FAILED_AT_HEADER,
                FIRST_FAILED_AT_HEADER,
                ORIGINAL_QUEUE_HEADER,
                CONFIRMED_HEADER,
                HEADERS_CUT_HEADER,
                SIGNATURE_HEADER,
            ]
            .contains(&k.as_str())
                || k.as_str().to_ascii_lowercase().starts_with("x-");
            if !drop {
                headers.insert(k.clone(), v.clone());
            }
        }
    }
    // The message's history, kept for the operator (the live retry headers
    // go: the replayed message gets its full attempts again).
    let first = header(props, HISTORY_FIRST_FAILED_AT_HEADER)
        .or_else(|| header(props, FIRST_FAILED_AT_HEADER));
    let count = |name: &str| {
        header(props, name)
            .and_then(|v| v.parse::<i64>().ok())
            .unwrap_or(0)
    };
    let attempts = count(HISTORY_ATTEMPTS_HEADER) + count(ATTEMPTS_HEADER);
    if let Some(first) = first {
        headers.insert(
            HISTORY_FIRST_FAILED_AT_HEADER.into(),
            AMQPValue::LongString(first.as_str().into()),
        );
    }
    headers.insert(
        HISTORY_ATTEMPTS_HEADER.into(),
        AMQPValue::LongLongInt(attempts),
    );
    headers.insert(
        REPLAY_COUNT_HEADER.into(),
        AMQPValue::LongLongInt(count(REPLAY_COUNT_HEADER) + 1),
    );
    let now = humantime::format_rfc3339_seconds(std::time::SystemTime::now()).to_string();
    headers.insert(
        REPLAYED_FROM_HEADER.into(),
        AMQPValue::LongString(from.into()),
    );
    headers.insert(
        REPLAYED_AT_HEADER.into(),
        AMQPValue::LongString(now.as_str().into()),
    );
    props.clone().with_headers(headers).with_delivery_mode(2)
}

/// Moves up to `limit` (default: all present at the start) messages from
/// `from` to `to`; `progress` is called after each. Returns how many moved.
pub async fn replay(
    settings: &Settings,
    from: &str,
    to: &str,
    limit: Option<usize>,
    filter: &Filter,
    progress: &dyn Fn(u64, u64),
) -> anyhow::Result<usize> {
    let conn = amqp::connect(settings, &amqp::connection_name(Some("dlq-replay"))).await?;
    let channel = conn.create_channel().await?;
    depth(&channel, to).await?;
    let present = depth(&channel, from).await? as usize;
    let total = limit.map_or(present, |l| l.min(present));
    let publisher = Publisher::new(conn.create_channel().await?).await?;
    let mut moved = 0;
    progress(0, total as u64);
    // At most the messages present at the start: one that fails again and
    // comes back is not replayed in a loop. Those the filter leaves go back
    // when the channel closes.
    for _ in 0..present {
        if moved >= total {
            break;
        }
        let Some(m) = next(&channel, from).await? else {
            break;
        };
        let d = m.delivery;
        if !filter.matches(&entry(&d.properties, &d.data)) {
            continue;
        }
        publisher
            .publish("", to, &d.data, replay_properties(&d.properties, from))
            .await
            .with_context(|| {
                format!("republishing to {to} was not confirmed; the message stays in {from}")
            })?;
        if !d.acker.ack(BasicAckOptions::default()).await? {
            anyhow::bail!(
                "the channel closed before the ack; the message may now be in both {from} and {to}"
            );
        }
        moved += 1;
        progress(moved as u64, total as u64);
    }
    let _ = channel.close(200, "replayed".into()).await;
    let _ = conn.close(200, "replayed".into()).await;
    Ok(moved)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn replay_strips_failure_headers_and_keeps_the_rest() {
        let mut h = FieldTable::default();
        h.insert(ATTEMPTS_HEADER.into(), AMQPValue::LongLongInt(8));
        h.insert(
            REASON_HEADER.into(),
            AMQPValue::LongString("retries_exhausted".into()),
        );
        h.insert("trace-id".into(), AMQPValue::LongString("abc".into()));
        let props = BasicProperties::default()
            .with_headers(h)
            .with_message_id("m1".into());
        let out = replay_properties(&props, "q.dlq");
        let headers = out.headers().clone().unwrap();
        assert!(!headers.contains_key(ATTEMPTS_HEADER) && !headers.contains_key(REASON_HEADER));
        assert!(headers.contains_key("trace-id") && headers.contains_key(REPLAYED_AT_HEADER));
        assert_eq!(out.message_id().as_ref().map(|s| s.as_str()), Some("m1"));
        assert!(!headers.contains_key(SIGNATURE_HEADER));
    }

    #[test]
    fn entries_mask_numbers_in_the_body() {
        let e = entry(&BasicProperties::default(), br#"{"telX":"17111526089"}"#);
        assert_eq!(e.body, r#"{"telX":"171****6089"}"#);
        assert!(e.to_string().contains("reason:        -"));
    }
}
