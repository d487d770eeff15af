//! The binding API through real HTTP against the real Redis and RabbitMQ:
//! every operation and failure message of the contract, the bind lock under
//! concurrency across two processes, a carrier that fails on demand, and the
//! whole flow from an empty pool to a call-log event.

use std::time::Duration;

use axn_worker::{
    config::QueueKind,
    ops::pool::{self, Entry},
    platform::{BASE_A, BASE_B},
    store::Store,
};
use redis::AsyncCommands;
use serde_json::{Value, json};

use crate::helpers::{TestApp, WorkerProcess, http_get, spawn_app, test_settings, unique_id};

/// GET an operation of base path A (`b` false) or B with a query string.
pub(crate) async fn call(addr: std::net::SocketAddr, b: bool, op: &str, query: &str) -> Value {
    let base = if b { BASE_B } else { BASE_A };
    let (status, body) = http_get(addr, &format!("{base}/{op}?{query}")).await;
    assert_eq!(status, 200, "{op}: {body}");
    serde_json::from_str(&body).unwrap_or_else(|e| panic!("{op} ({e}): {body}"))
}

/// Numbers 17000000001.. of `platform`, imported into the app's pool.
pub(crate) async fn seed_pool(app: &TestApp, platform: u32, first: u64, n: u64) -> Vec<String> {
    let store = Store::new(&app.settings.redis).unwrap();
    let entries: Vec<Entry> = (0..n)
        .map(|i| Entry {
            number: format!("{}", first + i),
            platform,
            pool: 17,
            region: 1,
        })
        .collect();
    pool::import(&store, &entries).await.unwrap();
    entries.into_iter().map(|e| e.number).collect()
}

pub(crate) async fn set_phone(app: &TestApp, user: u64, phone: &str) {
    let _: () = app
        .redis
        .clone()
        .hset(app.key("PrivateNumber_user_phone"), user, phone)
        .await
        .unwrap();
}

pub(crate) fn ok(v: &Value) -> bool {
    v["ResultCode"] == 2000
}

