//! `axn-worker check-config`: loads and validates the configuration (file and
//! `AXN__` environment) and prints the effective settings, secrets hidden.

use crate::config::Settings;

/// The effective settings as TOML, with secrets shown as `***`.
pub fn render(settings: &Settings) -> anyhow::Result<String> {
    Ok(toml::to_string_pretty(settings)?)
}

/// Runs `check-config`: the settings on stdout, "configuration OK" on stderr.
pub fn run(settings: &Settings) -> anyhow::Result<()> {
    print!("{}", render(settings)?);
    eprintln!("configuration OK");
    Ok(())
}
