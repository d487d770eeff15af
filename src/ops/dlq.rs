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

use super::dlq_tools::{self, Filter};
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
    config::{QueueKind, Settings},
    phone,
};

/// `dlq` subcommands.
#[derive(clap::Subcommand)]
pub enum DlqCommand {
    /// Show the dead letters: the total and a summary by reason (count,
    /// first and last failure), then the messages the filter selects (message
    /// id, reason, attempts, failures, body with phone numbers masked),
    /// without consuming them.
    List {
        /// xb_unbind, blacklist, phone_history or call_record.
        #[arg(value_parser = QueueKind::parse_key)]
        queue: QueueKind,
        #[command(flatten)]
        limit: Limit,
        #[command(flatten)]
        filter: Filter,
    },
    /// Delete the dead letters the filter selects (all without one). Shows
    /// what it would delete and deletes nothing unless --yes is given.
    Purge {
        /// xb_unbind, blacklist, phone_history or call_record.
        #[arg(value_parser = QueueKind::parse_key)]
        queue: QueueKind,
        #[command(flatten)]
        filter: Filter,
        /// Really delete them.
        #[arg(long)]
        yes: bool,
    },
    /// Move dead-lettered messages back to their input queue, each acked on the
    /// dead-letter queue only after the broker confirmed the republish. Moves
    /// at most the messages present when it starts.
    Replay {
        /// xb_unbind, blacklist, phone_history or call_record.
        #[arg(value_parser = QueueKind::parse_key)]
        queue: QueueKind,
        #[command(flatten)]
        limit: OptionalLimit,
        #[command(flatten)]
        filter: Filter,
        /// Say what would be replayed; move nothing.
        #[arg(long)]
        dry_run: bool,
        /// Replay permanent failures too (invalid_json, missing_field, ...):
        /// they fail again unless their cause was fixed.
        #[arg(long)]
        include_permanent: bool,
    },
}

/// `parked` subcommands.
#[derive(clap::Subcommand)]
pub enum ParkedCommand {
    /// Show parked call records without consuming them.
    List {
        #[command(flatten)]
        limit: Limit,
    },
    /// Move parked call records back to the call-record queue (for instance
    /// once their bindings exist), each acked only after a confirmed republish.
    Replay {
        #[command(flatten)]
        limit: OptionalLimit,
    },
}

#[derive(clap::Args)]
pub struct Limit {
    /// Show at most this many messages.
    #[arg(long, short = 'n', default_value_t = 20)]
    limit: usize,
}

#[derive(clap::Args)]
pub struct OptionalLimit {
    /// Move at most this many messages (default: all present at the start).
    #[arg(long, short = 'n')]
    limit: Option<usize>,
}

impl DlqCommand {
    pub async fn run(self, settings: &Settings) -> anyhow::Result<()> {
        match self {
            DlqCommand::List {
                queue,
                limit,
                filter,
            } => {
                let dlq = settings.queues.get(queue).dlq_name();
                print_summary(settings, &dlq, limit.limit, &filter).await
            }
            DlqCommand::Purge { queue, filter, yes } => {
                let dlq = settings.queues.get(queue).dlq_name();
                if !yes {
                    let all = dlq_tools::scan(settings, &dlq).await?;
                    let n = all.iter().filter(|e| filter.matches(e)).count();
                    anyhow::bail!(
                        "{n} of the {} message(s) in {dlq} match: nothing deleted; run again with --yes to delete them",
                        all.len()
                    );
                }
                let gone = dlq_tools::purge(settings, &dlq, &filter).await?;
                println!("deleted {} message(s) from {dlq}", gone.len());
                Ok(())
            }
            DlqCommand::Replay {
                queue,
                limit,
                filter,
                dry_run,
                include_permanent,
            } => {
                let q = settings.queues.get(queue);
                let all = dlq_tools::scan(settings, &q.dlq_name()).await?;
                let selected: Vec<&Entry> = all.iter().filter(|e| filter.matches(e)).collect();
                let permanent = dlq_tools::summarize(
                    &selected
                        .iter()
                        .filter(|e| e.reason.as_deref().is_some_and(is_permanent))
                        .map(|e| (*e).clone())
                        .collect::<Vec<_>>(),
                );
                if dry_run {
                    println!(
                        "would replay {} of the {} message(s) in {} to {} (of which permanent failures: {})",
                        limit
                            .limit
                            .map_or(selected.len(), |l| l.min(selected.len())),
                        all.len(),
                        q.dlq_name(),
                        q.name,
                        permanent.values().map(|s| s.count).sum::<usize>()
                    );
                    return Ok(());
                }
                if !permanent.is_empty() && !include_permanent {
                    let reasons: Vec<String> = permanent
                        .iter()
                        .map(|(r, s)| format!("{r} {}", s.count))
                        .collect();
                    anyhow::bail!(
                        "{} selected dead letter(s) failed permanently ({}): replayed, they fail again unless their cause was fixed. Add --include-permanent to replay them anyway, or select with --reason retries_exhausted; nothing was replayed",
                        permanent.values().map(|s| s.count).sum::<usize>(),
                        reasons.join(", ")
                    );
                }
                replay_with_progress(settings, &q.dlq_name(), &q.name, limit.limit, &filter).await
            }
        }
    }
}

