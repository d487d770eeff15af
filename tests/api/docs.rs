//! The commands the docs print, run as printed against the real services,
//! and their printed answers compared with what the service answers now.
//!
//! The lines are taken from the documents themselves, not copied here, and
//! each runs in `bash` as a reader would type it. Three shell functions map
//! the shipped names onto the test's own, so that the test stays isolated
//! (its own queues, key prefix and port) while the lines stay literal:
//! `cargo run [-q] -- ARGS` runs the built binary with ARGS under the test's
//! settings, `redis-cli` reads keys under the test's prefix where a line
//! names the shipped `4011:1:`, and `curl` reaches the test's worker where a
//! line names 127.0.0.1:8080, localhost:8080 or the runbook's 127.0.0.1:18080. A value the service makes
//! afresh (a subId, a mapping id, a RequestId) is learned from its answer and
//! put in place of the printed one in the lines that follow.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use axn_worker::config::QueueKind;
use serde_json::Value;

use crate::helpers::{BIN, CONFIG, TestApp, WorkerProcess, env_for, test_settings, unique_id};

fn read(path: &str) -> String {
    std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/").to_owned() + path)
        .unwrap_or_else(|e| panic!("{path}: {e}"))
}

/// The lines of the first fenced block after the line that contains
/// `anchor` in `doc`.
fn block_after(doc: &str, anchor: &str) -> Vec<String> {
    let mut lines = doc.lines().skip_while(|l| !l.contains(anchor));
    assert!(lines.next().is_some(), "no line with {anchor:?}");
    let mut lines = lines.skip_while(|l| !l.starts_with("```")).skip(1);
    let mut out = Vec::new();
    for l in lines.by_ref() {
        if l.starts_with("```") {
            return out;
        }
        out.push(l.to_owned());
    }
    panic!("the block after {anchor:?} does not end");
}

/// A shell in which the docs' lines reach this test's worker and names.
struct Shell {
    app: TestApp,
    port: u16,
    /// Printed value -> the value the service made instead.
    learned: BTreeMap<String, String>,
}

impl Shell {
    fn prelude(&self) -> String {
        let prefix = &self.app.settings.redis.key_prefix;
        let port = self.port;
        format!(
            r#"set -o pipefail
cargo() {{ while [ "$#" -gt 0 ] && [ "$1" != "--" ]; do shift; done; shift; "{BIN}" --config "{CONFIG}" "$@"; }}
redis-cli() {{ local a=() x; for x in "$@"; do a+=("${{x//4011:1:/{prefix}}}"); done; command redis-cli "${{a[@]}}"; }}
curl() {{ local a=() x; for x in "$@"; do x="${{x//127.0.0.1:18080/127.0.0.1:{port}}}"; x="${{x//127.0.0.1:8080/127.0.0.1:{port}}}"; a+=("${{x//localhost:8080/127.0.0.1:{port}}}"); done; command curl -sS --max-time 30 "${{a[@]}}"; }}
"#
        )
    }

    /// Runs `line` (after the `vars` lines) and returns its standard output;
    /// a failing command fails the test with what it printed.
    fn run(&self, vars: &[String], line: &str) -> String {
        let (ok, out) = self.bash(vars, line);
        assert!(ok, "{out}");
        out
    }

    /// As `run`, for a line that may fail for now: its standard output.
    fn try_run(&self, vars: &[String], line: &str) -> String {
        self.bash(vars, line).1
    }

    fn bash(&self, vars: &[String], line: &str) -> (bool, String) {
        let mut line = line.to_owned();
        for (printed, made) in &self.learned {
            line = line.replace(printed, made);
        }
        let script = format!("{}{}\n{line}\n", self.prelude(), vars.join("\n"));
        let out = std::process::Command::new("bash")
            .args(["-c", &script])
            .envs(env_for(&self.app.settings))
            .output()
            .expect("bash runs");
        let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
        if out.status.success() {
            return (true, stdout);
        }
        let failed = format!(
            "{line}\nexit {:?}\nstdout: {stdout}\nstderr: {}",
            out.status.code(),
            String::from_utf8_lossy(&out.stderr)
        );
        (false, failed)
    }

    /// `answer` as `printed` says, where `…` stands for anything and a value
    /// the service makes afresh (named by `fresh`) is learned instead of
    /// compared.
    fn agree(&mut self, what: &str, printed: &Value, answer: &Value, fresh: &[&str]) {
        let mut diffs = Vec::new();
        self.walk("", printed, answer, fresh, &mut diffs);
        assert!(
            diffs.is_empty(),
            "{what}\nprinted: {printed}\nanswer:  {answer}\ndiffers at: {diffs:?}"
        );
    }

