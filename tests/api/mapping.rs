//! POST /number-mapping through real HTTP against real Redis.

use std::collections::HashSet;

use axn_worker::{config::Secret, mapping};
use proptest::{prelude::*, test_runner::TestRunner};
use redis::AsyncCommands;
use serde_json::{Value, json};

use crate::helpers::{TestApp, post, spawn_app_with, test_settings, unique_id};

const USER: &str = "tccc";
const PASS: &str = "s3cret-pass";

async fn mapping_app() -> TestApp {
    spawn_app_with(|s| s.mapping.password = Secret::new(PASS)).await
}

async fn map(app: &TestApp, mode: &str, numbers: &[&str]) -> Value {
    let body = json!({"Numbers": numbers, "Mode": mode}).to_string();
    let a = post(
        app.addr,
        "/number-mapping",
        body.as_bytes(),
        Some((USER, PASS)),
    )
    .await;
    a.json()
}

/// Every written form of a number gets one id (3 digits + 7 letters), the
/// same one every later time; UIDToPhone gives back 0086 + the number; both
/// directions are stored under the configured prefix.
#[tokio::test]
async fn phone_to_uid_and_back() {
    let app = mapping_app().await;
    let forms = [
        "13988888888",
        "+8613988888888",
        "008613988888888",
        "139 8888-8888",
        "13788888888",
    ];
    let a = map(&app, "PhoneToUID", &forms).await;
    assert_eq!(a["Code"], 0, "{a}");
    let results = a["Results"].as_array().unwrap();
    let keys: Vec<&str> = results.iter().map(|r| r["Key"].as_str().unwrap()).collect();
    assert_eq!(keys, forms, "Key is the number as sent");
    let ids: Vec<&str> = results
        .iter()
        .map(|r| r["Value"].as_str().unwrap())
        .collect();
    assert!(ids.iter().all(|id| mapping::is_id(id)), "{ids:?}");
    assert!(ids[..4].iter().all(|id| *id == ids[0]) && ids[0].starts_with("139"));
    assert_ne!(ids[4], ids[0]);
    assert!(ids[4].starts_with("137"));

    let again = map(&app, "PhoneToUID", &["13988888888"]).await;
    assert_eq!(again["Results"][0]["Value"], ids[0]);

    let back = map(&app, "UIDToPhone", &[ids[0], ids[4]]).await;
    assert_eq!(back["Code"], 0);
    assert_eq!(
        back["Results"],
        json!([{"Key": ids[0], "Value": "008613988888888"}, {"Key": ids[4], "Value": "008613788888888"}])
    );
    assert_eq!(
        app.hget("PrivateNumber_uid_by_phone", "13988888888")
            .await
            .as_deref(),
        Some(ids[0])
    );
    assert_eq!(
        app.hget("PrivateNumber_phone_by_uid", ids[0])
            .await
            .as_deref(),
        Some("13988888888")
    );
}

/// Each refusal has its code and a message, and no results at all: never
/// an invented value, never a partial success.
#[tokio::test]
async fn refusals_have_codes_and_no_partial_results() {
    let app = mapping_app().await;
    let known = map(&app, "PhoneToUID", &["13500000001"]).await["Results"][0]["Value"]
        .as_str()
        .unwrap()
        .to_owned();
    let cases: Vec<(Value, u16, i64)> = vec![
        (
            json!({"Numbers": ["13500000002", "1350000****"], "Mode": "PhoneToUID"}),
            400,
            1004,
        ),
        (
            json!({"Numbers": ["13500000002", "abc"], "Mode": "PhoneToUID"}),
            400,
            1004,
        ),
        (
            json!({"Numbers": [known, "135zzzzzzzz"], "Mode": "UIDToPhone"}),
            400,
            1006,
        ),
        (
            json!({"Numbers": [known, "135zzzzzzz"], "Mode": "UIDToPhone"}),
            400,
            1005,
        ),
        (
            json!({"Numbers": ["13500000002"], "Mode": "PhoneToUid"}),
            400,
            1002,
        ),
        (json!({"Numbers": [], "Mode": "PhoneToUID"}), 400, 1003),
        (
            json!({"Numbers": vec!["13500000002"; 101], "Mode": "PhoneToUID"}),
            400,
            1003,
        ),
        (
            json!({"Numbers": [13500000002u64], "Mode": "PhoneToUID"}),
            400,
            1001,
        ),
        (json!({"Mode": "PhoneToUID"}), 400, 1001),
        (json!("PhoneToUID"), 400, 1001),
    ];
    for (body, status, code) in cases {
        let a = post(
            app.addr,
            "/number-mapping",
            body.to_string().as_bytes(),
            Some((USER, PASS)),
        )
        .await;
        assert_eq!(
            (a.status, a.json()["Code"].as_i64()),
            (status, Some(code)),
            "{body}: {}",
            a.body
        );
        assert_eq!(a.json()["Results"], json!([]), "{body}");
        assert!(a.json()["Message"].as_str().is_some_and(|m| !m.is_empty()));
        assert!(
            !a.body.contains("13500000002"),
            "no full number in the answer: {}",
            a.body
        );
    }
    let not_json = post(app.addr, "/number-mapping", b"{nope", Some((USER, PASS))).await;
    assert_eq!(
        (not_json.status, not_json.json()["Code"].as_i64()),
        (400, Some(1001))
    );
    let huge = vec![b' '; 70 * 1024];
    let too_big = post(app.addr, "/number-mapping", &huge, Some((USER, PASS))).await;
    assert_eq!(too_big.status, 413);
    assert_eq!(too_big.json()["Code"], 1003);
    // Nothing of the refused PhoneToUID batch was stored.
    assert_eq!(
        app.hget("PrivateNumber_uid_by_phone", "13500000002").await,
        None
    );
}

