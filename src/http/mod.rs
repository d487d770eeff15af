//! The worker's HTTP server: `GET /healthz` (the process is alive),
//! `GET /readyz` (200 only while every input queue has a consumer and Redis
//! answers, and not while shutting down; the body says which part is missing),
//! `GET /metrics` (Prometheus text, see `crate::metrics`) and
//! `POST /number-mapping` (see [`mapping`]).

pub mod mapping;

use std::sync::Arc;

use axum::{
    Json, Router,
    extract::{DefaultBodyLimit, State},
    http::StatusCode,
    response::IntoResponse,
    routing::{get, post},
};
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use crate::{config::Settings, health::Health, metrics::Metrics, store::Store};

/// What the handlers share.
#[derive(Clone)]
pub struct AppState {
    pub health: Arc<Health>,
    pub store: Store,
    pub settings: Arc<Settings>,
    pub metrics: Arc<Metrics>,
}

pub fn router(state: AppState) -> Router {
    let body_limit = state.settings.mapping.max_body_bytes;
    Router::new()
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics))
        .route(
            "/number-mapping",
            post(mapping::number_mapping).layer(DefaultBodyLimit::max(body_limit)),
        )
        .with_state(state)
}

/// Serves until `shutdown` is cancelled.
pub async fn serve(
    listener: TcpListener,
    state: AppState,
    shutdown: CancellationToken,
) -> std::io::Result<()> {
    axum::serve(listener, router(state))
        .with_graceful_shutdown(async move { shutdown.cancelled().await })
        .await
}

async fn healthz() -> &'static str {
    "ok\n"
}

async fn metrics(State(state): State<AppState>) -> impl IntoResponse {
    (
        [(
            axum::http::header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        state.metrics.render(),
    )
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