    fn walk(&mut self, at: &str, p: &Value, a: &Value, fresh: &[&str], diffs: &mut Vec<String>) {
        match (p, a) {
            (Value::String(s), _) if s.contains('…') => {
                let (head, tail) = s.split_once('…').unwrap();
                let ok = a
                    .as_str()
                    .is_some_and(|a| a.starts_with(head) && a.ends_with(tail));
                if !ok {
                    diffs.push(at.to_owned());
                }
            }
            (Value::String(s), Value::String(t)) if self.learned.get(s) == Some(t) => {}
            (Value::String(s), Value::String(t)) if fresh.iter().any(|f| at.ends_with(f)) => {
                if s != t {
                    self.learned.insert(s.clone(), t.clone());
                }
            }
            (Value::Object(p), Value::Object(a)) => {
                let keys: std::collections::BTreeSet<_> = p.keys().chain(a.keys()).collect();
                for k in keys {
                    match (p.get(k), a.get(k)) {
                        (Some(pv), Some(av)) => {
                            self.walk(&format!("{at}.{k}"), pv, av, fresh, diffs)
                        }
                        _ => diffs.push(format!("{at}.{k}")),
                    }
                }
            }
            (Value::Array(p), Value::Array(a)) if p.len() == a.len() => {
                for (i, (pv, av)) in p.iter().zip(a).enumerate() {
                    self.walk(&format!("{at}[{i}]"), pv, av, fresh, diffs);
                }
            }
            _ if p == a => {}
            _ => diffs.push(at.to_owned()),
        }
    }
}

fn json(what: &str, text: &str) -> Value {
    serde_json::from_str(text.trim()).unwrap_or_else(|e| panic!("{what} is not JSON ({e}): {text}"))
}

/// A test's own names, its worker (the real binary, `env` on top), and a
/// shell whose lines reach both.
async fn shell(env: &[(&str, &str)]) -> (Shell, WorkerProcess) {
    shell_with(|_| {}, env).await
}

/// As `shell`, with the test's settings changed by `tweak` first (the
/// cleanup then knows every queue the worker declares).
async fn shell_with(
    tweak: impl FnOnce(&mut axn_worker::config::Settings),
    env: &[(&str, &str)],
) -> (Shell, WorkerProcess) {
    let id = unique_id();
    let mut settings = test_settings(&id);
    tweak(&mut settings);
    let app = TestApp::connect(id, settings).await;
    let worker = WorkerProcess::start_with(&app.settings, env).await;
    let port = worker.port;
    (
        Shell {
            app,
            port,
            learned: BTreeMap::new(),
        },
        worker,
    )
}

/// README's "Try it" walk-through, line by line: the pool import, the MQ176
/// phone change, the two API calls and their printed answers, the subId
/// read from Redis, the call record and its call-log event, the platform's
/// own MQ108 at expiry and the binding moved to `xb_unbound`, the release.
/// The only change to a line: the binding's 30 s become 8 s.
#[tokio::test]
async fn the_readme_walk_through_runs_as_printed() {
    let (mut sh, _worker) = shell(&[]).await;
    let lines = block_after(&read("README.md"), "## Try it");
    // Whole commands (continued lines joined), each with the comment lines
    // that follow it (its printed answer).
    let mut steps: Vec<(String, Vec<String>)> = Vec::new();
    let mut pending = String::new();
    for l in &lines {
        if !pending.is_empty() {
            pending.push_str(l.trim_start());
        } else if l.starts_with('#') || l.trim().is_empty() {
            if let Some((_, after)) = steps.last_mut()
                && !l.trim().is_empty()
            {
                after.push(l.clone());
            }
            continue;
        } else {
            pending = l.clone();
        }
        if pending.ends_with('\\') {
            pending.pop();
            continue;
        }
        steps.push((std::mem::take(&mut pending), Vec::new()));
    }
    let mut vars = Vec::new();
    let mut ran = 0;
    for (cmd, after) in &steps {
        let cmd = cmd.replace("expiration=30", "expiration=8");
        if cmd.starts_with("A=") || cmd.starts_with("B=") {
            vars.push(cmd);
            continue;
        }
        ran += 1;
        if cmd.starts_with("redis-cli HKEYS") {
            let out = sh.run(&vars, &cmd);
            let sub_ids: Vec<&str> = out.split_whitespace().collect();
            assert_eq!(sub_ids.len(), 1, "{cmd}: {out}");
            sh.learned.insert("<subId>".into(), sub_ids[0].into());
            continue;
        }
        if cmd.starts_with("redis-cli HGET") {
            // "30 s later" (8 s here): the expiry's MQ108 reaches the worker.
            let deadline = Instant::now() + Duration::from_secs(30);
            let out = loop {
                let out = sh.run(&vars, &cmd);
                if !out.trim().is_empty() || Instant::now() > deadline {
                    break out;
                }
                tokio::time::sleep(Duration::from_millis(200)).await;
            };
            let moved = json(&cmd, &out);
            assert!(moved.get("unboundAt").is_some(), "{cmd}: {out}");
            continue;
        }
        let out = sh.run(&vars, &cmd);
        if cmd.starts_with("curl") {
            let answer = json(&cmd, &out);
            assert_eq!(answer["ResultCode"], 2000, "{cmd}: {out}");
            for a in after {
                let printed = a.trim_start_matches('#').trim();
                if let Some(part) = printed.strip_prefix("...") {
                    let part = part.trim_end_matches("...");
                    assert!(out.contains(part), "{cmd}\nprinted: {part}\nanswer: {out}");
                } else if printed.starts_with('{') {
                    sh.agree(&cmd, &json("README", printed), &answer, &[]);
                }
            }
        }
        for a in after {
            // "-> {event} waits in <queue>": that event, in the test's queue.
            if let Some(rest) = a.trim_start_matches('#').trim().strip_prefix("-> ") {
                let (event, _) = rest.split_once(" waits in ").expect(rest);
                let queue = sh.app.call_log_queue();
                let got = sh.app.take(&queue).await;
                let got = json("the call-log event", &String::from_utf8_lossy(&got.data));
                sh.agree(&cmd, &json("README", event), &got, &[]);
            }
        }
    }
    assert!(ran >= 8, "the walk-through ran {ran} commands");
}

