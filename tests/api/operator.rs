//! The binary as a newcomer and an SRE run it (issue 22's findings): a log
//! pipe that closes, a `--config` that names a directory, an AMQP URL whose
//! trailing slash names the empty vhost, the binding API exposed without
//! credentials. Each runs the real `axn-worker` against the local services.

use std::time::{Duration, Instant};

use axn_worker::config::QueueKind;
use redis::AsyncCommands;
use tokio::io::AsyncReadExt;

use crate::{
    helpers::{
        CONFIG, DEADLINE, TestApp, cli, free_port, sigterm, spawn_run, test_settings, unique_id,
    },
    xb_unbind::{SEED_UNBIND, binding},
};

/// `axn-worker run 2>&1 | head -2`: once the reader of its logs is gone the
/// worker goes on applying messages (no panic), and SIGTERM still stops it
/// with exit 0.
#[tokio::test]
async fn a_closed_log_pipe_neither_stops_the_worker_nor_its_shutdown() {
    let id = unique_id();
    let settings = test_settings(&id);
    let app = TestApp::connect(id, settings.clone()).await;
    let port = free_port();
    let mut child = spawn_run(&settings, port, &[("RUST_LOG", "info")]);
    // Read a little, as `head -2` does, then close the pipe.
    let mut stderr = child.stderr.take().unwrap();
    let mut first = [0u8; 64];
    let _ = stderr.read(&mut first).await.unwrap();
    drop(stderr);
    let addr: std::net::SocketAddr = ([127, 0, 0, 1], port).into();
    let deadline = Instant::now() + DEADLINE;
    while crate::helpers::try_get(addr, "/readyz")
        .await
        .map(|a| a.0)
        .unwrap_or(0)
        != 200
    {
        assert!(
            child.try_wait().unwrap().is_none(),
            "the worker exited once its log pipe closed"
        );
        assert!(Instant::now() < deadline, "not ready");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // It logs a line per message: every one of them now fails to write.
    for i in 0..20 {
        let sub = format!("1000000000077{i:03}");
        let _: () = app
            .redis
            .clone()
            .hset(app.key("PrivateNumber_xb"), &sub, binding(&sub, 51218, 7))
            .await
            .unwrap();
        app.publish(
            QueueKind::XbUnbind,
            SEED_UNBIND.replace("1000039976446302", &sub).as_bytes(),
        )
        .await;
    }
    let mut r = app.redis.clone();
    let key = app.key("PrivateNumber_xb_unbound");
    let deadline = Instant::now() + DEADLINE;
    while r.hlen::<_, usize>(&key).await.unwrap() < 20 {
        assert!(
            child.try_wait().unwrap().is_none(),
            "the worker died writing logs"
        );
        assert!(
            Instant::now() < deadline,
            "messages not applied with the log pipe closed"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    sigterm(&child);
    let status = tokio::time::timeout(Duration::from_secs(30), child.wait())
        .await
        .expect("SIGTERM still stops it")
        .unwrap();
    assert_eq!(status.code(), Some(0), "a clean stop, not a panic (101)");
}

/// `--config` naming a directory, or a file that cannot be read, is an
/// error naming it, for check-config and run alike: never the shipped
/// defaults with "configuration OK".
#[test]
fn a_config_path_that_is_not_a_readable_file_is_an_error() {
    let deploy = concat!(env!("CARGO_MANIFEST_DIR"), "/deploy");
    for command in ["check-config", "run"] {
        let out = cli(&[command, "--config", deploy], &[]);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "{command}: {stderr}");
        assert!(
            stderr.contains(&format!("configuration file {deploy} cannot be read")),
            "{command}: {stderr}"
        );
        assert!(!stderr.contains("configuration OK"), "{stderr}");
    }
    let missing = cli(&["check-config", "--config", "/nonexistent/axn.toml"], &[]);
    assert_eq!(missing.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&missing.stderr).contains("does not exist"));
}

/// `amqp://host:5672/` names the empty vhost: check-config says what it
/// means and how to write the default vhost, before a run fails on it.
#[test]
fn a_trailing_slash_in_the_amqp_url_is_explained_at_check_time() {
    let out = cli(
        &["check-config", "--config", CONFIG],
        &[("AXN__AMQP__URL", "amqp://guest:s3cret@127.0.0.1:5672/")],
    );
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains(
            "warning: amqp.url #1 (127.0.0.1:5672) ends with \"/\": that names the empty vhost"
        ),
        "{stderr}"
    );
    assert!(
        !stderr.contains("s3cret"),
        "no password in the warning: {stderr}"
    );
    let fine = cli(
        &["check-config", "--config", CONFIG],
        &[("AXN__AMQP__URL", "amqp://guest:guest@127.0.0.1:5672/%2f")],
    );
    assert!(!String::from_utf8_lossy(&fine.stderr).contains("empty vhost"));
}

