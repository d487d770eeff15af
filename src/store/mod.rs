//! Redis: the connection and every operation the handlers need.
//!
//! On a single Redis (`[redis] url = "redis://..."`) each multi-key update is
//! one Lua script: atomic, and re-applied harmlessly on redelivery. On a Redis
//! Cluster (`url = [node URLs]`) the keys of one update live in different
//! slots, so the same update runs as a fixed order of single-key steps, each
//! idempotent, with the step that marks it done last: a redelivery after a
//! partial run completes it (the contract's rule for keys that cannot be
//! updated atomically). Single-key operations are the same in both modes.

mod keys;

use std::{sync::Arc, sync::LazyLock, time::Duration};

use redis::{
    AsyncCommands, Client, Cmd, Pipeline, RedisFuture, Script, Value,
    aio::{ConnectionLike, ConnectionManager, ConnectionManagerConfig},
    cluster::ClusterClient,
    cluster_async::ClusterConnection,
};
use tokio::sync::OnceCell;

pub use keys::Keys;

use crate::{
    broker::headers::SigningKey,
    config::{RedisSettings, RedisUrl},
    mapping,
};

static XB_UNBIND: LazyLock<Script> =
    LazyLock::new(|| Script::new(include_str!("scripts/xb_unbind.lua")));
static PHONE_CHANGE: LazyLock<Script> =
    LazyLock::new(|| Script::new(include_str!("scripts/phone_change.lua")));
static CALL_CLAIM: LazyLock<Script> =
    LazyLock::new(|| Script::new(include_str!("scripts/call_claim.lua")));
static PHONE_TO_UID: LazyLock<Script> =
    LazyLock::new(|| Script::new(include_str!("scripts/phone_to_uid.lua")));
static CALL_RELEASE: LazyLock<Script> =
    LazyLock::new(|| Script::new(include_str!("scripts/call_release.lua")));
static CALL_RENEW: LazyLock<Script> =
    LazyLock::new(|| Script::new(include_str!("scripts/call_renew.lua")));
static AXS_CLEAR: LazyLock<Script> =
    LazyLock::new(|| Script::new(include_str!("scripts/axs_clear.lua")));
static HDEL_IF: LazyLock<Script> =
    LazyLock::new(|| Script::new(include_str!("scripts/hdel_if.lua")));

/// Candidate ids sent per new number; all of them being taken already
/// (26^7 ids per 3-digit prefix) only costs one more round trip.
const ID_CANDIDATES: usize = 4;

/// What an XB unbind found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum UnbindResult {
    Unbound,
    AlreadyUnbound,
    /// In neither hash.
    Unknown,
    /// The stored binding is not a JSON object: left untouched.
    InvalidBinding,
}

/// What claiming a call record's callId found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Claim {
    /// Published before (mark `1`).
    Duplicate,
    /// Another attempt holds the publish lease.
    Busy,
    /// No binding, bound or recently unbound, has this subId.
    Unattributed,
    /// The lease is ours; the binding's JSON.
    Claimed(String),
}

/// The connection: one multiplexed connection to a single Redis, or a
/// cluster connection made on first use.
#[derive(Clone)]
enum Backend {
    Single(ConnectionManager),
    Cluster {
        client: Arc<ClusterClient>,
        conn: Arc<OnceCell<ClusterConnection>>,
    },
}

/// A live connection of either kind; commands and scripts run on it alike.
#[derive(Clone)]
pub enum Conn {
    Single(ConnectionManager),
    Cluster(ClusterConnection),
}

impl ConnectionLike for Conn {
    fn req_packed_command<'a>(&'a mut self, cmd: &'a Cmd) -> RedisFuture<'a, Value> {
        match self {
            Conn::Single(c) => c.req_packed_command(cmd),
            Conn::Cluster(c) => c.req_packed_command(cmd),
        }
    }
    fn req_packed_commands<'a>(
        &'a mut self,
        cmd: &'a Pipeline,
        offset: usize,
        count: usize,
    ) -> RedisFuture<'a, Vec<Value>> {
        match self {
            Conn::Single(c) => c.req_packed_commands(cmd, offset, count),
            Conn::Cluster(c) => c.req_packed_commands(cmd, offset, count),
        }
    }
    fn get_db(&self) -> i64 {
        match self {
            Conn::Single(c) => c.get_db(),
            Conn::Cluster(c) => c.get_db(),
        }
    }
}

