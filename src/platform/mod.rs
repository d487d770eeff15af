//! The middle platform's binding API (docs/platform-api.md): the seed's
//! paths, parameters, envelope and messages, over the same Redis state the
//! worker keeps. Served on the worker's HTTP listener when `[platform]
//! enabled`; `[platform] role` runs a process as API only or consumers only.
//!
//! Base path A (`.../PrivateNumberApiController/<Operation>`) and B
//! (`.../PrivateNumber_ax/<Operation>`) answer GET with query parameters and
//! POST with the same names as a form or JSON body; any other method is 405
//! and runs nothing. Every answer is HTTP 200 with the seed's envelope, but
//! for credentials (401), an unknown operation (404) and a method (405).
//! Each operation runs in a task of its own, so a client that hangs up (or
//! the request deadline) does not stop it halfway; identical requests run
//! once ([`once`]).

pub mod api;
pub mod ax;
pub mod carrier;
pub mod mq;
pub mod once;
pub mod openapi;
pub mod states;
pub mod xb;

use std::{sync::Arc, time::Instant};

use axum::{
    Json, Router,
    body::Bytes,
    extract::{DefaultBodyLimit, Path, RawQuery, State},
    http::{HeaderMap, Method, StatusCode, header},
    response::{IntoResponse, Response},
    routing::any,
};
use base64::Engine as _;
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use crate::{config::Settings, health::Health, metrics::Metrics, store::Store};
use api::{Answer, Params};
use carrier::Carriers;
use states::FaultOp;

/// Base path A of the seed.
pub const BASE_A: &str = "/mangoapi/s4011_NumberProtection_hub.Data/PrivateNumberApiController";
/// Base path B of the seed.
pub const BASE_B: &str = "/mangoapi/b3520_User_PrivacyNumber.Data/PrivateNumber_ax";

/// Operations of base path A.
pub const OPERATIONS_A: [&str; 12] = [
    "BindAxNumber",
    "BindAxNumberByUserPhone",
    "UnBindAgentNumber",
    "ReleaseTelX",
    "QueryAgentNumbers",
    "UpdateNumberState",
    "ChangeBindANumber",
    "GetCallNumber",
    "TemporaryBindNumber",
    "TemporaryUnBindNumber",
    "TemporaryUnBindNumberToAli",
    "QueryUserAxs",
];
/// Operations of base path B.
pub const OPERATIONS_B: [&str; 2] = ["BindAxByplatform", "UserBindLinShiNumber"];

/// The API's parts.
pub struct Platform {
    store: Store,
    carriers: Carriers,
    settings: Arc<Settings>,
    metrics: Arc<Metrics>,
    /// The MQ108 unbinds of expired XB bindings, and simulated callbacks.
    mq: Arc<mq::MqPublisher>,
}

impl Platform {
    pub fn new(
        settings: Arc<Settings>,
        store: Store,
        metrics: Arc<Metrics>,
        health: Arc<Health>,
    ) -> anyhow::Result<Self> {
        anyhow::ensure!(
            !settings.redis.url.is_cluster(),
            "the platform API needs one Redis, not a cluster (docs/platform-api.md): set [platform] enabled = false on a cluster"
        );
        Ok(Platform {
            carriers: Carriers::new(&settings.platform, &store)?,
            mq: Arc::new(mq::MqPublisher::new(Arc::clone(&settings), health)),
            store,
            settings,
            metrics,
        })
    }

    /// The broker connection of the platform's own messages, closed.
    pub async fn close(&self) {
        self.mq.close().await;
    }

    /// Runs `operation` of base path `b` (false: A) with `params`.
    pub async fn call(&self, b: bool, operation: &str, params: &Params) -> Option<Answer> {
        let result = match (b, operation) {
            (false, "BindAxNumber") => self.bind_ax_number(params, false).await,
            (false, "BindAxNumberByUserPhone") => self.bind_ax_number(params, true).await,
            (false, "UnBindAgentNumber") => self.unbind_ax(params, false).await,
            (false, "ReleaseTelX") => self.unbind_ax(params, true).await,
            (false, "QueryAgentNumbers") => self.query_agent_numbers(params).await,
            (false, "UpdateNumberState") => self.update_number_state(params).await,
            (false, "ChangeBindANumber") => self.change_a(params).await,
            (false, "GetCallNumber") => self.get_call_number(params).await,
            (false, "TemporaryBindNumber") => self.fault_mode(params, FaultOp::Enter).await,
            (false, "TemporaryUnBindNumber") => self.fault_mode(params, FaultOp::Leave).await,
            (false, "TemporaryUnBindNumberToAli") => {
                self.fault_mode(params, FaultOp::UnbindAtCarrier).await
            }
            (false, "QueryUserAxs") => self.query_user_axs(params).await,
            (true, "BindAxByplatform") => self.bind_ax_by_platform(params).await,
            (true, "UserBindLinShiNumber") => self.bind_temporary(params).await,
            _ => return None,
        };
        Some(result.unwrap_or_else(|failed| failed))
    }
}

