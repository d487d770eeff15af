//! XB bindings and call claims: the unbind (binding moved to
//! `PrivateNumber_xb_unbound`, the agent's XB entry cleared) and the
//! once-per-callId mark with its publish lease.

use std::{sync::LazyLock, time::Duration};

use redis::{AsyncCommands, Script};

use super::Store;

static XB_UNBIND: LazyLock<Script> =
    LazyLock::new(|| Script::new(include_str!("scripts/xb_unbind.lua")));
static CALL_CLAIM: LazyLock<Script> =
    LazyLock::new(|| Script::new(include_str!("scripts/call_claim.lua")));
static CALL_RELEASE: LazyLock<Script> =
    LazyLock::new(|| Script::new(include_str!("scripts/call_release.lua")));
static CALL_RENEW: LazyLock<Script> =
    LazyLock::new(|| Script::new(include_str!("scripts/call_renew.lua")));
static AXS_CLEAR: LazyLock<Script> =
    LazyLock::new(|| Script::new(include_str!("scripts/axs_clear.lua")));

/// When an unbind also prunes `PrivateNumber_xb_unbound` past the
/// retention: every [`PRUNE_EVERY`]th unbind of this process, and any unbind
/// a second or more after the last prune (so a slow trickle prunes too).
/// Each prune removes up to 100 entries: at any steady rate that is far
/// more than the one entry each unbind adds, and most unbinds skip the
/// range query (a quarter of the script's cost; docs/performance.md).
#[derive(Default)]
pub(super) struct PruneClock {
    calls: std::sync::atomic::AtomicU64,
    last_ms: std::sync::atomic::AtomicU64,
}

pub(super) const PRUNE_EVERY: u64 = 16;

impl PruneClock {
    pub(super) fn due(&self) -> bool {
        use std::sync::atomic::Ordering::Relaxed;
        let now_ms = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_millis() as u64);
        if self.calls.fetch_add(1, Relaxed).is_multiple_of(PRUNE_EVERY) {
            self.last_ms.store(now_ms, Relaxed);
            return true;
        }
        // A second since the last prune: this one prunes (one caller wins).
        let last = self.last_ms.load(Relaxed);
        now_ms.saturating_sub(last) >= 1000
            && self
                .last_ms
                .compare_exchange(last, now_ms, Relaxed, Relaxed)
                .is_ok()
    }
}

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

impl Store {
    pub async fn unbind_xb(
        &self,
        sub_id: &str,
        tel_x: &str,
        now: u64,
        retention_secs: u64,
    ) -> redis::RedisResult<UnbindResult> {
        let mut c = self.conn().await?;
        let k = &self.keys;
        let prune = self.prune.due();
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
                .arg(if prune { "1" } else { "0" })
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
        let old: Vec<String> = if prune {
            redis::cmd("ZRANGEBYSCORE")
                .arg(k.xb_unbound_index())
                .arg("-inf")
                .arg(cutoff)
                .arg("LIMIT")
                .arg(0)
                .arg(100)
                .query_async(&mut c)
                .await?
        } else {
            Vec::new()
        };
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

    /// Claims `call_id` for publishing (see `handlers::call_record`): the
    /// binding of `sub_id` and a lease under `token`, or why not.
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
