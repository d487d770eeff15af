//! Builds the application from its settings and runs it until told to stop.
//! The caller supplies the HTTP listener and the shutdown token, so tests run
//! the real application on port 0, in parallel, with their own names.

use std::{sync::Arc, time::Duration};

use anyhow::Context as _;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use crate::{
    broker::Broker,
    config::{Role, Settings},
    health::Health,
    http::{self, AppState},
    metrics::Metrics,
    platform::Platform,
    store::Store,
};

/// What a shutdown may take beyond the grace period (closing the broker
/// connection, the HTTP server) before the worker stops regardless.
pub const STOP_MARGIN: Duration = Duration::from_secs(3);

pub struct Application {
    settings: Arc<Settings>,
    /// Bound before `run_until_stopped`, so a caller (a test on port 0) can
    /// learn the address first.
    listener: TcpListener,
    store: Store,
    /// Shared by the broker supervisor, the Redis probe, `/readyz` and the
    /// metrics.
    health: Arc<Health>,
    /// Label appended to the AMQP connection name (see `with_instance`).
    instance: Option<String>,
    metrics: Arc<Metrics>,
}

impl Application {
    /// Validates the settings and prepares the parts; connects to nothing yet.
    pub fn build(settings: Settings, listener: TcpListener) -> anyhow::Result<Self> {
        settings.validate()?;
        let store = Store::new(&settings.redis).context("Failed to set up the Redis client")?;
        let health = Arc::new(Health::default());
        let metrics = Arc::new(Metrics::new(Arc::clone(&health)));
        Ok(Application {
            settings: Arc::new(settings),
            listener,
            store,
            metrics,
            health,
            instance: None,
        })
    }

    /// Binds the listener from `[http] listen`, then [`Application::build`].
    pub async fn bind(settings: Settings) -> anyhow::Result<Self> {
        settings.validate()?;
        if let Some(e) = settings.exposure_error() {
            anyhow::bail!("refusing to start: {e}");
        }
        for w in settings.url_warnings() {
            tracing::warn!("{w}");
        }
        let listener = TcpListener::bind(&settings.http.listen)
            .await
            .with_context(|| format!("Failed to listen on {}", settings.http.listen))?;
        Self::build(settings, listener)
    }

    /// Labels this instance's broker connection (`axn-worker@host:pid/label`),
    /// for processes that run several workers, such as the tests.
    pub fn with_instance(mut self, label: impl Into<String>) -> Self {
        self.instance = Some(label.into());
        self
    }

    pub fn local_addr(&self) -> std::io::Result<std::net::SocketAddr> {
        self.listener.local_addr()
    }

    pub fn health(&self) -> Arc<Health> {
        Arc::clone(&self.health)
    }

    pub fn metrics(&self) -> Arc<Metrics> {
        Arc::clone(&self.metrics)
    }

