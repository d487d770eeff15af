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
    helpers::{BIN, CONFIG, DEADLINE, TestApp, env_for, spawn_app, test_settings, unique_id},
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
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let mut worker = tokio::process::Command::new(BIN)
        .args(["run", "--config", CONFIG])
        .envs(env_for(&settings))
        .env("AXN__HTTP__LISTEN", format!("127.0.0.1:{port}"))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let deadline = Instant::now() + DEADLINE;
    loop {
        let ready = async {
            use tokio::io::AsyncReadExt;
            let mut s = tokio::net::TcpStream::connect(("127.0.0.1", port))
                .await
                .ok()?;
            s.write_all(b"GET /readyz HTTP/1.0\r\n\r\n").await.ok()?;
            let mut buf = String::new();
            s.read_to_string(&mut buf).await.ok()?;
            Some(buf.starts_with("HTTP/1.0 200") || buf.starts_with("HTTP/1.1 200"))
        };
        if ready.await == Some(true) {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the worker process did not become ready"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let pid = worker.id().unwrap().to_string();
    assert!(
        tokio::process::Command::new("kill")
            .args(["-TERM", &pid])
            .status()
            .await
            .unwrap()
            .success()
    );
    let status = tokio::time::timeout(Duration::from_secs(30), worker.wait())
        .await
        .expect("exits in time")
        .unwrap();
    assert_eq!(status.code(), Some(0));
}
