//! The JSON Schema of each input message: what the parsers next to it accept,
//! written down for the teams that publish (docs/asyncapi.yaml carries them).
//! Kept in step with the parsers by tests: the seed's examples and every
//! message the parsers accept pass; every shape the parsers dead-letter
//! fails (src/handlers/proptests.rs checks both over generated messages).
//!
//! What the parsers allow and a schema must say:
//! - field names match case-insensitively and ignore trailing `:` (the
//!   seed's `operatorUser:`): a `patternProperties` entry per field, and
//!   "present" as "some property name matches" (`not`/`propertyNames`);
//! - numbers may be JSON integers or numeric strings;
//! - phone numbers are full (no `*`), 5-20 digits with spaces or dashes
//!   anywhere, or a mainland mobile after `+86`;
//! - a call record may come alone or in a batch (a JSON array).
//!
//! - whitespace is what `str::trim` removes, named character by character
//!   (`\s` differs between regex dialects);
//! - a whole-number float (`3.0`, `1e3`) is an integer, as JSON Schema says;
//! - lengths count characters, as JSON Schema's `maxLength` does.
//!
//! What no JSON Schema can say, the AsyncAPI document states in words: the
//! body's size (`max_body_bytes`); that it is JSON the parser reads at all
//! (UTF-8, no lone surrogate escape such as `\ud800`, nesting at most 128
//! deep: else `invalid_json`); and that a field given in two spellings
//! (`userId` and `userid`) with different values is refused
//! (`invalid_field`), while the schema checks each spelling on its own.

use serde_json::{Map, Value, json};

use crate::config::QueueKind;
use crate::patterns::{WS_CHARS, range_regex, ws};

/// The seed's example of each input message (the call record's: the form
/// carriers send, and Aliyun's SecretReport form).
pub fn examples(kind: QueueKind) -> Vec<(&'static str, Value)> {
    match kind {
        QueueKind::XbUnbind => vec![(
            "seed",
            json!({"platId": 3, "telA": "1347011****", "telX": "17111526089", "telB": "1370005****", "subId": "1000039976446302"}),
        )],
        QueueKind::Blacklist => vec![(
            "seed",
            json!({"platId": 3, "private_number": "13470110001", "action": "add", "userid": "74705", "type": 0}),
        )],
        QueueKind::PhoneHistory => vec![(
            "seed",
            json!({"userId": "74705", "newPhone": "13812345678", "oldPhone": "13998765432", "operatorUser:": "51218"}),
        )],
        QueueKind::CallRecord => vec![
            (
                "carrier",
                json!({"subId": "1000039976446302", "callId": "d3f1c2a0-0001", "platId": 3, "callType": 0, "startTime": "2026-11-23 10:00:00", "releaseTime": "2026-11-23 10:03:12"}),
            ),
            (
                "aliyunSecretReport",
                json!([{"sub_id": 1000039976446302u64, "call_id": "ab12", "phone_no": "13800000000", "secret_no": "17000000000", "peer_no": "13900000000", "call_type": 0, "start_time": "2026-11-23 10:00:00", "release_time": "2026-11-23 10:03:12"}]),
            ),
        ],
    }
}

