//! The binding API attacked as its callers and an attacker would, against
//! the real Redis and RabbitMQ (docs/platform-api.md, "Hostile or repeated
//! requests"): every method, hostile parameters and bodies on every
//! operation (an envelope or a documented 4xx, never a 5xx, never a change of
//! state), identical requests in flight on two processes, a stored answer
//! whose state changed, ranges, `PrivateNumber_user_axs` kept true, fault
//! mode's filters and its race with a release, and XB expiry racing the
//! carrier's own unbind. Every race runs on two worker processes.

use std::{collections::BTreeMap, net::SocketAddr, time::Duration};

use axn_worker::{
    config::{QueueKind, RedisUrl},
    ops::pool::{self, Entry},
    platform::{BASE_A, BASE_B},
    store::Store,
};
use redis::AsyncCommands;
use serde_json::{Value, json};

use crate::{
    helpers::{DEADLINE, HttpAnswer, TestApp, WorkerProcess, spawn_app, test_settings, unique_id},
    lifecycle::{OwnRedis, own_redis, spare_port},
    platform::call,
};

/// Any method, path, content type and body, as raw HTTP/1.0.
pub(crate) async fn request(
    addr: SocketAddr,
    method: &str,
    path: &str,
    content_type: Option<&str>,
    body: &[u8],
) -> HttpAnswer {
    let headers: Vec<(&str, String)> = content_type
        .map(|ct| ("Content-Type", ct.to_owned()))
        .into_iter()
        .collect();
    crate::helpers::request(addr, method, path, &headers, body).await
}

/// Every key under the test's prefix with its value (DUMP), but the
/// request claims: a refused request must leave this unchanged.
async fn snapshot(
    redis: &mut redis::aio::MultiplexedConnection,
    prefix: &str,
) -> BTreeMap<String, Vec<u8>> {
    let mut keys: Vec<String> = Vec::new();
    let mut cursor: u64 = 0;
    loop {
        let (next, batch): (u64, Vec<String>) = redis::cmd("SCAN")
            .arg(cursor)
            .arg("MATCH")
            .arg(format!("{prefix}*"))
            .arg("COUNT")
            .arg(1000)
            .query_async(redis)
            .await
            .unwrap();
        keys.extend(batch);
        if next == 0 {
            break;
        }
        cursor = next;
    }
    let mut out = BTreeMap::new();
    for k in keys {
        if k.contains("PrivateNumber_api_replay:") {
            continue;
        }
        let dumped: Option<Vec<u8>> = redis::cmd("DUMP").arg(&k).query_async(redis).await.unwrap();
        if let Some(d) = dumped {
            out.insert(k, d);
        }
    }
    out
}

/// An operation's parameters and what each must be.
#[derive(Clone, Copy, PartialEq)]
enum P {
    /// A positive id (1..=2^31-1), required.
    Id,
    /// A non-negative integer up to the number, optional (or required with
    /// `Req`).
    Int(u64),
    /// A required non-negative integer up to the number.
    ReqInt(u64),
    /// A privacy number X, required.
    X,
    /// A real mobile, required.
    Mobile,
    /// An id that filters when given (fault mode).
    OptId,
    /// A privacy number that filters when given (fault mode).
    OptX,
}

impl P {
    fn required(self) -> bool {
        matches!(self, P::Id | P::ReqInt(_) | P::X | P::Mobile)
    }
}

/// Whether `value` is one that `kind` accepts (then it is no attack on it).
fn accepted(kind: P, value: &str) -> bool {
    let v = value.trim();
    let digits = !v.is_empty() && v.bytes().all(|b| b.is_ascii_digit());
    let n = if digits { v.parse::<u64>().ok() } else { None };
    match kind {
        P::Id => n.is_some_and(|n| (1..=i32::MAX as u64).contains(&n)),
        P::Int(max) => v.is_empty() || n.is_some_and(|n| n <= max),
        P::ReqInt(max) => n.is_some_and(|n| n <= max),
        P::X => axn_worker::platform::api::number(v, &["16", "17", "19"]).is_some(),
        P::Mobile => axn_worker::platform::api::number(v, &["13", "14", "15", "18"]).is_some(),
        // A filter given empty is refused (dropped, it would select every
        // number); not given at all, it is valid.
        P::OptId => accepted(P::Id, v),
        P::OptX => accepted(P::X, v),
    }
}

const ID: u64 = i32::MAX as u64;

/// Every operation that takes parameters, with valid values for the fixture.
/// An operation: base path B?, its name, its parameters (name, kind, a
/// valid value).
type Operation = (bool, &'static str, Vec<(&'static str, P, String)>);

fn operations(x: &str, user: u64) -> Vec<Operation> {
    let u = user.to_string();
    let x = x.to_owned();
    let m = "13700051234".to_owned();
    vec![
        (
            false,
            "BindAxNumber",
            vec![
                ("userid", P::Id, u.clone()),
                ("regionid", P::Int(ID), "1".into()),
                ("private_number", P::X, x.clone()),
            ],
        ),
        (
            false,
            "BindAxNumberByUserPhone",
            vec![
                ("userid", P::Id, u.clone()),
                ("private_number", P::X, x.clone()),
                ("userPhone", P::Mobile, "13900000006".into()),
            ],
        ),
        (
            false,
            "UnBindAgentNumber",
            vec![
                ("userid", P::Id, u.clone()),
                ("private_number", P::X, x.clone()),
            ],
        ),
        (
            false,
            "ReleaseTelX",
            vec![
                ("userId", P::Id, u.clone()),
                ("private_number", P::X, x.clone()),
            ],
        ),
        (
            false,
            "QueryAgentNumbers",
            vec![("userid", P::Id, u.clone())],
        ),
        (
            false,
            "UpdateNumberState",
            vec![
                ("private_number", P::X, x.clone()),
                ("state", P::ReqInt(3), "1".into()),
            ],
        ),
        (
            false,
            "UpdateNumberState",
            vec![
                ("userid", P::Id, u.clone()),
                ("tuserid", P::Id, "99".into()),
            ],
        ),
        (
            false,
            "ChangeBindANumber",
            vec![
                ("userId", P::Id, u.clone()),
                ("private_number", P::X, x.clone()),
                ("telA", P::Mobile, "13800000009".into()),
            ],
        ),
        (
            false,
            "GetCallNumber",
            vec![
                ("xbid", P::Int(ID), "1".into()),
                ("userid", P::Id, u.clone()),
                ("Mapclassid", P::ReqInt(ID), "1".into()),
                ("Mapid", P::ReqInt(ID), "123456".into()),
                ("Contactmapclassid", P::Int(ID), "0".into()),
                ("Contactid", P::Int(ID), "0".into()),
                ("Mobile", P::Mobile, m.clone()),
                ("expiration", P::Int(365 * 24 * 3600), "120".into()),
            ],
        ),
        (
            false,
            "TemporaryBindNumber",
            vec![
                ("userid", P::OptId, u.clone()),
                ("private_number", P::OptX, x.clone()),
            ],
        ),
        (
            false,
            "TemporaryUnBindNumber",
            vec![
                ("userid", P::OptId, u.clone()),
                ("private_number", P::OptX, x.clone()),
            ],
        ),
        (
            false,
            "TemporaryUnBindNumberToAli",
            vec![
                ("userid", P::OptId, u.clone()),
                ("regionid", P::Int(ID), "1".into()),
                ("private_number", P::OptX, x.clone()),
            ],
        ),
        (false, "QueryUserAxs", vec![("userid", P::Id, u.clone())]),
        (
            true,
            "BindAxByplatform",
            vec![
                ("userId", P::Id, u.clone()),
                ("platformID", P::Id, "3".into()),
            ],
        ),
        (
            true,
            "UserBindLinShiNumber",
            vec![
                ("userId", P::Id, u.clone()),
                ("platformID", P::Id, "3".into()),
            ],
        ),
    ]
}

