//! The `axn-worker` binary: the command line (`axn_worker::cli`) and the
//! exit status. Errors print their whole cause chain on one line, without a
//! backtrace, for operators.

use clap::Parser as _;

fn main() -> std::process::ExitCode {
    match axn_worker::cli::run(axn_worker::cli::Cli::parse()) {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            std::process::ExitCode::from(axn_worker::cli::exit_code(&e))
        }
    }
}