#[tokio::test]
async fn from_an_empty_pool_to_a_call_log_event() {
    let app = spawn_app().await;
    let numbers = seed_pool(&app, 3, 17100000001, 2).await;
    set_phone(&app, 51218, "13800000001").await;

    let bound = call(
        app.addr,
        true,
        "BindAxByplatform",
        "userId=51218&platformID=3",
    )
    .await;
    assert!(ok(&bound), "{bound}");
    let msg = bound["ResultMsg"].as_str().unwrap();
    let x = msg.strip_prefix("小号分配成功:").expect(msg).to_owned();
    assert!(numbers.contains(&x));
    assert_eq!(bound["DataBody"], json!([true]));
    assert_eq!(
        bound.as_object().unwrap().len(),
        3,
        "base B's short envelope"
    );
    // A client retrying after a lost answer gets the same answer.
    assert_eq!(
        call(
            app.addr,
            true,
            "BindAxByplatform",
            "userId=51218&platformID=3"
        )
        .await,
        bound
    );
    // Another request of the same user: the seed's refusal.
    let again = call(
        app.addr,
        true,
        "BindAxByplatform",
        "userid=51218&platformid=3&x=1",
    )
    .await;
    assert_eq!(again["ResultMsg"], "您存在绑定的小号,不能再绑定新的小号");
    assert_eq!(again["DataBody"], json!([false]));

    let q = call(app.addr, false, "QueryAgentNumbers", "userid=51218").await;
    assert!(ok(&q), "{q}");
    let n = &q["DataBody"][0];
    assert_eq!(n["ax_number"], x.as_str());
    assert_eq!(n["bindState"], "已绑定");
    assert_eq!(n["numberState"], "正常");
    assert_eq!(n["plateformid"], 3);
    assert_eq!(n["platform_name"], "阿里云");
    assert_eq!(n["ax_numA"], "138****0001");
    assert_eq!(q["DataCount"], 1);
    let axs = call(app.addr, false, "QueryUserAxs", "userid=51218").await;
    assert_eq!(axs["DataBody"], json!([{"xNumber": x, "bindType": 0}]));

    let xb = call(
        app.addr,
        false,
        "GetCallNumber",
        "xbid=9&userid=51218&Mapclassid=1&Mapid=123456&Contactmapclassid=0&Contactid=0&Mobile=13912345678&expiration=1",
    )
    .await;
    assert!(ok(&xb), "{xb}");
    assert_eq!(xb["DataBody"], json!([{"phone": x, "callbackId": 9}]));
    let bindings: std::collections::HashMap<String, String> = app
        .redis
        .clone()
        .hgetall(app.key("PrivateNumber_xb"))
        .await
        .unwrap();
    let (sub_id, binding) = bindings.into_iter().next().expect("an XB binding");
    let b: Value = serde_json::from_str(&binding).unwrap();
    assert_eq!(
        (b["userId"].clone(), b["mapId"].clone(), b["telX"].clone()),
        (json!(51218), json!(123456), json!(x))
    );
    assert_eq!(
        b["expiresAt"].as_u64().unwrap() - b["boundAt"].as_u64().unwrap(),
        1
    );

    // No carrier callback comes: the platform's MQ108, then the worker's unbind.
    app.eventually("expired and unbound by the worker", || async {
        app.hget("PrivateNumber_xb_unbound", &sub_id)
            .await
            .is_some()
    })
    .await;
    assert_eq!(app.hget("PrivateNumber_xb", &sub_id).await, None);
    let page = app.get("/metrics").await.unwrap().1;
    assert_eq!(
        crate::operate::metric(&page, "axn_platform_xb_expired_total"),
        1.0
    );

    // The carrier's call record for that call: one call-log event.
    app.publish(
        QueueKind::CallRecord,
        format!(r#"{{"subId":"{sub_id}","callId":"flow-1","platId":3}}"#).as_bytes(),
    )
    .await;
    let event = app.take(&app.call_log_queue()).await;
    assert_eq!(
        serde_json::from_slice::<Value>(&event.data).unwrap(),
        json!({"user": 51218, "houseid": 123456})
    );

    let released = call(
        app.addr,
        false,
        "ReleaseTelX",
        &format!("userId=51218&private_number={x}"),
    )
    .await;
    assert_eq!(released["DataBody"], json!([x]));
    let q = call(app.addr, false, "QueryAgentNumbers", "userid=51218").await;
    assert!(ok(&q) && q["DataBody"] == json!([]), "{q}");
    let free: usize = app
        .redis
        .clone()
        .scard(app.key("PrivateNumber_pool_free:3"))
        .await
        .unwrap();
    assert_eq!(free, 2, "back in the free pool");
    let page = app.get("/metrics").await.unwrap().1;
    assert!(
        crate::operate::metric(
            &page,
            r#"axn_platform_requests_total{operation="BindAxByplatform",result="success"}"#
        ) >= 1.0
    );
}

#[tokio::test]
async fn every_operation_answers_as_the_seed_says() {
    let app = spawn_app().await;
    let numbers = seed_pool(&app, 1, 17200000001, 4).await;
    let (x1, x2, x3, x4) = (&numbers[0], &numbers[1], &numbers[2], &numbers[3]);
    set_phone(&app, 7, "13800000007").await;
    set_phone(&app, 8, "13800000008").await;
    let a = |op: &'static str, q: String| {
        let addr = app.addr;
        async move { call(addr, false, op, &q).await }
    };

    // Parameters: missing, malformed, not a virtual or real number.
    assert_eq!(
        a("BindAxNumber", format!("private_number={x1}")).await["ResultMsg"],
        "缺少参数[userid]"
    );
    assert_eq!(
        a("BindAxNumber", format!("userid=abc&private_number={x1}")).await["ResultMsg"],
        "参数[userid]必须是正整数"
    );
    let bad = a("BindAxNumber", "userid=7&private_number=13800000007".into()).await;
    assert_eq!(bad["ResultCode"], 5000);
    assert!(
        bad["ResultMsg"]
            .as_str()
            .unwrap()
            .starts_with("参数[private_number]不是隐私号"),
        "{bad}"
    );
    assert_eq!(bad["DataBody"], json!([]));
    assert_eq!(
        a("BindAxNumber", "userid=7&private_number=17999999999".into()).await["ResultMsg"],
        "隐私号不存在于号码池"
    );

    // Number state 2: the seed's message.
    let set = a("UpdateNumberState", format!("private_number={x4}&state=2")).await;
    assert_eq!(set["DataBody"], json!(["True"]));
    assert_eq!(
        a("BindAxNumber", format!("userid=7&private_number={x4}")).await["ResultMsg"],
        "当前号码状态为[2]，无法绑定！"
    );
    assert!(ok(&a(
        "UpdateNumberState",
        format!("private_number={x4}&state=0")
    )
    .await));

    // Bind, by the user's phone and by a given phone; a second number of one
    // platform is refused; a number bound to another user too.
    let b1 = a(
        "BindAxNumber",
        format!("userid=7&regionid=1&private_number={x1}&addUser=74705&lastUser=74705"),
    )
    .await;
    assert_eq!(b1["DataBody"], json!([x1]));
    assert_eq!(
        a("BindAxNumber", format!("userid=7&private_number={x1}")).await["DataBody"],
        json!([x1]),
        "a retry"
    );
    assert_eq!(
        a("BindAxNumber", format!("userid=7&private_number={x2}")).await["ResultMsg"],
        "您存在绑定的小号,不能再绑定新的小号"
    );
    assert_eq!(
        a(
            "BindAxNumberByUserPhone",
            format!("userid=8&private_number={x1}&userPhone=13900000008")
        )
        .await["ResultMsg"],
        "当前号码状态为[1]，无法绑定！"
    );
    let b2 = a(
        "BindAxNumberByUserPhone",
        format!("userid=8&private_number={x2}&userPhone=13900000008"),
    )
    .await;
    assert_eq!(b2["DataBody"], json!([x2]));
    let q = a("QueryAgentNumbers", "userid=8".into()).await;
    assert_eq!(q["DataBody"][0]["ax_numA"], "139****0008");

    // Change A.
    let changed = a(
        "ChangeBindANumber",
        format!("userId=8&private_number={x2}&telA=13700000008"),
    )
    .await;
    assert!(
        ok(&changed) && changed["DataBody"] == json!([]),
        "{changed}"
    );
    assert_eq!(
        a("QueryAgentNumbers", "userid=8".into()).await["DataBody"][0]["ax_numA"],
        "137****0008"
    );

    // Fault mode: enter (state 5), leave locally, enter, unbind at the carrier.
    assert_eq!(
        a("TemporaryBindNumber", "userid=7".into()).await["DataBody"],
        json!([x1])
    );
    assert_eq!(
        a("QueryAgentNumbers", "userid=7".into()).await["DataBody"][0]["bindState"],
        "故障绑定"
    );
    assert_eq!(
        a("TemporaryUnBindNumber", format!("private_number={x1}")).await["DataBody"],
        json!([x1])
    );
    assert_eq!(
        a("QueryAgentNumbers", "userid=7".into()).await["DataBody"][0]["bindState"],
        "已绑定"
    );
    let all = a("TemporaryBindNumber", String::new()).await;
    assert_eq!(all["DataCount"], 2, "every binding: {all}");
    let unbound = a(
        "TemporaryUnBindNumberToAli",
        format!("userid=8&regionid=1&private_number={x2}&addUser=1&lastUser=1"),
    )
    .await;
    assert_eq!(unbound["DataBody"], json!([x2]));
    assert_eq!(
        a("QueryAgentNumbers", "userid=8".into()).await["DataBody"][0]["bindState"],
        "未绑定"
    );
    assert!(ok(&a("TemporaryUnBindNumber", "userid=7".into()).await));

    // Unbind: the number stays the user's, unbound; a second unbind has none.
    assert_eq!(
        a("UnBindAgentNumber", format!("userid=7&private_number={x1}")).await["DataBody"],
        json!([x1])
    );
    assert_eq!(
        a("UnBindAgentNumber", format!("userid=7&private_number={x1}")).await["ResultMsg"],
        "解绑失败-当前隐私号不存在绑定关系。"
    );
    assert_eq!(
        a("QueryAgentNumbers", "userid=7".into()).await["DataBody"][0]["bindState"],
        "未绑定"
    );
    // ... and the user can bind it again.
    assert_eq!(
        a("BindAxNumber", format!("userid=7&private_number={x1}")).await["DataBody"],
        json!([x1])
    );

    // Transfer the user's numbers to another account.
    let moved = a("UpdateNumberState", "userid=7&tuserid=9".into()).await;
    assert_eq!(moved["DataBody"], json!([x1]));
    assert_eq!(
        a("QueryAgentNumbers", "userid=9".into()).await["DataBody"][0]["ax_number"],
        x1.as_str()
    );
    assert_eq!(
        a("QueryAgentNumbers", "userid=7".into()).await["DataBody"],
        json!([])
    );

    // Temporary numbers of fault mode: one per user.
    let t = call(
        app.addr,
        true,
        "UserBindLinShiNumber",
        "userId=8&platformID=1",
    )
    .await;
    assert_eq!(t["DataBody"], json!([1]), "{t}");
    let t2 = call(
        app.addr,
        true,
        "UserBindLinShiNumber",
        "userid=8&platformid=1&again=1",
    )
    .await;
    assert_eq!(
        t2["ResultMsg"],
        "内部错误[FAIL-5000-该用户[8]已经有故障绑定,不能再注册新的小号.]"
    );

    // GetCallNumber without a number of the user's: the Mobile in DataBody.
    let none = a(
        "GetCallNumber",
        "xbid=1&userid=55&Mapclassid=1&Mapid=2&Mobile=13912345678".into(),
    )
    .await;
    assert_eq!(none["ResultCode"], 5000);
    assert_eq!(none["DataBody"], json!(["13912345678"]));
    // B must be a real mobile: a virtual number is refused, echoed back.
    let virtual_b = a(
        "GetCallNumber",
        format!("xbid=1&userid=7&Mapclassid=1&Mapid=2&Mobile={x3}"),
    )
    .await;
    assert_eq!(virtual_b["DataBody"], json!([x3]));
    assert!(
        virtual_b["ResultMsg"]
            .as_str()
            .unwrap()
            .starts_with("参数[Mobile]不是真实手机号"),
        "{virtual_b}"
    );
    let missing = a(
        "GetCallNumber",
        "xbid=1&userid=7&Mapid=2&Mobile=13912345678".into(),
    )
    .await;
    assert_eq!(missing["ResultMsg"], "缺少参数[Mapclassid]");

    // POST, as a form and as JSON, with the same names.
    let (status, body) = crate::helpers::post_raw(
        app.addr,
        &format!("{BASE_A}/QueryUserAxs"),
        "application/x-www-form-urlencoded",
        b"userid=9",
    )
    .await;
    assert_eq!(status, 200);
    assert!(body.contains("xNumber"), "{body}");
    let (_, body) = crate::helpers::post_raw(
        app.addr,
        &format!("{BASE_A}/QueryAgentNumbers"),
        "application/json",
        br#"{"userId": 9}"#,
    )
    .await;
    assert!(body.contains(x1.as_str()), "{body}");
    // Unknown operations are 404.
    assert_eq!(
        http_get(app.addr, &format!("{BASE_A}/NoSuchThing")).await.0,
        404
    );
}

