//! The `axn-worker` binary itself: config file + `AXN__` environment,
//! `publish`, and `run` stopping with exit 0 on SIGTERM.

use std::{
    process::Stdio,
    time::{Duration, Instant},
};

use axn_worker::config::{QueueKind, Settings};
use redis::AsyncCommands;

use tokio::io::AsyncWriteExt;

use crate::{
    helpers::{
        BIN, CONFIG, DEADLINE, TestApp, WorkerProcess, env_for, spawn_app, test_settings, unique_id,
    },
    xb_unbind::{SEED_UNBIND, binding},
};

/// `publish xb_unbind -` sends the seed message from stdin, confirmed, and
/// the running worker applies it: the README's newcomer path.
#[tokio::test]
async fn publish_command_feeds_the_worker() {
    let app = spawn_app().await;
    let _: () = app
        .redis
        .clone()
        .hset(
            app.key("PrivateNumber_xb"),
            "1000039976446302",
            binding("1000039976446302", 51218, 1),
        )
        .await
        .unwrap();
    let mut child = tokio::process::Command::new(BIN)
        .args(["--config", CONFIG, "publish", "xb_unbind", "-"])
        .envs(env_for(&app.settings))
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(SEED_UNBIND.as_bytes())
        .await
        .unwrap();
    let out = child.wait_with_output().await.unwrap();
    assert!(out.status.success());
    assert!(String::from_utf8_lossy(&out.stdout).contains("published 1 message(s)"));
    app.eventually("binding unbound", || async {
        app.hget("PrivateNumber_xb_unbound", "1000039976446302")
            .await
            .is_some()
    })
    .await;

    let bad = tokio::process::Command::new(BIN)
        .args(["--config", CONFIG, "publish", "nope"])
        .output()
        .await
        .unwrap();
    assert!(!bad.status.success());
    assert!(
        String::from_utf8_lossy(&bad.stderr)
            .contains("use one of xb_unbind, blacklist, phone_history, call_record")
    );
}

/// `axn-worker run` as a process: becomes ready with config.toml and env
/// overrides, and exits 0 on SIGTERM.
#[tokio::test]
async fn run_exits_zero_on_sigterm() {
    // Unique names, but the shipped retry delays: the process declares the
    // queues the cleanup (TestApp's drop) then removes.
    let id = unique_id();
    let mut settings = test_settings(&id);
    let shipped = Settings::defaults().unwrap();
    for kind in QueueKind::ALL {
        let q = settings.queues.get_mut(kind);
        q.retry_delays_ms = shipped.queues.get(kind).retry_delays_ms.clone();
    }
    let _cleanup = TestApp::connect(id, settings.clone()).await;
    let mut worker = WorkerProcess::start(&settings).await;
    worker.signal("TERM");
    let status = tokio::time::timeout(Duration::from_secs(30), worker.child.wait())
        .await
        .expect("exits in time")
        .unwrap();
    assert_eq!(status.code(), Some(0));
}

/// Text logs written to a file (journald, a redirect) carry no ANSI colour
/// codes: colours only on a terminal.
#[tokio::test]
async fn text_logs_to_a_file_have_no_colour_codes() {
    let id = unique_id();
    let settings = test_settings(&id);
    let app = TestApp::connect(id, settings.clone()).await;
    let log = std::env::temp_dir().join(format!("{}-log.txt", app.id));
    let port = crate::lifecycle::spare_port();
    let mut worker = tokio::process::Command::new(BIN)
        .args(["run", "--config", CONFIG])
        .envs(env_for(&settings))
        .env("AXN__HTTP__LISTEN", format!("127.0.0.1:{port}"))
        .env("AXN__LOG__FORMAT", "text")
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&log).unwrap())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let deadline = Instant::now() + DEADLINE;
    while !std::fs::read_to_string(&log)
        .unwrap_or_default()
        .contains("consuming")
    {
        assert!(Instant::now() < deadline, "the worker did not start");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let pid = worker.id().unwrap().to_string();
    let _ = std::process::Command::new("kill")
        .args(["-TERM", &pid])
        .status();
    let _ = worker.wait().await;
    let text = std::fs::read_to_string(&log).unwrap();
    let _ = std::fs::remove_file(&log);
    assert!(text.contains(" INFO "), "{text}");
    assert!(
        !text.contains('\u{1b}'),
        "no escape sequences in a file: {text:?}"
    );
}