/// Values no parameter accepts, in every form a caller or an attacker sends.
fn hostile_values() -> Vec<String> {
    let mut v: Vec<String> = [
        "",
        " ",
        "abc",
        "-1",
        "-0",
        "+1",
        "0x10",
        "1e3",
        "1.0",
        "1 2",
        "2147483648",
        "4294967296",
        "9007199254740993",
        "9223372036854775807",
        "18446744073709551615",
        "18446744073709551616",
        "99999999999999999999999999999",
        "１２３",
        "１７１１１５２６０８９",
        "' OR 1=1 --",
        "1;DEL *",
        "\"}]{",
        "<script>alert(1)</script>",
        "${jndi:ldap://x}",
        "%00",
        "1\u{0}",
        "1\r\nX-Injected: 1",
        "171115260891",
        "1711152608",
        "27111526089",
        "1711152608a",
        "null",
        "true",
        "[]",
        "{}",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    v.push("9".repeat(5000));
    v.push("中".repeat(1000));
    v
}

fn form(pairs: &[(&str, String)]) -> String {
    fn enc(s: &str) -> String {
        s.bytes()
            .map(|b| match b {
                b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                    (b as char).to_string()
                }
                _ => format!("%{b:02X}"),
            })
            .collect()
    }
    pairs
        .iter()
        .map(|(k, v)| format!("{}={}", enc(k), enc(v)))
        .collect::<Vec<_>>()
        .join("&")
}

/// A well-formed envelope of base path `b` answering a failure.
fn refused(op: &str, b: bool, a: &HttpAnswer, what: &str) -> Value {
    assert_eq!(a.status, 200, "{op} {what}: {} {}", a.status, a.body);
    let v: Value =
        serde_json::from_str(&a.body).unwrap_or_else(|e| panic!("{op} {what} ({e}): {}", a.body));
    assert_eq!(v["ResultCode"], 5000, "{op} {what} must be refused: {v}");
    assert!(
        v["ResultMsg"].as_str().is_some_and(|m| !m.is_empty()),
        "{op} {what}: {v}"
    );
    assert!(v["DataBody"].is_array(), "{op} {what}: {v}");
    assert_eq!(
        v.as_object().unwrap().len(),
        if b { 3 } else { 10 },
        "{op} {what}: the envelope: {v}"
    );
    v
}

/// A user (51218) holding X on platform 3, free numbers, a phone: state for
/// hostile requests to change, and a snapshot of it.
async fn fixture(app: &TestApp) -> (String, u64) {
    let store = Store::new(&app.settings.redis).unwrap();
    let entries: Vec<Entry> = (0..3)
        .map(|i| Entry {
            number: format!("{}", 17155500001u64 + i),
            platform: 3,
            pool: 17,
            region: 1,
        })
        .collect();
    pool::import(&store, &entries).await.unwrap();
    let user = 51218;
    let _: () = app
        .redis
        .clone()
        .hset(app.key("PrivateNumber_user_phone"), user, "13800000001")
        .await
        .unwrap();
    let bound = call(
        app.addr,
        true,
        "BindAxByplatform",
        &format!("userId={user}&platformID=3"),
    )
    .await;
    let x = bound["ResultMsg"]
        .as_str()
        .unwrap()
        .strip_prefix("小号分配成功:")
        .expect("bound")
        .to_owned();
    (x, user)
}

/// Only GET and POST run an operation: OPTIONS (a CORS preflight), DELETE,
/// PUT, PATCH, TRACE and HEAD are 405 with `Allow` and change nothing.
#[tokio::test]
async fn only_get_and_post_run_an_operation() {
    let app = spawn_app().await;
    let (x, user) = fixture(&app).await;
    let mut r = app.redis.clone();
    let before = snapshot(&mut r, &app.key("")).await;
    for (b, op, params) in operations(&x, user) {
        let base = if b { BASE_B } else { BASE_A };
        let q = form(
            &params
                .iter()
                .map(|(k, _, v)| (*k, v.clone()))
                .collect::<Vec<_>>(),
        );
        for method in [
            "OPTIONS", "DELETE", "PUT", "PATCH", "TRACE", "HEAD", "CONNECTX",
        ] {
            let a = request(
                app.addr,
                method,
                &format!("{base}/{op}?{q}"),
                Some("application/x-www-form-urlencoded"),
                q.as_bytes(),
            )
            .await;
            assert_eq!(a.status, 405, "{method} {op}: {}", a.body);
            assert!(
                a.headers.contains("\r\nallow: get, post"),
                "{method} {op}: {}",
                a.headers
            );
        }
    }
    assert_eq!(
        snapshot(&mut r, &app.key("")).await,
        before,
        "no method but GET and POST changed anything"
    );
    // The user still holds X: the preflight did not release it.
    let q = call(
        app.addr,
        false,
        "QueryAgentNumbers",
        &format!("userid={user}"),
    )
    .await;
    assert_eq!(q["DataBody"][0]["ax_number"], x.as_str());
}