#[tokio::test]
async fn a_failing_carrier_leaves_no_half_made_binding() {
    let app = spawn_app().await;
    seed_pool(&app, 2, 17300000001, 1).await;
    set_phone(&app, 21, "13800000021").await;
    let fail = |op: &str, kind: &str| {
        let (key, op, kind) = (
            app.key("axn_simulated_carrier_fail"),
            op.to_owned(),
            kind.to_owned(),
        );
        let mut r = app.redis.clone();
        async move {
            let _: () = r.hset(key, op, kind).await.unwrap();
        }
    };
    for (kind, meaning) in [
        ("no_number", "运营商无可用号码"),
        ("conflict", "号码绑定冲突"),
        ("throttled", "运营商限流"),
    ] {
        fail("bind_ax", kind).await;
        let r = call(
            app.addr,
            true,
            "BindAxByplatform",
            &format!("userId=21&platformID=2&k={kind}"),
        )
        .await;
        assert_eq!(r["ResultCode"], 5000);
        assert!(r["ResultMsg"].as_str().unwrap().contains(meaning), "{r}");
        let free: usize = app
            .redis
            .clone()
            .scard(app.key("PrivateNumber_pool_free:2"))
            .await
            .unwrap();
        assert_eq!(free, 1, "the number is free again after {kind}");
        let q = call(app.addr, false, "QueryAgentNumbers", "userid=21").await;
        assert_eq!(q["DataBody"], json!([]), "no binding after {kind}");
    }
    let r = call(app.addr, true, "BindAxByplatform", "userId=21&platformID=2").await;
    assert_eq!(r["ResultCode"], 2000, "the retry binds: {r}");
    // An unbind the carrier refuses changes nothing.
    let x = r["ResultMsg"]
        .as_str()
        .unwrap()
        .strip_prefix("小号分配成功:")
        .unwrap()
        .to_owned();
    fail("unbind", "failed").await;
    let u = call(
        app.addr,
        false,
        "UnBindAgentNumber",
        &format!("userid=21&private_number={x}"),
    )
    .await;
    assert!(
        u["ResultMsg"]
            .as_str()
            .unwrap()
            .starts_with("解绑失败-运营商调用失败"),
        "{u}"
    );
    assert_eq!(
        call(app.addr, false, "QueryAgentNumbers", "userid=21").await["DataBody"][0]["bindState"],
        "已绑定"
    );
}

