//! docs/asyncapi.yaml: what the producing and consuming teams read. It is the
//! output of `axn-worker asyncapi` for the shipped config.toml, it is a valid
//! AsyncAPI 3.0 document (checked by the AsyncAPI Initiative's own parser
//! when it is installed: `.ci/run` installs it), and its message schemas are
//! the ones the parsers agree with (src/handlers/schema.rs).

use crate::helpers::{BIN, CONFIG};

const DOC: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/docs/asyncapi.yaml");

fn generated() -> String {
    let out = std::process::Command::new(BIN)
        .args(["--config", CONFIG, "asyncapi"])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

/// The committed document is the command's output: regenerate it with
/// `cargo run -- asyncapi > docs/asyncapi.yaml` after changing the topology,
/// a parser or config.toml.
#[test]
fn the_committed_document_is_the_commands_output() {
    let committed = std::fs::read_to_string(DOC).unwrap();
    assert!(
        committed == generated(),
        "docs/asyncapi.yaml is out of date: run `cargo run -- asyncapi > docs/asyncapi.yaml`"
    );
}

/// What the document names is what the worker uses: every queue of the
/// topology is a channel address, each input channel's message schema
/// accepts the seed's examples and rejects a masked number.
#[test]
fn the_document_names_the_topology_and_its_schemas_work() {
    let doc: serde_json::Value = serde_yaml_ng::from_str(&generated()).unwrap();
    let settings = axn_worker::config::Settings::defaults().unwrap();
    let addresses: Vec<&str> = doc["channels"]
        .as_object()
        .unwrap()
        .values()
        .map(|c| c["address"].as_str().unwrap())
        .collect();
    for spec in axn_worker::amqp::topology::specs(&settings) {
        assert!(
            addresses.contains(&spec.name.as_str()),
            "{} missing",
            spec.name
        );
    }
    let messages = &doc["components"]["messages"];
    for (name, key) in [
        ("XbUnbind", "xb_unbind"),
        ("BlacklistChange", "blacklist"),
        ("PhoneChange", "phone_history"),
        ("CallRecord", "call_record"),
    ] {
        let m = &messages[name];
        let validator = jsonschema::validator_for(&m["payload"]).unwrap();
        let examples = m["examples"].as_array().unwrap();
        assert!(!examples.is_empty(), "{name}");
        for ex in examples {
            assert!(validator.is_valid(&ex["payload"]), "{name}: {}", ex["name"]);
        }
        assert!(
            doc["channels"][key]["messages"][name]["$ref"]
                .as_str()
                .is_some_and(|r| r.ends_with(name)),
            "{key} carries {name}"
        );
    }
    let blacklist = jsonschema::validator_for(&messages["BlacklistChange"]["payload"]).unwrap();
    assert!(!blacklist.is_valid(&serde_json::json!(
        {"private_number": "1347011****", "action": "add", "userid": 7, "type": 0}
    )));
}

/// The AsyncAPI Initiative's parser (@asyncapi/parser, npm) finds no error.
/// It runs where node and the parser are installed: `.ci/run` installs the
/// parser under /opt/axn-tools (or AXN_NODE_TOOLS names a node_modules).
#[test]
fn the_document_is_valid_asyncapi_3() {
    let modules =
        std::env::var("AXN_NODE_TOOLS").unwrap_or_else(|_| "/opt/axn-tools/node_modules".into());
    let parser = std::path::Path::new(&modules).join("@asyncapi/parser");
    let node = std::process::Command::new("node").arg("--version").output();
    if !parser.exists() || node.is_err() {
        println!(
            "node or @asyncapi/parser is not installed: the document's validity is not checked here"
        );
        return;
    }
    let script = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/tools/asyncapi-validate.cjs"
    );
    let out = std::process::Command::new("node")
        .args([script, &modules, DOC])
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{text}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        !text.contains("\nerror") && !text.starts_with("error"),
        "{text}"
    );
}

