//! Logging through `tracing`: human-readable by default, JSON lines with
//! `[log] format = "json"`. `RUST_LOG` overrides `[log] level`.
//!
//! Every line passes through [`crate::phone::mask_digits_in`] on its way to
//! stderr, whatever wrote it (the worker, a dependency, a field holding
//! input): a number the input put anywhere (an id field, a `Mode`, with
//! dashes or spaces) never reaches a log in full.

use std::{
    io::{self, Write},
    sync::atomic::{AtomicBool, Ordering},
};

use tracing_subscriber::{EnvFilter, fmt, fmt::MakeWriter};

use crate::config::{LogFormat, LogSettings};

/// Installs the global subscriber; a second call (tests) is a no-op.
pub fn init(settings: &LogSettings) {
    let filter = EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| EnvFilter::new(default_filter(&settings.level)));
    // Colours only on a terminal: not in files or journald.
    let ansi = std::io::IsTerminal::is_terminal(&io::stderr());
    // No internal-error report: tracing-subscriber prints it with
    // eprintln!, which panics once stderr is gone.
    let builder = fmt()
        .with_env_filter(filter)
        .with_writer(Masking)
        .with_ansi(ansi)
        .log_internal_errors(false);
    let _ = match settings.format {
        LogFormat::Text => builder.try_init(),
        LogFormat::Json => builder
            .json()
            .flatten_event(true)
            .with_current_span(true)
            .try_init(),
    };
}

/// `[log] level` as a filter: lapin's own lines off unless it names lapin
/// (the worker reports every broker change itself, once; lapin repeats each
/// failed connect three times at ERROR, "attempts exhausted" included, while
/// the worker goes on retrying).
fn default_filter(level: &str) -> String {
    if level.contains("lapin") {
        level.to_owned()
    } else {
        format!("{level},lapin=off")
    }
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
///
/// Writing a log line never fails and never panics: when stderr is gone
/// (`run 2>&1 | head`, a closed journal pipe) the line is dropped, the loss
/// is reported once on stdout, and the worker goes on: a lost log sink must
/// not stop message processing or a shutdown.
pub struct MaskingStderr;

/// Set once a log line could not be written.
static SINK_LOST: AtomicBool = AtomicBool::new(false);

impl Write for MaskingStderr {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let line = String::from_utf8_lossy(buf);
        if let Err(e) = io::stderr().write_all(crate::phone::mask_digits_in(&line).as_bytes()) {
            sink_lost(&e);
        }
        Ok(buf.len())
    }
    fn flush(&mut self) -> io::Result<()> {
        if let Err(e) = io::stderr().flush() {
            sink_lost(&e);
        }
        Ok(())
    }
}

/// Reports a lost log sink once, where it still can (stdout), ignoring any
/// failure of that too.
fn sink_lost(e: &io::Error) {
    if !SINK_LOST.swap(true, Ordering::Relaxed) {
        let _ = writeln!(
            io::stdout(),
            "axn-worker: log lines can no longer be written to stderr ({e}); they are dropped, the worker goes on"
        );
    }
}