/// Missing, empty, oversized, overflowing, negative, full-width,
/// injection-like and repeated parameters on every operation, as a query,
/// a form and JSON; wrong content types, broken JSON, invalid UTF-8, bodies
/// over the limit: each a well-formed refusal (or 413), none a 5xx, and the
/// state exactly as before.
#[tokio::test]
async fn hostile_requests_are_refused_and_change_nothing() {
    let app = spawn_app().await;
    let (x, user) = fixture(&app).await;
    let mut r = app.redis.clone();
    let before = snapshot(&mut r, &app.key("")).await;
    let mut sent = 0;
    for (b, op, params) in operations(&x, user) {
        let base = if b { BASE_B } else { BASE_A };
        let path = format!("{base}/{op}");
        let valid: Vec<(&str, String)> = params.iter().map(|(k, _, v)| (*k, v.clone())).collect();
        for (i, (name, kind, _)) in params.iter().enumerate() {
            // The parameter missing (when required), then each hostile value.
            let mut cases: Vec<Option<String>> = Vec::new();
            if kind.required() {
                cases.push(None);
            }
            cases.extend(
                hostile_values()
                    .into_iter()
                    .filter(|v| !accepted(*kind, v))
                    .map(Some),
            );
            for case in cases {
                let mut pairs = valid.clone();
                match &case {
                    None => {
                        pairs.remove(i);
                    }
                    Some(v) => pairs[i].1 = v.clone(),
                }
                let what = format!(
                    "{name}={:?}",
                    case.as_deref()
                        .map(|v| v.chars().take(40).collect::<String>())
                );
                // Query string (short values), form body, JSON body.
                let q = form(&pairs);
                if q.len() < 4000 {
                    let a = request(app.addr, "GET", &format!("{path}?{q}"), None, b"").await;
                    let v = refused(op, b, &a, &format!("GET {what}"));
                    if op == "GetCallNumber" && *name != "Mobile" {
                        assert_eq!(
                            v["DataBody"],
                            json!(["13700051234"]),
                            "GetCallNumber's failures carry Mobile: {what}: {v}"
                        );
                    }
                }
                let a = request(
                    app.addr,
                    "POST",
                    &path,
                    Some("application/x-www-form-urlencoded"),
                    q.as_bytes(),
                )
                .await;
                refused(op, b, &a, &format!("form {what}"));
                let j: serde_json::Map<String, Value> = pairs
                    .iter()
                    .map(|(k, v)| (k.to_string(), json!(v)))
                    .collect();
                let a = request(
                    app.addr,
                    "POST",
                    &path,
                    Some("application/json"),
                    Value::Object(j).to_string().as_bytes(),
                )
                .await;
                refused(op, b, &a, &format!("JSON {what}"));
                // Repeated: the hostile value first, a valid one after (the
                // first value wins, as documented).
                if let Some(v) = &case {
                    let mut rep = pairs.clone();
                    rep.push((name, params[i].2.clone()));
                    let _ = v;
                    let a = request(
                        app.addr,
                        "POST",
                        &path,
                        Some("application/x-www-form-urlencoded"),
                        form(&rep).as_bytes(),
                    )
                    .await;
                    refused(op, b, &a, &format!("repeated {what}"));
                }
                sent += 4;
            }
        }
        // JSON values of other types for the first required parameter, and
        // bodies that are not what they say.
        let first = params
            .iter()
            .find(|(_, k, _)| k.required())
            .map_or(params[0].0, |p| p.0);
        for bad in [
            json!([1]),
            json!({"a": 1}),
            json!(null),
            // 1e3 and 51218.0 are whole numbers, read as 1000 and 51218
            // (JSON Schema's integers: docs/platform-api.md); fractions not.
            json!(51218.5),
            json!(true),
            json!(-1),
            json!(1e300),
        ] {
            let mut j: serde_json::Map<String, Value> = valid
                .iter()
                .map(|(k, v)| (k.to_string(), json!(v)))
                .collect();
            j.insert(first.to_owned(), bad.clone());
            let a = request(
                app.addr,
                "POST",
                &path,
                Some("application/json"),
                Value::Object(j).to_string().as_bytes(),
            )
            .await;
            refused(op, b, &a, &format!("JSON {first}: {bad}"));
        }
        let bodies: Vec<(&str, Vec<u8>)> = vec![
            ("application/json", b"{\"userid\":".to_vec()),
            ("application/json", b"[1,2]".to_vec()),
            ("application/json", b"{\"userid\": 1e99999}".to_vec()),
            (
                "application/json",
                format!("{}1{}", "[".repeat(5000), "]".repeat(5000)).into_bytes(),
            ),
            (
                "application/x-www-form-urlencoded",
                vec![b'u', b'=', 0xff, 0xfe],
            ),
            ("application/xml", b"<userid>51218</userid>".to_vec()),
            ("text/plain", b"\xef\xbb\xbfuserid=1".to_vec()),
            (
                "multipart/form-data; boundary=x",
                b"--x\r\nContent-Disposition: form-data; name=\"userid\"\r\n\r\n51218\r\n--x--"
                    .to_vec(),
            ),
        ];
        for (ct, body) in bodies {
            let a = request(app.addr, "POST", &path, Some(ct), &body).await;
            refused(
                op,
                b,
                &a,
                &format!(
                    "body {ct} {:?}",
                    String::from_utf8_lossy(&body[..body.len().min(30)])
                ),
            );
        }
        let big = format!("userid={}", "1".repeat(20_000));
        let a = request(
            app.addr,
            "POST",
            &path,
            Some("application/x-www-form-urlencoded"),
            big.as_bytes(),
        )
        .await;
        assert_eq!(
            a.status, 413,
            "{op}: a body over max_body_bytes: {}",
            a.body
        );
    }
    assert!(sent > 1000, "{sent} hostile requests");
    let after = snapshot(&mut r, &app.key("")).await;
    let changed: Vec<&String> = before
        .keys()
        .chain(after.keys())
        .filter(|k| before.get(*k) != after.get(*k))
        .collect();
    assert!(changed.is_empty(), "hostile requests changed {changed:?}");
}

/// Ranges: the seed's ids are `int`; values beyond it, and expirations
/// that would overflow `now + expiration`, are refused with the range, not
/// called missing, and make no binding.
#[tokio::test]
async fn out_of_range_values_are_refused_with_their_range() {
    let app = spawn_app().await;
    let (_, user) = fixture(&app).await;
    let base = format!("xbid=1&userid={user}&Mapclassid=1&Mapid=1&Mobile=13700051234");
    for (extra, want) in [
        (
            "expiration=18446744073709551615",
            "参数[expiration]超出范围(0到31536000)",
        ),
        (
            "expiration=9223372036854775807",
            "参数[expiration]超出范围(0到31536000)",
        ),
        (
            "expiration=31536001",
            "参数[expiration]超出范围(0到31536000)",
        ),
        (
            "Mapclassid=18446744073709551615",
            "参数[Mapclassid]超出范围(0到2147483647)",
        ),
    ] {
        let q = format!("{extra}&{base}");
        let v = call(app.addr, false, "GetCallNumber", &q).await;
        assert_eq!(v["ResultMsg"], want, "{q}: {v}");
        assert_eq!(v["DataBody"], json!(["13700051234"]), "{q}: {v}");
    }
    for big in ["9007199254740993", "2147483648"] {
        let v = call(
            app.addr,
            true,
            "BindAxByplatform",
            &format!("userId={big}&platformID=3"),
        )
        .await;
        assert_eq!(v["ResultMsg"], "参数[userId]超出范围(1到2147483647)", "{v}");
    }
    let xb: usize = app
        .redis
        .clone()
        .hlen(app.key("PrivateNumber_xb"))
        .await
        .unwrap();
    assert_eq!(xb, 0, "no XB binding was made");
    // The largest expiration accepted makes a binding that expires then.
    let v = call(
        app.addr,
        false,
        "GetCallNumber",
        &format!("expiration=31536000&{base}"),
    )
    .await;
    assert_eq!(v["ResultCode"], 2000, "{v}");
    let bindings: Vec<String> = app
        .redis
        .clone()
        .hvals(app.key("PrivateNumber_xb"))
        .await
        .unwrap();
    let b: Value = serde_json::from_str(&bindings[0]).unwrap();
    assert_eq!(
        b["expiresAt"].as_u64().unwrap() - b["boundAt"].as_u64().unwrap(),
        31_536_000
    );
}

/// The worker's XB unbind clears `PrivateNumber_user_axs` for a user id
/// above 2^53 (Lua's numbers are doubles: compared as text).
#[tokio::test]
async fn an_xb_unbind_clears_user_axs_of_a_user_id_above_2_pow_53() {
    let app = spawn_app().await;
    let (sub, uid) = ("1000000000009991", 9_007_199_254_740_993u64);
    app.put_binding(sub, uid, 7).await;
    let binding: String = app
        .redis
        .clone()
        .hget(app.key("PrivateNumber_xb"), sub)
        .await
        .unwrap();
    assert!(binding.contains("9007199254740993"), "{binding}");
    let tel_x = serde_json::from_str::<Value>(&binding).unwrap()["telX"]
        .as_str()
        .unwrap()
        .to_owned();
    let axs = json!({"xNumber": tel_x, "bindType": 1}).to_string();
    let mut r = app.redis.clone();
    let _: () = r
        .hset(app.key("PrivateNumber_user_axs"), uid.to_string(), &axs)
        .await
        .unwrap();
    // A neighbour whose id the double rounds to: untouched.
    let _: () = r
        .hset(app.key("PrivateNumber_user_axs"), "9007199254740992", &axs)
        .await
        .unwrap();
    let msg = json!({"platId": 3, "telA": "1347011****", "telX": tel_x, "telB": "1370005****", "subId": sub});
    app.publish(QueueKind::XbUnbind, msg.to_string().as_bytes())
        .await;
    app.eventually("the binding unbound", || {
        let mut r = r.clone();
        let key = app.key("PrivateNumber_xb_unbound");
        async move { r.hexists::<_, _, bool>(key, sub).await.unwrap() }
    })
    .await;
    let left: Vec<String> = r.hkeys(app.key("PrivateNumber_user_axs")).await.unwrap();
    assert_eq!(
        left,
        vec!["9007199254740992".to_owned()],
        "the user's entry cleared, the neighbour's kept"
    );
}

