//! XB unbind: `PrivateNumber_xb` -> `PrivateNumber_xb_unbound`, and the
//! agent's `PrivateNumber_user_axs` field when it is this XB binding.

use std::time::Duration;

use axn_worker::config::QueueKind;
use redis::AsyncCommands;
use serde_json::{Value, json};

use crate::helpers::{spawn_app, spawn_app_with};

/// The seed's example message, verbatim (masked telA/telB).
pub const SEED_UNBIND: &str = r#"{
	"platId": 3,
	"telA": "1347011****",
	"telX": "17111526089",
	"telB": "1370005****",
	"subId": "1000039976446302"
}"#;

pub fn binding(sub_id: &str, user_id: u64, map_id: u64) -> String {
    json!({"subId": sub_id, "platId": 3, "userId": user_id, "telX": "17111526089", "telB": "13700051234",
           "mapClassId": 1, "mapId": map_id, "contactMapClassId": 0, "contactId": 0,
           "boundAt": 1763892000, "expiresAt": 1763892120})
    .to_string()
}

/// The seed's message moves the binding, stamps unboundAt, keeps the
/// binding's own JSON, and clears the agent's XB user_axs entry.
#[tokio::test]
async fn seed_message_moves_binding_to_unbound_and_clears_user_axs() {
    let app = spawn_app().await;
    let mut r = app.redis.clone();
    let stored = binding("1000039976446302", 51218, 123456);
    let _: () = r
        .hset(app.key("PrivateNumber_xb"), "1000039976446302", &stored)
        .await
        .unwrap();
    let _: () = r
        .hset(
            app.key("PrivateNumber_user_axs"),
            "51218",
            r#"{"xNumber":"17111526089","bindType":1}"#,
        )
        .await
        .unwrap();

    let before = axn_worker::handlers::now_epoch();
    app.publish(QueueKind::XbUnbind, SEED_UNBIND.as_bytes())
        .await;

    app.eventually("binding leaves PrivateNumber_xb", || async {
        app.hget("PrivateNumber_xb", "1000039976446302")
            .await
            .is_none()
    })
    .await;
    let unbound: Value = serde_json::from_str(
        &app.hget("PrivateNumber_xb_unbound", "1000039976446302")
            .await
            .expect("in unbound"),
    )
    .unwrap();
    let mut expected: Value = serde_json::from_str(&stored).unwrap();
    let at = unbound["unboundAt"].as_u64().expect("numeric unboundAt");
    assert!(at >= before && at <= before + 60, "unboundAt {at} is now");
    expected["unboundAt"] = json!(at);
    assert_eq!(unbound, expected);
    assert_eq!(app.hget("PrivateNumber_user_axs", "51218").await, None);
    assert_eq!(app.queue_len(&app.dlq(QueueKind::XbUnbind)).await, 0);
}