    /// Runs the consumers, the Redis probe and the HTTP server until
    /// `shutdown`; then drains (see `Broker::run`) and returns. An error means
    /// the worker cannot run as configured.
    pub async fn run_until_stopped(self, shutdown: CancellationToken) -> anyhow::Result<()> {
        let Application {
            settings,
            listener,
            store,
            health,
            instance,
            metrics,
        } = self;
        tracing::info!(
            http = %listener.local_addr()?,
            key_prefix = %settings.redis.key_prefix,
            "axn-worker starting"
        );
        let internal = shutdown.child_token();
        let role = settings.platform.role;
        let on_cluster = settings.redis.url.is_cluster();
        if settings.platform.enabled && on_cluster {
            tracing::error!(
                "the platform API needs one Redis, not a cluster (docs/platform-api.md): not serving it"
            );
        }
        let platform = if settings.platform.enabled && !on_cluster && role != Role::Consumers {
            let p = Platform::new(
                Arc::clone(&settings),
                store.clone(),
                Arc::clone(&metrics),
                Arc::clone(&health),
            )
            .context("The platform API cannot run with these settings")?;
            Some(Arc::new(p))
        } else {
            None
        };
        let expiry = platform
            .clone()
            .map(|p| tokio::spawn(p.expire_xb_bindings(internal.clone())));
        if role == Role::Api {
            health.expect_no_consumers();
        }
        let http = tokio::spawn(http::serve(
            listener,
            AppState {
                health: Arc::clone(&health),
                store: store.clone(),
                settings: Arc::clone(&settings),
                metrics: Arc::clone(&metrics),
                platform: platform.clone(),
            },
            internal.clone(),
        ));
        // The client certificates: Redis's files looked at for a rotation,
        // both certificates' expiry logged and exported.
        let certificates = {
            let (settings, metrics, stop, store) = (
                Arc::clone(&settings),
                Arc::clone(&metrics),
                internal.clone(),
                store.clone(),
            );
            tokio::spawn(async move {
                let mut seen = [None, None];
                client_certificates(&settings, &metrics, &mut seen);
                loop {
                    tokio::select! {
                        _ = stop.cancelled() => return,
                        _ = tokio::time::sleep(crate::store::TLS_RECHECK) => {
                            store.reload_tls();
                            client_certificates(&settings, &metrics, &mut seen);
                        }
                    }
                }
            })
        };
        let probe = tokio::spawn(probe_redis(
            store.clone(),
            Arc::clone(&health),
            internal.clone(),
        ));

        let broker = Broker::new(
            Arc::clone(&settings),
            store,
            Arc::clone(&health),
            metrics,
            instance.as_deref(),
        );
        let stop = shutdown.clone();
        let broker = async move {
            if role == Role::Api {
                stop.cancelled().await;
                return Ok(());
            }
            broker.run(stop).await
        };
        // Every step of the shutdown has its own deadline; this one bounds
        // them all, whatever the broker does.
        let limit = Duration::from_secs(settings.shutdown.grace_period_secs) + STOP_MARGIN;
        let result = tokio::select! {
            r = broker => r,
            _ = async { shutdown.cancelled().await; tokio::time::sleep(limit).await } => {
                tracing::error!(
                    limit_secs = limit.as_secs(),
                    "shutdown did not finish in time (the broker does not answer?): stopping anyway; unfinished messages return to their queues when the connection drops"
                );
                Ok(())
            }
        };
        health.set_stopping();
        internal.cancel();
        let _ = probe.await;
        let _ = certificates.await;
        if let Some(expiry) = expiry {
            let _ = expiry.await;
        }
        if let Some(p) = &platform {
            p.close().await;
        }
        let http_abort = http.abort_handle();
        match tokio::time::timeout(STOP_MARGIN, http).await {
            Ok(Ok(Ok(()))) => {}
            Ok(Ok(Err(e))) => tracing::warn!(error = %e, "HTTP server failed"),
            Ok(Err(e)) => tracing::warn!(error = %e, "HTTP server task failed"),
            Err(_) => {
                http_abort.abort();
                tracing::warn!("HTTP connections still open at shutdown: dropped");
            }
        }
        result.context("The worker cannot run with this broker topology")?;
        tracing::info!("axn-worker stopped");
        Ok(())
    }
}

/// Pings Redis every second; readiness follows the answer.
async fn probe_redis(store: Store, health: Arc<Health>, stop: CancellationToken) {
    let mut was_up = None;
    loop {
        let up = matches!(
            tokio::time::timeout(Duration::from_secs(2), store.ping()).await,
            Ok(Ok(()))
        );
        health.set_redis(up);
        if was_up != Some(up) {
            if up {
                tracing::info!("Redis is reachable");
            } else {
                tracing::warn!("Redis does not answer");
            }
            was_up = Some(up);
        }
        tokio::select! {
            _ = stop.cancelled() => return,
            _ = tokio::time::sleep(Duration::from_secs(1)) => {}
        }
    }
}

/// Runs the worker from `[http] listen` until SIGTERM or Ctrl-C (`run`).
pub async fn run_until_signal(settings: Settings) -> anyhow::Result<()> {
    let app = Application::bind(settings).await?;
    let shutdown = CancellationToken::new();
    tokio::spawn(stop_on_signal(shutdown.clone()));
    app.run_until_stopped(shutdown).await
}

/// Cancels `shutdown` on SIGTERM or Ctrl-C.
async fn stop_on_signal(shutdown: CancellationToken) {
    let ctrl_c = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        match signal(SignalKind::terminate()) {
            Ok(mut term) => {
                tokio::select! {
                    _ = ctrl_c => {},
                    _ = term.recv() => {},
                }
            }
            Err(_) => {
                let _ = ctrl_c.await;
            }
        }
    }
    #[cfg(not(unix))]
    let _ = ctrl_c.await;
    // Cancel first: nothing (a log line included) may stand before it.
    shutdown.cancel();
    tracing::info!("stop requested: finishing messages in flight");
}

/// The client certificates the broker and Redis connections present (the
/// files, which each reads again for its next connection): until when each
/// is valid, in the log when it changed since `seen` and as
/// `axn_tls_certificate_expiry_timestamp_seconds`.
fn client_certificates(settings: &Settings, metrics: &Metrics, seen: &mut [Option<i64>; 2]) {
    for (i, (which, files)) in [
        ("amqp_client", &settings.amqp.tls),
        ("redis_client", &settings.redis.tls),
    ]
    .into_iter()
    .enumerate()
    {
        if let Ok(pem) = std::fs::read(&files.cert_file)
            && let Some(end) = crate::tls::not_after(&pem)
            && seen[i] != Some(end)
        {
            seen[i] = Some(end);
            crate::tls::report_expiry(which, &files.cert_file, end);
            metrics.set_certificate_expiry(which, end);
        }
    }
}
