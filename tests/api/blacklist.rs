//! Blacklist: `PrivateNumber_black:<userid>:<type>` sets.

use axn_worker::config::QueueKind;
use redis::AsyncCommands;

use crate::helpers::{header, spawn_app};

/// The seed's shape (string userid) adds; delete removes; each type has its
/// own set; numbers are normalized; a repeat changes nothing.
#[tokio::test]
async fn add_and_delete_per_user_and_type() {
    let app = spawn_app().await;
    let mut r = app.redis.clone();
    let out = app.key("PrivateNumber_black:74705:0");
    let inc = app.key("PrivateNumber_black:74705:1");
    for body in [
        r#"{"platId": 3, "private_number": "13470110001", "action": "add", "userid": "74705", "type": 0}"#,
        r#"{"platId": 3, "private_number": "13470110001", "action": "add", "userid": "74705", "type": 0}"#,
        r#"{"platId": 3, "private_number": "+86 134-7011-0002", "action": "add", "userid": 74705, "type": "0"}"#,
        r#"{"platId": 3, "private_number": "008613470110003", "action": "add", "userId": "74705", "type": 1}"#,
    ] {
        app.publish(QueueKind::Blacklist, body.as_bytes()).await;
    }
    app.eventually("three numbers listed", || async {
        let a: usize = r.clone().scard(&out).await.unwrap();
        let b: usize = r.clone().scard(&inc).await.unwrap();
        a == 2 && b == 1
    })
    .await;
    let mut members: Vec<String> = r.smembers(&out).await.unwrap();
    members.sort();
    assert_eq!(members, ["13470110001", "13470110002"]);
    let incoming: Vec<String> = r.smembers(&inc).await.unwrap();
    assert_eq!(incoming, ["13470110003"]);

    app.publish(
        QueueKind::Blacklist,
        br#"{"private_number": "13470110001", "action": "delete", "userid": "74705", "type": 0}"#,
    )
    .await;
    app.eventually("deleted", || async {
        let m: Vec<String> = r.clone().smembers(&out).await.unwrap();
        m == ["13470110002"]
    })
    .await;
    assert_eq!(app.queue_len(&app.dlq(QueueKind::Blacklist)).await, 0);
}

/// A masked number and an unknown action are permanent: dead-lettered with
/// the reason, the set untouched.
#[tokio::test]
async fn masked_number_and_unknown_action_are_dead_lettered() {
    let app = spawn_app().await;
    app.publish(
        QueueKind::Blacklist,
        br#"{"private_number": "1347011****", "action": "add", "userid": "74705", "type": 0}"#,
    )
    .await;
    let d = app.take(&app.dlq(QueueKind::Blacklist)).await;
    assert_eq!(header(&d, "axn-reason").as_deref(), Some("invalid_number"));
    app.publish(
        QueueKind::Blacklist,
        br#"{"private_number": "13470110001", "action": "remove", "userid": "74705", "type": 0}"#,
    )
    .await;
    let d = app.take(&app.dlq(QueueKind::Blacklist)).await;
    assert_eq!(header(&d, "axn-reason").as_deref(), Some("unknown_action"));
    let exists: bool = app
        .redis
        .clone()
        .exists(app.key("PrivateNumber_black:74705:0"))
        .await
        .unwrap();
    assert!(!exists);
}
