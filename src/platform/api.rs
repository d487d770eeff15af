//! The seed's request and answer shapes: parameters matched
//! case-insensitively from the query string, a form or a JSON body; the
//! envelope every answer has (HTTP 200 whatever the outcome); and the number
//! rules (X virtual: 16/17/19; A and B real mobiles: 13/14/15/18).

use std::collections::BTreeMap;

use rand::Rng as _;
use serde_json::{Value, json};

use crate::phone;

/// An operation's result: DataBody and ResultMsg on success; on failure the
/// seed's message (and a DataBody where the seed gives one).
#[derive(Debug, Clone, PartialEq)]
pub enum Answer {
    Ok { body: Vec<Value>, message: String },
    Fail { message: String, body: Vec<Value> },
}

impl Answer {
    pub fn ok(body: Vec<Value>) -> Self {
        Answer::Ok {
            body,
            message: "SUCCESS".into(),
        }
    }
    pub fn fail(message: impl Into<String>) -> Self {
        Answer::Fail {
            message: message.into(),
            body: Vec::new(),
        }
    }
    pub fn is_ok(&self) -> bool {
        matches!(self, Answer::Ok { .. })
    }

    /// Base path A's envelope.
    pub fn envelope(&self) -> Value {
        let request_id: String = {
            let mut rng = rand::rng();
            (0..16)
                .map(|_| format!("{:02x}", rng.random::<u8>()))
                .collect()
        };
        let (code, message, body) = match self {
            Answer::Ok { body, message } => (2000, message.as_str(), body),
            Answer::Fail { message, body } => (5000, message.as_str(), body),
        };
        let n = if code == 2000 { body.len() } else { 0 };
        json!({
            "RequestId": request_id,
            "ResultCode": code,
            "ResultMsg": message,
            "DebugMsg": "",
            "IsEncrypt": 0,
            "DataCount": n,
            "PageSize": n,
            "PageIndex": if n == 0 { 0 } else { 1 },
            "DataBody": body,
            "EncDataBody": "",
        })
    }

    /// Base path B's shorter envelope.
    pub fn short_envelope(&self) -> Value {
        let (code, message, body) = match self {
            Answer::Ok { body, message } => (2000, message.as_str(), body),
            Answer::Fail { message, body } => (5000, message.as_str(), body),
        };
        json!({"ResultCode": code, "ResultMsg": message, "DataBody": body})
    }
}

/// A failure that ends an operation early (a bad parameter, a Redis error).
pub type Step<T> = Result<T, Answer>;

/// A JSON object's members in the order written, duplicates kept (serde's
/// map would keep the last of a name; the API's rule is the first).
pub struct Members(pub Vec<(String, Value)>);

impl<'de> serde::Deserialize<'de> for Members {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct Visit;
        impl<'de> serde::de::Visitor<'de> for Visit {
            type Value = Members;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("a JSON object")
            }
            fn visit_map<A: serde::de::MapAccess<'de>>(
                self,
                mut m: A,
            ) -> Result<Members, A::Error> {
                let mut out = Vec::new();
                while let Some(entry) = m.next_entry::<String, Value>()? {
                    out.push(entry);
                }
                Ok(Members(out))
            }
        }
        d.deserialize_map(Visit)
    }
}

/// The request's parameters, names lowercased.
#[derive(Debug, Clone, Default)]
pub struct Params(BTreeMap<String, String>);

impl Params {
    /// From `name=value` pairs (query string, form).
    pub fn from_pairs(pairs: impl IntoIterator<Item = (String, String)>) -> Self {
        let mut p = Params::default();
        for (k, v) in pairs {
            p.0.entry(k.to_lowercase()).or_insert(v);
        }
        p
    }

    /// Adds the members of a JSON object in the order written, the first
    /// value of a name winning (numbers and strings as text, a whole-number
    /// float as its integer; null as an
    /// empty value, i.e. given but absent). An array or object as a value is
    /// refused: skipping it would drop a filter the caller meant
    /// (`{"userid": [1]}` on fault mode would select every number).
    pub fn add_json(
        &mut self,
        members: impl IntoIterator<Item = (String, Value)>,
    ) -> Result<(), Answer> {
        for (k, v) in members {
            let text = match v {
                Value::String(s) => s,
                // A whole-number float (3.0, 1e3) is that integer, as JSON
                // Schema counts it (the OpenAPI document's `integer`).
                Value::Number(n) => match n.as_f64() {
                    Some(f) if !n.is_i64() && !n.is_u64() && f.is_finite() && f.fract() == 0.0 => {
                        format!("{:.0}", f + 0.0)
                    }
                    _ => n.to_string(),
                },
                Value::Bool(b) => b.to_string(),
                Value::Null => String::new(),
                Value::Array(_) | Value::Object(_) => {
                    let name: String = k.chars().take(64).collect();
                    return Err(Answer::fail(format!("参数[{name}]必须是字符串或数字")));
                }
            };
            self.0.entry(k.to_lowercase()).or_insert(text);
        }
        Ok(())
    }