/// The JSON Schema of a message of `kind` (`max_batch_records`: the most
/// records one call-record array may hold).
pub fn message(kind: QueueKind, max_batch_records: usize) -> Value {
    match kind {
        QueueKind::XbUnbind => object(&[
            Field::required(
                &["subId", "sub_id"],
                id(),
                "the XB binding's subscription id",
            ),
            Field::required(&["telX"], phone(), "the privacy number X, in full"),
            Field::optional(&["platId"], opt_uint(), "the carrier's platform id"),
            Field::optional(
                &["telA"],
                text(),
                "A's number, as the carrier sends it (often masked); for logs",
            ),
            Field::optional(
                &["telB"],
                text(),
                "B's number, as the carrier sends it (often masked); for logs",
            ),
        ]),
        QueueKind::Blacklist => object(&[
            Field::required(
                &["action"],
                json!({"type": "string", "pattern": format!("^{ws}*(?:{}|{}){ws}*$", ci("add"), ci("delete"), ws = ws())}),
                "\"add\" or \"delete\" (any case)",
            ),
            Field::required(
                &["type"],
                json!({"anyOf": [{"enum": [0, 1]}, {"type": "string", "pattern": format!("^{ws}*0*[01]{ws}*$", ws = ws())}]}),
                "0: outgoing (calls to B), 1: incoming (calls from B)",
            ),
            Field::required(&["userid"], positive(), "the agent's user id"),
            Field::required(&["private_number"], phone(), "B's number, in full"),
            Field::optional(&["platId"], opt_uint(), "the carrier's platform id"),
        ]),
        QueueKind::PhoneHistory => object(&[
            Field::required(&["userId"], positive(), "the employee's user id"),
            Field::required(&["newPhone"], phone(), "the employee's new phone, in full"),
            Field::optional(
                &["oldPhone"],
                json!({"anyOf": [{"type": "null"}, blank(), phone()]}),
                "the previous phone, in full; empty for a first phone",
            ),
            Field::optional(
                &["operatorUser"],
                text(),
                "who made the change (the seed writes `operatorUser:`)",
            ),
        ]),
        QueueKind::CallRecord => {
            let record = call_record();
            json!({
                "description": "One call record, or a batch of them (Aliyun's SecretReport sends arrays); each record of a batch succeeds or is dead-lettered on its own.",
                "oneOf": [
                    record,
                    {"type": "array", "minItems": 1, "maxItems": max_batch_records, "items": record}
                ]
            })
        }
    }
}

fn call_record() -> Value {
    object(&[
        Field::required(
            &["subId", "sub_id"],
            id(),
            "the XB binding's subscription id",
        ),
        Field::required(
            &["callId", "call_id"],
            id(),
            "the call's id: one call-log event per callId",
        ),
        Field::optional(&["platId"], opt_uint(), "the carrier's platform id"),
        Field::optional(
            &["callType", "call_type"],
            opt_uint(),
            "the carrier's call type",
        ),
        Field::optional(&["startTime", "start_time"], text(), "for logs"),
        Field::optional(&["releaseTime", "release_time"], text(), "for logs"),
    ])
}

struct Field {
    names: &'static [&'static str],
    schema: Value,
    required: bool,
    description: &'static str,
}

impl Field {
    fn required(names: &'static [&'static str], schema: Value, description: &'static str) -> Self {
        Field {
            names,
            schema,
            required: true,
            description,
        }
    }
    fn optional(names: &'static [&'static str], schema: Value, description: &'static str) -> Self {
        Field {
            names,
            schema,
            required: false,
            description,
        }
    }
}

/// An object with `fields`, each matched by name in any case with any
/// trailing `:`; other properties are allowed and ignored.
fn object(fields: &[Field]) -> Value {
    let mut patterns = Map::new();
    let mut properties = Map::new();
    let mut names_required = Vec::new();
    let mut all_of = Vec::new();
    for f in fields {
        let pattern = format!(
            "^(?:{}):*$",
            f.names.iter().map(|n| ci(n)).collect::<Vec<_>>().join("|")
        );
        let mut schema = f.schema.clone();
        if !f.required {
            schema = json!({"anyOf": [{"type": "null"}, schema]});
        }
        let spelled = f.names.join("` or `");
        schema["description"] = json!(format!(
            "`{spelled}` (any case){}: {}",
            if f.required { ", required" } else { "" },
            f.description
        ));
        // The usual spelling as a plain property too, so that renderers
        // show the field by name (the same schema: both apply to it).
        properties.insert(f.names[0].to_owned(), schema.clone());
        patterns.insert(pattern.clone(), schema);
        if f.required {
            names_required.push(f.names[0]);
            all_of.push(json!({"not": {"propertyNames": {"not": {"pattern": pattern}}}}));
        }
    }
    json!({
        "type": "object",
        "properties": properties,
        "patternProperties": patterns,
        "allOf": all_of,
        "x-required-fields": names_required,
        "description": "Field names match in any case and ignore a trailing `:`; the required ones (x-required-fields) are checked in that spirit by allOf (JSON Schema's `required` matches names exactly).",
    })
}

