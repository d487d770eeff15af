//! `axn-worker health`: asks the running worker's `/readyz` (on `[http]
//! listen`, or `--url`) and exits 0 when it is ready, 1 otherwise, printing
//! what is missing: the Docker HEALTHCHECK and any shell can call it without
//! an HTTP client.

use std::{net::SocketAddr, time::Duration};

use anyhow::{Context as _, bail};

use crate::config::Settings;

/// `health` arguments.
#[derive(clap::Args)]
pub struct HealthArgs {
    /// The worker's HTTP address (default: `[http] listen`; a 0.0.0.0
    /// listener is asked on 127.0.0.1).
    #[arg(long)]
    addr: Option<SocketAddr>,
}

impl HealthArgs {
    pub async fn run(self, settings: &Settings) -> anyhow::Result<()> {
        let mut addr = match self.addr {
            Some(a) => a,
            None => settings
                .http
                .listen
                .parse()
                .context("[http] listen is not an address")?,
        };
        if addr.ip().is_unspecified() {
            addr.set_ip(std::net::Ipv4Addr::LOCALHOST.into());
        }
        let answer = tokio::time::timeout(
            Duration::from_secs(5),
            super::probe::http_get(addr, "/readyz"),
        )
        .await
        .map_err(|_| anyhow::anyhow!("no answer from {addr} within 5 s"))?
        .with_context(|| format!("no worker answers on {addr}"))?;
        match answer {
            (200, body) => {
                outln!("ready: {}", body.trim());
                Ok(())
            }
            (status, body) => bail!("not ready (HTTP {status}): {}", body.trim()),
        }
    }
}