/// Missing or wrong credentials get 401 with WWW-Authenticate and the same
/// answer whichever half is wrong; without a password the endpoint is off.
#[tokio::test]
async fn basic_auth_and_off_without_password() {
    let app = mapping_app().await;
    let body = json!({"Numbers": ["13988888888"], "Mode": "PhoneToUID"}).to_string();
    let mut answers = HashSet::new();
    for auth in [
        None,
        Some((USER, "wrong")),
        Some(("wrong", PASS)),
        Some(("", "")),
    ] {
        let a = post(app.addr, "/number-mapping", body.as_bytes(), auth).await;
        assert_eq!(a.status, 401);
        assert!(
            a.headers.contains("www-authenticate: basic realm="),
            "{}",
            a.headers
        );
        assert_eq!(a.json()["Code"], 1401);
        answers.insert(a.body);
    }
    assert_eq!(answers.len(), 1, "no hint which half was wrong");
    assert_eq!(
        app.hget("PrivateNumber_uid_by_phone", "13988888888").await,
        None
    );

    let off = spawn_app_with(|_| {}).await;
    let a = post(
        off.addr,
        "/number-mapping",
        body.as_bytes(),
        Some((USER, "")),
    )
    .await;
    assert_eq!(a.status, 404);
}

/// 50 concurrent PhoneToUID calls for one new number, spread over two worker
/// instances sharing Redis, all get one id.
#[tokio::test]
async fn concurrent_requests_on_two_instances_agree_on_one_id() {
    let id = unique_id();
    let mut settings = test_settings(&id);
    settings.mapping.password = Secret::new(PASS);
    let a = TestApp::connect(id.clone(), settings.clone())
        .await
        .start()
        .await;
    let b = TestApp::connect(id, settings).await.start().await;
    let body = json!({"Numbers": ["+86 186-0000-0001"], "Mode": "PhoneToUID"}).to_string();
    let calls = (0..50).map(|i| {
        let addr = if i % 2 == 0 { a.addr } else { b.addr };
        let body = body.clone();
        tokio::spawn(async move {
            post(addr, "/number-mapping", body.as_bytes(), Some((USER, PASS)))
                .await
                .json()
        })
    });
    let mut ids = HashSet::new();
    for call in calls {
        let answer = call.await.unwrap();
        assert_eq!(answer["Code"], 0);
        ids.insert(answer["Results"][0]["Value"].as_str().unwrap().to_owned());
    }
    assert_eq!(ids.len(), 1, "{ids:?}");
    let all: Vec<(String, String)> = a
        .redis
        .clone()
        .hgetall(a.key("PrivateNumber_phone_by_uid"))
        .await
        .unwrap();
    assert_eq!(all.len(), 1, "no orphan id was created");
}

