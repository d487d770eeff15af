//! The worker on a Redis Cluster (three masters of the test's own): the
//! multi-key updates run as fixed-order idempotent steps, with the same
//! results as the single-Redis scripts.

use std::time::{Duration, Instant};

use axn_worker::{
    config::{QueueKind, RedisUrl, Secret},
    store::{Conn, Store},
};
use redis::AsyncCommands;
use serde_json::{Value, json};

use crate::{
    helpers::{DEADLINE, TestApp, post, spawn_app_with, test_settings, unique_id},
    lifecycle::spare_port,
    xb_unbind::{SEED_UNBIND, binding},
};

/// Three cluster-enabled redis-servers on spare ports, joined into one
/// cluster; killed (and their files removed) when dropped.
struct Cluster {
    nodes: Vec<tokio::process::Child>,
    urls: Vec<String>,
    dir: std::path::PathBuf,
}

impl Drop for Cluster {
    fn drop(&mut self) {
        for n in &mut self.nodes {
            let _ = n.start_kill();
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

async fn cluster() -> Cluster {
    let dir = std::env::temp_dir().join(format!("axn-cluster-{}", unique_id()));
    std::fs::create_dir_all(&dir).unwrap();
    // The guard exists from the start, so a failure below still cleans up.
    let mut cluster = Cluster {
        nodes: Vec::new(),
        urls: Vec::new(),
        dir: dir.clone(),
    };
    let mut addrs = Vec::new();
    let deadline = Instant::now() + DEADLINE;
    for i in 0..3 {
        // A node whose port was taken meanwhile exits at once: try new ports.
        'node: for _attempt in 0..5 {
            let (port, bus) = (spare_port(), spare_port());
            let mut child = tokio::process::Command::new("redis-server")
                .args([
                    "--port",
                    &port.to_string(),
                    "--bind",
                    "127.0.0.1",
                    "--save",
                    "",
                    "--appendonly",
                    "no",
                ])
                .args([
                    "--cluster-enabled",
                    "yes",
                    "--cluster-port",
                    &bus.to_string(),
                ])
                .args([
                    "--cluster-config-file",
                    &format!("node-{i}-{port}.conf"),
                    "--dir",
                    dir.to_str().unwrap(),
                ])
                .stdout(std::process::Stdio::null())
                .kill_on_drop(true)
                .spawn()
                .expect("redis-server is installed");
            let client = redis::Client::open(format!("redis://127.0.0.1:{port}")).unwrap();
            loop {
                if client.get_multiplexed_async_connection().await.is_ok() {
                    cluster.nodes.push(child);
                    addrs.push(format!("127.0.0.1:{port}"));
                    break 'node;
                }
                if let Ok(Some(_)) = child.try_wait() {
                    continue 'node;
                }
                assert!(Instant::now() < deadline, "cluster node {i} did not start");
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
        assert_eq!(
            addrs.len(),
            i + 1,
            "cluster node {i} could not find free ports"
        );
    }
    let created = tokio::process::Command::new("redis-cli")
        .arg("--cluster")
        .arg("create")
        .args(&addrs)
        .arg("--cluster-yes")
        .stdin(std::process::Stdio::null())
        .output()
        .await
        .unwrap();
    assert!(
        created.status.success(),
        "{}",
        String::from_utf8_lossy(&created.stdout)
    );
    for a in &addrs {
        let client = redis::Client::open(format!("redis://{a}")).unwrap();
        loop {
            let mut c = client.get_multiplexed_async_connection().await.unwrap();
            let info: String = redis::cmd("CLUSTER")
                .arg("INFO")
                .query_async(&mut c)
                .await
                .unwrap();
            if info.contains("cluster_state:ok") {
                break;
            }
            assert!(Instant::now() < deadline, "cluster not ok at {a}");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
    cluster.urls = addrs.iter().map(|a| format!("redis://{a}")).collect();
    cluster
}

async fn hget(c: &mut Conn, key: &str, field: &str) -> Option<String> {
    c.hget(key, field).await.unwrap()
}

/// The seed's messages of every queue, on a cluster: the same effects as on
/// one Redis, redeliveries included, and the call-log event once per callId.
#[tokio::test]
async fn every_queue_works_on_a_redis_cluster() {
    let cluster = cluster().await;
    let urls = cluster.urls.clone();
    let app = spawn_app_with(|s| {
        s.redis.url = RedisUrl::Cluster(urls.iter().map(Secret::new).collect());
        s.mapping.password = Secret::new("pw");
    })
    .await;
    let store = Store::new(&app.settings.redis).unwrap();
    let mut c = store.conn().await.unwrap();
    let k = store.keys().clone();
    // The keys of one update really are in different slots.
    let slot = |key: String| {
        let mut c = c.clone();
        async move {
            redis::cmd("CLUSTER")
                .arg("KEYSLOT")
                .arg(key)
                .query_async::<u64>(&mut c)
                .await
                .unwrap()
        }
    };
    assert_ne!(slot(k.xb()).await, slot(k.xb_unbound()).await);

    let _: () = c
        .hset(
            k.xb(),
            "1000039976446302",
            binding("1000039976446302", 51218, 123456),
        )
        .await
        .unwrap();
    let _: () = c
        .hset(
            k.user_axs(),
            "51218",
            r#"{"xNumber":"17111526089","bindType":1}"#,
        )
        .await
        .unwrap();
    app.publish(QueueKind::XbUnbind, SEED_UNBIND.as_bytes())
        .await;
    let deadline = Instant::now() + DEADLINE;
    while hget(&mut c, &k.xb_unbound(), "1000039976446302")
        .await
        .is_none()
        || hget(&mut c, &k.xb(), "1000039976446302").await.is_some()
    {
        assert!(Instant::now() < deadline, "not unbound on the cluster");
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    let first = hget(&mut c, &k.xb_unbound(), "1000039976446302")
        .await
        .unwrap();
    let v: Value = serde_json::from_str(&first).unwrap();
    assert_eq!(
        (v["userId"].as_u64(), v["mapId"].as_u64()),
        (Some(51218), Some(123456))
    );
    assert!(v["unboundAt"].is_u64());
    assert_eq!(hget(&mut c, &k.user_axs(), "51218").await, None);

    // A redelivered unbind changes nothing; a late call record is attributed
    // once, however often it comes.
    tokio::time::sleep(Duration::from_millis(1100)).await;
    app.publish(QueueKind::XbUnbind, SEED_UNBIND.as_bytes())
        .await;
    for _ in 0..3 {
        app.publish(
            QueueKind::CallRecord,
            br#"{"subId":"1000039976446302","callId":"cl-1"}"#,
        )
        .await;
    }
    let event = app.take(&app.call_log_queue()).await;
    assert_eq!(
        serde_json::from_slice::<Value>(&event.data).unwrap(),
        json!({"user": 51218, "houseid": 123456})
    );
    app.publish(QueueKind::Blacklist, br#"{"platId": 3, "private_number": "13470110001", "action": "add", "userid": "74705", "type": 0}"#).await;
    app.publish(QueueKind::PhoneHistory, br#"{"userId": "74705", "newPhone": "13812345678", "oldPhone": "13998765432", "operatorUser:": "51218"}"#).await;
    app.publish(
        QueueKind::CallRecord,
        br#"{"subId":"nobody","callId":"cl-2"}"#,
    )
    .await;
    app.drained().await;
    assert_eq!(
        app.queue_len(&app.call_log_queue()).await,
        0,
        "one event for cl-1"
    );
    assert_eq!(
        app.queue_len(&app.settings.queues.call_record.unattributed_name())
            .await,
        1
    );
    assert_eq!(
        hget(&mut c, &k.xb_unbound(), "1000039976446302").await,
        Some(first)
    );
    let mark: Option<String> = c.get(k.calllog("cl-1")).await.unwrap();
    assert_eq!(mark.as_deref(), Some("1"));
    let listed: bool = c.sismember(k.black(74705, 0), "13470110001").await.unwrap();
    assert!(listed);
    assert_eq!(
        hget(&mut c, &k.user_phone(), "74705").await.as_deref(),
        Some("13812345678")
    );
    assert_eq!(
        hget(&mut c, &k.phone_user(), "13998765432")
            .await
            .as_deref(),
        Some("74705")
    );
    let phones: Vec<String> = c.zrange(k.user_phones(74705), 0, -1).await.unwrap();
    assert_eq!(phones.len(), 2);
    for kind in QueueKind::ALL {
        assert_eq!(app.queue_len(&app.dlq(kind)).await, 0, "{kind}");
    }
}

/// PhoneToUID on a cluster: 40 concurrent calls for one new number on two
/// instances get one id, and it maps back.
#[tokio::test]
async fn number_mapping_on_a_redis_cluster_gives_one_id() {
    let cluster = cluster().await;
    let id = unique_id();
    let mut settings = test_settings(&id);
    settings.redis.url = RedisUrl::Cluster(cluster.urls.iter().map(Secret::new).collect());
    settings.mapping.password = Secret::new("pw");
    let a = TestApp::connect(id.clone(), settings.clone())
        .await
        .start()
        .await;
    let b = TestApp::connect(id, settings).await.start().await;
    let body =
        json!({"Numbers": ["+86 186-0000-0002", "13900000001"], "Mode": "PhoneToUID"}).to_string();
    let calls: Vec<_> = (0..40)
        .map(|i| {
            let addr = if i % 2 == 0 { a.addr } else { b.addr };
            let body = body.clone();
            tokio::spawn(async move {
                post(
                    addr,
                    "/number-mapping",
                    body.as_bytes(),
                    Some(("tccc", "pw")),
                )
                .await
                .json()
            })
        })
        .collect();
    let mut answers = std::collections::HashSet::new();
    for call in calls {
        let answer = call.await.unwrap();
        assert_eq!(answer["Code"], 0, "{answer}");
        answers.insert(answer["Results"].to_string());
    }
    assert_eq!(answers.len(), 1, "{answers:?}");
    let results: Value = serde_json::from_str(answers.iter().next().unwrap()).unwrap();
    let ids: Vec<&str> = results
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["Value"].as_str().unwrap())
        .collect();
    let back = post(
        a.addr,
        "/number-mapping",
        json!({"Numbers": ids, "Mode": "UIDToPhone"})
            .to_string()
            .as_bytes(),
        Some(("tccc", "pw")),
    )
    .await
    .json();
    assert_eq!(back["Results"][0]["Value"], "008618600000002");
    assert_eq!(back["Results"][1]["Value"], "008613900000001");
    let store = Store::new(&a.settings.redis).unwrap();
    let mut c = store.conn().await.unwrap();
    let orphans: std::collections::HashMap<String, String> =
        c.hgetall(store.keys().phone_by_uid()).await.unwrap();
    assert_eq!(
        orphans.len(),
        2,
        "no orphan id reservation left: {orphans:?}"
    );
}