    /// Whether the request names `name` at all, with a value or empty.
    pub fn given(&self, name: &str) -> bool {
        self.0.contains_key(&name.to_lowercase())
    }

    /// A filter (fault mode's userid, private_number): None when not given;
    /// given, it must not be empty (an empty filter would select everything).
    pub fn filter(&self, name: &str) -> Step<Option<&str>> {
        match (self.given(name), self.get(name)) {
            (false, _) => Ok(None),
            (true, Some(v)) => Ok(Some(v)),
            (true, None) => Err(Answer::fail(format!("参数[{name}]不能为空"))),
        }
    }

    /// Adds `name=value` pairs under the names not given yet.
    pub fn add_pairs(&mut self, pairs: impl IntoIterator<Item = (String, String)>) {
        for (k, v) in pairs {
            self.0.entry(k.to_lowercase()).or_insert(v);
        }
    }

    /// A stable fingerprint of an operation and its parameters: the
    /// parameters it read as their parsed values (`parsed`: lowercased name,
    /// canonical value), so `userid=051218` and `userId=51218` are one
    /// request, and every other parameter as given (a client's own request
    /// id keeps two requests apart).
    pub fn fingerprint(&self, operation: &str, parsed: &[(&str, String)]) -> String {
        use sha2::{Digest, Sha256};
        let mut h = Sha256::new();
        h.update(operation.as_bytes());
        let mut all: BTreeMap<&str, &str> = self
            .0
            .iter()
            .map(|(k, v)| (k.as_str(), v.trim()))
            .filter(|(_, v)| !v.is_empty())
            .collect();
        for (k, v) in parsed {
            all.insert(k, v);
        }
        // Each name and value with its length first: no value can pass
        // for a separator and make two requests one.
        for (k, v) in all {
            for part in [k, v] {
                h.update((part.len() as u64).to_be_bytes());
                h.update(part.as_bytes());
            }
        }
        h.finalize().iter().map(|b| format!("{b:02x}")).collect()
    }

    pub fn get(&self, name: &str) -> Option<&str> {
        self.0
            .get(&name.to_lowercase())
            .map(|s| s.trim())
            .filter(|s| !s.is_empty())
    }

    pub fn has(&self, name: &str) -> bool {
        self.get(name).is_some()
    }

    fn required(&self, name: &str) -> Step<&str> {
        self.get(name)
            .ok_or_else(|| Answer::fail(format!("缺少参数[{name}]")))
    }

    /// A positive id: the seed's `int`, 1 to [`ID_MAX`], ASCII digits only.
    pub fn id(&self, name: &str) -> Step<u64> {
        let v = self.required(name)?;
        match decimal(v) {
            Some(n) if (1..=ID_MAX).contains(&n) => Ok(n),
            Some(0) => Err(Answer::fail(format!("参数[{name}]必须是正整数"))),
            Some(_) | None if is_decimal(v) => {
                Err(Answer::fail(format!("参数[{name}]超出范围(1到{ID_MAX})")))
            }
            _ => Err(Answer::fail(format!("参数[{name}]必须是正整数"))),
        }
    }

    /// A non-negative integer up to `max`, `default` when absent.
    pub fn int_or(&self, name: &str, default: u64, max: u64) -> Step<u64> {
        match self.get(name) {
            None => Ok(default),
            Some(_) => self.int(name, max),
        }
    }

    /// A non-negative integer up to `max`, required.
    pub fn int(&self, name: &str, max: u64) -> Step<u64> {
        let v = self.required(name)?;
        match decimal(v) {
            Some(n) if n <= max => Ok(n),
            Some(_) | None if is_decimal(v) => {
                Err(Answer::fail(format!("参数[{name}]超出范围(0到{max})")))
            }
            _ => Err(Answer::fail(format!("参数[{name}]必须是非负整数"))),
        }
    }

