//! Operator commands behind the CLI's subcommands other than `run`: small
//! library functions, so the tests call the same code the binary does.

/// Writes a command's output to stdout like `print!`, except that a reader
/// that went away (`axn-worker dlq list q | head`) ends the command quietly,
/// as it ends other Unix tools, instead of a panic with a backtrace.
macro_rules! out {
    ($($arg:tt)*) => { $crate::ops::write_out(format_args!($($arg)*)) };
}
/// [`out!`] with a newline, like `println!`.
macro_rules! outln {
    () => { $crate::ops::write_out(format_args!("\n")) };
    ($($arg:tt)*) => { $crate::ops::write_out(format_args!("{}\n", format_args!($($arg)*))) };
}

/// A line on stderr like `eprintln!`, but a closed stderr is no panic: the
/// line is dropped.
macro_rules! err {
    ($($arg:tt)*) => {{
        use std::io::Write as _;
        let _ = writeln!(std::io::stderr(), $($arg)*);
    }};
}

#[doc(hidden)]
pub fn write_out(args: std::fmt::Arguments<'_>) {
    use std::io::Write as _;
    let mut stdout = std::io::stdout().lock();
    if let Err(e) = stdout.write_fmt(args).and_then(|()| stdout.flush()) {
        if e.kind() == std::io::ErrorKind::BrokenPipe {
            std::process::exit(0);
        }
        eprintln!("error: cannot write the output: {e}");
        std::process::exit(1);
    }
}

pub mod asyncapi;
pub mod check_config;
pub mod definitions;
pub mod demo;
pub mod dlq;
pub mod health;
pub mod namespace;
pub mod pool;
pub mod probe;
pub mod publish;
pub mod simulate;
pub mod validate;
