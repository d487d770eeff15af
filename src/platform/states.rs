//! Reading and changing states: QueryAgentNumbers, UpdateNumberState (a
//! number's state, or the transfer of a user's numbers), the three fault-mode
//! operations, and QueryUserAxs.

use serde_json::{Value, json};

use super::{
    Platform,
    api::{self, Answer, Params, Step},
    ax::{redis_failed, strings},
    carrier::platform_name,
    once::Done,
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
        // One of the two operations, never both: a transfer that also names
        // a number would otherwise set the number's state and ignore the
        // accounts (found by schemathesis).
        if p.has("private_number") && (p.has("userid") || p.has("tuserid")) {
            return Ok(Answer::fail(
                "参数[private_number]与[userid]/[tuserid]不能同时给出",
            ));
        }
        if p.has("private_number") {
            let x = p.virtual_number("private_number")?;
            let state = match p.int("state", 3) {
                Err(Answer::Fail { message, .. }) if message.contains("超出范围") => {
                    return Ok(Answer::fail(format!(
                        "参数[state]不是号码状态(字典1527: 0 正常, 1 停用, 2 故障, 3 回收): {}",
                        p.get("state").unwrap_or_default()
                    )));
                }
                other => other?,
            };
            // 0..=3 after the check above: u8 holds it.
            let state = u8::try_from(state).unwrap_or(u8::MAX);
            let fingerprint = p.fingerprint(
                "UpdateNumberState",
                &[("private_number", x.clone()), ("state", state.to_string())],
            );
            return self
                .once(&fingerprint, async {
                    let known = self
                        .store
                        .set_number_state(&x, u32::from(state))
                        .await
                        .map_err(redis_failed)?;
                    Ok(if known {
                        Answer::ok(vec![json!("True")])
                    } else {
                        Answer::fail("隐私号不存在于号码池")
                    }
                    .into())
                })
                .await;
        }
        let from = p.id("userid")?;
        let to = p.id("tuserid")?;
        if from == to {
            return Ok(Answer::fail("参数[tuserid]与[userid]相同"));
        }
        let fingerprint = p.fingerprint(
            "UpdateNumberState",
            &[("userid", from.to_string()), ("tuserid", to.to_string())],
        );
        self.once(&fingerprint, async {
            let moved = self.store.transfer(from, to).await.map_err(redis_failed)?;
            Ok(Answer::ok(strings(moved)).into())
        })
        .await
    }

    /// TemporaryBindNumber (seed 11), TemporaryUnBindNumber (seed 12),
    /// TemporaryUnBindNumberToAli (seed 13).
    pub async fn fault_mode(&self, p: &Params, op: FaultOp) -> Step<Answer> {
        // Every parameter given filters (seed 11-13): a number and a user
        // select that number only while that user holds it.
        // A filter given empty (`userid=`, `"userid": null`) is refused:
        // dropped, it would select every number.
        let user = match p.filter("userid")? {
            Some(_) => Some(p.id("userid")?),
            None => None,
        };
        let number = match p.filter("private_number")? {
            Some(_) => Some(p.virtual_number("private_number")?),
            None => None,
        };
        if op == FaultOp::UnbindAtCarrier {
            p.int_or("regionid", 0, api::ID_MAX)?;
            if user.is_none() && number.is_none() {
                // Seed 13 names userid and private_number: one of them is needed.
                return Err(Answer::fail("缺少参数[userid]或[private_number]"));
            }
        }
        let name = match op {
            FaultOp::Enter => "TemporaryBindNumber",
            FaultOp::Leave => "TemporaryUnBindNumber",
            FaultOp::UnbindAtCarrier => "TemporaryUnBindNumberToAli",
        };
        let fingerprint = p.fingerprint(
            name,
            &[
                ("userid", user.map(|u| u.to_string()).unwrap_or_default()),
                ("private_number", number.clone().unwrap_or_default()),
            ],
        );
        self.once(&fingerprint, async {
            self.fault_mode_now(user, number.as_deref(), op)
                .await
                .map(Done::from)
        })
        .await
    }

    async fn fault_mode_now(
        &self,
        user: Option<u64>,
        number: Option<&str>,
        op: FaultOp,
    ) -> Step<Answer> {
        let targets = self.fault_targets(user, number).await?;
        let mut changed = Vec::new();
        for r in targets {
            // The state is read above and changed below in one atomic step
            // each (`set_fault_state`): a release in between wins.
            let (from, to) = match op {
                FaultOp::Enter => ("1", "5"),
                FaultOp::Leave => ("5", "1"),
                FaultOp::UnbindAtCarrier => ("5", "0"),
            };
            if r.bind_state != from || r.user_id.is_empty() {
                continue;
            }
            if op == FaultOp::UnbindAtCarrier {
                let Some(carrier) = self.carriers.of(&r.platform_id) else {
                    continue;
                };
                let Ok(holder) = r.user_id.parse::<u64>() else {
                    continue;
                };
                if let Err(e) = carrier.unbind(&r.sub_id, &r.number).await {
                    tracing::warn!(number = %r.number, error = %e, "fault-mode unbind refused by the carrier");
                    continue;
                }
                let unbound = self
                    .store
                    .unbind_number(holder, &r.number, false, &r.sub_id)
                    .await
                    .map_err(redis_failed)?;
                if unbound == crate::store::platform::Unbound::Done {
                    changed.push(r.number);
                }
                continue;
            }
            let done = self
                .store
                .set_fault_state(&r.number, &r.user_id, from, to)
                .await
                .map_err(redis_failed)?;
            if done {
                changed.push(r.number);
            }
        }
        Ok(Answer::ok(strings(changed)))
    }

    /// The bindings a fault-mode operation applies to: one number (while
    /// `user` holds it, when given), the user's, or (neither given) every
    /// number of every platform.
    async fn fault_targets(
        &self,
        user: Option<u64>,
        number: Option<&str>,
    ) -> Step<Vec<NumberRecord>> {
        let numbers: Vec<String> = if let Some(x) = number {
            vec![x.to_owned()]
        } else if let Some(user) = user {
            let held = self.store.numbers_of(user).await.map_err(redis_failed)?;
            held.into_iter().map(|(x, _)| x).collect()
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
            if let Some(r) = self.store.number(&x).await.map_err(redis_failed)?
                && user.is_none_or(|u| r.user_id == u.to_string())
            {
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
