//! Redis: the connection and every operation the handlers need.
//!
//! On a single Redis (`[redis] url = "redis://..."`) each multi-key update is
//! one Lua script: atomic, and re-applied harmlessly on redelivery. On a Redis
//! Cluster (`url = [node URLs]`) the keys of one update live in different
//! slots, so the same update runs as a fixed order of single-key steps, each
//! idempotent, with the step that marks it done last: a redelivery after a
//! partial run completes it (the contract's rule for keys that cannot be
//! updated atomically). Single-key operations are the same in both modes.

//!
//! One file per what the operations are about: the connection (`conn`),
//! XB bindings and call claims (`xb`), an employee's profile (blacklist and
//! phones, `profile`), the number map (`number_map`); every key name is
//! built in `keys`.

mod conn;
mod keys;
mod number_map;
pub mod platform;
mod profile;
mod sentinel;
mod xb;

use std::sync::Arc;

pub use conn::{Conn, TLS_RECHECK, client};
pub use keys::Keys;
pub use xb::{Claim, UnbindResult};

use crate::amqp::headers::SigningKey;

/// The worker's Redis: cheap to clone.
#[derive(Clone)]
pub struct Store {
    backend: Arc<conn::Swappable>,
    keys: Keys,
    /// Writes acknowledged by replicas (`WAIT`), shared by concurrent messages.
    replicas: Arc<conn::ReplicaWait>,
    /// The header-signing key, once read from Redis (it never changes).
    signing_key: Arc<std::sync::OnceLock<SigningKey>>,
    /// When the next XB unbind prunes the unbound bindings.
    prune: Arc<xb::PruneClock>,
}
