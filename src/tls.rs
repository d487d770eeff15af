//! TLS to the broker and to Redis (rustls with ring): the files of
//! `[amqp.tls]` and `[redis.tls]` read and checked once, with errors that
//! name the connection and the file, never a key's content.

use std::sync::Once;

use rustls::pki_types::{CertificateDer, PrivateKeyDer, pem::PemObject};

use crate::config::TlsFiles;

/// What can be wrong with a TLS file.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error("{connection} TLS: {key} {file} cannot be read: {reason}")]
    Unreadable {
        connection: &'static str,
        key: &'static str,
        file: String,
        reason: String,
    },
    #[error("{connection} TLS: {key} {file} holds no {what} in PEM form")]
    NotPem {
        connection: &'static str,
        key: &'static str,
        file: String,
        what: &'static str,
    },
    #[error("{connection} TLS: key_file {key} is not the key of cert_file {cert}")]
    KeyMismatch {
        connection: &'static str,
        cert: String,
        key: String,
    },
    #[error(
        "{connection} TLS: cert_file and key_file go together (mutual TLS): set both or neither"
    )]
    HalfIdentity { connection: &'static str },
    #[error(
        "{connection} TLS: [{section}] files are set but the URL is not {scheme}: TLS would not be used"
    )]
    NotTlsUrl {
        connection: &'static str,
        section: &'static str,
        scheme: &'static str,
    },
}

/// The files' contents, PEM as read (the libraries parse them again).
#[derive(Clone, Default)]
pub struct Loaded {
    pub ca: Option<Vec<u8>>,
    pub cert: Option<Vec<u8>>,
    pub key: Option<Vec<u8>>,
}

impl std::fmt::Debug for Loaded {
    /// Never the key: only which files are there.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Loaded")
            .field("ca", &self.ca.is_some())
            .field("client_cert", &self.cert.is_some())
            .finish()
    }
}

/// rustls needs one process-wide crypto provider when more than one is
/// compiled in (lapin's TLS stack brings aws-lc-rs, reqwest ring): ring.
pub fn install_provider() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        let _ = rustls::crypto::ring::default_provider().install_default();
    });
}

fn read(connection: &'static str, key: &'static str, file: &str) -> Result<Vec<u8>, TlsError> {
    std::fs::read(file).map_err(|e| TlsError::Unreadable {
        connection,
        key,
        file: file.to_owned(),
        reason: e.to_string(),
    })
}

/// Reads and checks `files` for `connection` ("broker", "Redis").
pub fn load(connection: &'static str, files: &TlsFiles) -> Result<Loaded, TlsError> {
    if files.cert_file.is_empty() != files.key_file.is_empty() {
        return Err(TlsError::HalfIdentity { connection });
    }
    let not_pem = |key, file: &str, what| TlsError::NotPem {
        connection,
        key,
        file: file.to_owned(),
        what,
    };
    let mut out = Loaded::default();
    if !files.ca_file.is_empty() {
        let pem = read(connection, "ca_file", &files.ca_file)?;
        let n = CertificateDer::pem_slice_iter(&pem)
            .filter(Result::is_ok)
            .count();
        if n == 0 {
            return Err(not_pem("ca_file", &files.ca_file, "certificate"));
        }
        out.ca = Some(pem);
    }
    if !files.cert_file.is_empty() {
        let cert = read(connection, "cert_file", &files.cert_file)?;
        if CertificateDer::pem_slice_iter(&cert)
            .next()
            .is_none_or(|c| c.is_err())
        {
            return Err(not_pem("cert_file", &files.cert_file, "certificate"));
        }
        let key = read(connection, "key_file", &files.key_file)?;
        let Ok(private) = PrivateKeyDer::from_pem_slice(&key) else {
            return Err(not_pem("key_file", &files.key_file, "private key"));
        };
        // The key must be the certificate's: a pair caught half-rotated
        // (new certificate, old key) fails here, not at every handshake.
        let chain: Vec<CertificateDer<'static>> = CertificateDer::pem_slice_iter(&cert)
            .filter_map(Result::ok)
            .collect();
        let matches = rustls::crypto::ring::default_provider()
            .key_provider
            .load_private_key(private)
            .ok()
            .map(|signing| rustls::sign::CertifiedKey::new(chain, signing))
            .is_some_and(|c| c.keys_match().is_ok());
        if !matches {
            return Err(TlsError::KeyMismatch {
                connection,
                cert: files.cert_file.clone(),
                key: files.key_file.clone(),
            });
        }
        out.cert = Some(cert);
        out.key = Some(key);
    }
    Ok(out)
}