/// Many users race for few numbers on two worker processes: every number is
/// handed out once, the losers are told why; one user racing for two numbers
/// of one platform gets one.
#[tokio::test]
async fn the_bind_lock_holds_across_two_processes() {
    let id = unique_id();
    let settings = test_settings(&id);
    let app = TestApp::connect(id, settings.clone()).await.start().await;
    let numbers = seed_pool(&app, 3, 17400000001, 3).await;
    for user in 1..=12 {
        set_phone(&app, user, &format!("138000001{user:02}")).await;
    }
    let w1 = WorkerProcess::start(&settings).await;
    let w2 = WorkerProcess::start(&settings).await;
    let addrs = [w1.port, w2.port].map(|p| std::net::SocketAddr::from(([127, 0, 0, 1], p)));
    let mut tasks = Vec::new();
    for user in 1..=12u64 {
        let addr = addrs[(user % 2) as usize];
        tasks.push(tokio::spawn(async move {
            call(
                addr,
                true,
                "BindAxByplatform",
                &format!("userId={user}&platformID=3"),
            )
            .await
        }));
    }
    let mut won = Vec::new();
    let mut lost = 0;
    for t in tasks {
        let r = t.await.unwrap();
        if r["ResultCode"] == 2000 {
            won.push(
                r["ResultMsg"]
                    .as_str()
                    .unwrap()
                    .strip_prefix("小号分配成功:")
                    .unwrap()
                    .to_owned(),
            );
        } else {
            assert_eq!(r["ResultMsg"], "当前平台没有可分配的小号", "{r}");
            lost += 1;
        }
    }
    won.sort();
    assert_eq!(won, numbers, "each number handed out exactly once");
    assert_eq!(lost, 9);

    // One user, two given numbers of one platform, at once on both processes.
    let more = seed_pool(&app, 1, 17400000101, 2).await;
    set_phone(&app, 99, "13800000199").await;
    let racing: Vec<_> = more
        .iter()
        .zip(addrs)
        .map(|(x, addr)| {
            let q = format!("userid=99&private_number={x}");
            tokio::spawn(async move { call(addr, false, "BindAxNumber", &q).await })
        })
        .collect();
    let mut successes = 0;
    for t in racing {
        let r = t.await.unwrap();
        if r["ResultCode"] == 2000 {
            successes += 1;
        } else {
            assert_eq!(r["ResultMsg"], "您存在绑定的小号,不能再绑定新的小号", "{r}");
        }
    }
    assert_eq!(successes, 1);
    tokio::time::sleep(Duration::from_millis(10)).await;
}

