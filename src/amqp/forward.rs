//! The properties of every copy the worker makes of a delivery (to a retry
//! queue, `.dlq` or `.unattributed`).
//!
//! Producers control properties and headers exactly as they control bodies,
//! so a copy carries nothing that could steer the broker or the worker:
//! - no `x-` header (the broker's own: a producer-set `x-death` naming the
//!   input queue would make the broker drop the copy as a dead-letter cycle);
//! - the worker's history, signed ([`headers`](super::headers));
//! - headers the worker cannot carry (a value nested deeper than the AMQP
//!   parser descends, or a table so large that the worker's own headers
//!   would push the copy past the broker's `frame_max`) are cut, largest
//!   first, and the cut is recorded in `axn-headers-cut`.

use amq_protocol_types::{
    AMQPValue, FieldTable, ShortString, generation::gen_field_table, parsing::NESTED_TOO_DEEP,
};
use lapin::BasicProperties;

use hmac::Mac as _;

use super::headers::*;
use crate::phone::mask_digits_in;

/// The headers the worker writes on a copy; a producer's value of any of
/// them is replaced.
const OURS: [&str; 9] = [
    ATTEMPTS_HEADER,
    REASON_HEADER,
    ERROR_HEADER,
    ORIGINAL_QUEUE_HEADER,
    FAILED_AT_HEADER,
    FIRST_FAILED_AT_HEADER,
    CONFIRMED_HEADER,
    HEADERS_CUT_HEADER,
    SIGNATURE_HEADER,
];

/// Room kept in a content-header frame for everything but the header table:
/// frame overhead (8), class, weight, body size and flags (14), six short
/// strings (6 x 256) and the fixed-size properties.
const NON_HEADER_ROOM: usize = 2048;
/// Room kept for `axn-headers-cut` itself.
const CUT_NOTE_ROOM: usize = 600;

/// Where a copy goes and why.
pub struct Forward<'a> {
    pub queue: &'a str,
    pub reason: &'a str,
    pub error: &'a str,
    /// Failed attempts, as recorded on the copy.
    pub attempts: u32,
    pub confirmed_call_id: Option<&'a str>,
}

fn encoded_len(t: &FieldTable) -> usize {
    cookie_factory::gen_simple(gen_field_table(t), Vec::new())
        .map(|v| v.len())
        .unwrap_or(usize::MAX)
}

fn holds_cut_value(v: &AMQPValue) -> bool {
    match v {
        AMQPValue::LongString(s) => s.as_bytes() == NESTED_TOO_DEEP.as_bytes(),
        AMQPValue::FieldArray(a) => a.as_slice().iter().any(holds_cut_value),
        AMQPValue::FieldTable(t) => t.inner().values().any(holds_cut_value),
        _ => false,
    }
}

/// The properties of a copy of a delivery (`orig`, `body`) of `from_queue`:
/// the producer's properties that matter downstream, persistent, the
/// producer's headers that can be carried within `frame_max`, and ours,
/// signed when there is a key. `user_id` and `expiration` are dropped on
/// purpose: the broker rejects a foreign user_id, and a dead letter must not
/// expire.
pub fn forwarded_properties(
    orig: &BasicProperties,
    body: &[u8],
    from_queue: &str,
    history: &History,
    to: &Forward<'_>,
    key: Option<&SigningKey>,
    frame_max: u32,
) -> BasicProperties {
    let now = humantime::format_rfc3339_seconds(std::time::SystemTime::now()).to_string();
    let first = history
        .first_failed_at
        .clone()
        .unwrap_or_else(|| now.clone());
    let confirmed = to.confirmed_call_id.unwrap_or("");
    let mut ours = FieldTable::default();
    let text = |s: &str| AMQPValue::LongString(s.into());
    ours.insert(
        ATTEMPTS_HEADER.into(),
        AMQPValue::LongLongInt(to.attempts.into()),
    );
    ours.insert(REASON_HEADER.into(), text(to.reason));
    ours.insert(ERROR_HEADER.into(), text(&mask_digits_in(to.error)));
    ours.insert(ORIGINAL_QUEUE_HEADER.into(), text(from_queue));
    ours.insert(FAILED_AT_HEADER.into(), text(&now));
    ours.insert(FIRST_FAILED_AT_HEADER.into(), text(&first));
    if !confirmed.is_empty() {
        ours.insert(CONFIRMED_HEADER.into(), text(confirmed));
    }
    if let Some(m) = key.and_then(|key| mac(key, from_queue, to.attempts, &first, confirmed, body))
    {
        let signature = hex(&m.finalize().into_bytes());
        ours.insert(SIGNATURE_HEADER.into(), text(&signature));
    }

    let budget = if frame_max == 0 {
        usize::MAX
    } else {
        (frame_max as usize).saturating_sub(NON_HEADER_ROOM + CUT_NOTE_ROOM)
    };
    let (kept, cut) = producer_headers(orig.headers().as_ref(), encoded_len(&ours), budget);
    let mut headers = kept;
    for (k, v) in ours.inner() {
        headers.insert(k.clone(), v.clone());
    }
    if let Some(note) = cut {
        headers.insert(HEADERS_CUT_HEADER.into(), text(&note));
    }

    let mut p = BasicProperties::default()
        .with_delivery_mode(2)
        .with_headers(headers);
    let copy = |v: &Option<ShortString>| v.clone();
    if let Some(v) = copy(orig.content_type()) {
        p = p.with_content_type(v);
    }
    if let Some(v) = copy(orig.content_encoding()) {
        p = p.with_content_encoding(v);
    }
    if let Some(v) = copy(orig.message_id()) {
        p = p.with_message_id(v);
    }
    if let Some(v) = copy(orig.correlation_id()) {
        p = p.with_correlation_id(v);
    }
    if let Some(v) = copy(orig.kind()) {
        p = p.with_type(v);
    }
    if let Some(v) = copy(orig.app_id()) {
        p = p.with_app_id(v);
    }
    if let Some(v) = *orig.timestamp() {
        p = p.with_timestamp(v);
    }
    if let Some(v) = *orig.priority() {
        p = p.with_priority(v);
    }
    p
}

