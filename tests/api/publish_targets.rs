//! A publish target that disappears wedges nothing: the broker closes the
//! channel of a publish to a missing exchange, and the worker opens a new
//! one; the failing message takes the transient path (retries, then the
//! dead-letter queue with the last error); readiness and a metric show the
//! missing target; the worker's own queues are declared again.

use axn_worker::config::QueueKind;
use lapin::{
    ExchangeKind,
    options::{ExchangeDeclareOptions, QueueBindOptions, QueueDeleteOptions},
    types::FieldTable,
};
use serde_json::{Value, json};

use crate::{
    helpers::{TestApp, declare_durable, header, test_settings, unique_id},
    operate::metric,
};

#[tokio::test]
async fn a_missing_call_log_exchange_takes_the_transient_path_and_recovers() {
    let id = unique_id();
    let exchange = format!("{id}.calllog.x");
    let mut settings = test_settings(&id);
    settings.publish.call_log.exchange = exchange.clone();
    settings.publish.call_log.routing_key = "call-log".into();
    settings.queues.call_record.retry_delays_ms = vec![100];
    settings.queues.call_record.max_attempts = 3;
    let mut app = TestApp::connect(id.clone(), settings).await;
    app.launch().await;
    // Found missing at start, before any call record needs it: the
    // consumers run, readiness names the exchange.
    app.eventually("consumers up and the exchange reported missing", || async {
        app.get("/readyz").await.is_ok_and(|(status, body)| {
            status == 503 && body.contains("\"broker\":true") && body.contains(&exchange)
        })
    })
    .await;
    app.put_binding("mx1", 5, 6).await;
    app.put_binding("mx2", 7, 8).await;
    app.publish(
        QueueKind::CallRecord,
        br#"{"subId":"mx1","callId":"mx-call-1"}"#,
    )
    .await;
    let dead = app.take(&app.dlq(QueueKind::CallRecord)).await;
    assert_eq!(
        header(&dead, "axn-reason").as_deref(),
        Some("retries_exhausted")
    );
    assert_eq!(header(&dead, "axn-attempts").as_deref(), Some("3"));
    let error = header(&dead, "axn-error").unwrap();
    assert!(error.contains("does not exist"), "{error}");
    let (status, body) = app.get("/readyz").await.unwrap();
    assert_eq!(
        status, 503,
        "not ready while a publish target is missing: {body}"
    );
    assert!(body.contains(&exchange), "{body}");
    let page = app.get("/metrics").await.unwrap().1;
    assert_eq!(metric(&page, "axn_publish_targets_missing"), 1.0);

    // The queue keeps flowing: an unattributed record is parked meanwhile.
    app.publish(
        QueueKind::CallRecord,
        br#"{"subId":"nobody","callId":"mx-call-9"}"#,
    )
    .await;
    let parked = app
        .take(&app.settings.queues.call_record.unattributed_name())
        .await;
    assert_eq!(
        header(&parked, "axn-reason").as_deref(),
        Some("unattributed")
    );

    // The exchange comes back: events flow and the worker is ready again.
    let ch = &app.channel;
    ch.exchange_declare(
        exchange.as_str().into(),
        ExchangeKind::Direct,
        ExchangeDeclareOptions::default(),
        FieldTable::default(),
    )
    .await
    .unwrap();
    let bound = format!("{id}.calllog.bound");
    declare_durable(ch, &bound, FieldTable::default()).await;
    ch.queue_bind(
        bound.as_str().into(),
        exchange.as_str().into(),
        "call-log".into(),
        QueueBindOptions::default(),
        FieldTable::default(),
    )
    .await
    .unwrap();
    app.publish(
        QueueKind::CallRecord,
        br#"{"subId":"mx2","callId":"mx-call-2"}"#,
    )
    .await;
    let event = app.take(&bound).await;
    assert_eq!(
        serde_json::from_slice::<Value>(&event.data).unwrap(),
        json!({"user": 7, "houseid": 8})
    );
    app.wait_ready().await;
    let page = app.get("/metrics").await.unwrap().1;
    assert_eq!(metric(&page, "axn_publish_targets_missing"), 0.0);
    let _ = ch
        .queue_delete(bound.as_str().into(), QueueDeleteOptions::default())
        .await;
    let _ = ch
        .exchange_delete(exchange.as_str().into(), Default::default())
        .await;
}

#[tokio::test]
async fn deleted_queues_of_the_worker_are_declared_again() {
    let app = crate::helpers::spawn_app().await;
    let ch = &app.channel;
    let dlq = app.dlq(QueueKind::XbUnbind);
    let call_log = app.call_log_queue();
    for q in [&dlq, &call_log] {
        ch.queue_delete(q.as_str().into(), QueueDeleteOptions::default())
            .await
            .unwrap();
    }
    app.publish(QueueKind::XbUnbind, b"not json").await;
    exists_again(&app, &dlq).await;
    let dead = app.take(&dlq).await;
    assert_eq!(header(&dead, "axn-reason").as_deref(), Some("invalid_json"));
    app.put_binding("rq1", 3, 4).await;
    app.publish(
        QueueKind::CallRecord,
        br#"{"subId":"rq1","callId":"rq-call"}"#,
    )
    .await;
    exists_again(&app, &call_log).await;
    let event = app.take(&call_log).await;
    assert_eq!(
        serde_json::from_slice::<Value>(&event.data).unwrap(),
        json!({"user": 3, "houseid": 4})
    );
    app.drained().await;
    assert_eq!(app.get("/readyz").await.unwrap().0, 200);
}

/// Waits until `queue` exists (the test's own channel must not touch a
/// missing queue: the broker would close it).
async fn exists_again(app: &TestApp, queue: &str) {
    app.eventually("declared again", || async {
        let ch = app.amqp.create_channel().await.unwrap();
        let found = axn_worker::ops::dlq::depth(&ch, queue).await.is_ok();
        let _ = ch.close(200, "".into()).await;
        found
    })
    .await;
}