/// The binding API beyond loopback without credentials: `run` refuses to
/// start and check-config fails, both naming the fix; credentials, or an
/// explicit `allow_unauthenticated = true` (warned), let it start; the
/// consumers-only role needs none.
#[test]
fn the_binding_api_is_not_exposed_without_credentials() {
    let wide = ("AXN__HTTP__LISTEN", "0.0.0.0:0");
    for command in ["check-config", "run"] {
        let out = cli(&[command, "--config", CONFIG], &[wide]);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "{command}: {stderr}");
        assert!(
            stderr.contains("the binding API would answer without credentials on 0.0.0.0:0"),
            "{command}: {stderr}"
        );
    }
    for ok in [
        vec![wide, ("AXN__PLATFORM__BEARER_TOKEN", "t")],
        vec![wide, ("AXN__PLATFORM__PASSWORD", "p")],
        vec![wide, ("AXN__PLATFORM__ROLE", "consumers")],
        vec![wide, ("AXN__PLATFORM__ENABLED", "false")],
        vec![("AXN__HTTP__LISTEN", "127.0.0.1:0")],
    ] {
        let out = cli(&["check-config", "--config", CONFIG], &ok);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(out.status.success(), "{ok:?}: {stderr}");
        assert!(!stderr.contains("without credentials"), "{ok:?}: {stderr}");
    }
    let meant = cli(
        &["check-config", "--config", CONFIG],
        &[wide, ("AXN__PLATFORM__ALLOW_UNAUTHENTICATED", "true")],
    );
    let stderr = String::from_utf8_lossy(&meant.stderr);
    assert!(meant.status.success(), "{stderr}");
    assert!(
        stderr.contains("warning: the binding API answers without credentials on 0.0.0.0:0"),
        "{stderr}"
    );
}

/// `publish` checks every message with the worker's parser first: one it
/// would dead-letter (no `action`, a masked number) is refused with the
/// reason and nothing of the input is sent; `--force` sends it anyway.
#[tokio::test]
async fn publish_refuses_what_the_worker_would_dead_letter() {
    let id = unique_id();
    let mut app = TestApp::connect(id.clone(), test_settings(&id))
        .await
        .start()
        .await;
    app.stop().await.unwrap(); // nobody consumes: what was sent stays to be counted
    let queue = app.queue(QueueKind::Blacklist);
    let good = r#"{"platId": 3, "private_number": "13470110001", "action": "add", "userid": "74705", "type": 0}"#;
    let bad = r#"{"platId": 3, "private_number": "134****0001", "userid": "74705", "type": 0}"#;
    let file = std::env::temp_dir().join(format!("{id}-publish.jsonl"));
    std::fs::write(&file, format!("{good}\n{bad}\n")).unwrap();
    let path = file.to_string_lossy().into_owned();
    let out = crate::helpers::run_cli(&app.settings, &["publish", "blacklist", &path]).await;
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains("the worker would dead-letter 1 of 2 message(s); nothing was published"),
        "{stderr}"
    );
    assert!(stderr.contains("message 2: rejected:"), "{stderr}");
    assert!(!stderr.contains("13470110001"), "numbers masked: {stderr}");
    assert_eq!(app.queue_len(&queue).await, 0, "not even the good one");
    let out =
        crate::helpers::run_cli(&app.settings, &["publish", "blacklist", &path, "--force"]).await;
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(app.queue_len(&queue).await, 2);
    let _ = std::fs::remove_file(&file);
}

