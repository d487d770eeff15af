//! deploy/ is checked against the worker itself: the manifests parse, agree
//! with each other and with config.toml, and every metric a dashboard panel
//! or an alert uses is one the worker really exports.

use std::{collections::BTreeSet, path::Path};

use axn_worker::config::{QueueKind, Settings};
use serde::Deserialize;
use serde_yaml_ng::Value;

use crate::{helpers::spawn_app, operate::metric};

fn read(path: &str) -> String {
    std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join(path))
        .unwrap_or_else(|e| panic!("{path}: {e}"))
}

/// Every YAML document of a file.
fn yaml_docs(path: &str) -> Vec<Value> {
    let text = read(path);
    serde_yaml_ng::Deserializer::from_str(&text)
        .map(|d| Value::deserialize(d).unwrap_or_else(|e| panic!("{path}: {e}")))
        .collect()
}

fn kind<'a>(docs: &'a [Value], kind: &str) -> &'a Value {
    docs.iter()
        .find(|d| d["kind"].as_str() == Some(kind))
        .unwrap_or_else(|| panic!("no {kind}"))
}

fn k8s() -> Vec<Value> {
    let kustomization = yaml_docs("deploy/k8s/kustomization.yaml");
    let files: Vec<String> = kustomization[0]["resources"]
        .as_sequence()
        .unwrap()
        .iter()
        .map(|f| f.as_str().unwrap().to_owned())
        .collect();
    files
        .iter()
        .flat_map(|f| yaml_docs(&format!("deploy/k8s/{f}")))
        .collect()
}

/// The ConfigMap's config.toml is a valid configuration; the Deployment's
/// probes, port, grace period, config mount and secrets fit it; the PDB and
/// KEDA target the Deployment, with one RabbitMQ trigger per input queue.
#[test]
fn kubernetes_manifests_agree_with_the_worker() {
    let docs = k8s();
    for d in &docs {
        assert!(
            d["apiVersion"].is_string()
                && d["kind"].is_string()
                && d["metadata"]["name"].is_string(),
            "{d:?}"
        );
    }
    let config = kind(&docs, "ConfigMap")["data"]["config.toml"]
        .as_str()
        .unwrap();
    let settings = Settings::from_toml(config).expect("the ConfigMap's config.toml is valid");
    let port: i64 = settings
        .http
        .listen
        .rsplit(':')
        .next()
        .unwrap()
        .parse()
        .unwrap();
    assert!(
        settings.http.listen.starts_with("0.0.0.0:"),
        "listens beyond loopback in a pod"
    );

    let deployment = kind(&docs, "Deployment");
    let pod = &deployment["spec"]["template"]["spec"];
    let c = &pod["containers"][0];
    assert_eq!(
        c["livenessProbe"]["httpGet"]["path"].as_str(),
        Some("/healthz")
    );
    assert_eq!(
        c["readinessProbe"]["httpGet"]["path"].as_str(),
        Some("/readyz")
    );
    assert_eq!(c["ports"][0]["containerPort"].as_i64(), Some(port));
    let grace = pod["terminationGracePeriodSeconds"].as_u64().unwrap();
    let longest_timeout = QueueKind::ALL
        .iter()
        .map(|k| settings.queues.get(*k).timeout_secs)
        .max()
        .unwrap();
    assert!(
        settings.shutdown.grace_period_secs > longest_timeout,
        "in-flight messages may use their whole timeout"
    );
    assert!(
        grace > settings.shutdown.grace_period_secs,
        "the pod outlives the worker's drain"
    );
    assert_eq!(pod["securityContext"]["runAsNonRoot"].as_bool(), Some(true));

    let args: Vec<&str> = c["args"]
        .as_sequence()
        .unwrap()
        .iter()
        .map(|a| a.as_str().unwrap())
        .collect();
    let mount = c["volumeMounts"][0]["mountPath"].as_str().unwrap();
    assert_eq!(args, ["run", "--config", &format!("{mount}/config.toml")]);
    assert_eq!(
        pod["volumes"][0]["configMap"]["name"],
        kind(&docs, "ConfigMap")["metadata"]["name"]
    );

    let secret = kind(&docs, "Secret");
    assert_eq!(
        c["envFrom"][0]["secretRef"]["name"],
        secret["metadata"]["name"]
    );
    for key in [
        "AXN__AMQP__URL",
        "AXN__REDIS__URL",
        "AXN__MAPPING__PASSWORD",
    ] {
        assert!(secret["stringData"][key].is_string(), "Secret lacks {key}");
    }

    let labels = &deployment["spec"]["template"]["metadata"]["labels"];
    assert_eq!(&deployment["spec"]["selector"]["matchLabels"], labels);
    assert_eq!(
        &kind(&docs, "PodDisruptionBudget")["spec"]["selector"]["matchLabels"],
        labels
    );
    assert_eq!(&kind(&docs, "Service")["spec"]["selector"], labels);

    let scaled = kind(&docs, "ScaledObject");
    assert_eq!(
        scaled["spec"]["scaleTargetRef"]["name"],
        deployment["metadata"]["name"]
    );
    let triggers = scaled["spec"]["triggers"].as_sequence().unwrap();
    let queues: BTreeSet<&str> = triggers
        .iter()
        .inspect(|t| assert_eq!(t["type"].as_str(), Some("rabbitmq")))
        .map(|t| t["metadata"]["queueName"].as_str().unwrap())
        .collect();
    let expected: BTreeSet<&str> = QueueKind::ALL
        .iter()
        .map(|k| settings.queues.get(*k).name.as_str())
        .collect();
    assert_eq!(queues, expected, "one trigger per input queue");
    let auth = kind(&docs, "TriggerAuthentication");
    let key = auth["spec"]["secretTargetRef"][0]["key"].as_str().unwrap();
    assert!(
        secret["stringData"][key].is_string(),
        "KEDA's secret key {key} exists"
    );
}

