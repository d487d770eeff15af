//! A Redis master found through Sentinel and followed across failovers.
//!
//! redis-rs resolves a Sentinel master once; its `ConnectionManager` would
//! then reconnect to that address forever, even after the sentinels promoted
//! a replica. So the store asks a sentinel for the master's address at most
//! once per [`RECHECK`] (one `SENTINEL get-master-addr-by-name` on a kept
//! connection) when it hands out a connection, and moves to a new
//! `ConnectionManager` when the address changed. Commands sent to the old
//! master meanwhile fail (it is down, or answers READONLY once demoted) and
//! take the broker's retry path like any Redis outage.

use std::{
    sync::Mutex,
    time::{Duration, Instant},
};

use redis::{
    ConnectionAddr, IntoConnectionInfo, RedisConnectionInfo,
    aio::{ConnectionManager, ConnectionManagerConfig, MultiplexedConnection},
};

use crate::config::SentinelSettings;

/// How often, at most, the master's address is asked for.
pub const RECHECK: Duration = Duration::from_secs(1);

pub struct SentinelBackend {
    settings: SentinelSettings,
    /// `[redis.tls]`: for rediss:// sentinels and a `master_tls` master.
    tls: crate::config::TlsFiles,
    connect: Duration,
    response: Duration,
    /// The master in use: its `host:port`, its connection, when it was last
    /// confirmed by a sentinel.
    master: Mutex<Option<(String, ConnectionManager, Instant)>>,
    /// One question to the sentinels at a time, on a kept connection.
    sentinel: tokio::sync::Mutex<Option<MultiplexedConnection>>,
    /// Masters moved to so far.
    generation: std::sync::atomic::AtomicU64,
}

impl SentinelBackend {
    pub fn new(
        settings: SentinelSettings,
        tls: crate::config::TlsFiles,
        connect: Duration,
        response: Duration,
    ) -> Self {
        SentinelBackend {
            settings,
            tls,
            connect,
            response,
            master: Mutex::new(None),
            sentinel: tokio::sync::Mutex::new(None),
            generation: Default::default(),
        }
    }

    /// Changes each time the worker moves to another master.
    pub fn generation(&self) -> u64 {
        self.generation.load(std::sync::atomic::Ordering::SeqCst)
    }

    fn current(&self, fresh_only: bool) -> Option<ConnectionManager> {
        let m = self.master.lock().unwrap_or_else(|p| p.into_inner());
        m.as_ref()
            .filter(|(_, _, at)| !fresh_only || at.elapsed() < RECHECK)
            .map(|(_, c, _)| c.clone())
    }

    /// A connection to the current master.
    pub async fn conn(&self) -> redis::RedisResult<ConnectionManager> {
        if let Some(c) = self.current(true) {
            return Ok(c);
        }
        let mut sentinel = self.sentinel.lock().await;
        if let Some(c) = self.current(true) {
            return Ok(c);
        }
        let addr = match self.ask(&mut sentinel).await {
            Ok(addr) => addr,
            // The sentinels do not answer: keep using the master we know
            // (it may be fine), and ask again after RECHECK.
            Err(e) => {
                let mut m = self.master.lock().unwrap_or_else(|p| p.into_inner());
                return match m.as_mut() {
                    Some((_, c, at)) => {
                        *at = Instant::now();
                        Ok(c.clone())
                    }
                    None => Err(e),
                };
            }
        };
        let mut m = self.master.lock().unwrap_or_else(|p| p.into_inner());
        if let Some((known, c, at)) = m.as_mut()
            && *known == addr
        {
            *at = Instant::now();
            return Ok(c.clone());
        }
        let conn = self.manager(&addr)?;
        if m.is_some() {
            self.generation
                .fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            tracing::warn!(master = %addr, "the Sentinel master moved: following it");
        } else {
            tracing::info!(master = %addr, "Redis master found through Sentinel");
        }
        *m = Some((addr, conn.clone(), Instant::now()));
        Ok(conn)
    }

    /// The master's `host:port`, from the first sentinel that answers.
    async fn ask(&self, kept: &mut Option<MultiplexedConnection>) -> redis::RedisResult<String> {
        let mut last = None;
        // The kept connection first, then each sentinel in turn.
        for i in 0..=self.settings.sentinels.len() {
            let conn = if i == 0 {
                match kept.take() {
                    Some(c) => c,
                    None => continue,
                }
            } else {
                let url = self.settings.sentinels[i - 1].expose();
                let config = redis::AsyncConnectionConfig::new()
                    .set_connection_timeout(Some(self.connect))
                    .set_response_timeout(Some(self.response));
                match super::conn::client(url, url.starts_with("rediss://"), &self.tls) {
                    Ok(client) => {
                        match client
                            .get_multiplexed_async_connection_with_config(&config)
                            .await
                        {
                            Ok(c) => c,
                            Err(e) => {
                                last = Some(e);
                                continue;
                            }
                        }
                    }
                    Err(e) => {
                        last = Some(e);
                        continue;
                    }
                }
            };
            let mut c = conn;
            let answer: redis::RedisResult<Option<(String, u16)>> = redis::cmd("SENTINEL")
                .arg("get-master-addr-by-name")
                .arg(&self.settings.master_name)
                .query_async(&mut c)
                .await;
            match answer {
                Ok(Some((host, port))) => {
                    *kept = Some(c);
                    return Ok(format!("{host}:{port}"));
                }
                Ok(None) => {
                    last = Some(redis::RedisError::from((
                        redis::ErrorKind::Client,
                        "this sentinel knows no master set by that name",
                        self.settings.master_name.clone(),
                    )))
                }
                Err(e) => last = Some(e),
            }
        }
        Err(last.unwrap_or_else(|| {
            redis::RedisError::from((redis::ErrorKind::Client, "no sentinel configured"))
        }))
    }

    fn manager(&self, addr: &str) -> redis::RedisResult<ConnectionManager> {
        let (host, port) = addr.rsplit_once(':').unwrap_or((addr, "6379"));
        let port: u16 = port.parse().unwrap_or(6379);
        let mut redis = RedisConnectionInfo::default().set_db(self.settings.db);
        if !self.settings.username.is_empty() {
            redis = redis.set_username(&self.settings.username);
        }
        if !self.settings.password.expose().is_empty() {
            redis = redis.set_password(self.settings.password.expose());
        }
        let addr = if self.settings.master_tls {
            ConnectionAddr::TcpTls {
                host: host.to_owned(),
                port,
                insecure: false,
                tls_params: None,
            }
        } else {
            ConnectionAddr::Tcp(host.to_owned(), port)
        };
        let info = addr.into_connection_info()?.set_redis_settings(redis);
        let config = ConnectionManagerConfig::new()
            .set_connection_timeout(Some(self.connect))
            .set_response_timeout(Some(self.response))
            .set_number_of_retries(3)
            .set_max_delay(Duration::from_secs(1));
        let client = super::conn::client(info, self.settings.master_tls, &self.tls)?;
        ConnectionManager::new_lazy_with_config(client, config)
    }
}