/// The worker's Redis: cheap to clone.
#[derive(Clone)]
pub struct Store {
    backend: Backend,
    keys: Keys,
    /// The header-signing key, once read from Redis (it never changes).
    signing_key: Arc<std::sync::OnceLock<SigningKey>>,
}

impl Store {
    /// Creates the store without connecting: the first command connects, and
    /// a Redis that is down at start-up only makes the worker not ready.
    pub fn new(settings: &RedisSettings) -> redis::RedisResult<Self> {
        let connect = Duration::from_millis(settings.connect_timeout_ms);
        let response = Duration::from_millis(settings.response_timeout_ms);
        let backend = match &settings.url {
            RedisUrl::Single(url) => {
                let client = Client::open(url.expose())?;
                // Both timeouts deliberately from config (redis-rs's defaults
                // are 500 ms and 1 s). Commands wait on a reconnection in
                // progress, so its retries are few: during an outage a command
                // fails within seconds and the message takes the broker's
                // retry path (nothing hangs until the handler timeout). The
                // next command reconnects anew.
                let config = ConnectionManagerConfig::new()
                    .set_connection_timeout(Some(connect))
                    .set_response_timeout(Some(response))
                    .set_number_of_retries(3)
                    .set_max_delay(Duration::from_secs(1));
                Backend::Single(ConnectionManager::new_lazy_with_config(client, config)?)
            }
            RedisUrl::Cluster(_) => {
                let client = ClusterClient::builder(settings.url.urls())
                    .connection_timeout(connect)
                    .response_timeout(response)
                    .retries(3)
                    .build()?;
                Backend::Cluster {
                    client: Arc::new(client),
                    conn: Arc::new(OnceCell::new()),
                }
            }
        };
        Ok(Store {
            backend,
            keys: Keys::new(settings.key_prefix.clone()),
            signing_key: Default::default(),
        })
    }

    pub fn keys(&self) -> &Keys {
        &self.keys
    }

    fn is_cluster(&self) -> bool {
        matches!(self.backend, Backend::Cluster { .. })
    }

    /// A live connection (connecting to the cluster on first use).
    pub async fn conn(&self) -> redis::RedisResult<Conn> {
        match &self.backend {
            Backend::Single(c) => Ok(Conn::Single(c.clone())),
            Backend::Cluster { client, conn } => {
                let c = conn
                    .get_or_try_init(|| client.get_async_connection())
                    .await?;
                Ok(Conn::Cluster(c.clone()))
            }
        }
    }

    /// The header-signing key if it has been read already (no I/O).
    pub fn cached_signing_key(&self) -> Option<SigningKey> {
        self.signing_key.get().cloned()
    }

    /// The header-signing key: read once from Redis, created there (SET NX,
    /// 32 random bytes) by the first worker that needs it. `None` while Redis
    /// cannot be reached: copies are then forwarded unsigned, and their
    /// history counts as none.
    pub async fn signing_key(&self) -> Option<SigningKey> {
        if let Some(k) = self.signing_key.get() {
            return Some(k.clone());
        }
        let read = async {
            let mut c = self.conn().await?;
            let key = self.keys.signing_key();
            let fresh: String = {
                use rand::RngCore as _;
                let mut bytes = [0u8; 32];
                rand::rng().fill_bytes(&mut bytes);
                bytes.iter().map(|b| format!("{b:02x}")).collect()
            };
            let _: Option<String> = redis::cmd("SET")
                .arg(&key)
                .arg(&fresh)
                .arg("NX")
                .query_async(&mut c)
                .await?;
            c.get::<_, Option<String>>(&key).await
        };
        let text = match tokio::time::timeout(Duration::from_secs(2), read).await {
            Ok(Ok(Some(text))) => text,
            _ => return None,
        };
        let bytes: Vec<u8> = (0..text.len() / 2)
            .filter_map(|i| u8::from_str_radix(text.get(2 * i..2 * i + 2)?, 16).ok())
            .collect();
        let key: [u8; 32] = bytes.try_into().ok()?;
        Some(self.signing_key.get_or_init(|| SigningKey(key)).clone())
    }