/// The routes of both base paths.
pub fn router(platform: Arc<Platform>, max_body_bytes: usize) -> Router {
    Router::new()
        .route(&format!("{BASE_A}/{{operation}}"), any(operation_a))
        .route(&format!("{BASE_B}/{{operation}}"), any(operation_b))
        .route("/openapi.json", axum::routing::get(openapi_json))
        .layer(DefaultBodyLimit::max(max_body_bytes))
        .with_state(platform)
}

/// `GET /openapi.json`: the API's OpenAPI 3.1 document.
async fn openapi_json(State(platform): State<Arc<Platform>>) -> Json<serde_json::Value> {
    Json(openapi::document(&platform.settings))
}

async fn operation_a(
    state: State<Arc<Platform>>,
    method: Method,
    path: Path<String>,
    query: RawQuery,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    handle(state, false, method, path, query, headers, body).await
}

async fn operation_b(
    state: State<Arc<Platform>>,
    method: Method,
    path: Path<String>,
    query: RawQuery,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    handle(state, true, method, path, query, headers, body).await
}

/// The methods that run an operation (the seed's GET and POST).
pub const ALLOWED_METHODS: &str = "GET, POST";

async fn handle(
    State(platform): State<Arc<Platform>>,
    b: bool,
    method: Method,
    Path(operation): Path<String>,
    RawQuery(query): RawQuery,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let known: &[&str] = if b { &OPERATIONS_B } else { &OPERATIONS_A };
    let Some(operation) = known
        .iter()
        .find(|o| o.eq_ignore_ascii_case(&operation))
        .copied()
    else {
        return (StatusCode::NOT_FOUND, "no such operation\n").into_response();
    };
    // Routed for every method so that the answer is ours: only GET and POST
    // run an operation (a CORS preflight, HEAD or DELETE changes nothing).
    if method != Method::GET && method != Method::POST {
        return (
            StatusCode::METHOD_NOT_ALLOWED,
            [(header::ALLOW, ALLOWED_METHODS)],
            "method not allowed: the operations answer GET and POST\n",
        )
            .into_response();
    }
    if !authorized(&platform.settings, &headers) {
        let answer = Answer::fail("未授权: missing or wrong credentials");
        // One challenge per scheme configured (RFC 9110 allows several).
        let mut response = (StatusCode::UNAUTHORIZED, json_answer(&answer, b)).into_response();
        let p = &platform.settings.platform;
        for (configured, challenge) in [
            (
                !p.password.expose().is_empty(),
                r#"Basic realm="axn-worker platform""#,
            ),
            (
                !p.bearer_token.expose().is_empty(),
                r#"Bearer realm="axn-worker platform""#,
            ),
        ] {
            if configured {
                response.headers_mut().append(
                    header::WWW_AUTHENTICATE,
                    header::HeaderValue::from_static(challenge),
                );
            }
        }
        return response;
    }
    let started = Instant::now();
    let params = match params_of(query.as_deref(), &headers, &body) {
        Ok(p) => p,
        Err(answer) => {
            // GetCallNumber's failures carry the Mobile given, here from
            // the query (the body could not be read).
            let answer = match (operation, answer) {
                ("GetCallNumber", Answer::Fail { message, .. }) => Answer::Fail {
                    message,
                    body: Params::from_pairs(form_urlencoded(query.as_deref().unwrap_or("")))
                        .get("Mobile")
                        .map(|m| vec![serde_json::json!(m)])
                        .unwrap_or_default(),
                },
                (_, other) => other,
            };
            return json_answer(&answer, b).into_response();
        }
    };
    // A task of its own: a client that hangs up, or the request deadline,
    // does not stop an operation between the carrier and the commit.
    let running = Arc::clone(&platform);
    let answer = tokio::spawn(async move { running.call(b, operation, &params).await })
        .await
        .unwrap_or_else(|e| {
            tracing::error!(operation, error = %e, "platform API: the operation's task failed");
            Some(Answer::fail("内部错误[请稍后重试]"))
        })
        .unwrap_or_else(|| Answer::fail("no such operation"));
    let outcome = if answer.is_ok() { "success" } else { "failure" };
    platform
        .metrics
        .platform_request(operation, outcome, started.elapsed().as_secs_f64());
    match &answer {
        Answer::Ok { .. } => tracing::info!(operation, "platform API answered"),
        Answer::Fail { message, .. } => {
            tracing::info!(operation, message = %message, "platform API refused")
        }
    }
    json_answer(&answer, b).into_response()
}

