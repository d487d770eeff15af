//! What `/readyz` reports: whether each input queue has a live consumer,
//! whether Redis answers, and whether the process is shutting down. Written
//! by the broker supervisor and the Redis probe, read by the HTTP server.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use serde::Serialize;

use crate::config::QueueKind;

#[derive(Default)]
pub struct Health {
    consuming: [AtomicBool; 4],
    redis: AtomicBool,
    stopping: AtomicBool,
    broker_reconnects: AtomicU64,
}

/// The readiness report, also the body of `/readyz`.
#[derive(Debug, Serialize, PartialEq, Eq)]
pub struct Readiness {
    pub ready: bool,
    pub broker: bool,
    pub redis: bool,
    pub stopping: bool,
    pub consuming: Vec<&'static str>,
}

fn index(kind: QueueKind) -> usize {
    QueueKind::ALL.iter().position(|k| *k == kind).unwrap_or(0)
}

impl Health {
    pub fn set_consuming(&self, kind: QueueKind, on: bool) {
        self.consuming[index(kind)].store(on, Ordering::SeqCst);
    }
    pub fn set_broker_down(&self) {
        for c in &self.consuming {
            c.store(false, Ordering::SeqCst);
        }
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
    pub fn reconnects(&self) -> u64 {
        self.broker_reconnects.load(Ordering::Relaxed)
    }

    pub fn readiness(&self) -> Readiness {
        let consuming: Vec<&'static str> = QueueKind::ALL
            .into_iter()
            .filter(|k| self.consuming[index(*k)].load(Ordering::SeqCst))
            .map(QueueKind::key)
            .collect();
        let broker = consuming.len() == QueueKind::ALL.len();
        let redis = self.redis.load(Ordering::SeqCst);
        let stopping = self.stopping.load(Ordering::SeqCst);
        Readiness {
            ready: broker && redis && !stopping,
            broker,
            redis,
            stopping,
            consuming,
        }
    }
}