/// With `[log] format = "json"` every log line is a JSON object, and across
/// messages full of phone numbers (applied, dead-lettered, retried), at debug
/// level for the worker, no full number appears in any line.
#[tokio::test]
async fn logs_are_json_and_never_show_a_full_number() {
    let id = unique_id();
    let mut settings = test_settings(&id);
    settings.queues.blacklist.max_attempts = 2;
    let app = TestApp::connect(id, settings.clone()).await;
    let log = std::env::temp_dir().join(format!("{}-log.jsonl", app.id));
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let mut worker = tokio::process::Command::new(BIN)
        .args(["run", "--config", CONFIG])
        .envs(env_for(&settings))
        .env("AXN__HTTP__LISTEN", format!("127.0.0.1:{port}"))
        .env("AXN__LOG__FORMAT", "json")
        .env("AXN__MAPPING__PASSWORD", "s3cret")
        .env("RUST_LOG", "info,axn_worker=debug")
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&log).unwrap())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let deadline = Instant::now() + DEADLINE;
    // Ready once every queue's consumer has logged "consuming".
    while std::fs::read_to_string(&log)
        .unwrap_or_default()
        .matches("\"consuming\"")
        .count()
        < 4
    {
        assert!(Instant::now() < deadline, "the worker did not start");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    app.put_binding("1000039976446302", 51218, 1).await;
    let _: () = app
        .redis
        .clone()
        .set(app.key("PrivateNumber_black:9:0"), "wrong type")
        .await
        .unwrap();
    let numbers = [
        "17111526089",
        "13470110001",
        "13812345678",
        "13998765432",
        "13700051234",
        // Where the input puts them: an id field, separators, a Mode.
        "13911112222",
        "139-2222-3333",
        "13922223333",
        "139 4444 5555",
        "13944445555",
        // Split by dots, underscores, slashes; full-width digits.
        "138.0000.0001",
        "13800000001",
        "１３８０００００００２",
        "13800000002",
        "138_0000_0003",
        "13800000003",
        "138/0000/0004",
        "13800000004",
    ];
    for (kind, body) in [
        (QueueKind::XbUnbind, r#"{"subId":"1000039976446302","telX":"17111526089","telA":"13470110001","telB":"13700051234"}"#.to_owned()),
        (QueueKind::XbUnbind, r#"{"subId":"nope","telX":"17111526089x"}"#.to_owned()),
        (QueueKind::Blacklist, r#"{"private_number":"13470110001","action":"add","userid":1,"type":0}"#.to_owned()),
        (QueueKind::Blacklist, r#"{"private_number":"13470110001","action":"13470110001","userid":1,"type":0}"#.to_owned()),
        (QueueKind::Blacklist, r#"{"private_number":"13470110001","action":"add","userid":9,"type":0}"#.to_owned()),
        (QueueKind::PhoneHistory, r#"{"userId":1,"newPhone":"13812345678","oldPhone":"13998765432"}"#.to_owned()),
        (QueueKind::CallRecord, r#"{"subId":"none","callId":"c1","telA":"13470110001"}"#.to_owned()),
        (QueueKind::CallRecord, r#"{"subId":"13911112222","callId":"13911112222"}"#.to_owned()),
        (QueueKind::XbUnbind, r#"{"subId":"13911112222","telX":"139-2222-3333"}"#.to_owned()),
        (QueueKind::Blacklist, r#"{"private_number":"139-2222-3333","action":"139 4444 5555","userid":1,"type":0}"#.to_owned()),
        (QueueKind::Blacklist, r#"{"private_number":"１３８０００００００２","action":"138.0000.0001","userid":1,"type":0}"#.to_owned()),
        (QueueKind::CallRecord, r#"{"subId":"138_0000_0003","callId":"138/0000/0004"}"#.to_owned()),
    ] {
        app.publish(kind, body.as_bytes()).await;
    }
    // A message id on the delivery shows on its log lines (to match them
    // with its dead letter).
    app.publish_to(
        &app.queue(QueueKind::XbUnbind),
        b"not json",
        lapin::BasicProperties::default().with_message_id("mid-4242".into()),
    )
    .await;
    let answer = crate::helpers::post(
        ([127, 0, 0, 1], port).into(),
        "/number-mapping",
        br#"{"Numbers":["13911112222"],"Mode":"139 4444 5555"}"#,
        Some(("tccc", "s3cret")),
    )
    .await;
    assert_eq!(answer.json()["Code"], 1002, "{}", answer.body);
    assert!(!answer.body.contains("139 4444 5555"), "{}", answer.body);
    app.eventually("the retried one is dead-lettered", || async {
        app.queue_len(&app.dlq(QueueKind::Blacklist)).await == 4
    })
    .await;
    app.drained().await;
    let pid = worker.id().unwrap().to_string();
    assert!(
        tokio::process::Command::new("kill")
            .args(["-TERM", &pid])
            .status()
            .await
            .unwrap()
            .success()
    );
    assert_eq!(worker.wait().await.unwrap().code(), Some(0));

    let text = std::fs::read_to_string(&log).unwrap();
    let _ = std::fs::remove_file(&log);
    let lines: Vec<&str> = text.lines().filter(|l| !l.trim().is_empty()).collect();
    assert!(lines.len() >= 10, "{text}");
    for line in &lines {
        let v: serde_json::Value =
            serde_json::from_str(line).unwrap_or_else(|e| panic!("not JSON ({e}): {line}"));
        assert!(
            v["level"].is_string() && v["timestamp"].is_string(),
            "{line}"
        );
        for n in numbers {
            assert!(!line.contains(n), "full number {n} in a log line: {line}");
        }
    }
    assert!(
        lines.iter().any(|l| l.contains("mid-4242")
            && l.contains("xb_unbind")
            && l.contains("dead-lettered")),
        "the message id and queue on the dead letter's log line"
    );
    for expected in [
        "permanent failure: dead-lettered",
        "transient failure: retrying",
        "parked",
    ] {
        assert!(text.contains(expected), "{expected} logged");
    }
}

/// An operator command whose reader went away (`axn-worker check-config |
/// head`) ends quietly with status 0, as other Unix tools do, instead of
/// panicking with a backtrace. The pipe is closed before the command writes.
#[test]
fn a_closed_stdout_ends_a_command_quietly() {
    let (reader, writer) = std::io::pipe().unwrap();
    drop(reader);
    let out = std::process::Command::new(BIN)
        .args(["--config", CONFIG, "check-config"])
        .stdout(writer)
        .stderr(Stdio::piped())
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!stderr.contains("panicked"), "{stderr}");
    assert!(out.status.success(), "{:?}: {stderr}", out.status);
}

/// `validate` tells its three answers apart by exit status: 0 when every
/// message would be applied, 1 when one would not, 2 when the input cannot
/// be read at all (as `grep` and `diff` do), so a producer's CI script can
/// tell a bad message from a wrong path.
#[test]
fn validate_exit_status_tells_rejected_from_unreadable() {
    let run = |file: &str, stdin: &[u8]| {
        use std::io::Write as _;
        let mut child = std::process::Command::new(BIN)
            .args(["--config", CONFIG, "validate", "blacklist", file])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        child.stdin.take().unwrap().write_all(stdin).unwrap();
        let out = child.wait_with_output().unwrap();
        (
            out.status.code(),
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    };
    let good = br#"{"private_number":"13470110001","action":"add","userid":1,"type":0}"#;
    let (code, stdout, _) = run("-", good);
    assert_eq!(code, Some(0), "{stdout}");
    assert!(stdout.contains("accepted"), "{stdout}");

    let bad = br#"{"private_number":"134****0001","action":"add","userid":1,"type":0}"#;
    let (code, stdout, stderr) = run("-", bad);
    assert_eq!(code, Some(1), "{stdout} {stderr}");
    assert!(stdout.contains("rejected: invalid_number"), "{stdout}");

    let missing = std::env::temp_dir().join(format!("axn-{}-missing.jsonl", unique_id()));
    let (code, stdout, stderr) = run(missing.to_str().unwrap(), b"");
    assert_eq!(code, Some(2), "{stdout} {stderr}");
    assert!(stderr.contains("Failed to read"), "{stderr}");
    assert!(stdout.is_empty(), "{stdout}");
}