async fn axs(app: &TestApp, user: u64) -> Value {
    call(app.addr, false, "QueryUserAxs", &format!("userid={user}")).await["DataBody"].clone()
}

/// `PrivateNumber_user_axs` names the user's current number after every
/// operation: a release of the number it shows moves it to the user's other
/// bound number; a transfer leaves the source without one and the target
/// with one it holds; no number, no entry.
#[tokio::test]
async fn user_axs_names_the_current_number_after_every_operation() {
    let app = spawn_app().await;
    let store = Store::new(&app.settings.redis).unwrap();
    let entries: Vec<Entry> = [(17166600001u64, 1), (17166600003, 3), (17166600022, 2)]
        .iter()
        .map(|(n, p)| Entry {
            number: n.to_string(),
            platform: *p,
            pool: 1,
            region: 1,
        })
        .collect();
    pool::import(&store, &entries).await.unwrap();
    let mut r = app.redis.clone();
    for (u, phone) in [(61, "13800000061"), (62, "13800000062")] {
        let _: () = r
            .hset(app.key("PrivateNumber_user_phone"), u, phone)
            .await
            .unwrap();
    }
    let p1 = call(
        app.addr,
        false,
        "BindAxNumber",
        "userid=61&private_number=17166600001",
    )
    .await;
    assert_eq!(p1["ResultCode"], 2000, "{p1}");
    let p3 = call(
        app.addr,
        false,
        "BindAxNumber",
        "userid=61&private_number=17166600003",
    )
    .await;
    assert_eq!(p3["ResultCode"], 2000, "{p3}");
    let shown = axs(&app, 61).await[0]["xNumber"]
        .as_str()
        .unwrap()
        .to_owned();
    let other = if shown == "17166600001" {
        "17166600003"
    } else {
        "17166600001"
    };
    let v = call(
        app.addr,
        false,
        "ReleaseTelX",
        &format!("userId=61&private_number={shown}"),
    )
    .await;
    assert_eq!(v["DataBody"], json!([shown]), "{v}");
    assert_eq!(
        axs(&app, 61).await,
        json!([{"xNumber": other, "bindType": 0}]),
        "the other bound number"
    );

    // 62 holds a platform-2 number; 61 gives its other number to 62.
    let t = call(
        app.addr,
        false,
        "BindAxNumber",
        "userid=62&private_number=17166600022",
    )
    .await;
    assert_eq!(t["ResultCode"], 2000, "{t}");
    let moved = call(app.addr, false, "UpdateNumberState", "userid=61&tuserid=62").await;
    assert_eq!(moved["DataBody"], json!([other]), "{moved}");
    assert_eq!(axs(&app, 61).await, json!([]), "61 holds nothing now");
    let shown62 = axs(&app, 62).await[0]["xNumber"]
        .as_str()
        .unwrap()
        .to_owned();
    assert!(
        [other, "17166600022"].contains(&shown62.as_str()),
        "{shown62}"
    );
    // UnBindAgentNumber of the one shown: the other is still bound.
    let v = call(
        app.addr,
        false,
        "UnBindAgentNumber",
        &format!("userid=62&private_number={shown62}"),
    )
    .await;
    assert_eq!(v["ResultCode"], 2000, "{v}");
    let rest = if shown62 == other {
        "17166600022"
    } else {
        other
    };
    assert_eq!(
        axs(&app, 62).await,
        json!([{"xNumber": rest, "bindType": 0}])
    );
    let v = call(
        app.addr,
        false,
        "ReleaseTelX",
        &format!("userId=62&private_number={rest}"),
    )
    .await;
    assert_eq!(v["ResultCode"], 2000, "{v}");
    assert_eq!(axs(&app, 62).await, json!([]), "no bound number, no entry");
    check_pool(&mut r, &app.key("")).await;
}

/// Fault mode: the parameters given all filter (a number and another user
/// select nothing); a user in fault mode through TemporaryBindNumber has a
/// fault binding, which is said before the pool is looked at.
#[tokio::test]
async fn fault_mode_filters_by_every_parameter_and_knows_a_fault_binding() {
    let app = spawn_app().await;
    let (x, user) = fixture(&app).await;
    let mut r = app.redis.clone();
    let _: () = r
        .hset(app.key("PrivateNumber_user_phone"), 77, "13800000077")
        .await
        .unwrap();
    let v = call(
        app.addr,
        false,
        "TemporaryBindNumber",
        &format!("userid=77&private_number={x}"),
    )
    .await;
    assert_eq!(v["DataBody"], json!([]), "77 does not hold {x}: {v}");
    let state: String = r
        .hget(app.key(&format!("PrivateNumber_number:{x}")), "bindState")
        .await
        .unwrap();
    assert_eq!(state, "1");
    let v = call(
        app.addr,
        false,
        "TemporaryBindNumber",
        &format!("userid={user}&private_number={x}"),
    )
    .await;
    assert_eq!(v["DataBody"], json!([x]), "{v}");
    // Drain platform 1 (empty) and 3's free numbers: the user's fault
    // binding is named before the pool.
    for p in ["1", "3"] {
        let v = call(
            app.addr,
            true,
            "UserBindLinShiNumber",
            &format!("userId={user}&platformID={p}"),
        )
        .await;
        assert_eq!(
            v["ResultMsg"],
            format!("内部错误[FAIL-5000-该用户[{user}]已经有故障绑定,不能再注册新的小号.]"),
            "platform {p}: {v}"
        );
    }
    let free: usize = r.scard(app.key("PrivateNumber_pool_free:3")).await.unwrap();
    assert_eq!(free, 2, "no second number taken");
    check_pool(&mut r, &app.key("")).await;
}

/// The pool's invariants (docs/platform-api.md, "Invariants"): a free number
/// is unbound, unheld, state 0; a held number is in its user's record and not
/// free; every record names a number its user holds; user_axs names a
/// number its user holds bound (AX) or holds (XB).
async fn check_pool(r: &mut redis::aio::MultiplexedConnection, prefix: &str) {
    let platforms: Vec<String> = r
        .smembers(format!("{prefix}PrivateNumber_platforms"))
        .await
        .unwrap();
    for p in platforms {
        let numbers: Vec<String> = r
            .smembers(format!("{prefix}PrivateNumber_pool:{p}"))
            .await
            .unwrap();
        for x in numbers {
            let n: BTreeMap<String, String> = r
                .hgetall(format!("{prefix}PrivateNumber_number:{x}"))
                .await
                .unwrap();
            let get = |k: &str| n.get(k).cloned().unwrap_or_default();
            let free: bool = r
                .sismember(format!("{prefix}PrivateNumber_pool_free:{p}"), &x)
                .await
                .unwrap();
            let (bs, uid, st) = (get("bindState"), get("userId"), get("numberState"));
            assert!(["0", "1", "2", "5"].contains(&bs.as_str()), "{x}: {n:?}");
            if free {
                assert!(
                    bs == "0" && uid.is_empty() && st == "0",
                    "free {x} is not free: {n:?}"
                );
            }
            if uid.is_empty() {
                assert_eq!(bs, "0", "{x} unheld but bound: {n:?}");
                if st == "0" {
                    assert!(free, "{x} unheld, state 0, but not free: {n:?}");
                }
            } else {
                assert!(!free, "{x} held by {uid} and free: {n:?}");
                let ax: Option<String> = r
                    .hget(format!("{prefix}PrivateNumber_user_ax:{uid}"), &p)
                    .await
                    .unwrap();
                let fault: Option<String> = r
                    .get(format!("{prefix}PrivateNumber_user_fault:{uid}"))
                    .await
                    .unwrap();
                assert!(
                    ax.as_deref() == Some(&x) || fault.as_deref() == Some(&x),
                    "{x} held by {uid}, who has no record of it"
                );
            }
        }
    }
    let axs: BTreeMap<String, String> = r
        .hgetall(format!("{prefix}PrivateNumber_user_axs"))
        .await
        .unwrap();
    for (uid, v) in axs {
        let v: Value = serde_json::from_str(&v).unwrap();
        let x = v["xNumber"].as_str().unwrap();
        let n: BTreeMap<String, String> = r
            .hgetall(format!("{prefix}PrivateNumber_number:{x}"))
            .await
            .unwrap();
        assert_eq!(
            n.get("userId"),
            Some(&uid),
            "user_axs[{uid}] = {v}, not the user's: {n:?}"
        );
        if v["bindType"] == 0 {
            let bs = n.get("bindState").cloned().unwrap_or_default();
            assert!(
                bs == "1" || bs == "5",
                "user_axs[{uid}] = {v}, not bound: {n:?}"
            );
        }
    }
}

