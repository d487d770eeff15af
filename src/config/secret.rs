//! A setting that holds a secret (a password, a URL with credentials): it
//! shows only what may be shown.

use std::fmt;

use serde::{Deserialize, Serialize};

/// A string that must never reach a log or a printed config: its `Debug` and
/// its serialized form are `"***"` (or `""` when empty, so that "not set" is
/// still visible).
#[derive(Clone, Deserialize, PartialEq, Eq)]
#[serde(transparent)]
pub struct Secret(String);

impl Secret {
    pub fn new(value: impl Into<String>) -> Self {
        Self(value.into())
    }
    pub fn expose(&self) -> &str {
        &self.0
    }
    /// What may be shown: a URL with its password replaced by `***` (the
    /// scheme, user, host, port and path stay, so an operator can see where
    /// it points); any other secret as `***`.
    pub(crate) fn redacted(&self) -> String {
        if self.0.is_empty() {
            return String::new();
        }
        // Several URLs in one string (refused by validation, but printed by
        // the error that says so, or by a tool before it validates).
        if self.0.contains("://") && self.0.contains(',') {
            return self
                .0
                .split(',')
                .map(|part| Secret::new(part).redacted())
                .collect::<Vec<_>>()
                .join(",");
        }
        if let Some((scheme, rest)) = self.0.split_once("://") {
            let (authority, path) = rest.split_at(rest.find('/').unwrap_or(rest.len()));
            return match authority.rsplit_once('@') {
                Some((userinfo, host)) => {
                    let user = userinfo.split_once(':').map_or(userinfo, |(u, _)| u);
                    if userinfo.contains(':') {
                        format!("{scheme}://{user}:***@{host}{path}")
                    } else {
                        format!("{scheme}://***@{host}{path}")
                    }
                }
                None => self.0.clone(),
            };
        }
        "***".to_owned()
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:?}", self.redacted())
    }
}

impl Serialize for Secret {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.redacted())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_url_of_a_comma_list_is_redacted() {
        let s = Secret::new("amqp://u:pw1@h1:5672/%2f,amqp://u:pw2@h2:5672/%2f");
        assert_eq!(
            s.redacted(),
            "amqp://u:***@h1:5672/%2f,amqp://u:***@h2:5672/%2f"
        );
    }
}
