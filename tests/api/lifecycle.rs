//! Running it: health and readiness, the connection name, graceful shutdown,
//! restarts, passive topology, quorum queues, and surviving the loss of the
//! broker connection and of Redis.

use std::{collections::HashSet, time::Duration};

use axn_worker::config::{QueueKind, QueueType};
use redis::AsyncCommands;
use serde_json::json;

use crate::helpers::{DEADLINE, TestApp, spawn_app, spawn_app_with, test_settings, unique_id};

/// /healthz answers, /readyz reports every queue consumed and Redis up, and
/// the broker connection carries the worker's name, host and pid.
#[tokio::test]
async fn health_readiness_and_connection_name() {
    let app = spawn_app().await;
    assert_eq!(app.get("/healthz").await.unwrap().0, 200);
    let (status, body) = app.get("/readyz").await.unwrap();
    assert_eq!(status, 200);
    let ready: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(
        ready["consuming"],
        json!(["xb_unbind", "blacklist", "phone_history", "call_record"])
    );
    assert_eq!(ready["redis"], json!(true));

    let expected = format!(
        "axn-worker@{}:{}/{}",
        gethostname::gethostname().to_string_lossy(),
        std::process::id(),
        app.id
    );
    let out = tokio::process::Command::new("rabbitmqctl")
        .args([
            "list_connections",
            "-q",
            "--no-table-headers",
            "client_properties",
        ])
        .output()
        .await
        .unwrap();
    assert!(
        String::from_utf8_lossy(&out.stdout).contains(&expected),
        "a connection named {expected}"
    );
}

/// SIGTERM's path: stop returns Ok (exit 0), and every message published
/// before it is either applied or back in its queue: none lost.
#[tokio::test]
async fn graceful_shutdown_loses_nothing() {
    let mut app = spawn_app().await;
    let numbers: Vec<String> = (0..300).map(|i| format!("1340000{i:04}")).collect();
    for n in &numbers {
        app.publish(
            QueueKind::Blacklist,
            json!({"private_number": n, "action": "add", "userid": 5, "type": 0})
                .to_string()
                .as_bytes(),
        )
        .await;
    }
    app.stop().await.expect("clean stop");
    let applied: HashSet<String> = app
        .redis
        .clone()
        .smembers(app.key("PrivateNumber_black:5:0"))
        .await
        .unwrap();
    let left = app.queue_len(&app.queue(QueueKind::Blacklist)).await as usize;
    let mut waiting = HashSet::new();
    for _ in 0..left {
        let d = app.take(&app.queue(QueueKind::Blacklist)).await;
        let v: serde_json::Value = serde_json::from_slice(&d.data).unwrap();
        waiting.insert(v["private_number"].as_str().unwrap().to_owned());
    }
    for n in &numbers {
        assert!(
            applied.contains(n) || waiting.contains(n),
            "{n} neither applied nor queued"
        );
    }
    assert_eq!(app.queue_len(&app.dlq(QueueKind::Blacklist)).await, 0);
}

/// A message waiting in a retry queue survives a restart of the worker and
/// is applied by the next one.
#[tokio::test]
async fn retries_survive_a_restart() {
    let mut app = spawn_app_with(|s| {
        s.queues.blacklist.retry_delays_ms = vec![2000];
        s.queues.blacklist.max_attempts = 5;
    })
    .await;
    let mut r = app.redis.clone();
    let key = app.park_in_retry(11, 2000).await;
    app.stop().await.unwrap();
    let _: () = r.del(&key).await.unwrap();
    let app = app.start().await;
    app.eventually("applied by the restarted worker", || {
        app.is_member(&key, "13470110001")
    })
    .await;
}