    pub async fn ping(&self) -> redis::RedisResult<()> {
        let mut c = self.conn().await?;
        redis::cmd("PING").query_async::<()>(&mut c).await
    }

    pub async fn unbind_xb(
        &self,
        sub_id: &str,
        tel_x: &str,
        now: u64,
        retention_secs: u64,
    ) -> redis::RedisResult<UnbindResult> {
        let mut c = self.conn().await?;
        let k = &self.keys;
        if !self.is_cluster() {
            let r: String = XB_UNBIND
                .key(k.xb())
                .key(k.xb_unbound())
                .key(k.xb_unbound_index())
                .key(k.user_axs())
                .arg(sub_id)
                .arg(tel_x)
                .arg(now)
                .arg(retention_secs)
                .invoke_async(&mut c)
                .await?;
            return Ok(match r.as_str() {
                "unbound" => UnbindResult::Unbound,
                "already_unbound" => UnbindResult::AlreadyUnbound,
                "invalid" => UnbindResult::InvalidBinding,
                _ => UnbindResult::Unknown,
            });
        }
        // Cluster: the script's steps one by one; HDEL from the bound hash
        // comes last, so a redelivery after a partial run redoes the rest.
        let cutoff = now.saturating_sub(retention_secs);
        let old: Vec<String> = redis::cmd("ZRANGEBYSCORE")
            .arg(k.xb_unbound_index())
            .arg("-inf")
            .arg(cutoff)
            .arg("LIMIT")
            .arg(0)
            .arg(100)
            .query_async(&mut c)
            .await?;
        if !old.is_empty() {
            let _: () = c.hdel(k.xb_unbound(), &old).await?;
            let _: () = c.zrem(k.xb_unbound_index(), &old).await?;
        }
        let Some(raw) = c.hget::<_, _, Option<String>>(k.xb(), sub_id).await? else {
            let unbound: bool = c.hexists(k.xb_unbound(), sub_id).await?;
            return Ok(if unbound {
                UnbindResult::AlreadyUnbound
            } else {
                UnbindResult::Unknown
            });
        };
        let Some((stamped, user_id)) = stamp_unbound(&raw, now) else {
            return Ok(UnbindResult::InvalidBinding);
        };
        // HSETNX: a redelivery keeps the first unboundAt.
        let _: () = c.hset_nx(k.xb_unbound(), sub_id, stamped).await?;
        let _: () = redis::cmd("ZADD")
            .arg(k.xb_unbound_index())
            .arg("NX")
            .arg(now)
            .arg(sub_id)
            .query_async(&mut c)
            .await?;
        if let Some(uid) = user_id {
            let _: () = AXS_CLEAR
                .key(k.user_axs())
                .arg(uid)
                .arg(tel_x)
                .invoke_async(&mut c)
                .await?;
        }
        let _: () = c.hdel(k.xb(), sub_id).await?;
        Ok(UnbindResult::Unbound)
    }

    /// Adds or removes a number; true when the set changed.
    pub async fn set_blacklisted(
        &self,
        user_id: u64,
        list_type: u8,
        number: &str,
        add: bool,
    ) -> redis::RedisResult<bool> {
        let mut c = self.conn().await?;
        let key = self.keys.black(user_id, list_type);
        let n: i64 = if add {
            c.sadd(key, number).await?
        } else {
            c.srem(key, number).await?
        };
        Ok(n > 0)
    }

    pub async fn record_phone_change(
        &self,
        user_id: u64,
        new_phone: &str,
        old_phone: Option<&str>,
        now: u64,
    ) -> redis::RedisResult<()> {
        let mut c = self.conn().await?;
        let k = &self.keys;
        if !self.is_cluster() {
            return PHONE_CHANGE
                .key(k.user_phone())
                .key(k.user_phones(user_id))
                .key(k.phone_user())
                .arg(user_id)
                .arg(new_phone)
                .arg(old_phone.unwrap_or(""))
                .arg(now)
                .invoke_async::<()>(&mut c)
                .await;
        }
        // Cluster: history and reverse map first, the current phone last.
        let mut history = redis::cmd("ZADD");
        history
            .arg(k.user_phones(user_id))
            .arg("NX")
            .arg(now)
            .arg(new_phone);
        if let Some(old) = old_phone {
            history.arg(now).arg(old);
        }
        let _: () = history.query_async(&mut c).await?;
        let _: () = c.hset(k.phone_user(), new_phone, user_id).await?;
        if let Some(old) = old_phone {
            let _: () = c.hset_nx(k.phone_user(), old, user_id).await?;
        }
        c.hset(k.user_phone(), user_id, new_phone).await
    }

