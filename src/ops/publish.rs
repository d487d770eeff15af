//! `axn-worker publish <queue-key> [FILE|-]`: publishes JSON messages to an
//! input queue, publisher-confirmed, for smoke tests and manual fixes.
//!
//! Input is either one JSON document (which may span lines) or one JSON
//! document per line. Every message is checked before anything is sent, with
//! the worker's own parser and limits (as `validate` does): one it would
//! dead-letter is refused, and nothing of the file is published, unless
//! `--force` (to exercise the dead-letter path on purpose).

use std::path::{Path, PathBuf};

use anyhow::{Context as _, bail};
use lapin::BasicProperties;

use crate::{
    amqp::{self, publisher::Publisher},
    config::{QueueKind, Settings},
};

/// `publish` arguments.
#[derive(clap::Args)]
pub struct PublishArgs {
    /// The input queue: xb_unbind, blacklist, phone_history or call_record.
    #[arg(value_parser = QueueKind::parse_key)]
    queue: QueueKind,
    /// File to read, or - for standard input.
    #[arg(default_value = "-")]
    file: PathBuf,
    /// Publish messages the worker would dead-letter, too (to try the
    /// dead-letter path).
    #[arg(long)]
    force: bool,
}

impl PublishArgs {
    pub async fn run(self, settings: &Settings) -> anyhow::Result<()> {
        let input = read_input(&self.file)?;
        let messages = messages(&input)?;
        let refused: Vec<String> = messages
            .iter()
            .enumerate()
            .map(|(i, m)| {
                (
                    i,
                    super::validate::verdict(settings, self.queue, m.as_bytes()),
                )
            })
            .filter(|(_, v)| !v.starts_with("accepted"))
            .map(|(i, v)| format!("message {}: {v}", i + 1))
            .collect();
        if !refused.is_empty() && !self.force {
            bail!(
                "the worker would dead-letter {} of {} message(s); nothing was published (--force publishes them anyway):\n  {}",
                refused.len(),
                messages.len(),
                refused.join("\n  ")
            );
        }
        let n = publish(settings, self.queue, &input).await?;
        outln!(
            "published {n} message(s) to {} (confirmed)",
            settings.queues.get(self.queue).name
        );
        Ok(())
    }
}

/// The whole of `file`, or of standard input for `-`.
pub fn read_input(file: &Path) -> anyhow::Result<String> {
    use std::io::Read as _;
    let mut input = String::new();
    if file.as_os_str() == "-" {
        std::io::stdin()
            .read_to_string(&mut input)
            .context("Failed to read standard input")?;
    } else {
        input = std::fs::read_to_string(file)
            .with_context(|| format!("Failed to read {}", file.display()))?;
    }
    Ok(input)
}

/// Splits `input` into messages: the whole of it if it is one JSON
/// document, else each non-blank line, each of which must be JSON.
pub fn messages(input: &str) -> anyhow::Result<Vec<String>> {
    if input.trim().is_empty() {
        bail!("no message in the input");
    }
    if serde_json::from_str::<serde_json::Value>(input).is_ok() {
        return Ok(vec![input.trim().to_owned()]);
    }
    let mut out = Vec::new();
    for (n, line) in input.lines().enumerate() {
        if line.trim().is_empty() {
            continue;
        }
        serde_json::from_str::<serde_json::Value>(line)
            .with_context(|| format!("line {} is not JSON; nothing was published", n + 1))?;
        out.push(line.trim().to_owned());
    }
    Ok(out)
}

/// Publishes every message of `input` to the queue `kind` (persistent,
/// `application/json`), waiting for each confirm. Returns how many went.
pub async fn publish(settings: &Settings, kind: QueueKind, input: &str) -> anyhow::Result<usize> {
    let messages = messages(input)?;
    let queue = &settings.queues.get(kind).name;
    let name = amqp::connection_name(Some("publish"));
    let conn = amqp::connect(settings, &name).await?;
    let publisher = Publisher::new(conn.create_channel().await?).await?;
    for (i, body) in messages.iter().enumerate() {
        let props = BasicProperties::default()
            .with_delivery_mode(2)
            .with_content_type("application/json".into())
            .with_app_id("axn-worker publish".into());
        publisher
            .publish("", queue, body.as_bytes(), props)
            .await
            .with_context(|| {
                format!(
                    "message {} of {} was not confirmed by the broker",
                    i + 1,
                    messages.len()
                )
            })?;
    }
    let _ = conn.close(200, "published".into()).await;
    Ok(messages.len())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_document_or_one_per_line() {
        assert_eq!(messages("{\n \"a\": 1\n}\n").unwrap().len(), 1);
        assert_eq!(
            messages("{\"a\":1}\n\n{\"a\":2}\n").unwrap(),
            ["{\"a\":1}", "{\"a\":2}"]
        );
        let err = messages("{\"a\":1}\nnot json\n").unwrap_err().to_string();
        assert!(err.contains("line 2"), "{err}");
        assert!(messages("  \n").is_err());
    }
}