/// Two worker processes over a Redis of the test's own (so that pausing it
/// pauses nobody else), and the test's app for queues and cleanup.
struct Pair {
    app: TestApp,
    _redis: OwnRedis,
    own: redis::aio::MultiplexedConnection,
    addrs: [SocketAddr; 2],
    _workers: [WorkerProcess; 2],
}

async fn pair() -> Pair {
    let port = spare_port();
    let redis = own_redis(port).await;
    let url = format!("redis://127.0.0.1:{port}/0");
    let id = unique_id();
    let mut settings = test_settings(&id);
    settings.redis.url = RedisUrl::single(url.clone());
    settings.platform.xb_expiry_interval_ms = 100;
    let app = TestApp::connect(id, settings.clone()).await.start().await;
    let own = redis::Client::open(url)
        .unwrap()
        .get_multiplexed_async_connection()
        .await
        .unwrap();
    let w1 = WorkerProcess::start(&settings).await;
    let w2 = WorkerProcess::start(&settings).await;
    let addrs = [w1.port, w2.port].map(|p| SocketAddr::from(([127, 0, 0, 1], p)));
    Pair {
        app,
        _redis: redis,
        own,
        addrs,
        _workers: [w1, w2],
    }
}

impl Pair {
    async fn seed(&self, platform: u32, first: u64, n: u64) -> Vec<String> {
        let store = Store::new(&self.app.settings.redis).unwrap();
        let entries: Vec<Entry> = (0..n)
            .map(|i| Entry {
                number: format!("{}", first + i),
                platform,
                pool: 1,
                region: 1,
            })
            .collect();
        pool::import(&store, &entries).await.unwrap();
        entries.into_iter().map(|e| e.number).collect()
    }
    async fn phone(&self, user: u64) {
        let _: () = self
            .own
            .clone()
            .hset(
                self.app.key("PrivateNumber_user_phone"),
                user,
                format!("138{user:08}"),
            )
            .await
            .unwrap();
    }
    /// Pauses the Redis's writes (scripts included) for `ms` while `f` sends
    /// its requests: they arrive together and queue behind one another.
    async fn paused(&self, ms: u64) {
        let _: () = redis::cmd("CLIENT")
            .arg("PAUSE")
            .arg(ms)
            .arg("WRITE")
            .query_async(&mut self.own.clone())
            .await
            .unwrap();
    }
    /// The same request `n` times at once, spread over both processes.
    async fn at_once(&self, n: usize, b: bool, op: &'static str, q: String) -> Vec<Value> {
        let tasks: Vec<_> = (0..n)
            .map(|i| {
                let (addr, q) = (self.addrs[i % 2], q.clone());
                tokio::spawn(async move { call(addr, b, op, &q).await })
            })
            .collect();
        let mut out = Vec::new();
        for t in tasks {
            out.push(t.await.unwrap());
        }
        out
    }
}

/// Identical requests in flight on two processes (two gateways, a double
/// click; Redis paused for half a second so they all arrive before the
/// first is done) run once: every duplicate waits and gets the first's
/// answer: one XB binding with one expiry, one number taken.
#[tokio::test]
async fn identical_requests_in_flight_run_once_across_two_processes() {
    let p = pair().await;
    let numbers = p.seed(3, 17177700001, 3).await;
    p.phone(81).await;
    p.phone(82).await;
    p.paused(1000).await;
    let binds = p
        .at_once(4, true, "BindAxByplatform", "userId=81&platformID=3".into())
        .await;
    assert!(
        binds.iter().all(|v| v == &binds[0]),
        "one answer for all: {binds:?}"
    );
    assert_eq!(binds[0]["ResultCode"], 2000, "{binds:?}");
    let mut own = p.own.clone();
    let free: usize = own
        .scard(p.app.key("PrivateNumber_pool_free:3"))
        .await
        .unwrap();
    assert_eq!(free, numbers.len() - 1, "one number taken");

    let q = "xbid=5&userid=81&Mapclassid=1&Mapid=42&Mobile=13700051234&expiration=300".to_owned();
    p.paused(1000).await;
    let calls = p.at_once(4, false, "GetCallNumber", q).await;
    let strip = |v: &Value| v["DataBody"].clone();
    assert!(
        calls
            .iter()
            .all(|v| v["ResultCode"] == 2000 && strip(v) == strip(&calls[0])),
        "{calls:?}"
    );
    let xb: usize = own.hlen(p.app.key("PrivateNumber_xb")).await.unwrap();
    assert_eq!(xb, 1, "one XB binding for four identical requests");
    let expiries: usize = own
        .zcard(p.app.key("PrivateNumber_xb_expiry"))
        .await
        .unwrap();
    assert_eq!(expiries, 1, "one expiry, so one MQ108");
    // A request that differs (another xbid) is another request.
    let other = call(
        p.addrs[0],
        false,
        "GetCallNumber",
        "xbid=6&userid=81&Mapclassid=1&Mapid=42&Mobile=13700051234",
    )
    .await;
    assert_eq!(other["ResultCode"], 2000, "{other}");
    let xb: usize = own.hlen(p.app.key("PrivateNumber_xb")).await.unwrap();
    assert_eq!(xb, 2);
    check_pool(&mut own, &p.app.key("")).await;
}

