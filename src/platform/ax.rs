//! AX bindings (an agent's own privacy number): bind, bind by platform, the
//! temporary number of fault mode, unbind, release, change of A.
//!
//! Every bind takes the bind lock first (`Store::reserve`: one Lua script),
//! then calls the carrier, then commits; a carrier failure undoes the
//! reservation, so no half-made binding stays. A process that dies between
//! the carrier's answer and the commit leaves the reservation (bind state 2,
//! 绑定中); the user's next bind of that platform resumes it: the carrier is
//! asked again and the binding committed.

use serde_json::{Value, json};

use super::{
    Platform,
    api::{Answer, ID_MAX, Params, Step},
    once::{Done, Hold},
};
use crate::{
    handlers::now_epoch,
    store::platform::{Kind, Reservation, Unbound},
};

/// How long a reservation (bind state 2) counts as a bind in progress: a
/// bind of the same number meanwhile is told to wait instead of calling the
/// carrier a second time; an older one was left by a process that died and
/// is resumed. Above the longest carrier call.
const RESERVATION_LEASE_SECS: u64 = 60;

/// The number a bind made, with what a stored answer depends on.
pub struct Bound {
    pub number: String,
    pub sub_id: String,
    pub platform: String,
}

/// How a bind picks its number.
pub enum Pick {
    /// `private_number`, given.
    Given(String),
    /// A free number of this platform.
    Free(String),
}

impl Platform {
    /// BindAxNumber (seed 1) and BindAxNumberByUserPhone (seed 10).
    pub async fn bind_ax_number(&self, p: &Params, by_user_phone: bool) -> Step<Answer> {
        let user = p.id("userid")?;
        let region = p.int_or("regionid", 0, ID_MAX)?;
        let x = p.virtual_number("private_number")?;
        let given_a = if by_user_phone {
            Some(p.real_mobile("userPhone")?)
        } else {
            None
        };
        let op = if by_user_phone {
            "BindAxNumberByUserPhone"
        } else {
            "BindAxNumber"
        };
        let fingerprint = p.fingerprint(
            op,
            &[
                ("userid", user.to_string()),
                ("regionid", region.to_string()),
                ("private_number", x.clone()),
                ("userphone", given_a.clone().unwrap_or_default()),
            ],
        );
        self.once(&fingerprint, async {
            let a = match given_a {
                Some(a) => a,
                None => self.phone_of(user).await?,
            };
            let bound = self.bind(user, Pick::Given(x), &a, Kind::Ax).await?;
            Ok(Answer::ok(vec![json!(bound.number)]).into())
        })
        .await
    }

    /// BindAxByplatform (seed 16): a free number of the platform.
    pub async fn bind_ax_by_platform(&self, p: &Params) -> Step<Answer> {
        let user = p.id("userId")?;
        let platform = p.id("platformID")?.to_string();
        let fingerprint = p.fingerprint(
            "BindAxByplatform",
            &[
                ("userid", user.to_string()),
                ("platformid", platform.clone()),
            ],
        );
        self.once(&fingerprint, async {
            let a = self.phone_of(user).await?;
            match self.bind(user, Pick::Free(platform), &a, Kind::Ax).await {
                Ok(bound) => Ok(Done {
                    until: 0,
                    holds: self.holds_of(user, &bound, Kind::Ax),
                    answer: Answer::Ok {
                        body: vec![json!(true)],
                        message: format!("小号分配成功:{}", bound.number),
                    },
                }),
                Err(Answer::Fail { message, .. }) if message == HAS_NUMBER => Ok(Answer::Fail {
                    message,
                    body: vec![json!(false)],
                }
                .into()),
                Err(other) => Err(other),
            }
        })
        .await
    }

    /// UserBindLinShiNumber (seed 17): a temporary number in fault mode.
    pub async fn bind_temporary(&self, p: &Params) -> Step<Answer> {
        let user = p.id("userId")?;
        let platform = p.id("platformID")?.to_string();
        let fingerprint = p.fingerprint(
            "UserBindLinShiNumber",
            &[
                ("userid", user.to_string()),
                ("platformid", platform.clone()),
            ],
        );
        self.once(&fingerprint, async {
            let a = self.phone_of(user).await?;
            match self.bind(user, Pick::Free(platform), &a, Kind::Fault).await {
                Ok(bound) => Ok(Done {
                    until: 0,
                    holds: self.holds_of(user, &bound, Kind::Fault),
                    answer: Answer::ok(vec![json!(1)]),
                }),
                Err(Answer::Fail { message, .. }) if message == HAS_NUMBER => Ok(Answer::fail(
                    format!("内部错误[FAIL-5000-该用户[{user}]已经有故障绑定,不能再注册新的小号.]"),
                )
                .into()),
                Err(other) => Err(other),
            }
        })
        .await
    }