/// A process that died between the carrier's answer and the commit leaves a
/// reservation (bind state 2); the user's next bind resumes it: the same
/// number, no second one taken.
#[tokio::test]
async fn a_half_made_binding_is_completed_by_the_next_bind() {
    let app = spawn_app().await;
    let numbers = seed_pool(&app, 2, 17600000001, 2).await;
    set_phone(&app, 41, "13800000041").await;
    let x = &numbers[0];
    let mut r = app.redis.clone();
    let _: () = r
        .hset_multiple(
            app.key(&format!("PrivateNumber_number:{x}")),
            &[
                ("bindState", "2"),
                ("userId", "41"),
                ("reservedAt", "1"),
                ("ownedBefore", "0"),
            ],
        )
        .await
        .unwrap();
    let _: () = r
        .srem(app.key("PrivateNumber_pool_free:2"), x)
        .await
        .unwrap();
    let _: () = r
        .hset(app.key("PrivateNumber_user_ax:41"), "2", x)
        .await
        .unwrap();
    let q = call(app.addr, false, "QueryAgentNumbers", "userid=41").await;
    assert_eq!(q["DataBody"][0]["bindState"], "绑定中");
    let bound = call(app.addr, true, "BindAxByplatform", "userId=41&platformID=2").await;
    assert_eq!(bound["ResultMsg"], format!("小号分配成功:{x}"), "{bound}");
    let q = call(app.addr, false, "QueryAgentNumbers", "userid=41").await;
    assert_eq!(q["DataBody"][0]["bindState"], "已绑定");
    let free: usize = r.scard(app.key("PrivateNumber_pool_free:2")).await.unwrap();
    assert_eq!(free, 1, "the other number is still free");
}

