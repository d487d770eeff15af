//! Aliyun's privacy-number API (Dypls, version 2017-05-25): BindAxn,
//! UnbindSubscription, UpdateSubscription, as RPC calls signed the way Aliyun
//! documents it (HMAC-SHA1 over the canonicalized query, signature version
//! 1.0). Credentials come from the environment only
//! (`AXN__PLATFORM__ALIYUN__ACCESS_KEY_ID`, `..._SECRET`).
//!
//! Mapping (docs/platform-api.md, "Carriers"): an AX binding is a BindAxn of
//! A to X for a year; an XB binding is a BindAxn of B to X for the call's
//! expiration (Aliyun's own minimum of 60 s applies); a change of A is
//! UpdateSubscription with `OperateType=updateNoA`.

use std::time::{Duration, SystemTime};

use base64::Engine as _;
use futures_util::future::BoxFuture;
use hmac::{Hmac, Mac};
use rand::Rng as _;
use serde_json::Value;
use sha1::Sha1;

use super::{Bound, Carrier, CarrierError};
use crate::config::{AliyunSettings, Secret};

pub struct Aliyun {
    http: reqwest::Client,
    endpoint: String,
    pool_key: String,
    access_key_id: Secret,
    access_key_secret: Secret,
}

impl Aliyun {
    pub fn new(s: &AliyunSettings) -> anyhow::Result<Self> {
        anyhow::ensure!(
            !s.access_key_id.expose().is_empty() && !s.access_key_secret.expose().is_empty(),
            "the aliyun carrier needs AXN__PLATFORM__ALIYUN__ACCESS_KEY_ID and AXN__PLATFORM__ALIYUN__ACCESS_KEY_SECRET"
        );
        anyhow::ensure!(
            !s.pool_key.is_empty(),
            "the aliyun carrier needs [platform.aliyun] pool_key"
        );
        Ok(Aliyun {
            http: reqwest::Client::builder()
                .timeout(Duration::from_secs(s.timeout_secs.max(1)))
                .build()?,
            endpoint: s.endpoint.clone(),
            pool_key: s.pool_key.clone(),
            access_key_id: s.access_key_id.clone(),
            access_key_secret: s.access_key_secret.clone(),
        })
    }

    /// Calls `action` with `params` (common parameters and the signature
    /// added); the answer's JSON when its Code is OK.
    async fn call(&self, action: &str, params: &[(&str, String)]) -> Result<Value, CarrierError> {
        let now = humantime::format_rfc3339_seconds(SystemTime::now()).to_string();
        let nonce: String = {
            let mut rng = rand::rng();
            (0..16)
                .map(|_| format!("{:02x}", rng.random::<u8>()))
                .collect()
        };
        let mut all: Vec<(String, String)> = [
            ("AccessKeyId", self.access_key_id.expose().to_owned()),
            ("Action", action.to_owned()),
            ("Format", "JSON".to_owned()),
            ("RegionId", "cn-hangzhou".to_owned()),
            ("SignatureMethod", "HMAC-SHA1".to_owned()),
            ("SignatureNonce", nonce),
            ("SignatureVersion", "1.0".to_owned()),
            ("Timestamp", now),
            ("Version", "2017-05-25".to_owned()),
            ("PoolKey", self.pool_key.clone()),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_owned(), v))
        .collect();
        all.extend(params.iter().map(|(k, v)| ((*k).to_owned(), v.clone())));
        let signature = sign("GET", &all, self.access_key_secret.expose());
        all.push(("Signature".to_owned(), signature));
        let query = canonicalized(&all);
        let url = format!("{}?{query}", self.endpoint);
        let answer =
            self.http.get(&url).send().await.map_err(|e| {
                CarrierError::Failed(format!("aliyun {action}: {}", e.without_url()))
            })?;
        let status = answer.status();
        let body = answer
            .text()
            .await
            .map_err(|e| CarrierError::Failed(format!("aliyun {action}: {}", e.without_url())))?;
        let v: Value = serde_json::from_str(&body).map_err(|_| {
            CarrierError::Failed(format!("aliyun {action}: HTTP {status}, not JSON"))
        })?;
        let code = v["Code"].as_str().unwrap_or_default();
        if code == "OK" {
            return Ok(v);
        }
        let detail = format!(
            "aliyun {action}: {code} {}",
            v["Message"].as_str().unwrap_or_default()
        );
        Err(classify(code, detail))
    }
}

