//! The `axn-*` headers, and the worker's own history on a delivery, signed.
//!
//! The worker's history (attempts so far, first failure, a confirmed
//! call-log event) is signed with HMAC-SHA256 under a key kept in Redis, and
//! read back only when the signature matches the copy's body, so a producer
//! cannot make a message skip its retries or its publish. What else a copy
//! carries is [`forward`](super::forward)'s.

use hmac::{Hmac, Mac};
use lapin::{
    BasicProperties,
    types::{AMQPValue, FieldTable},
};
use sha2::Sha256;

/// Failed attempts so far (only trusted under a valid signature).
pub const ATTEMPTS_HEADER: &str = "axn-attempts";
/// Why the message is where it is (`transient`, a permanent reason, ...).
pub const REASON_HEADER: &str = "axn-reason";
/// The last error, numbers masked.
pub const ERROR_HEADER: &str = "axn-error";
/// The input queue the message came from.
pub const ORIGINAL_QUEUE_HEADER: &str = "axn-original-queue";
/// RFC 3339 time of the failure that sent the message where it is.
pub const FAILED_AT_HEADER: &str = "axn-failed-at";
/// RFC 3339 time of the message's first failure (kept across retries).
pub const FIRST_FAILED_AT_HEADER: &str = "axn-first-failed-at";
/// The callId whose call-log event the broker confirmed but whose dedupe
/// mark could not be written: a retry writes the mark instead of publishing.
pub const CONFIRMED_HEADER: &str = "axn-call-log-confirmed";
/// Producer headers dropped so that the copy could be forwarded.
pub const HEADERS_CUT_HEADER: &str = "axn-headers-cut";
/// HMAC-SHA256 (hex) over the history headers and the body.
pub const SIGNATURE_HEADER: &str = "axn-signature";
/// Kept by `dlq replay` across replays: the first failure ever, the
/// attempts made before the last replay (in all), how many replays.
pub const HISTORY_FIRST_FAILED_AT_HEADER: &str = "axn-history-first-failed-at";
pub const HISTORY_ATTEMPTS_HEADER: &str = "axn-history-attempts";
pub const REPLAY_COUNT_HEADER: &str = "axn-replay-count";
/// Set by `dlq replay`.
pub const REPLAYED_FROM_HEADER: &str = "axn-replayed-from";
pub const REPLAYED_AT_HEADER: &str = "axn-replayed-at";

/// The key that signs the worker's history headers: shared by every replica
/// through Redis (`Store::signing_key`).
#[derive(Clone)]
pub struct SigningKey(pub [u8; 32]);

/// What the worker itself recorded on a delivery, when a valid signature
/// proves it; the default (no history) otherwise.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct History {
    /// Transient failures so far.
    pub attempts: u32,
    pub first_failed_at: Option<String>,
    /// See [`CONFIRMED_HEADER`].
    pub confirmed_call_id: Option<String>,
}

/// The text of header `name` in `table`, when it is a string.
pub fn header_text(table: &FieldTable, name: &str) -> Option<String> {
    table.inner().get(name).and_then(text)
}

pub(super) fn text(v: &AMQPValue) -> Option<String> {
    match v {
        AMQPValue::LongString(s) => Some(String::from_utf8_lossy(s.as_bytes()).into_owned()),
        AMQPValue::ShortString(s) => Some(s.as_str().to_owned()),
        _ => None,
    }
}

fn attempts_of(v: &AMQPValue) -> Option<u32> {
    match v {
        AMQPValue::LongLongInt(n) => u32::try_from(*n).ok(),
        _ => None,
    }
}

/// The MAC of a history over `body` (the `axn-signature` is its hex).
pub(super) fn mac(
    key: &SigningKey,
    queue: &str,
    attempts: u32,
    first: &str,
    confirmed: &str,
    body: &[u8],
) -> Option<Hmac<Sha256>> {
    // HMAC takes a key of any length: this cannot fail, and is not unwrapped.
    let mut m = <Hmac<Sha256> as Mac>::new_from_slice(&key.0).ok()?;
    for part in [
        queue.as_bytes(),
        attempts.to_string().as_bytes(),
        first.as_bytes(),
    ] {
        m.update(&(part.len() as u64).to_be_bytes());
        m.update(part);
    }
    m.update(&(confirmed.len() as u64).to_be_bytes());
    m.update(confirmed.as_bytes());
    m.update(body);
    Some(m)
}

pub(super) fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn unhex(s: &str) -> Option<Vec<u8>> {
    if !s.len().is_multiple_of(2) {
        return None;
    }
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(s.get(i..i + 2)?, 16).ok())
        .collect()
}

/// The worker's history of a delivery of `queue`: trusted only when signed
/// with `key` over this very body; anything else counts as no history.
pub fn history(
    props: &BasicProperties,
    body: &[u8],
    queue: &str,
    key: Option<&SigningKey>,
) -> History {
    let (Some(key), Some(h)) = (key, props.headers().as_ref()) else {
        return History::default();
    };
    let h = h.inner();
    let Some(sig) = h
        .get(SIGNATURE_HEADER)
        .and_then(text)
        .and_then(|s| unhex(&s))
    else {
        return History::default();
    };
    let attempts = h.get(ATTEMPTS_HEADER).and_then(attempts_of).unwrap_or(0);
    let first = h.get(FIRST_FAILED_AT_HEADER).and_then(text);
    let confirmed = h.get(CONFIRMED_HEADER).and_then(text);
    let Some(m) = mac(
        key,
        queue,
        attempts,
        first.as_deref().unwrap_or(""),
        confirmed.as_deref().unwrap_or(""),
        body,
    ) else {
        return History::default();
    };
    if m.verify_slice(&sig).is_err() {
        return History::default();
    }
    History {
        attempts,
        first_failed_at: first,
        confirmed_call_id: confirmed,
    }
}
