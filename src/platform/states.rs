//! Reading and changing states: QueryAgentNumbers, UpdateNumberState (a
//! number's state, or the transfer of a user's numbers), the three fault-mode
//! operations, and QueryUserAxs.

use serde_json::{Value, json};

use super::{
    Platform,
    api::{self, Answer, Params, Step},
    ax::{redis_failed, strings},
    carrier::platform_name,
};
use crate::{phone, store::platform::NumberRecord};

impl Platform {
    /// QueryAgentNumbers (seed 3): the user's numbers, as the seed shows them.
    pub async fn query_agent_numbers(&self, p: &Params) -> Step<Answer> {
        let user = p.id("userid")?;
        let numbers = self.store.numbers_of(user).await.map_err(redis_failed)?;
        let mut body = Vec::new();
        for (x, _) in numbers {
            if let Some(r) = self.store.number(&x).await.map_err(redis_failed)? {
                body.push(agent_number(user, &r));
            }
        }
        Ok(Answer::ok(body))
    }

    /// UpdateNumberState (seeds 4 and 6): with `private_number` and `state`,
    /// sets the number's state; with `userid` and `tuserid`, moves the user's
    /// numbers to the account `tuserid`.
    pub async fn update_number_state(&self, p: &Params) -> Step<Answer> {
        if p.has("private_number") {
            let x = p.virtual_number("private_number")?;
            let state = p.uint_or("state", u64::MAX)?;
            if state == u64::MAX {
                return Ok(Answer::fail("缺少参数[state]"));
            }
            if api::number_state_label(&state.to_string()) == "未知" {
                return Ok(Answer::fail(format!(
                    "参数[state]不是号码状态(字典1527: 0 正常, 1 停用, 2 故障, 3 回收): {state}"
                )));
            }
            let known = self
                .store
                .set_number_state(&x, state as u32)
                .await
                .map_err(redis_failed)?;
            if !known {
                return Ok(Answer::fail("隐私号不存在于号码池"));
            }
            return Ok(Answer::ok(vec![json!("True")]));
        }
        let from = p.id("userid")?;
        let to = p.id("tuserid")?;
        if from == to {
            return Ok(Answer::fail("参数[tuserid]与[userid]相同"));
        }
        let moved = self.store.transfer(from, to).await.map_err(redis_failed)?;
        Ok(Answer::ok(strings(moved)))
    }

    /// TemporaryBindNumber (seed 11), TemporaryUnBindNumber (seed 12),
    /// TemporaryUnBindNumberToAli (seed 13).
    pub async fn fault_mode(&self, p: &Params, op: FaultOp) -> Step<Answer> {
        let targets = self.fault_targets(p, op).await?;
        let mut changed = Vec::new();
        for r in targets {
            match op {
                FaultOp::Enter if r.bind_state == "1" => {
                    self.store
                        .set_bind_state(&r.number, "5")
                        .await
                        .map_err(redis_failed)?;
                    changed.push(r.number);
                }
                FaultOp::Leave if r.bind_state == "5" => {
                    self.store
                        .set_bind_state(&r.number, "1")
                        .await
                        .map_err(redis_failed)?;
                    changed.push(r.number);
                }
                FaultOp::UnbindAtCarrier if r.bind_state == "5" => {
                    let Some(carrier) = self.carriers.of(&r.platform_id) else {
                        continue;
                    };
                    if let Err(e) = carrier.unbind(&r.sub_id, &r.number).await {
                        tracing::warn!(number = %r.number, error = %e, "fault-mode unbind refused by the carrier");
                        continue;
                    }
                    let user: u64 = r.user_id.parse().unwrap_or(0);
                    self.store
                        .unbind_number(user, &r.number, false)
                        .await
                        .map_err(redis_failed)?;
                    changed.push(r.number);
                }
                _ => {}
            }
        }
        Ok(Answer::ok(strings(changed)))
    }

    /// The bindings a fault-mode operation applies to: the user's, one
    /// number, or (no parameter) every number of every platform.
    async fn fault_targets(&self, p: &Params, op: FaultOp) -> Step<Vec<NumberRecord>> {
        let numbers: Vec<String> = if p.has("private_number") {
            vec![p.virtual_number("private_number")?]
        } else if p.has("userid") {
            let user = p.id("userid")?;
            let held = self.store.numbers_of(user).await.map_err(redis_failed)?;
            held.into_iter().map(|(x, _)| x).collect()
        } else if op == FaultOp::UnbindAtCarrier {
            // Seed 13 names userid and private_number: one of them is needed.
            return Err(Answer::fail("缺少参数[userid]或[private_number]"));
        } else {
            let mut all = Vec::new();
            for platform in self.store.platforms().await.map_err(redis_failed)? {
                all.extend(
                    self.store
                        .pool_numbers(&platform)
                        .await
                        .map_err(redis_failed)?,
                );
            }
            all
        };
        let mut out = Vec::new();
        for x in numbers {
            if let Some(r) = self.store.number(&x).await.map_err(redis_failed)? {
                out.push(r);
            }
        }
        Ok(out)
    }

    /// QueryUserAxs: `PrivateNumber_user_axs[userid]`.
    pub async fn query_user_axs(&self, p: &Params) -> Step<Answer> {
        let user = p.id("userid")?;
        let stored = self.store.user_axs(user).await.map_err(redis_failed)?;
        let body = stored
            .and_then(|s| serde_json::from_str::<Value>(&s).ok())
            .map(|v| vec![v])
            .unwrap_or_default();
        Ok(Answer::ok(body))
    }
}

/// The three fault-mode operations.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FaultOp {
    /// Bindings enter fault mode (bind state 5).
    Enter,
    /// Back to bound (1), locally only.
    Leave,
    /// Every fault-mode binding is ended at its carrier.
    UnbindAtCarrier,
}

/// One number as QueryAgentNumbers shows it (the seed's fields).
fn agent_number(user: u64, r: &NumberRecord) -> Value {
    let int = |s: &str| s.parse::<u64>().unwrap_or(0);
    json!({
        "bindState": api::bind_state_label(&r.bind_state),
        "numberState": api::number_state_label(&r.number_state),
        "plateformid": int(&r.platform_id),
        "platform_name": platform_name(&r.platform_id),
        "userId": user,
        "userName": "",
        "tuserName": "",
        "tuserId": 0,
        "pool_id": int(&r.pool_id),
        "ax_numA": if r.tel_a.is_empty() { String::new() } else { phone::mask(&r.tel_a).to_string() },
        "ax_number": r.number,
        "ax_subid": r.sub_id,
    })
}
