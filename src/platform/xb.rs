//! XB bindings: GetCallNumber binds the agent's own X to the customer's B for
//! `expiration` seconds; when that passes and no unbind callback came, the
//! platform publishes the seed's MQ108 unbind itself, once per binding across
//! replicas, and the worker's unbind path applies it.

use std::{sync::Arc, time::Duration};

use serde_json::json;
use tokio_util::sync::CancellationToken;

use super::{
    Platform,
    api::{self, Answer, ID_MAX, Params, Step},
    ax::redis_failed,
    once::{Done, Hold},
};
use crate::{handlers::now_epoch, store::platform::Kind};

/// How long a replica holds an expired binding it claimed before another may
/// claim it (its unbind not confirmed meanwhile).
const EXPIRY_LEASE_SECS: u64 = 30;
/// XB bindings claimed and published per expiry pass (their confirms are
/// awaited side by side; a full pass is followed by the next at once).
pub const EXPIRY_BATCH: usize = 100;

/// The longest XB binding GetCallNumber makes: a year, as an AX binding at
/// the carrier (docs/platform-api.md, "Parameters and their ranges").
pub const MAX_EXPIRATION_SECS: u64 = 365 * 24 * 3600;

/// GetCallNumber's checked parameters.
struct XbCall {
    xbid: u64,
    user: u64,
    map_class: u64,
    map_id: u64,
    contact_class: u64,
    contact: u64,
    b: String,
    expiration: u64,
}

impl Platform {
    /// GetCallNumber (seed 5). Every failure's DataBody holds the given
    /// Mobile (as given, also when it is not a mobile), the parameter checks
    /// included.
    pub async fn get_call_number(&self, p: &Params) -> Step<Answer> {
        let mobile_echo = p.get("Mobile").unwrap_or_default().to_owned();
        let fail = |a: Answer| Answer::Fail {
            message: message_of(a),
            body: vec![json!(mobile_echo)],
        };
        let checked = (|| {
            Ok::<_, Answer>((
                p.int_or("xbid", 0, ID_MAX)?,
                p.id("userid")?,
                p.int("Mapclassid", ID_MAX)?,
                p.int("Mapid", ID_MAX)?,
                p.int_or("Contactmapclassid", 0, ID_MAX)?,
                p.int_or("Contactid", 0, ID_MAX)?,
                p.real_mobile("Mobile")?,
                p.int_or(
                    "expiration",
                    self.settings.platform.xb_default_expiration_secs,
                    MAX_EXPIRATION_SECS,
                )?,
            ))
        })();
        let (xbid, user, map_class, map_id, contact_class, contact, b, expiration) =
            checked.map_err(fail)?;
        let expiration = if expiration == 0 {
            self.settings.platform.xb_default_expiration_secs
        } else {
            expiration
        };
        let fingerprint = p.fingerprint(
            "GetCallNumber",
            &[
                ("xbid", xbid.to_string()),
                ("userid", user.to_string()),
                ("mapclassid", map_class.to_string()),
                ("mapid", map_id.to_string()),
                ("contactmapclassid", contact_class.to_string()),
                ("contactid", contact.to_string()),
                ("mobile", b.clone()),
                ("expiration", expiration.to_string()),
            ],
        );
        let call = XbCall {
            xbid,
            user,
            map_class,
            map_id,
            contact_class,
            contact,
            b,
            expiration,
        };
        self.once(&fingerprint, self.bind_xb(call))
            .await
            .map_err(fail)
    }

