//! Operating the worker: metrics moving as messages flow, and every operator
//! command (check-config, dlq and parked list/replay, demo, definitions)
//! against the real services.

use std::{
    process::Stdio,
    time::{Duration, Instant},
};

use axn_worker::{
    config::{QueueKind, Secret, Settings},
    ops,
};
use redis::AsyncCommands;
use serde_json::json;

use crate::helpers::{
    DEADLINE, TestApp, header, spawn_app, spawn_app_with, test_settings, unique_id,
};

use crate::helpers::{BIN, CONFIG};

/// The value of one series in a Prometheus text page (0 when absent).
pub fn metric(page: &str, series: &str) -> f64 {
    page.lines()
        .find_map(|l| {
            l.strip_prefix(series)
                .and_then(|rest| rest.strip_prefix(' '))
        })
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(0.0)
}

/// Counters follow the messages: received, acked, dead-lettered by reason,
/// retried, parked, call-log events, handler latency; gauges show the
/// connections; nothing stays in flight.
#[tokio::test]
async fn metrics_move_as_messages_flow() {
    let app = spawn_app().await;
    app.put_binding("s1", 1, 2).await;
    let _: () = app
        .redis
        .clone()
        .set(app.key("PrivateNumber_black:3:0"), "x")
        .await
        .unwrap();
    app.publish(QueueKind::CallRecord, br#"{"subId":"s1","callId":"m1"}"#)
        .await;
    app.publish(
        QueueKind::CallRecord,
        br#"{"subId":"nobody","callId":"m2"}"#,
    )
    .await;
    app.publish(QueueKind::Blacklist, b"not json").await;
    app.publish(
        QueueKind::Blacklist,
        br#"{"private_number":"13470110001","action":"add","userid":3,"type":0}"#,
    )
    .await;
    let _ = app.take(&app.call_log_queue()).await;
    app.take_n(&app.dlq(QueueKind::Blacklist), 2).await;
    app.eventually("all settled", || async {
        let page = app.get("/metrics").await.unwrap().1;
        metric(&page, r#"axn_messages_in_flight{queue="blacklist"}"#) == 0.0
            && metric(&page, r#"axn_messages_acked_total{queue="blacklist"}"#) == 4.0
    })
    .await;
    let (status, page) = app.get("/metrics").await.unwrap();
    assert_eq!(status, 200);
    for (series, value) in [
        (r#"axn_messages_received_total{queue="call_record"}"#, 2.0),
        (r#"axn_messages_acked_total{queue="call_record"}"#, 2.0),
        (r#"axn_messages_parked_total{queue="call_record"}"#, 1.0),
        (r#"axn_call_log_published_total"#, 1.0),
        (r#"axn_call_log_confirm_seconds_count"#, 1.0),
        // blacklist: 1 bad + 1 transient delivered 3 times (max_attempts 3)
        (r#"axn_messages_received_total{queue="blacklist"}"#, 4.0),
        (r#"axn_messages_retried_total{queue="blacklist"}"#, 2.0),
        (
            r#"axn_messages_dead_lettered_total{queue="blacklist",reason="invalid_json"}"#,
            1.0,
        ),
        (
            r#"axn_messages_dead_lettered_total{queue="blacklist",reason="retries_exhausted"}"#,
            1.0,
        ),
        (
            r#"axn_handler_duration_seconds_count{queue="call_record",outcome="applied"}"#,
            1.0,
        ),
        (
            r#"axn_handler_duration_seconds_count{queue="blacklist",outcome="transient"}"#,
            3.0,
        ),
        (r#"axn_messages_in_flight{queue="call_record"}"#, 0.0),
        (r#"axn_broker_connected"#, 1.0),
        (r#"axn_redis_connected"#, 1.0),
        (r#"axn_publish_failures_total{queue="call_record"}"#, 0.0),
    ] {
        assert_eq!(metric(&page, series), value, "{series}\n{page}");
    }
    assert!(page.contains("axn_build_info{version="));
}

/// check-config prints the effective settings with env overrides and no
/// secret; a bad value exits non-zero with the reason, on one line.
#[tokio::test]
async fn check_config_shows_effective_settings_without_secrets() {
    let ok = tokio::process::Command::new(BIN)
        .args(["check-config", "--config", CONFIG])
        .env("AXN__QUEUES__XB_UNBIND__CONCURRENCY", "17")
        .env("AXN__MAPPING__PASSWORD", "hunter2-secret")
        .output()
        .await
        .unwrap();
    assert!(ok.status.success());
    let text = String::from_utf8_lossy(&ok.stdout);
    toml::from_str::<toml::Value>(&text).expect("the output is TOML");
    assert!(text.contains("concurrency = 17"), "{text}");
    assert!(
        !text.contains("hunter2-secret") && !text.contains("guest:guest"),
        "{text}"
    );
    assert!(text.contains(r#"password = "***""#));
    assert!(
        text.contains("amqp://guest:***@127.0.0.1:5672/%2f")
            && text.contains("redis://127.0.0.1:6379/0"),
        "hosts are shown, passwords not: {text}"
    );

    let bad = tokio::process::Command::new(BIN)
        .args(["check-config", "--config", CONFIG])
        .env("AXN__QUEUES__XB_UNBIND__TIMEOUT_SECS", "0")
        .output()
        .await
        .unwrap();
    assert_eq!(bad.status.code(), Some(1));
    let err = String::from_utf8_lossy(&bad.stderr);
    assert!(
        err.contains("queues.xb_unbind.timeout_secs must be at least 1"),
        "{err}"
    );
    assert_eq!(err.lines().count(), 1, "one line, no backtrace: {err}");
}

/// dlq list shows reason, attempts, failure times and the masked body, and
/// leaves the messages where they are; dlq replay sends them back into
/// processing with fresh attempts, where they now succeed.
#[tokio::test]
async fn dlq_list_then_replay_into_processing() {
    let app = spawn_app_with(|s| s.queues.blacklist.max_attempts = 1).await;
    let key = app.key("PrivateNumber_black:21:0");
    let _: () = app.redis.clone().set(&key, "wrong type").await.unwrap();
    for n in ["13470110001", "13470110002", "13470110003"] {
        let body =
            json!({"private_number": n, "action": "add", "userid": 21, "type": 0}).to_string();
        app.publish(QueueKind::Blacklist, body.as_bytes()).await;
    }
    let dlq = app.dlq(QueueKind::Blacklist);
    app.eventually("three dead letters", || async {
        app.queue_len(&dlq).await == 3
    })
    .await;

    let entries = ops::dlq::list(&app.settings, &dlq, 2).await.unwrap();
    assert_eq!(entries.len(), 2);
    assert_eq!(entries[0].reason.as_deref(), Some("retries_exhausted"));
    assert_eq!(entries[0].attempts.as_deref(), Some("1"));
    assert!(entries[0].error.as_deref().unwrap().contains("WRONGTYPE"));
    assert!(entries[0].first_failed_at.is_some() && entries[0].failed_at.is_some());
    assert!(entries[0].body.contains("134****0001") && !entries[0].body.contains("13470110001"));
    assert_eq!(app.queue_len(&dlq).await, 3, "listing consumes nothing");

    // Through the binary, as an operator would.
    let listed = tokio::process::Command::new(BIN)
        .args(["dlq", "list", "blacklist", "--config", CONFIG, "-n", "5"])
        .env(
            "AXN__QUEUES__BLACKLIST__NAME",
            app.queue(QueueKind::Blacklist),
        )
        .output()
        .await
        .unwrap();
    let text = String::from_utf8_lossy(&listed.stdout);
    assert!(
        listed.status.success() && text.matches("reason:        retries_exhausted").count() == 3,
        "{text}"
    );

    let _: () = app.redis.clone().del(&key).await.unwrap();
    let replayed = tokio::process::Command::new(BIN)
        .args(["dlq", "replay", "blacklist", "--config", CONFIG])
        .env(
            "AXN__QUEUES__BLACKLIST__NAME",
            app.queue(QueueKind::Blacklist),
        )
        .stdin(Stdio::null())
        .output()
        .await
        .unwrap();
    assert!(
        replayed.status.success(),
        "{}",
        String::from_utf8_lossy(&replayed.stderr)
    );
    assert!(String::from_utf8_lossy(&replayed.stdout).contains("replayed 3 message(s)"));
    app.eventually("all three applied", || async {
        let n: usize = app.redis.clone().scard(&key).await.unwrap_or(0);
        n == 3
    })
    .await;
    assert_eq!(app.queue_len(&dlq).await, 0);
}

/// A replay killed halfway (kill -9) loses nothing: every message is in the
/// dead-letter queue or in the input queue (possibly both, never neither).
#[tokio::test]
async fn interrupted_replay_loses_nothing() {
    // The queues exist (a worker ran once) but no worker consumes them.
    let id = unique_id();
    let mut app = TestApp::connect(id.clone(), test_settings(&id))
        .await
        .start()
        .await;
    app.stop().await.unwrap();
    let dlq = app.dlq(QueueKind::Blacklist);
    let input = app.queue(QueueKind::Blacklist);
    let total = 3000usize;
    for i in 0..total {
        app.publish_to(
            &dlq,
            format!("{{\"n\":{i}}}").as_bytes(),
            Default::default(),
        )
        .await;
    }
    let mut replay = tokio::process::Command::new(BIN)
        .args(["dlq", "replay", "blacklist", "--config", CONFIG])
        .env("AXN__QUEUES__BLACKLIST__NAME", &input)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let deadline = Instant::now() + DEADLINE;
    while app.queue_len(&input).await < 200 {
        assert!(Instant::now() < deadline, "the replay did not start");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    replay.start_kill().unwrap();
    let _ = replay.wait().await;
    // Unacked messages return to the dead-letter queue when the killed
    // process's connection closes.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let left = app.queue_len(&dlq).await as usize;
    assert!(
        left > 0,
        "interrupted before the end (raise `total` if this machine is very fast)"
    );
    let mut seen = std::collections::HashSet::new();
    for q in [&dlq, &input] {
        let n = app.queue_len(q).await as usize;
        for d in app.take_n(q, n).await {
            let v: serde_json::Value = serde_json::from_slice(&d.data).unwrap();
            seen.insert(v["n"].as_u64().unwrap() as usize);
        }
    }
    assert_eq!(seen.len(), total, "every message is somewhere");
}

/// A call record parked for want of a binding is published once parked
/// replay sends it back after the binding appears.
#[tokio::test]
async fn parked_record_replays_once_its_binding_exists() {
    let app = spawn_app().await;
    app.publish(
        QueueKind::CallRecord,
        br#"{"subId":"late-binding","callId":"p1"}"#,
    )
    .await;
    let parked = app.settings.queues.call_record.unattributed_name();
    app.eventually("parked", || async { app.queue_len(&parked).await == 1 })
        .await;
    let listed = ops::dlq::list(&app.settings, &parked, 10).await.unwrap();
    assert_eq!(listed[0].reason.as_deref(), Some("unattributed"));
    app.put_binding("late-binding", 31, 310).await;
    let progress = |_: u64, _: u64| {};
    let moved = ops::dlq::replay(
        &app.settings,
        &parked,
        &app.queue(QueueKind::CallRecord),
        None,
        &ops::dlq::Filter::default(),
        &progress,
    )
    .await
    .unwrap();
    assert_eq!(moved, 1);
    let event = app.take(&app.call_log_queue()).await;
    assert_eq!(
        serde_json::from_slice::<serde_json::Value>(&event.data).unwrap(),
        json!({"user": 31, "houseid": 310})
    );
    assert!(
        header(&event, "axn-replayed-from").is_none(),
        "events carry no replay headers"
    );
}

/// The demo runs against the local services, shows each step, and cleans up.
#[tokio::test]
async fn demo_tours_every_queue_and_cleans_up() {
    let out = tokio::process::Command::new(BIN)
        .args(["demo", "--config", CONFIG])
        .env("AXN__HTTP__LISTEN", "127.0.0.1:0")
        .output()
        .await
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{text}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // The platform flow from an empty pool: a number bound by the API, an XB
    // binding that expires and is unbound by the worker.
    assert!(
        text.lines()
            .any(|l| l.contains("axn-demo:PrivateNumber_xb ") && l.ends_with(" = (nil)")),
        "the XB binding is unbound:\n{text}"
    );
    for expected in [
        r#"{"user":51218,"houseid":123456} (message_id demo-call-1)"#,
        "小号分配成功:171****6089",
        r#"{"xNumber":"171****6089","bindType":0}"#,
        r#""unboundAt":"#,
        "SMEMBERS axn-demo:PrivateNumber_black:74705:0 = [134****0001]",
        "axn-reason invalid_number",
        // The closing hint names the demo's own queues and keys.
        "The demo's queues (axn-demo.",
        "(axn-demo:*) are removed now; `axn-worker demo --keep` leaves them",
    ] {
        assert!(text.contains(expected), "{expected} missing from\n{text}");
    }
    assert!(
        !text.contains("17111526089") && !text.contains("13812345678"),
        "numbers are masked"
    );
}

/// The committed definitions file is exactly what `definitions` generates for
/// the shipped config, and a broker loaded with generated definitions accepts
/// the worker's own declarations (same arguments).
#[tokio::test]
async fn definitions_match_the_worker_topology() {
    let committed: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/deploy/rabbitmq/definitions.json"
        ))
        .unwrap(),
    )
    .unwrap();
    assert_eq!(
        committed,
        ops::definitions::definitions(&Settings::defaults().unwrap(), "/"),
        "regenerate with `axn-worker definitions`"
    );

    let id = unique_id();
    let mut settings = test_settings(&id);
    settings.mapping.password = Secret::new("x");
    let file = std::env::temp_dir().join(format!("{id}-definitions.json"));
    std::fs::write(
        &file,
        ops::definitions::definitions(&settings, "/").to_string(),
    )
    .unwrap();
    let imported = tokio::process::Command::new("rabbitmqctl")
        .args(["import_definitions", file.to_str().unwrap()])
        .stdin(Stdio::null())
        .output()
        .await
        .unwrap();
    let _ = std::fs::remove_file(&file);
    assert!(
        imported.status.success(),
        "{}",
        String::from_utf8_lossy(&imported.stderr)
    );
    // Declaring over them with other arguments would fail the start.
    let app = TestApp::connect(id, settings).await.start().await;
    app.publish(
        QueueKind::Blacklist,
        br#"{"private_number":"13470110001","action":"add","userid":41,"type":0}"#,
    )
    .await;
    let key = app.key("PrivateNumber_black:41:0");
    app.eventually("applied", || app.is_member(&key, "13470110001"))
        .await;
}

/// `/metrics` serves what the client negotiates: OpenMetrics to a client
/// that asks for it, the Prometheus text format to the rest, which
/// `promtool check metrics` accepts (HELP and TYPE of every counter kept);
/// `promtool check rules` accepts the alert rules. promtool runs when it is
/// installed (`.ci/run` installs it from Debian's prometheus package).
#[tokio::test]
async fn metrics_negotiate_their_format_and_pass_promtool() {
    let app = crate::helpers::spawn_app().await;
    app.publish(QueueKind::Blacklist, b"not json").await;
    app.drained().await;
    let get = |accept: &'static str| {
        let addr = app.addr;
        async move {
            use tokio::io::{AsyncReadExt, AsyncWriteExt};
            let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
            s.write_all(format!("GET /metrics HTTP/1.0\r\nAccept: {accept}\r\n\r\n").as_bytes())
                .await
                .unwrap();
            let mut buf = String::new();
            s.read_to_string(&mut buf).await.unwrap();
            let (head, body) = buf.split_once("\r\n\r\n").unwrap();
            (head.to_lowercase(), body.to_owned())
        }
    };
    let (head, om) =
        get("application/openmetrics-text;version=1.0.0,text/plain;version=0.0.4;q=0.5").await;
    assert!(
        head.contains("content-type: application/openmetrics-text; version=1.0.0"),
        "{head}"
    );
    assert!(om.trim_end().ends_with("# EOF"));
    let (head, text) = get("*/*").await;
    assert!(
        head.contains("content-type: text/plain; version=0.0.4"),
        "{head}"
    );
    assert!(text.contains("# TYPE axn_messages_received_total counter"));
    assert!(!text.contains("# EOF"));
    if std::process::Command::new("promtool")
        .arg("--version")
        .output()
        .is_err()
    {
        println!("promtool is not installed: format checked without it");
        return;
    }
    let mut check = std::process::Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    use std::io::Write as _;
    check
        .stdin
        .take()
        .unwrap()
        .write_all(text.as_bytes())
        .unwrap();
    let out = check.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "promtool check metrics: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    let rules = std::process::Command::new("promtool")
        .args([
            "check",
            "rules",
            concat!(env!("CARGO_MANIFEST_DIR"), "/deploy/monitoring/alerts.yaml"),
        ])
        .output()
        .unwrap();
    assert!(
        rules.status.success(),
        "{}",
        String::from_utf8_lossy(&rules.stdout)
    );
}

/// `axn-worker health` (the Docker HEALTHCHECK): 0 while the worker is
/// ready, 1 with the reason when nothing (ready) answers.
#[tokio::test]
async fn health_command_reports_readiness() {
    let app = crate::helpers::spawn_app().await;
    let run = |addr: String| async move {
        tokio::process::Command::new(BIN)
            .args(["health", "--config", CONFIG, "--addr", &addr])
            .output()
            .await
            .unwrap()
    };
    let ok = run(app.addr.to_string()).await;
    assert_eq!(
        ok.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&ok.stderr)
    );
    assert!(String::from_utf8_lossy(&ok.stdout).starts_with("ready: "));
    let port = crate::lifecycle::spare_port();
    let down = run(format!("127.0.0.1:{port}")).await;
    assert_eq!(down.status.code(), Some(1));
    assert!(
        String::from_utf8_lossy(&down.stderr).contains("no worker answers"),
        "{}",
        String::from_utf8_lossy(&down.stderr)
    );
}

/// A config error names the key as the user wrote it (the environment
/// variable, or the TOML table and key with its file), once, and never the
/// config library's internal path.
#[tokio::test]
async fn config_errors_name_the_key_as_written_once() {
    let env = tokio::process::Command::new(BIN)
        .args(["check-config", "--config", CONFIG])
        .env("AXN__QUEUES__XB_UNBIND__CONCURRENCY", "abc")
        .output()
        .await
        .unwrap();
    assert_eq!(env.status.code(), Some(1));
    let err = String::from_utf8_lossy(&env.stderr);
    assert_eq!(
        err.matches("AXN__QUEUES__XB_UNBIND__CONCURRENCY").count(),
        1,
        "{err}"
    );
    assert_eq!(err.matches("expected u16").count(), 1, "{err}");
    assert!(
        !err.contains("default.") && err.lines().count() == 1,
        "{err}"
    );

    let file = std::env::temp_dir().join(format!("{}-bad.toml", crate::helpers::unique_id()));
    std::fs::write(&file, "[queues.xb_unbind]\nconcurrency = \"x\"\n").unwrap();
    let toml = tokio::process::Command::new(BIN)
        .arg("check-config")
        .arg("--config")
        .arg(&file)
        .output()
        .await
        .unwrap();
    let _ = std::fs::remove_file(&file);
    let err = String::from_utf8_lossy(&toml.stderr);
    assert_eq!(toml.status.code(), Some(1));
    assert_eq!(
        err.matches(&format!(
            "[queues.xb_unbind] concurrency in {}",
            file.display()
        ))
        .count(),
        1,
        "{err}"
    );
    assert!(!err.contains("default."), "{err}");
}

/// `axn_queue_depth` follows the broker: a dead letter shows in its `.dlq`'s
/// depth, read with passive declares.
#[tokio::test]
async fn queue_depth_metrics_follow_the_broker() {
    let app = crate::helpers::spawn_app_with(|s| s.amqp.queue_depth_interval_ms = 100).await;
    app.publish(QueueKind::XbUnbind, b"not json").await;
    app.eventually("the dead letter counted in the .dlq's depth", || async {
        let page = app.get("/metrics").await.unwrap().1;
        metric(&page, r#"axn_queue_depth{queue="xb_unbind",role="dlq"}"#) == 1.0
    })
    .await;
    let page = app.get("/metrics").await.unwrap().1;
    assert_eq!(
        metric(&page, r#"axn_queue_depth{queue="xb_unbind",role="input"}"#),
        0.0
    );
    assert!(page.contains(r#"axn_queue_depth{queue="call_record",role="unattributed"}"#));
    assert!(page.contains(r#"axn_queue_depth{queue="blacklist",role="retry_100ms"}"#));
}

/// `dlq list` summarizes by reason and filters; `dlq purge` deletes only
/// what its filter selects, and only with --yes.
#[tokio::test]
async fn dlq_summary_filters_and_purge() {
    let app = crate::helpers::spawn_app().await;
    let dlq = app.dlq(QueueKind::Blacklist);
    let q = app.queue(QueueKind::Blacklist);
    for (i, body) in [&b"not json"[..], b"{}", b"also not json"]
        .iter()
        .enumerate()
    {
        app.publish_to(
            &q,
            body,
            lapin::BasicProperties::default().with_message_id(format!("m-{i}").into()),
        )
        .await;
    }
    app.eventually("three dead letters", || async {
        app.queue_len(&dlq).await == 3
    })
    .await;
    let cli = |args: &[&str]| {
        let args: Vec<String> = ["dlq"].iter().chain(args).map(|s| s.to_string()).collect();
        let settings = app.settings.clone();
        async move {
            let args: Vec<&str> = args.iter().map(String::as_str).collect();
            crate::helpers::run_cli(&settings, &args).await
        }
    };
    let out = cli(&["list", "blacklist"]).await;
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(text.contains(&format!("{dlq}: 3 message(s)")), "{text}");
    assert!(text.contains("  invalid_json: 2 (first "), "{text}");
    assert!(text.contains("  missing_field: 1 (first "), "{text}");
    let out = cli(&["list", "blacklist", "--reason", "missing_field"]).await;
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains("message id:    m-1") && !text.contains("message id:    m-0"),
        "{text}"
    );

    // Without --yes: the preview its help promises, exit 0, nothing deleted.
    let preview = cli(&["purge", "blacklist", "--reason", "invalid_json"]).await;
    assert_eq!(
        preview.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&preview.stderr)
    );
    assert!(
        String::from_utf8_lossy(&preview.stdout).contains(&format!(
            "would delete 2 of the 3 message(s) in {dlq} (by reason: invalid_json 2); nothing deleted: run again with --yes"
        )),
        "{}",
        String::from_utf8_lossy(&preview.stdout)
    );
    // Times with an offset are read as the instant they name; a time
    // without a zone is refused, not read as UTC.
    let later = cli(&["purge", "blacklist", "--since", "2999-01-01T08:00:00+08:00"]).await;
    assert!(
        String::from_utf8_lossy(&later.stdout).contains("would delete 0 of the 3"),
        "{}",
        String::from_utf8_lossy(&later.stderr)
    );
    let zoneless = cli(&["list", "blacklist", "--since", "2026-12-03T17:28:00"]).await;
    assert_eq!(zoneless.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&zoneless.stderr).contains("with a zone"));
    assert_eq!(
        app.queue_len(&dlq).await,
        3,
        "nothing deleted without --yes"
    );
    let purged = cli(&["purge", "blacklist", "--reason", "invalid_json", "--yes"]).await;
    assert!(String::from_utf8_lossy(&purged.stdout).contains("deleted 2 message(s)"));
    assert_eq!(app.queue_len(&dlq).await, 1);
    let left = app.take(&dlq).await;
    assert_eq!(
        left.properties.message_id().as_ref().map(|m| m.as_str()),
        Some("m-1"),
        "the unselected one stays, untouched"
    );
}

/// `dlq replay`: --dry-run moves nothing; permanent failures are refused
/// unless --include-permanent; a filter selects; a replayed message keeps its
/// history (first failure, attempts so far, replays) and gets its attempts
/// afresh.
#[tokio::test]
async fn dlq_replay_dry_run_permanent_guard_filter_and_history() {
    let id = unique_id();
    let mut app = TestApp::connect(id.clone(), test_settings(&id))
        .await
        .start()
        .await;
    app.stop().await.unwrap(); // nobody consumes: replayed messages stay to be read
    let dlq = app.dlq(QueueKind::Blacklist);
    let input = app.queue(QueueKind::Blacklist);
    for (mid, reason) in [("p-1", "invalid_json"), ("t-1", "retries_exhausted")] {
        let mut h = lapin::types::FieldTable::default();
        let text = |s: &str| lapin::types::AMQPValue::LongString(s.into());
        h.insert("axn-reason".into(), text(reason));
        h.insert(
            "axn-attempts".into(),
            lapin::types::AMQPValue::LongLongInt(3),
        );
        h.insert("axn-first-failed-at".into(), text("2026-11-20T00:00:00Z"));
        h.insert("axn-failed-at".into(), text("2026-11-20T00:05:00Z"));
        app.publish_to(
            &dlq,
            b"{}",
            lapin::BasicProperties::default()
                .with_message_id(mid.into())
                .with_headers(h),
        )
        .await;
    }
    let cli = |args: &[&str]| {
        let args: Vec<String> = ["dlq", "replay", "blacklist"]
            .iter()
            .chain(args)
            .map(|s| s.to_string())
            .collect();
        let settings = app.settings.clone();
        async move {
            let args: Vec<&str> = args.iter().map(String::as_str).collect();
            crate::helpers::run_cli(&settings, &args).await
        }
    };
    // The dry run says what the real run does: with a permanent failure
    // selected and no --include-permanent, nothing.
    let dry = cli(&["--dry-run"]).await;
    assert!(dry.status.success());
    assert!(
        String::from_utf8_lossy(&dry.stdout).contains(
            "would replay nothing: 1 of the 2 selected dead letter(s) failed permanently (by reason: invalid_json 1, retries_exhausted 1)"
        ),
        "{}",
        String::from_utf8_lossy(&dry.stdout)
    );
    let dry = cli(&["--dry-run", "--include-permanent"]).await;
    assert!(
        String::from_utf8_lossy(&dry.stdout).contains("would replay 2 of the 2 message(s)"),
        "{}",
        String::from_utf8_lossy(&dry.stdout)
    );
    let none = cli(&["--reason", "no_such_reason"]).await;
    assert!(none.status.success());
    assert!(
        String::from_utf8_lossy(&none.stdout).contains("0 of the 2 message(s) in"),
        "{}",
        String::from_utf8_lossy(&none.stdout)
    );
    let refused = cli(&[]).await;
    assert_eq!(refused.status.code(), Some(1));
    assert!(
        String::from_utf8_lossy(&refused.stderr).contains("failed permanently (invalid_json 1)")
    );
    assert_eq!(app.queue_len(&dlq).await, 2, "nothing moved");
    let some = cli(&["--reason", "retries_exhausted"]).await;
    assert!(
        some.status.success(),
        "{}",
        String::from_utf8_lossy(&some.stderr)
    );
    assert_eq!(app.queue_len(&dlq).await, 1);
    let replayed = app.take(&input).await;
    assert_eq!(
        replayed
            .properties
            .message_id()
            .as_ref()
            .map(|m| m.as_str()),
        Some("t-1")
    );
    assert_eq!(header(&replayed, "axn-attempts"), None, "attempts afresh");
    assert_eq!(
        header(&replayed, "axn-history-attempts").as_deref(),
        Some("3")
    );
    assert_eq!(
        header(&replayed, "axn-history-first-failed-at").as_deref(),
        Some("2026-11-20T00:00:00Z")
    );
    assert_eq!(header(&replayed, "axn-replay-count").as_deref(), Some("1"));
    let all = cli(&["--include-permanent"]).await;
    assert!(all.status.success());
    assert_eq!(app.queue_len(&dlq).await, 0);
}

/// `retries list`: what waits in the retry queues, why, and when it is due.
#[tokio::test]
async fn retries_list_shows_what_waits_and_when() {
    let app =
        crate::helpers::spawn_app_with(|s| s.queues.blacklist.retry_delays_ms = vec![60_000]).await;
    app.park_in_retry(81, 60_000).await;
    let out = crate::helpers::run_cli(&app.settings, &["retries", "list", "blacklist"]).await;
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        text.contains(".retry.60000ms: 1 message(s), each back after 60000 ms"),
        "{text}"
    );
    assert!(
        text.contains("  due 20") && text.contains("attempts 1  transient: redis:"),
        "{text}"
    );
}

/// `dlq export --unmasked`: refused unless allowed; then the raw bodies, one
/// per line, which `publish` sends back; an audit line names the queue and
/// the count, never the content; the dead letters stay.
#[tokio::test]
async fn unmasked_export_is_guarded_audited_and_republishable() {
    let app = crate::helpers::spawn_app().await;
    let dlq = app.dlq(QueueKind::Blacklist);
    let bad = br#"{"private_number":"13912345678","action":"oops","userid":5,"type":0}"#;
    app.publish(QueueKind::Blacklist, bad).await;
    app.eventually("dead-lettered", || async { app.queue_len(&dlq).await == 1 })
        .await;
    let file = std::env::temp_dir().join(format!("{}-export.jsonl", app.id));
    let path = file.to_string_lossy().into_owned();
    // Removed however the test ends: it holds numbers in full.
    struct Gone(std::path::PathBuf);
    impl Drop for Gone {
        fn drop(&mut self) {
            let _ = std::fs::remove_file(&self.0);
        }
    }
    let _gone = Gone(file.clone());
    let refused = crate::helpers::run_cli(
        &app.settings,
        &["dlq", "export", "blacklist", &path, "--unmasked"],
    )
    .await;
    assert_eq!(refused.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&refused.stderr).contains("unmasked export is off"));
    assert!(!file.exists());

    let out = tokio::process::Command::new(BIN)
        .args([
            "--config",
            CONFIG,
            "dlq",
            "export",
            "blacklist",
            &path,
            "--unmasked",
        ])
        .envs(crate::helpers::env_for(&app.settings))
        .env("AXN__OPERATIONS__ALLOW_UNMASKED_EXPORT", "true")
        .env("AXN__LOG__FORMAT", "json")
        .output()
        .await
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    use std::os::unix::fs::PermissionsExt as _;
    let mode = std::fs::metadata(&file).unwrap().permissions().mode() & 0o777;
    assert_eq!(
        mode, 0o600,
        "numbers in full: the owner's only (was {mode:o})"
    );
    let audit = String::from_utf8_lossy(&out.stderr);
    assert!(
        // (The test's queue name holds a long digit run, masked like any.)
        audit.lines().any(|l| l.contains("dlq-export-unmasked")
            && l.contains("service_exchange1_SetBlackNumber.dlq")
            && l.contains("\"count\":1")),
        "{audit}"
    );
    assert!(
        !audit.contains("oops") && !audit.contains("13912345678"),
        "{audit}"
    );
    let written = std::fs::read_to_string(&file).unwrap();
    assert_eq!(written.lines().count(), 1);
    assert!(written.contains("13912345678"), "raw, unmasked");
    assert_eq!(app.queue_len(&dlq).await, 1, "the dead letter stays");
    // Edited and sent back with publish.
    std::fs::write(&file, written.replace("oops", "add")).unwrap();
    let sent = crate::helpers::run_cli(&app.settings, &["publish", "blacklist", &path]).await;
    assert!(String::from_utf8_lossy(&sent.stdout).contains("published 1 message(s)"));
    let key = app.key("PrivateNumber_black:5:0");
    app.eventually("the fixed message applied", || {
        app.is_member(&key, "13912345678")
    })
    .await;
}

/// A bounded `.dlq` refuses what does not fit (`reject-publish`): the
/// message goes back to its input queue and the refusal is counted as a
/// publish failure; once room is made it lands. Nothing is dropped. The age
/// of the oldest dead letter is read from the head of the queue.
#[tokio::test]
async fn a_full_dead_letter_queue_refuses_and_loses_nothing() {
    let app = spawn_app_with(|s| {
        s.queues.xb_unbind.dlq_max_length = 2;
        s.amqp.queue_depth_interval_ms = 100;
    })
    .await;
    for i in 0..3 {
        app.publish(QueueKind::XbUnbind, format!("not json {i}").as_bytes())
            .await;
    }
    // Shows the last (publish failures, requeues, .dlq depth) read if the
    // wait ends without them.
    let deadline = std::time::Instant::now() + crate::helpers::DEADLINE;
    loop {
        let page = app.get("/metrics").await.unwrap().1;
        let now = (
            metric(&page, r#"axn_publish_failures_total{queue="xb_unbind"}"#),
            metric(&page, r#"axn_messages_requeued_total{queue="xb_unbind"}"#),
            metric(&page, r#"axn_queue_depth{queue="xb_unbind",role="dlq"}"#),
        );
        if now.0 >= 2.0 && now.1 >= 2.0 && now.2 == 2.0 {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the third dead letter was not refused and sent back twice: (publish failures, requeues, .dlq depth) = {now:?}"
        );
        tokio::time::sleep(std::time::Duration::from_millis(25)).await;
    }
    // The oldest dead letter ages; the peek that reads it leaves it there.
    app.eventually("the oldest dead letter is over a second old", || async {
        let page = app.get("/metrics").await.unwrap().1;
        metric(
            &page,
            r#"axn_dead_letter_oldest_age_seconds{queue="xb_unbind",role="dlq"}"#,
        ) >= 1.0
    })
    .await;
    let dlq = app.dlq(QueueKind::XbUnbind);
    let mut bodies: Vec<String> = app
        .take_n(&dlq, 3)
        .await
        .into_iter()
        .map(|d| String::from_utf8(d.data).unwrap())
        .collect();
    bodies.sort();
    assert_eq!(bodies, ["not json 0", "not json 1", "not json 2"]);
    app.drained().await;
    app.eventually("the age reads 0 once the .dlq is empty", || async {
        let page = app.get("/metrics").await.unwrap().1;
        page.contains(r#"axn_dead_letter_oldest_age_seconds{queue="xb_unbind",role="dlq"} 0"#)
    })
    .await;
}
