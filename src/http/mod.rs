//! The worker's HTTP server: `GET /healthz` (the process is alive),
//! `GET /readyz` (200 only while every input queue has a consumer and Redis
//! answers, and not while shutting down; the body says which part is missing),
//! `GET /readyz/api` (the HTTP APIs' own readiness: Redis, not stopping),
//! `GET /metrics` (Prometheus text, see `crate::metrics`) and
//! `POST /number-mapping` (see [`mapping`]).

pub mod mapping;
pub mod tls;

use std::sync::Arc;

use std::time::Duration;

use axum::{
    Json, Router,
    extract::{DefaultBodyLimit, Request, State},
    http::StatusCode,
    middleware::{self, Next},
    response::{IntoResponse, Response},
    routing::{get, post},
};
use hyper_util::{
    rt::{TokioIo, TokioTimer},
    service::TowerToHyperService,
};
use tokio::{net::TcpListener, task::JoinSet};
use tokio_util::sync::CancellationToken;

use crate::{config::Settings, health::Health, metrics::Metrics, store::Store};

/// What the handlers share.
#[derive(Clone)]
pub struct AppState {
    pub health: Arc<Health>,
    pub store: Store,
    pub settings: Arc<Settings>,
    pub metrics: Arc<Metrics>,
    /// The binding API, when this process serves it.
    pub platform: Option<Arc<crate::platform::Platform>>,
}

pub fn router(state: AppState) -> Router {
    let body_limit = state.settings.mapping.max_body_bytes;
    let request_timeout = Duration::from_secs(state.settings.http.request_timeout_secs);
    let platform = state
        .platform
        .clone()
        .map(|p| crate::platform::router(p, state.settings.platform.max_body_bytes));
    let routes = Router::new()
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .route("/readyz/api", get(readyz_api))
        .route("/metrics", get(metrics))
        .route(
            "/number-mapping",
            post(mapping::number_mapping).layer(DefaultBodyLimit::max(body_limit)),
        )
        .with_state(state);
    platform
        .map_or(routes.clone(), |p| routes.merge(p))
        .layer(middleware::from_fn_with_state(request_timeout, deadline))
}

/// Answers 408 to a request (its body included) not handled within the
/// limit: a client that dribbles its body does not hold a socket forever.
async fn deadline(State(limit): State<Duration>, request: Request, next: Next) -> Response {
    match tokio::time::timeout(limit, next.run(request)).await {
        Ok(response) => response,
        Err(_) => (
            StatusCode::REQUEST_TIMEOUT,
            "the request was not completed in time\n",
        )
            .into_response(),
    }
}

/// Serves until `shutdown` is cancelled, then lets requests in progress end
/// (the caller bounds that wait). HTTP/1.1 with a header-read timeout: hyper
/// starts it whenever a connection waits for a request head, so it also
/// closes connections idle between requests and clients that send headers
/// byte by byte.
pub async fn serve(
    listener: TcpListener,
    state: AppState,
    shutdown: CancellationToken,
) -> std::io::Result<()> {
    let header_timeout = Duration::from_secs(state.settings.http.header_read_timeout_secs);
    // HTTPS when [http.tls] names a certificate: reloaded when its files
    // change, for the connections opened after.
    let acceptor = if state.settings.http.tls.enabled() {
        let reloading =
            tls::Reloading::new(&state.settings.http.tls).map_err(std::io::Error::other)?;
        reloading.attach(Arc::clone(&state.metrics));
        tokio::spawn(Arc::clone(&reloading).watch(shutdown.clone()));
        Some(reloading.acceptor())
    } else {
        None
    };
    let app = router(state);
    let mut connections = JoinSet::new();
    loop {
        let (stream, _) = tokio::select! {
            _ = shutdown.cancelled() => break,
            accepted = listener.accept() => match accepted {
                Ok(c) => c,
                Err(e) => {
                    // Out of file descriptors, say: wait instead of spinning.
                    tracing::warn!(error = %e, "HTTP accept failed");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            },
        };
        let (app, stop) = (app.clone(), shutdown.clone());
        match &acceptor {
            None => {
                connections.spawn(serve_connection(stream, app, header_timeout, stop));
            }
            Some(acceptor) => {
                let acceptor = acceptor.clone();
                connections.spawn(async move {
                    // The handshake is bounded like a request's head: a
                    // client that stalls in it holds no socket for long.
                    if let Ok(Ok(tls)) =
                        tokio::time::timeout(header_timeout, acceptor.accept(stream)).await
                    {
                        serve_connection(tls, app, header_timeout, stop).await;
                    }
                });
            }
        }
        while connections.try_join_next().is_some() {}
    }
    while connections.join_next().await.is_some() {}
    Ok(())
}

/// One connection (plain or TLS) until it ends, or until `stop`, when the
/// request in progress finishes first.
async fn serve_connection<I>(io: I, app: Router, header_timeout: Duration, stop: CancellationToken)
where
    I: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    let conn = hyper::server::conn::http1::Builder::new()
        .timer(TokioTimer::new())
        .header_read_timeout(header_timeout)
        .serve_connection(TokioIo::new(io), TowerToHyperService::new(app));
    let mut conn = std::pin::pin!(conn);
    tokio::select! {
        _ = conn.as_mut() => {}
        _ = stop.cancelled() => {
            conn.as_mut().graceful_shutdown();
            let _ = conn.await;
        }
    }
}

