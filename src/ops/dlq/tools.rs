//! What `dlq list` and `dlq purge` add to reading a dead-letter queue: a
//! filter (reason, message id, time of the last failure), a summary by
//! reason (count, first and last failure), and purging what a filter selects,
//! only when confirmed.
//!
//! Both walk the whole queue (up to [`SCAN_MAX`] messages) with unacked
//! `basic.get`s and close their channel at the end, so every message they do
//! not delete goes back to the queue, in order.

use std::collections::BTreeMap;

use lapin::options::BasicAckOptions;

use super::{Entry, depth, entry};
use crate::{amqp, config::Settings};

/// The most messages one listing or purge reads.
pub const SCAN_MAX: usize = 100_000;

/// Which dead letters a command applies to; empty: all.
#[derive(clap::Args, Debug, Clone, Default)]
pub struct Filter {
    /// Only this reason (the axn-reason header: invalid_json, retries_exhausted, ...).
    #[arg(long)]
    pub reason: Option<String>,
    /// Only the message with this message id.
    #[arg(long)]
    pub message_id: Option<String>,
    /// Only messages whose last failure is at or after this time: RFC 3339
    /// with a zone (2026-12-03T09:28:00Z, 2026-12-03T17:28:00+08:00).
    #[arg(long, value_parser = rfc3339)]
    pub since: Option<String>,
    /// Only messages whose last failure is before this time (RFC 3339 with a
    /// zone, as --since).
    #[arg(long, value_parser = rfc3339)]
    pub until: Option<String>,
}

/// An RFC 3339 time with its zone (`Z` or `±HH:MM`), as UTC text to compare
/// with the `axn-failed-at` headers. A time without a zone is refused: read
/// as UTC it would be eight hours off for an operator in Beijing.
fn rfc3339(s: &str) -> Result<String, String> {
    let wanted = || {
        format!(
            "{s:?} is not an RFC 3339 time with a zone, like 2026-12-03T09:28:00Z or 2026-12-03T17:28:00+08:00"
        )
    };
    let t = s.trim();
    let (local, offset_secs) = if let Some(local) = t.strip_suffix(['Z', 'z']) {
        (local, 0i64)
    } else {
        // The zone is the last 6 characters: +08:00 / -05:30.
        let split = t
            .len()
            .checked_sub(6)
            .filter(|i| t.is_char_boundary(*i))
            .ok_or_else(wanted)?;
        let (local, zone) = t.split_at(split);
        let sign = match zone.as_bytes()[0] {
            b'+' => 1,
            b'-' => -1,
            _ => return Err(wanted()),
        };
        let (h, m) = zone[1..].split_once(':').ok_or_else(wanted)?;
        let (h, m): (i64, i64) = (
            h.parse().map_err(|_| wanted())?,
            m.parse().map_err(|_| wanted())?,
        );
        if h > 23 || m > 59 {
            return Err(wanted());
        }
        (local, sign * (h * 3600 + m * 60))
    };
    let at = humantime::parse_rfc3339(&format!("{local}Z"))
        .map_err(|e| format!("{} ({e})", wanted()))?;
    let shift = std::time::Duration::from_secs(offset_secs.unsigned_abs());
    let utc = if offset_secs >= 0 {
        at.checked_sub(shift)
    } else {
        at.checked_add(shift)
    }
    .ok_or_else(wanted)?;
    Ok(humantime::format_rfc3339_seconds(utc).to_string())
}

impl Filter {
    pub fn matches(&self, e: &Entry) -> bool {
        let at = e.failed_at.as_deref().unwrap_or("");
        self.reason
            .as_ref()
            .is_none_or(|r| e.reason.as_ref() == Some(r))
            && self
                .message_id
                .as_ref()
                .is_none_or(|m| e.message_id.as_ref() == Some(m))
            && self.since.as_deref().is_none_or(|s| at >= s)
            && self.until.as_deref().is_none_or(|u| at < u)
    }
}

/// Count, first and last failure of the dead letters of one reason.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct ReasonSummary {
    pub count: usize,
    pub first: String,
    pub last: String,
}

/// The summary by reason of `entries`.
pub fn summarize(entries: &[Entry]) -> BTreeMap<String, ReasonSummary> {
    let mut out: BTreeMap<String, ReasonSummary> = BTreeMap::new();
    for e in entries {
        let s = out
            .entry(e.reason.clone().unwrap_or_else(|| "-".into()))
            .or_default();
        let at = e.failed_at.clone().unwrap_or_default();
        s.count += 1;
        if s.first.is_empty() || at < s.first {
            s.first = at.clone();
        }
        if at > s.last {
            s.last = at;
        }
    }
    out
}

/// Every dead letter of `queue` (up to [`SCAN_MAX`]), left in the queue.
pub async fn scan(settings: &Settings, queue: &str) -> anyhow::Result<Vec<Entry>> {
    walk(settings, queue, &Filter::default(), false).await
}

/// Deletes the dead letters of `queue` that `filter` selects; returns them.
pub async fn purge(
    settings: &Settings,
    queue: &str,
    filter: &Filter,
) -> anyhow::Result<Vec<Entry>> {
    walk(settings, queue, filter, true).await
}

