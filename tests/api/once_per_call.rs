//! Once per callId under faults that are not crashes: a broker that blocks
//! publishes for longer than the handler timeout, and a Redis that refuses
//! writes after the broker confirmed an event. Each would have published a
//! second call-log event once the publish lease expired.

use std::time::Duration;

use axn_worker::config::{AmqpUrl, QueueKind, RedisUrl, Secret};
use redis::AsyncCommands;

use crate::{
    helpers::{DEADLINE, TestApp, test_settings, unique_id},
    lifecycle::{own_redis, spare_port},
    proxy::Proxy,
};

/// Events for `call_id` in the app's call-log queue, after everything settled.
async fn events(app: &TestApp, call_id: &str) -> usize {
    app.drained().await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    let n = app.queue_len(&app.call_log_queue()).await as usize;
    let mut seen = 0;
    for _ in 0..n {
        let e = app.take(&app.call_log_queue()).await;
        if e.properties.message_id().as_ref().map(|s| s.as_str()) == Some(call_id) {
            seen += 1;
        }
    }
    seen
}

#[tokio::test]
async fn publishes_blocked_longer_than_the_handler_timeout_publish_once() {
    let proxy = Proxy::start("127.0.0.1:5672").await;
    let id = unique_id();
    let mut settings = test_settings(&id);
    settings.amqp.url = AmqpUrl::one(proxy.amqp_url());
    settings.queues.call_record.timeout_secs = 1;
    settings.queues.call_record.retry_delays_ms = vec![100];
    settings.queues.call_record.max_attempts = 50;
    let app = TestApp::connect(id, settings).await.start().await;
    app.put_binding("blk1", 11, 12).await;
    // The broker stops reading what the worker sends (as in a resource
    // alarm); deliveries still reach it.
    proxy.stall_upstream(true);
    app.publish(
        QueueKind::CallRecord,
        br#"{"subId":"blk1","callId":"blk-call"}"#,
    )
    .await;
    let mark = app.key("PrivateNumber_calllog:blk-call");
    app.eventually("claimed", || {
        let mut r = app.redis.clone();
        let mark = mark.clone();
        async move { r.exists::<_, bool>(mark).await.unwrap_or(false) }
    })
    .await;
    // Three handler timeouts (and lease lengths) pass with the publish stuck.
    tokio::time::sleep(Duration::from_secs(3)).await;
    proxy.stall_upstream(false);
    assert_eq!(events(&app, "blk-call").await, 1, "published once");
    let v: Option<String> = app.redis.clone().get(&mark).await.unwrap();
    assert_eq!(v.as_deref(), Some("1"));
}

