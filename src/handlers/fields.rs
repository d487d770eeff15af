//! Lenient reading of a JSON object's fields, as the contract asks of
//! producers that are not uniform: names match case-insensitively (and a
//! trailing `:` is ignored, for the seed's `operatorUser:`), and a number may
//! arrive as a JSON number or as a numeric string.

use serde_json::{Map, Value};

use super::{HandlerError, Reason};
use crate::phone;

/// A message body's top-level object.
pub struct Fields<'a>(pub &'a Map<String, Value>);

impl<'a> Fields<'a> {
    /// The value of the field spelled as one of `names`, in any case and
    /// with any trailing `:`. A field given in two spellings (`userId` and
    /// `userid`, `subId` and `sub_id`) with different values is refused:
    /// which one the producer meant is not for the worker to guess (and no
    /// JSON Schema can say "one spelling only", docs/asyncapi.yaml says it in
    /// words).
    pub fn get(&self, names: &[&str]) -> Result<Option<&'a Value>, HandlerError> {
        let mut found: Option<&'a Value> = None;
        for (k, v) in self.0 {
            let k = k.trim_end_matches(':');
            if !names.iter().any(|n| k.eq_ignore_ascii_case(n)) {
                continue;
            }
            match found {
                None => found = Some(v),
                Some(first) if first != v => {
                    return Err(HandlerError::permanent(
                        Reason::InvalidField,
                        format!(
                            "field {} is given twice, in two spellings, with different values",
                            names[0]
                        ),
                    ));
                }
                Some(_) => {}
            }
        }
        Ok(found)
    }

    /// A present, non-null field; `names[0]` is the name errors use.
    fn present(&self, names: &[&str]) -> Result<&'a Value, HandlerError> {
        match self.get(names)? {
            None | Some(Value::Null) => Err(HandlerError::permanent(
                Reason::MissingField,
                format!("required field {} is missing", names[0]),
            )),
            Some(v) => Ok(v),
        }
    }

    /// An identifier: a non-empty string, or an integer (kept as its digits).
    pub fn id(&self, names: &[&str]) -> Result<String, HandlerError> {
        let v = self.present(names)?;
        let (s, written) = match v {
            Value::String(s) => (s.trim().to_owned(), s.chars().count()),
            Value::Number(n) => match integer(n) {
                Some(i) => (i, 0),
                None => return Err(wrong_kind(names[0], "a string or an integer")),
            },
            _ => return Err(wrong_kind(names[0], "a string or an integer")),
        };
        if s.is_empty() {
            return Err(HandlerError::permanent(
                Reason::MissingField,
                format!("required field {} is empty", names[0]),
            ));
        }
        // Characters as written (JSON Schema's maxLength counts them so).
        if written > 128 || s.chars().any(char::is_control) {
            return Err(wrong_kind(names[0], "at most 128 printable characters"));
        }
        Ok(s)
    }

    /// A non-negative integer, given as a number or a numeric string.
    pub fn uint(&self, names: &[&str]) -> Result<u64, HandlerError> {
        let v = self.present(names)?;
        as_uint(v).ok_or_else(|| wrong_kind(names[0], "a non-negative integer"))
    }

    /// Like [`Fields::uint`], but the field may be absent, null or "".
    pub fn opt_uint(&self, names: &[&str]) -> Result<Option<u64>, HandlerError> {
        match self.get(names)? {
            None | Some(Value::Null) => Ok(None),
            Some(Value::String(s)) if s.trim().is_empty() => Ok(None),
            Some(v) => as_uint(v)
                .map(Some)
                .ok_or_else(|| wrong_kind(names[0], "a non-negative integer")),
        }
    }

    /// A user id: a positive integer.
    pub fn user_id(&self, names: &[&str]) -> Result<u64, HandlerError> {
        let v = self.present(names)?;
        match as_uint(v) {
            Some(id) if id > 0 => Ok(id),
            _ => Err(wrong_kind(names[0], "a positive integer")),
        }
    }

    /// A string carried for logs only (may be masked); numbers are accepted.
    pub fn opt_text(&self, names: &[&str]) -> Result<Option<String>, HandlerError> {
        match self.get(names)? {
            None | Some(Value::Null) => Ok(None),
            Some(Value::String(s)) => Ok(Some(s.clone())),
            Some(Value::Number(n)) => Ok(Some(n.to_string())),
            Some(_) => Err(wrong_kind(names[0], "a string")),
        }
    }

    /// A field that must hold a full phone number, normalized.
    pub fn full_number(&self, names: &[&str]) -> Result<String, HandlerError> {
        let raw = match self.present(names)? {
            Value::String(s) => s.clone(),
            Value::Number(n) if as_uint(&Value::Number(n.clone())).is_some() => {
                integer(n).unwrap_or_default()
            }
            _ => {
                return Err(wrong_kind(
                    names[0],
                    "a full phone number (a string, or a JSON integer)",
                ));
            }
        };
        phone::normalize(&raw).map_err(|e| {
            HandlerError::permanent(
                Reason::InvalidNumber,
                format!("{} {} ({e})", names[0], phone::mask(&raw)),
            )
        })
    }

    /// Like [`Fields::full_number`], but absent, null or "" is `None`.
    pub fn opt_full_number(&self, names: &[&str]) -> Result<Option<String>, HandlerError> {
        match self.get(names)? {
            None | Some(Value::Null) => Ok(None),
            Some(Value::String(s)) if s.trim().is_empty() => Ok(None),
            Some(_) => self.full_number(names).map(Some),
        }
    }
}