/// Writes the raw bodies of the dead letters `filter` selects to `file`
/// (created new), one compact JSON document per line; the messages stay.
/// Returns (written, left out because not JSON).
pub async fn export(
    settings: &Settings,
    queue: &str,
    filter: &Filter,
    file: &std::path::Path,
) -> anyhow::Result<(usize, usize)> {
    use std::io::Write as _;
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    // The file holds phone numbers in full: readable by its owner only,
    // whatever the umask.
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    let mut out = options
        .open(file)
        .map_err(|e| anyhow::anyhow!("cannot create {}: {e}", file.display()))?;
    let conn = amqp::connect(settings, &amqp::connection_name(Some("dlq-export"))).await?;
    let channel = conn.create_channel().await?;
    depth(&channel, queue).await?;
    let (mut written, mut skipped) = (0, 0);
    // Until the queue is empty rather than up to the count read at the
    // start, which misses a message another reader held at that moment.
    // Nothing read comes back while the channel is open.
    for _ in 0..SCAN_MAX {
        let Some(m) = super::next(&channel, queue).await? else {
            break;
        };
        if !filter.matches(&entry(&m.delivery.properties, &m.delivery.data)) {
            continue;
        }
        match serde_json::from_slice::<serde_json::Value>(&m.delivery.data) {
            Ok(v) => {
                writeln!(out, "{v}")?;
                written += 1;
            }
            Err(_) => skipped += 1,
        }
    }
    let _ = channel.close(200, "exported".into()).await;
    let _ = conn.close(200, "exported".into()).await;
    Ok((written, skipped))
}

/// Reads the queue; with `delete`, acks (deletes) what `filter` selects and
/// returns those, else returns everything it read.
async fn walk(
    settings: &Settings,
    queue: &str,
    filter: &Filter,
    delete: bool,
) -> anyhow::Result<Vec<Entry>> {
    let conn = amqp::connect(settings, &amqp::connection_name(Some("dlq"))).await?;
    let channel = conn.create_channel().await?;
    depth(&channel, queue).await?;
    let mut out = Vec::new();
    // Until the queue is empty (see `export`).
    for _ in 0..SCAN_MAX {
        let Some(m) = super::next(&channel, queue).await? else {
            break;
        };
        let e = entry(&m.delivery.properties, &m.delivery.data);
        if delete {
            if filter.matches(&e) {
                if !m.delivery.acker.ack(BasicAckOptions::default()).await? {
                    anyhow::bail!(
                        "the channel closed before the delete was confirmed; nothing more was deleted"
                    );
                }
                out.push(e);
            }
        } else {
            out.push(e);
        }
    }
    // Closing the channel returns every message not deleted, in order.
    let _ = channel.close(200, "dlq done".into()).await;
    let _ = conn.close(200, "dlq done".into()).await;
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn e(reason: &str, at: &str, id: Option<&str>) -> Entry {
        Entry {
            reason: Some(reason.into()),
            failed_at: Some(at.into()),
            message_id: id.map(str::to_owned),
            ..Default::default()
        }
    }

    #[test]
    fn filters_and_summaries() {
        let all = [
            e("invalid_json", "2026-11-25T08:00:00Z", Some("m1")),
            e("invalid_json", "2026-11-25T07:00:00Z", None),
            e("retries_exhausted", "2026-11-25T09:00:00Z", Some("m3")),
        ];
        let s = summarize(&all);
        assert_eq!(s["invalid_json"].count, 2);
        assert_eq!(s["invalid_json"].first, "2026-11-25T07:00:00Z");
        assert_eq!(s["invalid_json"].last, "2026-11-25T08:00:00Z");
        let f = Filter {
            reason: Some("invalid_json".into()),
            since: Some(rfc3339("2026-11-25T07:30:00Z").unwrap()),
            ..Default::default()
        };
        assert_eq!(all.iter().filter(|x| f.matches(x)).count(), 1);
        let by_id = Filter {
            message_id: Some("m3".into()),
            ..Default::default()
        };
        assert!(by_id.matches(&all[2]) && !by_id.matches(&all[0]));
        assert!(rfc3339("yesterday").is_err());
        assert_eq!(
            rfc3339("2026-12-03T17:28:00+08:00").unwrap(),
            "2026-12-03T09:28:00Z"
        );
        assert_eq!(
            rfc3339("2026-12-03T09:28:00Z").unwrap(),
            "2026-12-03T09:28:00Z"
        );
        assert_eq!(
            rfc3339("2026-12-03T04:28:00-05:00").unwrap(),
            "2026-12-03T09:28:00Z"
        );
        assert_eq!(
            rfc3339("2026-12-03T09:28:00.5+00:00").unwrap(),
            "2026-12-03T09:28:00Z"
        );
        for zoneless in [
            "2026-12-03T17:28:00",
            "2026-12-03 17:28:00",
            "2026-12-03T17:28:00+0800",
            "2026-12-03T17:28:00+25:00",
        ] {
            assert!(
                rfc3339(zoneless).unwrap_err().contains("with a zone"),
                "{zoneless}"
            );
        }
    }
}
