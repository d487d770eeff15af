//! The binding API's state (docs/platform-api.md, "Redis keys"): the number
//! pool, who holds which number, and the XB bindings' expiry. Every change is
//! one Lua script, so the bind lock holds across replicas.
//!
//! The scripts append ids to key-name prefixes they are given (built in
//! `keys.rs`, like every key name), so the keys they touch are not known up
//! front: they need one Redis, not a cluster; on a cluster the API is not
//! served (docs/platform-api.md, "Not yet"). Each script starts with
//! `scripts/platform/lib.lua` (the user_axs rule, id comparison as text).

use std::{collections::HashMap, sync::LazyLock};

use redis::{AsyncCommands, Script};

use super::Store;

/// Every script starts by reading the key names (ARGV[1], from `Keys`),
/// then the functions the scripts share.
const PREAMBLE: &str = concat!(
    "local K = cjson.decode(ARGV[1])\n",
    include_str!("scripts/platform/lib.lua")
);

macro_rules! script {
    ($name:ident, $file:literal) => {
        static $name: LazyLock<Script> = LazyLock::new(|| {
            Script::new(&format!(
                "{PREAMBLE}{}",
                include_str!(concat!("scripts/platform/", $file))
            ))
        });
    };
}
script!(RESERVE, "reserve.lua");
script!(COMMIT, "commit.lua");
script!(UNRESERVE, "unreserve.lua");
script!(UNBIND, "unbind.lua");
script!(TRANSFER, "transfer.lua");
script!(NUMBER_STATE, "number_state.lua");
script!(XB_BIND, "xb_bind.lua");
script!(XB_DUE, "xb_due.lua");
script!(IMPORT, "import.lua");
script!(FAULT_STATE, "fault_state.lua");
script!(TEL_A, "tel_a.lua");
script!(REQUEST_CLAIM, "request_claim.lua");
script!(REQUEST_DONE, "request_done.lua");

/// AX (the agent's own number) or a temporary number of fault mode.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Kind {
    Ax,
    Fault,
}

impl Kind {
    fn arg(self) -> &'static str {
        match self {
            Kind::Ax => "ax",
            Kind::Fault => "fault",
        }
    }
}

/// What the bind lock answered.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Reservation {
    /// The number is now this user's, binding in progress: call the carrier.
    Reserved {
        number: String,
        platform: String,
    },
    /// This user's binding was left half-made (a carrier call that did not
    /// finish): call the carrier again and commit.
    Resume {
        number: String,
        platform: String,
    },
    /// The user holds this number already.
    Has(String),
    /// A bind of the user's number is in progress (reserved less than the
    /// lease ago): this request must not call the carrier a second time.
    Busy(String),
    /// No free number on the platform.
    NoneFree,
    UnknownNumber,
    /// The number cannot be bound: its number state (or bind state).
    State(String),
    /// An AX bind of the user's own temporary number (fault mode's).
    Temporary(String),
}

/// What an unbind's local step found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Unbound {
    Done,
    /// The number is not the user's (any more).
    NotTheUsers,
    /// Its binding is no longer the one the carrier ended.
    Changed,
}

/// What claiming a request of the binding API found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Claim {
    /// This request is the first: do the work, then `finish_request`.
    Claimed,
    /// An identical request is in progress under this claim token: wait and
    /// ask again, naming the token.
    Wait(String),
    /// The record of an identical request: the one waited on, or a stored
    /// answer whose state still holds.
    Answer(String),
}

/// One number of the pool, as stored.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct NumberRecord {
    pub number: String,
    pub platform_id: String,
    pub pool_id: String,
    pub region_id: String,
    pub number_state: String,
    pub bind_state: String,
    pub user_id: String,
    pub tel_a: String,
    pub sub_id: String,
}

impl Store {
    /// ARGV[1] of every script: the key names it may use.
    fn prefix(&self) -> String {
        self.keys.platform_names()
    }

