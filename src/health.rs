//! What `/readyz` reports: whether each input queue has a live consumer,
//! whether Redis answers, and whether the process is shutting down. Written
//! by the broker supervisor and the Redis probe, read by the HTTP server.

use std::{
    collections::BTreeSet,
    sync::{
        Mutex,
        atomic::{AtomicBool, AtomicU64, Ordering},
    },
};

use serde::Serialize;

use crate::config::QueueKind;

#[derive(Default)]
pub struct Health {
    consuming: [AtomicBool; 4],
    redis: AtomicBool,
    stopping: AtomicBool,
    broker_reconnects: AtomicU64,
    /// Publish targets (`queue "..."` / `exchange "..."`) found missing and
    /// not published to successfully since.
    missing_targets: Mutex<BTreeSet<String>>,
    /// True while `missing_targets` is not empty: a successful publish
    /// checks this instead of taking the lock.
    any_missing: AtomicBool,
    /// Set in an API-only process: no consumer is expected.
    no_consumers: AtomicBool,
    /// Why the last broker session ended or could not start (no
    /// credentials in it); cleared once a session consumes again.
    broker_error: Mutex<Option<String>>,
}

/// The readiness report, also the body of `/readyz`.
#[derive(Debug, Serialize, PartialEq, Eq)]
pub struct Readiness {
    pub ready: bool,
    pub broker: bool,
    pub redis: bool,
    pub stopping: bool,
    pub consuming: Vec<&'static str>,
    /// Publish targets that do not exist (the worker cannot forward or
    /// publish there); empty when all is well.
    pub missing_targets: Vec<String>,
    /// Why the broker is not connected, while it is not.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub broker_error: Option<String>,
}

fn index(kind: QueueKind) -> usize {
    QueueKind::ALL.iter().position(|k| *k == kind).unwrap_or(0)
}

impl Health {
    pub fn set_consuming(&self, kind: QueueKind, on: bool) {
        self.consuming[index(kind)].store(on, Ordering::SeqCst);
        if on {
            *self.broker_error.lock().unwrap_or_else(|p| p.into_inner()) = None;
        }
    }
    /// Why the broker session ended (shown by `/readyz` until it consumes).
    pub fn set_broker_error(&self, error: &str) {
        *self.broker_error.lock().unwrap_or_else(|p| p.into_inner()) = Some(error.to_owned());
    }
    pub fn set_broker_down(&self) {
        for c in &self.consuming {
            c.store(false, Ordering::SeqCst);
        }
    }
    /// An API-only process (`[platform] role = "api"`): readiness does not
    /// wait for consumers.
    pub fn expect_no_consumers(&self) {
        self.no_consumers.store(true, Ordering::SeqCst);
    }
    pub fn set_redis(&self, up: bool) {
        self.redis.store(up, Ordering::SeqCst);
    }
    pub fn set_stopping(&self) {
        self.stopping.store(true, Ordering::SeqCst);
    }
    pub fn count_reconnect(&self) {
        self.broker_reconnects.fetch_add(1, Ordering::Relaxed);
    }
    pub fn set_target_missing(&self, target: &str, missing: bool) {
        if !missing && !self.any_missing.load(Ordering::Relaxed) {
            return;
        }
        let mut set = self
            .missing_targets
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        if missing {
            if set.insert(target.to_owned()) {
                tracing::error!(
                    target,
                    "a publish target is missing: not ready until it exists"
                );
            }
        } else if !set.is_empty() && set.remove(target) {
            tracing::info!(target, "a missing publish target is back");
        }
        self.any_missing.store(!set.is_empty(), Ordering::Relaxed);
    }
    pub fn reconnects(&self) -> u64 {
        self.broker_reconnects.load(Ordering::Relaxed)
    }

    pub fn readiness(&self) -> Readiness {
        let consuming: Vec<&'static str> = QueueKind::ALL
            .into_iter()
            .filter(|k| self.consuming[index(*k)].load(Ordering::SeqCst))
            .map(QueueKind::key)
            .collect();
        let broker =
            consuming.len() == QueueKind::ALL.len() || self.no_consumers.load(Ordering::SeqCst);
        let redis = self.redis.load(Ordering::SeqCst);
        let stopping = self.stopping.load(Ordering::SeqCst);
        let missing_targets: Vec<String> = self
            .missing_targets
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .iter()
            .cloned()
            .collect();
        let broker_error = if broker {
            None
        } else {
            self.broker_error
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .clone()
        };
        Readiness {
            broker_error,
            ready: broker && redis && !stopping && missing_targets.is_empty(),
            missing_targets,
            broker,
            redis,
            stopping,
            consuming,
        }
    }
}
