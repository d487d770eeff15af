//! `axn-worker pool import FILE` and `pool list`: the binding API's number
//! pool. Numbers enter with their platform, pool and region (CSV
//! `number,platformId,poolId,regionId`, a header line allowed); each must be a
//! virtual number (16, 17, 19) after normalizing, or nothing is imported.

use std::{collections::BTreeMap, path::PathBuf};

use anyhow::{Context as _, bail};

use crate::{
    config::Settings,
    handlers::now_epoch,
    platform::{api, carrier::platform_name},
    store::Store,
};

/// `pool` subcommands.
#[derive(clap::Subcommand)]
pub enum PoolCommand {
    /// Add numbers to the pool from a CSV file (number,platformId,poolId,regionId;
    /// - for standard input). Numbers already known are left as they are.
    Import {
        #[arg(default_value = "-")]
        file: PathBuf,
    },
    /// Count the numbers of each platform by number state and bind state.
    List,
}

/// One line of an import.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    pub number: String,
    pub platform: u32,
    pub pool: u32,
    pub region: u32,
}

/// Parses a whole import; every bad line is reported (line number and why,
/// the number masked), and then nothing is imported.
pub fn parse(input: &str) -> anyhow::Result<Vec<Entry>> {
    let mut out = Vec::new();
    let mut bad = Vec::new();
    for (i, line) in input.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() || (i == 0 && line.to_ascii_lowercase().starts_with("number")) {
            continue;
        }
        let f: Vec<&str> = line.split(',').map(str::trim).collect();
        let uint = |s: Option<&&str>| s.and_then(|s| s.parse::<u32>().ok());
        let entry = match (f.len(), api::number(f[0], &["16", "17", "19"])) {
            (4, Some(number)) => match (uint(f.get(1)), uint(f.get(2)), uint(f.get(3))) {
                (Some(platform), Some(pool), Some(region)) if platform > 0 => Some(Entry {
                    number,
                    platform,
                    pool,
                    region,
                }),
                _ => {
                    bad.push(format!("line {}: platformId, poolId and regionId must be integers (platformId above 0)", i + 1));
                    None
                }
            },
            (4, None) => {
                bad.push(format!(
                    "line {}: {} is not a virtual number (11 digits starting 16, 17 or 19)",
                    i + 1,
                    crate::phone::mask_digits_in(f[0])
                ));
                None
            }
            _ => {
                bad.push(format!(
                    "line {}: expected number,platformId,poolId,regionId",
                    i + 1
                ));
                None
            }
        };
        out.extend(entry);
    }
    if !bad.is_empty() {
        let shown: Vec<&str> = bad.iter().take(20).map(String::as_str).collect();
        bail!(
            "{} bad line(s); nothing was imported:\n{}",
            bad.len(),
            shown.join("\n")
        );
    }
    if out.is_empty() {
        bail!("no number in the input");
    }
    Ok(out)
}

impl PoolCommand {
    pub async fn run(self, settings: &Settings) -> anyhow::Result<()> {
        let store = Store::new(&settings.redis).context("Failed to set up the Redis client")?;
        match self {
            PoolCommand::Import { file } => {
                let input = super::publish::read_input(&file)?;
                let entries = parse(&input)?;
                let (added, known) = import(&store, &entries).await?;
                outln!("imported {added} number(s); {known} already known, left as they were");
            }
            PoolCommand::List => out!("{}", list(&store).await?),
        }
        Ok(())
    }
}

/// Adds `entries`; (added, already known).
pub async fn import(store: &Store, entries: &[Entry]) -> anyhow::Result<(usize, usize)> {
    let (mut added, mut known) = (0, 0);
    for e in entries {
        if store
            .import_number(&e.number, e.platform, e.pool, e.region, now_epoch())
            .await
            .context("Redis")?
        {
            added += 1;
        } else {
            known += 1;
        }
    }
    Ok((added, known))
}

/// A table: platform, number state, bind state, count.
pub async fn list(store: &Store) -> anyhow::Result<String> {
    let mut out = String::from("platform\tnumberState\tbindState\tcount\n");
    for platform in store.platforms().await.context("Redis")? {
        let mut counts: BTreeMap<(String, String), usize> = BTreeMap::new();
        for x in store.pool_numbers(&platform).await.context("Redis")? {
            if let Some(r) = store.number(&x).await.context("Redis")? {
                *counts.entry((r.number_state, r.bind_state)).or_default() += 1;
            }
        }
        for ((ns, bs), n) in counts {
            out.push_str(&format!(
                "{platform} {}\t{ns} {}\t{bs} {}\t{n}\n",
                platform_name(&platform),
                api::number_state_label(&ns),
                api::bind_state_label(&bs)
            ));
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn imports_follow_the_number_rules() {
        let ok =
            parse("number,platformId,poolId,regionId\n17111526089,3,17,1\n 171-1152-6090 ,1,2,3\n")
                .unwrap();
        assert_eq!(ok.len(), 2);
        assert_eq!(ok[1].number, "17111526090");
        let err = parse("13911112222,3,1,1\n17111526089,x,1,1\n171\n")
            .unwrap_err()
            .to_string();
        assert!(
            err.starts_with("3 bad line(s); nothing was imported"),
            "{err}"
        );
        assert!(
            err.contains("line 1: 139****2222 is not a virtual number"),
            "{err}"
        );
        assert!(!err.contains("13911112222"));
        assert!(parse("").is_err());
    }
}