/// A second, independent validator agrees with the parser: Python's
/// `jsonschema` (Draft 2020-12 and Python's regex dialect, as a Python team
/// would check its messages) on the document's message schemas, over cases
/// built from every field's edge values (whole-number floats, u64's limit as
/// digits, lengths in characters, every kind of whitespace, masked and
/// formatted numbers, wrong types) and the seed's examples. The one case no
/// schema can say (a field in two spellings with different values) is left
/// out; `handlers::schema`'s tests check the parser refuses it.
#[test]
fn a_second_validator_agrees_with_the_parser() {
    use axn_worker::config::{QueueKind, Settings};
    use serde_json::{Value, json};
    let Some(python) = crate::contract_tools::tool("python") else {
        return;
    };
    let settings = Settings::defaults().unwrap();
    let valid: [(QueueKind, &str, Value); 4] = [
        (
            QueueKind::XbUnbind,
            "XbUnbind",
            json!({"subId": "1000039976446302", "telX": "17111526089", "platId": 3, "telA": "1347011****"}),
        ),
        (
            QueueKind::Blacklist,
            "BlacklistChange",
            json!({"platId": 3, "private_number": "13470110001", "action": "add", "userid": "74705", "type": 0}),
        ),
        (
            QueueKind::PhoneHistory,
            "PhoneChange",
            json!({"userId": "74705", "newPhone": "13812345678", "oldPhone": "13998765432", "operatorUser:": "51218"}),
        ),
        (
            QueueKind::CallRecord,
            "CallRecord",
            json!({"subId": "1000039976446302", "callId": "c-1", "platId": 3, "callType": 0, "startTime": "2026-11-23 10:00:00"}),
        ),
    ];
    let probes: Vec<Value> = vec![
        json!(3.0),
        json!(1e3),
        json!(0.0),
        json!(-0.0),
        json!(1.5),
        json!(-3.0),
        json!(1e19),
        json!(1.8446744073709552e19),
        json!(1e300),
        json!(0),
        json!(1),
        json!(2),
        json!(-1),
        json!(u64::MAX),
        json!(i64::MIN),
        json!(10000),
        json!(9999),
        json!(13812345678u64),
        json!("18446744073709551615"),
        json!("18446744073709551616"),
        json!("00018446744073709551615"),
        json!("99999999999999999999"),
        json!("9223372036854775808"),
        json!("0"),
        json!("00"),
        json!("7"),
        json!(" 7 "),
        json!("\u{3000}7\u{3000}"),
        json!("\u{a0}7"),
        json!("7\u{85}"),
        json!("\u{200b}7"),
        json!("7\n"),
        json!("\n"),
        json!(""),
        json!("   "),
        json!("\u{2028}"),
        json!("\u{feff}"),
        json!("中".repeat(50)),
        json!("中".repeat(128)),
        json!("中".repeat(129)),
        json!("a".repeat(129)),
        json!(format!(" {} ", "a".repeat(127))),
        json!("a\u{7}b"),
        json!("a\u{9f}b"),
        json!("13812345678"),
        json!("13812345678\n"),
        json!(" 13812345678"),
        json!("+86 138-1234-5678"),
        json!("008613812345678"),
        json!("138****5678"),
        json!("1234"),
        json!("12345"),
        json!("123456789012345678901"),
        json!("１３８12345678"),
        json!("+1 555 0100"),
        json!("add"),
        json!(" ADD "),
        json!("\u{3000}delete\t"),
        json!("remove"),
        json!("add\n"),
        json!(true),
        json!(null),
        json!([1]),
        json!({"a": 1}),
        json!("1.0"),
        json!("1e3"),
    ];
    let mut lines = Vec::new();
    let mut verdict = |kind: QueueKind, message: &str, body: &Value| {
        let text = body.to_string();
        let parser = axn_worker::ops::validate::verdict(&settings, kind, text.as_bytes())
            .starts_with("accepted");
        lines.push(json!({"message": message, "body": text, "parser": parser}).to_string());
    };
    for (kind, message, base) in &valid {
        verdict(*kind, message, base);
        let obj = base.as_object().unwrap();
        for field in obj.keys() {
            for probe in &probes {
                let mut m = obj.clone();
                m.insert(field.clone(), probe.clone());
                verdict(*kind, message, &Value::Object(m.clone()));
                // The same field in another spelling with the same value.
                let mut twice = m;
                twice.insert(field.to_uppercase(), probe.clone());
                verdict(*kind, message, &Value::Object(twice));
            }
            let mut without = obj.clone();
            without.remove(field);
            verdict(*kind, message, &Value::Object(without));
        }
        if *kind == QueueKind::CallRecord {
            verdict(*kind, message, &json!([base, base]));
            verdict(*kind, message, &json!([]));
            verdict(*kind, message, &json!([base, {"subId": "s"}]));
        }
    }
    for kind in QueueKind::ALL {
        let message = valid.iter().find(|v| v.0 == kind).unwrap().1;
        for (_, example) in axn_worker::handlers::schema::examples(kind) {
            verdict(kind, message, &example);
        }
    }
    let n = lines.len();
    assert!(n > 1000, "{n} cases");
    let dir = std::env::temp_dir().join(format!("axn-schemas-{}", crate::helpers::unique_id()));
    std::fs::create_dir_all(&dir).unwrap();
    let doc = dir.join("asyncapi.json");
    let cases = dir.join("cases.jsonl");
    let out = std::process::Command::new(BIN)
        .args(["--config", CONFIG, "asyncapi", "--json"])
        .output()
        .unwrap();
    std::fs::write(&doc, &out.stdout).unwrap();
    std::fs::write(&cases, lines.join("\n") + "\n").unwrap();
    let run = std::process::Command::new(python)
        .arg(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/tests/tools/message_schemas.py"
        ))
        .arg(&doc)
        .arg(&cases)
        .output()
        .unwrap();
    let _ = std::fs::remove_dir_all(&dir);
    let said = String::from_utf8_lossy(&run.stdout);
    assert!(
        run.status.success(),
        "schema and parser differ:\n{}{}",
        said.lines().take(40).collect::<Vec<_>>().join("\n"),
        String::from_utf8_lossy(&run.stderr)
    );
    assert!(said.contains(&format!("{n} cases, 0 differ")), "{said}");
}
