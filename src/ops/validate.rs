//! `axn-worker validate <queue-key> [FILE|-]`: a producer's team checks its
//! messages offline with the parser the worker runs. Each message gets
//! `accepted` or the reason the worker would dead-letter it for (the
//! `axn-reason` it would carry), with the same limits as the configured
//! queue (body size, batch length). Nothing is published, nothing connects.
//!
//! Input: one JSON document (which may span lines), or one message per line
//! (when the first line is a JSON document by itself), each line reported by
//! its number. Anything else (not UTF-8, not JSON, an empty file) is one
//! message, reported as the worker would report those bytes; the size limit
//! applies to the bytes as given.

use std::path::PathBuf;

use anyhow::Context as _;

use crate::{
    cli::ExitStatus,
    config::{QueueKind, Settings},
    handlers::{self, Job, Limits},
    outcome::HandlerError,
    phone::mask_digits_in,
};

/// `validate` arguments.
#[derive(clap::Args)]
pub struct ValidateArgs {
    /// The input queue: xb_unbind, blacklist, phone_history or call_record.
    #[arg(value_parser = QueueKind::parse_key)]
    queue: QueueKind,
    /// File to read, or - for standard input.
    #[arg(default_value = "-")]
    file: PathBuf,
}

impl ValidateArgs {
    /// Prints one line per message; fails (exit status 1) when any is not
    /// accepted whole, and with exit status 2 when the input cannot be read,
    /// as `grep` and `diff` tell "found" from "could not look".
    pub fn run(self, settings: &Settings) -> anyhow::Result<()> {
        let read = if self.file.as_os_str() == "-" {
            let mut b = Vec::new();
            std::io::Read::read_to_end(&mut std::io::stdin(), &mut b)
                .map(|_| b)
                .context("Failed to read standard input")
        } else {
            std::fs::read(&self.file)
                .with_context(|| format!("Failed to read {}", self.file.display()))
        };
        let input = read.map_err(|e| ExitStatus {
            code: 2,
            message: format!("{e:#}"),
        })?;
        let verdicts = validate(settings, self.queue, &input);
        let rejected = verdicts
            .iter()
            .filter(|(_, v)| !v.starts_with("accepted"))
            .count();
        for (label, v) in &verdicts {
            outln!("{label}: {v}");
        }
        anyhow::ensure!(
            rejected == 0,
            "{rejected} of {} message(s) would not be applied whole",
            verdicts.len()
        );
        Ok(())
    }
}

/// The messages of `input` (see the module), each with its label
/// (`message 1`, or `line N`) and verdict.
pub fn validate(settings: &Settings, kind: QueueKind, input: &[u8]) -> Vec<(String, String)> {
    split(input)
        .into_iter()
        .map(|(label, body)| (label, verdict(settings, kind, body)))
        .collect()
}

fn split(input: &[u8]) -> Vec<(String, &[u8])> {
    let is_json = |b: &[u8]| serde_json::from_slice::<serde_json::Value>(b).is_ok();
    let blank = |l: &[u8]| l.iter().all(u8::is_ascii_whitespace);
    let lines: Vec<(usize, &[u8])> = input
        .split(|b| *b == b'\n')
        .map(|l| l.strip_suffix(b"\r").unwrap_or(l))
        .enumerate()
        .filter(|(_, l)| !blank(l))
        .collect();
    let per_line = !is_json(input) && lines.len() > 1 && is_json(lines[0].1);
    if per_line {
        lines
            .into_iter()
            .map(|(n, l)| (format!("line {}", n + 1), l))
            .collect()
    } else {
        vec![("message 1".to_owned(), input)]
    }
}

