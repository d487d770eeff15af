//! Logging through `tracing`: human-readable by default, JSON lines with
//! `[log] format = "json"`. `RUST_LOG` overrides `[log] level`.
//!
//! Every line passes through [`crate::phone::mask_digits_in`] on its way to
//! stderr, whatever wrote it (the worker, a dependency, a field holding
//! input): a number the input put anywhere (an id field, a `Mode`, with
//! dashes or spaces) never reaches a log in full.

use std::io::{self, Write};

use tracing_subscriber::{EnvFilter, fmt, fmt::MakeWriter};

use crate::config::{LogFormat, LogSettings};

/// Installs the global subscriber; a second call (tests) is a no-op.
pub fn init(settings: &LogSettings) {
    let filter =
        EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(&settings.level));
    // Colours only on a terminal: not in files or journald.
    let ansi = std::io::IsTerminal::is_terminal(&io::stderr());
    let builder = fmt()
        .with_env_filter(filter)
        .with_writer(Masking)
        .with_ansi(ansi);
    let _ = match settings.format {
        LogFormat::Text => builder.try_init(),
        LogFormat::Json => builder
            .json()
            .flatten_event(true)
            .with_current_span(true)
            .try_init(),
    };
}

/// Makes a [`MaskingStderr`] per log line.
pub struct Masking;

impl<'a> MakeWriter<'a> for Masking {
    type Writer = MaskingStderr;
    fn make_writer(&'a self) -> Self::Writer {
        MaskingStderr
    }
}

/// Stderr, with numbers masked. The formatter writes one whole line per
/// `write` call, so a number is never split between two calls.
pub struct MaskingStderr;

impl Write for MaskingStderr {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let line = String::from_utf8_lossy(buf);
        io::stderr().write_all(crate::phone::mask_digits_in(&line).as_bytes())?;
        Ok(buf.len())
    }
    fn flush(&mut self) -> io::Result<()> {
        io::stderr().flush()
    }
}