    pub async fn claim_call(
        &self,
        call_id: &str,
        sub_id: &str,
        token: &str,
        lease: Duration,
    ) -> redis::RedisResult<Claim> {
        let mut c = self.conn().await?;
        let k = &self.keys;
        let lease_ms = lease.as_millis().max(1) as u64;
        if !self.is_cluster() {
            let r: Vec<String> = CALL_CLAIM
                .key(k.calllog(call_id))
                .key(k.xb())
                .key(k.xb_unbound())
                .arg(sub_id)
                .arg(token)
                .arg(lease_ms)
                .invoke_async(&mut c)
                .await?;
            let mut r = r.into_iter();
            return Ok(match (r.next().as_deref(), r.next()) {
                (Some("duplicate"), _) => Claim::Duplicate,
                (Some("busy"), _) => Claim::Busy,
                (Some("claimed"), Some(binding)) => Claim::Claimed(binding),
                _ => Claim::Unattributed,
            });
        }
        // Cluster: look first, then claim with SET NX; a lost race reads the
        // mark again.
        let mark_state = |mark: Option<String>| match mark.as_deref() {
            Some("1") => Some(Claim::Duplicate),
            Some(_) => Some(Claim::Busy),
            None => None,
        };
        if let Some(claim) = mark_state(c.get(k.calllog(call_id)).await?) {
            return Ok(claim);
        }
        let binding = match c.hget::<_, _, Option<String>>(k.xb(), sub_id).await? {
            Some(b) => b,
            None => match c
                .hget::<_, _, Option<String>>(k.xb_unbound(), sub_id)
                .await?
            {
                Some(b) => b,
                None => return Ok(Claim::Unattributed),
            },
        };
        let set: Option<String> = redis::cmd("SET")
            .arg(k.calllog(call_id))
            .arg(token)
            .arg("NX")
            .arg("PX")
            .arg(lease_ms)
            .query_async(&mut c)
            .await?;
        if set.is_some() {
            return Ok(Claim::Claimed(binding));
        }
        Ok(mark_state(c.get(k.calllog(call_id)).await?).unwrap_or(Claim::Busy))
    }

    /// Marks the callId as published for `ttl_secs`.
    pub async fn commit_call(&self, call_id: &str, ttl_secs: u64) -> redis::RedisResult<()> {
        let mut c = self.conn().await?;
        c.set_ex(self.keys.calllog(call_id), "1", ttl_secs).await
    }

    /// Extends a publish lease to `lease` from now if `token` still holds it;
    /// false when it does not (expired, or another attempt's).
    pub async fn renew_call(
        &self,
        call_id: &str,
        token: &str,
        lease: Duration,
    ) -> redis::RedisResult<bool> {
        let mut c = self.conn().await?;
        let n: i64 = CALL_RENEW
            .key(self.keys.calllog(call_id))
            .arg(token)
            .arg(lease.as_millis().max(1) as u64)
            .invoke_async(&mut c)
            .await?;
        Ok(n == 1)
    }

    pub async fn release_call(&self, call_id: &str, token: &str) -> redis::RedisResult<()> {
        let mut c = self.conn().await?;
        CALL_RELEASE
            .key(self.keys.calllog(call_id))
            .arg(token)
            .invoke_async::<()>(&mut c)
            .await
    }

    /// PhoneToUID for a batch of normalized numbers: the existing id of each,
    /// or a new unique one; concurrent requests (any replica) for a new number
    /// all get the same id. On a single Redis, one script per batch; on a
    /// cluster, one HMGET for the batch and single-key steps per new number.
    pub async fn phone_to_uid(&self, numbers: &[String]) -> redis::RedisResult<Vec<String>> {
        let mut c = self.conn().await?;
        if self.is_cluster() {
            return self.phone_to_uid_stepwise(&mut c, numbers).await;
        }
        for _ in 0..3 {
            let mut invocation = PHONE_TO_UID.key(self.keys.uid_by_phone());
            invocation.key(self.keys.phone_by_uid()).arg(ID_CANDIDATES);
            {
                let mut rng = rand::rng();
                for n in numbers {
                    invocation.arg(n);
                    for _ in 0..ID_CANDIDATES {
                        invocation.arg(mapping::candidate_id(n, &mut rng));
                    }
                }
            }
            let ids: Vec<String> = invocation.invoke_async(&mut c).await?;
            if ids.len() == numbers.len() && ids.iter().all(|id| !id.is_empty()) {
                return Ok(ids);
            }
        }
        Err((
            redis::ErrorKind::Client,
            "could not find a free id after three tries",
        )
            .into())
    }