    /// A privacy number X: virtual (16, 17, 19), after normalizing.
    pub fn virtual_number(&self, name: &str) -> Step<String> {
        let raw = self.required(name)?;
        number(raw, &["16", "17", "19"]).ok_or_else(|| {
            Answer::fail(format!("参数[{name}]不是隐私号(16/17/19开头的11位手机号)"))
        })
    }

    /// A real mobile A or B (13, 14, 15, 18), after normalizing.
    pub fn real_mobile(&self, name: &str) -> Step<String> {
        let raw = self.required(name)?;
        number(raw, &["13", "14", "15", "18"]).ok_or_else(|| {
            Answer::fail(format!(
                "参数[{name}]不是真实手机号(13/14/15/18开头的11位手机号)"
            ))
        })
    }
}

/// The largest id (userid, platformID, Mapid, ...) the API accepts: the
/// seed's parameters are `int`, a signed 32-bit integer.
pub const ID_MAX: u64 = i32::MAX as u64;

/// True for ASCII digits only (no sign, no space, no full-width digit).
fn is_decimal(v: &str) -> bool {
    !v.is_empty() && v.bytes().all(|b| b.is_ascii_digit())
}

/// The value of ASCII digits; None for anything else or above u64.
fn decimal(v: &str) -> Option<u64> {
    if !is_decimal(v) {
        return None;
    }
    v.bytes().try_fold(0u64, |n, b| {
        n.checked_mul(10)?.checked_add(u64::from(b - b'0'))
    })
}

/// `raw` normalized as the contract says, when it is an 11-digit mobile
/// starting with one of `prefixes`.
pub fn number(raw: &str, prefixes: &[&str]) -> Option<String> {
    let n = phone::normalize(raw).ok()?;
    (n.len() == 11 && prefixes.iter().any(|p| n.starts_with(p))).then_some(n)
}

/// The label of a number state (dictionary 1527, as this platform defines it).
pub fn number_state_label(state: &str) -> &'static str {
    match state {
        "0" => "正常",
        "1" => "停用",
        "2" => "故障",
        "3" => "回收",
        _ => "未知",
    }
}

/// The label of a bind state.
pub fn bind_state_label(state: &str) -> &'static str {
    match state {
        "0" => "未绑定",
        "1" => "已绑定",
        "2" => "绑定中",
        "5" => "故障绑定",
        _ => "未知",
    }
}