/// With passive = true the worker only checks the queues: missing ones stop
/// it with the queue's name; existing ones are used.
#[tokio::test]
async fn passive_topology_checks_instead_of_declaring() {
    let id = unique_id();
    let mut settings = test_settings(&id);
    for kind in QueueKind::ALL {
        settings.queues.get_mut(kind).passive = true;
    }
    let mut missing = TestApp::connect(id.clone(), settings.clone()).await;
    missing.launch().await;
    let err = format!("{:#}", missing.finished().await.unwrap_err());
    assert!(
        err.contains(&missing.queue(QueueKind::XbUnbind)) && err.contains("does not exist"),
        "{err}"
    );
    drop(missing);

    // Let a non-passive run create them, then run passively against them.
    let mut creator = TestApp::connect(id.clone(), test_settings(&id))
        .await
        .start()
        .await;
    creator.stop().await.unwrap();
    let passive = TestApp::connect(id, settings).await.start().await;
    passive
        .publish(
            QueueKind::Blacklist,
            br#"{"private_number":"13470110001","action":"add","userid":12,"type":0}"#,
        )
        .await;
    passive
        .eventually("applied", || async {
            passive
                .redis
                .clone()
                .sismember(passive.key("PrivateNumber_black:12:0"), "13470110001")
                .await
                .unwrap_or(false)
        })
        .await;
}

/// Quorum queues: declared with x-queue-type, messages applied, dead letters
/// and retries work the same.
#[tokio::test]
async fn quorum_queues_work_like_classic_ones() {
    let app = spawn_app_with(|s| {
        for kind in QueueKind::ALL {
            s.queues.get_mut(kind).queue_type = QueueType::Quorum;
        }
        s.publish.call_log.queue_type = QueueType::Quorum;
    })
    .await;
    // A transient failure goes through a quorum retry queue (message TTL,
    // at-least-once dead-lettering back) and is applied once the cause is gone.
    let blocker = app.park_in_retry(14, 100).await;
    let _: () = app.redis.clone().del(&blocker).await.unwrap();
    app.eventually("applied after its retry", || async {
        app.redis
            .clone()
            .sismember(app.key("PrivateNumber_black:14:0"), "13470110001")
            .await
            .unwrap_or(false)
    })
    .await;
    app.put_binding("qq1", 1, 2).await;
    app.publish(
        QueueKind::CallRecord,
        br#"{"subId":"qq1","callId":"qq-call"}"#,
    )
    .await;
    let _ = app.take(&app.call_log_queue()).await;
    app.publish(
        QueueKind::Blacklist,
        br#"{"private_number":"13470110001","action":"add","userid":13,"type":0}"#,
    )
    .await;
    app.publish(QueueKind::Blacklist, b"garbage").await;
    let d = app.take(&app.dlq(QueueKind::Blacklist)).await;
    assert_eq!(
        crate::helpers::header(&d, "axn-reason").as_deref(),
        Some("invalid_json")
    );
    app.eventually("applied", || async {
        app.redis
            .clone()
            .sismember(app.key("PrivateNumber_black:13:0"), "13470110001")
            .await
            .unwrap_or(false)
    })
    .await;
    let out = tokio::process::Command::new("rabbitmqctl")
        .args(["list_queues", "-q", "--no-table-headers", "name", "type"])
        .output()
        .await
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    let line = text
        .lines()
        .find(|l| l.starts_with(&format!("{}\t", app.queue(QueueKind::Blacklist))))
        .unwrap();
    assert!(line.ends_with("quorum"), "{line}");
    for name in [
        app.call_log_queue(),
        format!("{}.retry.100ms", app.queue(QueueKind::Blacklist)),
    ] {
        let line = text
            .lines()
            .find(|l| l.starts_with(&format!("{name}\t")))
            .unwrap_or_else(|| panic!("{name} missing"));
        assert!(line.ends_with("quorum"), "{line}");
    }
}

