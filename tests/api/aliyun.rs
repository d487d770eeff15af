//! The aliyun carrier through its real protocol, against a local server of
//! the test's own that checks what Aliyun checks: the RPC signature
//! (recomputed here from the secret, independently of the worker's code),
//! the access key, the API version, the signature method, a fresh timestamp
//! and a nonce never seen before. Its answers (success, and Aliyun's error
//! codes) are scripted per test.

use std::{
    collections::{HashSet, VecDeque},
    sync::{Arc, Mutex},
};

use axn_worker::config::{CarrierKind, Secret};
use base64::Engine as _;
use hmac::{Hmac, Mac};
use redis::AsyncCommands;
use serde_json::{Value, json};
use sha1::Sha1;
use tokio::{
    io::{AsyncReadExt, AsyncWriteExt},
    net::TcpListener,
};

use crate::{helpers::spawn_app_with, lifecycle::spare_port};

const KEY_ID: &str = "test-key-id";
const SECRET: &str = "test-secret";

/// What the fake Dypls server saw and will answer.
#[derive(Default)]
struct Fake {
    /// (Action, parameters) of every request whose signature checked out.
    calls: Vec<(String, Vec<(String, String)>)>,
    rejected: usize,
    nonces: HashSet<String>,
    /// Error codes to answer the next calls with; OK when empty.
    script: VecDeque<&'static str>,
}

fn encode(s: &str) -> String {
    s.bytes()
        .map(|b| {
            if b.is_ascii_alphanumeric() || b"-_.~".contains(&b) {
                (b as char).to_string()
            } else {
                format!("%{b:02X}")
            }
        })
        .collect()
}

fn decode(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::new();
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%' && i + 2 < b.len() {
            out.push(u8::from_str_radix(&s[i + 1..i + 3], 16).unwrap());
            i += 3;
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    String::from_utf8(out).unwrap()
}

/// Checks a request's query as Aliyun would; its parameters when it passes.
fn verify(query: &str, fake: &mut Fake) -> Result<Vec<(String, String)>, &'static str> {
    let mut params: Vec<(String, String)> = query
        .split('&')
        .filter_map(|p| p.split_once('='))
        .map(|(k, v)| (decode(k), decode(v)))
        .collect();
    let get = |k: &str, p: &[(String, String)]| {
        p.iter()
            .find(|(n, _)| n == k)
            .map(|(_, v)| v.clone())
            .unwrap_or_default()
    };
    let given = get("Signature", &params);
    params.retain(|(k, _)| k != "Signature");
    params.sort();
    let canonical: Vec<String> = params
        .iter()
        .map(|(k, v)| format!("{}={}", encode(k), encode(v)))
        .collect();
    let to_sign = format!("GET&%2F&{}", encode(&canonical.join("&")));
    let mut mac = Hmac::<Sha1>::new_from_slice(format!("{SECRET}&").as_bytes()).unwrap();
    mac.update(to_sign.as_bytes());
    let expected = base64::engine::general_purpose::STANDARD.encode(mac.finalize().into_bytes());
    if given != expected {
        return Err("SignatureDoesNotMatch");
    }
    if get("AccessKeyId", &params) != KEY_ID {
        return Err("InvalidAccessKeyId.NotFound");
    }
    if get("SignatureMethod", &params) != "HMAC-SHA1"
        || get("SignatureVersion", &params) != "1.0"
        || get("Version", &params) != "2017-05-25"
        || get("Format", &params) != "JSON"
    {
        return Err("MissingParameter");
    }
    let ts = humantime::parse_rfc3339(&get("Timestamp", &params))
        .map_err(|_| "InvalidTimeStamp.Format")?;
    let age = std::time::SystemTime::now()
        .duration_since(ts)
        .unwrap_or_default();
    if age.as_secs() > 900 {
        return Err("InvalidTimeStamp.Expired");
    }
    if !fake.nonces.insert(get("SignatureNonce", &params)) {
        return Err("SignatureNonceUsed");
    }
    Ok(params)
}

