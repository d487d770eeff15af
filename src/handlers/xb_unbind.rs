//! XB unbind callback (MQ108, `service_exchange1_privatenumberXNB`): the
//! carrier ended the binding `subId`. Moves the binding from
//! `PrivateNumber_xb` to `PrivateNumber_xb_unbound` (stamped `unboundAt`) and
//! clears the agent's `PrivateNumber_user_axs` field when it points at this XB
//! binding's X number, all in one script.

use serde_json::Value;

use super::{Ctx, HandlerError, Reason, fields::Fields, object};
use crate::{phone, store::UnbindResult};

/// `{"platId": 3, "telA": "1347011****", "telX": "17111526089", "telB": "1370005****", "subId": "..."}`
#[derive(Debug, Clone, PartialEq)]
pub struct XbUnbind {
    pub sub_id: String,
    /// Normalized; compared with the agent's `xNumber`.
    pub tel_x: String,
    pub plat_id: Option<u64>,
    /// May be masked; carried for logs, never used as a key.
    pub tel_a: Option<String>,
    pub tel_b: Option<String>,
}

pub fn parse(value: &Value) -> Result<XbUnbind, HandlerError> {
    let f = Fields(object(value)?);
    Ok(XbUnbind {
        sub_id: f.id(&["subId", "sub_id"])?,
        tel_x: f.full_number(&["telX"])?,
        plat_id: f.opt_uint(&["platId"])?,
        tel_a: f.opt_text(&["telA"])?,
        tel_b: f.opt_text(&["telB"])?,
    })
}

#[tracing::instrument(name = "xb_unbind", level = "debug", skip_all, fields(sub_id = %m.sub_id, tel_x = %phone::mask(&m.tel_x)))]
pub async fn apply(m: &XbUnbind, ctx: &Ctx) -> Result<&'static str, HandlerError> {
    let retention = ctx.settings.redis.unbound_retention_secs;
    match ctx
        .store
        .unbind_xb(&m.sub_id, &m.tel_x, super::now_epoch(), retention)
        .await?
    {
        UnbindResult::Unbound => Ok("unbound"),
        UnbindResult::AlreadyUnbound => Ok("already_unbound"),
        UnbindResult::Unknown => {
            // Nothing to move: the binding is gone already (pruned, or never
            // written). The state the message asks for holds, so it is done.
            tracing::warn!(
                sub_id = %m.sub_id,
                "unbind of a binding that is in neither PrivateNumber_xb nor PrivateNumber_xb_unbound"
            );
            Ok("unknown_binding")
        }
        UnbindResult::InvalidBinding => Err(HandlerError::permanent(
            Reason::InvalidBinding,
            format!("PrivateNumber_xb field {} is not a JSON object", m.sub_id),
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn seed_example_parses_with_masked_a_and_b() {
        let v = json!({"platId": 3, "telA": "1347011****", "telX": "17111526089", "telB": "1370005****", "subId": "1000039976446302"});
        let m = parse(&v).unwrap();
        assert_eq!(m.sub_id, "1000039976446302");
        assert_eq!(m.tel_x, "17111526089");
        assert_eq!(m.plat_id, Some(3));
        assert_eq!(m.tel_a.as_deref(), Some("1347011****"));
    }

    #[test]
    fn sub_id_and_full_tel_x_are_required() {
        let missing = parse(&json!({"telX": "17111526089"})).unwrap_err();
        assert_eq!(missing.reason(), Some(Reason::MissingField));
        let masked = parse(&json!({"telX": "1711152****", "subId": "1"})).unwrap_err();
        assert_eq!(masked.reason(), Some(Reason::InvalidNumber));
        let numeric =
            parse(&json!({"telX": "+86 171-1152-6089", "subId": 1000039976446302u64})).unwrap();
        assert_eq!(
            (numeric.sub_id.as_str(), numeric.tel_x.as_str()),
            ("1000039976446302", "17111526089")
        );
    }
}