/// A regular expression for `name` in any ASCII case.
fn ci(name: &str) -> String {
    name.chars()
        .map(|c| {
            if c.is_ascii_alphabetic() {
                format!("[{}{}]", c.to_ascii_lowercase(), c.to_ascii_uppercase())
            } else {
                regex_escape(c)
            }
        })
        .collect()
}

fn regex_escape(c: char) -> String {
    if "\\^$.|?*+()[]{}/".contains(c) {
        format!("\\{c}")
    } else {
        c.to_string()
    }
}

/// No control character (Unicode Cc).
const PRINTABLE: &str = "[^\\u0000-\\u001f\\u007f-\\u009f]";

/// A string of whitespace only (`str::trim`'s), read as absent.
fn blank() -> Value {
    json!({"type": "string", "pattern": format!("^{}*$", ws())})
}

/// An identifier: an integer (i64 or u64, a whole-number float too), or a
/// string of at most 128 characters, printable, not blank (surrounding
/// whitespace is ignored).
fn id() -> Value {
    let ws = ws();
    let solid = format!("[^{WS_CHARS}\\u0000-\\u001f\\u007f-\\u009f]");
    json!({"anyOf": [
        {"type": "integer", "minimum": i64::MIN, "maximum": u64::MAX},
        {"type": "string", "maxLength": 128,
         "pattern": format!("^{ws}*{solid}(?:{PRINTABLE}*{solid})?{ws}*$")}
    ]})
}

/// A non-negative integer: a JSON integer (a whole-number float too), or a
/// string of digits up to u64's largest, leading zeros and surrounding
/// whitespace allowed.
fn uint() -> Value {
    json!({"anyOf": [
        {"type": "integer", "minimum": 0, "maximum": u64::MAX},
        {"type": "string", "pattern": format!("^{ws}*0*{}{ws}*$", range_regex(0, u64::MAX), ws = ws())}
    ]})
}

/// A non-negative integer, or a blank string (read as absent).
fn opt_uint() -> Value {
    json!({"anyOf": [blank(), uint()]})
}

/// A positive integer: a JSON integer, or a string of digits, not 0.
fn positive() -> Value {
    json!({"anyOf": [
        {"type": "integer", "minimum": 1, "maximum": u64::MAX},
        {"type": "string", "pattern": format!("^{ws}*0*{}{ws}*$", range_regex(1, u64::MAX), ws = ws())}
    ]})
}

/// Text carried for logs: a string or a number.
fn text() -> Value {
    json!({"type": ["string", "number"]})
}

