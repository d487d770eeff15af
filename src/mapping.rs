//! Number protection for the contact center (the TCCC seed): a customer's
//! real number is shown to agents as a user id, and turned back into the
//! number only when dialling.
//!
//! An id is the number's first three digits and seven lowercase letters
//! (`139abcdefg`), unique across numbers; the two contract hashes hold both
//! directions. This module is the pure part: request validation, the answer
//! codes, id format, the international form. `http::mapping` serves it and
//! `Store::phone_to_uid` / `Store::uid_to_phone` do the Redis side, one round
//! trip per batch.

use rand::Rng;
use serde::{Deserialize, Serialize};

use crate::phone;

/// Letters after the three digits of an id.
pub const ID_LETTERS: usize = 7;

/// The answer's `Code`: 0 is success; everything else fails the whole
/// request (no partial results).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(i32)]
pub enum Code {
    Ok = 0,
    /// The body is not JSON of the shape `{"Numbers": [...], "Mode": "..."}`.
    BadRequest = 1001,
    /// `Mode` is neither `PhoneToUID` nor `UIDToPhone`.
    UnknownMode = 1002,
    /// `Numbers` is empty or longer than `[mapping] max_batch`, or the body
    /// is over the size limit.
    BatchSize = 1003,
    /// PhoneToUID: an entry is not a full phone number.
    InvalidNumber = 1004,
    /// UIDToPhone: an entry is a well-formed id that no number has.
    UnknownId = 1005,
    /// UIDToPhone: an entry is not of the id form (3 digits, 7 a-z letters).
    InvalidId = 1006,
    /// Missing or wrong credentials (HTTP 401).
    Unauthorized = 1401,
    /// Redis failed; nothing was answered (HTTP 503). Safe to retry.
    Unavailable = 1503,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    PhoneToUid,
    UidToPhone,
}

/// The request as the seed gives it.
#[derive(Debug, Deserialize)]
pub struct Request {
    #[serde(rename = "Numbers")]
    pub numbers: Vec<String>,
    #[serde(rename = "Mode")]
    pub mode: String,
}

/// One converted entry: `Key` as sent, `Value` converted.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct Pair {
    #[serde(rename = "Key")]
    pub key: String,
    #[serde(rename = "Value")]
    pub value: String,
}

/// The answer: the seed's `Code` and `Results`, plus `Message` when `Code`
/// is not 0.
#[derive(Debug, Serialize, Deserialize, PartialEq, Eq)]
pub struct Answer {
    #[serde(rename = "Code")]
    pub code: i32,
    #[serde(rename = "Message", skip_serializing_if = "Option::is_none", default)]
    pub message: Option<String>,
    #[serde(rename = "Results")]
    pub results: Vec<Pair>,
}

impl Answer {
    pub fn ok(results: Vec<Pair>) -> Self {
        Answer {
            code: Code::Ok as i32,
            message: None,
            results,
        }
    }
    pub fn error(code: Code, message: impl Into<String>) -> Self {
        Answer {
            code: code as i32,
            message: Some(message.into()),
            results: Vec::new(),
        }
    }
}

/// A failed request: its code and a message with no full number in it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct Rejection {
    pub code: Code,
    pub message: String,
}

fn reject(code: Code, message: impl Into<String>) -> Rejection {
    Rejection {
        code,
        message: message.into(),
    }
}

impl Request {
    /// Checks mode and batch size.
    pub fn validate(&self, max_batch: usize) -> Result<Mode, Rejection> {
        let mode = match self.mode.as_str() {
            "PhoneToUID" => Mode::PhoneToUid,
            "UIDToPhone" => Mode::UidToPhone,
            other => {
                let shown: String =
                    crate::phone::mask_digits_in(&other.chars().take(32).collect::<String>());
                return Err(reject(
                    Code::UnknownMode,
                    format!("Mode {shown:?} is neither \"PhoneToUID\" nor \"UIDToPhone\""),
                ));
            }
        };
        if self.numbers.is_empty() || self.numbers.len() > max_batch {
            return Err(reject(
                Code::BatchSize,
                format!(
                    "Numbers must hold 1 to {max_batch} entries, not {}",
                    self.numbers.len()
                ),
            ));
        }
        Ok(mode)
    }
}