async fn healthz() -> &'static str {
    "ok\n"
}

/// OpenMetrics text to a client that asks for it (`Accept:
/// application/openmetrics-text`, as Prometheus does), else the Prometheus
/// text format 0.0.4 that every other parser reads (promtool, older
/// scrapers): the same samples, with a counter's HELP and TYPE named as its
/// samples (`_total`) and no `# EOF`.
async fn metrics(
    State(state): State<AppState>,
    headers: axum::http::HeaderMap,
) -> impl IntoResponse {
    let openmetrics = headers
        .get_all(axum::http::header::ACCEPT)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .any(|v| v.contains("application/openmetrics-text"));
    let text = state.metrics.render();
    if openmetrics {
        (
            [(
                axum::http::header::CONTENT_TYPE,
                "application/openmetrics-text; version=1.0.0; charset=utf-8",
            )],
            text,
        )
    } else {
        (
            [(
                axum::http::header::CONTENT_TYPE,
                "text/plain; version=0.0.4; charset=utf-8",
            )],
            to_prometheus_text(&text),
        )
    }
}

/// OpenMetrics text as the Prometheus text format 0.0.4: a counter family
/// `x` (samples `x_total`) gets `# HELP x_total` and `# TYPE x_total counter`;
/// `# UNIT` and `# EOF` lines are dropped; samples are unchanged.
pub fn to_prometheus_text(openmetrics: &str) -> String {
    let counters: std::collections::HashSet<&str> = openmetrics
        .lines()
        .filter_map(|l| l.strip_prefix("# TYPE "))
        .filter_map(|l| l.strip_suffix(" counter"))
        .collect();
    let mut out = String::with_capacity(openmetrics.len());
    for line in openmetrics.lines() {
        if line == "# EOF" || line.starts_with("# UNIT ") {
            continue;
        }
        let renamed = ["# HELP ", "# TYPE "].iter().find_map(|p| {
            let rest = line.strip_prefix(p)?;
            let (name, tail) = rest.split_once(' ')?;
            counters
                .contains(name)
                .then(|| format!("{p}{name}_total {tail}"))
        });
        out.push_str(renamed.as_deref().unwrap_or(line));
        out.push('\n');
    }
    out
}

/// `GET /readyz/api`: whether the HTTP APIs (binding, mapping) can answer:
/// Redis answers and the process is not stopping, whatever the broker does.
/// 404 in a process that serves no binding API (`role = "consumers"`).
async fn readyz_api(State(state): State<AppState>) -> Response {
    if state.platform.is_none() {
        return (
            StatusCode::NOT_FOUND,
            "this process serves no binding API ([platform] enabled / role): use /readyz\n",
        )
            .into_response();
    }
    let r = state.health.readiness();
    let ready = r.redis && !r.stopping;
    let status = if ready {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    (
        status,
        Json(serde_json::json!({"ready": ready, "redis": r.redis, "stopping": r.stopping})),
    )
        .into_response()
}

async fn readyz(State(state): State<AppState>) -> impl IntoResponse {
    let r = state.health.readiness();
    let status = if r.ready {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    (status, Json(r))
}
