//! The number map of the number-mapping API: PhoneToUID (a new unique id
//! per new number, the same one every later time) and UIDToPhone.

use std::sync::LazyLock;

use redis::{AsyncCommands, Script};

use super::{Conn, Store};
use crate::mapping;

static PHONE_TO_UID: LazyLock<Script> =
    LazyLock::new(|| Script::new(include_str!("scripts/phone_to_uid.lua")));
static HDEL_IF: LazyLock<Script> =
    LazyLock::new(|| Script::new(include_str!("scripts/hdel_if.lua")));

/// Candidate ids sent per new number; all of them being taken already
/// (26^7 ids per 3-digit prefix) only costs one more round trip.
const ID_CANDIDATES: usize = 4;

impl Store {
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
