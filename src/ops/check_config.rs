//! `axn-worker check-config`: loads and validates the configuration (file and
//! `AXN__` environment) and prints the effective settings, secrets hidden.

use crate::config::Settings;

/// The effective settings as TOML, with secrets shown as `***`.
pub fn render(settings: &Settings) -> anyhow::Result<String> {
    Ok(toml::to_string_pretty(settings)?)
}