/// The producer's headers a copy carries (no `x-`, none of ours, nothing cut
/// off by the parser), dropping the largest until they fit in `budget` bytes
/// beside `ours_len`; and a note of what was dropped, if anything.
fn producer_headers(
    orig: Option<&FieldTable>,
    ours_len: usize,
    budget: usize,
) -> (FieldTable, Option<String>) {
    let mut kept = FieldTable::default();
    let mut dropped: Vec<(String, usize)> = Vec::new();
    let Some(orig) = orig else {
        return (kept, None);
    };
    let mut sized = Vec::new();
    for (k, v) in orig.inner() {
        let name = k.as_str();
        if name.len() >= 2 && name[..2].eq_ignore_ascii_case("x-") || OURS.contains(&name) {
            continue;
        }
        let mut one = FieldTable::default();
        one.insert(k.clone(), v.clone());
        let len = encoded_len(&one).saturating_sub(4);
        if holds_cut_value(v) {
            dropped.push((name.to_owned(), len));
        } else {
            sized.push((k.clone(), v.clone(), len));
        }
    }
    let mut total: usize = 4 + ours_len + sized.iter().map(|(_, _, l)| l).sum::<usize>();
    if total > budget {
        // Largest first: the fewest headers lost.
        sized.sort_by_key(|e| std::cmp::Reverse(e.2));
        let mut rest = Vec::new();
        for (k, v, len) in sized {
            if total > budget {
                total -= len;
                dropped.push((k.as_str().to_owned(), len));
            } else {
                rest.push((k, v, len));
            }
        }
        sized = rest;
    }
    for (k, v, _) in sized {
        kept.insert(k, v);
    }
    if dropped.is_empty() {
        return (kept, None);
    }
    let bytes: usize = dropped.iter().map(|(_, l)| l).sum();
    let mut names = String::new();
    for (n, _) in &dropped {
        if names.len() > 400 {
            names.push_str(", ...");
            break;
        }
        if !names.is_empty() {
            names.push_str(", ");
        }
        names.extend(n.chars().take(64));
    }
    let note = format!(
        "{} producer header(s), {bytes} bytes, dropped (nested too deep, or too large to forward within frame_max): {names}",
        dropped.len()
    );
    (kept, Some(mask_digits_in(&note)))
}

#[cfg(test)]
mod tests {
    use super::*;
    use amq_protocol_types::FieldArray;

    fn forward<'a>(attempts: u32) -> Forward<'a> {
        Forward {
            queue: "q.retry.1000ms",
            reason: "transient",
            error: "redis: down 13988888888",
            attempts,
            confirmed_call_id: None,
        }
    }

    /// The first copy of a delivery with properties `orig`, unsigned.
    fn first_copy(orig: &BasicProperties) -> BasicProperties {
        forwarded_properties(
            orig,
            b"b",
            "q",
            &History::default(),
            &forward(1),
            None,
            131_072,
        )
    }

