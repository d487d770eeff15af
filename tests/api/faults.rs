//! What production does to a queue worker, done to this one: the broker
//! closing its connection, Redis dying, kill -9, SIGTERM, unconfirmed
//! publishes, three replicas on a shuffled duplicated stream, handlers
//! outliving their timeout. Each test is bounded in time, uses only servers
//! on loopback, stops or restarts only servers it started itself, and prints
//! a `FIGURES` line (see docs/reliability.md).

use std::{
    collections::{BTreeMap, HashSet},
    time::{Duration, Instant},
};

use axn_worker::config::QueueKind;
use lapin::types::{AMQPValue, FieldTable};
use redis::AsyncCommands;
use serde_json::{Value, json};

use crate::{
    helpers::{
        DEADLINE, TestApp, WorkerProcess, spawn_app, spawn_app_with, test_settings, unique_id,
    },
    lifecycle::{own_is_member, spare_port},
};

fn figures(
    fault: &str,
    sent: usize,
    applied: usize,
    lost: usize,
    duplicated: usize,
    dead_lettered: u32,
) {
    println!(
        "FIGURES fault={fault} sent={sent} applied={applied} lost={lost} duplicated={duplicated} dead_lettered={dead_lettered}"
    );
}

/// Dead letters across the app's four queues.
async fn dead_letters(app: &TestApp) -> u32 {
    let mut n = 0;
    for k in QueueKind::ALL {
        n += app.queue_len(&app.dlq(k)).await;
    }
    n
}

fn add(user: u64, i: usize) -> Vec<u8> {
    json!({"private_number": format!("13{:09}", i), "action": "add", "userid": user, "type": 0})
        .to_string()
        .into_bytes()
}

async fn members(
    app: &TestApp,
    redis: &mut redis::aio::MultiplexedConnection,
    user: u64,
) -> HashSet<String> {
    redis
        .smembers(app.key(&format!("PrivateNumber_black:{user}:0")))
        .await
        .unwrap_or_default()
}

fn expected_numbers(n: usize) -> HashSet<String> {
    (0..n).map(|i| format!("13{:09}", i)).collect()
}

/// The broker closes the worker's connection in the middle of a stream of
/// 3,000 messages: all applied, none dead-lettered, ready again.
#[tokio::test]
async fn broker_closes_the_connection_mid_stream() {
    let app = spawn_app().await;
    let n = 3000;
    let publisher = {
        let ch = app.amqp.create_channel().await.unwrap();
        ch.confirm_select(Default::default()).await.unwrap();
        let queue = app.queue(QueueKind::Blacklist);
        tokio::spawn(async move {
            for i in 0..n {
                ch.basic_publish(
                    "".into(),
                    queue.as_str().into(),
                    Default::default(),
                    &add(51, i),
                    lapin::BasicProperties::default().with_delivery_mode(2),
                )
                .await
                .unwrap();
            }
            ch.wait_for_confirms().await.unwrap();
        })
    };
    let mut r = app.redis.clone();
    app.eventually("a third applied", || {
        let mut r = r.clone();
        let key = app.key("PrivateNumber_black:51:0");
        async move { r.scard::<_, usize>(key).await.unwrap_or(0) >= n / 3 }
    })
    .await;
    crate::lifecycle::close_connection_of(&app).await;
    publisher.await.unwrap();
    app.eventually("all applied", || {
        let mut r = r.clone();
        let key = app.key("PrivateNumber_black:51:0");
        async move { r.scard::<_, usize>(key).await.unwrap_or(0) == n }
    })
    .await;
    app.wait_ready().await;
    let dead = app.queue_len(&app.dlq(QueueKind::Blacklist)).await;
    let applied = members(&app, &mut r, 51).await;
    assert_eq!(applied, expected_numbers(n));
    assert_eq!(dead, 0);
    assert!(app.health.as_ref().unwrap().reconnects() >= 1);
    figures(
        "broker_closes_connection",
        n,
        applied.len(),
        n - applied.len(),
        0,
        dead,
    );
}

