//! Phone change: `PrivateNumber_user_phone`, `PrivateNumber_user_phones:<uid>`
//! and `PrivateNumber_phone_user`.

use axn_worker::config::QueueKind;
use redis::AsyncCommands;

use crate::helpers::spawn_app;

/// The seed's message verbatim (with the `operatorUser:` key) records the
/// current phone, both phones in the history, and both phones -> user.
#[tokio::test]
async fn seed_message_records_current_history_and_reverse_map() {
    let app = spawn_app().await;
    let seed = r#"{
	"userId": "74705",
	"newPhone": "13812345678",
	"oldPhone": "13998765432",
	"operatorUser:": "51218"
}"#;
    app.publish(QueueKind::PhoneHistory, seed.as_bytes()).await;
    app.eventually("current phone set", || async {
        app.hget("PrivateNumber_user_phone", "74705")
            .await
            .is_some()
    })
    .await;
    assert_eq!(
        app.hget("PrivateNumber_user_phone", "74705")
            .await
            .as_deref(),
        Some("13812345678")
    );
    assert_eq!(
        app.hget("PrivateNumber_phone_user", "13812345678")
            .await
            .as_deref(),
        Some("74705")
    );
    assert_eq!(
        app.hget("PrivateNumber_phone_user", "13998765432")
            .await
            .as_deref(),
        Some("74705")
    );
    let mut r = app.redis.clone();
    let history: Vec<(String, u64)> = r
        .zrange_withscores(app.key("PrivateNumber_user_phones:74705"), 0, -1)
        .await
        .unwrap();
    let mut phones: Vec<&str> = history.iter().map(|(p, _)| p.as_str()).collect();
    phones.sort();
    assert_eq!(phones, ["13812345678", "13998765432"]);
    let now = axn_worker::handlers::now_epoch();
    assert!(
        history.iter().all(|(_, t)| *t <= now && *t + 60 >= now),
        "first-seen times are epoch seconds"
    );

    // Applying it again changes nothing, first-seen times included.
    app.publish(QueueKind::PhoneHistory, seed.as_bytes()).await;
    app.drained().await;
    let again: Vec<(String, u64)> = r
        .zrange_withscores(app.key("PrivateNumber_user_phones:74705"), 0, -1)
        .await
        .unwrap();
    assert_eq!(again, history);
}

/// A first phone (no oldPhone), then a change: the history grows, the
/// current phone follows, the old phone still resolves to the employee, and
/// an old phone that already belongs to someone else is not taken back.
#[tokio::test]
async fn first_phone_then_changes() {
    let app = spawn_app().await;
    let mut r = app.redis.clone();
    let _: () = r
        .hset(app.key("PrivateNumber_phone_user"), "13600000000", "999")
        .await
        .unwrap();
    app.publish(
        QueueKind::PhoneHistory,
        br#"{"userId": 5, "newPhone": "13500000001"}"#,
    )
    .await;
    app.publish(QueueKind::PhoneHistory, br#"{"userId": 5, "newPhone": "+8613500000002", "oldPhone": "13500000001", "operatorUser": 1}"#).await;
    app.publish(
        QueueKind::PhoneHistory,
        br#"{"userId": 5, "newPhone": "13500000003", "oldPhone": "13600000000"}"#,
    )
    .await;
    app.eventually("last change applied", || async {
        app.hget("PrivateNumber_user_phone", "5").await.as_deref() == Some("13500000003")
    })
    .await;
    let n: usize = r
        .zcard(app.key("PrivateNumber_user_phones:5"))
        .await
        .unwrap();
    assert_eq!(n, 4);
    assert_eq!(
        app.hget("PrivateNumber_phone_user", "13500000001")
            .await
            .as_deref(),
        Some("5")
    );
    assert_eq!(
        app.hget("PrivateNumber_phone_user", "13500000002")
            .await
            .as_deref(),
        Some("5")
    );
    assert_eq!(
        app.hget("PrivateNumber_phone_user", "13600000000")
            .await
            .as_deref(),
        Some("999")
    );
}
