//! B-number blacklist (MQ173, `service_exchange1_SetBlackNumber`): adds a
//! number to, or removes it from, the set `PrivateNumber_black:<userid>:<type>`
//! (type 0 = outgoing, calls to B; 1 = incoming, calls from B).

use serde_json::Value;

use super::{Ctx, HandlerError, Reason, fields::Fields, object};
use crate::phone;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    Add,
    Delete,
}

/// `{"platId": 3, "private_number": "13470110001", "action": "add", "userid": "74705", "type": 0}`
#[derive(Debug, Clone, PartialEq)]
pub struct BlacklistChange {
    pub user_id: u64,
    /// 0 = outgoing, 1 = incoming.
    pub list_type: u8,
    /// Normalized full number.
    pub number: String,
    pub action: Action,
    pub plat_id: Option<u64>,
}

pub fn parse(value: &Value) -> Result<BlacklistChange, HandlerError> {
    let f = Fields(object(value)?);
    let action = match f.get(&["action"])? {
        None | Some(Value::Null) => {
            return Err(HandlerError::permanent(
                Reason::MissingField,
                "required field action is missing",
            ));
        }
        Some(Value::String(s)) if s.trim().eq_ignore_ascii_case("add") => Action::Add,
        Some(Value::String(s)) if s.trim().eq_ignore_ascii_case("delete") => Action::Delete,
        Some(other) => {
            let text = other.to_string();
            let mut shown: String = text.chars().take(40).collect();
            if shown.len() < text.len() {
                shown.push_str("… (cut)");
            }
            let shown = phone::mask_digits_in(&shown);
            return Err(HandlerError::permanent(
                Reason::UnknownAction,
                format!("action {shown} is neither \"add\" nor \"delete\""),
            ));
        }
    };
    let list_type = match f.get(&["type"])? {
        None | Some(Value::Null) => {
            return Err(HandlerError::permanent(
                Reason::MissingField,
                "required field type is missing",
            ));
        }
        Some(v) => match super::fields::as_uint(v) {
            Some(t @ (0 | 1)) => t as u8,
            _ => {
                return Err(HandlerError::permanent(
                    Reason::InvalidField,
                    "field type must be 0 (outgoing) or 1 (incoming)",
                ));
            }
        },
    };
    Ok(BlacklistChange {
        user_id: f.user_id(&["userid"])?,
        list_type,
        number: f.full_number(&["private_number"])?,
        action,
        plat_id: f.opt_uint(&["platId"])?,
    })
}

#[tracing::instrument(name = "blacklist", level = "debug", skip_all, fields(user_id = m.user_id, list_type = m.list_type, number = %phone::mask(&m.number), action = ?m.action))]
pub async fn apply(m: &BlacklistChange, ctx: &Ctx) -> Result<&'static str, HandlerError> {
    let changed = ctx
        .store
        .set_blacklisted(m.user_id, m.list_type, &m.number, m.action == Action::Add)
        .await?;
    Ok(match (m.action, changed) {
        (Action::Add, true) => "added",
        (Action::Add, false) => "already_present",
        (Action::Delete, true) => "deleted",
        (Action::Delete, false) => "already_absent",
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn seed_shape_parses_with_string_userid() {
        let m = parse(&json!({"platId": 3, "private_number": "13470110001", "action": "add", "userid": "74705", "type": 0})).unwrap();
        assert_eq!(
            m,
            BlacklistChange {
                user_id: 74705,
                list_type: 0,
                number: "13470110001".into(),
                action: Action::Add,
                plat_id: Some(3)
            }
        );
        let m = parse(&json!({"private_number": "+8613470110001", "action": "DELETE", "userId": 74705, "type": "1"})).unwrap();
        assert_eq!(
            (m.action, m.list_type, m.number.as_str()),
            (Action::Delete, 1, "13470110001")
        );
    }

    #[test]
    fn bad_fields_are_permanent() {
        let base =
            json!({"private_number": "13470110001", "action": "add", "userid": "74705", "type": 0});
        let with = |k: &str, v: Value| {
            let mut b = base.clone();
            b[k] = v;
            parse(&b).unwrap_err().reason()
        };
        assert_eq!(with("action", json!("remove")), Some(Reason::UnknownAction));
        assert_eq!(with("action", json!(1)), Some(Reason::UnknownAction));
        assert_eq!(with("type", json!(2)), Some(Reason::InvalidField));
        assert_eq!(with("userid", json!("-1")), Some(Reason::InvalidField));
        assert_eq!(with("userid", json!("abc")), Some(Reason::InvalidField));
        assert_eq!(
            with("private_number", json!("1347011****")),
            Some(Reason::InvalidNumber)
        );
        assert_eq!(
            with("private_number", json!(null)),
            Some(Reason::MissingField)
        );
    }
}