/// An AX entry (bindType 0), or an XB entry for another X, is left alone.
#[tokio::test]
async fn user_axs_entry_is_kept_unless_it_is_this_xb_binding() {
    let app = spawn_app().await;
    let mut r = app.redis.clone();
    let axs = app.key("PrivateNumber_user_axs");
    let xb = app.key("PrivateNumber_xb");
    let _: () = r.hset(&xb, "s1", binding("s1", 1001, 1)).await.unwrap();
    let _: () = r.hset(&xb, "s2", binding("s2", 1002, 1)).await.unwrap();
    let _: () = r
        .hset(&axs, "1001", r#"{"xNumber":"17111526089","bindType":0}"#)
        .await
        .unwrap();
    let _: () = r
        .hset(&axs, "1002", r#"{"xNumber":"17000000000","bindType":1}"#)
        .await
        .unwrap();
    for sub in ["s1", "s2"] {
        app.publish(
            QueueKind::XbUnbind,
            json!({"subId": sub, "telX": "17111526089"})
                .to_string()
                .as_bytes(),
        )
        .await;
    }
    app.eventually("both unbound", || async {
        app.hget("PrivateNumber_xb_unbound", "s1").await.is_some()
            && app.hget("PrivateNumber_xb_unbound", "s2").await.is_some()
    })
    .await;
    assert_eq!(
        app.hget("PrivateNumber_user_axs", "1001").await.as_deref(),
        Some(r#"{"xNumber":"17111526089","bindType":0}"#)
    );
    assert_eq!(
        app.hget("PrivateNumber_user_axs", "1002").await.as_deref(),
        Some(r#"{"xNumber":"17000000000","bindType":1}"#)
    );
}

/// The same unbind twice leaves the state of once: unboundAt unchanged,
/// nothing dead-lettered. An unbind of an unknown binding is a no-op.
#[tokio::test]
async fn duplicate_and_unknown_unbinds_are_no_ops() {
    let app = spawn_app().await;
    app.put_binding("1000039976446302", 51218, 9).await;
    app.publish(QueueKind::XbUnbind, SEED_UNBIND.as_bytes())
        .await;
    app.eventually("unbound", || async {
        app.hget("PrivateNumber_xb_unbound", "1000039976446302")
            .await
            .is_some()
    })
    .await;
    let first = app
        .hget("PrivateNumber_xb_unbound", "1000039976446302")
        .await;
    tokio::time::sleep(Duration::from_millis(1100)).await; // a re-apply would stamp a later second
    app.publish(QueueKind::XbUnbind, SEED_UNBIND.as_bytes())
        .await;
    app.publish(
        QueueKind::XbUnbind,
        br#"{"subId":"no-such-binding","telX":"17111526089"}"#,
    )
    .await;
    app.drained().await;
    assert_eq!(
        app.hget("PrivateNumber_xb_unbound", "1000039976446302")
            .await,
        first
    );
    assert_eq!(
        app.hget("PrivateNumber_xb_unbound", "no-such-binding")
            .await,
        None
    );
    assert_eq!(app.queue_len(&app.dlq(QueueKind::XbUnbind)).await, 0);
}

/// Unbound bindings older than the retention are pruned.
#[tokio::test]
async fn unbound_bindings_past_the_retention_are_pruned() {
    let app = spawn_app_with(|s| s.redis.unbound_retention_secs = 1).await;
    app.put_binding("old", 1, 1).await;
    app.put_binding("new", 2, 2).await;
    app.publish(
        QueueKind::XbUnbind,
        br#"{"subId":"old","telX":"17111526089"}"#,
    )
    .await;
    app.eventually("old unbound", || async {
        app.hget("PrivateNumber_xb_unbound", "old").await.is_some()
    })
    .await;
    tokio::time::sleep(Duration::from_millis(2100)).await;
    app.publish(
        QueueKind::XbUnbind,
        br#"{"subId":"new","telX":"17111526089"}"#,
    )
    .await;
    app.eventually("new unbound", || async {
        app.hget("PrivateNumber_xb_unbound", "new").await.is_some()
    })
    .await;
    assert_eq!(
        app.hget("PrivateNumber_xb_unbound", "old").await,
        None,
        "pruned after the retention"
    );
}

/// At a steady unbind rate the unbound bindings stay bounded: unbinds prune
/// every few calls (and after a second without one), up to 100 entries each
/// time, so the entries past the retention are gone by the next wave.
#[tokio::test]
async fn the_unbound_bindings_stay_bounded_at_a_steady_rate() {
    let app = spawn_app_with(|s| s.redis.unbound_retention_secs = 1).await;
    let waves = 3;
    for w in 0..waves {
        for i in 0..100u64 {
            app.put_binding(&format!("w{w}-{i}"), 1000 + i, 1000 + i)
                .await;
        }
    }
    for w in 0..waves {
        let bodies: Vec<Vec<u8>> = (0..100)
            .map(|i| format!(r#"{{"subId":"w{w}-{i}","telX":"17111526089"}}"#).into_bytes())
            .collect();
        app.publish_many(QueueKind::XbUnbind, &bodies).await;
        app.drained().await;
        if w + 1 < waves {
            tokio::time::sleep(Duration::from_millis(2100)).await;
        }
    }
    let mut r = app.redis.clone();
    let left: Vec<String> = redis::cmd("HKEYS")
        .arg(app.key("PrivateNumber_xb_unbound"))
        .query_async(&mut r)
        .await
        .unwrap();
    assert!(
        !left.iter().any(|k| k.starts_with("w0-")),
        "the first wave, past the retention, is pruned: {} left",
        left.len()
    );
    assert!(
        left.iter().filter(|k| k.starts_with("w2-")).count() == 100,
        "the last wave is kept"
    );
    let indexed: u64 = redis::cmd("ZCARD")
        .arg(app.key("PrivateNumber_xb_unbound_at"))
        .query_async(&mut r)
        .await
        .unwrap();
    assert_eq!(indexed as usize, left.len(), "the index matches the hash");
}
