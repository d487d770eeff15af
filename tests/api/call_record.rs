//! Call records -> call-log events `{"user","houseid"}`, once per callId;
//! unattributed records parked.

use axn_worker::config::QueueKind;
use redis::AsyncCommands;
use serde_json::{Value, json};

use crate::{
    helpers::{header, spawn_app},
    xb_unbind::SEED_UNBIND,
};

fn record(sub_id: &str, call_id: &str) -> String {
    json!({"platId": 3, "subId": sub_id, "callId": call_id, "telA": "13470110001", "telX": "17111526089",
           "telB": "13700051234", "callType": 0, "startTime": "2026-11-23 10:00:00", "releaseTime": "2026-11-23 10:03:12"})
    .to_string()
}

/// A record of a bound XB call publishes one persistent JSON event with
/// message_id = callId, and sets the 7-day dedupe mark.
#[tokio::test]
async fn record_publishes_one_event_with_the_callid_as_message_id() {
    let app = spawn_app().await;
    let mut r = app.redis.clone();
    app.put_binding("1000039976446302", 74705, 123456).await;
    app.publish(
        QueueKind::CallRecord,
        record("1000039976446302", "ab12cd").as_bytes(),
    )
    .await;

    let event = app.take(&app.call_log_queue()).await;
    assert_eq!(
        serde_json::from_slice::<Value>(&event.data).unwrap(),
        json!({"user": 74705, "houseid": 123456})
    );
    assert_eq!(
        event.properties.message_id().as_ref().map(|s| s.as_str()),
        Some("ab12cd")
    );
    assert_eq!(event.properties.delivery_mode(), &Some(2));
    assert_eq!(
        event.properties.content_type().as_ref().map(|s| s.as_str()),
        Some("application/json")
    );
    // The mark turns from the publish lease into `1` right after the confirm.
    app.eventually("dedupe mark committed", || async {
        let mark: Option<String> = r
            .clone()
            .get(app.key("PrivateNumber_calllog:ab12cd"))
            .await
            .unwrap();
        mark.as_deref() == Some("1")
    })
    .await;
    let ttl: i64 = r
        .ttl(app.key("PrivateNumber_calllog:ab12cd"))
        .await
        .unwrap();
    assert!(
        ttl > 7 * 86400 - 120 && ttl <= 7 * 86400,
        "dedupe mark lives 7 days, ttl {ttl}"
    );
}

/// The same callId, however often delivered, publishes once.
#[tokio::test]
async fn duplicate_call_ids_publish_once() {
    let app = spawn_app().await;
    app.put_binding("s1", 7, 8).await;
    for _ in 0..5 {
        app.publish(QueueKind::CallRecord, record("s1", "dup-1").as_bytes())
            .await;
    }
    app.drained().await;
    assert_eq!(app.queue_len(&app.call_log_queue()).await, 1);
    assert_eq!(app.queue_len(&app.dlq(QueueKind::CallRecord)).await, 0);
}

/// A record that arrives after the unbind is still attributed, through
/// PrivateNumber_xb_unbound.
#[tokio::test]
async fn late_record_after_unbind_is_attributed() {
    let app = spawn_app().await;
    app.put_binding("1000039976446302", 51218, 42).await;
    app.publish(QueueKind::XbUnbind, SEED_UNBIND.as_bytes())
        .await;
    app.eventually("unbound", || async {
        app.hget("PrivateNumber_xb_unbound", "1000039976446302")
            .await
            .is_some()
    })
    .await;
    app.publish(
        QueueKind::CallRecord,
        record("1000039976446302", "late-1").as_bytes(),
    )
    .await;
    let event = app.take(&app.call_log_queue()).await;
    assert_eq!(
        serde_json::from_slice::<Value>(&event.data).unwrap(),
        json!({"user": 51218, "houseid": 42})
    );
}

/// No binding: parked in `<queue>.unattributed`, nothing published, no mark
/// (so a replay after the binding appears still publishes).
#[tokio::test]
async fn unattributed_record_is_parked() {
    let app = spawn_app().await;
    let body = record("unknown-sub", "c-9");
    app.publish(QueueKind::CallRecord, body.as_bytes()).await;
    let parked = app
        .take(&app.settings.queues.call_record.unattributed_name())
        .await;
    assert_eq!(parked.data, body.as_bytes());
    assert_eq!(
        header(&parked, "axn-reason").as_deref(),
        Some("unattributed")
    );
    assert_eq!(
        header(&parked, "axn-original-queue"),
        Some(app.queue(QueueKind::CallRecord))
    );
    assert_eq!(app.queue_len(&app.call_log_queue()).await, 0);
    let mark: bool = app
        .redis
        .clone()
        .exists(app.key("PrivateNumber_calllog:c-9"))
        .await
        .unwrap();
    assert!(!mark);
}

