//! What the types of the settings cannot say: ranges, and names that must
//! differ. Runs before anything connects. And the words of a load error.

use std::collections::HashSet;

use super::{ConfigError, QueueKind, Settings};

impl Settings {
    /// Why this process must not start as configured, although each setting
    /// is valid: the binding API, which binds and releases numbers, served
    /// without credentials beyond loopback (anything that reaches the port
    /// could change bindings). None when it may.
    pub fn exposure_error(&self) -> Option<String> {
        (self.api_open_beyond_loopback() && !self.platform.allow_unauthenticated).then(|| {
            format!(
                "the binding API would answer without credentials on {} (beyond loopback: anything that reaches it could bind and release numbers): set [platform] password or bearer_token (AXN__PLATFORM__PASSWORD, AXN__PLATFORM__BEARER_TOKEN), listen on 127.0.0.1, set [platform] enabled = false or role = \"consumers\", or say it is meant with [platform] allow_unauthenticated = true",
                self.http.listen
            )
        })
    }

    /// Whether the binding API is served without credentials on a
    /// non-loopback listen (allowed only with `allow_unauthenticated`).
    pub fn api_open_beyond_loopback(&self) -> bool {
        let p = &self.platform;
        let serves_api = p.enabled && p.role != super::platform::Role::Consumers;
        let open = p.password.expose().is_empty() && p.bearer_token.expose().is_empty();
        let loopback = self
            .http
            .listen
            .parse::<std::net::SocketAddr>()
            .is_ok_and(|a| a.ip().is_loopback());
        serves_api && open && !loopback
    }

    /// Warnings about settings that are valid but likely not what was meant.
    pub fn url_warnings(&self) -> Vec<String> {
        let mut out = Vec::new();
        for (i, url) in self.amqp.url.urls().iter().enumerate() {
            let rest = url.split_once("://").map_or("", |(_, r)| r);
            let host = rest.split('/').next().unwrap_or("");
            let host = host.rsplit('@').next().unwrap_or(host);
            if let Some((_, path)) = rest.split_once('/') {
                let vhost = path.split('?').next().unwrap_or("");
                if vhost.is_empty() {
                    out.push(format!(
                        "amqp.url #{} ({host}) ends with \"/\": that names the empty vhost \"\", not the default vhost \"/\" (RabbitMQ answers \"vhost  not found\"); write amqp://{host} or amqp://{host}/%2f for \"/\"",
                        i + 1
                    ));
                }
            }
        }
        let loopback = self
            .http
            .listen
            .parse::<std::net::SocketAddr>()
            .is_ok_and(|a| a.ip().is_loopback());
        if !self.mapping.password.expose().is_empty() && !loopback && !self.http.tls.enabled() {
            out.push(format!(
                "the number-mapping API is on over plain HTTP on {}: its Basic password crosses the network in clear; set [http.tls] cert_file and key_file, or put a TLS proxy in front",
                self.http.listen
            ));
        }
        out
    }

    /// Whether any Redis connection uses TLS (a rediss:// URL, or a
    /// Sentinel master reached with `master_tls`).
    pub fn redis_uses_tls(&self) -> bool {
        self.redis
            .url
            .urls()
            .iter()
            .any(|u| u.starts_with("rediss://"))
            || matches!(&self.redis.url, super::RedisUrl::Sentinel(s) if s.master_tls)
    }