    /// GetCallNumber's work, once its parameters are checked.
    async fn bind_xb(&self, c: XbCall) -> Step<Done> {
        let user = c.user;
        let fail = |message: String| Answer::fail(message);
        // The agent's own number serves the call: an AX number (bound ones
        // first), else the temporary number of fault mode.
        let held = self.store.numbers_of(user).await.map_err(redis_failed)?;
        let mut chosen = None;
        for (x, kind) in &held {
            if let Some(r) = self.store.number(x).await.map_err(redis_failed)? {
                if r.user_id != user.to_string() {
                    continue;
                }
                let rank = match (kind, r.bind_state.as_str()) {
                    (Kind::Ax, "1") => 0,
                    (Kind::Fault, "5") | (Kind::Ax, "5") => 1,
                    (Kind::Ax, "0") => 2,
                    _ => continue,
                };
                if chosen.as_ref().is_none_or(|(best, _)| rank < *best) {
                    chosen = Some((rank, r));
                }
            }
        }
        let Some((_, number)) = chosen else {
            return Err(fail(format!("用户[{user}]没有可用的小号,请先绑定小号")));
        };
        let Some(carrier) = self.carriers.of(&number.platform_id) else {
            return Err(fail(format!(
                "平台[{}]不存在或未配置运营商",
                number.platform_id
            )));
        };
        let bound = carrier
            .bind_xb(&number.number, &c.b, c.expiration)
            .await
            .map_err(|e| fail(format!("绑定失败-{e}")))?;
        let now = now_epoch();
        let expires_at = now
            .checked_add(c.expiration)
            .ok_or_else(|| fail("参数[expiration]超出范围".into()))?;
        let binding = json!({
            "subId": bound.sub_id,
            "platId": number.platform_id.parse::<u64>().ok(),
            "userId": user,
            "telX": number.number,
            "telA": number.tel_a,
            "telB": c.b,
            "mapClassId": c.map_class,
            "mapId": c.map_id,
            "contactMapClassId": c.contact_class,
            "contactId": c.contact,
            "xbid": c.xbid,
            "boundAt": now,
            "expiresAt": expires_at,
        })
        .to_string();
        self.store
            .record_xb(&bound.sub_id, &binding, expires_at, user, &number.number)
            .await
            .map_err(redis_failed)?;
        self.simulate_call_record(&number.platform_id, &bound.sub_id);
        Ok(Done {
            // A repeat gets this answer while the binding is live and not
            // yet expired.
            until: expires_at,
            holds: vec![Hold(self.store.keys().xb(), bound.sub_id, binding)],
            answer: Answer::ok(vec![json!({"phone": number.number, "callbackId": c.xbid})]),
        })
    }

    /// With `[platform.simulated] call_record_after_ms`, the simulated
    /// carrier reports a call on the new binding, as a carrier would.
    fn simulate_call_record(&self, platform: &str, sub_id: &str) {
        let after = self.settings.platform.simulated.call_record_after_ms;
        let simulated = self.settings.platform.carriers.get(platform)
            == Some(&crate::config::CarrierKind::Simulated);
        if after == 0 || !simulated {
            return;
        }
        let (mq, queue) = (
            Arc::clone(&self.mq),
            self.settings.queues.call_record.name.clone(),
        );
        let record = json!({"platId": platform.parse::<u64>().unwrap_or(0), "subId": sub_id, "callId": format!("sim-{sub_id}"), "callType": 0}).to_string();
        tokio::spawn(async move {
            tokio::time::sleep(Duration::from_millis(after)).await;
            if let Err(e) = mq.publish(&queue, record.as_bytes()).await {
                tracing::warn!(error = %format!("{e:#}"), "simulated call record not published");
            }
        });
    }

