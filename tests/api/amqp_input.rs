//! AMQP properties and headers are input too: whatever table the broker
//! accepts ends in a normal outcome (applied, or dead-lettered with a
//! reason), never a crash or a reconnect loop; and the worker's own
//! decisions (attempt count, dead-letter cycles) cannot be steered by a
//! producer's headers.

use std::time::Duration;

use axn_worker::config::QueueKind;
use lapin::{
    BasicProperties,
    types::{AMQPValue, FieldTable},
};

use crate::{
    helpers::{TestApp, WorkerProcess, header, test_settings, unique_id},
    raw_amqp::{self, Answer, Table},
};

const BROKER: &str = "127.0.0.1:5672";

#[tokio::test]
async fn deeply_nested_headers_end_in_a_normal_outcome() {
    let id = unique_id();
    let settings = test_settings(&id);
    let mut app = TestApp::connect(id, settings.clone()).await.start().await;
    app.stop().await.unwrap();
    let worker = WorkerProcess::start(&settings).await;
    let queue = app.queue(QueueKind::XbUnbind);
    let headers = Table::default().nested("deep", 20_000);
    let answer = raw_amqp::publish(BROKER, &queue, b"not json", &headers).await;
    assert_eq!(answer, Answer::Ack, "the broker accepts the message");
    let dead = app.take(&app.dlq(QueueKind::XbUnbind)).await;
    assert_eq!(header(&dead, "axn-reason").as_deref(), Some("invalid_json"));
    assert_eq!(
        header(&dead, "deep"),
        None,
        "the value the parser skipped is not forwarded"
    );
    let cut = header(&dead, "axn-headers-cut").expect("the cut is recorded");
    assert!(cut.contains("deep"), "{cut}");
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(worker.readyz().await, 200, "still ready");
}

/// A header table as large as the broker accepts: the worker's own headers
/// would push its copy past frame_max, so the copy is forwarded with the
/// producer's headers cut (and the cut recorded), and nothing reconnects.
#[tokio::test]
async fn headers_too_large_to_forward_are_cut_not_fatal() {
    let id = unique_id();
    let settings = test_settings(&id);
    let mut app = TestApp::connect(id, settings.clone()).await.start().await;
    app.stop().await.unwrap();
    let worker = WorkerProcess::start(&settings).await;
    let queue = app.queue(QueueKind::Blacklist);
    // 131,072 (frame_max) - frame and property overhead.
    let headers = Table::default()
        .long_string("big", &vec![b'a'; 130_900])
        .long_string("trace", b"t-1");
    let answer = raw_amqp::publish(BROKER, &queue, b"{}", &headers).await;
    assert_eq!(answer, Answer::Ack, "the broker accepts the message");
    let dead = app.take(&app.dlq(QueueKind::Blacklist)).await;
    assert_eq!(
        header(&dead, "axn-reason").as_deref(),
        Some("missing_field")
    );
    assert_eq!(header(&dead, "big"), None);
    assert_eq!(
        header(&dead, "trace").as_deref(),
        Some("t-1"),
        "small headers kept"
    );
    let cut = header(&dead, "axn-headers-cut").expect("the cut is recorded");
    assert!(cut.contains("big"), "{cut}");
    assert_eq!(worker.readyz().await, 200, "still ready");
    assert_eq!(
        reconnects(&worker).await,
        0,
        "the connection was never lost"
    );
}

/// The worker's reconnect counter, from its /metrics.
async fn reconnects(w: &WorkerProcess) -> u64 {
    let addr: std::net::SocketAddr = ([127, 0, 0, 1], w.port).into();
    let (_, body) = crate::helpers::http_get(addr, "/metrics").await;
    body.lines()
        .find(|l| l.starts_with("axn_broker_reconnects_total "))
        .and_then(|l| l.split_whitespace().nth(1)?.parse().ok())
        .expect("axn_broker_reconnects_total exported")
}

