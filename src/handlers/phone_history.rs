//! Employee phone change (MQ176, `house_exchange1_SaleCallPhoneNumberPool`):
//! records the employee's current phone, every phone they have had with its
//! first-seen time, and the reverse phone -> employee map, so a call from an
//! old phone still resolves to its employee. One script, idempotent.

use serde_json::Value;

use super::{Ctx, HandlerError, fields::Fields, object};
use crate::phone;

/// `{"userId": "74705", "newPhone": "13812345678", "oldPhone": "13998765432", "operatorUser:": "51218"}`
#[derive(Debug, Clone, PartialEq)]
pub struct PhoneChange {
    pub user_id: u64,
    pub new_phone: String,
    /// Absent or empty for an employee's first phone.
    pub old_phone: Option<String>,
    /// Who made the change; the seed's key is `operatorUser:` (with the colon).
    pub operator: Option<String>,
}

pub fn parse(value: &Value) -> Result<PhoneChange, HandlerError> {
    let f = Fields(object(value)?);
    Ok(PhoneChange {
        user_id: f.user_id(&["userId"])?,
        new_phone: f.full_number(&["newPhone"])?,
        old_phone: f.opt_full_number(&["oldPhone"])?,
        operator: f.opt_text(&["operatorUser"])?,
    })
}

#[tracing::instrument(name = "phone_history", level = "debug", skip_all, fields(user_id = m.user_id, new_phone = %phone::mask(&m.new_phone), operator = m.operator.as_deref()))]
pub async fn apply(m: &PhoneChange, ctx: &Ctx) -> Result<&'static str, HandlerError> {
    ctx.store
        .record_phone_change(
            m.user_id,
            &m.new_phone,
            m.old_phone.as_deref(),
            super::now_epoch(),
        )
        .await?;
    Ok("recorded")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::handlers::Reason;
    use serde_json::json;

    #[test]
    fn seed_example_with_colon_key_parses() {
        let m = parse(&json!({"userId": "74705", "newPhone": "13812345678", "oldPhone": "13998765432", "operatorUser:": "51218"})).unwrap();
        assert_eq!(
            m,
            PhoneChange {
                user_id: 74705,
                new_phone: "13812345678".into(),
                old_phone: Some("13998765432".into()),
                operator: Some("51218".into())
            }
        );
        let m = parse(&json!({"userid": 74705, "newPhone": "13812345678", "operatorUser": 51218}))
            .unwrap();
        assert_eq!((m.old_phone, m.operator.as_deref()), (None, Some("51218")));
        let m = parse(&json!({"userId": 1, "newPhone": "13812345678", "oldPhone": ""})).unwrap();
        assert_eq!(m.old_phone, None);
    }

    #[test]
    fn masked_or_missing_numbers_are_permanent() {
        let e = parse(&json!({"userId": 1, "newPhone": "138****5678"})).unwrap_err();
        assert_eq!(e.reason(), Some(Reason::InvalidNumber));
        let e = parse(&json!({"userId": 1, "newPhone": "13812345678", "oldPhone": "139****5432"}))
            .unwrap_err();
        assert_eq!(e.reason(), Some(Reason::InvalidNumber));
        let e = parse(&json!({"userId": 1})).unwrap_err();
        assert_eq!(e.reason(), Some(Reason::MissingField));
    }
}