    /// Publishes the MQ108 unbind of every expired XB binding, every
    /// `xb_expiry_interval_ms`, until `stop`.
    pub async fn expire_xb_bindings(self: Arc<Self>, stop: CancellationToken) {
        let every = Duration::from_millis(self.settings.platform.xb_expiry_interval_ms.max(10));
        // Logged once per change: the first failure (and a different one)
        // at warn, the same again at debug, the recovery at info.
        let mut failing: Option<String> = None;
        let max_rate = self.settings.platform.xb_expiry_max_per_sec.max(1) as f64;
        loop {
            let pass = std::time::Instant::now();
            let result = self.expire_once().await;
            // A full batch: more may be due (a storm of bindings made for
            // the same expiry): the next pass at once, not after the interval.
            let full = matches!(result, Ok(n) if n >= EXPIRY_BATCH);
            match result {
                Err(e) => {
                    let error = format!("{e:#}");
                    if failing.as_deref() == Some(error.as_str()) {
                        tracing::debug!(%error, "XB expiry still failing");
                    } else {
                        tracing::warn!(%error, "XB expiry failed: trying again every interval");
                    }
                    failing = Some(error);
                }
                Ok(_) if failing.take().is_some() => tracing::info!("XB expiry works again"),
                Ok(_) => {}
            }
            if full && !stop.is_cancelled() {
                // Paced to `xb_expiry_max_per_sec`: a storm leaves the CPU
                // it shares with the API room to answer.
                let floor = Duration::from_secs_f64(EXPIRY_BATCH as f64 / max_rate);
                tokio::select! {
                    _ = stop.cancelled() => return,
                    _ = tokio::time::sleep(floor.saturating_sub(pass.elapsed())) => {}
                }
                continue;
            }
            tokio::select! {
                _ = stop.cancelled() => return,
                _ = tokio::time::sleep(every) => {}
            }
        }
    }

    /// One pass: claims up to [`EXPIRY_BATCH`] due bindings, publishes
    /// their unbinds together (confirms awaited side by side), forgets each
    /// once confirmed. Returns how many it claimed; a failed publish leaves
    /// its binding claimed until the lease ends, then it is due again.
    pub async fn expire_once(&self) -> anyhow::Result<usize> {
        let due = self
            .store
            .claim_expired_xb(now_epoch(), EXPIRY_LEASE_SECS, EXPIRY_BATCH)
            .await?;
        let claimed = due.len();
        let queue = &self.settings.queues.xb_unbind.name;
        let publishes = due.into_iter().map(|(sub_id, binding)| async move {
            let Some(message) = mq108(&binding) else {
                // Unbound already (a carrier callback came), or unreadable.
                return (sub_id, Ok(false));
            };
            let r = self.mq.publish(queue, message.as_bytes()).await;
            (sub_id, r.map(|()| true))
        });
        let mut done = Vec::with_capacity(claimed);
        let mut first_error = None;
        for (sub_id, r) in futures_util::future::join_all(publishes).await {
            match r {
                Ok(published) => {
                    if published {
                        self.metrics.platform_xb_expired();
                    }
                    done.push(sub_id);
                }
                Err(e) => {
                    first_error.get_or_insert(e);
                }
            }
        }
        self.store.forget_xb_expiries(&done).await?;
        match first_error {
            Some(e) => Err(e),
            None => Ok(claimed),
        }
    }
}

/// The seed's MQ108 message for a binding's JSON (A and B masked as carriers
/// send them); None when there is no binding.
pub fn mq108(binding: &str) -> Option<String> {
    let v: serde_json::Value = serde_json::from_str(binding).ok()?;
    let text = |k: &str| {
        v.get(k)
            .and_then(|x| x.as_str())
            .unwrap_or_default()
            .to_owned()
    };
    let sub_id = match v.get("subId")? {
        serde_json::Value::String(s) => s.clone(),
        other => other.to_string(),
    };
    Some(
        json!({
            "platId": v.get("platId").cloned().unwrap_or(json!(0)),
            "telA": api::carrier_masked(&text("telA")),
            "telX": text("telX"),
            "telB": api::carrier_masked(&text("telB")),
            "subId": sub_id,
        })
        .to_string(),
    )
}

fn message_of(a: Answer) -> String {
    match a {
        Answer::Fail { message, .. } | Answer::Ok { message, .. } => message,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mq108_has_the_seeds_shape() {
        let m = mq108(r#"{"subId":"1000039976446302","platId":3,"userId":51218,"telX":"17111526089","telA":"13470110001","telB":"13700051234","mapId":7}"#).unwrap();
        let v: serde_json::Value = serde_json::from_str(&m).unwrap();
        assert_eq!(
            v,
            json!({"platId": 3, "telA": "1347011****", "telX": "17111526089", "telB": "1370005****", "subId": "1000039976446302"})
        );
        assert_eq!(mq108(""), None);
    }
}