/// docs/platform-api.md's "Every operation, run": its setup done as the
/// paragraph above it says, then each `$ curl` line run and its answer
/// compared with the printed one (RequestIds and the carrier's subIds are
/// made afresh).
#[tokio::test]
async fn the_platform_api_transcript_runs_as_printed() {
    let (mut sh, worker) = shell(&[]).await;
    let addr = format!("http://127.0.0.1:{}", worker.port);
    let vars = vec![
        format!("A={addr}{}", axn_worker::platform::BASE_A),
        format!("B={addr}{}", axn_worker::platform::BASE_B),
    ];
    // The paragraph's setup, with the commands it names.
    sh.run(
        &vars,
        "echo '17111526089,3,17,1' | cargo run -q -- pool import -",
    );
    for (user, phone) in [(51218, "13800000001"), (74705, "13800000002")] {
        sh.run(
            &vars,
            &format!(
                "echo '{{\"userId\": \"{user}\", \"newPhone\": \"{phone}\", \"oldPhone\": \"\"}}' | cargo run -q -- publish phone_history"
            ),
        );
    }
    let key = "PrivateNumber_user_phone";
    let app = &sh.app;
    app.eventually("both phone changes applied", async || {
        app.hget(key, "51218").await.is_some() && app.hget(key, "74705").await.is_some()
    })
    .await;
    let doc = read("docs/platform-api.md");
    let setup = doc
        .lines()
        .skip_while(|l| !l.starts_with("### Every operation, run"))
        .take_while(|l| !l.starts_with("```"))
        .collect::<Vec<_>>()
        .join(" ");
    for said in [
        "17111526089",
        "17111526090",
        "16500000001",
        "51218",
        "74705",
    ] {
        assert!(setup.contains(said), "the setup paragraph names {said}");
    }
    let first = setup
        .split('`')
        .find(|s| s.starts_with("curl "))
        .expect("the setup paragraph's bind");
    let bound = json(first, &sh.run(&vars, first));
    assert_eq!(bound["ResultMsg"], "小号分配成功:17111526089", "{first}");
    sh.run(
        &vars,
        "printf '17111526090,3,17,1\\n16500000001,1,2,1\\n' | cargo run -q -- pool import -",
    );
    let lines = block_after(&doc, "### Every operation, run");
    let mut ran = 0;
    let mut i = 0;
    while i < lines.len() {
        let Some(cmd) = lines[i].strip_prefix("$ ") else {
            i += 1;
            continue;
        };
        let printed = lines.get(i + 1).expect("an answer follows each command");
        i += 2;
        let out = sh.run(&vars, cmd);
        sh.agree(
            cmd,
            &json("the printed answer", printed),
            &json(cmd, &out),
            &["ax_subid"],
        );
        ran += 1;
    }
    assert!(ran >= 20, "the transcript ran only {ran} commands");
}

