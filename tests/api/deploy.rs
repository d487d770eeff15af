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
    // KEDA owns the replica count: the Deployment must not set one (an apply
    // would reset what KEDA scaled to), and KEDA keeps at least one.
    assert!(
        deployment["spec"]["replicas"].is_null(),
        "replicas left to KEDA"
    );
    assert!(
        kind(&docs, "ScaledObject")["spec"]["minReplicaCount"]
            .as_u64()
            .unwrap_or(0)
            >= 1
    );
    let pod = &deployment["spec"]["template"]["spec"];
    let c = &pod["containers"][0];
    assert_eq!(
        c["livenessProbe"]["httpGet"]["path"].as_str(),
        Some("/healthz")
    );
    // Started once everything came up; ready (in the Service) while the
    // APIs can answer, so a broker outage does not take them down.
    assert_eq!(
        c["startupProbe"]["httpGet"]["path"].as_str(),
        Some("/readyz")
    );
    assert_eq!(
        c["readinessProbe"]["httpGet"]["path"].as_str(),
        Some("/readyz/api")
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
    // A writable scratch volume for operator commands (dlq export) under the
    // read-only root filesystem.
    assert_eq!(
        c["securityContext"]["readOnlyRootFilesystem"].as_bool(),
        Some(true)
    );
    assert!(
        c["volumeMounts"]
            .as_sequence()
            .unwrap()
            .iter()
            .any(|m| m["mountPath"] == "/scratch"
                && pod["volumes"]
                    .as_sequence()
                    .unwrap()
                    .iter()
                    .any(|v| v["name"] == m["name"] && v["emptyDir"].is_mapping())),
        "an emptyDir at /scratch"
    );
    assert_eq!(args, ["run", "--config", &format!("{mount}/config.toml")]);
    assert_eq!(
        pod["volumes"][0]["configMap"]["name"],
        kind(&docs, "ConfigMap")["metadata"]["name"]
    );

    // The Secret is an example beside the kustomization, never in it: an
    // apply -k would overwrite the real one with CHANGE-ME.
    assert!(
        docs.iter().all(|d| d["kind"].as_str() != Some("Secret")),
        "no Secret in kustomization.yaml's resources"
    );
    let example = yaml_docs("deploy/k8s/secret.example.yaml");
    let secret = kind(&example, "Secret");
    // The Secret is mounted as files, each named by an AXN__<KEY>_FILE
    // variable of a key the worker reads from a file, and readable by the
    // pod's group.
    let volume = pod["volumes"]
        .as_sequence()
        .unwrap()
        .iter()
        .find(|v| v["secret"].is_mapping())
        .expect("the Secret is a volume");
    assert_eq!(volume["secret"]["secretName"], secret["metadata"]["name"]);
    assert_eq!(volume["secret"]["defaultMode"].as_u64(), Some(0o440));
    assert_eq!(
        pod["securityContext"]["fsGroup"],
        pod["securityContext"]["runAsGroup"]
    );
    let mount = c["volumeMounts"]
        .as_sequence()
        .unwrap()
        .iter()
        .find(|m| m["name"] == volume["name"])
        .expect("the Secret volume is mounted");
    let dir = mount["mountPath"].as_str().unwrap();
    let env: Vec<(&str, &str)> = c["env"]
        .as_sequence()
        .unwrap()
        .iter()
        .map(|e| (e["name"].as_str().unwrap(), e["value"].as_str().unwrap()))
        .collect();
    for (var, key) in [
        ("AXN__AMQP__URL_FILE", "amqp-url"),
        ("AXN__REDIS__URL_FILE", "redis-url"),
        ("AXN__MAPPING__PASSWORD_FILE", "mapping-password"),
        ("AXN__PLATFORM__BEARER_TOKEN_FILE", "platform-bearer-token"),
    ] {
        assert!(
            env.contains(&(var, &format!("{dir}/{key}"))),
            "{var} names {dir}/{key}"
        );
        assert!(secret["stringData"][key].is_string(), "Secret lacks {key}");
        assert!(
            volume["secret"]["items"]
                .as_sequence()
                .unwrap()
                .iter()
                .any(|i| i["key"] == key && i["path"] == key),
            "{key} is mounted as {key}"
        );
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
    let health = text
        .lines()
        .skip_while(|l| !l.starts_with("HEALTHCHECK"))
        .nth(1)
        .expect("a HEALTHCHECK");
    assert!(
        health.contains(r#"["/usr/local/bin/axn-worker", "health"]"#),
        "{health}"
    );
    // The image's CMD (the last one: HEALTHCHECK has its own).
    let cmd: Vec<String> = serde_json::from_str(
        last.iter()
            .rev()
            .find_map(|l| l.strip_prefix("CMD "))
            .unwrap(),
    )
    .unwrap();
    assert_eq!(cmd[0], "run");
    // The build stage copies what the workspace needs to build: every member
    // and every patched crate of Cargo.toml.
    let manifest: toml::Value = toml::from_str(&read("Cargo.toml")).unwrap();
    let mut needed: Vec<String> = manifest["workspace"]["members"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|m| m.as_str())
        .filter(|m| *m != ".")
        .map(str::to_owned)
        .collect();
    for patch in manifest["patch"]["crates-io"].as_table().unwrap().values() {
        let path = patch["path"].as_str().unwrap();
        needed.push(path.split('/').next().unwrap().to_owned());
    }
    for dir in needed {
        assert!(
            lines[..stages[1]].iter().any(
                |l| l.starts_with("COPY ") && l.split_whitespace().nth(1) == Some(dir.as_str())
            ),
            "the build stage copies {dir}"
        );
    }
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

/// `systemd-analyze security` rates the unit's sandbox: at most 2.0 ("OK";
/// it was 5.1 MEDIUM before the hardening). Skipped where systemd-analyze
/// is not installed.
#[test]
fn the_systemd_unit_is_hardened() {
    let Ok(out) = std::process::Command::new("systemd-analyze")
        .args(["security", "--offline=true", "--no-pager"])
        .arg(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/deploy/systemd/axn-worker.service"
        ))
        .output()
    else {
        eprintln!("systemd-analyze not installed: skipped");
        return;
    };
    let text = String::from_utf8_lossy(&out.stdout);
    let score: f64 = text
        .lines()
        .find_map(|l| {
            l.split("Overall exposure level for axn-worker.service: ")
                .nth(1)
        })
        .and_then(|rest| rest.split_whitespace().next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| {
            panic!(
                "no score in: {text}{}",
                String::from_utf8_lossy(&out.stderr)
            )
        });
    assert!(score <= 2.0, "exposure {score}: {text}");
    for key in [
        "UMask=0077",
        "CapabilityBoundingSet=",
        "RestrictNamespaces=yes",
        "SystemCallArchitectures=native",
        "ProtectProc=invisible",
    ] {
        assert!(
            read("deploy/systemd/axn-worker.service")
                .lines()
                .any(|l| l == key),
            "{key}"
        );
    }
}

/// Every axn_ metric in the Grafana dashboard and the alert rules is one the
/// running worker exports; every alert has a severity, a summary and a
/// runbook section that exists in docs/operations.md.
#[tokio::test]
async fn dashboard_and_alerts_use_only_exported_metrics() {
    let app = spawn_app().await;
    // The queue-depth families have series (and so appear) once the first
    // probe has read the broker, which a loaded machine may not have done yet.
    app.eventually("the first queue-depth probe", || async {
        let page = app.get("/metrics").await.unwrap().1;
        page.contains("axn_queue_depth{") && page.contains("axn_dead_letter_oldest_age_seconds{")
    })
    .await;
    let page = app.get("/metrics").await.unwrap().1;
    // Every family is declared by a `# TYPE` line, even before its first
    // labelled series exists; the series names follow from the type.
    let exported: BTreeSet<String> = page
        .lines()
        .filter_map(|l| l.strip_prefix("# TYPE "))
        .flat_map(|l| {
            let (name, kind) = l.split_once(' ').unwrap();
            match kind.trim() {
                // OpenMetrics names the family, Prometheus text the series.
                "counter" if name.ends_with("_total") => vec![name.to_owned()],
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
    // Series that exist only where their feature is configured: the
    // certificate expiry needs TLS (tls::https_with_a_certificate_... checks
    // the worker exports it then).
    let configured_only = ["axn_tls_certificate_expiry_timestamp_seconds"];
    for name in &used {
        assert!(
            exported.contains(name) || configured_only.contains(&name.as_str()),
            "{name} is used by the dashboard or an alert but not exported:\n{exported:?}"
        );
    }
    assert!(used.len() >= 10, "{used:?}");
}

/// The unit's install recipe, run as written (under a temporary root instead
/// of /), then its ExecStart as an unprivileged user, as `DynamicUser=yes`
/// runs it: the worker must read its config and become ready.
#[tokio::test]
async fn systemd_recipe_runs_as_an_unprivileged_user() {
    let root = tempdir("systemd");
    let unit = read("deploy/systemd/axn-worker.service");
    let remap = |p: &str| -> String {
        if p.starts_with('/') && p != "/dev/null" {
            format!("{}{p}", root.display())
        } else if p == "target/release/axn-worker" {
            crate::helpers::BIN.to_owned()
        } else if p == "config.toml" {
            format!("{}/config.toml", env!("CARGO_MANIFEST_DIR"))
        } else {
            p.to_owned()
        }
    };
    let installs: Vec<Vec<String>> = unit
        .lines()
        .filter_map(|l| l.trim_start_matches('#').trim().strip_prefix("install "))
        .map(|l| {
            l.split('#')
                .next()
                .unwrap()
                .split_whitespace()
                .map(remap)
                .collect()
        })
        .collect();
    assert!(
        installs.len() >= 2,
        "the recipe installs the binary and the config"
    );
    // What every system has already.
    for dir in ["usr/local/bin", "etc"] {
        std::fs::create_dir_all(root.join(dir)).unwrap();
    }
    for args in &installs {
        let status = std::process::Command::new("install")
            .args(args)
            .status()
            .unwrap();
        assert!(status.success(), "install {args:?}");
    }
    let exec = unit
        .lines()
        .find_map(|l| l.strip_prefix("ExecStart="))
        .unwrap();
    let argv: Vec<String> = exec.split_whitespace().map(remap).collect();
    let id = crate::helpers::unique_id();
    let settings = crate::helpers::test_settings(&id);
    let app = crate::helpers::TestApp::connect(id, settings.clone()).await;
    let port = crate::lifecycle::spare_port();
    // LoadCredential= as systemd does it: the operator's file (root only)
    // copied into the service's credentials directory, readable by it;
    // Environment= with %d that directory.
    let credentials = root.join("run/credentials/axn-worker.service");
    std::fs::create_dir_all(&credentials).unwrap();
    let mut env: Vec<(String, String)> = crate::helpers::env_for(&settings)
        .into_iter()
        .filter(|(k, _)| k != "AXN__AMQP__URL")
        .collect();
    for l in unit.lines() {
        if let Some(spec) = l.strip_prefix("LoadCredential=") {
            let (name, path) = spec.split_once(':').unwrap();
            let source = remap(path);
            assert!(
                std::path::Path::new(&source).exists(),
                "the recipe installs {path}"
            );
            // The operator writes the secret into the file the recipe made.
            assert_eq!(name, "amqp-url", "a credential the test knows how to fill");
            std::fs::write(&source, settings.amqp.url.to_env()).unwrap();
            let copy = credentials.join(name);
            std::fs::copy(&source, &copy).unwrap();
            std::fs::set_permissions(&copy, std::os::unix::fs::PermissionsExt::from_mode(0o444))
                .unwrap();
        }
        if let Some(assignment) = l.strip_prefix("Environment=") {
            let (k, v) = assignment.split_once('=').unwrap();
            env.push((
                k.to_owned(),
                v.replace("%d", &credentials.to_string_lossy()),
            ));
        }
    }
    assert!(
        env.iter().any(|(k, _)| k == "AXN__AMQP__URL_FILE"),
        "the unit gives the broker URL as a credential"
    );
    let mut child = tokio::process::Command::new("setpriv")
        .args(["--reuid=65534", "--regid=65534", "--clear-groups", "--"])
        .args(&argv)
        .envs(env)
        .env("AXN__HTTP__LISTEN", format!("127.0.0.1:{port}"))
        .stderr(std::process::Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let addr: std::net::SocketAddr = ([127, 0, 0, 1], port).into();
    let deadline = std::time::Instant::now() + crate::helpers::DEADLINE;
    loop {
        if let Ok((200, _)) = crate::helpers::try_get(addr, "/readyz").await {
            break;
        }
        if let Ok(Some(status)) = child.try_wait() {
            let mut err = String::new();
            use tokio::io::AsyncReadExt as _;
            let _ = child.stderr.take().unwrap().read_to_string(&mut err).await;
            panic!("the worker exited ({status}) as nobody: {err}");
        }
        assert!(std::time::Instant::now() < deadline, "not ready as nobody");
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    let pid = child.id().unwrap().to_string();
    std::process::Command::new("kill")
        .args(["-TERM", &pid])
        .status()
        .unwrap();
    assert_eq!(child.wait().await.unwrap().code(), Some(0));
    drop(app);
}

/// The runbook's `kubectl exec deploy/axn-worker -- axn-worker <command>`:
/// the image's environment, working directory and user, its config where the
/// image puts it (under a temporary root here), and an operator command.
#[test]
fn kubectl_exec_commands_find_the_config() {
    let root = tempdir("image");
    let text = read("deploy/Dockerfile");
    let runtime = &text[text.rfind("\nFROM ").unwrap()..];
    let remap = |p: &str| {
        p.replace(
            "/etc/axn-worker",
            &format!("{}/etc/axn-worker", root.display()),
        )
    };
    // COPY config.toml <dest>, as the image does.
    let dest = runtime
        .lines()
        .find_map(|l| l.strip_prefix("COPY config.toml "))
        .expect("the image holds the config");
    let dest = remap(dest.trim());
    std::fs::create_dir_all(std::path::Path::new(&dest).parent().unwrap()).unwrap();
    std::fs::copy(concat!(env!("CARGO_MANIFEST_DIR"), "/config.toml"), &dest).unwrap();
    // ENV (continued lines joined) and WORKDIR.
    let joined = runtime.replace("\\\n", " ");
    let mut env = Vec::new();
    for line in joined.lines().filter_map(|l| l.trim().strip_prefix("ENV ")) {
        for pair in line.split_whitespace() {
            let (k, v) = pair.split_once('=').unwrap();
            env.push((k.to_owned(), remap(v)));
        }
    }
    let workdir = remap(
        runtime
            .lines()
            .find_map(|l| l.strip_prefix("WORKDIR "))
            .expect("the image sets a working directory")
            .trim(),
    );
    let user = runtime
        .lines()
        .find_map(|l| l.strip_prefix("USER "))
        .unwrap()
        .trim();
    let (uid, gid) = user.split_once(':').unwrap_or((user, user));
    let check = |extra: &[(&str, &str)]| {
        std::process::Command::new("setpriv")
            .args([
                &format!("--reuid={uid}"),
                &format!("--regid={gid}"),
                "--clear-groups",
                "--",
            ])
            .arg(crate::helpers::BIN)
            .arg("check-config")
            .env_clear()
            .env("PATH", "/usr/local/bin:/usr/bin:/bin")
            .envs(env.clone())
            .envs(extra.iter().copied())
            .current_dir(&workdir)
            .output()
            .unwrap()
    };
    // The image listens on 0.0.0.0: without credentials for the binding
    // API it refuses (as `run` does), naming the fix.
    let open = check(&[]);
    let why = String::from_utf8_lossy(&open.stderr);
    assert_eq!(open.status.code(), Some(1), "{why}");
    assert!(
        why.contains("without credentials on 0.0.0.0:8080")
            && why.contains("AXN__PLATFORM__BEARER_TOKEN"),
        "{why}"
    );
    // With the Secret's credentials as files, as the Deployment runs it.
    let token = tempdir("token");
    let token_file = token.join("platform-bearer-token");
    std::fs::write(&token_file, "a-token\n").unwrap();
    let token_file = token_file.to_string_lossy().into_owned();
    let out = check(&[("AXN__PLATFORM__BEARER_TOKEN_FILE", token_file.as_str())]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    assert!(stderr.contains("configuration OK"), "{stderr}");
    assert!(
        !stderr.contains("warning:"),
        "the shipped config agrees with itself: {stderr}"
    );
}

/// A fresh directory under the system's temporary directory, readable by
/// all, removed when dropped (a failing test included).
struct TempRoot(std::path::PathBuf);

impl std::ops::Deref for TempRoot {
    type Target = std::path::Path;
    fn deref(&self) -> &std::path::Path {
        &self.0
    }
}

impl Drop for TempRoot {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn tempdir(what: &str) -> TempRoot {
    let dir = std::env::temp_dir().join(format!("axn-{what}-{}", crate::helpers::unique_id()));
    std::fs::create_dir_all(&dir).unwrap();
    TempRoot(dir)
}
