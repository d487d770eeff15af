//! An employee's profile: the B-number blacklists and the phone history.

use std::sync::LazyLock;

use redis::{AsyncCommands, Script};

use super::Store;

static PHONE_CHANGE: LazyLock<Script> =
    LazyLock::new(|| Script::new(include_str!("scripts/phone_change.lua")));

impl Store {
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
}