/// A binding without a numeric userId or mapId is a permanent failure of
/// that record: dead-lettered with the reason, the lease released.
#[tokio::test]
async fn binding_without_numeric_ids_is_dead_lettered() {
    let app = spawn_app().await;
    let mut r = app.redis.clone();
    let _: () = r
        .hset(
            app.key("PrivateNumber_xb"),
            "bad",
            r#"{"subId":"bad","userId":"n/a"}"#,
        )
        .await
        .unwrap();
    app.publish(QueueKind::CallRecord, record("bad", "c-bad").as_bytes())
        .await;
    let d = app.take(&app.dlq(QueueKind::CallRecord)).await;
    assert_eq!(header(&d, "axn-reason").as_deref(), Some("invalid_binding"));
    let mark: bool = r
        .exists(app.key("PrivateNumber_calllog:c-bad"))
        .await
        .unwrap();
    assert!(!mark, "the publish lease is released");
    assert_eq!(app.queue_len(&app.call_log_queue()).await, 0);
}

/// Aliyun's SecretReport names are accepted, and a JSON array is handled
/// record by record: published, parked and dead-lettered records apart.
#[tokio::test]
async fn aliyun_batch_is_handled_record_by_record() {
    let app = spawn_app().await;
    app.put_binding("a1", 11, 110).await;
    app.put_binding("a2", 12, 120).await;
    let batch = json!([
        {"sub_id": "a1", "call_id": "x1", "phone_no": "13800000000", "secret_no": "17111526089", "peer_no": "13900000000", "call_type": 0, "start_time": "2026-11-23 10:00:00", "release_time": "2026-11-23 10:01:00"},
        {"sub_id": "a2", "call_id": "x2", "secret_no": "17111526089"},
        {"sub_id": "zz", "call_id": "x3"},
        {"sub_id": "a1"},
    ]);
    app.publish(QueueKind::CallRecord, batch.to_string().as_bytes())
        .await;
    let mut events: Vec<Value> = app
        .take_n(&app.call_log_queue(), 2)
        .await
        .iter()
        .map(|d| serde_json::from_slice(&d.data).unwrap())
        .collect();
    events.sort_by_key(|e| e["user"].as_u64());
    assert_eq!(
        events,
        [
            json!({"user": 11, "houseid": 110}),
            json!({"user": 12, "houseid": 120})
        ]
    );
    let parked = app
        .take(&app.settings.queues.call_record.unattributed_name())
        .await;
    assert_eq!(
        serde_json::from_slice::<Value>(&parked.data).unwrap()["call_id"],
        "x3"
    );
    let dead = app.take(&app.dlq(QueueKind::CallRecord)).await;
    assert_eq!(
        header(&dead, "axn-reason").as_deref(),
        Some("missing_field")
    );
    assert_eq!(
        serde_json::from_slice::<Value>(&dead.data).unwrap(),
        json!({"sub_id": "a1"})
    );
}

/// Through a configured exchange: the event follows the exchange's binding;
/// with no binding for the routing key the publish is returned, counted as
/// a failure, and the record retried (never acked as if it were published).
#[tokio::test]
async fn events_go_through_a_configured_exchange() {
    use lapin::options::{ExchangeDeclareOptions, QueueBindOptions};
    use lapin::types::FieldTable;
    let id = crate::helpers::unique_id();
    let exchange = format!("{id}.calllog.x");
    let mut settings = crate::helpers::test_settings(&id);
    settings.publish.call_log.exchange = exchange.clone();
    settings.publish.call_log.routing_key = "call-log".into();
    settings.queues.call_record.retry_delays_ms = vec![100];
    settings.queues.call_record.max_attempts = 100;
    let app = crate::helpers::TestApp::connect(id.clone(), settings).await;
    let ch = &app.channel;
    ch.exchange_declare(
        exchange.as_str().into(),
        lapin::ExchangeKind::Direct,
        ExchangeDeclareOptions::default(),
        FieldTable::default(),
    )
    .await
    .unwrap();
    let bound = format!("{id}.calllog.bound");
    crate::helpers::declare_durable(ch, &bound, FieldTable::default()).await;
    let app = app.start().await;
    app.put_binding("ex1", 5, 6).await;
    // Not bound yet: returned as unroutable, so retried, not acked.
    app.publish(
        QueueKind::CallRecord,
        br#"{"subId":"ex1","callId":"ex-call"}"#,
    )
    .await;
    app.eventually("refused and retried", || async {
        let page = app.get("/metrics").await.unwrap().1;
        crate::operate::metric(&page, r#"axn_messages_retried_total{queue="call_record"}"#) >= 2.0
    })
    .await;
    app.channel
        .queue_bind(
            bound.as_str().into(),
            exchange.as_str().into(),
            "call-log".into(),
            QueueBindOptions::default(),
            FieldTable::default(),
        )
        .await
        .unwrap();
    let event = app.take(&bound).await;
    assert_eq!(
        serde_json::from_slice::<Value>(&event.data).unwrap(),
        json!({"user": 5, "houseid": 6})
    );
    assert_eq!(
        event.properties.message_id().as_ref().map(|s| s.as_str()),
        Some("ex-call")
    );
    app.drained().await;
    assert_eq!(app.queue_len(&bound).await, 0, "published once");
    assert_eq!(app.queue_len(&app.dlq(QueueKind::CallRecord)).await, 0);
    let _ = app
        .channel
        .queue_delete(bound.as_str().into(), Default::default())
        .await;
    let _ = app
        .channel
        .exchange_delete(exchange.as_str().into(), Default::default())
        .await;
}