    /// The bind lock: reserves `number` (or a free number of `platform`) for
    /// `user` under `token`; a reservation of the user's younger than
    /// `lease_secs` is in progress (`Busy`), an older one is taken over.
    #[allow(clippy::too_many_arguments)]
    pub async fn reserve(
        &self,
        user: u64,
        platform: &str,
        number: &str,
        now: u64,
        kind: Kind,
        token: &str,
        lease_secs: u64,
    ) -> redis::RedisResult<Reservation> {
        let mut c = self.conn().await?;
        let r: Vec<String> = RESERVE
            .arg(self.prefix())
            .arg(user)
            .arg(platform)
            .arg(number)
            .arg(now)
            .arg(kind.arg())
            .arg(token)
            .arg(lease_secs)
            .invoke_async(&mut c)
            .await?;
        let mut r = r.into_iter();
        let (tag, a, b) = (r.next(), r.next(), r.next());
        Ok(match (tag.as_deref(), a, b) {
            (Some("reserved"), Some(number), Some(platform)) => {
                Reservation::Reserved { number, platform }
            }
            (Some("resume"), Some(number), Some(platform)) => {
                Reservation::Resume { number, platform }
            }
            (Some("has"), Some(n), _) => Reservation::Has(n),
            (Some("busy"), Some(n), _) => Reservation::Busy(n),
            (Some("temporary"), Some(n), _) => Reservation::Temporary(n),
            (Some("none"), _, _) => Reservation::NoneFree,
            (Some("state"), Some(s), _) => Reservation::State(s),
            _ => Reservation::UnknownNumber,
        })
    }

    /// Completes the reservation `token` after the carrier bound it; false
    /// when that reservation is gone (released, taken over, given away).
    #[allow(clippy::too_many_arguments)]
    pub async fn commit_binding(
        &self,
        user: u64,
        number: &str,
        sub_id: &str,
        tel_a: &str,
        now: u64,
        kind: Kind,
        token: &str,
    ) -> redis::RedisResult<bool> {
        let mut c = self.conn().await?;
        let r: String = COMMIT
            .arg(self.prefix())
            .arg(user)
            .arg(number)
            .arg(sub_id)
            .arg(tel_a)
            .arg(now)
            .arg(kind.arg())
            .arg(token)
            .invoke_async(&mut c)
            .await?;
        Ok(r == "ok")
    }

    /// Undoes the reservation `token`, whose carrier call failed.
    pub async fn unreserve(
        &self,
        user: u64,
        number: &str,
        kind: Kind,
        token: &str,
    ) -> redis::RedisResult<()> {
        let mut c = self.conn().await?;
        UNRESERVE
            .arg(self.prefix())
            .arg(user)
            .arg(number)
            .arg(kind.arg())
            .arg(token)
            .invoke_async(&mut c)
            .await
    }

    /// After the carrier ended the binding `sub_id` (empty: none was
    /// bound): unbound (kept as the user's number of record), or `release`d
    /// to the free pool; only while the number is still the user's under
    /// that same binding.
    pub async fn unbind_number(
        &self,
        user: u64,
        number: &str,
        release: bool,
        sub_id: &str,
    ) -> redis::RedisResult<Unbound> {
        let mut c = self.conn().await?;
        let n: i64 = UNBIND
            .arg(self.prefix())
            .arg(user)
            .arg(number)
            .arg(if release { "1" } else { "0" })
            .arg(sub_id)
            .invoke_async(&mut c)
            .await?;
        Ok(match n {
            1 => Unbound::Done,
            2 => Unbound::Changed,
            _ => Unbound::NotTheUsers,
        })
    }

    /// Moves `from`'s numbers to `to`; the numbers moved.
    pub async fn transfer(&self, from: u64, to: u64) -> redis::RedisResult<Vec<String>> {
        let mut c = self.conn().await?;
        TRANSFER
            .arg(self.prefix())
            .arg(from)
            .arg(to)
            .invoke_async(&mut c)
            .await
    }

    /// Sets a number's number state; false for an unknown number.
    pub async fn set_number_state(&self, number: &str, state: u32) -> redis::RedisResult<bool> {
        let mut c = self.conn().await?;
        let n: i64 = NUMBER_STATE
            .arg(self.prefix())
            .arg(number)
            .arg(state)
            .invoke_async(&mut c)
            .await?;
        Ok(n == 1)
    }

