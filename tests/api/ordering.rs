//! Messages about one entity are applied in delivery order at concurrency 10,
//! while other entities' messages run alongside.

use axn_worker::config::QueueKind;
use redis::AsyncCommands;
use serde_json::json;

use crate::helpers::spawn_app_with;

/// 100 phone changes of one employee, interleaved with 300 of 30 others, at
/// concurrency 10: every employee's current phone is their last one.
#[tokio::test]
async fn phone_changes_of_one_employee_apply_in_order() {
    let app = spawn_app_with(|s| s.queues.phone_history.concurrency = 10).await;
    let phone = |user: u64, i: u64| format!("13{:03}{:06}", user, i);
    for i in 0..100u64 {
        for user in 0..4u64 {
            let uid = if user == 0 { 1 } else { 100 + (i % 30) };
            let seq = if user == 0 { i } else { i * 4 + user };
            let mut body = json!({"userId": uid, "newPhone": phone(uid, seq)});
            if seq > 0 {
                body["oldPhone"] = json!(phone(uid, seq.saturating_sub(1)));
            }
            app.publish(QueueKind::PhoneHistory, body.to_string().as_bytes())
                .await;
        }
    }
    app.drained().await;
    assert_eq!(
        app.hget("PrivateNumber_user_phone", "1").await,
        Some(phone(1, 99))
    );
    for uid in 100..130u64 {
        let last = (0..100u64)
            .filter(|i| 100 + (i % 30) == uid)
            .map(|i| i * 4 + 3)
            .max()
            .unwrap();
        assert_eq!(
            app.hget("PrivateNumber_user_phone", &uid.to_string()).await,
            Some(phone(uid, last)),
            "user {uid}"
        );
    }
}

/// Alternating add/delete of one number, 101 messages ending in add, beside
/// another number's 100 ending in delete: the set reflects the last of each.
#[tokio::test]
async fn blacklist_toggles_of_one_number_apply_in_order() {
    let app = spawn_app_with(|s| s.queues.blacklist.concurrency = 10).await;
    for i in 0..101 {
        // Even i adds, odd i deletes: ...0001 gets i = 0..=100 (last: add),
        // ...0002 gets i = 0..=99 (last: delete).
        for number in ["13400000001", "13400000002"] {
            if number == "13400000002" && i == 100 {
                continue;
            }
            let action = if i % 2 == 0 { "add" } else { "delete" };
            let body = json!({"private_number": number, "action": action, "userid": 77, "type": 0});
            app.publish(QueueKind::Blacklist, body.to_string().as_bytes())
                .await;
        }
    }
    app.drained().await;
    let members: Vec<String> = app
        .redis
        .clone()
        .smembers(app.key("PrivateNumber_black:77:0"))
        .await
        .unwrap();
    assert_eq!(members, ["13400000001"]);
}