/// The broker's TLS configuration for lapin.
pub fn amqp_config(loaded: &Loaded) -> lapin::tcp::OwnedTLSConfig {
    lapin::tcp::OwnedTLSConfig {
        cert_chain: loaded
            .ca
            .as_ref()
            .map(|pem| String::from_utf8_lossy(pem).into_owned()),
        identity: match (&loaded.cert, &loaded.key) {
            (Some(pem), Some(key)) => Some(lapin::tcp::OwnedIdentity::PKCS8 {
                pem: pem.clone(),
                key: key.clone(),
            }),
            _ => None,
        },
    }
}

/// Redis's TLS certificates for redis-rs, when any file is set.
pub fn redis_certificates(loaded: &Loaded) -> Option<redis::TlsCertificates> {
    if loaded.ca.is_none() && loaded.cert.is_none() {
        return None;
    }
    Some(redis::TlsCertificates {
        client_tls: match (&loaded.cert, &loaded.key) {
            (Some(cert), Some(key)) => Some(redis::ClientTlsConfig {
                client_cert: cert.clone(),
                client_key: key.clone(),
            }),
            _ => None,
        },
        root_cert: loaded.ca.clone(),
    })
}

/// A one-line summary for check-config: TLS on or off, which files.
pub fn describe(tls_url: bool, files: &TlsFiles) -> String {
    if !tls_url {
        return "off (plain TCP)".into();
    }
    let mut parts = vec!["on, server verified (system roots".to_owned()];
    if files.ca_file.is_empty() {
        parts[0].push(')');
    } else {
        parts[0].push_str(&format!(" + {})", files.ca_file));
    }
    if files.server_name.is_empty() {
        parts.push("name: the URL's host".into());
    } else {
        parts.push(format!("name: {}", files.server_name));
    }
    if files.cert_file.is_empty() {
        parts.push("no client certificate".into());
    } else {
        parts.push(format!(
            "client certificate {} (key {})",
            files.cert_file, files.key_file
        ));
    }
    parts.join(", ")
}

/// The end of validity (Unix seconds) of the first certificate of a PEM
/// chain, the one presented.
pub fn not_after(pem: &[u8]) -> Option<i64> {
    let first = CertificateDer::pem_slice_iter(pem).next()?.ok()?;
    let (_, cert) = x509_parser::parse_x509_certificate(first.as_ref()).ok()?;
    Some(cert.validity().not_after.timestamp())
}

/// Says, once per load, until when a presented certificate is valid: a
/// warning from 14 days before its end (cert-manager renews at 30 by
/// default; the alert on the metric fires at 7), an error once it passed.
pub fn report_expiry(what: &str, file: &str, not_after: i64) {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as i64);
    let left = not_after.saturating_sub(now);
    let days = left / 86_400;
    let until = u64::try_from(not_after)
        .ok()
        .map(|s| {
            humantime::format_rfc3339_seconds(
                std::time::UNIX_EPOCH + std::time::Duration::from_secs(s),
            )
            .to_string()
        })
        .unwrap_or_else(|| not_after.to_string());
    if left <= 0 {
        tracing::error!(certificate = what, file, until = %until, "TLS certificate expired");
    } else if days < 14 {
        tracing::warn!(certificate = what, file, until = %until, days_left = days, "TLS certificate expires soon");
    } else {
        tracing::info!(certificate = what, file, until = %until, days_left = days, "TLS certificate valid");
    }
}