/// README's number-mapping example: the worker started with the password
/// the line sets, the two requests, their printed answers (the ids are made
/// afresh per number: the second request asks for the id the first made).
#[tokio::test]
async fn the_readme_mapping_example_runs_as_printed() {
    let lines = block_after(&read("README.md"), "## Number mapping API");
    let start = lines.first().expect("the block starts the worker");
    let (env, rest) = start.split_once(" cargo run -- run").expect(start);
    assert!(rest.is_empty(), "{start}");
    let env: Vec<(&str, &str)> = env
        .split_whitespace()
        .map(|kv| kv.split_once('=').expect(kv))
        .collect();
    let (mut sh, _worker) = shell(&env).await;
    let mut cmd = String::new();
    let mut ran = 0;
    for l in &lines[1..] {
        if let Some(printed) = l.strip_prefix("# ") {
            let out = sh.run(&[], &cmd);
            // The ids PhoneToUID makes are learned; what UIDToPhone answers
            // for them is compared.
            let fresh: &[&str] = if cmd.contains("PhoneToUID") {
                &["Value"]
            } else {
                &[]
            };
            sh.agree(&cmd, &json("README", printed), &json(&cmd, &out), fresh);
            cmd.clear();
            ran += 1;
        } else {
            cmd.push_str(l.trim_start().trim_end_matches('\\'));
        }
    }
    assert_eq!(ran, 2, "both requests ran");
}