    /// Cluster: reserve an id (HSETNX id -> number), then bind the number to
    /// it (HSETNX number -> id); a number bound meanwhile by another request
    /// keeps that id, and the reservation is undone.
    async fn phone_to_uid_stepwise(
        &self,
        c: &mut Conn,
        numbers: &[String],
    ) -> redis::RedisResult<Vec<String>> {
        let (by_phone, by_uid) = (self.keys.uid_by_phone(), self.keys.phone_by_uid());
        let existing: Vec<Option<String>> = redis::cmd("HMGET")
            .arg(&by_phone)
            .arg(numbers)
            .query_async(c)
            .await?;
        let mut ids = Vec::with_capacity(numbers.len());
        for (n, found) in numbers.iter().zip(existing) {
            if let Some(id) = found {
                ids.push(id);
                continue;
            }
            let mut assigned = None;
            for _ in 0..ID_CANDIDATES * 3 {
                let candidate = mapping::candidate_id(n, &mut rand::rng());
                if !c.hset_nx::<_, _, _, bool>(&by_uid, &candidate, n).await? {
                    continue; // id taken by another number
                }
                if c.hset_nx::<_, _, _, bool>(&by_phone, n, &candidate).await? {
                    assigned = Some(candidate);
                } else {
                    let _: () = HDEL_IF
                        .key(&by_uid)
                        .arg(&candidate)
                        .arg(n)
                        .invoke_async(c)
                        .await?;
                    assigned = c.hget(&by_phone, n).await?;
                }
                break;
            }
            match assigned {
                Some(id) => ids.push(id),
                None => return Err((redis::ErrorKind::Client, "could not find a free id").into()),
            }
        }
        Ok(ids)
    }

    /// UIDToPhone for a batch of ids, in one HMGET.
    pub async fn uid_to_phone(&self, ids: &[String]) -> redis::RedisResult<Vec<Option<String>>> {
        let mut c = self.conn().await?;
        redis::cmd("HMGET")
            .arg(self.keys.phone_by_uid())
            .arg(ids)
            .query_async(&mut c)
            .await
    }
}

/// The binding's JSON text with `"unboundAt": now` appended (the text is kept
/// as stored), and its user id; None when it is not a JSON object.
fn stamp_unbound(raw: &str, now: u64) -> Option<(String, Option<String>)> {
    let value: serde_json::Value = serde_json::from_str(raw).ok()?;
    let map = value.as_object()?;
    let trimmed = raw.trim_end();
    let body = trimmed.strip_suffix('}')?;
    let stamped = if map.is_empty() {
        format!("{{\"unboundAt\":{now}}}")
    } else {
        format!("{body},\"unboundAt\":{now}}}")
    };
    let user = map
        .get("userId")
        .or_else(|| map.get("userid"))
        .and_then(|v| match v {
            serde_json::Value::Number(n) => n.as_u64().map(|n| n.to_string()),
            serde_json::Value::String(s) => Some(s.clone()),
            _ => None,
        });
    Some((stamped, user))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stamping_keeps_the_stored_text() {
        let (s, u) = stamp_unbound(r#"{"subId":"1","userId":51218,"mapId":7} "#, 99).unwrap();
        assert_eq!(
            s,
            r#"{"subId":"1","userId":51218,"mapId":7,"unboundAt":99}"#
        );
        assert_eq!(u.as_deref(), Some("51218"));
        assert_eq!(stamp_unbound("{}", 5).unwrap().0, r#"{"unboundAt":5}"#);
        assert!(stamp_unbound("[1]", 5).is_none());
        assert!(stamp_unbound("nope", 5).is_none());
    }
}