/// A JSON number that is an integer, as its decimal digits: an i64 or u64,
/// or a whole-number float in their range (`3.0`, `1e3`: JSON Schema counts
/// those as integers, and so does the parser).
fn integer(n: &serde_json::Number) -> Option<String> {
    if n.is_i64() || n.is_u64() {
        return Some(n.to_string());
    }
    let f = n.as_f64()?;
    // i64::MIN ..= u64::MAX, exactly: 2^64 is the first float above.
    let in_range = (-9_223_372_036_854_775_808.0..18_446_744_073_709_551_616.0).contains(&f);
    (f.fract() == 0.0 && in_range).then(|| format!("{:.0}", f + 0.0))
}

/// A non-negative integer from a JSON number (a whole-number float too) or
/// a numeric string.
pub fn as_uint(v: &Value) -> Option<u64> {
    match v {
        Value::Number(n) => integer(n)?.parse().ok(),
        Value::String(s) => {
            let s = s.trim();
            if s.is_empty() || !s.bytes().all(|b| b.is_ascii_digit()) {
                None
            } else {
                s.parse().ok()
            }
        }
        _ => None,
    }
}

fn wrong_kind(field: &str, expected: &str) -> HandlerError {
    HandlerError::permanent(
        Reason::InvalidField,
        format!("field {field} must be {expected}"),
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn obj(v: Value) -> Map<String, Value> {
        v.as_object().cloned().unwrap()
    }

    #[test]
    fn numbers_may_be_strings_and_names_any_case() {
        let m = obj(json!({"userId": "74705", "TYPE": 1, "operatorUser:": "51218"}));
        let f = Fields(&m);
        assert_eq!(f.user_id(&["userid"]).unwrap(), 74705);
        assert_eq!(f.uint(&["type"]).unwrap(), 1);
        assert_eq!(
            f.opt_text(&["operatorUser"]).unwrap().as_deref(),
            Some("51218")
        );
    }

    #[test]
    fn wrong_kinds_are_permanent_with_the_field_name() {
        let m = obj(json!({"userid": -5, "a": "1.5", "b": true, "c": "", "d": 0}));
        let f = Fields(&m);
        for (name, reason) in [
            ("userid", Reason::InvalidField),
            ("a", Reason::InvalidField),
            ("b", Reason::InvalidField),
            ("missing", Reason::MissingField),
        ] {
            let err = f.uint(&[name]).unwrap_err();
            assert_eq!(err.reason(), Some(reason), "{name}");
            assert!(err.to_string().contains(name), "{err}");
        }
        assert_eq!(f.opt_uint(&["c"]).unwrap(), None);
        assert_eq!(
            f.user_id(&["d"]).unwrap_err().reason(),
            Some(Reason::InvalidField)
        );
        assert_eq!(
            f.id(&["c"]).unwrap_err().reason(),
            Some(Reason::MissingField)
        );
    }

    #[test]
    fn numbers_are_normalized_and_errors_masked() {
        let m =
            obj(json!({"n": "+8613988888888", "m": "1347011****", "x": "13988888888abc", "e": ""}));
        let f = Fields(&m);
        assert_eq!(f.full_number(&["n"]).unwrap(), "13988888888");
        let err = f.full_number(&["m"]).unwrap_err();
        assert_eq!(err.reason(), Some(Reason::InvalidNumber));
        let err = f.full_number(&["x"]).unwrap_err().to_string();
        assert!(!err.contains("13988888888"), "{err}");
        assert_eq!(f.opt_full_number(&["e"]).unwrap(), None);
        assert_eq!(f.opt_full_number(&["absent"]).unwrap(), None);
    }
}