/// With credentials configured the API answers 401 without them, and serves
/// Basic and bearer alike; `role = "api"` serves it without consumers (and
/// is ready), `role = "consumers"` does not serve it.
#[tokio::test]
async fn credentials_and_roles() {
    use axn_worker::config::{Role, Secret};
    let app = crate::helpers::spawn_app_with(|s| {
        s.platform.password = Secret::new("pw");
        s.platform.bearer_token = Secret::new("tok");
        s.platform.role = Role::Api;
    })
    .await;
    let path = format!("{BASE_A}/QueryUserAxs?userid=1");
    let (status, body) = http_get(app.addr, &path).await;
    assert_eq!(status, 401, "{body}");
    assert!(body.contains("\"ResultCode\":5000"), "{body}");
    let with = |auth: &str| {
        let (addr, path, auth) = (app.addr, path.clone(), auth.to_owned());
        async move {
            use tokio::io::{AsyncReadExt, AsyncWriteExt};
            let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
            s.write_all(format!("GET {path} HTTP/1.0\r\nAuthorization: {auth}\r\n\r\n").as_bytes())
                .await
                .unwrap();
            let mut buf = String::new();
            s.read_to_string(&mut buf).await.unwrap();
            buf.split_whitespace()
                .nth(1)
                .unwrap()
                .parse::<u16>()
                .unwrap()
        }
    };
    use base64::Engine as _;
    let basic = base64::engine::general_purpose::STANDARD.encode("platform:pw");
    assert_eq!(with(&format!("Basic {basic}")).await, 200);
    assert_eq!(with("Bearer tok").await, 200);
    assert_eq!(with("Bearer nope").await, 401);
    let wrong = base64::engine::general_purpose::STANDARD.encode("platform:nope");
    assert_eq!(with(&format!("Basic {wrong}")).await, 401);
    // API only: ready without any consumer.
    let (status, ready) = http_get(app.addr, "/readyz").await;
    assert_eq!(status, 200, "{ready}");
    assert!(ready.contains("\"consuming\":[]"), "{ready}");

    let consumers = crate::helpers::spawn_app_with(|s| s.platform.role = Role::Consumers).await;
    assert_eq!(http_get(consumers.addr, &path).await.0, 404);
}