/// `accepted`, or `rejected: <reason> (<detail>)` as the worker would
/// dead-letter it; for a batch, the records it would dead-letter.
pub fn verdict(settings: &Settings, kind: QueueKind, body: &[u8]) -> String {
    let q = settings.queues.get(kind);
    let limits = Limits::of(q);
    match handlers::parse(kind, body, limits) {
        Err(e) => format!("rejected: {}", why(&e)),
        Ok(Job::CallRecords(batch)) => {
            let bad: Vec<String> = batch
                .0
                .iter()
                .enumerate()
                .filter_map(|(i, item)| {
                    item.record
                        .as_ref()
                        .err()
                        .map(|e| format!("record {} rejected: {}", i + 1, why(e)))
                })
                .collect();
            if bad.is_empty() {
                format!("accepted ({} call record(s))", batch.0.len())
            } else if bad.len() == batch.0.len() {
                format!("rejected: every record: {}", bad.join("; "))
            } else {
                format!(
                    "partly: {} of {} record(s) would be dead-lettered: {}",
                    bad.len(),
                    batch.0.len(),
                    bad.join("; ")
                )
            }
        }
        Ok(_) => "accepted".to_owned(),
    }
}

/// `<reason> (<detail>)`, numbers masked: the `axn-reason` and `axn-error`
/// a dead letter would carry.
fn why(e: &HandlerError) -> String {
    match e {
        HandlerError::Permanent { reason, detail } => {
            format!("{} ({})", reason.as_str(), mask_digits_in(detail))
        }
        HandlerError::Transient(detail) => format!("transient ({})", mask_digits_in(detail)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_document_or_one_per_line_each_with_its_verdict() {
        let s = Settings::defaults().unwrap();
        let verdicts = |kind, input: &[u8]| -> Vec<String> {
            validate(&s, kind, input)
                .into_iter()
                .map(|(label, v)| format!("{label}: {v}"))
                .collect()
        };
        let v = verdicts(
            QueueKind::Blacklist,
            b"{\"private_number\": \"13470110001\",\n \"action\": \"add\", \"userid\": 7, \"type\": 0}\n",
        );
        assert_eq!(v, ["message 1: accepted"]);
        let v = verdicts(
            QueueKind::Blacklist,
            b"{\"private_number\":\"13470110001\",\"action\":\"add\",\"userid\":7,\"type\":0}\r\n\n{\"private_number\":\"1347011****\",\"action\":\"add\",\"userid\":7,\"type\":0}\nnot json\n",
        );
        assert_eq!(v.len(), 3, "{v:?}");
        assert_eq!(v[0], "line 1: accepted");
        assert!(
            v[1].starts_with("line 3: rejected: invalid_number"),
            "{v:?}"
        );
        assert!(!v[1].contains("1347011"), "masked: {v:?}");
        assert!(v[2].starts_with("line 4: rejected: invalid_json"), "{v:?}");
        // A pretty-printed document with an error is one message, with the
        // parser's own position of the error.
        let v = verdicts(
            QueueKind::XbUnbind,
            b"{\n  \"subId\": \"1\"\n  \"telX\": \"17111526089\"\n}\n",
        );
        assert_eq!(v.len(), 1, "{v:?}");
        assert!(v[0].contains("line 3"), "{v:?}");
        let v = verdicts(
            QueueKind::CallRecord,
            br#"[{"subId":"s","callId":"c"},{"subId":"s"}]"#,
        );
        assert!(v[0].starts_with("message 1: partly: 1 of 2"), "{v:?}");
        assert!(v[0].contains("record 2 rejected: missing_field"), "{v:?}");
        let v = verdicts(QueueKind::CallRecord, br#"[{"subId":"s"}]"#);
        assert!(
            v[0].starts_with("message 1: rejected: every record: record 1 rejected: missing_field"),
            "{v:?}"
        );
        assert!(verdicts(QueueKind::XbUnbind, b"\xff")[0].contains("rejected: not_utf8"));
        assert!(verdicts(QueueKind::XbUnbind, b"")[0].contains("rejected: invalid_json"));
        // The size limit applies to the bytes as given.
        let mut big = vec![b' '; 64 * 1024];
        big.extend_from_slice(br#"{"subId":"1","telX":"17111526089"}"#);
        assert!(verdicts(QueueKind::XbUnbind, &big)[0].contains("rejected: body_too_large"));
    }
}
