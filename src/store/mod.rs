//! Redis: the connection (redis-rs's tokio `ConnectionManager`, which
//! reconnects by itself) and every operation the handlers need, each one a
//! single command or a single Lua script so that a multi-key update is atomic
//! and a redelivery re-applies it harmlessly.

mod keys;

use std::{sync::LazyLock, time::Duration};

use redis::{
    AsyncCommands, Client, Script,
    aio::{ConnectionManager, ConnectionManagerConfig},
};

pub use keys::Keys;

use crate::{config::RedisSettings, mapping};

/// Candidate ids sent per new number; all of them being taken already
/// (26^7 ids per 3-digit prefix) only costs one more round trip.
const ID_CANDIDATES: usize = 4;

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

/// The worker's Redis: cheap to clone (one multiplexed connection).
#[derive(Clone)]
pub struct Store {
    conn: ConnectionManager,
    keys: Keys,
}

impl Store {
    /// Creates the store without connecting: the first command connects, and
    /// a Redis that is down at start-up only makes the worker not ready.
    pub fn new(settings: &RedisSettings) -> redis::RedisResult<Self> {
        let client = Client::open(settings.url.expose())?;
        // Both timeouts deliberately from config (redis-rs's defaults are
        // 500 ms and 1 s). Commands wait on a reconnection in progress, so
        // its retries are few: during an outage a command fails within
        // seconds and the message takes the broker's retry path (nothing
        // hangs until the handler timeout). The next command reconnects anew.
        let config = ConnectionManagerConfig::new()
            .set_connection_timeout(Some(Duration::from_millis(settings.connect_timeout_ms)))
            .set_response_timeout(Some(Duration::from_millis(settings.response_timeout_ms)))
            .set_number_of_retries(3)
            .set_max_delay(Duration::from_secs(1));
        let conn = ConnectionManager::new_lazy_with_config(client, config)?;
        Ok(Store {
            conn,
            keys: Keys::new(settings.key_prefix.clone()),
        })
    }

    pub fn keys(&self) -> &Keys {
        &self.keys
    }

    /// A clone of the connection for ad-hoc commands (tools, tests).
    pub fn connection(&self) -> ConnectionManager {
        self.conn.clone()
    }

    pub async fn ping(&self) -> redis::RedisResult<()> {
        let mut c = self.conn.clone();
        redis::cmd("PING").query_async::<()>(&mut c).await
    }

    pub async fn unbind_xb(
        &self,
        sub_id: &str,
        tel_x: &str,
        now: u64,
        retention_secs: u64,
    ) -> redis::RedisResult<UnbindResult> {
        let mut c = self.conn.clone();
        let r: String = XB_UNBIND
            .key(self.keys.xb())
            .key(self.keys.xb_unbound())
            .key(self.keys.xb_unbound_index())
            .key(self.keys.user_axs())
            .arg(sub_id)
            .arg(tel_x)
            .arg(now)
            .arg(retention_secs)
            .invoke_async(&mut c)
            .await?;
        Ok(match r.as_str() {
            "unbound" => UnbindResult::Unbound,
            "already_unbound" => UnbindResult::AlreadyUnbound,
            "invalid" => UnbindResult::InvalidBinding,
            _ => UnbindResult::Unknown,
        })
    }

    /// Adds or removes a number; true when the set changed.
    pub async fn set_blacklisted(
        &self,
        user_id: u64,
        list_type: u8,
        number: &str,
        add: bool,
    ) -> redis::RedisResult<bool> {
        let mut c = self.conn.clone();
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
        let mut c = self.conn.clone();
        PHONE_CHANGE
            .key(self.keys.user_phone())
            .key(self.keys.user_phones(user_id))
            .key(self.keys.phone_user())
            .arg(user_id)
            .arg(new_phone)
            .arg(old_phone.unwrap_or(""))
            .arg(now)
            .invoke_async::<()>(&mut c)
            .await
    }

    pub async fn claim_call(
        &self,
        call_id: &str,
        sub_id: &str,
        token: &str,
        lease: Duration,
    ) -> redis::RedisResult<Claim> {
        let mut c = self.conn.clone();
        let r: Vec<String> = CALL_CLAIM
            .key(self.keys.calllog(call_id))
            .key(self.keys.xb())
            .key(self.keys.xb_unbound())
            .arg(sub_id)
            .arg(token)
            .arg(lease.as_millis().max(1) as u64)
            .invoke_async(&mut c)
            .await?;
        let mut r = r.into_iter();
        Ok(match (r.next().as_deref(), r.next()) {
            (Some("duplicate"), _) => Claim::Duplicate,
            (Some("busy"), _) => Claim::Busy,
            (Some("claimed"), Some(binding)) => Claim::Claimed(binding),
            _ => Claim::Unattributed,
        })
    }

    /// Marks the callId as published for `ttl_secs`.
    pub async fn commit_call(&self, call_id: &str, ttl_secs: u64) -> redis::RedisResult<()> {
        let mut c = self.conn.clone();
        c.set_ex(self.keys.calllog(call_id), "1", ttl_secs).await
    }

    pub async fn release_call(&self, call_id: &str, token: &str) -> redis::RedisResult<()> {
        let mut c = self.conn.clone();
        CALL_RELEASE
            .key(self.keys.calllog(call_id))
            .arg(token)
            .invoke_async::<()>(&mut c)
            .await
    }

    /// PhoneToUID for a batch of normalized numbers, in one script: the
    /// existing id of each, or a new unique one. Atomic, so concurrent
    /// requests (any replica) for a new number all get the same id.
    pub async fn phone_to_uid(&self, numbers: &[String]) -> redis::RedisResult<Vec<String>> {
        let mut c = self.conn.clone();
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

    /// UIDToPhone for a batch of ids, in one HMGET.
    pub async fn uid_to_phone(&self, ids: &[String]) -> redis::RedisResult<Vec<Option<String>>> {
        let mut c = self.conn.clone();
        redis::cmd("HMGET")
            .arg(self.keys.phone_by_uid())
            .arg(ids)
            .query_async(&mut c)
            .await
    }
}