/// The broker closes the worker's connection mid-stream: the worker
/// reconnects by itself, is ready again, and every message is applied.
#[tokio::test]
async fn survives_the_broker_closing_its_connection() {
    let app = spawn_app().await;
    let health = app.health.clone().expect("launched");
    for i in 0..200 {
        app.publish(QueueKind::Blacklist, json!({"private_number": format!("1350000{i:04}"), "action": "add", "userid": 14, "type": 0}).to_string().as_bytes()).await;
    }
    close_connection_of(&app).await;
    for i in 200..400 {
        app.publish(QueueKind::Blacklist, json!({"private_number": format!("1350000{i:04}"), "action": "add", "userid": 14, "type": 0}).to_string().as_bytes()).await;
    }
    app.eventually("all 400 applied", || async {
        let n: usize = app
            .redis
            .clone()
            .scard(app.key("PrivateNumber_black:14:0"))
            .await
            .unwrap();
        n == 400
    })
    .await;
    assert!(
        health.reconnects() >= 1,
        "the worker noticed and reconnected"
    );
    app.wait_ready().await;
    assert_eq!(app.queue_len(&app.dlq(QueueKind::Blacklist)).await, 0);
}

/// Redis goes away and comes back (a Redis of the test's own, on a spare
/// port): readiness turns false meanwhile, and a message sent during the
/// outage is applied once Redis is back, through retries, not dead-lettered.
#[tokio::test]
async fn survives_redis_going_away() {
    let port = spare_port();
    let mut redis = own_redis(port).await;
    let app = spawn_app_with(|s| {
        s.redis.url = axn_worker::config::RedisUrl::single(format!("redis://127.0.0.1:{port}/0"));
        s.queues.blacklist.retry_delays_ms = vec![300];
        s.queues.blacklist.max_attempts = 100;
    })
    .await;
    let own = redis::Client::open(format!("redis://127.0.0.1:{port}/0")).unwrap();
    redis.kill().await.unwrap();
    app.eventually("not ready while Redis is down", || async {
        app.get("/readyz").await.map(|r| r.0).unwrap_or(0) == 503
    })
    .await;
    app.publish(
        QueueKind::Blacklist,
        br#"{"private_number":"13470110001","action":"add","userid":15,"type":0}"#,
    )
    .await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    let _redis = own_redis(port).await;
    app.wait_ready().await;
    app.eventually("applied after Redis returned", || async {
        let Ok(mut c) = own.get_multiplexed_async_connection().await else {
            return false;
        };
        c.sismember(app.key("PrivateNumber_black:15:0"), "13470110001")
            .await
            .unwrap_or(false)
    })
    .await;
    assert_eq!(app.queue_len(&app.dlq(QueueKind::Blacklist)).await, 0);
}

/// Has the broker close the app's own connection (found by its name label).
pub async fn close_connection_of(app: &TestApp) {
    let label = format!("/{}", app.id);
    let out = tokio::process::Command::new("rabbitmqctl")
        .args([
            "list_connections",
            "-q",
            "--no-table-headers",
            "pid",
            "client_properties",
        ])
        .stdin(std::process::Stdio::null())
        .output()
        .await
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    let pid = text
        .lines()
        .find(|l| l.contains(&label))
        .and_then(|l| l.split('\t').next())
        .expect("the worker's connection")
        .to_owned();
    let closed = tokio::process::Command::new("rabbitmqctl")
        .args(["close_connection", &pid, "test: closed by the broker"])
        .stdin(std::process::Stdio::null())
        .status()
        .await
        .unwrap();
    assert!(closed.success());
}

/// A TCP port nothing listens on right now, for a server a test starts. It
/// is drawn at random below the kernel's ephemeral range (32768-60999 here),
/// so the many outgoing connections of a parallel test run cannot take it
/// between this check and the server's bind.
pub fn spare_port() -> u16 {
    use std::sync::atomic::{AtomicU64, Ordering};
    static SEQ: AtomicU64 = AtomicU64::new(0);
    let seed = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .subsec_nanos() as u64
        ^ ((std::process::id() as u64) << 20);
    for i in 0.. {
        let x = seed
            .wrapping_add(
                SEQ.fetch_add(1, Ordering::Relaxed)
                    .wrapping_mul(0x9E37_79B9),
            )
            .wrapping_add(i);
        let port = 20_000 + (x % 12_000) as u16;
        if std::net::TcpListener::bind(("127.0.0.1", port)).is_ok() {
            return port;
        }
    }
    unreachable!()
}

