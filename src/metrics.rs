//! Prometheus metrics, served at `GET /metrics`. Every metric is defined here,
//! once, with its labels; the rest of the worker calls the methods below at
//! the moment the event happens (`received`, `acked`, ...), so a log line and
//! a counter never disagree on what happened.
//!
//! | metric | labels | what |
//! |---|---|---|
//! | `axn_messages_received_total` | queue | deliveries taken from an input queue |
//! | `axn_messages_acked_total` | queue | deliveries acknowledged (after every effect and move was durable) |
//! | `axn_messages_requeued_total` | queue | deliveries sent back (a move to retry/dead-letter/parking failed) |
//! | `axn_messages_retried_total` | queue | messages (or batch records) moved to a retry queue |
//! | `axn_messages_dead_lettered_total` | queue, reason | messages (or records) moved to `.dlq` |
//! | `axn_messages_parked_total` | queue | call records moved to `.unattributed` |
//! | `axn_messages_in_flight` | queue | deliveries received and not yet settled |
//! | `axn_handler_duration_seconds` | queue, outcome | time to apply a message (`applied`, `parked`, `permanent`, `transient`) |
//! | `axn_call_log_published_total` | | call-log events confirmed by the broker |
//! | `axn_call_log_confirm_seconds` | | time from publishing a call-log event to the broker's confirm (a call record's delivery is held through it) |
//! | `axn_publish_failures_total` | queue | publishes the broker did not confirm (events, retries, dead letters, parking) |
//! | `axn_broker_connected`, `axn_redis_connected` | | 1 while connected (and consuming) / answering |
//! | `axn_broker_reconnects_total` | | broker sessions lost and re-established |
//! | `axn_publish_targets_missing` | | publish targets (queues, the call-log exchange) found missing and not published to since; not ready while above 0 |
//! | `axn_platform_requests_total` | operation, result | binding API requests answered (`success` 2000, `failure` 5000) |
//! | `axn_platform_request_seconds` | operation | binding API latency |
//! | `axn_platform_xb_expired_total` | | MQ108 unbinds the platform published for expired XB bindings |
//! | `axn_queue_depth` | queue, role | messages ready in each of the worker's queues (`role`: `input`, `retry_<d>ms`, `dlq`, `unattributed`), read every `[amqp] queue_depth_interval_ms` |
//! | `axn_dead_letter_oldest_age_seconds` | queue, role | seconds since the oldest message of each `.dlq` (`role="dlq"`) and `.unattributed` was moved there (0 when empty); read with the depths |
//! | `axn_build_info` | version | always 1 |
//!
//! `queue` is the queue key (`xb_unbind`, `blacklist`, `phone_history`,
//! `call_record`), not the configurable queue name.

use std::sync::{Arc, atomic::AtomicU64};

use prometheus_client::{
    encoding::EncodeLabelSet,
    metrics::{
        counter::Counter,
        family::Family,
        gauge::Gauge,
        histogram::{Histogram, exponential_buckets},
    },
    registry::Registry,
};

use crate::{config::QueueKind, health::Health, outcome::Reason};

