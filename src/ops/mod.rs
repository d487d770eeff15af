//! Operator commands behind the CLI's subcommands other than `run`: small
//! library functions, so the tests call the same code the binary does.

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