/// docs/operations.md's "After a bad deploy" walkthrough, run as written:
/// the worker started with the misspelled exchange and the short retries the
/// paragraph names, three call records of one XB binding published, then
/// each `$` line of its blocks run (again, until it prints what the doc
/// prints or 30 s pass: the doc's outputs are states reached over time),
/// the worker restarted without the variable before "The fix"'s block.
/// The doc's queue names are the shipped ones; the test's are those under
/// its own namespace, and the doc's are read as those. Times and the
/// oldest dead letter's age are compared by form.
#[tokio::test]
async fn the_bad_deploy_walkthrough_runs_as_printed() {
    let doc = read("docs/operations.md");
    let section: Vec<&str> = doc
        .lines()
        .skip_while(|l| !l.starts_with("## After a bad deploy"))
        .skip(1)
        .take_while(|l| !l.starts_with("## "))
        .collect();
    let text = section.join("\n");
    let bad = [
        ("AXN__QUEUES__CALL_RECORD__MAX_ATTEMPTS", "2"),
        ("AXN__QUEUES__CALL_RECORD__RETRY_DELAYS_MS", "[1000]"),
        ("AXN__PUBLISH__CALL_LOG__EXCHANGE", "house_exchange1"),
    ];
    for (k, v) in bad {
        assert!(
            text.contains(&format!("{k}={v}")),
            "the walkthrough sets {k}={v}"
        );
    }
    // The short retries are the test's settings (so that its cleanup knows
    // the retry queue they declare), set through the same variables.
    let (sh, worker) = shell_with(
        |s| {
            let q = s.queues.get_mut(QueueKind::CallRecord);
            q.retry_delays_ms = vec![1000];
            q.max_attempts = 2;
        },
        &[],
    )
    .await;
    drop(worker);
    let port = sh.port;
    let listen = ("AXN__HTTP__LISTEN", format!("127.0.0.1:{port}"));
    let start = |env: &[(&str, &str)]| {
        let mut env = env.to_vec();
        env.push((listen.0, &listen.1));
        env.push(("RUST_LOG", "warn"));
        crate::helpers::spawn_run(&sh.app.settings, port, &env)
    };
    let mut worker = start(&bad[2..]);
    // Blocks of the section, in order: the `$` lines with what they print.
    let mut blocks: Vec<Vec<(String, Vec<String>)>> = Vec::new();
    let mut inside = false;
    for l in &section {
        if l.starts_with("```") {
            inside = !inside;
            if inside {
                blocks.push(Vec::new());
            }
        } else if inside {
            let b = blocks.last_mut().unwrap();
            match l.strip_prefix("$ ") {
                Some(cmd) => b.push((cmd.to_owned(), Vec::new())),
                None => b
                    .last_mut()
                    .expect("a block starts with a command")
                    .1
                    .push(l.to_string()),
            }
        }
    }
    assert!(blocks.len() >= 5, "the walkthrough's blocks");
    sh.app.put_binding("S-walk-1", 51218, 123456).await;
    let records: String = (1..=3)
        .map(|i| format!("{{\"subId\":\"S-walk-1\",\"callId\":\"C-walk-{i}\"}}\n"))
        .collect();
    struct Dir(std::path::PathBuf);
    impl Drop for Dir {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }
    let dir = Dir(std::env::temp_dir().join(format!("axn-docs-{}", sh.app.id)));
    std::fs::create_dir_all(&dir.0).unwrap();
    std::fs::write(dir.0.join("records.jsonl"), records).unwrap();
    let names: Vec<(String, String)> = {
        let shipped = axn_worker::config::Settings::defaults().unwrap();
        let mut v: Vec<(String, String)> = QueueKind::ALL
            .iter()
            .map(|k| (shipped.queues.get(*k).name.clone(), sh.app.queue(*k)))
            .collect();
        v.push((
            shipped.publish.call_log.routing_key.clone(),
            sh.app.call_log_queue(),
        ));
        v
    };
    let vars = vec![
        format!("cd {}", dir.0.display()),
        format!("export {}={}", listen.0, listen.1),
        format!("axn-worker() {{ \"{BIN}\" --config \"{CONFIG}\" \"$@\"; }}"),
    ];
    sh.run(&vars, "axn-worker publish call_record records.jsonl");
    let mut ran = 0;
    for block in &blocks {
        if block
            .first()
            .is_some_and(|(c, _)| c.starts_with("axn-worker health"))
        {
            // "The fix": SIGTERM, and the worker started without the variable.
            crate::helpers::sigterm(&worker);
            let status = tokio::time::timeout(Duration::from_secs(30), worker.wait())
                .await
                .expect("stops on SIGTERM")
                .unwrap();
            assert!(status.success(), "{status}");
            worker = start(&[]);
        }
        for (cmd, printed) in block {
            let mut cmd = cmd.replace("grep GetPhoneWriteLog", "grep -F GetPhoneWriteLog");
            for (doc_name, own) in &names {
                if !cmd.contains(own.as_str()) {
                    cmd = cmd.replace(doc_name.as_str(), own);
                }
            }
            // The doc's grep for the call-log queue names the shipped queue's
            // tail: the test's own queue, not the other tests' on this broker.
            cmd = cmd.replace(
                "grep -F GetPhoneWriteLog",
                &format!("grep -F {}", sh.app.call_log_queue()),
            );
            // A block's "..." ends what it shows of a longer output.
            let whole = !printed.iter().any(|l| l == "...");
            let printed: Vec<String> = printed
                .iter()
                .take_while(|l| l.as_str() != "...")
                .map(|l| {
                    let mut l = l.clone();
                    for (doc_name, own) in &names {
                        if !l.contains(own.as_str()) {
                            l = l.replace(doc_name.as_str(), own);
                        }
                    }
                    l
                })
                .collect();
            let deadline = Instant::now() + Duration::from_secs(30);
            loop {
                // A command may fail while the state it shows is on its way
                // (`health` before the worker is ready): it is run again.
                let out = sh.try_run(&vars, &cmd);
                let got: Vec<&str> = out.lines().collect();
                let same = (got.len() == printed.len() || !whole && got.len() > printed.len())
                    && printed.iter().zip(&got).all(|(p, g)| same_by_form(p, g));
                if same {
                    break;
                }
                assert!(
                    Instant::now() < deadline,
                    "{cmd}\nprinted:\n{}\nprints:\n{out}",
                    printed.join("\n")
                );
                tokio::time::sleep(Duration::from_millis(300)).await;
            }
            ran += 1;
        }
    }
    assert!(ran >= 8, "the walkthrough ran only {ran} commands");
    drop(worker);
}

/// A printed line and an output line agree: equal, but for RFC 3339 times
/// (any time) and a dead letter's age (any number; 0 only where it says 0).
fn same_by_form(printed: &str, got: &str) -> bool {
    fn form(l: &str) -> String {
        let mut out = String::new();
        let mut rest = l;
        while let Some(c) = rest.chars().next() {
            let t = &rest[..rest.len().min(20)];
            let is_time = t.len() == 20
                && t.char_indices().all(|(i, c)| match i {
                    4 | 7 => c == '-',
                    10 => c == 'T',
                    13 | 16 => c == ':',
                    19 => c == 'Z',
                    _ => c.is_ascii_digit(),
                });
            if is_time {
                out.push_str("<time>");
                rest = &rest[20..];
            } else {
                out.push(c);
                rest = &rest[c.len_utf8()..];
            }
        }
        if let Some((head, age)) = out.rsplit_once("} ")
            && head.starts_with("axn_dead_letter_oldest_age_seconds")
            && age.parse::<f64>().is_ok_and(|a| a > 0.0)
        {
            return format!("{head}}} <age>");
        }
        out
    }
    form(printed) == form(got)
}