/// The `outcome` label values of `axn_handler_duration_seconds`.
pub const OUTCOMES: [&str; 4] = ["applied", "parked", "permanent", "transient"];

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct DepthLabels {
    queue: &'static str,
    role: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct OperationLabels {
    operation: &'static str,
    result: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct OperationLabel {
    operation: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct QueueLabel {
    queue: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ReasonLabels {
    queue: &'static str,
    reason: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct OutcomeLabels {
    queue: &'static str,
    outcome: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct CertificateLabel {
    certificate: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct VersionLabel {
    version: &'static str,
}

fn latency_histogram() -> Histogram {
    // 0.25 ms .. ~8 s
    Histogram::new(exponential_buckets(0.000_25, 2.0, 16))
}

/// One queue's metric handles, resolved once so the message path does no
/// label hashing or locking (the handles share their values with the
/// registry).
#[derive(Clone)]
pub struct QueueMetrics {
    kind: QueueKind,
    received: Counter,
    acked: Counter,
    requeued: Counter,
    retried: Counter,
    parked: Counter,
    in_flight: Gauge,
    publish_failures: Counter,
    /// In the order of [`OUTCOMES`].
    duration: [Histogram; 4],
    /// For the rare dead-letter path, still by label lookup.
    dead_lettered: Family<ReasonLabels, Counter>,
}

impl QueueMetrics {
    pub fn received(&self) {
        self.received.inc();
        self.in_flight.inc();
    }
    /// The delivery is settled, acked (`true`) or requeued.
    pub fn settled(&self, acked: bool) {
        self.in_flight.dec();
        if acked { &self.acked } else { &self.requeued }.inc();
    }
    pub fn retried(&self) {
        self.retried.inc();
    }
    pub fn parked(&self) {
        self.parked.inc();
    }
    pub fn publish_failed(&self) {
        self.publish_failures.inc();
    }
    pub fn dead_lettered(&self, reason: &'static str) {
        self.dead_lettered
            .get_or_create(&ReasonLabels {
                queue: self.kind.key(),
                reason,
            })
            .inc();
    }
    /// `outcome` is one of [`OUTCOMES`].
    pub fn handled(&self, outcome: &'static str, seconds: f64) {
        let i = OUTCOMES.iter().position(|o| *o == outcome).unwrap_or(0);
        self.duration[i].observe(seconds);
    }
}

/// The worker's metrics. One per application (tests run several).
pub struct Metrics {
    registry: Registry,
    received: Family<QueueLabel, Counter>,
    acked: Family<QueueLabel, Counter>,
    requeued: Family<QueueLabel, Counter>,
    retried: Family<QueueLabel, Counter>,
    dead_lettered: Family<ReasonLabels, Counter>,
    parked: Family<QueueLabel, Counter>,
    in_flight: Family<QueueLabel, Gauge>,
    duration: Family<OutcomeLabels, Histogram, fn() -> Histogram>,
    call_log_published: Counter,
    call_log_confirm: Histogram,
    publish_failures: Family<QueueLabel, Counter>,
    broker_connected: Gauge,
    redis_connected: Gauge,
    broker_reconnects: Counter<u64, AtomicU64>,
    targets_missing: Gauge,
    platform_requests: Family<OperationLabels, Counter>,
    platform_latency: Family<OperationLabel, Histogram, fn() -> Histogram>,
    platform_xb_expired: Counter,
    queue_depth: Family<DepthLabels, Gauge>,
    dead_letter_age: Family<DepthLabels, Gauge<f64, AtomicU64>>,
    certificate_expiry: Family<CertificateLabel, Gauge>,
    health: Arc<Health>,
}

impl Metrics {
    pub fn new(health: Arc<Health>) -> Self {
        let mut registry = Registry::default();
        let m = Metrics {
            received: Family::default(),
            acked: Family::default(),
            requeued: Family::default(),
            retried: Family::default(),
            dead_lettered: Family::default(),
            parked: Family::default(),
            in_flight: Family::default(),
            duration: Family::new_with_constructor(latency_histogram as fn() -> Histogram),
            call_log_published: Counter::default(),
            call_log_confirm: latency_histogram(),
            publish_failures: Family::default(),
            broker_connected: Gauge::default(),
            redis_connected: Gauge::default(),
            broker_reconnects: Counter::default(),
            targets_missing: Gauge::default(),
            platform_requests: Family::default(),
            platform_latency: Family::new_with_constructor(latency_histogram as fn() -> Histogram),
            platform_xb_expired: Counter::default(),
            queue_depth: Family::default(),
            dead_letter_age: Family::default(),
            certificate_expiry: Family::default(),
            health,
            registry: Registry::default(),
        };
        let r = &mut registry;
        r.register(
            "axn_messages_received",
            "Deliveries taken from an input queue",
            m.received.clone(),
        );
        r.register(
            "axn_messages_acked",
            "Deliveries acknowledged",
            m.acked.clone(),
        );
        r.register(
            "axn_messages_requeued",
            "Deliveries returned to their queue because a move failed",
            m.requeued.clone(),
        );
        r.register(
            "axn_messages_retried",
            "Messages moved to a retry queue",
            m.retried.clone(),
        );
        r.register(
            "axn_messages_dead_lettered",
            "Messages moved to the dead-letter queue",
            m.dead_lettered.clone(),
        );
        r.register(
            "axn_messages_parked",
            "Call records moved to the unattributed queue",
            m.parked.clone(),
        );
        r.register(
            "axn_messages_in_flight",
            "Deliveries received and not yet settled",
            m.in_flight.clone(),
        );
        r.register(
            "axn_handler_duration_seconds",
            "Time to apply a message",
            m.duration.clone(),
        );
        r.register(
            "axn_call_log_published",
            "Call-log events confirmed by the broker",
            m.call_log_published.clone(),
        );
        r.register(
            "axn_call_log_confirm_seconds",
            "Time from publishing a call-log event to the broker's confirm",
            m.call_log_confirm.clone(),
        );
        r.register(
            "axn_publish_failures",
            "Publishes the broker did not confirm",
            m.publish_failures.clone(),
        );
        r.register(
            "axn_broker_connected",
            "1 while connected to the broker and consuming every queue",
            m.broker_connected.clone(),
        );
        r.register(
            "axn_redis_connected",
            "1 while Redis answers",
            m.redis_connected.clone(),
        );
        r.register(
            "axn_broker_reconnects",
            "Broker sessions lost and re-established",
            m.broker_reconnects.clone(),
        );
        r.register(
            "axn_publish_targets_missing",
            "Publish targets found missing and not published to since",
            m.targets_missing.clone(),
        );
        r.register(
            "axn_platform_requests",
            "Binding API requests answered",
            m.platform_requests.clone(),
        );
        r.register(
            "axn_platform_request_seconds",
            "Binding API latency",
            m.platform_latency.clone(),
        );
        r.register(
            "axn_platform_xb_expired",
            "MQ108 unbinds published for expired XB bindings",
            m.platform_xb_expired.clone(),
        );
        r.register(
            "axn_queue_depth",
            "Messages ready in each of the worker's queues",
            m.queue_depth.clone(),
        );
        r.register(
            "axn_dead_letter_oldest_age_seconds",
            "Age of the oldest message in each .dlq and .unattributed (0 when empty)",
            m.dead_letter_age.clone(),
        );
        r.register(
            "axn_tls_certificate_expiry_timestamp_seconds",
            "When a certificate the process presents stops being valid (Unix time): the HTTPS listener's, the client certificates for the broker and Redis",
            m.certificate_expiry.clone(),
        );
        let build = Family::<VersionLabel, Gauge>::default();
        build
            .get_or_create(&VersionLabel {
                version: env!("CARGO_PKG_VERSION"),
            })
            .set(1);
        r.register("axn_build_info", "Build information", build);
        // Every queue's series exist from the start (at 0), so rate() and
        // alerts see them before the first message.
        for kind in QueueKind::ALL {
            let q = QueueLabel { queue: kind.key() };
            for f in [
                &m.received,
                &m.acked,
                &m.requeued,
                &m.retried,
                &m.parked,
                &m.publish_failures,
            ] {
                let _ = f.get_or_create(&q);
            }
            let _ = m.in_flight.get_or_create(&q);
            for reason in Reason::ALL {
                let _ = m.dead_lettered.get_or_create(&ReasonLabels {
                    queue: kind.key(),
                    reason: reason.as_str(),
                });
            }
            for outcome in OUTCOMES {
                let _ = m.duration.get_or_create(&OutcomeLabels {
                    queue: kind.key(),
                    outcome,
                });
            }
        }
        Metrics { registry, ..m }
    }

    /// The Prometheus text exposition of every metric.
    pub fn render(&self) -> String {
        let r = self.health.readiness();
        self.broker_connected.set(r.broker as i64);
        self.redis_connected.set(r.redis as i64);
        self.targets_missing.set(r.missing_targets.len() as i64);
        let reconnects = self.health.reconnects();
        let seen = self.broker_reconnects.get();
        if reconnects > seen {
            self.broker_reconnects.inc_by(reconnects - seen);
        }
        let mut out = String::new();
        // Writing to a String cannot fail.
        let _ = prometheus_client::encoding::text::encode(&mut out, &self.registry);
        out
    }

    /// The handles of one queue's metrics, for its message path.
    pub fn queue(&self, kind: QueueKind) -> QueueMetrics {
        let q = QueueLabel { queue: kind.key() };
        let counter = |f: &Family<QueueLabel, Counter>| f.get_or_create(&q).clone();
        QueueMetrics {
            kind,
            received: counter(&self.received),
            acked: counter(&self.acked),
            requeued: counter(&self.requeued),
            retried: counter(&self.retried),
            parked: counter(&self.parked),
            publish_failures: counter(&self.publish_failures),
            in_flight: self.in_flight.get_or_create(&q).clone(),
            duration: OUTCOMES.map(|outcome| {
                self.duration
                    .get_or_create(&OutcomeLabels {
                        queue: kind.key(),
                        outcome,
                    })
                    .clone()
            }),
            dead_lettered: self.dead_lettered.clone(),
        }
    }

    /// A binding API request answered.
    pub fn platform_request(&self, operation: &'static str, result: &'static str, seconds: f64) {
        self.platform_requests
            .get_or_create(&OperationLabels { operation, result })
            .inc();
        self.platform_latency
            .get_or_create(&OperationLabel { operation })
            .observe(seconds);
    }

    /// Messages ready in the queue of `kind` with `role` (input, retry_<d>ms,
    /// dlq, unattributed).
    pub fn set_queue_depth(&self, kind: QueueKind, role: &str, messages: u32) {
        self.queue_depth
            .get_or_create(&DepthLabels {
                queue: kind.key(),
                role: role.to_owned(),
            })
            .set(messages.into());
    }

    /// Seconds since the oldest message of the `.dlq` or `.unattributed`
    /// (`role`) of `kind` was moved there.
    pub fn set_dead_letter_age(&self, kind: QueueKind, role: &str, seconds: f64) {
        self.dead_letter_age
            .get_or_create(&DepthLabels {
                queue: kind.key(),
                role: role.to_owned(),
            })
            .set(seconds);
    }

    /// The end of validity (Unix seconds) of the certificate `which`
    /// ("http", "amqp_client", "redis_client") presents.
    pub fn set_certificate_expiry(&self, which: &'static str, not_after: i64) {
        self.certificate_expiry
            .get_or_create(&CertificateLabel { certificate: which })
            .set(not_after);
    }

    /// An expired XB binding's MQ108 unbind published.
    pub fn platform_xb_expired(&self) {
        self.platform_xb_expired.inc();
    }

    /// A call-log event confirmed `confirm_seconds` after it was published.
    pub fn call_log_published(&self, confirm_seconds: f64) {
        self.call_log_published.inc();
        self.call_log_confirm.observe(confirm_seconds);
    }

    pub fn publish_failed(&self, kind: QueueKind) {
        self.publish_failures
            .get_or_create(&QueueLabel { queue: kind.key() })
            .inc();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_every_family_with_queue_labels() {
        let m = Metrics::new(Arc::new(Health::default()));
        let q = m.queue(QueueKind::Blacklist);
        q.received();
        q.dead_lettered("invalid_json");
        q.handled("applied", 0.002);
        q.settled(true);
        let text = m.render();
        for line in [
            r#"axn_messages_received_total{queue="blacklist"} 1"#,
            r#"axn_messages_acked_total{queue="blacklist"} 1"#,
            r#"axn_messages_in_flight{queue="blacklist"} 0"#,
            r#"axn_messages_dead_lettered_total{queue="blacklist",reason="invalid_json"} 1"#,
            r#"axn_handler_duration_seconds_count{queue="blacklist",outcome="applied"} 1"#,
            r#"axn_messages_received_total{queue="call_record"} 0"#,
            r#"axn_broker_connected 0"#,
            r#"axn_messages_dead_lettered_total{queue="xb_unbind",reason="retries_exhausted"} 0"#,
            r#"axn_handler_duration_seconds_count{queue="xb_unbind",outcome="transient"} 0"#,
            r#"axn_build_info{version=""#,
        ] {
            assert!(text.contains(line), "{line} missing from\n{text}");
        }
        let plain = crate::http::to_prometheus_text(&text);
        assert!(plain.contains("# TYPE axn_messages_received_total counter"));
        assert!(plain.contains("# HELP axn_messages_received_total Deliveries taken"));
        assert!(plain.contains("# TYPE axn_handler_duration_seconds histogram"));
        assert!(!plain.contains("# EOF") && text.contains("# EOF"));
    }
}
