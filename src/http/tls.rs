//! HTTPS on the listener: rustls with a certificate that is reloaded when
//! its files change (cert-manager, certbot), for new connections, without a
//! restart; a connection keeps the certificate it was opened with.

use std::{
    sync::{Arc, RwLock},
    time::{Duration, SystemTime},
};

use rustls::{
    pki_types::{CertificateDer, PrivateKeyDer, pem::PemObject},
    server::{ClientHello, ResolvesServerCert},
    sign::CertifiedKey,
};
use tokio_util::sync::CancellationToken;

use crate::config::HttpTls;

/// The listener's certificate, swapped in place when its files change.
pub struct Reloading {
    files: HttpTls,
    current: RwLock<(Arc<CertifiedKey>, Option<SystemTime>)>,
    /// Where the certificate's end of validity goes, once serving.
    metrics: std::sync::OnceLock<Arc<crate::metrics::Metrics>>,
}

impl std::fmt::Debug for Reloading {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Reloading")
            .field("cert_file", &self.files.cert_file)
            .finish()
    }
}

impl ResolvesServerCert for Reloading {
    fn resolve(&self, _hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        Some(Arc::clone(&self.current.read().ok()?.0))
    }
}

/// Reads the chain and key; errors name the file, never the key's content.
fn load(files: &HttpTls) -> anyhow::Result<CertifiedKey> {
    let chain: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(&files.cert_file)
        .map_err(|e| anyhow::anyhow!("HTTPS: cert_file {} cannot be read: {e}", files.cert_file))?
        .collect::<Result<_, _>>()
        .map_err(|e| anyhow::anyhow!("HTTPS: cert_file {} is not PEM: {e}", files.cert_file))?;
    anyhow::ensure!(
        !chain.is_empty(),
        "HTTPS: cert_file {} holds no certificate",
        files.cert_file
    );
    let key = PrivateKeyDer::from_pem_file(&files.key_file).map_err(|_| {
        anyhow::anyhow!(
            "HTTPS: key_file {} cannot be read or holds no private key in PEM form",
            files.key_file
        )
    })?;
    let provider = rustls::crypto::ring::default_provider();
    let key = provider
        .key_provider
        .load_private_key(key)
        .map_err(|e| anyhow::anyhow!("HTTPS: key_file {}: {e}", files.key_file))?;
    let certified = CertifiedKey::new(chain, key);
    certified
        .keys_match()
        .map_err(|e| anyhow::anyhow!("HTTPS: the key does not belong to the certificate: {e}"))?;
    Ok(certified)
}

fn modified(files: &HttpTls) -> Option<SystemTime> {
    let m = |f: &str| std::fs::metadata(f).and_then(|m| m.modified()).ok();
    m(&files.cert_file).max(m(&files.key_file))
}

impl Reloading {
    /// Loads the files once (an error stops the start).
    pub fn new(files: &HttpTls) -> anyhow::Result<Arc<Self>> {
        anyhow::ensure!(
            !files.cert_file.is_empty() && !files.key_file.is_empty(),
            "HTTPS: [http.tls] cert_file and key_file go together"
        );
        let stamp = modified(files);
        Ok(Arc::new(Reloading {
            current: RwLock::new((Arc::new(load(files)?), stamp)),
            files: files.clone(),
            metrics: std::sync::OnceLock::new(),
        }))
    }

    /// Reports the certificate's end of validity now and after each reload.
    pub fn attach(&self, metrics: Arc<crate::metrics::Metrics>) {
        let _ = self.metrics.set(metrics);
        self.report();
    }

    fn report(&self) {
        let Some(end) = std::fs::read(&self.files.cert_file)
            .ok()
            .and_then(|pem| crate::tls::not_after(&pem))
        else {
            return;
        };
        crate::tls::report_expiry("http", &self.files.cert_file, end);
        if let Some(m) = self.metrics.get() {
            m.set_certificate_expiry("http", end);
        }
    }

    /// Loads the files again if they changed: true when a new certificate
    /// is in use. A file caught half-written or bad keeps the old one (and
    /// is tried again at the next check).
    pub fn check(&self) -> bool {
        let stamp = modified(&self.files);
        let seen = self.current.read().map(|c| c.1).unwrap_or(None);
        if stamp == seen {
            return false;
        }
        match load(&self.files) {
            Ok(certified) => {
                if let Ok(mut c) = self.current.write() {
                    *c = (Arc::new(certified), stamp);
                }
                tracing::info!(cert_file = %self.files.cert_file, "HTTPS: certificate reloaded");
                self.report();
                true
            }
            Err(e) => {
                tracing::warn!(error = %e, "HTTPS: the changed certificate files cannot be used yet; keeping the current certificate");
                false
            }
        }
    }

    /// Checks the files every `reload_check_secs` until `stop`.
    pub async fn watch(self: Arc<Self>, stop: CancellationToken) {
        let every = Duration::from_secs(self.files.reload_check_secs.max(1));
        loop {
            tokio::select! {
                _ = stop.cancelled() => return,
                _ = tokio::time::sleep(every) => { self.check(); }
            }
        }
    }

    /// The TLS acceptor for the listener (HTTP/1.1).
    pub fn acceptor(self: &Arc<Self>) -> tokio_rustls::TlsAcceptor {
        crate::tls::install_provider();
        let mut config = rustls::ServerConfig::builder()
            .with_no_client_auth()
            .with_cert_resolver(Arc::clone(self) as Arc<dyn ResolvesServerCert>);
        config.alpn_protocols = vec![b"http/1.1".to_vec()];
        tokio_rustls::TlsAcceptor::from(Arc::new(config))
    }
}
