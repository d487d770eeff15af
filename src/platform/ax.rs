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
    api::{Answer, Params, Step},
};
use crate::{
    handlers::now_epoch,
    store::platform::{Kind, Reservation},
};

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
        p.uint_or("regionid", 0)?;
        let x = p.virtual_number("private_number")?;
        let a = if by_user_phone {
            p.real_mobile("userPhone")?
        } else {
            self.phone_of(user).await?
        };
        let bound = self.bind(user, Pick::Given(x), &a, Kind::Ax).await?;
        Ok(Answer::ok(vec![json!(bound)]))
    }

    /// BindAxByplatform (seed 16): a free number of the platform.
    pub async fn bind_ax_by_platform(&self, p: &Params) -> Step<Answer> {
        let user = p.id("userId")?;
        let platform = p.id("platformID")?.to_string();
        let a = self.phone_of(user).await?;
        match self.bind(user, Pick::Free(platform), &a, Kind::Ax).await {
            Ok(x) => Ok(Answer::Ok {
                body: vec![json!(true)],
                message: format!("小号分配成功:{x}"),
            }),
            Err(Answer::Fail { message, .. }) if message == HAS_NUMBER => Ok(Answer::Fail {
                message,
                body: vec![json!(false)],
            }),
            Err(other) => Err(other),
        }
    }

    /// UserBindLinShiNumber (seed 17): a temporary number in fault mode.
    pub async fn bind_temporary(&self, p: &Params) -> Step<Answer> {
        let user = p.id("userId")?;
        let platform = p.id("platformID")?.to_string();
        let a = self.phone_of(user).await?;
        match self.bind(user, Pick::Free(platform), &a, Kind::Fault).await {
            Ok(_) => Ok(Answer::ok(vec![json!(1)])),
            Err(Answer::Fail { message, .. }) if message == HAS_NUMBER => Ok(Answer::fail(
                format!("内部错误[FAIL-5000-该用户[{user}]已经有故障绑定,不能再注册新的小号.]"),
            )),
            Err(other) => Err(other),
        }
    }

    /// The bind lock, the carrier, the commit. Returns the number bound.
    async fn bind(&self, user: u64, pick: Pick, a: &str, kind: Kind) -> Step<String> {
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
        let reservation = self
            .store
            .reserve(user, platform, number, now_epoch(), kind)
            .await
            .map_err(redis_failed)?;
        let (x, platform) = match reservation {
            Reservation::Reserved { number, platform }
            | Reservation::Resume { number, platform } => (number, platform),
            Reservation::Has(held) => {
                // A retry of the same bind, or a bind of the number the user
                // holds: the binding exists, so the answer is the number.
                if matches!(&pick, Pick::Given(x) if *x == held) {
                    return Ok(held);
                }
                return Err(Answer::fail(HAS_NUMBER));
            }
            Reservation::NoneFree => return Err(Answer::fail("当前平台没有可分配的小号")),
            Reservation::UnknownNumber => return Err(Answer::fail("隐私号不存在于号码池")),
            Reservation::State(n) => {
                return Err(Answer::fail(format!("当前号码状态为[{n}]，无法绑定！")));
            }
        };
        let Some(carrier) = self.carriers.of(&platform) else {
            let _ = self.store.unreserve(user, &x, kind).await;
            return Err(Answer::fail(format!(
                "平台[{platform}]不存在或未配置运营商"
            )));
        };
        match carrier.bind_ax(&x, a).await {
            Ok(bound) => {
                let committed = self
                    .store
                    .commit_binding(user, &x, &bound.sub_id, a, now_epoch(), kind)
                    .await
                    .map_err(redis_failed)?;
                if !committed {
                    let _ = carrier.unbind(&bound.sub_id, &x).await;
                    return Err(Answer::fail("绑定失败-号码已被释放,请重试"));
                }
                Ok(x)
            }
            Err(e) => {
                tracing::warn!(number = %x, error = %e, "carrier refused the AX binding: reservation undone");
                self.store
                    .unreserve(user, &x, kind)
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
        self.store
            .unbind_number(user, &x, release)
            .await
            .map_err(redis_failed)?;
        Ok(Answer::ok(vec![json!(x)]))
    }

    /// ChangeBindANumber (seed 8): the carrier's update of A, then ours.
    pub async fn change_a(&self, p: &Params) -> Step<Answer> {
        let user = p.id("userId")?;
        let x = p.virtual_number("private_number")?;
        let a = p.real_mobile("telA")?;
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
        self.store.set_tel_a(&x, &a).await.map_err(redis_failed)?;
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