/// An XB binding writes `{X, 1}` to PrivateNumber_user_axs only for a user
/// without an AX binding shown, and the worker's unbind clears it again;
/// expired bindings get one MQ108 each with two replicas sweeping.
#[tokio::test]
async fn user_axs_follows_the_contract_and_expiry_publishes_once_across_replicas() {
    let id = unique_id();
    let mut settings = test_settings(&id);
    settings.platform.xb_expiry_interval_ms = 50;
    let app = TestApp::connect(id, settings.clone()).await.start().await;
    let numbers = seed_pool(&app, 3, 17700000001, 1).await;
    let x = &numbers[0];
    set_phone(&app, 61, "13800000061").await;
    let w = WorkerProcess::start(&settings).await;
    let other = std::net::SocketAddr::from(([127, 0, 0, 1], w.port));
    assert!(ok(&call(
        app.addr,
        false,
        "BindAxNumber",
        &format!("userid=61&private_number={x}")
    )
    .await));
    // Unbound: the user has no AX binding shown any more.
    assert!(ok(&call(
        app.addr,
        false,
        "UnBindAgentNumber",
        &format!("userid=61&private_number={x}")
    )
    .await));
    assert_eq!(
        call(app.addr, false, "QueryUserAxs", "userid=61").await["DataBody"],
        json!([])
    );
    for i in 0..6 {
        let addr = if i % 2 == 0 { app.addr } else { other };
        let r = call(
            addr,
            false,
            "GetCallNumber",
            &format!("xbid={i}&userid=61&Mapclassid=1&Mapid={i}&Mobile=13912345678&expiration=1"),
        )
        .await;
        assert!(ok(&r), "{r}");
    }
    assert_eq!(
        call(app.addr, false, "QueryUserAxs", "userid=61").await["DataBody"],
        json!([{"xNumber": x, "bindType": 1}])
    );
    let xb = app.key("PrivateNumber_xb");
    app.eventually("all six expired and unbound", || {
        let mut r = app.redis.clone();
        let xb = xb.clone();
        async move { r.hlen::<_, usize>(xb).await.unwrap_or(1) == 0 }
    })
    .await;
    let unbound: usize = app
        .redis
        .clone()
        .hlen(app.key("PrivateNumber_xb_unbound"))
        .await
        .unwrap();
    assert_eq!(unbound, 6);
    app.drained().await;
    let published = |page: String| crate::operate::metric(&page, "axn_platform_xb_expired_total");
    let total = published(app.get("/metrics").await.unwrap().1)
        + published(http_get(other, "/metrics").await.1);
    assert_eq!(total, 6.0, "one MQ108 per binding across the two replicas");
    assert_eq!(
        call(app.addr, false, "QueryUserAxs", "userid=61").await["DataBody"],
        json!([]),
        "the worker cleared the XB entry"
    );
}

/// `axn-worker simulate`: the simulated carrier's callbacks on request, a
/// call record and the unbind, through the worker's queues.
#[tokio::test]
async fn simulated_callbacks_on_request() {
    let app = spawn_app().await;
    let numbers = seed_pool(&app, 3, 17800000001, 1).await;
    set_phone(&app, 71, "13800000071").await;
    assert!(ok(&call(
        app.addr,
        false,
        "BindAxNumber",
        &format!("userid=71&private_number={}", numbers[0])
    )
    .await));
    let r = call(
        app.addr,
        false,
        "GetCallNumber",
        "xbid=3&userid=71&Mapclassid=1&Mapid=777&Mobile=13912345678&expiration=600",
    )
    .await;
    assert!(ok(&r), "{r}");
    let subs: Vec<String> = app
        .redis
        .clone()
        .hkeys(app.key("PrivateNumber_xb"))
        .await
        .unwrap();
    let sub = subs[0].clone();
    let simulate = |args: Vec<String>| {
        let env = crate::helpers::env_for(&app.settings);
        async move {
            let out = tokio::process::Command::new(crate::helpers::BIN)
                .args(["--config", crate::helpers::CONFIG, "simulate"])
                .args(&args)
                .envs(env)
                .output()
                .await
                .unwrap();
            assert!(
                out.status.success(),
                "{}",
                String::from_utf8_lossy(&out.stderr)
            );
            let text = String::from_utf8_lossy(&out.stdout).into_owned();
            assert!(!text.contains("13912345678"), "masked: {text}");
            text
        }
    };
    let said = simulate(vec![
        "call-record".into(),
        sub.clone(),
        "--call-id".into(),
        "sim-c1".into(),
    ])
    .await;
    // The subId is no phone number: an operator reads and searches it whole.
    assert!(said.contains(&format!("\"subId\":\"{sub}\"")), "{said}");
    let event = app.take(&app.call_log_queue()).await;
    assert_eq!(
        serde_json::from_slice::<Value>(&event.data).unwrap(),
        json!({"user": 71, "houseid": 777})
    );
    simulate(vec!["unbind".into(), sub.clone()]).await;
    app.eventually("unbound by the worker", || async {
        app.hget("PrivateNumber_xb_unbound", &sub).await.is_some()
    })
    .await;
}

