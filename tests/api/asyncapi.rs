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
