//! `axn-worker validate <queue-key> [FILE|-]`: a producer's team checks its
//! messages offline with the parser the worker runs. Each message gets
//! `accepted` or the reason the worker would dead-letter it for (the
//! `axn-reason` it would carry), with the same limits as the configured
//! queue (body size, batch length). Nothing is published, nothing connects.
//!
//! Input: one JSON document (which may span lines), or one message per line.
//! A file that is neither (not UTF-8, not JSON) is one message, reported as
//! the worker would report it.

use std::path::PathBuf;

use anyhow::Context as _;

use crate::{
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
    /// Prints one line per message; fails when any is not accepted whole.
    pub fn run(self, settings: &Settings) -> anyhow::Result<()> {
        let input = if self.file.as_os_str() == "-" {
            let mut b = Vec::new();
            std::io::Read::read_to_end(&mut std::io::stdin(), &mut b)
                .context("Failed to read standard input")?;
            b
        } else {
            std::fs::read(&self.file)
                .with_context(|| format!("Failed to read {}", self.file.display()))?
        };
        let verdicts = validate(settings, self.queue, &input);
        let rejected = verdicts
            .iter()
            .filter(|v| !v.starts_with("accepted"))
            .count();
        for (i, v) in verdicts.iter().enumerate() {
            outln!("message {}: {v}", i + 1);
        }
        anyhow::ensure!(
            rejected == 0,
            "{rejected} of {} message(s) would not be applied whole",
            verdicts.len()
        );
        Ok(())
    }
}

/// The messages of `input` (see the module) and each one's verdict.
pub fn validate(settings: &Settings, kind: QueueKind, input: &[u8]) -> Vec<String> {
    split(input)
        .into_iter()
        .map(|body| verdict(settings, kind, body))
        .collect()
}

fn split(input: &[u8]) -> Vec<&[u8]> {
    let whole = serde_json::from_slice::<serde_json::Value>(input).is_ok();
    let lines: Vec<&[u8]> = input
        .split(|b| *b == b'\n')
        .filter(|l| !l.iter().all(u8::is_ascii_whitespace))
        .collect();
    if whole || lines.len() <= 1 {
        vec![trim(input)]
    } else {
        lines.into_iter().map(trim).collect()
    }
}

fn trim(b: &[u8]) -> &[u8] {
    let start = b
        .iter()
        .position(|c| !c.is_ascii_whitespace())
        .unwrap_or(b.len());
    let end = b
        .iter()
        .rposition(|c| !c.is_ascii_whitespace())
        .map_or(start, |e| e + 1);
    &b[start..end]
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
        let v = validate(
            &s,
            QueueKind::Blacklist,
            b"{\"private_number\": \"13470110001\",\n \"action\": \"add\", \"userid\": 7, \"type\": 0}",
        );
        assert_eq!(v, ["accepted"]);
        let v = validate(
            &s,
            QueueKind::Blacklist,
            b"{\"private_number\":\"13470110001\",\"action\":\"add\",\"userid\":7,\"type\":0}\n\n{\"private_number\":\"1347011****\",\"action\":\"add\",\"userid\":7,\"type\":0}\nnot json\n",
        );
        assert_eq!(v.len(), 3, "{v:?}");
        assert_eq!(v[0], "accepted");
        assert!(v[1].starts_with("rejected: invalid_number"), "{v:?}");
        assert!(!v[1].contains("1347011"), "masked: {v:?}");
        assert!(v[2].starts_with("rejected: invalid_json"), "{v:?}");
        let v = validate(
            &s,
            QueueKind::CallRecord,
            br#"[{"subId":"s","callId":"c"},{"subId":"s"}]"#,
        );
        assert!(v[0].starts_with("partly: 1 of 2"), "{v:?}");
        assert!(v[0].contains("record 2 rejected: missing_field"), "{v:?}");
        assert!(validate(&s, QueueKind::XbUnbind, b"\xff")[0].starts_with("rejected: not_utf8"));
        assert!(validate(&s, QueueKind::XbUnbind, b"")[0].starts_with("rejected: invalid_json"));
    }
}