/// Starts the fake Dypls server; its URL and state.
async fn fake_dypls() -> (String, Arc<Mutex<Fake>>) {
    let port = spare_port();
    let listener = TcpListener::bind(("127.0.0.1", port)).await.unwrap();
    let fake = Arc::new(Mutex::new(Fake::default()));
    let state = Arc::clone(&fake);
    tokio::spawn(async move {
        while let Ok((mut s, _)) = listener.accept().await {
            let state = Arc::clone(&state);
            tokio::spawn(async move {
                let mut buf = vec![0u8; 16 * 1024];
                let mut n = 0;
                while !buf[..n].windows(4).any(|w| w == b"\r\n\r\n") {
                    match s.read(&mut buf[n..]).await {
                        Ok(0) | Err(_) => return,
                        Ok(k) => n += k,
                    }
                }
                let head = String::from_utf8_lossy(&buf[..n]).into_owned();
                let target = head.split_whitespace().nth(1).unwrap_or("/").to_owned();
                let query = target.split_once('?').map(|(_, q)| q).unwrap_or("");
                let (status, body) = {
                    let mut f = state.lock().unwrap();
                    match verify(query, &mut f) {
                        Err(code) => {
                            f.rejected += 1;
                            (
                                400,
                                json!({"Code": code, "Message": "rejected by the fake"}),
                            )
                        }
                        Ok(params) => {
                            let action = params
                                .iter()
                                .find(|(k, _)| k == "Action")
                                .map(|(_, v)| v.clone())
                                .unwrap_or_default();
                            f.calls.push((action, params));
                            match f.script.pop_front() {
                                Some(code) => (
                                    200,
                                    json!({"Code": code, "Message": "scripted", "RequestId": "R"}),
                                ),
                                None => (
                                    200,
                                    json!({"Code": "OK", "Message": "OK", "RequestId": "R", "SecretBindDTO": {"SubsId": "1000000000000042", "SecretNo": "", "Extension": ""}}),
                                ),
                            }
                        }
                    }
                };
                let body = body.to_string();
                let answer = format!(
                    "HTTP/1.1 {status} X\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                    body.len()
                );
                let _ = s.write_all(answer.as_bytes()).await;
            });
        }
    });
    (format!("http://127.0.0.1:{port}/"), fake)
}

async fn call(addr: std::net::SocketAddr, path: &str) -> Value {
    let (_, body) = crate::helpers::http_get(addr, path).await;
    serde_json::from_str(&body).unwrap_or_else(|e| panic!("{e}: {body}"))
}