/// The Dockerfile builds in one stage and runs the binary as PID 1, non-root,
/// in a second one.
#[test]
fn dockerfile_is_multi_stage_non_root_with_the_binary_as_pid_1() {
    let text = read("deploy/Dockerfile");
    let lines: Vec<&str> = text
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .collect();
    let stages: Vec<usize> = lines
        .iter()
        .enumerate()
        .filter(|(_, l)| l.starts_with("FROM "))
        .map(|(i, _)| i)
        .collect();
    assert!(stages.len() >= 2, "multi-stage");
    let last = &lines[*stages.last().unwrap()..];
    let user = last
        .iter()
        .find_map(|l| l.strip_prefix("USER "))
        .expect("USER in the runtime stage");
    assert!(!["root", "0", "0:0"].contains(&user.trim()), "non-root");
    let entry = last
        .iter()
        .find_map(|l| l.strip_prefix("ENTRYPOINT "))
        .expect("ENTRYPOINT");
    let entry: Vec<String> = serde_json::from_str(entry)
        .expect("exec form: no shell in between, so SIGTERM reaches the worker");
    assert!(entry[0].ends_with("/axn-worker"));
    assert!(
        last.iter()
            .any(|l| l.starts_with("COPY --from=") && l.contains("axn-worker"))
    );
    let cmd: Vec<String> =
        serde_json::from_str(last.iter().find_map(|l| l.strip_prefix("CMD ")).unwrap()).unwrap();
    assert_eq!(cmd[0], "run");
    // Everything the build stage copies exists.
    for l in &lines[..stages[1]] {
        if let Some(rest) = l.strip_prefix("COPY ") {
            let parts: Vec<&str> = rest.split_whitespace().collect();
            for src in &parts[..parts.len() - 1] {
                assert!(
                    Path::new(env!("CARGO_MANIFEST_DIR")).join(src).exists(),
                    "{src}"
                );
            }
        }
    }
}