/// A throwaway redis-server on `port`, killed when dropped.
pub async fn own_redis(port: u16) -> OwnRedis {
    own_redis_with(port, &["--appendonly", "no"]).await
}

/// A redis-server of the test's own and the temporary directory it works
/// in (its `--dir`, unless the test gave one): whatever it writes (an RDB a
/// replica receives, an AOF) lands there, never in the repository. Killed,
/// and the directory removed, when dropped.
pub struct OwnRedis {
    child: tokio::process::Child,
    dir: Option<std::path::PathBuf>,
}

impl std::ops::Deref for OwnRedis {
    type Target = tokio::process::Child;
    fn deref(&self) -> &Self::Target {
        &self.child
    }
}

impl std::ops::DerefMut for OwnRedis {
    fn deref_mut(&mut self) -> &mut Self::Target {
        &mut self.child
    }
}

impl Drop for OwnRedis {
    fn drop(&mut self) {
        let _ = self.child.start_kill();
        if let Some(pid) = self.child.id() {
            // Gone (or a zombie) before its directory is removed.
            let deadline = std::time::Instant::now() + Duration::from_secs(5);
            while std::time::Instant::now() < deadline {
                let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
                if stat.is_empty() || stat.split(") ").nth(1).is_some_and(|s| s.starts_with('Z')) {
                    break;
                }
                std::thread::sleep(Duration::from_millis(10));
            }
        }
        if let Some(dir) = &self.dir {
            let _ = std::fs::remove_dir_all(dir);
        }
    }
}

/// A redis-server of the test's own on `port` with `extra` arguments, ready
/// to answer; killed when dropped. Port 0: no plain port (TLS only, say),
/// started without waiting: the caller knows how to reach it.
pub async fn own_redis_with(port: u16, extra: &[&str]) -> OwnRedis {
    let dir = (!extra.contains(&"--dir")).then(|| {
        let dir = std::env::temp_dir().join(format!("axn-own-redis-{port}-{}", unique_id()));
        std::fs::create_dir_all(&dir).unwrap();
        dir
    });
    let mut command = tokio::process::Command::new("redis-server");
    command
        .args([
            "--port",
            &port.to_string(),
            "--bind",
            "127.0.0.1",
            "--save",
            "",
        ])
        .args(extra);
    if let Some(dir) = &dir {
        command.arg("--dir").arg(dir);
    }
    let child = command
        .stdout(std::process::Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .expect("redis-server is installed");
    let mut own = OwnRedis { child, dir };
    if port == 0 {
        return own;
    }
    let client = redis::Client::open(format!("redis://127.0.0.1:{port}/0")).unwrap();
    let deadline = std::time::Instant::now() + DEADLINE;
    while !answers(&client).await {
        if let Ok(Some(status)) = own.child.try_wait() {
            panic!("own redis-server on port {port} exited ({status}): port taken?");
        }
        assert!(
            std::time::Instant::now() < deadline,
            "own redis-server did not start"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    own
}

/// Whether `member` is in the set `key` of the Redis at `client`; None
/// while that Redis does not answer.
pub async fn own_is_member(client: &redis::Client, key: &str, member: &str) -> Option<bool> {
    let mut c = client.get_multiplexed_async_connection().await.ok()?;
    c.sismember(key, member).await.ok()
}

/// True once the Redis at `client` answers PING.
async fn answers(client: &redis::Client) -> bool {
    let Ok(mut c) = client.get_multiplexed_async_connection().await else {
        return false;
    };
    redis::cmd("PING")
        .query_async::<String>(&mut c)
        .await
        .is_ok()
}