/// A full phone number: 5-20 digits (whitespace around it, and spaces and
/// dashes anywhere, are ignored), or `+86` and a mainland mobile; never
/// masked. As a JSON integer:
/// 5-20 digits.
fn phone() -> Value {
    let sep = "[ -]*";
    let ws = ws();
    let digits = format!("^{ws}*{sep}(?:[0-9]{sep}){{5,20}}{ws}*$");
    let plus86 = format!("^{ws}*{sep}\\+{sep}8{sep}6{sep}1(?:{sep}[0-9]){{10}}{sep}{ws}*$");
    json!({"anyOf": [
        {"type": "integer", "minimum": 10000, "maximum": u64::MAX},
        {"type": "string", "pattern": format!("{digits}|{plus86}")}
    ]})
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::handlers::{Limits, parse, proptests::schema_accepts};

    fn parser_accepts(kind: QueueKind, v: &Value) -> bool {
        let limits = Limits {
            max_body_bytes: 64 * 1024,
            max_batch_records: 1000,
        };
        match parse(kind, v.to_string().as_bytes(), limits) {
            Ok(crate::handlers::Job::CallRecords(b)) => b.0.iter().all(|i| i.record.is_ok()),
            Ok(_) => true,
            Err(_) => false,
        }
    }

    #[test]
    fn the_seed_examples_pass_their_schema_and_the_parser() {
        for kind in QueueKind::ALL {
            for (name, ex) in examples(kind) {
                assert!(schema_accepts(kind, &ex), "{kind} {name} fails its schema");
                assert!(parser_accepts(kind, &ex), "{kind} {name} fails the parser");
            }
        }
    }

    #[test]
    fn schema_and_parser_agree_on_the_edges() {
        use QueueKind::*;
        let cases = [
            (
                Blacklist,
                json!({"PRIVATE_NUMBER": "134-7011-0001", "Action": " Delete ", "USERID": 7, "type": "1"}),
                true,
            ),
            (
                Blacklist,
                json!({"private_number": "1347011****", "action": "add", "userid": 7, "type": 0}),
                false,
            ),
            (
                Blacklist,
                json!({"private_number": "13470110001", "action": "remove", "userid": 7, "type": 0}),
                false,
            ),
            (
                Blacklist,
                json!({"private_number": "13470110001", "action": "add", "userid": 0, "type": 0}),
                false,
            ),
            (
                Blacklist,
                json!({"private_number": "13470110001", "action": "add", "userid": 7, "type": 2}),
                false,
            ),
            (
                Blacklist,
                json!({"private_number": "13470110001", "action": "add", "type": 0}),
                false,
            ),
            (
                Blacklist,
                json!({"private_number": "13470110001", "action": null, "userid": 7, "type": 0}),
                false,
            ),
            (
                XbUnbind,
                json!({"sub_id": 42, "telX": "+86 171 1152 6089"}),
                true,
            ),
            (
                XbUnbind,
                json!({"subId": "  ", "telX": "17111526089"}),
                false,
            ),
            (
                XbUnbind,
                json!({"subId": "a\u{0007}b", "telX": "17111526089"}),
                false,
            ),
            (
                XbUnbind,
                json!({"subId": "s", "telX": 17111526089u64, "platId": ""}),
                true,
            ),
            (XbUnbind, json!({"subId": "s", "telX": "1234"}), false),
            (XbUnbind, json!(["not", "an object"]), false),
            (
                PhoneHistory,
                json!({"userid": "74705", "NEWPHONE": "13812345678", "oldPhone": "", "operatorUser:": 51218}),
                true,
            ),
            (
                PhoneHistory,
                json!({"userId": "74705", "newPhone": "13812345678", "oldPhone": "139****5432"}),
                false,
            ),
            (
                PhoneHistory,
                json!({"userId": "-1", "newPhone": "13812345678"}),
                false,
            ),
            (CallRecord, json!([]), false),
            (
                CallRecord,
                json!([{"subId": "s", "callId": "c"}, {"subId": "s"}]),
                false,
            ),
            (
                CallRecord,
                json!({"subId": "s", "callId": "c", "callType": "x"}),
                false,
            ),
            (
                CallRecord,
                json!({"SubId": "s", "CALLID": "c", "startTime": 5}),
                true,
            ),
        ];
        for (kind, v, want) in cases {
            assert_eq!(parser_accepts(kind, &v), want, "parser, {kind}: {v}");
            assert_eq!(schema_accepts(kind, &v), want, "schema, {kind}: {v}");
        }
    }

    /// The cases where schema and parser once differed (issue 23), each
    /// with the decision taken: both now say the same.
    #[test]
    fn schema_and_parser_agree_where_they_once_differed() {
        use QueueKind::*;
        let x = "17111526089";
        let phone = "13812345678";
        let cases = [
            // Whole-number floats are integers (JSON Schema's rule).
            (
                XbUnbind,
                json!({"subId": "s", "telX": x, "platId": 3.0}),
                true,
            ),
            (
                PhoneHistory,
                json!({"userId": 1e3, "newPhone": phone}),
                true,
            ),
            (XbUnbind, json!({"subId": 42.0, "telX": x}), true),
            (
                XbUnbind,
                json!({"subId": "s", "telX": x, "platId": 1.5}),
                false,
            ),
            (
                PhoneHistory,
                json!({"userId": -3.0, "newPhone": phone}),
                false,
            ),
            (
                PhoneHistory,
                json!({"userId": 1.8446744073709552e19, "newPhone": phone}),
                false,
            ),
            (XbUnbind, json!({"subId": 1e300, "telX": x}), false),
            (
                Blacklist,
                json!({"private_number": phone, "action": "add", "userid": 7, "type": 1.0}),
                true,
            ),
            // Lengths count characters.
            (
                XbUnbind,
                json!({"subId": "中".repeat(128), "telX": x}),
                true,
            ),
            (
                XbUnbind,
                json!({"subId": "中".repeat(129), "telX": x}),
                false,
            ),
            (
                XbUnbind,
                json!({"subId": format!(" {} ", "a".repeat(127)), "telX": x}),
                false,
            ),
            // u64's whole range as digits, leading zeros allowed.
            (
                PhoneHistory,
                json!({"userId": "18446744073709551615", "newPhone": phone}),
                true,
            ),
            (
                PhoneHistory,
                json!({"userId": "00018446744073709551615", "newPhone": phone}),
                true,
            ),
            (
                PhoneHistory,
                json!({"userId": "18446744073709551616", "newPhone": phone}),
                false,
            ),
            (
                XbUnbind,
                json!({"subId": "s", "telX": x, "platId": "99999999999999999999"}),
                false,
            ),
            // One whitespace rule: what str::trim removes.
            (
                XbUnbind,
                json!({"subId": "\u{3000}s\u{85}", "telX": x}),
                true,
            ),
            (XbUnbind, json!({"subId": "\u{200b}", "telX": x}), true),
            (XbUnbind, json!({"subId": "\u{2028}", "telX": x}), false),
            (
                Blacklist,
                json!({"private_number": phone, "action": "\u{a0}add\u{3000}", "userid": 7, "type": 0}),
                true,
            ),
            (
                Blacklist,
                json!({"private_number": phone, "action": "\u{200b}add", "userid": 7, "type": 0}),
                false,
            ),
            (
                PhoneHistory,
                json!({"userId": "\u{1680}7\t", "newPhone": phone, "oldPhone": "\u{3000}"}),
                true,
            ),
            // Two spellings with one value: one field.
            (
                PhoneHistory,
                json!({"userId": "7", "userid": "7", "newPhone": phone}),
                true,
            ),
        ];
        for (kind, v, want) in cases {
            assert_eq!(parser_accepts(kind, &v), want, "parser, {kind}: {v}");
            assert_eq!(schema_accepts(kind, &v), want, "schema, {kind}: {v}");
        }
    }

    /// What no JSON Schema can say, the parser decides and the AsyncAPI
    /// document states: a field in two spellings with different values,
    /// a lone surrogate escape and nesting beyond 128 are refused.
    #[test]
    fn the_second_spelling_of_a_field_is_refused() {
        use crate::handlers::Reason;
        let limits = Limits {
            max_body_bytes: 64 * 1024,
            max_batch_records: 1000,
        };
        let reason = |kind, body: &str| {
            parse(kind, body.as_bytes(), limits)
                .err()
                .and_then(|e| e.reason())
        };
        for (kind, body) in [
            (
                QueueKind::PhoneHistory,
                r#"{"userId": "7", "userid": "8", "newPhone": "13812345678"}"#,
            ),
            (
                QueueKind::XbUnbind,
                r#"{"subId": "a", "sub_id": "b", "telX": "17111526089"}"#,
            ),
            (
                QueueKind::Blacklist,
                r#"{"private_number": "13812345678", "action": "add", "ACTION": "delete", "userid": 7, "type": 0}"#,
            ),
        ] {
            assert_eq!(reason(kind, body), Some(Reason::InvalidField), "{body}");
        }
        let deep = format!(
            r#"{{"subId": "s", "telX": "17111526089", "x": {}{}}}"#,
            "[".repeat(200),
            "]".repeat(200)
        );
        let lone = r#"{"subId": "s", "telX": "17111526089", "x": "\ud800"}"#;
        for body in [deep.as_str(), lone] {
            assert_eq!(
                reason(QueueKind::XbUnbind, body),
                Some(Reason::InvalidJson),
                "{body}"
            );
        }
    }
}