#[tokio::test]
async fn the_aliyun_carrier_signs_its_calls_and_keeps_aliyuns_error_meanings() {
    let (endpoint, fake) = fake_dypls().await;
    let app = spawn_app_with(|s| {
        s.platform.carriers.insert("3".into(), CarrierKind::Aliyun);
        s.platform.aliyun.endpoint = endpoint.clone();
        s.platform.aliyun.pool_key = "FC100000000000001".into();
        s.platform.aliyun.access_key_id = Secret::new(KEY_ID);
        s.platform.aliyun.access_key_secret = Secret::new(SECRET);
    })
    .await;
    let store = axn_worker::store::Store::new(&app.settings.redis).unwrap();
    store
        .import_number("17500000001", 3, 1, 1, 0)
        .await
        .unwrap();
    let _: () = app
        .redis
        .clone()
        .hset(app.key("PrivateNumber_user_phone"), 31, "13800000031")
        .await
        .unwrap();
    let a = axn_worker::platform::BASE_A;
    let b = axn_worker::platform::BASE_B;

    fake.lock().unwrap().script.extend([
        "isv.NO_AVAILABLE_NUMBER",
        "Throttling.User",
        "isv.BIND_CONFLICT",
    ]);
    for (i, meaning) in ["运营商无可用号码", "运营商限流", "号码绑定冲突"]
        .iter()
        .enumerate()
    {
        let r = call(
            app.addr,
            &format!("{b}/BindAxByplatform?userId=31&platformID=3&try={i}"),
        )
        .await;
        assert_eq!(r["ResultCode"], 5000);
        assert!(r["ResultMsg"].as_str().unwrap().contains(meaning), "{r}");
    }
    let r = call(
        app.addr,
        &format!("{b}/BindAxByplatform?userId=31&platformID=3"),
    )
    .await;
    assert_eq!(r["ResultMsg"], "小号分配成功:17500000001", "{r}");
    let q = call(app.addr, &format!("{a}/QueryAgentNumbers?userid=31")).await;
    assert_eq!(q["DataBody"][0]["ax_subid"], "1000000000000042");
    let r = call(
        app.addr,
        &format!("{a}/ChangeBindANumber?userId=31&private_number=17500000001&telA=13700000031"),
    )
    .await;
    assert_eq!(r["ResultCode"], 2000, "{r}");
    let r = call(
        app.addr,
        &format!("{a}/UnBindAgentNumber?userid=31&private_number=17500000001"),
    )
    .await;
    assert_eq!(r["ResultCode"], 2000, "{r}");

    let f = fake.lock().unwrap();
    assert_eq!(f.rejected, 0, "every request was signed as Aliyun checks");
    let actions: Vec<&str> = f.calls.iter().map(|(a, _)| a.as_str()).collect();
    assert_eq!(
        actions,
        [
            "BindAxn",
            "BindAxn",
            "BindAxn",
            "BindAxn",
            "UpdateSubscription",
            "UnbindSubscription"
        ]
    );
    let param = |i: usize, k: &str| {
        f.calls[i]
            .1
            .iter()
            .find(|(n, _)| n == k)
            .map(|(_, v)| v.clone())
            .unwrap_or_default()
    };
    assert_eq!(
        (param(3, "PhoneNoA"), param(3, "PhoneNoX")),
        ("13800000031".into(), "17500000001".into())
    );
    assert_eq!(param(3, "PoolKey"), "FC100000000000001");
    assert_eq!(
        (param(4, "OperateType"), param(4, "PhoneNoA")),
        ("updateNoA".into(), "13700000031".into())
    );
    assert_eq!(
        (param(5, "SubsId"), param(5, "SecretNo")),
        ("1000000000000042".into(), "17500000001".into())
    );
}

/// The fake rejects a wrong secret, so the check above is real; the worker
/// answers the carrier's refusal as a 5000, and nothing stays bound.
#[tokio::test]
async fn a_wrong_secret_is_refused_by_the_fake_and_answered_as_a_failure() {
    let (endpoint, fake) = fake_dypls().await;
    let app = spawn_app_with(|s| {
        s.platform.carriers.insert("3".into(), CarrierKind::Aliyun);
        s.platform.aliyun.endpoint = endpoint.clone();
        s.platform.aliyun.pool_key = "FC1".into();
        s.platform.aliyun.access_key_id = Secret::new(KEY_ID);
        s.platform.aliyun.access_key_secret = Secret::new("not-the-secret");
    })
    .await;
    let store = axn_worker::store::Store::new(&app.settings.redis).unwrap();
    store
        .import_number("17500000002", 3, 1, 1, 0)
        .await
        .unwrap();
    let _: () = app
        .redis
        .clone()
        .hset(app.key("PrivateNumber_user_phone"), 32, "13800000032")
        .await
        .unwrap();
    let r = call(
        app.addr,
        &format!(
            "{}/BindAxByplatform?userId=32&platformID=3",
            axn_worker::platform::BASE_B
        ),
    )
    .await;
    assert_eq!(r["ResultCode"], 5000);
    assert!(
        r["ResultMsg"]
            .as_str()
            .unwrap()
            .contains("SignatureDoesNotMatch"),
        "{r}"
    );
    assert_eq!(fake.lock().unwrap().rejected, 1);
    let free: usize = app
        .redis
        .clone()
        .scard(app.key("PrivateNumber_pool_free:3"))
        .await
        .unwrap();
    assert_eq!(free, 1);
}
