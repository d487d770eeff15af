//! Hostile input: a table of malformed messages, each of which must end in
//! its queue's dead-letter queue with the stated reason, the worker still
//! ready afterwards (a panic would lose the message and fail the count).

use std::collections::BTreeMap;

use axn_worker::config::QueueKind;
use serde_json::json;

use crate::helpers::{header, spawn_app};

fn cases() -> Vec<(QueueKind, Vec<u8>, &'static str)> {
    use QueueKind::*;
    let j = |v: serde_json::Value| v.to_string().into_bytes();
    let xb = |sub: serde_json::Value, tel: serde_json::Value| {
        j(json!({"subId": sub, "telX": tel, "platId": 3}))
    };
    let bl =
        |n: serde_json::Value, a: serde_json::Value, u: serde_json::Value, t: serde_json::Value| {
            j(json!({"private_number": n, "action": a, "userid": u, "type": t}))
        };
    let ok_n = json!("13470110001");
    vec![
        // Not a JSON object at all.
        (XbUnbind, b"".to_vec(), "invalid_json"),
        (XbUnbind, b"\xff".to_vec(), "not_utf8"),
        (XbUnbind, b"\xc3\x28{}".to_vec(), "not_utf8"),
        (XbUnbind, b"{\"subId\":".to_vec(), "invalid_json"),
        (XbUnbind, b"{'subId': 1}".to_vec(), "invalid_json"),
        (XbUnbind, b"null".to_vec(), "not_an_object"),
        (XbUnbind, b"42".to_vec(), "not_an_object"),
        (XbUnbind, b"\"text\"".to_vec(), "not_an_object"),
        (XbUnbind, b"[]".to_vec(), "not_an_object"),
        (XbUnbind, "[".repeat(300).into_bytes(), "invalid_json"),
        (
            XbUnbind,
            format!("{}1{}", r#"{"a":"#.repeat(300), "}".repeat(300)).into_bytes(),
            "invalid_json",
        ),
        (
            XbUnbind,
            j(json!({"subId": "1", "telX": "17111526089", "pad": "x".repeat(70_000)})),
            "body_too_large",
        ),
        // Missing or wrong fields.
        (XbUnbind, b"{}".to_vec(), "missing_field"),
        (XbUnbind, j(json!({"subId": "1"})), "missing_field"),
        (
            XbUnbind,
            xb(json!(null), json!("17111526089")),
            "missing_field",
        ),
        (
            XbUnbind,
            xb(json!(""), json!("17111526089")),
            "missing_field",
        ),
        (
            XbUnbind,
            xb(json!(true), json!("17111526089")),
            "invalid_field",
        ),
        (
            XbUnbind,
            xb(json!(1.5), json!("17111526089")),
            "invalid_field",
        ),
        (
            XbUnbind,
            xb(json!("x".repeat(200)), json!("17111526089")),
            "invalid_field",
        ),
        (
            XbUnbind,
            xb(json!("a\u{0}b"), json!("17111526089")),
            "invalid_field",
        ),
        (
            XbUnbind,
            xb(json!("1"), json!("1711152****")),
            "invalid_number",
        ),
        (
            XbUnbind,
            xb(json!("1"), json!("1711152608a")),
            "invalid_number",
        ),
        (
            XbUnbind,
            xb(json!("1"), json!("+4915112345678")),
            "invalid_number",
        ),
        (XbUnbind, xb(json!("1"), json!(12)), "invalid_number"),
        (
            XbUnbind,
            xb(json!("1"), json!(["17111526089"])),
            "invalid_field",
        ),
        (
            XbUnbind,
            j(json!({"subId": "1", "telX": "17111526089", "platId": "abc"})),
            "invalid_field",
        ),
        (
            XbUnbind,
            j(json!({"subId": "1", "telX": "17111526089", "platId": -1})),
            "invalid_field",
        ),
        // Blacklist.
        (
            Blacklist,
            bl(ok_n.clone(), json!("ADDX"), json!(1), json!(0)),
            "unknown_action",
        ),
        (
            Blacklist,
            bl(ok_n.clone(), json!(null), json!(1), json!(0)),
            "missing_field",
        ),
        (
            Blacklist,
            bl(ok_n.clone(), json!(1), json!(1), json!(0)),
            "unknown_action",
        ),
        (
            Blacklist,
            bl(ok_n.clone(), json!("add"), json!(1), json!(2)),
            "invalid_field",
        ),
        (
            Blacklist,
            bl(ok_n.clone(), json!("add"), json!(1), json!(-1)),
            "invalid_field",
        ),
        (
            Blacklist,
            bl(ok_n.clone(), json!("add"), json!(-5), json!(0)),
            "invalid_field",
        ),
        (
            Blacklist,
            bl(ok_n.clone(), json!("add"), json!("0"), json!(0)),
            "invalid_field",
        ),
        (
            Blacklist,
            bl(ok_n.clone(), json!("add"), json!("12a"), json!(0)),
            "invalid_field",
        ),
        (
            Blacklist,
            // 1e3 is the integer 1000 (as JSON Schema counts it); 1.5 is not.
            bl(ok_n.clone(), json!("add"), json!(1.5), json!(0)),
            "invalid_field",
        ),
        (
            Blacklist,
            bl(json!(""), json!("add"), json!(1), json!(0)),
            "invalid_number",
        ),
        (
            Blacklist,
            bl(json!("139****8888"), json!("add"), json!(1), json!(0)),
            "invalid_number",
        ),
        // Phone change.
        (
            PhoneHistory,
            j(json!({"userId": 1, "oldPhone": "13998765432"})),
            "missing_field",
        ),
        (
            PhoneHistory,
            j(json!({"userId": 1, "newPhone": "138****5678"})),
            "invalid_number",
        ),
        (
            PhoneHistory,
            j(json!({"userId": 1, "newPhone": "13812345678", "oldPhone": "phone"})),
            "invalid_number",
        ),
        (
            PhoneHistory,
            j(json!({"userId": "-74705", "newPhone": "13812345678"})),
            "invalid_field",
        ),
        (
            PhoneHistory,
            b"{\"userId\": 18446744073709551616, \"newPhone\": \"13812345678\"}".to_vec(),
            "invalid_field",
        ),
        // Call records.
        (CallRecord, b"[]".to_vec(), "empty_batch"),
        (CallRecord, b"[1]".to_vec(), "not_an_object"),
        (CallRecord, b"true".to_vec(), "not_an_object"),
        (CallRecord, j(json!({"subId": "1"})), "missing_field"),
        (CallRecord, j(json!({"callId": "x"})), "missing_field"),
        (
            CallRecord,
            j(json!({"subId": {}, "callId": "x"})),
            "invalid_field",
        ),
    ]
}

/// Every malformed message of the table is dead-lettered with its reason,
/// none is retried or lost, and the worker stays ready.
#[tokio::test]
async fn malformed_messages_are_dead_lettered_with_their_reason() {
    let cases = cases();
    assert!(cases.len() >= 40, "{} cases", cases.len());
    let app = spawn_app().await;
    let mut expected: BTreeMap<&str, Vec<&str>> = BTreeMap::new();
    for (kind, body, reason) in &cases {
        app.publish(*kind, body).await;
        expected.entry(kind.key()).or_default().push(reason);
    }
    for kind in QueueKind::ALL {
        let want = expected.remove(kind.key()).unwrap_or_default();
        let got = app.take_n(&app.dlq(kind), want.len()).await;
        let mut got: Vec<String> = got
            .iter()
            .map(|d| header(d, "axn-reason").unwrap())
            .collect();
        let mut want: Vec<String> = want.iter().map(|s| s.to_string()).collect();
        got.sort();
        want.sort();
        assert_eq!(got, want, "{kind}");
        assert_eq!(
            app.queue_len(&app.dlq(kind)).await,
            0,
            "{kind}: nothing more"
        );
    }
    app.drained().await;
    assert_eq!(app.get("/readyz").await.unwrap().0, 200, "still ready");
}

/// One 64 KiB array of 32,000 invalid records is one dead letter
/// (`batch_too_large`), not 32,000; an array within the cap still gets one
/// outcome per record.
#[tokio::test]
async fn an_over_long_batch_is_dead_lettered_whole() {
    let app = spawn_app().await;
    let body = format!("[{}1]", "1,".repeat(31_999));
    assert!(body.len() <= 64 * 1024);
    app.publish(QueueKind::CallRecord, body.as_bytes()).await;
    app.publish(QueueKind::CallRecord, b"[1,2,3]").await;
    app.drained().await;
    let dlq = app.dlq(QueueKind::CallRecord);
    assert_eq!(
        app.queue_len(&dlq).await,
        4,
        "one whole batch + three records"
    );
    let mut reasons: Vec<String> = app
        .take_n(&dlq, 4)
        .await
        .iter()
        .map(|d| header(d, "axn-reason").unwrap())
        .collect();
    reasons.sort();
    assert_eq!(
        reasons,
        [
            "batch_too_large",
            "not_an_object",
            "not_an_object",
            "not_an_object"
        ]
    );
}

/// The schemas of docs/asyncapi.yaml agree with the parsers on this table:
/// every malformed message here fails its message schema (or is no JSON at
/// all, which no schema can accept), and `axn-worker validate` names the
/// reason the worker dead-letters it for, publishing nothing.
#[test]
fn every_malformed_message_fails_its_schema_and_validate_names_its_reason() {
    for (kind, body, reason) in cases() {
        // A body's size is the one limit a JSON Schema cannot state (the
        // AsyncAPI document says it in words; validate checks it).
        if let Ok(value) = serde_json::from_slice::<serde_json::Value>(&body)
            && reason != "body_too_large"
        {
            let schema = axn_worker::handlers::schema::message(kind, 1000);
            let validator = jsonschema::validator_for(&schema).unwrap();
            let shown: String = value.to_string().chars().take(200).collect();
            assert!(
                !validator.is_valid(&value),
                "{kind}: the schema accepts what the worker dead-letters ({reason}): {shown}"
            );
        }
        let out = std::process::Command::new(crate::helpers::BIN)
            .args([
                "--config",
                crate::helpers::CONFIG,
                "validate",
                kind.key(),
                "-",
            ])
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .spawn()
            .and_then(|mut c| {
                use std::io::Write as _;
                // One message per line: a body with a newline is sent as JSON
                // would be on one line, so only bodies without one are piped.
                let mut stdin = c.stdin.take().unwrap();
                let mut line = body.clone();
                line.retain(|b| *b != b'\n');
                stdin.write_all(&line)?;
                drop(stdin);
                c.wait_with_output()
            })
            .unwrap();
        let text = String::from_utf8_lossy(&out.stdout);
        assert!(!out.status.success(), "{kind} {reason}: {text}");
        let shown: String = text.chars().take(300).collect();
        assert!(
            text.contains(&format!("rejected: {reason}")),
            "{kind}: validate says {shown:?}, the worker says {reason}"
        );
    }
}