    /// What a bind's answer describes: the number is still this user's under
    /// this carrier subscription, and the user's record still names it.
    fn holds_of(&self, user: u64, bound: &Bound, kind: Kind) -> Vec<Hold> {
        let keys = self.store.keys();
        let number = keys.number(&bound.number);
        let mut holds = vec![
            Hold(number.clone(), "userId".into(), user.to_string()),
            Hold(number, "subId".into(), bound.sub_id.clone()),
        ];
        holds.push(match kind {
            Kind::Ax => Hold(
                keys.user_ax(user),
                bound.platform.clone(),
                bound.number.clone(),
            ),
            Kind::Fault => Hold(keys.user_fault(user), String::new(), bound.number.clone()),
        });
        holds
    }

    /// The bind lock, the carrier, the commit. Returns the number bound.
    async fn bind(&self, user: u64, pick: Pick, a: &str, kind: Kind) -> Step<Bound> {
        let (platform, number) = match &pick {
            Pick::Given(x) => ("", x.as_str()),
            Pick::Free(platform) => (platform.as_str(), ""),
        };
        if let Pick::Free(platform) = &pick
            && self.carriers.of(platform).is_none()
        {
            return Err(Answer::fail(format!(
                "平台[{platform}]不存在或未配置运营商"
            )));
        }
        let token = format!("{:016x}", rand::random::<u64>());
        let reservation = self
            .store
            .reserve(
                user,
                platform,
                number,
                now_epoch(),
                kind,
                &token,
                RESERVATION_LEASE_SECS,
            )
            .await
            .map_err(redis_failed)?;
        let (x, platform) = match reservation {
            Reservation::Reserved { number, platform }
            | Reservation::Resume { number, platform } => (number, platform),
            Reservation::Has(held) => {
                // A retry of the same bind, or a bind of the number the user
                // holds: the binding exists, so the answer is the number.
                if matches!(&pick, Pick::Given(x) if *x == held) {
                    return Ok(Bound {
                        number: held,
                        sub_id: String::new(),
                        platform: String::new(),
                    });
                }
                return Err(Answer::fail(HAS_NUMBER));
            }
            Reservation::Busy(_) => return Err(Answer::fail(BIND_IN_PROGRESS)),
            Reservation::Temporary(x) => {
                return Err(Answer::fail(format!(
                    "当前号码[{x}]是用户[{user}]的临时号码(故障模式),无法绑定为AX号码"
                )));
            }
            Reservation::NoneFree => return Err(Answer::fail("当前平台没有可分配的小号")),
            Reservation::UnknownNumber => return Err(Answer::fail("隐私号不存在于号码池")),
            Reservation::State(n) => {
                return Err(Answer::fail(format!("当前号码状态为[{n}]，无法绑定！")));
            }
        };
        let Some(carrier) = self.carriers.of(&platform) else {
            let _ = self.store.unreserve(user, &x, kind, &token).await;
            return Err(Answer::fail(format!(
                "平台[{platform}]不存在或未配置运营商"
            )));
        };
        match carrier.bind_ax(&x, a).await {
            Ok(bound) => {
                let committed = self
                    .store
                    .commit_binding(user, &x, &bound.sub_id, a, now_epoch(), kind, &token)
                    .await
                    .map_err(redis_failed)?;
                if !committed {
                    let _ = carrier.unbind(&bound.sub_id, &x).await;
                    return Err(Answer::fail("绑定失败-号码已被释放,请重试"));
                }
                Ok(Bound {
                    number: x,
                    sub_id: bound.sub_id,
                    platform,
                })
            }
            Err(e) => {
                tracing::warn!(number = %x, error = %e, "carrier refused the AX binding: reservation undone");
                self.store
                    .unreserve(user, &x, kind, &token)
                    .await
                    .map_err(redis_failed)?;
                Err(Answer::fail(format!("绑定失败-{e}")))
            }
        }
    }

    /// UnBindAgentNumber (seed 2) and ReleaseTelX (seed 9).
    pub async fn unbind_ax(&self, p: &Params, release: bool) -> Step<Answer> {
        let user = if release {
            p.id("userId")?
        } else {
            p.id("userid")?
        };
        let x = p.virtual_number("private_number")?;
        let op = if release {
            "ReleaseTelX"
        } else {
            "UnBindAgentNumber"
        };
        let fingerprint = p.fingerprint(
            op,
            &[("userid", user.to_string()), ("private_number", x.clone())],
        );
        self.once(&fingerprint, async {
            self.unbind_ax_now(user, &x, release).await.map(Done::from)
        })
        .await
    }