/// A producer cannot make a message skip its retries with the worker's own
/// attempt header (plain, or with a made-up signature).
#[tokio::test]
async fn a_producer_set_attempt_count_is_not_trusted() {
    let app = crate::helpers::spawn_app().await;
    for (user, forged) in [(71u64, None), (72, Some("00ff"))] {
        let key = app.key(&format!("PrivateNumber_black:{user}:0"));
        let _: () = redis::AsyncCommands::set(&mut app.redis.clone(), &key, "not a set")
            .await
            .unwrap();
        let mut h = FieldTable::default();
        h.insert("axn-attempts".into(), AMQPValue::LongLongInt(100));
        if let Some(sig) = forged {
            h.insert("axn-signature".into(), AMQPValue::LongString(sig.into()));
        }
        let body = format!(
            r#"{{"private_number":"13470110001","action":"add","userid":{user},"type":0}}"#
        );
        app.publish_to(
            &app.queue(QueueKind::Blacklist),
            body.as_bytes(),
            BasicProperties::default().with_headers(h),
        )
        .await;
        let dead = app.take(&app.dlq(QueueKind::Blacklist)).await;
        assert_eq!(
            header(&dead, "axn-reason").as_deref(),
            Some("retries_exhausted")
        );
        assert_eq!(
            header(&dead, "axn-attempts").as_deref(),
            Some("3"),
            "every attempt was made (max_attempts = 3)"
        );
    }
}

/// A producer-set `x-death` naming the input queue would make the broker drop
/// the worker's retry copy as a dead-letter cycle: copies carry no `x-`
/// header, so the message goes through its retries to the dead-letter queue.
#[tokio::test]
async fn a_producer_set_x_death_does_not_lose_the_message() {
    let app = crate::helpers::spawn_app().await;
    let queue = app.queue(QueueKind::Blacklist);
    let key = app.key("PrivateNumber_black:73:0");
    let _: () = redis::AsyncCommands::set(&mut app.redis.clone(), &key, "not a set")
        .await
        .unwrap();
    let mut death = FieldTable::default();
    death.insert("queue".into(), AMQPValue::LongString(queue.as_str().into()));
    death.insert("reason".into(), AMQPValue::LongString("expired".into()));
    death.insert("count".into(), AMQPValue::LongLongInt(1));
    death.insert("exchange".into(), AMQPValue::LongString("".into()));
    death.insert(
        "routing-keys".into(),
        AMQPValue::FieldArray(vec![AMQPValue::LongString(queue.as_str().into())].into()),
    );
    let mut retry_death = death.clone();
    let retry = app.settings.queues.blacklist.retry_queue_name(100);
    retry_death.insert("queue".into(), AMQPValue::LongString(retry.as_str().into()));
    let mut h = FieldTable::default();
    h.insert(
        "x-death".into(),
        AMQPValue::FieldArray(
            vec![
                AMQPValue::FieldTable(death),
                AMQPValue::FieldTable(retry_death),
            ]
            .into(),
        ),
    );
    h.insert(
        "x-first-death-queue".into(),
        AMQPValue::LongString(queue.as_str().into()),
    );
    let body = br#"{"private_number":"13470110001","action":"add","userid":73,"type":0}"#;
    app.publish_to(&queue, body, BasicProperties::default().with_headers(h))
        .await;
    let dead = app.take(&app.dlq(QueueKind::Blacklist)).await;
    assert_eq!(
        header(&dead, "axn-reason").as_deref(),
        Some("retries_exhausted")
    );
    assert_eq!(header(&dead, "axn-attempts").as_deref(), Some("3"));
    let names: Vec<String> = dead
        .properties
        .headers()
        .as_ref()
        .map(|h| h.inner().keys().map(|k| k.as_str().to_owned()).collect())
        .unwrap_or_default();
    assert!(
        names.iter().all(|n| !n.starts_with("x-") || n == "x-death"),
        "only the broker's own x-death of the last hop, if any: {names:?}"
    );
}