    fn get(p: &BasicProperties, k: &str) -> Option<AMQPValue> {
        p.headers().as_ref()?.inner().get(k).cloned()
    }

    #[test]
    fn history_is_trusted_only_under_the_signature_of_this_body() {
        let key = SigningKey([7; 32]);
        let orig = BasicProperties::default().with_user_id("producer".into());
        let once = forwarded_properties(
            &orig,
            b"body",
            "q",
            &History::default(),
            &forward(1),
            Some(&key),
            131_072,
        );
        assert_eq!(once.user_id(), &None);
        assert_eq!(once.delivery_mode(), &Some(2));
        assert_eq!(
            get(&once, ERROR_HEADER),
            Some(AMQPValue::LongString("redis: down 139****8888".into()))
        );
        let h = history(&once, b"body", "q", Some(&key));
        assert_eq!(h.attempts, 1);
        let first = h.first_failed_at.clone();
        assert!(first.is_some());
        // Another body, another queue, another key, or no key: no history.
        assert_eq!(
            history(&once, b"other", "q", Some(&key)),
            History::default()
        );
        assert_eq!(history(&once, b"body", "p", Some(&key)), History::default());
        assert_eq!(
            history(&once, b"body", "q", Some(&SigningKey([8; 32]))),
            History::default()
        );
        assert_eq!(history(&once, b"body", "q", None), History::default());
        // A producer raising the count breaks the signature.
        let mut forged = once.headers().clone().unwrap();
        forged.insert(ATTEMPTS_HEADER.into(), AMQPValue::LongLongInt(99));
        let forged = once.clone().with_headers(forged);
        assert_eq!(
            history(&forged, b"body", "q", Some(&key)),
            History::default()
        );
        // The first failure is kept across retries.
        let twice = forwarded_properties(&once, b"body", "q", &h, &forward(2), Some(&key), 131_072);
        let h2 = history(&twice, b"body", "q", Some(&key));
        assert_eq!((h2.attempts, h2.first_failed_at), (2, first));
    }

    #[test]
    fn copies_carry_no_x_headers_and_replace_ours() {
        let mut h = FieldTable::default();
        h.insert(
            "x-death".into(),
            AMQPValue::FieldArray(FieldArray::default()),
        );
        h.insert(
            "X-First-Death-Queue".into(),
            AMQPValue::LongString("q".into()),
        );
        h.insert(ATTEMPTS_HEADER.into(), AMQPValue::LongLongInt(50));
        h.insert("trace-id".into(), AMQPValue::LongString("abc".into()));
        let orig = BasicProperties::default().with_headers(h);
        let p = first_copy(&orig);
        let headers = p.headers().clone().unwrap();
        let names: Vec<&str> = headers.inner().keys().map(|k| k.as_str()).collect();
        assert!(
            names.iter().all(|n| !n.to_lowercase().starts_with("x-")),
            "{names:?}"
        );
        assert_eq!(get(&p, ATTEMPTS_HEADER), Some(AMQPValue::LongLongInt(1)));
        assert_eq!(
            get(&p, "trace-id"),
            Some(AMQPValue::LongString("abc".into()))
        );
        assert_eq!(get(&p, HEADERS_CUT_HEADER), None);
    }

    #[test]
    fn headers_that_cannot_be_forwarded_are_cut_and_the_cut_recorded() {
        let mut h = FieldTable::default();
        h.insert(
            "big".into(),
            AMQPValue::LongString(vec![b'a'; 129_000].into()),
        );
        h.insert("small".into(), AMQPValue::LongString("keep me".into()));
        h.insert(
            "deep".into(),
            AMQPValue::FieldArray(FieldArray::from(vec![AMQPValue::LongString(
                NESTED_TOO_DEEP.into(),
            )])),
        );
        let orig = BasicProperties::default().with_headers(h);
        let p = first_copy(&orig);
        let headers = p.headers().clone().unwrap();
        assert!(encoded_len(&headers) < 131_072 - 2048);
        assert!(!headers.contains_key("big") && !headers.contains_key("deep"));
        assert_eq!(
            get(&p, "small"),
            Some(AMQPValue::LongString("keep me".into()))
        );
        let note = match get(&p, HEADERS_CUT_HEADER) {
            Some(AMQPValue::LongString(s)) => String::from_utf8_lossy(s.as_bytes()).into_owned(),
            other => panic!("{other:?}"),
        };
        assert!(
            note.starts_with("2 producer header(s)")
                && note.contains("big")
                && note.contains("deep"),
            "{note}"
        );
    }
}