    async fn unbind_ax_now(&self, user: u64, x: &str, release: bool) -> Step<Answer> {
        let x = x.to_owned();
        let record = self.store.number(&x).await.map_err(redis_failed)?;
        let Some(record) = record.filter(|r| r.user_id == user.to_string()) else {
            return Ok(if release {
                Answer::ok(Vec::new())
            } else {
                Answer::fail(NO_BINDING)
            });
        };
        let bound = matches!(record.bind_state.as_str(), "1" | "5");
        if !bound && !release {
            return Ok(Answer::fail(NO_BINDING));
        }
        if bound {
            let Some(carrier) = self.carriers.of(&record.platform_id) else {
                return Ok(Answer::fail(format!(
                    "平台[{}]不存在或未配置运营商",
                    record.platform_id
                )));
            };
            if let Err(e) = carrier.unbind(&record.sub_id, &x).await {
                return Ok(Answer::fail(format!("解绑失败-{e}")));
            }
        }
        // Only the binding read above, which the carrier just ended: one
        // that was unbound and bound again meanwhile stays.
        let unbound = self
            .store
            .unbind_number(user, &x, release, &record.sub_id)
            .await
            .map_err(redis_failed)?;
        Ok(match unbound {
            Unbound::Done => Answer::ok(vec![json!(x)]),
            Unbound::NotTheUsers if release => Answer::ok(Vec::new()),
            Unbound::NotTheUsers => Answer::fail(NO_BINDING),
            Unbound::Changed => Answer::fail(BINDING_CHANGED),
        })
    }

    /// ChangeBindANumber (seed 8): the carrier's update of A, then ours.
    pub async fn change_a(&self, p: &Params) -> Step<Answer> {
        let user = p.id("userId")?;
        let x = p.virtual_number("private_number")?;
        let a = p.real_mobile("telA")?;
        let fingerprint = p.fingerprint(
            "ChangeBindANumber",
            &[
                ("userid", user.to_string()),
                ("private_number", x.clone()),
                ("tela", a.clone()),
            ],
        );
        self.once(&fingerprint, async {
            self.change_a_now(user, &x, &a).await.map(Done::from)
        })
        .await
    }

    async fn change_a_now(&self, user: u64, x: &str, a: &str) -> Step<Answer> {
        let (x, a) = (x.to_owned(), a.to_owned());
        let record = self.store.number(&x).await.map_err(redis_failed)?;
        let Some(record) = record.filter(|r| {
            r.user_id == user.to_string() && matches!(r.bind_state.as_str(), "1" | "5")
        }) else {
            return Ok(Answer::fail("更换A号码失败-当前隐私号不存在绑定关系。"));
        };
        let Some(carrier) = self.carriers.of(&record.platform_id) else {
            return Ok(Answer::fail(format!(
                "平台[{}]不存在或未配置运营商",
                record.platform_id
            )));
        };
        if let Err(e) = carrier.update_a(&record.sub_id, &x, &a).await {
            return Ok(Answer::fail(format!("更换A号码失败-{e}")));
        }
        let changed = self
            .store
            .set_tel_a(&x, user, &record.sub_id, &a)
            .await
            .map_err(redis_failed)?;
        if !changed {
            return Ok(Answer::fail("更换A号码失败-号码的绑定已变化,请重试"));
        }
        Ok(Answer::ok(Vec::new()))
    }

    /// The user's current phone: the A of an AX binding.
    async fn phone_of(&self, user: u64) -> Step<String> {
        self.store
            .user_phone(user)
            .await
            .map_err(redis_failed)?
            .ok_or_else(|| Answer::fail(format!("用户[{user}]没有登记手机号,无法绑定")))
    }
}

/// The seed's answer to a user who holds a number already.
pub const HAS_NUMBER: &str = "您存在绑定的小号,不能再绑定新的小号";
/// A bind of the same number is under way (its reservation is younger than
/// [`RESERVATION_LEASE_SECS`]).
pub const BIND_IN_PROGRESS: &str = "绑定失败-该号码正在绑定中,请稍后重试";
/// The binding an unbind read was ended and another made meanwhile.
pub const BINDING_CHANGED: &str = "解绑失败-号码的绑定已变化,请重试";
/// The seed's answer to an unbind without a binding.
pub const NO_BINDING: &str = "解绑失败-当前隐私号不存在绑定关系。";

/// Redis failed: the operation changed nothing it could not finish later.
pub fn redis_failed(e: redis::RedisError) -> Answer {
    tracing::warn!(error = %e, "platform API: Redis failed");
    Answer::fail("内部错误[Redis不可用,请稍后重试]")
}

/// `body` as JSON values.
pub fn strings(body: Vec<String>) -> Vec<Value> {
    body.into_iter().map(Value::String).collect()
}