/// A number as the seed's examples show a number the platform does not own
/// (`1347011****`): the first 7 digits.
pub fn carrier_masked(n: &str) -> String {
    let head: String = n.chars().take(7).collect();
    format!("{head}****")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parameters_match_case_insensitively_and_numbers_follow_the_seed() {
        let mut p = Params::from_pairs([
            ("userId".to_owned(), "51218".to_owned()),
            ("private_number".to_owned(), "171-1152-6089".to_owned()),
        ]);
        p.add_json(
            json!({"Mobile": 13912345678u64, "userid": "9"})
                .as_object()
                .unwrap()
                .clone(),
        )
        .unwrap();
        assert_eq!(
            Params::default().add_json([("userid".to_owned(), json!([1]))]),
            Err(Answer::fail("参数[userid]必须是字符串或数字"))
        );
        let mut dup = Params::default();
        dup.add_json([
            ("userid".to_owned(), json!("abc")),
            ("USERID".to_owned(), json!("2")),
        ])
        .unwrap();
        assert!(dup.id("userid").is_err(), "the first value wins");
        // Whole-number floats are their integers, as JSON Schema says.
        let mut floats = Params::default();
        floats
            .add_json([
                ("a".to_owned(), json!(3.0)),
                ("b".to_owned(), json!(1e3)),
                ("c".to_owned(), json!(-0.0)),
                ("d".to_owned(), json!(1.5)),
                ("e".to_owned(), json!(1e300)),
            ])
            .unwrap();
        assert_eq!(floats.id("a"), Ok(3));
        assert_eq!(floats.id("b"), Ok(1000));
        assert_eq!(floats.int("c", 3), Ok(0));
        assert!(floats.int("d", 3).is_err());
        assert_eq!(
            floats.id("e"),
            Err(Answer::fail("参数[e]超出范围(1到2147483647)"))
        );
        let mut null = Params::default();
        null.add_json([("userid".to_owned(), json!(null))]).unwrap();
        assert_eq!(
            null.filter("userid"),
            Err(Answer::fail("参数[userid]不能为空"))
        );
        assert_eq!(Params::default().filter("userid"), Ok(None));
        let fp = |pairs: &[(&str, &str)]| {
            Params::from_pairs(pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())))
                .fingerprint("X", &[])
        };
        assert_ne!(fp(&[("a", "1\u{0}b\u{1}2")]), fp(&[("a", "1"), ("b", "2")]));
        assert_eq!(p.id("userid").unwrap(), 51218, "first one wins");
        assert_eq!(p.virtual_number("PRIVATE_NUMBER").unwrap(), "17111526089");
        assert_eq!(p.real_mobile("mobile").unwrap(), "13912345678");
        assert!(p.real_mobile("private_number").is_err());
        assert!(p.virtual_number("mobile").is_err());
        assert_eq!(
            p.id("platformID"),
            Err(Answer::fail("缺少参数[platformID]"))
        );
        let bad = Params::from_pairs([("userid".to_owned(), "-1".to_owned())]);
        assert!(bad.id("userid").is_err());
        assert_eq!(p.int_or("expiration", 120, 1000).unwrap(), 120);
        assert_eq!(
            p.fingerprint("X", &[]),
            Params::from_pairs([
                ("PRIVATE_NUMBER".to_owned(), "171-1152-6089".to_owned()),
                ("USERID".to_owned(), "51218".to_owned()),
                ("mobile".to_owned(), "13912345678".to_owned()),
            ])
            .fingerprint("X", &[])
        );
        let spelled = |v: &str| {
            Params::from_pairs([("userid".to_owned(), v.to_owned())])
                .fingerprint("X", &[("userid", "51218".to_owned())])
        };
        assert_eq!(spelled("051218"), spelled("51218"), "parsed values count");
        assert_ne!(p.fingerprint("X", &[]), p.fingerprint("Y", &[]));
    }

    #[test]
    fn ids_and_integers_have_ranges_and_no_sentinels() {
        let p = |v: &str| Params::from_pairs([("n".to_owned(), v.to_owned())]);
        assert_eq!(p("2147483647").id("n"), Ok(2147483647));
        assert_eq!(p("0051218").id("n"), Ok(51218));
        for out in [
            "2147483648",
            "9007199254740993",
            "18446744073709551615",
            "99999999999999999999999",
        ] {
            assert_eq!(
                p(out).id("n"),
                Err(Answer::fail("参数[n]超出范围(1到2147483647)")),
                "{out}"
            );
        }
        for bad in [
            "0",
            "-1",
            "+5",
            "1e3",
            "1.0",
            "５１２１８",
            "1 2",
            "0x10",
            "abc",
        ] {
            assert_eq!(
                p(bad).id("n"),
                Err(Answer::fail("参数[n]必须是正整数")),
                "{bad}"
            );
        }
        assert_eq!(
            p("18446744073709551615").int("n", 100),
            Err(Answer::fail("参数[n]超出范围(0到100)"))
        );
        assert_eq!(p("0").int("n", 100), Ok(0));
        assert_eq!(
            p("-0").int("n", 100),
            Err(Answer::fail("参数[n]必须是非负整数"))
        );
        assert_eq!(
            Params::default().int("n", 100),
            Err(Answer::fail("缺少参数[n]"))
        );
        assert_eq!(Params::default().int_or("n", 7, 100), Ok(7));
    }

    #[test]
    fn envelopes_are_the_seeds() {
        let ok = Answer::ok(vec![json!("17111526089")]).envelope();
        assert_eq!(ok["ResultCode"], 2000);
        assert_eq!(ok["ResultMsg"], "SUCCESS");
        assert_eq!(
            (ok["DataCount"].clone(), ok["PageIndex"].clone()),
            (json!(1), json!(1))
        );
        assert_eq!(ok["RequestId"].as_str().unwrap().len(), 32);
        let fail = Answer::fail("当前号码状态为[2]，无法绑定！").envelope();
        assert_eq!(fail["ResultCode"], 5000);
        assert_eq!(
            (fail["DataCount"].clone(), fail["PageIndex"].clone()),
            (json!(0), json!(0))
        );
        assert_eq!(fail["DataBody"], json!([]));
        let short = Answer::ok(vec![json!(true)]).short_envelope();
        assert_eq!(
            short,
            json!({"ResultCode": 2000, "ResultMsg": "SUCCESS", "DataBody": [true]})
        );
    }
}