impl ParkedCommand {
    pub async fn run(self, settings: &Settings) -> anyhow::Result<()> {
        let q = &settings.queues.call_record;
        match self {
            ParkedCommand::List { limit } => {
                print_list(settings, &q.unattributed_name(), limit.limit).await
            }
            ParkedCommand::Replay { limit } => {
                let all = Filter::default();
                replay_with_progress(settings, &q.unattributed_name(), &q.name, limit.limit, &all)
                    .await
            }
        }
    }
}

async fn print_summary(
    settings: &Settings,
    queue: &str,
    limit: usize,
    filter: &Filter,
) -> anyhow::Result<()> {
    let all = dlq_tools::scan(settings, queue).await?;
    println!("{queue}: {} message(s)", all.len());
    for (reason, s) in dlq_tools::summarize(&all) {
        println!(
            "  {reason}: {} (first {}, last {})",
            s.count, s.first, s.last
        );
    }
    let selected: Vec<&Entry> = all.iter().filter(|e| filter.matches(e)).collect();
    for (i, e) in selected.iter().take(limit).enumerate() {
        println!("--- {queue} #{}\n{e}", i + 1);
    }
    if selected.len() > limit {
        println!("... {} more (-n to show more)", selected.len() - limit);
    }
    Ok(())
}

async fn print_list(settings: &Settings, queue: &str, limit: usize) -> anyhow::Result<()> {
    let entries = list(settings, queue, limit).await?;
    if entries.is_empty() {
        println!("{queue} is empty");
    }
    for (i, e) in entries.iter().enumerate() {
        println!("--- {queue} #{}\n{e}", i + 1);
    }
    Ok(())
}

/// A reason retrying cannot fix by itself.
fn is_permanent(reason: &str) -> bool {
    !matches!(
        reason,
        "retries_exhausted" | "transient" | "unattributed" | "-"
    )
}

async fn replay_with_progress(
    settings: &Settings,
    from: &str,
    to: &str,
    limit: Option<usize>,
    filter: &Filter,
) -> anyhow::Result<()> {
    // Drawn only when stderr is a terminal.
    let bar = indicatif::ProgressBar::new(0);
    bar.set_style(
        indicatif::ProgressStyle::with_template("{msg} [{bar:40}] {pos}/{len} ({per_sec})")
            .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
    );
    bar.set_message(format!("{from} -> {to}"));
    let progress = |done: u64, total: u64| {
        bar.set_length(total);
        bar.set_position(done);
    };
    let moved = replay(settings, from, to, limit, filter, &progress).await;
    bar.finish_and_clear();
    let moved = moved?;
    println!("replayed {moved} message(s) from {from} to {to}");
    Ok(())
}

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

pub(super) fn entry(props: &BasicProperties, body: &[u8]) -> Entry {
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

/// Up to `limit` messages of `queue`, left in the queue.
pub async fn list(settings: &Settings, queue: &str, limit: usize) -> anyhow::Result<Vec<Entry>> {
    let conn = amqp::connect(settings, &amqp::connection_name(Some("dlq-list"))).await?;
    let channel = conn.create_channel().await?;
    depth(&channel, queue).await?;
    let mut out = Vec::new();
    while out.len() < limit {
        match channel
            .basic_get(queue.into(), BasicGetOptions { no_ack: false })
            .await?
        {
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
        let Some(m) = channel
            .basic_get(from.into(), BasicGetOptions { no_ack: false })
            .await?
        else {
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