/// A batch of 100 is one script call (PhoneToUID) or one HMGET
/// (UIDToPhone), counted on a Redis of the test's own.
#[tokio::test]
async fn a_batch_is_one_redis_round_trip() {
    let port = crate::lifecycle::spare_port();
    let _redis = crate::lifecycle::own_redis(port).await;
    let app = spawn_app_with(|s| {
        s.mapping.password = Secret::new(PASS);
        s.redis.url = axn_worker::config::RedisUrl::single(format!("redis://127.0.0.1:{port}/0"));
    })
    .await;
    map(&app, "PhoneToUID", &["13000000000"]).await; // loads the script
    let own = redis::Client::open(format!("redis://127.0.0.1:{port}/0")).unwrap();
    let mut c = own.get_multiplexed_async_connection().await.unwrap();
    let calls = |stats: &str, cmd: &str| -> u64 {
        stats
            .lines()
            .find(|l| l.starts_with(&format!("cmdstat_{cmd}:")))
            .and_then(|l| l.split("calls=").nth(1))
            .and_then(|v| v.split(',').next())
            .and_then(|v| v.parse().ok())
            .unwrap_or(0)
    };
    let numbers: Vec<String> = (0..100).map(|i| format!("1300000{i:04}")).collect();
    let refs: Vec<&str> = numbers.iter().map(String::as_str).collect();
    let _: () = redis::cmd("CONFIG")
        .arg("RESETSTAT")
        .query_async(&mut c)
        .await
        .unwrap();
    let a = map(&app, "PhoneToUID", &refs).await;
    let stats: String = redis::cmd("INFO")
        .arg("commandstats")
        .query_async(&mut c)
        .await
        .unwrap();
    assert_eq!(a["Results"].as_array().unwrap().len(), 100);
    assert_eq!(
        (calls(&stats, "evalsha"), calls(&stats, "eval")),
        (1, 0),
        "{stats}"
    );

    let ids: Vec<String> = a["Results"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["Value"].as_str().unwrap().to_owned())
        .collect();
    let id_refs: Vec<&str> = ids.iter().map(String::as_str).collect();
    let _: () = redis::cmd("CONFIG")
        .arg("RESETSTAT")
        .query_async(&mut c)
        .await
        .unwrap();
    let back = map(&app, "UIDToPhone", &id_refs).await;
    let stats: String = redis::cmd("INFO")
        .arg("commandstats")
        .query_async(&mut c)
        .await
        .unwrap();
    assert_eq!(back["Code"], 0);
    assert_eq!(calls(&stats, "hmget"), 1, "{stats}");
    assert_eq!(calls(&stats, "hget"), 0, "{stats}");
}

fn number() -> impl Strategy<Value = String> {
    let mobile = "1[3-9][0-9]{9}";
    prop_oneof![
        mobile.prop_map(|n| n),
        mobile.prop_map(|n| format!("+86{n}")),
        mobile.prop_map(|n| format!("0086{n}")),
        mobile.prop_map(|n| format!("{} {}-{}", &n[..3], &n[3..7], &n[7..])),
        "0[1-9][0-9]{8,10}".prop_map(|n| n),
    ]
}

/// Every id created maps back to its number (in international form), and a
/// number asked twice keeps its id: 48 generated batches of 1-19 numbers in
/// all the written forms, through one app.
#[test]
fn every_id_maps_back_to_its_number() {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let app = rt.block_on(mapping_app());
    let mut runner = TestRunner::new(ProptestConfig {
        cases: 48,
        ..ProptestConfig::default()
    });
    let result = runner.run(&prop::collection::vec(number(), 1..20), |numbers| {
        rt.block_on(async {
            let refs: Vec<&str> = numbers.iter().map(String::as_str).collect();
            let a = map(&app, "PhoneToUID", &refs).await;
            prop_assert_eq!(&a["Code"], &json!(0));
            let ids: Vec<String> = a["Results"]
                .as_array()
                .unwrap()
                .iter()
                .map(|r| r["Value"].as_str().unwrap().to_owned())
                .collect();
            let id_refs: Vec<&str> = ids.iter().map(String::as_str).collect();
            let back = map(&app, "UIDToPhone", &id_refs).await;
            prop_assert_eq!(&back["Code"], &json!(0));
            for (i, n) in numbers.iter().enumerate() {
                let expected = mapping::international(&axn_worker::phone::normalize(n).unwrap());
                prop_assert_eq!(
                    back["Results"][i]["Value"].as_str().unwrap(),
                    expected.as_str()
                );
            }
            let again = map(&app, "PhoneToUID", &refs).await;
            prop_assert_eq!(&again["Results"], &a["Results"]);
            Ok(())
        })
    });
    drop(app); // deletes its queues and keys
    result.unwrap();
}