/// With the broker unreachable, `/readyz` is 503 (the consumers are down)
/// while `/readyz/api` is 200: the binding and mapping APIs need only Redis,
/// and the manifests' readiness probe uses it, so a broker outage does not
/// take them out of the Service. A consumers-only process has no such
/// endpoint (404).
#[tokio::test]
async fn the_apis_stay_ready_while_the_broker_is_down() {
    let id = unique_id();
    let mut settings = test_settings(&id);
    let nobody = crate::lifecycle::spare_port();
    settings.amqp.url =
        axn_worker::config::AmqpUrl::one(format!("amqp://guest:guest@127.0.0.1:{nobody}/%2f"));
    let mut app = TestApp::connect(id, settings).await;
    app.launch().await;
    let deadline = Instant::now() + DEADLINE;
    loop {
        let api = app.get("/readyz/api").await.map(|a| a.0).unwrap_or(0);
        if api == 200 {
            break;
        }
        assert!(Instant::now() < deadline, "/readyz/api {api}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // Not ready, and why: the broker's error, without its credentials.
    app.eventually("/readyz says why the broker is down", || async {
        app.get("/readyz")
            .await
            .is_ok_and(|(status, body)| status == 503 && body.contains("\"broker_error\":"))
    })
    .await;
    let (_, body) = app.get("/readyz").await.unwrap();
    assert!(body.contains("\"broker\":false"), "{body}");
    assert!(!body.contains("guest:guest"), "{body}");
    let v = crate::platform::call(app.addr, false, "QueryUserAxs", "userid=1").await;
    assert_eq!(v["ResultCode"], 2000, "the API answers: {v}");
    app.stop().await.ok();

    let id = unique_id();
    let mut settings = test_settings(&id);
    settings.platform.role = axn_worker::config::Role::Consumers;
    let app = TestApp::connect(id, settings).await.start().await;
    assert_eq!(app.get("/readyz/api").await.unwrap().0, 404);
}

/// A wrong broker password: the worker says so once (the same failure again
/// is at debug), with the reason and without the password; lapin's own
/// three ERROR lines per attempt ("attempts exhausted, aborting recovery"
/// while the worker retries forever) are not printed.
#[tokio::test]
async fn a_wrong_broker_password_is_said_once_with_its_reason() {
    let id = unique_id();
    let settings = test_settings(&id);
    let _cleanup = TestApp::connect(id, settings.clone()).await;
    let child = spawn_run(
        &settings,
        free_port(),
        &[
            (
                "AXN__AMQP__URL",
                "amqp://guest:not-the-password@127.0.0.1:5672/%2f",
            ),
            ("AXN__AMQP__RECONNECT_MAX_DELAY_MS", "300"),
        ],
    );
    tokio::time::sleep(Duration::from_secs(3)).await; // several attempts
    sigterm(&child);
    let out = tokio::time::timeout(Duration::from_secs(30), child.wait_with_output())
        .await
        .expect("stops on SIGTERM")
        .unwrap();
    let log = String::from_utf8_lossy(&out.stderr);
    let said: Vec<&str> = log
        .lines()
        .filter(|l| l.contains("cannot connect to the broker"))
        .collect();
    assert_eq!(said.len(), 1, "once:\n{log}");
    assert!(
        said[0].contains("ACCESS_REFUSED") || said[0].contains("ACCESS-REFUSED"),
        "the reason: {}",
        said[0]
    );
    assert!(
        !log.contains("attempts exhausted") && !log.contains(" lapin::"),
        "no lapin lines:\n{log}"
    );
    assert!(!log.contains("not-the-password"), "no password:\n{log}");
}