/// A stored answer is replayed only while the state it describes holds:
/// bind, release, the same bind again binds (the user holds the number the
/// answer names); an XB binding ended by the carrier, the same
/// GetCallNumber makes a new one.
#[tokio::test]
async fn a_stored_answer_is_not_replayed_once_its_state_changed() {
    let p = pair().await;
    p.seed(2, 17188800001, 1).await;
    p.phone(91).await;
    let mut own = p.own.clone();
    let bind = "userId=91&platformID=2";
    let first = call(p.addrs[0], true, "BindAxByplatform", bind).await;
    let x = first["ResultMsg"]
        .as_str()
        .unwrap()
        .strip_prefix("小号分配成功:")
        .unwrap()
        .to_owned();
    let again = call(p.addrs[1], true, "BindAxByplatform", bind).await;
    assert_eq!(again, first, "a retry while it holds: the same answer");
    let v = call(
        p.addrs[0],
        false,
        "ReleaseTelX",
        &format!("userId=91&private_number={x}"),
    )
    .await;
    assert_eq!(v["DataBody"], json!([x]), "{v}");
    let third = call(p.addrs[1], true, "BindAxByplatform", bind).await;
    assert_eq!(third["ResultCode"], 2000, "{third}");
    let named = third["ResultMsg"]
        .as_str()
        .unwrap()
        .strip_prefix("小号分配成功:")
        .unwrap()
        .to_owned();
    let held: Option<String> = own
        .hget(p.app.key("PrivateNumber_user_ax:91"), "2")
        .await
        .unwrap();
    assert_eq!(
        held.as_deref(),
        Some(named.as_str()),
        "the answer describes the state"
    );
    let state: String = own
        .hget(
            p.app.key(&format!("PrivateNumber_number:{named}")),
            "bindState",
        )
        .await
        .unwrap();
    assert_eq!(state, "1");

    let q = "xbid=1&userid=91&Mapclassid=1&Mapid=7&Mobile=13700051234&expiration=300";
    let xb = call(p.addrs[0], false, "GetCallNumber", q).await;
    assert_eq!(xb["ResultCode"], 2000, "{xb}");
    let subs: Vec<String> = own.hkeys(p.app.key("PrivateNumber_xb")).await.unwrap();
    assert_eq!(subs.len(), 1);
    // The carrier ends it (MQ108): the worker moves it to unbound.
    let msg = json!({"platId": 2, "telA": "1380000****", "telX": named, "telB": "1370005****", "subId": subs[0]});
    p.app
        .publish(QueueKind::XbUnbind, msg.to_string().as_bytes())
        .await;
    let key = p.app.key("PrivateNumber_xb");
    let deadline = tokio::time::Instant::now() + DEADLINE;
    while own.hlen::<_, usize>(&key).await.unwrap() != 0 {
        assert!(
            tokio::time::Instant::now() < deadline,
            "the unbind was not applied"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let again = call(p.addrs[1], false, "GetCallNumber", q).await;
    assert_eq!(again["ResultCode"], 2000, "{again}");
    let now: Vec<String> = own.hkeys(&key).await.unwrap();
    assert_eq!(
        now.len(),
        1,
        "a new, live binding, not a replay of the ended one"
    );
    assert_ne!(now[0], subs[0]);
}

/// Releases racing binds, and fault mode racing releases, on two processes
/// with Redis paused so that both are in flight together, round after
/// round: the pool's invariants hold after every round (no free number in
/// state 5, no number held and free, no record naming a number its user
/// lost).
#[tokio::test]
async fn releases_racing_binds_and_fault_mode_keep_the_pool_true() {
    let p = pair().await;
    let numbers = p.seed(1, 17199900001, 1).await;
    let x = &numbers[0];
    p.phone(101).await;
    let mut own = p.own.clone();
    for round in 0..12 {
        // Release racing a bind.
        p.paused(150).await;
        let bind = {
            let addr = p.addrs[round % 2];
            tokio::spawn(async move {
                call(
                    addr,
                    true,
                    "BindAxByplatform",
                    &format!("userId=101&platformID=1&round={round}"),
                )
                .await
            })
        };
        let release = {
            let (addr, q) = (
                p.addrs[(round + 1) % 2],
                format!("userId=101&private_number={x}&round={round}"),
            );
            tokio::spawn(async move { call(addr, false, "ReleaseTelX", &q).await })
        };
        let (b, r) = (bind.await.unwrap(), release.await.unwrap());
        check_pool(&mut own, &p.app.key("")).await;
        assert!(
            b["ResultCode"] == 2000 || b["ResultMsg"].as_str().unwrap().starts_with("绑定失败"),
            "{b}"
        );
        // The release wins, or the bind committed between its read and its
        // write and the release says so (nothing changed by it).
        assert!(
            r["ResultCode"] == 2000 || r["ResultMsg"] == "解绑失败-号码的绑定已变化,请重试",
            "{r}"
        );

        // Fault mode racing a release of a bound number.
        let v = call(
            p.addrs[1],
            false,
            "ReleaseTelX",
            &format!("userId=101&private_number={x}&reset={round}"),
        )
        .await;
        assert_eq!(v["ResultCode"], 2000, "{v}");
        let v = call(
            p.addrs[0],
            true,
            "BindAxByplatform",
            &format!("userId=101&platformID=1&again={round}"),
        )
        .await;
        assert_eq!(v["ResultCode"], 2000, "round {round}: {v}");
        // The release's write queued first; fault mode reads the number
        // bound meanwhile and writes after it.
        p.paused(200).await;
        let release = {
            let (addr, q) = (
                p.addrs[(round + 1) % 2],
                format!("userId=101&private_number={x}&r2={round}"),
            );
            tokio::spawn(async move { call(addr, false, "ReleaseTelX", &q).await })
        };
        tokio::time::sleep(Duration::from_millis(40)).await;
        let fault = {
            let addr = p.addrs[round % 2];
            tokio::spawn(async move {
                call(
                    addr,
                    false,
                    "TemporaryBindNumber",
                    &format!("userid=101&round={round}"),
                )
                .await
            })
        };
        let (f, r) = (fault.await.unwrap(), release.await.unwrap());
        assert_eq!(f["ResultCode"], 2000, "{f}");
        assert_eq!(r["ResultCode"], 2000, "{r}");
        check_pool(&mut own, &p.app.key("")).await;
        let st: String = own
            .hget(p.app.key(&format!("PrivateNumber_number:{x}")), "bindState")
            .await
            .unwrap();
        assert_eq!(st, "0", "round {round}: released, not left in fault mode");
    }
}

/// XB bindings expiring while the carrier's own unbind callback arrives,
/// on two processes (each sweeping expiries and consuming): every binding is
/// unbound exactly once, nothing is dead-lettered, the expiry index empties
/// and user_axs is cleared.
#[tokio::test]
async fn expiry_racing_the_carriers_unbind_applies_each_once() {
    let p = pair().await;
    let numbers = p.seed(3, 17122200001, 1).await;
    p.phone(111).await;
    let v = call(
        p.addrs[0],
        false,
        "BindAxNumber",
        &format!("userid=111&private_number={}", numbers[0]),
    )
    .await;
    assert_eq!(v["ResultCode"], 2000, "{v}");
    let mut own = p.own.clone();
    let n = 20;
    for i in 0..n {
        let q =
            format!("xbid={i}&userid=111&Mapclassid=1&Mapid=9&Mobile=137000{i:05}&expiration=1");
        let v = call(p.addrs[i % 2], false, "GetCallNumber", &q).await;
        assert_eq!(v["ResultCode"], 2000, "{v}");
    }
    // On a loaded machine the first may have expired and been unbound
    // already: every binding made, live or unbound.
    let mut subs: Vec<String> = own.hkeys(p.app.key("PrivateNumber_xb")).await.unwrap();
    let gone: Vec<String> = own
        .hkeys(p.app.key("PrivateNumber_xb_unbound"))
        .await
        .unwrap();
    subs.extend(gone);
    assert_eq!(subs.len(), n);
    // The carrier's callbacks, about when the expiry comes due.
    tokio::time::sleep(Duration::from_millis(900)).await;
    for sub in &subs {
        let msg = json!({"platId": 3, "telA": "1380000****", "telX": numbers[0], "telB": "1370000****", "subId": sub});
        p.app
            .publish(QueueKind::XbUnbind, msg.to_string().as_bytes())
            .await;
    }
    let deadline = tokio::time::Instant::now() + DEADLINE;
    loop {
        let live: usize = own.hlen(p.app.key("PrivateNumber_xb")).await.unwrap();
        let due: usize = own
            .zcard(p.app.key("PrivateNumber_xb_expiry"))
            .await
            .unwrap();
        if live == 0 && due == 0 {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "{live} live, {due} due"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    p.app.drained().await;
    let unbound: Vec<String> = own
        .hkeys(p.app.key("PrivateNumber_xb_unbound"))
        .await
        .unwrap();
    assert_eq!(unbound.len(), n, "each binding unbound once");
    for sub in &subs {
        let b: String = own
            .hget(p.app.key("PrivateNumber_xb_unbound"), sub)
            .await
            .unwrap();
        assert_eq!(b.matches("unboundAt").count(), 1, "{b}");
    }
    assert_eq!(
        p.app.queue_len(&p.app.dlq(QueueKind::XbUnbind)).await,
        0,
        "nothing dead-lettered"
    );
    assert_eq!(
        axs_of(&mut own, &p.app, 111).await,
        Some(json!({"xNumber": numbers[0], "bindType": 0}))
    );
    check_pool(&mut own, &p.app.key("")).await;
}

async fn axs_of(
    r: &mut redis::aio::MultiplexedConnection,
    app: &TestApp,
    user: u64,
) -> Option<Value> {
    let v: Option<String> = r
        .hget(app.key("PrivateNumber_user_axs"), user)
        .await
        .unwrap();
    v.map(|s| serde_json::from_str(&s).unwrap())
}

/// A test's own redis-server writes only into its own temporary directory
/// (a replica's RDB, a SAVE), which goes with it: never the repository.
#[tokio::test]
async fn a_tests_own_redis_writes_only_into_its_own_directory() {
    let port = spare_port();
    let redis = own_redis(port).await;
    let mut c = redis::Client::open(format!("redis://127.0.0.1:{port}/0"))
        .unwrap()
        .get_multiplexed_async_connection()
        .await
        .unwrap();
    let _: () = c.set("k", "v").await.unwrap();
    let _: () = redis::cmd("SAVE").query_async(&mut c).await.unwrap();
    let dir: Vec<String> = redis::cmd("CONFIG")
        .arg("GET")
        .arg("dir")
        .query_async(&mut c)
        .await
        .unwrap();
    let dir = std::path::PathBuf::from(&dir[1]);
    assert!(dir.starts_with(std::env::temp_dir()), "{dir:?}");
    assert!(dir.join("dump.rdb").exists());
    let repo = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
    assert!(
        !repo.join("dump.rdb").exists(),
        "a dump.rdb in the repository"
    );
    drop(redis);
    assert!(!dir.exists(), "the directory goes with the server");
}

/// Every failure of GetCallNumber carries the Mobile given in DataBody (the
/// seed's example), the parameter checks of xbid, Mapid, Contactid and
/// expiration included.
#[tokio::test]
async fn get_call_numbers_failures_carry_the_mobile_given() {
    let app = spawn_app().await;
    let (_, user) = fixture(&app).await;
    for bad in [
        "xbid=abc",
        "Mapid=-1",
        "Contactid=x",
        "Contactmapclassid=1.5",
        "expiration=soon",
        "Mapclassid=",
        "userid=0",
    ] {
        let (name, _) = bad.split_once('=').unwrap();
        let mut q = vec![
            "xbid=1".to_owned(),
            format!("userid={user}"),
            "Mapclassid=1".into(),
            "Mapid=2".into(),
            "Mobile=+86 137-0005-1234".into(),
        ];
        q.retain(|p| !p.starts_with(&format!("{name}=")));
        q.insert(0, bad.to_owned());
        let v = call(
            app.addr,
            false,
            "GetCallNumber",
            &q.join("&").replace('+', "%2B").replace(' ', "%20"),
        )
        .await;
        assert_eq!(v["ResultCode"], 5000, "{bad}: {v}");
        assert_eq!(v["DataBody"], json!(["+86 137-0005-1234"]), "{bad}: {v}");
    }
    // A body that cannot be read: the Mobile of the query.
    let path = format!("{BASE_A}/GetCallNumber?Mobile=13700051234");
    for (ct, body) in [
        ("application/json", r#"{"userid": [1]}"#),
        ("text/plain", "userid=1"),
    ] {
        let a = request(app.addr, "POST", &path, Some(ct), body.as_bytes()).await;
        assert_eq!(
            refused("GetCallNumber", false, &a, body)["DataBody"],
            json!(["13700051234"])
        );
    }
}

/// Sets the simulated carrier's switch for `op` (`slow:<ms>`, `no_number`).
async fn carrier_switch(app: &TestApp, op: &str, how: &str) {
    let _: () = app
        .redis
        .clone()
        .hset(app.key("axn_simulated_carrier_fail"), op, how)
        .await
        .unwrap();
}

async fn number_field(app: &TestApp, x: &str, field: &str) -> Option<String> {
    app.redis
        .clone()
        .hget(app.key(&format!("PrivateNumber_number:{x}")), field)
        .await
        .unwrap()
}

/// A release whose carrier call is slow while the number is unbound and
/// bound again: it ends the old subscription and leaves the new binding as
/// it is (never a live subscription on a free number).
#[tokio::test]
async fn a_slow_release_does_not_undo_a_newer_binding() {
    let app = spawn_app().await;
    let (x, user) = fixture(&app).await;
    carrier_switch(&app, "unbind", "slow:3000").await;
    let slow = {
        let (addr, q) = (app.addr, format!("userId={user}&private_number={x}"));
        tokio::spawn(async move { call(addr, false, "ReleaseTelX", &q).await })
    };
    tokio::time::sleep(Duration::from_millis(500)).await;
    let v = call(
        app.addr,
        false,
        "UnBindAgentNumber",
        &format!("userid={user}&private_number={x}"),
    )
    .await;
    assert_eq!(v["ResultCode"], 2000, "{v}");
    let v = call(
        app.addr,
        false,
        "BindAxNumber",
        &format!("userid={user}&private_number={x}"),
    )
    .await;
    assert_eq!(v["ResultCode"], 2000, "{v}");
    let sub = number_field(&app, &x, "subId").await.expect("bound anew");
    let released = slow.await.unwrap();
    assert_eq!(
        released["ResultMsg"], "解绑失败-号码的绑定已变化,请重试",
        "{released}"
    );
    assert_eq!(
        number_field(&app, &x, "subId").await.as_deref(),
        Some(sub.as_str())
    );
    assert_eq!(
        number_field(&app, &x, "bindState").await.as_deref(),
        Some("1")
    );
    check_pool(&mut app.redis.clone(), &app.key("")).await;
}

/// A change of A whose carrier call is slow while the number is released
/// and bound to another user: the other user's A stays theirs.
#[tokio::test]
async fn a_slow_change_of_a_does_not_touch_the_next_users_binding() {
    let app = spawn_app().await;
    let (x, user) = fixture(&app).await;
    let _: () = app
        .redis
        .clone()
        .hset(app.key("PrivateNumber_user_phone"), 9, "13800000009")
        .await
        .unwrap();
    carrier_switch(&app, "update_a", "slow:3000").await;
    let slow = {
        let (addr, q) = (
            app.addr,
            format!("userId={user}&private_number={x}&telA=13700000088"),
        );
        tokio::spawn(async move { call(addr, false, "ChangeBindANumber", &q).await })
    };
    tokio::time::sleep(Duration::from_millis(500)).await;
    let v = call(
        app.addr,
        false,
        "ReleaseTelX",
        &format!("userId={user}&private_number={x}"),
    )
    .await;
    assert_eq!(v["ResultCode"], 2000, "{v}");
    let v = call(
        app.addr,
        false,
        "BindAxNumber",
        &format!("userid=9&private_number={x}"),
    )
    .await;
    assert_eq!(v["ResultCode"], 2000, "{v}");
    let changed = slow.await.unwrap();
    assert_eq!(
        changed["ResultMsg"], "更换A号码失败-号码的绑定已变化,请重试",
        "{changed}"
    );
    assert_eq!(
        number_field(&app, &x, "telA").await.as_deref(),
        Some("13800000009")
    );
}

/// A user's temporary number (fault mode's) is not bound as their AX
/// number: it would sit in both records, and a failed bind would free it
/// while the temporary record still names it.
#[tokio::test]
async fn a_temporary_number_is_not_bound_as_an_ax_number() {
    let app = spawn_app().await;
    let store = Store::new(&app.settings.redis).unwrap();
    pool::import(
        &store,
        &[Entry {
            number: "17133300001".into(),
            platform: 1,
            pool: 1,
            region: 1,
        }],
    )
    .await
    .unwrap();
    let _: () = app
        .redis
        .clone()
        .hset(app.key("PrivateNumber_user_phone"), 1, "13800000001")
        .await
        .unwrap();
    let v = call(
        app.addr,
        true,
        "UserBindLinShiNumber",
        "userId=1&platformID=1",
    )
    .await;
    assert_eq!(v["ResultCode"], 2000, "{v}");
    let v = call(app.addr, false, "TemporaryUnBindNumberToAli", "userid=1").await;
    assert_eq!(v["DataBody"], json!(["17133300001"]), "{v}");
    carrier_switch(&app, "bind_ax", "no_number").await;
    let v = call(
        app.addr,
        false,
        "BindAxNumber",
        "userid=1&private_number=17133300001",
    )
    .await;
    assert_eq!(
        v["ResultMsg"], "当前号码[17133300001]是用户[1]的临时号码(故障模式),无法绑定为AX号码",
        "{v}"
    );
    assert_eq!(
        number_field(&app, "17133300001", "userId").await.as_deref(),
        Some("1")
    );
    check_pool(&mut app.redis.clone(), &app.key("")).await;
}

/// GetCallNumber whose carrier call is slow while its number is released:
/// user_axs never names a number its user no longer holds.
#[tokio::test]
async fn an_xb_binding_racing_a_release_leaves_user_axs_true() {
    let app = spawn_app().await;
    let (x, user) = fixture(&app).await;
    // Only an XB entry is at stake: the user's AX number unbound, kept.
    let v = call(
        app.addr,
        false,
        "UnBindAgentNumber",
        &format!("userid={user}&private_number={x}"),
    )
    .await;
    assert_eq!(v["ResultCode"], 2000, "{v}");
    carrier_switch(&app, "bind_xb", "slow:3000").await;
    let slow = {
        let (addr, q) = (
            app.addr,
            format!("xbid=1&userid={user}&Mapclassid=1&Mapid=1&Mobile=13900000006"),
        );
        tokio::spawn(async move { call(addr, false, "GetCallNumber", &q).await })
    };
    tokio::time::sleep(Duration::from_millis(500)).await;
    let v = call(
        app.addr,
        false,
        "ReleaseTelX",
        &format!("userId={user}&private_number={x}"),
    )
    .await;
    assert_eq!(v["ResultCode"], 2000, "{v}");
    let xb = slow.await.unwrap();
    assert_eq!(xb["ResultCode"], 2000, "the carrier made the binding: {xb}");
    assert_eq!(axs(&app, user).await, json!([]), "the user holds nothing");
    check_pool(&mut app.redis.clone(), &app.key("")).await;
}

/// Identical requests in flight get the first one's answer also for the
/// operations whose answer is not kept afterwards, and for failures.
#[tokio::test]
async fn duplicates_in_flight_get_the_first_answer_whatever_it_is() {
    let app = spawn_app().await;
    let (x, user) = fixture(&app).await;
    carrier_switch(&app, "unbind", "slow:2000").await;
    let q = format!("userid={user}&private_number={x}");
    let tasks: Vec<_> = (0..4)
        .map(|_| {
            let (addr, q) = (app.addr, q.clone());
            tokio::spawn(async move { call(addr, false, "UnBindAgentNumber", &q).await })
        })
        .collect();
    let mut answers = Vec::new();
    for t in tasks {
        let v = t.await.unwrap();
        answers.push((v["ResultCode"].clone(), v["DataBody"].clone()));
    }
    assert!(
        answers.iter().all(|a| a == &(json!(2000), json!([x]))),
        "{answers:?}"
    );
    // A failure too: four binds of a number another user holds.
    let _: () = app
        .redis
        .clone()
        .hset(app.key("PrivateNumber_user_phone"), 5, "13800000005")
        .await
        .unwrap();
    let v = call(
        app.addr,
        false,
        "BindAxNumber",
        &format!("userid={user}&private_number={x}"),
    )
    .await;
    assert_eq!(v["ResultCode"], 2000, "{v}");
    let q = format!("userid=5&private_number={x}");
    let tasks: Vec<_> = (0..4)
        .map(|_| {
            let (addr, q) = (app.addr, q.clone());
            tokio::spawn(
                async move { call(addr, false, "BindAxNumber", &q).await["ResultMsg"].clone() },
            )
        })
        .collect();
    for t in tasks {
        assert_eq!(t.await.unwrap(), "当前号码状态为[1]，无法绑定！");
    }
}

/// A stored GetCallNumber answer is not replayed once its binding expired,
/// even before the platform's MQ108 has unbound it.
#[tokio::test]
async fn an_expired_xb_binding_is_not_replayed() {
    let app = crate::helpers::spawn_app_with(|s| s.platform.xb_expiry_interval_ms = 600_000).await;
    let (_, user) = fixture(&app).await;
    let q = format!("xbid=1&userid={user}&Mapclassid=1&Mapid=1&Mobile=13900000006&expiration=3");
    assert_eq!(
        call(app.addr, false, "GetCallNumber", &q).await["ResultCode"],
        2000
    );
    assert_eq!(
        call(app.addr, false, "GetCallNumber", &q).await["ResultCode"],
        2000
    );
    let n: usize = app
        .redis
        .clone()
        .hlen(app.key("PrivateNumber_xb"))
        .await
        .unwrap();
    assert_eq!(n, 1, "a repeat within the expiry: replayed");
    tokio::time::sleep(Duration::from_millis(4100)).await;
    assert_eq!(
        call(app.addr, false, "GetCallNumber", &q).await["ResultCode"],
        2000
    );
    let n: usize = app
        .redis
        .clone()
        .hlen(app.key("PrivateNumber_xb"))
        .await
        .unwrap();
    assert_eq!(
        n, 2,
        "after it expired: a new binding, not the expired one's answer"
    );
}

/// Fault mode with a filter given empty (`userid=`, blank, JSON null) or a
/// JSON name given twice (the first wins) is refused: nothing changes,
/// never every number of the pool.
#[tokio::test]
async fn fault_mode_refuses_an_empty_filter() {
    let app = spawn_app().await;
    let (x, _) = fixture(&app).await;
    let mut r = app.redis.clone();
    let before = snapshot(&mut r, &app.key("")).await;
    let path = format!("{BASE_A}/TemporaryBindNumber");
    for q in [
        "userid=&private_number=",
        "userid=%20",
        "private_number=",
        "userid=",
    ] {
        let a = request(app.addr, "GET", &format!("{path}?{q}"), None, b"").await;
        let v = refused("TemporaryBindNumber", false, &a, q);
        assert!(
            v["ResultMsg"].as_str().unwrap().ends_with("不能为空"),
            "{q}: {v}"
        );
    }
    for body in [
        r#"{"userid": null}"#.to_owned(),
        r#"{"userid": "   "}"#.to_owned(),
        format!(r#"{{"private_number": "abc", "private_number": "{x}"}}"#),
    ] {
        let a = request(
            app.addr,
            "POST",
            &path,
            Some("application/json"),
            body.as_bytes(),
        )
        .await;
        refused("TemporaryBindNumber", false, &a, &body);
    }
    assert_eq!(snapshot(&mut r, &app.key("")).await, before);
}