    /// Checks what the types cannot: ranges, and names that must differ.
    pub fn validate(&self) -> Result<(), ConfigError> {
        let bad = |msg: String| Err(ConfigError::Invalid(msg));
        let urls = self.amqp.url.urls();
        if urls.is_empty() {
            return bad("amqp.url must name at least one broker".into());
        }
        // `a,b` in one string is not a list: it would be one URL, and only
        // its first password would be hidden when printed.
        if urls
            .iter()
            .chain(self.redis.url.urls().iter())
            .any(|u| u.contains(','))
        {
            return bad("amqp.url and redis.url take one URL per string: write several as a list, url = [\"...\", \"...\"] (from the environment: AXN__AMQP__URL='[\"...\",\"...\"]')".into());
        }
        if urls
            .iter()
            .any(|u| !u.starts_with("amqp://") && !u.starts_with("amqps://"))
        {
            return bad(
                "amqp.url must start with amqp:// or amqps:// (each of them, for a list)".into(),
            );
        }
        // TLS: the files are read and checked now (an error names the
        // connection and the file), and files for a URL that is not TLS are
        // a mistake, not a silent no-op.
        let amqp_tls = self
            .amqp
            .url
            .urls()
            .iter()
            .any(|u| u.starts_with("amqps://"));
        if !amqp_tls && !self.amqp.tls.is_empty() {
            return Err(ConfigError::Invalid(
                crate::tls::TlsError::NotTlsUrl {
                    connection: "broker",
                    section: "amqp.tls",
                    scheme: "amqps://",
                }
                .to_string(),
            ));
        }
        let redis_tls = self.redis_uses_tls();
        if !redis_tls && !self.redis.tls.is_empty() {
            return Err(ConfigError::Invalid(
                crate::tls::TlsError::NotTlsUrl {
                    connection: "Redis",
                    section: "redis.tls",
                    scheme: "rediss:// (or master_tls)",
                }
                .to_string(),
            ));
        }
        if !self.redis.tls.server_name.is_empty() {
            return bad("redis.tls.server_name is not supported: redis-rs checks the URL's host against the certificate; name each host as its certificate does (Sentinel: announce-hostnames, Cluster: cluster-announce-hostname; docs/operations.md, \"TLS and secrets\")".into());
        }
        if !self.amqp.tls.server_name.is_empty()
            && rustls::pki_types::ServerName::try_from(self.amqp.tls.server_name.as_str()).is_err()
        {
            return bad(format!(
                "amqp.tls.server_name {:?} is not a DNS name or IP address",
                self.amqp.tls.server_name
            ));
        }
        if amqp_tls {
            crate::tls::load("broker", &self.amqp.tls)
                .map_err(|e| ConfigError::Invalid(e.to_string()))?;
        }
        if redis_tls {
            crate::tls::load("Redis", &self.redis.tls)
                .map_err(|e| ConfigError::Invalid(e.to_string()))?;
        }
        if self.http.tls.enabled() {
            crate::http::tls::Reloading::new(&self.http.tls)
                .map_err(|e| ConfigError::Invalid(e.to_string()))?;
        }
        let urls = self.redis.url.urls();
        if urls.is_empty()
            || urls
                .iter()
                .any(|u| !u.starts_with("redis://") && !u.starts_with("rediss://"))
        {
            return bad("redis.url must be a redis:// or rediss:// URL, or a non-empty list of them (cluster nodes), or { sentinels = [...], master_name = \"...\" }".into());
        }
        if let super::RedisUrl::Sentinel(s) = &self.redis.url
            && s.master_name.is_empty()
        {
            return bad("redis.url.master_name must name the Sentinel master set".into());
        }
        if self.redis.response_timeout_ms == 0 || self.redis.connect_timeout_ms == 0 {
            return bad(
                "redis.connect_timeout_ms and redis.response_timeout_ms must be above 0".into(),
            );
        }
        if self.http.listen.parse::<std::net::SocketAddr>().is_err() {
            return bad(format!(
                "http.listen {:?} is not an address like 127.0.0.1:8080",
                self.http.listen
            ));
        }
        // The binding API's claim and reservation leases (60 s) must
        // outlast a carrier call, or a repeated request would run beside it.
        if !(1..=30).contains(&self.platform.aliyun.timeout_secs) {
            return bad(format!(
                "platform.aliyun.timeout_secs ({}) must be 1 to 30: a carrier call must end well within the binding API's 60 s leases",
                self.platform.aliyun.timeout_secs
            ));
        }
        if self.http.header_read_timeout_secs == 0 || self.http.request_timeout_secs == 0 {
            return bad(
                "http.header_read_timeout_secs and http.request_timeout_secs must be above 0"
                    .into(),
            );
        }
        if self.amqp.reconnect_min_delay_ms == 0
            || self.amqp.reconnect_max_delay_ms < self.amqp.reconnect_min_delay_ms
        {
            return bad(
                "amqp.reconnect_min_delay_ms must be above 0 and at most reconnect_max_delay_ms"
                    .into(),
            );
        }
        let mut names = HashSet::new();
        for kind in QueueKind::ALL {
            let q = self.queues.get(kind);
            let at = |field: &str| format!("queues.{kind}.{field}");
            if q.name.is_empty() || q.name.len() > 200 {
                return bad(format!("{} must be 1-200 characters", at("name")));
            }
            if q.concurrency == 0 {
                return bad(format!("{} must be at least 1", at("concurrency")));
            }
            if q.prefetch == 0 {
                // 0 is "no limit" to the broker: every ready message at once.
                return bad(format!(
                    "{} must be at least 1 (0 would let the broker send the whole queue)",
                    at("prefetch")
                ));
            }
            if q.timeout_secs == 0 {
                return bad(format!("{} must be at least 1", at("timeout_secs")));
            }
            if q.max_attempts == 0 {
                return bad(format!("{} must be at least 1", at("max_attempts")));
            }
            if q.retry_delays_ms.is_empty() || q.retry_delays_ms.contains(&0) {
                return bad(format!(
                    "{} must list at least one delay, each above 0",
                    at("retry_delays_ms")
                ));
            }
            if q.max_body_bytes == 0 {
                return bad(format!("{} must be above 0", at("max_body_bytes")));
            }
            if q.max_batch_records == 0 {
                return bad(format!("{} must be above 0", at("max_batch_records")));
            }
            if !names.insert(q.name.clone()) {
                return bad(format!(
                    "{} {:?} is used by another queue",
                    at("name"),
                    q.name
                ));
            }
        }
        let out = &self.publish.call_log;
        if out.exchange.is_empty() && names.contains(&out.routing_key) {
            return bad("publish.call_log.routing_key names an input queue".into());
        }
        if self.mapping.max_batch == 0 || self.mapping.max_body_bytes == 0 {
            return bad("mapping.max_batch and mapping.max_body_bytes must be above 0".into());
        }
        if out.routing_key.is_empty() {
            return bad("publish.call_log.routing_key must not be empty".into());
        }
        Ok(())
    }
}

