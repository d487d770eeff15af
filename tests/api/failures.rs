//! Every failure class: permanent ones dead-lettered at once with their
//! reason, transient ones retried through the delay queues and dead-lettered
//! with the last error once the attempts run out.

use std::time::Duration;

use axn_worker::config::QueueKind;
use redis::AsyncCommands;

use crate::helpers::{header, spawn_app};

/// Each kind of bad body goes to `<queue>.dlq` with the reason, the original
/// queue, the time and the body unchanged; none is retried.
#[tokio::test]
async fn permanent_failures_are_dead_lettered_at_once_with_their_reason() {
    let app = spawn_app().await;
    let too_big = format!(
        r#"{{"subId":"1","telX":"17111526089","pad":"{}"}}"#,
        "x".repeat(70 * 1024)
    );
    let cases: Vec<(QueueKind, Vec<u8>, &str)> = vec![
        (
            QueueKind::XbUnbind,
            b"not json at all".to_vec(),
            "invalid_json",
        ),
        (QueueKind::XbUnbind, b"\xff\xfe\x00".to_vec(), "not_utf8"),
        (QueueKind::XbUnbind, b"[1,2,3]".to_vec(), "not_an_object"),
        (
            QueueKind::XbUnbind,
            br#"{"telX":"17111526089"}"#.to_vec(),
            "missing_field",
        ),
        (
            QueueKind::XbUnbind,
            br#"{"subId":{"a":1},"telX":"17111526089"}"#.to_vec(),
            "invalid_field",
        ),
        (
            QueueKind::XbUnbind,
            br#"{"subId":"1","telX":"1711152****"}"#.to_vec(),
            "invalid_number",
        ),
        (QueueKind::XbUnbind, too_big.into_bytes(), "body_too_large"),
        (
            QueueKind::PhoneHistory,
            br#"{"userId":"-3","newPhone":"13812345678"}"#.to_vec(),
            "invalid_field",
        ),
        (QueueKind::CallRecord, b"[]".to_vec(), "empty_batch"),
        (
            QueueKind::CallRecord,
            br#"{"subId":"1"}"#.to_vec(),
            "missing_field",
        ),
    ];
    let before = std::time::SystemTime::now();
    for (kind, body, reason) in &cases {
        app.publish(*kind, body).await;
        let d = app.take(&app.dlq(*kind)).await;
        assert_eq!(
            header(&d, "axn-reason").as_deref(),
            Some(*reason),
            "{}",
            String::from_utf8_lossy(body)
        );
        assert_eq!(header(&d, "axn-original-queue"), Some(app.queue(*kind)));
        assert_eq!(
            header(&d, "axn-attempts").as_deref(),
            Some("1"),
            "never retried"
        );
        assert!(header(&d, "axn-error").is_some_and(|e| !e.is_empty()));
        let at = humantime::parse_rfc3339(&header(&d, "axn-failed-at").unwrap()).unwrap();
        assert!(at + Duration::from_secs(2) >= before, "failure time is now");
        assert_eq!(&d.data, body, "the body is kept as it came");
    }
    for kind in QueueKind::ALL {
        assert_eq!(
            app.queue_len(&app.dlq(kind)).await,
            0,
            "one dead letter per bad message"
        );
    }
}

/// Redis failing the command (a key of the wrong type) is transient: the
/// message is retried through the delay queues, counting attempts in our own
/// header, and after max_attempts (3 here) dead-lettered with the last error.
#[tokio::test]
async fn transient_failures_are_retried_then_dead_lettered_with_the_last_error() {
    let app = spawn_app().await;
    let mut r = app.redis.clone();
    let _: () = r
        .set(app.key("PrivateNumber_black:9:0"), "not a set")
        .await
        .unwrap();
    app.publish(
        QueueKind::Blacklist,
        br#"{"private_number":"13470110001","action":"add","userid":9,"type":0}"#,
    )
    .await;
    let d = app.take(&app.dlq(QueueKind::Blacklist)).await;
    assert_eq!(
        header(&d, "axn-reason").as_deref(),
        Some("retries_exhausted")
    );
    assert_eq!(header(&d, "axn-attempts").as_deref(), Some("3"));
    assert!(
        header(&d, "axn-error").unwrap().contains("WRONGTYPE"),
        "{:?}",
        header(&d, "axn-error")
    );
    let first = humantime::parse_rfc3339(&header(&d, "axn-first-failed-at").unwrap()).unwrap();
    let last = humantime::parse_rfc3339(&header(&d, "axn-failed-at").unwrap()).unwrap();
    assert!(first <= last);
}

/// A transient failure that clears up while the message waits in a retry
/// queue ends in the message being applied, not dead-lettered.
#[tokio::test]
async fn a_retry_succeeds_once_the_cause_is_gone() {
    let app = crate::helpers::spawn_app_with(|s| {
        s.queues.blacklist.retry_delays_ms = vec![1500];
        s.queues.blacklist.max_attempts = 5;
    })
    .await;
    let mut r = app.redis.clone();
    let key = app.park_in_retry(10, 1500).await;
    let _: () = r.del(&key).await.unwrap();
    app.eventually("applied on retry", || app.is_member(&key, "13470110001"))
        .await;
    assert_eq!(app.queue_len(&app.dlq(QueueKind::Blacklist)).await, 0);
}

/// A handler that outlasts `timeout_secs` (its Redis, one of the test's own,
/// is paused) is a transient failure: retried, and with the attempts spent,
/// dead-lettered with the timeout as the last error. Other messages go on.
#[tokio::test]
async fn handler_timeout_is_a_transient_failure() {
    let port = crate::lifecycle::spare_port();
    let _redis = crate::lifecycle::own_redis(port).await;
    let app = crate::helpers::spawn_app_with(|s| {
        s.redis.url = axn_worker::config::RedisUrl::single(format!("redis://127.0.0.1:{port}/0"));
        s.queues.blacklist.timeout_secs = 1;
        s.queues.blacklist.max_attempts = 2;
    })
    .await;
    let own = redis::Client::open(format!("redis://127.0.0.1:{port}/0")).unwrap();
    let mut c = own.get_multiplexed_async_connection().await.unwrap();
    let _: () = redis::cmd("CLIENT")
        .arg("PAUSE")
        .arg(6000)
        .arg("ALL")
        .query_async(&mut c)
        .await
        .unwrap();
    app.publish(
        QueueKind::Blacklist,
        br#"{"private_number":"13470110001","action":"add","userid":16,"type":0}"#,
    )
    .await;
    let d = app.take(&app.dlq(QueueKind::Blacklist)).await;
    assert_eq!(
        header(&d, "axn-reason").as_deref(),
        Some("retries_exhausted")
    );
    assert_eq!(header(&d, "axn-attempts").as_deref(), Some("2"));
    assert_eq!(
        header(&d, "axn-error").as_deref(),
        Some("handler timed out after 1 s")
    );
}
