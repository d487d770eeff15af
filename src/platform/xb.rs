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
        loop {
            match self.expire_once().await {
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
            tokio::select! {
                _ = stop.cancelled() => return,
                _ = tokio::time::sleep(every) => {}
            }
        }
    }

    /// One pass: claims what is due, publishes each unbind, forgets it once
    /// confirmed. Returns how many were published.
    pub async fn expire_once(&self) -> anyhow::Result<usize> {
        let due = self
            .store
            .claim_expired_xb(now_epoch(), EXPIRY_LEASE_SECS, 100)
            .await?;
        let mut published = 0;
        for (sub_id, binding) in due {
            let Some(message) = mq108(&binding) else {
                // Unbound already (a carrier callback came), or unreadable.
                self.store.forget_xb_expiry(&sub_id).await?;
                continue;
            };
            self.mq
                .publish(&self.settings.queues.xb_unbind.name, message.as_bytes())
                .await?;
            self.store.forget_xb_expiry(&sub_id).await?;
            self.metrics.platform_xb_expired();
            published += 1;
        }
        Ok(published)
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