#[tokio::test]
async fn a_mark_that_cannot_be_written_after_the_confirm_never_publishes_again() {
    let port = spare_port();
    let _redis = own_redis(port).await;
    let url = format!("redis://127.0.0.1:{port}/0");
    let own = redis::Client::open(url.as_str()).unwrap();
    let mut r = own.get_multiplexed_async_connection().await.unwrap();
    let proxy = Proxy::start("127.0.0.1:5672").await;
    let id = unique_id();
    let mut settings = test_settings(&id);
    settings.amqp.url = AmqpUrl::one(proxy.amqp_url());
    settings.redis.url = RedisUrl::Single(Secret::new(url));
    settings.queues.call_record.timeout_secs = 2;
    settings.queues.call_record.retry_delays_ms = vec![200];
    settings.queues.call_record.max_attempts = 100;
    let app = TestApp::connect(id, settings).await.start().await;
    let binding = crate::xb_unbind::binding("ro1", 13, 14);
    let _: () = r
        .hset(app.key("PrivateNumber_xb"), "ro1", binding)
        .await
        .unwrap();
    let mark = app.key("PrivateNumber_calllog:ro-call");

    // Hold the publish until Redis refuses writes, then let it be confirmed.
    proxy.stall_upstream(true);
    app.publish(
        QueueKind::CallRecord,
        br#"{"subId":"ro1","callId":"ro-call"}"#,
    )
    .await;
    let deadline = std::time::Instant::now() + DEADLINE;
    while !r.exists::<_, bool>(&mark).await.unwrap() {
        assert!(std::time::Instant::now() < deadline, "never claimed");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let ctl = r.clone();
    let refuse = |n: u32| {
        let mut r = ctl.clone();
        async move {
            let _: () = redis::cmd("CONFIG")
                .arg("SET")
                .arg("min-replicas-to-write")
                .arg(n)
                .query_async(&mut r)
                .await
                .unwrap();
        }
    };
    refuse(1).await;
    proxy.stall_upstream(false);
    // Writes refused for longer than the lease (2 s): it expires meanwhile.
    tokio::time::sleep(Duration::from_secs(4)).await;
    let lease: Option<String> = r.get(&mark).await.unwrap();
    assert_eq!(lease, None, "the lease expired while Redis refused writes");
    refuse(0).await;
    assert_eq!(events(&app, "ro-call").await, 1, "published once");
    let v: Option<String> = r.get(&mark).await.unwrap();
    assert_eq!(v.as_deref(), Some("1"));
}

/// SIGTERM while the broker answers nothing (a proxy that stopped passing
/// bytes): every wait of the shutdown has a deadline, and the process exits
/// 0 within the grace period and a few seconds.
#[tokio::test]
async fn sigterm_with_a_silent_broker_exits_within_the_grace_period() {
    let proxy = Proxy::start("127.0.0.1:5672").await;
    let id = unique_id();
    let mut settings = test_settings(&id);
    settings.shutdown.grace_period_secs = 2;
    let mut app = TestApp::connect(id, settings.clone()).await.start().await;
    app.stop().await.unwrap();
    settings.amqp.url = AmqpUrl::one(proxy.amqp_url());
    let mut worker = crate::helpers::WorkerProcess::start(&settings).await;
    proxy.stall();
    let asked = std::time::Instant::now();
    worker.signal("TERM");
    let status = tokio::time::timeout(Duration::from_secs(15), worker.child.wait())
        .await
        .expect("the worker exits")
        .unwrap();
    let took = asked.elapsed();
    assert!(took < Duration::from_secs(2 + 5), "took {took:?}");
    assert_eq!(status.code(), Some(0));
}

/// Prefetch is not concurrency: with one handler slot and a prefetch of 10,
/// call records whose events wait for a confirm the broker does not send
/// hold no slot, so the records behind them are still claimed meanwhile;
/// when the broker answers, each is published once.
#[tokio::test]
async fn records_waiting_for_their_confirm_hold_no_handler_slot() {
    let proxy = Proxy::start("127.0.0.1:5672").await;
    let id = unique_id();
    let mut settings = test_settings(&id);
    settings.amqp.url = AmqpUrl::one(proxy.amqp_url());
    settings.queues.call_record.concurrency = 1;
    settings.queues.call_record.prefetch = 10;
    settings.queues.call_record.timeout_secs = 30;
    let app = TestApp::connect(id, settings).await.start().await;
    for i in 0..3 {
        app.put_binding(&format!("slot{i}"), 20 + i, 30 + i).await;
    }
    // Deliveries still reach the worker; its publishes (and acks) do not
    // reach the broker.
    proxy.stall_upstream(true);
    for i in 0..3 {
        app.publish(
            QueueKind::CallRecord,
            format!(r#"{{"subId":"slot{i}","callId":"slot-call-{i}"}}"#).as_bytes(),
        )
        .await;
    }
    app.eventually(
        "all three claimed while the first confirm is stuck",
        || async {
            let mut r = app.redis.clone();
            let mut claimed = 0;
            for i in 0..3 {
                let mark = app.key(&format!("PrivateNumber_calllog:slot-call-{i}"));
                claimed += usize::from(r.exists::<_, bool>(mark).await.unwrap_or(false));
            }
            claimed == 3
        },
    )
    .await;
    proxy.stall_upstream(false);
    app.drained().await;
    let out = app.call_log_queue();
    let n = app.queue_len(&out).await as usize;
    let mut ids: Vec<String> = app
        .take_n(&out, n)
        .await
        .iter()
        .filter_map(|e| e.properties.message_id().as_ref().map(|s| s.to_string()))
        .collect();
    ids.sort();
    assert_eq!(ids, ["slot-call-0", "slot-call-1", "slot-call-2"]);
}
