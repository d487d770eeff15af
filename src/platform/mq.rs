//! The platform's own messages to the worker's queues (the MQ108 unbind of an
//! expired XB binding; the simulated carrier's callbacks), published
//! confirmed on a connection of its own that is made on first use and made
//! again after a failure.

use std::sync::Arc;

use lapin::BasicProperties;
use tokio::sync::Mutex;

use crate::{
    amqp::{self, publisher::Publisher},
    config::Settings,
    health::Health,
};

pub struct MqPublisher {
    settings: Arc<Settings>,
    health: Arc<Health>,
    /// The live connection's publisher; `None` until first use or after a
    /// failure.
    current: Mutex<Option<(Arc<lapin::Connection>, Publisher)>>,
}

impl MqPublisher {
    pub fn new(settings: Arc<Settings>, health: Arc<Health>) -> Self {
        MqPublisher {
            settings,
            health,
            current: Mutex::new(None),
        }
    }

    /// Publishes `body` (JSON, persistent) to `queue` and waits for the
    /// broker's confirm. Concurrent calls share the connection and wait for
    /// their confirms together (the lock is held only to find or make the
    /// connection, never across a confirm).
    pub async fn publish(&self, queue: &str, body: &[u8]) -> anyhow::Result<()> {
        let (conn, publisher) = {
            let mut current = self.current.lock().await;
            if current.is_none() {
                let conn = Arc::new(
                    amqp::connect(&self.settings, &amqp::connection_name(Some("platform"))).await?,
                );
                let publisher = Publisher::on_connection(
                    Arc::clone(&conn),
                    Vec::new(),
                    Arc::clone(&self.health),
                )
                .await?;
                *current = Some((conn, publisher));
            }
            let Some((conn, publisher)) = current.as_ref() else {
                anyhow::bail!("no broker connection");
            };
            (Arc::clone(conn), publisher.clone())
        };
        let props = BasicProperties::default()
            .with_delivery_mode(2)
            .with_content_type("application/json".into())
            .with_app_id("axn-worker platform".into());
        if let Err(e) = publisher.publish("", queue, body, props).await {
            // Made again on the next call, unless another caller did so
            // already (then the current one is not this failed one).
            let mut current = self.current.lock().await;
            if current.as_ref().is_some_and(|(c, _)| Arc::ptr_eq(c, &conn)) {
                current.take();
                drop(current);
                let _ = tokio::time::timeout(
                    crate::broker::CLOSE_TIMEOUT,
                    conn.close(200, "platform publisher reconnecting".into()),
                )
                .await;
            }
            anyhow::bail!("not confirmed: {e}");
        }
        Ok(())
    }

    /// Closes the connection, if any.
    pub async fn close(&self) {
        if let Some((conn, _)) = self.current.lock().await.take() {
            let _ = tokio::time::timeout(
                crate::broker::CLOSE_TIMEOUT,
                conn.close(200, "axn-worker shutting down".into()),
            )
            .await;
        }
    }
}