/// Normalizes every number of a PhoneToUID batch, or names the first bad one
/// (by index, masked).
pub fn normalize_all(numbers: &[String]) -> Result<Vec<String>, Rejection> {
    numbers
        .iter()
        .enumerate()
        .map(|(i, n)| {
            phone::normalize(n).map_err(|e| {
                reject(
                    Code::InvalidNumber,
                    format!("Numbers[{i}] {} {e}", phone::mask(n)),
                )
            })
        })
        .collect()
}

/// True for the id form: 3 digits then 7 lowercase ASCII letters.
pub fn is_id(s: &str) -> bool {
    let b = s.as_bytes();
    b.len() == 3 + ID_LETTERS
        && b[..3].iter().all(u8::is_ascii_digit)
        && b[3..].iter().all(u8::is_ascii_lowercase)
}

/// Checks every entry of a UIDToPhone batch is of the id form.
pub fn check_ids(ids: &[String]) -> Result<(), Rejection> {
    match ids.iter().position(|id| !is_id(id)) {
        None => Ok(()),
        Some(i) => Err(reject(
            Code::InvalidId,
            format!("Numbers[{i}] is not an id (3 digits then {ID_LETTERS} lowercase letters)"),
        )),
    }
}

/// A fresh candidate id for a normalized number.
pub fn candidate_id(number: &str, rng: &mut impl Rng) -> String {
    let mut id: String = number.chars().take(3).collect();
    for _ in 0..ID_LETTERS {
        id.push(rng.random_range(b'a'..=b'z') as char);
    }
    id
}

/// The number as UIDToPhone answers it: country code and number,
/// `008613988888888`. A number stored with its own `00` international prefix
/// is returned as it is; a leading trunk `0` of a national number is dropped.
pub fn international(number: &str) -> String {
    if number.starts_with("00") {
        number.to_owned()
    } else if let Some(national) = number.strip_prefix('0') {
        format!("0086{national}")
    } else {
        format!("0086{number}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_have_the_seed_form() {
        let mut rng = rand::rng();
        let id = candidate_id("13988888888", &mut rng);
        assert!(is_id(&id), "{id}");
        assert!(id.starts_with("139"));
        for bad in [
            "139abcdef",
            "139abcdefgh",
            "13aabcdefg",
            "139ABCDEFG",
            "139abcdef1",
            "",
        ] {
            assert!(!is_id(bad), "{bad}");
        }
    }

    #[test]
    fn international_form() {
        assert_eq!(international("13988888888"), "008613988888888");
        assert_eq!(international("02112345678"), "00862112345678");
        assert_eq!(international("008612345"), "008612345");
    }

    #[test]
    fn requests_are_checked_whole() {
        let r = |mode: &str, n: usize| Request {
            numbers: vec!["13988888888".into(); n],
            mode: mode.into(),
        };
        assert_eq!(r("PhoneToUID", 1).validate(100), Ok(Mode::PhoneToUid));
        assert_eq!(r("UIDToPhone", 100).validate(100), Ok(Mode::UidToPhone));
        assert_eq!(
            r("phoneToUid", 1).validate(100).unwrap_err().code,
            Code::UnknownMode
        );
        assert_eq!(
            r("PhoneToUID", 0).validate(100).unwrap_err().code,
            Code::BatchSize
        );
        assert_eq!(
            r("PhoneToUID", 101).validate(100).unwrap_err().code,
            Code::BatchSize
        );
        let err = normalize_all(&["+8613988888888".into(), "1398888****".into()]).unwrap_err();
        assert_eq!(err.code, Code::InvalidNumber);
        assert!(err.message.starts_with("Numbers[1]"), "{}", err.message);
        assert_eq!(
            check_ids(&["139abcdefg".into(), "x".into()])
                .unwrap_err()
                .code,
            Code::InvalidId
        );
    }
}
