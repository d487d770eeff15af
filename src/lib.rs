//! axn-worker keeps the AXN privacy-number platform's Redis state in step with
//! its RabbitMQ queues: XB unbind callbacks, B-number blacklist changes,
//! employee phone changes and call records come in; Redis hashes and sets are
//! updated, and call-log events go out. `../shared/design/SPEC.md` (or
//! `docs/architecture.md`) is the contract.
//!
//! # Layout
//! - [`config`]: settings (shipped `config.toml` + file + `AXN__` env), validated.
//! - [`startup`]: `Application::build` / `run_until_stopped`.
//! - [`broker`]: connection supervisor, topology, consume loop and the one
//!   function that acks, retries, parks or dead-letters ([`broker::consumer::settle`]).
//! - [`handlers`]: one file per input queue: message type, validation, effect.
//! - [`store`]: Redis keys, scripts and connection.
//! - [`http`]: `/healthz`, `/readyz`, `POST /number-mapping`.
//! - [`mapping`]: PhoneToUID / UIDToPhone (ids, codes, validation).
//! - [`phone`]: normalizing and masking numbers.

pub mod amqp;
pub mod broker;
pub mod cli;
pub mod config;
pub mod handlers;
pub mod health;
pub mod http;
pub mod mapping;
pub mod metrics;
pub mod ops;
pub mod outcome;
pub mod phone;
pub mod startup;
pub mod store;
pub mod telemetry;