/// A figment error as the user wrote the key, said once: the environment
/// variable (`AXN__QUEUES__XB_UNBIND__CONCURRENCY: ...`) or the TOML table and
/// key with its file (`[queues.xb_unbind] concurrency in /etc/x.toml: ...`),
/// never the library's internal path (`default.queues...`).
pub(super) fn describe(e: &figment::Error) -> String {
    let mut out = Vec::new();
    for e in e.clone() {
        let path: Vec<&str> = e
            .path
            .iter()
            .map(String::as_str)
            .skip_while(|p| p.eq_ignore_ascii_case("default"))
            .collect();
        let from_env = e
            .metadata
            .as_ref()
            .is_some_and(|m| m.name.contains("environment"));
        let key = if from_env {
            format!("AXN__{}", path.join("__").to_uppercase())
        } else {
            let file = e
                .metadata
                .as_ref()
                .and_then(|m| m.source.as_ref())
                .map(|s| match s {
                    // As given (figment shows it relative to the working
                    // directory, which is not where the user looks).
                    figment::Source::File(path) => format!(" in {}", path.display()),
                    other => format!(" in {other}"),
                })
                .unwrap_or_default();
            match path.split_last() {
                Some((key, [])) => format!("{key}{file}"),
                Some((key, table)) => format!("[{}] {key}{file}", table.join(".")),
                None => format!("the configuration{file}"),
            }
        };
        let kind = e.kind.to_string();
        let kind = if kind.contains("untagged enum RedisUrl") {
            "must be a URL string, a list of URLs (a Redis Cluster's nodes), or { sentinels = [\"redis://...\"], master_name = \"...\" }".to_owned()
        } else if kind.contains("untagged enum AmqpUrl") {
            "must be a URL string, or a list of URLs (a RabbitMQ cluster's nodes)".to_owned()
        } else {
            // figment quotes the list twice: "`one of `a`, `b``".
            match kind.strip_suffix("``") {
                Some(k) if kind.contains("`one of `") => {
                    format!("{k}`").replace("`one of `", "one of `")
                }
                _ => kind,
            }
        };
        out.push(format!("{key}: {kind}"));
    }
    out.join("; ")
}