/// The envelope as `application/json; charset=utf-8`, HTTP 200.
fn json_answer(answer: &Answer, b: bool) -> impl IntoResponse {
    let v = if b {
        answer.short_envelope()
    } else {
        answer.envelope()
    };
    (
        [(header::CONTENT_TYPE, "application/json; charset=utf-8")],
        Json(v).into_response().into_body(),
    )
}

/// Query parameters, then a form or JSON body (names matched
/// case-insensitively; the query wins).
fn params_of(query: Option<&str>, headers: &HeaderMap, body: &[u8]) -> Result<Params, Answer> {
    let decode = form_urlencoded;
    let mut params = Params::from_pairs(decode(query.unwrap_or("")));
    if body.iter().all(u8::is_ascii_whitespace) {
        return Ok(params);
    }
    let content_type = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_ascii_lowercase();
    let media = content_type.split(';').next().unwrap_or("").trim();
    let json = match media {
        "application/json" => true,
        "application/x-www-form-urlencoded" => false,
        // No type given: a JSON object or a form, by its first byte.
        "" => body.trim_ascii_start().starts_with(b"{"),
        _ => {
            return Err(Answer::fail(format!(
                "请求体类型[{}]不支持,请用application/x-www-form-urlencoded或application/json",
                media.chars().take(64).collect::<String>()
            )));
        }
    };
    if json {
        let members: api::Members =
            serde_json::from_slice(body).map_err(|_| Answer::fail("请求体不是JSON对象"))?;
        params.add_json(members.0)?;
    } else {
        let text = std::str::from_utf8(body).map_err(|_| Answer::fail("请求体不是UTF-8"))?;
        params.add_pairs(decode(text));
    }
    Ok(params)
}

/// `a=1&b=2` (percent-encoded, `+` for space) as pairs.
fn form_urlencoded(s: &str) -> Vec<(String, String)> {
    fn unescape(s: &str) -> String {
        let hex = |b: u8| (b as char).to_digit(16).map(|d| d as u8);
        let bytes = s.as_bytes();
        let mut out = Vec::with_capacity(bytes.len());
        let mut i = 0;
        while i < bytes.len() {
            match bytes[i] {
                b'+' => out.push(b' '),
                b'%' if i + 2 < bytes.len() => match (hex(bytes[i + 1]), hex(bytes[i + 2])) {
                    (Some(h), Some(l)) => {
                        out.push(h * 16 + l);
                        i += 2;
                    }
                    _ => out.push(b'%'),
                },
                b => out.push(b),
            }
            i += 1;
        }
        String::from_utf8_lossy(&out).into_owned()
    }
    s.split('&')
        .filter(|p| !p.is_empty())
        .map(|p| match p.split_once('=') {
            Some((k, v)) => (unescape(k), unescape(v)),
            None => (unescape(p), String::new()),
        })
        .collect()
}

/// True when no credentials are configured, or the request carries one of
/// them (Basic user + password, or the bearer token), compared in constant
/// time.
fn authorized(settings: &Settings, headers: &HeaderMap) -> bool {
    let p = &settings.platform;
    let (password, token) = (p.password.expose(), p.bearer_token.expose());
    if password.is_empty() && token.is_empty() {
        return true;
    }
    let Some(given) = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
    else {
        return false;
    };
    let same =
        |a: &[u8], b: &[u8]| -> bool { bool::from(Sha256::digest(a).ct_eq(&Sha256::digest(b))) };
    let (scheme, rest) = given.split_once(' ').unwrap_or((given, ""));
    if scheme.eq_ignore_ascii_case("bearer") && !token.is_empty() {
        return same(rest.trim().as_bytes(), token.as_bytes());
    }
    if scheme.eq_ignore_ascii_case("basic") && !password.is_empty() {
        let Ok(decoded) = base64::engine::general_purpose::STANDARD.decode(rest.trim()) else {
            return false;
        };
        let expected = format!("{}:{}", p.username, password);
        return same(&decoded, expected.as_bytes());
    }
    false
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn forms_decode_percent_and_plus() {
        assert_eq!(
            form_urlencoded("userid=51218&Mobile=%2B86+139&x"),
            vec![
                ("userid".into(), "51218".into()),
                ("Mobile".into(), "+86 139".into()),
                ("x".into(), String::new())
            ]
        );
        assert_eq!(
            form_urlencoded("a=%zz%4"),
            vec![("a".into(), "%zz%4".into())]
        );
    }
}
