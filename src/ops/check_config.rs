//! `axn-worker check-config`: loads and validates the configuration (file and
//! `AXN__` environment) and prints the effective settings, secrets hidden, and
//! warnings about settings that contradict each other.

use crate::config::{QueueKind, Settings};

/// The effective settings as TOML, with secrets shown as `***`.
pub fn render(settings: &Settings) -> anyhow::Result<String> {
    Ok(toml::to_string_pretty(settings)?)
}

/// Settings that are valid one by one but work against each other.
pub fn warnings(settings: &Settings) -> Vec<String> {
    let mut out = Vec::new();
    let longest = QueueKind::ALL
        .into_iter()
        .map(|k| (settings.queues.get(k).timeout_secs, k))
        .max_by_key(|(t, _)| *t);
    if let Some((timeout, kind)) = longest
        && settings.shutdown.grace_period_secs < timeout
    {
        out.push(format!(
            "[shutdown] grace_period_secs ({}) is below [queues.{kind}] timeout_secs ({timeout}): a message in flight at a stop may be cut off and handled again after it",
            settings.shutdown.grace_period_secs
        ));
    }
    for kind in QueueKind::ALL {
        let q = settings.queues.get(kind);
        if q.prefetch < q.concurrency {
            out.push(format!(
                "[queues.{kind}] prefetch ({}) is below its concurrency ({}): at most {} messages are ever handled at once",
                q.prefetch, q.concurrency, q.prefetch
            ));
        }
    }
    out.extend(settings.url_warnings());
    out
}

/// Runs `check-config`: the settings on stdout; warnings and "configuration
/// OK" on stderr.
pub fn run(settings: &Settings) -> anyhow::Result<()> {
    out!("{}", render(settings)?);
    for w in warnings(settings) {
        err!("warning: {w}");
    }
    if let Some(e) = settings.exposure_error() {
        anyhow::bail!("invalid configuration: {e}");
    }
    if settings.api_open_beyond_loopback() {
        err!(
            "warning: the binding API answers without credentials on {} ([platform] allow_unauthenticated = true)",
            settings.http.listen
        );
    }
    for line in tls_lines(settings) {
        err!("{line}");
    }
    err!("configuration OK");
    Ok(())
}

/// What TLS each connection uses (files named, never a key's content).
pub fn tls_lines(settings: &Settings) -> Vec<String> {
    let amqp_tls = settings
        .amqp
        .url
        .urls()
        .iter()
        .any(|u| u.starts_with("amqps://"));
    vec![
        format!(
            "TLS to the broker: {}",
            crate::tls::describe(amqp_tls, &settings.amqp.tls)
        ),
        format!(
            "TLS to Redis: {}",
            crate::tls::describe(settings.redis_uses_tls(), &settings.redis.tls)
        ),
        if settings.http.tls.enabled() {
            format!(
                "HTTPS on {}: certificate {} (key {}), checked for changes every {} s",
                settings.http.listen,
                settings.http.tls.cert_file,
                settings.http.tls.key_file,
                settings.http.tls.reload_check_secs
            )
        } else {
            format!("HTTPS on {}: off (plain HTTP)", settings.http.listen)
        },
    ]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_shipped_config_agrees_with_itself_and_a_short_grace_is_warned() {
        let mut s = Settings::defaults().unwrap();
        assert_eq!(warnings(&s), Vec::<String>::new());
        s.shutdown.grace_period_secs = 30;
        let w = warnings(&s);
        assert_eq!(w.len(), 1);
        assert!(
            w[0].starts_with("[shutdown] grace_period_secs (30) is below [queues."),
            "{w:?}"
        );
    }

    #[test]
    fn a_prefetch_below_the_concurrency_is_warned() {
        let mut s = Settings::defaults().unwrap();
        s.queues.blacklist.prefetch = 4;
        assert_eq!(
            warnings(&s),
            [
                "[queues.blacklist] prefetch (4) is below its concurrency (10): at most 4 messages are ever handled at once"
            ]
        );
    }
}