/// An Aliyun error code's meaning.
pub fn classify(code: &str, detail: String) -> CarrierError {
    match code {
        "isv.NO_AVAILABLE_NUMBER" => CarrierError::NoNumber(detail),
        "isv.BIND_CONFLICT" => CarrierError::Conflict(detail),
        // Dypls' own flow control, and the API gateway's.
        c if c.starts_with("Throttling") || c == "isv.FLOW_LIMIT" => {
            CarrierError::Throttled(detail)
        }
        _ => CarrierError::Failed(detail),
    }
}

/// Aliyun's percent-encoding: RFC 3986 unreserved characters kept, every
/// other byte `%XX` (upper case), so a space is `%20`, `*` is `%2A`, `~` stays.
pub fn percent_encode(s: &str) -> String {
    let mut out = String::with_capacity(s.len() * 3);
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'~') {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// The canonicalized query string: parameters sorted by name, each name and
/// value percent-encoded, joined with `&`.
pub fn canonicalized(params: &[(String, String)]) -> String {
    let mut sorted: Vec<&(String, String)> = params.iter().collect();
    sorted.sort();
    sorted
        .iter()
        .map(|(k, v)| format!("{}={}", percent_encode(k), percent_encode(v)))
        .collect::<Vec<_>>()
        .join("&")
}

/// The string Aliyun signs.
pub fn string_to_sign(method: &str, params: &[(String, String)]) -> String {
    format!(
        "{method}&{}&{}",
        percent_encode("/"),
        percent_encode(&canonicalized(params))
    )
}

/// The `Signature` parameter: Base64(HMAC-SHA1(secret + "&", StringToSign)).
pub fn sign(method: &str, params: &[(String, String)], secret: &str) -> String {
    // HMAC takes a key of any length: this cannot fail.
    let Ok(mut mac) = <Hmac<Sha1> as Mac>::new_from_slice(format!("{secret}&").as_bytes()) else {
        return String::new();
    };
    mac.update(string_to_sign(method, params).as_bytes());
    base64::engine::general_purpose::STANDARD.encode(mac.finalize().into_bytes())
}

/// A time `secs` from now as Aliyun's `Expiration` wants it
/// (`yyyy-MM-dd HH:mm:ss`, China time).
fn expiration_in(secs: u64) -> String {
    let at = SystemTime::now() + Duration::from_secs(secs + 8 * 3600);
    let t = humantime::format_rfc3339_seconds(at).to_string();
    t.trim_end_matches('Z').replacen('T', " ", 1)
}

fn subs_id(v: &Value) -> Result<Bound, CarrierError> {
    let id = &v["SecretBindDTO"]["SubsId"];
    let sub_id = match id {
        Value::String(s) if !s.is_empty() => s.clone(),
        Value::Number(n) => n.to_string(),
        _ => {
            return Err(CarrierError::Failed(
                "aliyun: no SubsId in the answer".into(),
            ));
        }
    };
    Ok(Bound { sub_id })
}

impl Carrier for Aliyun {
    fn bind_ax<'a>(&'a self, x: &'a str, a: &'a str) -> BoxFuture<'a, Result<Bound, CarrierError>> {
        Box::pin(async move {
            let v = self
                .call(
                    "BindAxn",
                    &[
                        ("PhoneNoA", a.to_owned()),
                        ("PhoneNoX", x.to_owned()),
                        ("Expiration", expiration_in(365 * 24 * 3600)),
                    ],
                )
                .await?;
            subs_id(&v)
        })
    }
    fn bind_xb<'a>(
        &'a self,
        x: &'a str,
        b: &'a str,
        expiration_secs: u64,
    ) -> BoxFuture<'a, Result<Bound, CarrierError>> {
        Box::pin(async move {
            let v = self
                .call(
                    "BindAxn",
                    &[
                        ("PhoneNoA", b.to_owned()),
                        ("PhoneNoX", x.to_owned()),
                        ("Expiration", expiration_in(expiration_secs.max(60))),
                    ],
                )
                .await?;
            subs_id(&v)
        })
    }
    fn unbind<'a>(
        &'a self,
        sub_id: &'a str,
        x: &'a str,
    ) -> BoxFuture<'a, Result<(), CarrierError>> {
        Box::pin(async move {
            self.call(
                "UnbindSubscription",
                &[("SubsId", sub_id.to_owned()), ("SecretNo", x.to_owned())],
            )
            .await
            .map(|_| ())
        })
    }
    fn update_a<'a>(
        &'a self,
        sub_id: &'a str,
        x: &'a str,
        a: &'a str,
    ) -> BoxFuture<'a, Result<(), CarrierError>> {
        Box::pin(async move {
            self.call(
                "UpdateSubscription",
                &[
                    ("SubsId", sub_id.to_owned()),
                    ("PhoneNoX", x.to_owned()),
                    ("OperateType", "updateNoA".to_owned()),
                    ("PhoneNoA", a.to_owned()),
                ],
            )
            .await
            .map(|_| ())
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The worked example of Aliyun's "RPC signature" documentation (ECS
    /// DescribeRegions with AccessKeyId testid, secret testsecret; the
    /// current page's `Timestamp` spelling and its published signature).
    #[test]
    fn signs_aliyuns_documented_example() {
        let params: Vec<(String, String)> = [
            ("Format", "XML"),
            ("AccessKeyId", "testid"),
            ("Action", "DescribeRegions"),
            ("SignatureMethod", "HMAC-SHA1"),
            ("SignatureNonce", "3ee8c1b8-83d3-44af-a94f-4e0ad82fd6cf"),
            ("SignatureVersion", "1.0"),
            ("Version", "2014-05-26"),
            ("Timestamp", "2016-02-23T12:46:24Z"),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .collect();
        assert_eq!(
            string_to_sign("GET", &params),
            "GET&%2F&AccessKeyId%3Dtestid%26Action%3DDescribeRegions%26Format%3DXML%26SignatureMethod%3DHMAC-SHA1%26SignatureNonce%3D3ee8c1b8-83d3-44af-a94f-4e0ad82fd6cf%26SignatureVersion%3D1.0%26Timestamp%3D2016-02-23T12%253A46%253A24Z%26Version%3D2014-05-26"
        );
        assert_eq!(
            sign("GET", &params, "testsecret"),
            "OLeaidS1JvxuMvnyHOwuJ+uX5qY="
        );
    }

    #[test]
    fn percent_encoding_is_aliyuns() {
        assert_eq!(percent_encode("a b*c~d+e/é"), "a%20b%2Ac~d%2Be%2F%C3%A9");
    }

    #[test]
    fn error_codes_keep_their_meaning() {
        assert!(matches!(
            classify("isv.NO_AVAILABLE_NUMBER", String::new()),
            CarrierError::NoNumber(_)
        ));
        assert!(matches!(
            classify("isv.BIND_CONFLICT", String::new()),
            CarrierError::Conflict(_)
        ));
        assert!(matches!(
            classify("Throttling.User", String::new()),
            CarrierError::Throttled(_)
        ));
        assert!(matches!(
            classify("isv.FLOW_LIMIT", String::new()),
            CarrierError::Throttled(_)
        ));
        assert!(matches!(
            classify("isp.SYSTEM_ERROR", String::new()),
            CarrierError::Failed(_)
        ));
    }
}