/// `GET /openapi.json`: an OpenAPI 3.1 document of exactly the router's
/// operations, and the handlers agree with it on what is required: each
/// operation called without parameters asks for the first required parameter
/// the document lists (and one with none required answers anyway).
#[tokio::test]
async fn the_openapi_document_matches_the_router() {
    use axn_worker::platform::{OPERATIONS_A, OPERATIONS_B, openapi::OPERATIONS};
    let app = spawn_app().await;
    let (status, body) = http_get(app.addr, "/openapi.json").await;
    assert_eq!(status, 200, "{body}");
    let doc: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(doc["openapi"], "3.1.0");
    let mut paths: Vec<String> = doc["paths"].as_object().unwrap().keys().cloned().collect();
    let endpoints = [
        "/healthz",
        "/readyz",
        "/readyz/api",
        "/metrics",
        "/openapi.json",
    ];
    let mut want: Vec<String> = OPERATIONS_A
        .iter()
        .map(|o| format!("{BASE_A}/{o}"))
        .chain(OPERATIONS_B.iter().map(|o| format!("{BASE_B}/{o}")))
        .chain(endpoints.iter().map(|e| e.to_string()))
        .collect();
    paths.sort();
    want.sort();
    assert_eq!(
        paths, want,
        "one path per operation of the router, and the endpoints (the mapping API is off)"
    );
    for e in endpoints {
        let (status, _) = http_get(app.addr, e).await;
        let documented = doc["paths"][e]["get"]["responses"]
            .as_object()
            .unwrap()
            .contains_key(&status.to_string());
        assert!(documented, "{e} answered {status}, not in the document");
    }
    for op in OPERATIONS {
        let path = format!("{}/{}", if op.b { BASE_B } else { BASE_A }, op.name);
        let get = &doc["paths"][&path]["get"];
        let listed: Vec<&str> = get["parameters"]
            .as_array()
            .unwrap()
            .iter()
            .map(|p| p["name"].as_str().unwrap())
            .collect();
        let names: Vec<&str> = op.params.iter().map(|p| p.name).collect();
        assert_eq!(listed, names, "{}", op.name);
        let answer = call(app.addr, op.b, op.name, "").await;
        match op
            .params
            .iter()
            .find(|p| p.need == axn_worker::platform::openapi::Need::Required)
        {
            Some(first) => assert_eq!(
                answer["ResultMsg"],
                format!("缺少参数[{}]", first.name),
                "{}: {answer}",
                op.name
            ),
            None => assert!(answer["ResultCode"].is_number(), "{}: {answer}", op.name),
        }
    }
}

/// The served OpenAPI document is valid OpenAPI 3.1 by @readme/openapi-parser
/// (npm), where node and the parser are installed (`.ci/run` installs it
/// under /opt/axn-tools; AXN_NODE_TOOLS may name another node_modules).
#[tokio::test]
async fn the_openapi_document_is_valid_openapi_3_1() {
    let modules =
        std::env::var("AXN_NODE_TOOLS").unwrap_or_else(|_| "/opt/axn-tools/node_modules".into());
    let parser = std::path::Path::new(&modules).join("@readme/openapi-parser");
    if !parser.exists()
        || std::process::Command::new("node")
            .arg("--version")
            .output()
            .is_err()
    {
        println!(
            "node or @readme/openapi-parser is not installed: the document's validity is not checked here"
        );
        return;
    }
    let app = spawn_app().await;
    let (status, body) = http_get(app.addr, "/openapi.json").await;
    assert_eq!(status, 200);
    let file = std::env::temp_dir().join(format!("axn-openapi-{}.json", app.id));
    std::fs::write(&file, &body).unwrap();
    let script = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/tools/openapi-validate.cjs"
    );
    let out = std::process::Command::new("node")
        .args([script, &modules, file.to_str().unwrap()])
        .output()
        .unwrap();
    let _ = std::fs::remove_file(&file);
    assert!(
        out.status.success(),
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}