/// A redis-server of the test's own, with an fsync-always AOF in `dir` so a
/// kill -9 loses no acknowledged write.
async fn durable_redis(port: u16, dir: &std::path::Path) -> crate::lifecycle::OwnRedis {
    let dir = dir.to_str().unwrap();
    crate::lifecycle::own_redis_with(
        port,
        &[
            "--appendonly",
            "yes",
            "--appendfsync",
            "always",
            "--dir",
            dir,
        ],
    )
    .await
}

/// Redis is killed during a stream of 2,000 messages and comes back 3 s
/// later: readiness is false meanwhile, every message is applied once Redis
/// is back, none is lost or dead-lettered while retries remain.
#[tokio::test]
async fn redis_dies_for_seconds_mid_stream() {
    let port = spare_port();
    let dir = std::env::temp_dir().join(format!("axn-redis-{}", unique_id()));
    std::fs::create_dir_all(&dir).unwrap();
    let mut redis_server = durable_redis(port, &dir).await;
    let url = format!("redis://127.0.0.1:{port}/0");
    let app = spawn_app_with(|s| {
        s.redis.url = axn_worker::config::RedisUrl::single(url.clone());
        s.queues.blacklist.retry_delays_ms = vec![200, 500, 1000];
        s.queues.blacklist.max_attempts = 30;
    })
    .await;
    let own = redis::Client::open(url.as_str()).unwrap();
    let n = 2000;
    for i in 0..n / 2 {
        app.publish(QueueKind::Blacklist, &add(52, i)).await;
    }
    redis_server.kill().await.unwrap();
    let _ = redis_server.wait().await;
    let started = Instant::now();
    let mut seen_not_ready = false;
    for i in n / 2..n {
        app.publish(QueueKind::Blacklist, &add(52, i)).await;
    }
    while started.elapsed() < Duration::from_secs(3) {
        seen_not_ready |= app.get("/readyz").await.map(|r| r.0).unwrap_or(0) == 503;
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(seen_not_ready, "not ready while Redis is down");
    let _redis_server = durable_redis(port, &dir).await;
    let key = app.key("PrivateNumber_black:52:0");
    app.eventually("all applied after Redis returned", || {
        let own = own.clone();
        let key = key.clone();
        async move {
            let Ok(mut c) = own.get_multiplexed_async_connection().await else {
                return false;
            };
            c.scard::<_, usize>(key).await.unwrap_or(0) == n
        }
    })
    .await;
    app.wait_ready().await;
    let dead = app.queue_len(&app.dlq(QueueKind::Blacklist)).await;
    let mut c = own.get_multiplexed_async_connection().await.unwrap();
    let applied: HashSet<String> = c.smembers(&key).await.unwrap();
    assert_eq!(applied, expected_numbers(n));
    assert_eq!(dead, 0);
    figures(
        "redis_down_3s",
        n,
        applied.len(),
        n - applied.len(),
        0,
        dead,
    );
    let _ = std::fs::remove_dir_all(&dir);
}

/// A mixed stream whose effects are independent of order: blacklist adds,
/// one phone change per user, one call record per callId (on seeded
/// bindings), one unbind per binding. `copies` of each message.
pub(crate) struct Stream {
    pub messages: Vec<(QueueKind, Vec<u8>)>,
    pub call_ids: Vec<String>,
}

pub(crate) async fn mixed_stream(app: &TestApp, n: usize, copies: usize) -> Stream {
    let mut messages = Vec::new();
    let mut call_ids = Vec::new();
    for i in 0..n {
        let m = match i % 4 {
            0 => (QueueKind::Blacklist, add(60, i)),
            1 => (QueueKind::PhoneHistory, json!({"userId": 1000 + i, "newPhone": format!("138{:08}", i), "oldPhone": format!("139{:08}", i)}).to_string().into_bytes()),
            2 => {
                app.put_binding(&format!("cr{i}"), 7000 + i as u64, 9000 + i as u64).await;
                call_ids.push(format!("call-{i}"));
                (QueueKind::CallRecord, json!({"subId": format!("cr{i}"), "callId": format!("call-{i}")}).to_string().into_bytes())
            }
            _ => {
                app.put_binding(&format!("ub{i}"), 8000 + i as u64, 1).await;
                (QueueKind::XbUnbind, json!({"subId": format!("ub{i}"), "telX": "17111526089"}).to_string().into_bytes())
            }
        };
        for _ in 0..copies {
            messages.push(m.clone());
        }
    }
    Stream { messages, call_ids }
}

/// Every key under the app's prefix, as comparable text: timestamps that
/// depend on when a message ran (unboundAt, first-seen scores, the unbound
/// index) are blanked; TTLs are left out.
pub(crate) async fn state(app: &TestApp) -> BTreeMap<String, String> {
    let mut r = app.redis.clone();
    let prefix = &app.settings.redis.key_prefix;
    let mut keys: Vec<String> = Vec::new();
    {
        let mut it = r
            .scan_match::<_, String>(format!("{prefix}*"))
            .await
            .unwrap();
        while let Some(k) = futures_util::StreamExt::next(&mut it).await {
            keys.push(k.unwrap());
        }
    }
    let mut out = BTreeMap::new();
    for k in keys {
        let name = k.strip_prefix(prefix.as_str()).unwrap().to_owned();
        if name == "axn_worker_signing_key" {
            // Random per deployment (here: per test namespace), not state
            // that messages make.
            continue;
        }
        let kind: String = redis::cmd("TYPE")
            .arg(&k)
            .query_async(&mut r)
            .await
            .unwrap();
        let value = match kind.as_str() {
            "string" => r.get::<_, String>(&k).await.unwrap(),
            "set" => {
                let mut m: Vec<String> = r.smembers(&k).await.unwrap();
                m.sort();
                m.join(",")
            }
            "hash" => {
                let h: BTreeMap<String, String> = r.hgetall(&k).await.unwrap();
                h.into_iter()
                    .map(|(f, v)| match serde_json::from_str::<Value>(&v) {
                        Ok(Value::Object(mut o)) => {
                            o.remove("unboundAt");
                            format!("{f}={}", Value::Object(o))
                        }
                        _ => format!("{f}={v}"),
                    })
                    .collect::<Vec<_>>()
                    .join(";")
            }
            "zset" => {
                let mut m: Vec<String> = r.zrange(&k, 0, -1).await.unwrap();
                m.sort();
                m.join(",")
            }
            other => other.to_owned(),
        };
        out.insert(name, value);
    }
    out
}

/// Every callId's event, counting copies.
pub(crate) async fn events(app: &TestApp) -> BTreeMap<String, usize> {
    let q = app.call_log_queue();
    let n = app.queue_len(&q).await as usize;
    let mut out = BTreeMap::new();
    for d in app.take_n(&q, n).await {
        let id = d.properties.message_id().as_ref().unwrap().to_string();
        *out.entry(id).or_insert(0) += 1;
    }
    out
}

/// Applies the stream once, in order, with one in-process worker: the
/// reference state.
pub(crate) async fn reference_state(n: usize) -> BTreeMap<String, String> {
    let app = spawn_app().await;
    let stream = mixed_stream(&app, n, 1).await;
    for (kind, body) in &stream.messages {
        app.publish(*kind, body).await;
    }
    app.drained().await;
    state(&app).await
}

/// Asserts the app's Redis state is that of one in-order run of the same
/// stream; returns (call-log events missing, events duplicated).
async fn assert_state_of_one_in_order_run(
    app: &TestApp,
    stream: &Stream,
    n: usize,
) -> (usize, usize) {
    let got = state(app).await;
    let evs = events(app).await;
    let want = reference_state(n).await;
    // Only the differing keys: the states have thousands.
    let differing: Vec<String> = got
        .keys()
        .chain(want.keys())
        .collect::<std::collections::BTreeSet<_>>()
        .into_iter()
        .filter(|k| got.get(*k) != want.get(*k))
        .map(|k| {
            format!(
                "{k}: got {:?}, one in-order run {:?}",
                got.get(k),
                want.get(k)
            )
        })
        .collect();
    assert!(
        differing.is_empty(),
        "not the state of one in-order run ({} keys differ):\n{}",
        differing.len(),
        differing
            .iter()
            .take(20)
            .cloned()
            .collect::<Vec<_>>()
            .join("\n")
    );
    let missing = stream
        .call_ids
        .iter()
        .filter(|c| !evs.contains_key(*c))
        .count();
    let dup = evs.values().map(|c| c - 1).sum();
    (missing, dup)
}

/// kill -9 of the worker mid-stream, then a restart: every message applied,
/// the state exactly that of one in-order run, every call-log event there.
#[tokio::test]
async fn kill_9_mid_stream_then_restart() {
    let n = 2000;
    let id = unique_id();
    let mut settings = test_settings(&id);
    // A call record killed between its publish lease and its mark waits for
    // the lease (= timeout_secs) to expire before it can publish again: keep
    // it short here, with retries that outlast it.
    settings.queues.call_record.timeout_secs = 2;
    settings.queues.call_record.retry_delays_ms = vec![250];
    settings.queues.call_record.max_attempts = 40;
    let app = TestApp::connect(id, settings.clone()).await.start().await;
    let stream = mixed_stream(&app, n, 1).await;
    let mut worker = WorkerProcess::start(&settings).await;
    // The in-process worker of `app` stays running too: stop it so the
    // process is the one being killed.
    let mut app = app;
    app.stop().await.unwrap();
    for kind in QueueKind::ALL {
        let bodies: Vec<Vec<u8>> = stream
            .messages
            .iter()
            .filter(|(k, _)| *k == kind)
            .map(|(_, b)| b.clone())
            .collect();
        app.publish_many(kind, &bodies).await;
    }
    let key = app.key("PrivateNumber_black:60:0");
    app.eventually("some applied", || {
        let mut r = app.redis.clone();
        let key = key.clone();
        async move { r.scard::<_, usize>(key).await.unwrap_or(0) >= 20 }
    })
    .await;
    worker.signal("KILL");
    let _ = worker.child.wait().await;
    let mut waiting = 0;
    for kind in QueueKind::ALL {
        waiting += app.queue_len(&app.queue(kind)).await;
    }
    println!("kill -9: {waiting} of {n} messages still queued (or unacked) at the kill");
    let _worker = WorkerProcess::start(&settings).await;
    app.drained().await;
    let (missing, dup) = assert_state_of_one_in_order_run(&app, &stream, n).await;
    let dead = dead_letters(&app).await;
    assert_eq!(missing, 0, "no call-log event lost");
    assert_eq!(dead, 0);
    figures("kill_9_and_restart", n, n - missing, missing, dup, dead);
}

/// SIGTERM mid-stream: exit 0 within the grace period, and every message is
/// applied or back in its queue.
#[tokio::test]
async fn sigterm_mid_stream_exits_zero_and_returns_the_rest() {
    let n = 3000;
    let id = unique_id();
    let settings = test_settings(&id);
    let mut app = TestApp::connect(id, settings.clone()).await.start().await;
    app.stop().await.unwrap();
    let mut worker = WorkerProcess::start(&settings).await;
    let bodies: Vec<Vec<u8>> = (0..n).map(|i| add(61, i)).collect();
    app.publish_many(QueueKind::Blacklist, &bodies).await;
    let stopped_at = Instant::now();
    worker.signal("TERM");
    let status = tokio::time::timeout(
        Duration::from_secs(settings.shutdown.grace_period_secs + 5),
        worker.child.wait(),
    )
    .await
    .expect("exits within the grace period")
    .unwrap();
    assert_eq!(status.code(), Some(0));
    let took = stopped_at.elapsed();
    let mut r = app.redis.clone();
    let applied = members(&app, &mut r, 61).await;
    let left = app.queue_len(&app.queue(QueueKind::Blacklist)).await as usize;
    let mut waiting = HashSet::new();
    for d in app.take_n(&app.queue(QueueKind::Blacklist), left).await {
        let v: Value = serde_json::from_slice(&d.data).unwrap();
        waiting.insert(v["private_number"].as_str().unwrap().to_owned());
    }
    let all = expected_numbers(n);
    let lost = all
        .iter()
        .filter(|x| !applied.contains(*x) && !waiting.contains(*x))
        .count();
    assert_eq!(lost, 0, "every message applied or returned");
    let dead = app.queue_len(&app.dlq(QueueKind::Blacklist)).await;
    assert_eq!(dead, 0);
    println!(
        "sigterm: exited 0 after {took:?}; {} applied, {} returned",
        applied.len(),
        waiting.len()
    );
    figures(
        "sigterm",
        n,
        applied.len(),
        lost,
        applied.intersection(&waiting).count(),
        dead,
    );
}

/// The call-log queue refuses publishes (max-length with reject-publish):
/// the records are retried, not acknowledged, and once there is room every
/// event arrives; none is lost.
#[tokio::test]
async fn unconfirmed_call_log_publishes_are_retried_not_lost() {
    let id = unique_id();
    let mut settings = test_settings(&id);
    settings.publish.call_log.passive = true;
    settings.queues.call_record.retry_delays_ms = vec![200];
    settings.queues.call_record.max_attempts = 200;
    let app = TestApp::connect(id, settings).await;
    // The SRE-owned output queue holds 5 messages and refuses more.
    let mut args = FieldTable::default();
    args.insert("x-max-length".into(), AMQPValue::LongLongInt(5));
    args.insert(
        "x-overflow".into(),
        AMQPValue::LongString("reject-publish".into()),
    );
    crate::helpers::declare_durable(&app.channel, &app.call_log_queue(), args).await;
    let app = app.start().await;
    let n = 20;
    for i in 0..n {
        app.put_binding(&format!("full{i}"), 100 + i as u64, 200 + i as u64)
            .await;
        app.publish(
            QueueKind::CallRecord,
            json!({"subId": format!("full{i}"), "callId": format!("full-{i}")})
                .to_string()
                .as_bytes(),
        )
        .await;
    }
    app.eventually("the output queue is full", || async {
        app.queue_len(&app.call_log_queue()).await == 5
    })
    .await;
    app.eventually("publishes refused and retried", || async {
        let page = app.get("/metrics").await.unwrap().1;
        crate::operate::metric(&page, r#"axn_publish_failures_total{queue="call_record"}"#) > 0.0
    })
    .await;
    // Drain the output queue as its consumer would, until every event came.
    let mut seen: BTreeMap<String, usize> = BTreeMap::new();
    let deadline = Instant::now() + DEADLINE;
    while seen.len() < n {
        assert!(
            Instant::now() < deadline,
            "events missing: got {}",
            seen.len()
        );
        if let Some(m) = app
            .channel
            .basic_get(
                app.call_log_queue().as_str().into(),
                lapin::options::BasicGetOptions { no_ack: true },
            )
            .await
            .unwrap()
        {
            *seen
                .entry(
                    m.delivery
                        .properties
                        .message_id()
                        .as_ref()
                        .unwrap()
                        .to_string(),
                )
                .or_insert(0) += 1;
        } else {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
    app.drained().await;
    let dead = app.queue_len(&app.dlq(QueueKind::CallRecord)).await;
    assert_eq!(dead, 0);
    let dup: usize = seen.values().map(|c| c - 1).sum();
    assert_eq!(dup, 0, "a refused publish is not a published event");
    figures(
        "call_log_publish_refused",
        n,
        seen.len(),
        n - seen.len(),
        dup,
        dead,
    );
}

/// Three worker processes on the same queues, a shuffled stream in which
/// every message appears three times: the state of one in-order run, and
/// one event per callId.
#[tokio::test]
async fn three_replicas_on_a_shuffled_duplicated_stream() {
    let n = 1200;
    let id = unique_id();
    let settings = test_settings(&id);
    let mut app = TestApp::connect(id, settings.clone()).await.start().await;
    app.stop().await.unwrap();
    let mut stream = mixed_stream(&app, n, 3).await;
    // A fixed shuffle (xorshift), so a failure can be reproduced.
    let mut seed = 0x9E37_79B9_7F4A_7C15u64;
    for i in (1..stream.messages.len()).rev() {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        stream.messages.swap(i, (seed % (i as u64 + 1)) as usize);
    }
    let _workers = [
        WorkerProcess::start(&settings).await,
        WorkerProcess::start(&settings).await,
        WorkerProcess::start(&settings).await,
    ];
    for (kind, body) in &stream.messages {
        app.publish(*kind, body).await;
    }
    app.drained().await;
    let (missing, dup) = assert_state_of_one_in_order_run(&app, &stream, n).await;
    assert_eq!(
        (missing, dup),
        (0, 0),
        "one event per callId across replicas"
    );
    let dead = dead_letters(&app).await;
    assert_eq!(dead, 0);
    figures(
        "three_replicas_shuffled_x3",
        stream.messages.len(),
        n,
        missing,
        dup,
        dead,
    );
}

/// A handler that outlives its timeout (its Redis paused for 1.5 s, timeout
/// 1 s) is retried and later succeeds; a message published while it waits
/// in the retry queue is applied at once, not held up behind it.
#[tokio::test]
async fn timed_out_handler_is_retried_and_blocks_nothing() {
    let port = spare_port();
    let _redis = crate::lifecycle::own_redis(port).await;
    let url = format!("redis://127.0.0.1:{port}/0");
    let app = spawn_app_with(|s| {
        s.redis.url = axn_worker::config::RedisUrl::single(url.clone());
        s.queues.blacklist.timeout_secs = 1;
        s.queues.blacklist.retry_delays_ms = vec![4000];
        s.queues.blacklist.max_attempts = 5;
    })
    .await;
    let own = redis::Client::open(url.as_str()).unwrap();
    let mut c = own.get_multiplexed_async_connection().await.unwrap();
    let _: () = redis::cmd("CLIENT")
        .arg("PAUSE")
        .arg(1500)
        .arg("ALL")
        .query_async(&mut c)
        .await
        .unwrap();
    let slow_at = Instant::now();
    app.publish(QueueKind::Blacklist, &add(70, 1)).await;
    let retry = app.settings.queues.blacklist.retry_queue_name(4000);
    app.eventually("the slow message waits in the retry queue", || async {
        app.queue_len(&retry).await == 1
    })
    .await;
    // Pause over; another message (another entity) goes straight through.
    tokio::time::sleep(Duration::from_millis(1600).saturating_sub(slow_at.elapsed())).await;
    app.publish(QueueKind::Blacklist, &add(71, 2)).await;
    let key71 = app.key("PrivateNumber_black:71:0");
    let key70 = app.key("PrivateNumber_black:70:0");
    app.eventually("the other message applied", || async {
        own_is_member(&own, &key71, "13000000002").await == Some(true)
    })
    .await;
    let other_done = slow_at.elapsed();
    assert!(
        other_done < Duration::from_secs(4),
        "the other message was not held up by the slow one's retry ({other_done:?})"
    );
    let page = app.get("/metrics").await.unwrap().1;
    assert_eq!(
        crate::operate::metric(
            &page,
            r#"axn_handler_duration_seconds_count{queue="blacklist",outcome="transient"}"#
        ),
        1.0,
        "timed out once"
    );
    app.eventually("the slow message applied on retry", || async {
        own_is_member(&own, &key70, "13000000001").await == Some(true)
    })
    .await;
    assert_eq!(app.queue_len(&app.dlq(QueueKind::Blacklist)).await, 0);
    figures("handler_timeout", 2, 2, 0, 0, 0);
}
