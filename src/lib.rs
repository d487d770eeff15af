//! axn-worker keeps the AXN privacy-number platform's Redis state in step with
//! its RabbitMQ queues: XB unbind callbacks, B-number blacklist changes,
//! employee phone changes and call records come in; Redis hashes and sets are
//! updated, and call-log events go out. `docs/architecture.md` explains how
//! it keeps its contract.
//!
//! # Layout (docs/architecture.md has the whole map)
//! - [`cli`]: the command tree; [`startup`]: `Application`, `run_until_signal`.
//! - [`config`]: settings (shipped `config.toml` + file + `AXN__` env), validated.
//! - [`outcome`]: the failure vocabulary every layer shares.
//! - [`amqp`]: connection, topology, confirmed publisher, the headers of copies.
//! - [`broker`]: connection supervisor, consume loop, and the one function
//!   that acks, retries, parks or dead-letters ([`broker::settle::settle`]).
//! - [`handlers`]: one file per input queue: message type, validation, effect.
//! - [`store`]: Redis keys, scripts and connection, by subject.
//! - [`http`]: `/healthz`, `/readyz`, `/metrics`, `POST /number-mapping`.
//! - [`platform`]: the binding API (the seed's middle platform).
//! - [`mapping`]: PhoneToUID / UIDToPhone (ids, codes, validation).
//! - [`phone`]: normalizing and masking numbers; [`telemetry`]: logging.
//! - [`ops`]: operator commands.

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
pub mod patterns;
pub mod phone;
pub mod platform;
pub mod startup;
pub mod store;
pub mod telemetry;
pub mod tls;