/// The systemd unit runs the worker and gives it longer than its drain.
#[test]
fn systemd_unit_runs_the_worker_and_waits_for_the_drain() {
    let text = read("deploy/systemd/axn-worker.service");
    let get = |key: &str| {
        text.lines()
            .find_map(|l| l.strip_prefix(&format!("{key}=")))
            .unwrap_or_else(|| panic!("{key} missing"))
    };
    assert!(get("ExecStart").contains("/axn-worker run --config "));
    assert_eq!(get("KillSignal"), "SIGTERM");
    assert_eq!(get("Restart"), "on-failure");
    assert_eq!(get("DynamicUser"), "yes");
    let stop: u64 = get("TimeoutStopSec").parse().unwrap();
    assert!(stop > Settings::defaults().unwrap().shutdown.grace_period_secs);
    for section in ["[Unit]", "[Service]", "[Install]"] {
        assert!(text.contains(section));
    }
}

/// Every axn_ metric in the Grafana dashboard and the alert rules is one the
/// running worker exports; every alert has a severity, a summary and a
/// runbook section that exists in docs/operations.md.
#[tokio::test]
async fn dashboard_and_alerts_use_only_exported_metrics() {
    let app = spawn_app().await;
    let page = app.get("/metrics").await.unwrap().1;
    // Every family is declared by a `# TYPE` line, even before its first
    // labelled series exists; the series names follow from the type.
    let exported: BTreeSet<String> = page
        .lines()
        .filter_map(|l| l.strip_prefix("# TYPE "))
        .flat_map(|l| {
            let (name, kind) = l.split_once(' ').unwrap();
            match kind.trim() {
                "counter" => vec![format!("{name}_total")],
                "histogram" => ["_bucket", "_sum", "_count"]
                    .iter()
                    .map(|s| format!("{name}{s}"))
                    .collect(),
                _ => vec![name.to_owned()],
            }
        })
        .collect();
    assert!(metric(&page, "axn_broker_connected") == 1.0);

    let dashboard: serde_json::Value =
        serde_json::from_str(&read("deploy/monitoring/grafana-dashboard.json")).unwrap();
    let mut exprs: Vec<String> = dashboard["panels"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|p| {
            p["targets"]
                .as_array()
                .unwrap()
                .iter()
                .map(|t| t["expr"].as_str().unwrap().to_owned())
        })
        .collect();
    assert!(exprs.len() >= 10, "the dashboard has its panels");

    let runbook = read("docs/operations.md");
    let rules = yaml_docs("deploy/monitoring/alerts.yaml");
    let rules = rules[0]["groups"][0]["rules"].as_sequence().unwrap();
    assert!(rules.len() >= 3);
    let names: Vec<&str> = rules.iter().map(|r| r["alert"].as_str().unwrap()).collect();
    for wanted in [
        "AxnWorkerDeadLettersGrowing",
        "AxnWorkerNotReady",
        "AxnWorkerRetryRateHigh",
    ] {
        assert!(names.contains(&wanted), "{wanted}");
    }
    for r in rules {
        let name = r["alert"].as_str().unwrap();
        assert!(
            r["labels"]["severity"].is_string() && r["annotations"]["summary"].is_string(),
            "{name}"
        );
        let anchor = r["annotations"]["runbook_url"]
            .as_str()
            .unwrap()
            .split('#')
            .nth(1)
            .unwrap()
            .to_owned();
        assert!(
            runbook
                .lines()
                .any(|l| l.starts_with("## ") && l[3..].trim().to_lowercase() == anchor),
            "{name}: no section for #{anchor}"
        );
        exprs.push(r["expr"].as_str().unwrap().to_owned());
    }

    let mut used = BTreeSet::new();
    for e in &exprs {
        let mut rest = e.as_str();
        while let Some(i) = rest.find("axn_") {
            let name: String = rest[i..]
                .chars()
                .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
                .collect();
            rest = &rest[i + name.len()..];
            used.insert(name);
        }
    }
    for name in &used {
        assert!(
            exported.contains(name),
            "{name} is used by the dashboard or an alert but not exported:\n{exported:?}"
        );
    }
    assert!(used.len() >= 10, "{used:?}");
}