    /// Replaces the A number of the binding `sub_id` of `user`; false when
    /// the number is no longer theirs under it.
    pub async fn set_tel_a(
        &self,
        number: &str,
        user: u64,
        sub_id: &str,
        a: &str,
    ) -> redis::RedisResult<bool> {
        let mut c = self.conn().await?;
        let n: i64 = TEL_A
            .arg(self.prefix())
            .arg(number)
            .arg(user)
            .arg(sub_id)
            .arg(a)
            .invoke_async(&mut c)
            .await?;
        Ok(n == 1)
    }

    /// Fault mode: the number's bind state `from` -> `to` in one step, only
    /// while it is still `user`'s and in `from`. True when it changed.
    pub async fn set_fault_state(
        &self,
        number: &str,
        user: &str,
        from: &str,
        to: &str,
    ) -> redis::RedisResult<bool> {
        let mut c = self.conn().await?;
        let n: i64 = FAULT_STATE
            .arg(self.prefix())
            .arg(number)
            .arg(user)
            .arg(from)
            .arg(to)
            .invoke_async(&mut c)
            .await?;
        Ok(n == 1)
    }

    /// Records an XB binding the carrier made.
    pub async fn record_xb(
        &self,
        sub_id: &str,
        binding: &str,
        expires_at: u64,
        user: u64,
        number: &str,
    ) -> redis::RedisResult<()> {
        let mut c = self.conn().await?;
        XB_BIND
            .arg(self.prefix())
            .arg(sub_id)
            .arg(binding)
            .arg(expires_at)
            .arg(user)
            .arg(number)
            .invoke_async(&mut c)
            .await
    }

    /// Claims up to `max` expired XB bindings for `lease` seconds: (subId,
    /// binding JSON, empty when already unbound).
    pub async fn claim_expired_xb(
        &self,
        now: u64,
        lease: u64,
        max: usize,
    ) -> redis::RedisResult<Vec<(String, String)>> {
        let mut c = self.conn().await?;
        let flat: Vec<String> = XB_DUE
            .arg(self.prefix())
            .arg(now)
            .arg(lease)
            .arg(max)
            .invoke_async(&mut c)
            .await?;
        Ok(flat
            .chunks(2)
            .filter_map(|p| Some((p.first()?.clone(), p.get(1)?.clone())))
            .collect())
    }

    /// An expired XB binding whose unbind was published (or that was unbound).
    pub async fn forget_xb_expiry(&self, sub_id: &str) -> redis::RedisResult<()> {
        self.forget_xb_expiries(&[sub_id.to_owned()]).await
    }

    /// Expired XB bindings whose unbinds were published, in one ZREM.
    pub async fn forget_xb_expiries(&self, sub_ids: &[String]) -> redis::RedisResult<()> {
        if sub_ids.is_empty() {
            return Ok(());
        }
        let mut c = self.conn().await?;
        c.zrem(self.keys.xb_expiry(), sub_ids).await
    }

    /// Adds a number to the pool; false when it is known already.
    pub async fn import_number(
        &self,
        number: &str,
        platform: u32,
        pool: u32,
        region: u32,
        now: u64,
    ) -> redis::RedisResult<bool> {
        let mut c = self.conn().await?;
        let n: i64 = IMPORT
            .arg(self.prefix())
            .arg(number)
            .arg(platform)
            .arg(pool)
            .arg(region)
            .arg(now)
            .invoke_async(&mut c)
            .await?;
        Ok(n == 1)
    }

    /// The pool's record of `number`, if known.
    pub async fn number(&self, number: &str) -> redis::RedisResult<Option<NumberRecord>> {
        let mut c = self.conn().await?;
        let h: HashMap<String, String> = c.hgetall(self.keys.number(number)).await?;
        if h.is_empty() {
            return Ok(None);
        }
        let f = |k: &str| h.get(k).cloned().unwrap_or_default();
        Ok(Some(NumberRecord {
            number: number.to_owned(),
            platform_id: f("platformId"),
            pool_id: f("poolId"),
            region_id: f("regionId"),
            number_state: f("numberState"),
            bind_state: f("bindState"),
            user_id: f("userId"),
            tel_a: f("telA"),
            sub_id: f("subId"),
        }))
    }

