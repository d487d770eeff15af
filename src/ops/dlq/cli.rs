//! The `dlq` and `parked` commands: arguments, output, and the guards
//! (confirmation, permanent failures) around the library functions.

use super::{
    Entry, list, replay,
    tools::{self, Filter},
};
use crate::config::{QueueKind, Settings};

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
    /// Write the dead letters the filter selects to FILE, one JSON body per
    /// line, raw (numbers in full): `publish <queue-key> FILE` sends them
    /// back after editing. Needs --unmasked and `[operations]
    /// allow_unmasked_export`; each export is logged (queue, count). The
    /// messages stay in the dead-letter queue.
    Export {
        /// xb_unbind, blacklist, phone_history or call_record.
        #[arg(value_parser = QueueKind::parse_key)]
        queue: QueueKind,
        /// The file to write (created, not overwritten).
        file: std::path::PathBuf,
        /// Acknowledge that the file holds phone numbers in full.
        #[arg(long)]
        unmasked: bool,
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

/// `retries` subcommands.
#[derive(clap::Subcommand)]
pub enum RetriesCommand {
    /// What waits in the queue's retry queues: per retry queue the count,
    /// then each message's reason, error, attempts and when it is due back.
    List {
        /// xb_unbind, blacklist, phone_history or call_record.
        #[arg(value_parser = QueueKind::parse_key)]
        queue: QueueKind,
        #[command(flatten)]
        limit: Limit,
    },
}

impl RetriesCommand {
    pub async fn run(self, settings: &Settings) -> anyhow::Result<()> {
        let RetriesCommand::List { queue, limit } = self;
        let q = settings.queues.get(queue);
        let mut delays = q.retry_delays_ms.clone();
        delays.sort_unstable();
        delays.dedup();
        for delay in delays {
            let name = q.retry_queue_name(delay);
            let waiting = tools::scan(settings, &name).await?;
            outln!(
                "{name}: {} message(s), each back after {delay} ms",
                waiting.len()
            );
            for e in waiting.iter().take(limit.limit) {
                let due = e
                    .failed_at
                    .as_deref()
                    .and_then(|t| humantime::parse_rfc3339(t).ok())
                    .map(|t| {
                        humantime::format_rfc3339_seconds(
                            t + std::time::Duration::from_millis(delay),
                        )
                        .to_string()
                    })
                    .unwrap_or_else(|| "-".into());
                outln!(
                    "  due {due}  attempts {}  {}: {}",
                    e.attempts.as_deref().unwrap_or("-"),
                    e.reason.as_deref().unwrap_or("-"),
                    e.error.as_deref().unwrap_or("-")
                );
            }
        }
        Ok(())
    }
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
            DlqCommand::Export {
                queue,
                file,
                unmasked,
                filter,
            } => {
                anyhow::ensure!(
                    unmasked,
                    "an export holds phone numbers in full: say --unmasked"
                );
                anyhow::ensure!(
                    settings.operations.allow_unmasked_export,
                    "unmasked export is off: set [operations] allow_unmasked_export = true (or AXN__OPERATIONS__ALLOW_UNMASKED_EXPORT=true) where it is allowed"
                );
                let dlq = settings.queues.get(queue).dlq_name();
                let (written, skipped) = tools::export(settings, &dlq, &filter, &file).await?;
                tracing::warn!(
                    audit = "dlq-export-unmasked",
                    queue = %dlq,
                    count = written,
                    file = %file.display(),
                    "dead letters exported unmasked"
                );
                outln!(
                    "wrote {written} message(s) of {dlq} to {}{}",
                    file.display(),
                    if skipped > 0 {
                        format!(" ({skipped} not JSON, left out: `publish` could not send them)")
                    } else {
                        String::new()
                    }
                );
                Ok(())
            }
            DlqCommand::Purge { queue, filter, yes } => {
                let dlq = settings.queues.get(queue).dlq_name();
                if !yes {
                    // The preview the help promises: what --yes would delete.
                    let all = tools::scan(settings, &dlq).await?;
                    let selected: Vec<Entry> =
                        all.iter().filter(|e| filter.matches(e)).cloned().collect();
                    outln!(
                        "would delete {} of the {} message(s) in {dlq}{}; nothing deleted: run again with --yes to delete them",
                        selected.len(),
                        all.len(),
                        by_reason(&selected)
                    );
                    return Ok(());
                }
                let gone = tools::purge(settings, &dlq, &filter).await?;
                outln!("deleted {} message(s) from {dlq}", gone.len());
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
                let all = tools::scan(settings, &q.dlq_name()).await?;
                let selected: Vec<&Entry> = all.iter().filter(|e| filter.matches(e)).collect();
                let permanent = tools::summarize(
                    &selected
                        .iter()
                        .filter(|e| e.reason.as_deref().is_some_and(is_permanent))
                        .map(|e| (*e).clone())
                        .collect::<Vec<_>>(),
                );
                let permanent_n = permanent.values().map(|s| s.count).sum::<usize>();
                if selected.is_empty() {
                    outln!(
                        "0 of the {} message(s) in {} match: nothing to replay",
                        all.len(),
                        q.dlq_name()
                    );
                    return Ok(());
                }
                if dry_run {
                    // What the same command without --dry-run does.
                    if permanent_n > 0 && !include_permanent {
                        outln!(
                            "would replay nothing: {permanent_n} of the {} selected dead letter(s) failed permanently{}; the run refuses them without --include-permanent (or select with --reason retries_exhausted)",
                            selected.len(),
                            by_reason(&selected.iter().map(|e| (*e).clone()).collect::<Vec<_>>())
                        );
                    } else {
                        outln!(
                            "would replay {} of the {} message(s) in {} to {} (of which permanent failures: {permanent_n})",
                            limit
                                .limit
                                .map_or(selected.len(), |l| l.min(selected.len())),
                            all.len(),
                            q.dlq_name(),
                            q.name,
                        );
                    }
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
    let all = tools::scan(settings, queue).await?;
    outln!("{queue}: {} message(s)", all.len());
    for (reason, s) in tools::summarize(&all) {
        outln!(
            "  {reason}: {} (first {}, last {})",
            s.count,
            s.first,
            s.last
        );
    }
    let selected: Vec<&Entry> = all.iter().filter(|e| filter.matches(e)).collect();
    for (i, e) in selected.iter().take(limit).enumerate() {
        outln!("--- {queue} #{}\n{e}", i + 1);
    }
    if selected.len() > limit {
        outln!("... {} more (-n to show more)", selected.len() - limit);
    }
    Ok(())
}

async fn print_list(settings: &Settings, queue: &str, limit: usize) -> anyhow::Result<()> {
    let entries = list(settings, queue, limit).await?;
    if entries.is_empty() {
        outln!("{queue} is empty");
    }
    for (i, e) in entries.iter().enumerate() {
        outln!("--- {queue} #{}\n{e}", i + 1);
    }
    Ok(())
}

/// A reason retrying cannot fix by itself.
/// ` (by reason: invalid_json 3, retries_exhausted 1)`, or nothing.
fn by_reason(entries: &[Entry]) -> String {
    let s = tools::summarize(entries);
    if s.is_empty() {
        return String::new();
    }
    let parts: Vec<String> = s.iter().map(|(r, x)| format!("{r} {}", x.count)).collect();
    format!(" (by reason: {})", parts.join(", "))
}

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
    outln!("replayed {moved} message(s) from {from} to {to}");
    Ok(())
}