    /// The numbers `user` holds: AX (by platform) and the temporary one.
    pub async fn numbers_of(&self, user: u64) -> redis::RedisResult<Vec<(String, Kind)>> {
        let mut c = self.conn().await?;
        let ax: HashMap<String, String> = c.hgetall(self.keys.user_ax(user)).await?;
        let mut out: Vec<(String, Kind)> = ax.into_values().map(|n| (n, Kind::Ax)).collect();
        out.sort();
        if let Some(f) = c
            .get::<_, Option<String>>(self.keys.user_fault(user))
            .await?
        {
            out.push((f, Kind::Fault));
        }
        Ok(out)
    }

    /// Every platform id that has numbers.
    pub async fn platforms(&self) -> redis::RedisResult<Vec<String>> {
        let mut c = self.conn().await?;
        let mut v: Vec<String> = c.smembers(self.keys.platforms()).await?;
        v.sort();
        Ok(v)
    }

    /// Every number of a platform.
    pub async fn pool_numbers(&self, platform: &str) -> redis::RedisResult<Vec<String>> {
        let mut c = self.conn().await?;
        let mut v: Vec<String> = c.smembers(self.keys.pool(platform)).await?;
        v.sort();
        Ok(v)
    }

    /// The user's current phone (`PrivateNumber_user_phone`), the A number
    /// of an AX binding.
    pub async fn user_phone(&self, user: u64) -> redis::RedisResult<Option<String>> {
        let mut c = self.conn().await?;
        c.hget(self.keys.user_phone(), user).await
    }

    /// `PrivateNumber_user_axs[user]`, as stored.
    pub async fn user_axs(&self, user: u64) -> redis::RedisResult<Option<String>> {
        let mut c = self.conn().await?;
        c.hget(self.keys.user_axs(), user).await
    }

    /// Takes the simulated carrier's failure switch for `op`, if set.
    pub async fn take_simulated_failure(&self, op: &str) -> redis::RedisResult<Option<String>> {
        let mut c = self.conn().await?;
        let key = self.keys.simulated_failures();
        let v: Option<String> = c.hget(&key, op).await?;
        if v.is_some() {
            let _: () = c.hdel(&key, op).await?;
        }
        Ok(v)
    }

    /// Claims the request `fingerprint` under `token` for `lease_ms`, or
    /// finds it in progress (claimed under another token), or finds the
    /// record of the claim `waited` on, or a stored answer still true.
    pub async fn claim_request(
        &self,
        fingerprint: &str,
        token: &str,
        lease_ms: u64,
        waited: &str,
    ) -> redis::RedisResult<Claim> {
        let mut c = self.conn().await?;
        let r: Vec<String> = REQUEST_CLAIM
            .arg(self.prefix())
            .arg(self.keys.api_replay(fingerprint))
            .arg(token)
            .arg(lease_ms)
            .arg(waited)
            .invoke_async(&mut c)
            .await?;
        let mut r = r.into_iter();
        match (r.next().as_deref(), r.next()) {
            (Some("answer"), Some(stored)) => Ok(Claim::Answer(stored)),
            (Some("wait"), Some(other)) => Ok(Claim::Wait(other)),
            (Some("claimed"), _) => Ok(Claim::Claimed),
            _ => Err(redis::RedisError::from((
                redis::ErrorKind::UnexpectedReturnType,
                "request_claim.lua answered neither claimed, wait nor answer",
            ))),
        }
    }

    /// Ends the claim `token` of a request: its record kept for `ttl_ms`.
    pub async fn finish_request(
        &self,
        fingerprint: &str,
        token: &str,
        record: &str,
        ttl_ms: u64,
    ) -> redis::RedisResult<()> {
        let mut c = self.conn().await?;
        let _: i64 = REQUEST_DONE
            .arg(self.prefix())
            .arg(self.keys.api_replay(fingerprint))
            .arg(token)
            .arg(record)
            .arg(ttl_ms)
            .invoke_async(&mut c)
            .await?;
        Ok(())
    }
}
