//! TLS to the broker and to Redis against real TLS endpoints the tests
//! start, with certificates made here (rcgen, into a temp dir): a
//! redis-server of the test's own on its `--tls-port` requiring client
//! certificates, and a TLS proxy (rustls, client certificates required) in
//! front of the local RabbitMQ. The worker consumes and writes through both;
//! a wrong CA, a missing client certificate and unreadable files are refused
//! with errors that name the connection and the file, never a key.

use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use axn_worker::config::{QueueKind, RedisUrl, Secret, TlsFiles};
use rcgen::{BasicConstraints, CertificateParams, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair};
use tokio::net::{TcpListener, TcpStream};

use crate::helpers::{TestApp, test_settings, unique_id};
use crate::lifecycle::{own_redis_with, spare_port};

/// A CA, a server certificate for localhost and a client certificate it
/// signed, and an unrelated CA; PEM files in a temp dir removed on drop.
struct Pki {
    dir: PathBuf,
    ca: String,
    server_cert: String,
    server_key: String,
    client_cert: String,
    client_key: String,
    other_ca: String,
}

impl Drop for Pki {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn ca(name: &str) -> (rcgen::Certificate, Issuer<'static, KeyPair>) {
    let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    params
        .distinguished_name
        .push(rcgen::DnType::CommonName, name);
    let key = KeyPair::generate().unwrap();
    let cert = params.self_signed(&key).unwrap();
    (cert, Issuer::new(params, key))
}

fn leaf(
    issuer: &Issuer<'static, KeyPair>,
    names: &[&str],
    usage: ExtendedKeyUsagePurpose,
    until_year: i32,
) -> (String, String) {
    let mut params =
        CertificateParams::new(names.iter().map(|n| n.to_string()).collect::<Vec<_>>()).unwrap();
    params.extended_key_usages.push(usage);
    params.not_after = rcgen::date_time_ymd(until_year, 1, 1);
    params.use_authority_key_identifier_extension = true;
    let key = KeyPair::generate().unwrap();
    let cert = params.signed_by(&key, issuer).unwrap();
    (cert.pem(), key.serialize_pem())
}

fn pki() -> Pki {
    pki_until(2040)
}

/// As `pki`, the server certificate valid until 1 January `year`.
fn pki_until(year: i32) -> Pki {
    pki_for(year, &["localhost", "127.0.0.1"])
}

/// As `pki`, the server certificate valid until 1 January `year` for
/// `names` only.
fn pki_for(year: i32, names: &[&str]) -> Pki {
    let dir = std::env::temp_dir().join(format!("axn-tls-{}", unique_id()));
    std::fs::create_dir_all(&dir).unwrap();
    let (ca_cert, issuer) = ca("axn test CA");
    let (other_cert, _) = ca("another CA");
    let (server_cert, server_key) = leaf(&issuer, names, ExtendedKeyUsagePurpose::ServerAuth, year);
    let (client_cert, client_key) = leaf(
        &issuer,
        &["axn-worker"],
        ExtendedKeyUsagePurpose::ClientAuth,
        2040,
    );
    let write = |name: &str, pem: &str| {
        let path = dir.join(name);
        std::fs::write(&path, pem).unwrap();
        path.to_string_lossy().into_owned()
    };
    Pki {
        ca: write("ca.pem", &ca_cert.pem()),
        server_cert: write("server.pem", &server_cert),
        server_key: write("server.key", &server_key),
        client_cert: write("client.pem", &client_cert),
        client_key: write("client.key", &client_key),
        other_ca: write("other-ca.pem", &other_cert.pem()),
        dir,
    }
}

impl Pki {
    fn client_files(&self) -> TlsFiles {
        TlsFiles {
            ca_file: self.ca.clone(),
            cert_file: self.client_cert.clone(),
            key_file: self.client_key.clone(),
            server_name: String::new(),
        }
    }
}

/// A TLS proxy to the local broker that requires a client certificate of
/// the test's CA; counts the handshakes that passed and failed.
struct TlsProxy {
    port: u16,
    passed: Arc<AtomicUsize>,
    failed: Arc<AtomicUsize>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for TlsProxy {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn tls_proxy(pki: &Pki) -> TlsProxy {
    use rustls::pki_types::{CertificateDer, PrivateKeyDer, pem::PemObject};
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut roots = rustls::RootCertStore::empty();
    for c in CertificateDer::pem_file_iter(&pki.ca).unwrap() {
        roots.add(c.unwrap()).unwrap();
    }
    let verifier = rustls::server::WebPkiClientVerifier::builder_with_provider(
        Arc::new(roots),
        provider.clone(),
    )
    .build()
    .unwrap();
    let chain: Vec<CertificateDer> = CertificateDer::pem_file_iter(&pki.server_cert)
        .unwrap()
        .map(Result::unwrap)
        .collect();
    let key = PrivateKeyDer::from_pem_file(&pki.server_key).unwrap();
    let config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_client_cert_verifier(verifier)
        .with_single_cert(chain, key)
        .unwrap();
    let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(config));
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let (passed, failed) = (Arc::new(AtomicUsize::new(0)), Arc::new(AtomicUsize::new(0)));
    let (p, f) = (passed.clone(), failed.clone());
    let task = tokio::spawn(async move {
        loop {
            let Ok((socket, _)) = listener.accept().await else {
                return;
            };
            let (acceptor, p, f) = (acceptor.clone(), p.clone(), f.clone());
            tokio::spawn(async move {
                match acceptor.accept(socket).await {
                    Ok(mut tls) => {
                        p.fetch_add(1, Ordering::SeqCst);
                        if let Ok(mut up) = TcpStream::connect("127.0.0.1:5672").await {
                            let _ = tokio::io::copy_bidirectional(&mut tls, &mut up).await;
                        }
                    }
                    Err(_) => {
                        f.fetch_add(1, Ordering::SeqCst);
                    }
                }
            });
        }
    });
    TlsProxy {
        port,
        passed,
        failed,
        task,
    }
}

/// redis-server of the test's own: a plain port (for the test's own reads)
/// and a TLS port that requires client certificates of the test's CA.
async fn tls_redis(pki: &Pki) -> (crate::lifecycle::OwnRedis, u16, u16) {
    let (plain, tls) = (spare_port(), spare_port());
    let tls_port = tls.to_string();
    let redis = own_redis_with(
        plain,
        &[
            "--appendonly",
            "no",
            "--tls-port",
            &tls_port,
            "--tls-cert-file",
            &pki.server_cert,
            "--tls-key-file",
            &pki.server_key,
            "--tls-ca-cert-file",
            &pki.ca,
            "--tls-auth-clients",
            "yes",
        ],
    )
    .await;
    (redis, plain, tls)
}

/// The whole worker over TLS: `amqps://` through the proxy (mutual TLS) and
/// `rediss://` to the test's redis-server (mutual TLS): a phone change
/// published to its queue lands in that Redis; the proxy saw only TLS
/// handshakes with a client certificate, and none failed.
#[tokio::test]
async fn the_worker_consumes_and_writes_over_mutual_tls() {
    let pki = pki();
    let proxy = tls_proxy(&pki).await;
    let (_redis, plain, tls) = tls_redis(&pki).await;
    let id = unique_id();
    let mut settings = test_settings(&id);
    settings.amqp.url = axn_worker::config::AmqpUrl::one(format!(
        "amqps://guest:guest@localhost:{}/%2f",
        proxy.port
    ));
    settings.amqp.tls = pki.client_files();
    settings.redis.url = RedisUrl::Single(Secret::new(format!("rediss://localhost:{tls}/0")));
    settings.redis.tls = pki.client_files();
    settings.validate().expect("the TLS settings are valid");
    let lines = axn_worker::ops::check_config::tls_lines(&settings);
    assert!(
        lines[0].starts_with("TLS to the broker: on") && lines[0].contains(&pki.client_cert),
        "{lines:?}"
    );
    assert!(
        lines[1].starts_with("TLS to Redis: on") && lines[1].contains(&pki.ca),
        "{lines:?}"
    );
    let app = TestApp::connect(id, settings).await.start().await;
    app.publish(
        QueueKind::PhoneHistory,
        br#"{"userId": "74705", "newPhone": "13812345678", "oldPhone": ""}"#,
    )
    .await;
    let mut own = redis::Client::open(format!("redis://127.0.0.1:{plain}/0"))
        .unwrap()
        .get_multiplexed_async_connection()
        .await
        .unwrap();
    let key = app.key("PrivateNumber_user_phone");
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    loop {
        let phone: Option<String> = redis::cmd("HGET")
            .arg(&key)
            .arg("74705")
            .query_async(&mut own)
            .await
            .unwrap();
        if phone.as_deref() == Some("13812345678") {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the phone change reached the TLS Redis"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(
        proxy.passed.load(Ordering::SeqCst) >= 1,
        "the broker was reached through TLS"
    );
    assert_eq!(
        proxy.failed.load(Ordering::SeqCst),
        0,
        "no handshake failed"
    );
}

/// A wrong CA and a missing client certificate are refused by both
/// connections (never a plain fallback); unreadable or non-PEM files are
/// refused at check time with the connection and the file named, and a
/// key's content is never shown.
#[tokio::test]
async fn wrong_ca_missing_client_certificate_and_bad_files_are_refused() {
    let pki = pki();
    let proxy = tls_proxy(&pki).await;
    let (_redis, _plain, tls) = tls_redis(&pki).await;
    let id = unique_id();
    let mut base = test_settings(&id);
    base.amqp.url = axn_worker::config::AmqpUrl::one(format!(
        "amqps://guest:guest@localhost:{}/%2f",
        proxy.port
    ));
    base.amqp.connect_timeout_secs = 5;
    base.redis.url = RedisUrl::Single(Secret::new(format!("rediss://localhost:{tls}/0")));
    let wrong_ca = TlsFiles {
        ca_file: pki.other_ca.clone(),
        ..pki.client_files()
    };
    let no_client_cert = TlsFiles {
        ca_file: pki.ca.clone(),
        ..TlsFiles::default()
    };
    for (what, files, fails_with) in [
        ("a wrong CA", wrong_ca, "UnknownIssuer"),
        ("no client certificate", no_client_cert, ""),
    ] {
        let mut s = base.clone();
        s.amqp.tls = files.clone();
        s.redis.tls = files;
        let amqp = axn_worker::amqp::connect(&s, "tls-test").await;
        let e = amqp
            .err()
            .unwrap_or_else(|| panic!("{what}: the broker connection was refused"))
            .to_string();
        assert!(e.contains(fails_with), "{what}, broker: {e}");
        let store = axn_worker::store::Store::new(&s.redis).unwrap();
        let e = store
            .ping()
            .await
            .err()
            .unwrap_or_else(|| panic!("{what}: Redis refused"))
            .to_string();
        assert!(e.contains(fails_with), "{what}, Redis: {e}");
    }
    assert!(
        proxy.failed.load(Ordering::SeqCst) >= 2,
        "the proxy refused both handshakes"
    );
    // amqps:// to a broker port that speaks plain AMQP: refused, never a
    // plain connection that would send the password in clear (the build
    // before this one connected and consumed in plain TCP).
    let mut plain = base.clone();
    plain.amqp.url = axn_worker::config::AmqpUrl::one("amqps://guest:guest@localhost:5672/%2f");
    plain.amqp.tls = pki.client_files();
    assert!(
        axn_worker::amqp::connect(&plain, "tls-test").await.is_err(),
        "amqps:// to a plain AMQP port must not connect"
    );

    // Files: named with their connection, the key's content never shown.
    let secret_key = pki.dir.join("not-a-key.pem");
    std::fs::write(&secret_key, "s3cret-key-material").unwrap();
    let secret_key = secret_key.to_string_lossy().into_owned();
    for (env, says) in [
        (
            vec![("AXN__AMQP__TLS__CA_FILE", "/nonexistent/ca.pem")],
            "broker TLS: ca_file /nonexistent/ca.pem cannot be read",
        ),
        (
            vec![
                ("AXN__AMQP__TLS__CERT_FILE", pki.client_cert.as_str()),
                ("AXN__AMQP__TLS__KEY_FILE", secret_key.as_str()),
            ],
            "holds no private key in PEM form",
        ),
        (
            vec![("AXN__AMQP__TLS__CERT_FILE", pki.client_cert.as_str())],
            "cert_file and key_file go together",
        ),
        (
            // A pair caught half-rotated: the certificate with another key.
            vec![
                ("AXN__AMQP__TLS__CERT_FILE", pki.client_cert.as_str()),
                ("AXN__AMQP__TLS__KEY_FILE", pki.server_key.as_str()),
            ],
            "is not the key of cert_file",
        ),
        (
            vec![
                ("AXN__REDIS__TLS__CA_FILE", pki.ca.as_str()),
                ("AXN__REDIS__URL", "redis://127.0.0.1:6379/0"),
            ],
            "Redis TLS: [redis.tls] files are set but the URL is not rediss://",
        ),
    ] {
        let mut all = vec![
            ("AXN__AMQP__URL", "amqps://guest:guest@localhost:5671/%2f"),
            ("AXN__AMQP__TLS__CA_FILE", pki.ca.as_str()),
        ];
        all.extend(env.iter().copied());
        let out = crate::helpers::cli(&["--config", crate::helpers::CONFIG, "check-config"], &all);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "{env:?}: {stderr}");
        assert!(stderr.contains(says), "{env:?}: {stderr}");
        assert!(!stderr.contains("s3cret-key-material"), "{stderr}");
    }
}

/// RabbitMQ's own TLS listener (a node of the test's own, `ssl_options`
/// with `verify_peer` and `fail_if_no_peer_cert`), its certificate naming
/// only `broker.axn.test` while the URL says 127.0.0.1: refused on the
/// name, refused without a client certificate, and with
/// `server_name = "broker.axn.test"` and the client certificate the worker
/// consumes there, the broker listing its connections as TLS.
#[tokio::test]
async fn rabbitmqs_own_tls_listener_with_an_expected_server_name() {
    use crate::rabbit_cluster::RabbitCluster;
    assert!(
        RabbitCluster::available(),
        "RabbitMQ's scripts are not in /usr/lib/rabbitmq/bin"
    );
    let pki = pki_for(2040, &["broker.axn.test"]);
    let ssl_port = spare_port();
    let conf = format!(
        "listeners.ssl.default = 127.0.0.1:{ssl_port}\n\
         ssl_options.cacertfile = {}\n\
         ssl_options.certfile = {}\n\
         ssl_options.keyfile = {}\n\
         ssl_options.verify = verify_peer\n\
         ssl_options.fail_if_no_peer_cert = true\n",
        pki.ca, pki.server_cert, pki.server_key
    );
    let id = unique_id();
    let tag = id.clone();
    let node = tokio::task::spawn_blocking(move || RabbitCluster::start_nodes(&tag, 1, &conf))
        .await
        .unwrap();
    let mut settings = test_settings(&id);
    settings.amqp.url =
        axn_worker::config::AmqpUrl::one(format!("amqps://guest:guest@127.0.0.1:{ssl_port}/%2f"));
    settings.amqp.connect_timeout_secs = 5;
    settings.amqp.tls = pki.client_files();

    // The URL's host is not in the certificate: refused on the name.
    let e = axn_worker::amqp::connect(&settings, "tls-test")
        .await
        .expect_err("a certificate for another name is refused")
        .to_string();
    assert!(e.contains("not valid for name"), "{e}");
    // The right name but no client certificate: the broker refuses.
    settings.amqp.tls.server_name = "broker.axn.test".into();
    let mut anonymous = settings.clone();
    anonymous.amqp.tls.cert_file.clear();
    anonymous.amqp.tls.key_file.clear();
    assert!(
        axn_worker::amqp::connect(&anonymous, "tls-test")
            .await
            .is_err(),
        "fail_if_no_peer_cert refuses a client without a certificate"
    );
    settings.validate().expect("the TLS settings are valid");
    let lines = axn_worker::ops::check_config::tls_lines(&settings);
    assert!(lines[0].contains("name: broker.axn.test"), "{lines:?}");

    let app = TestApp::connect(id, settings).await.start().await;
    // Published on the node's plain listener, consumed by the worker over TLS.
    let plain = lapin::Connection::connect(
        &format!("amqp://guest:guest@127.0.0.1:{}/%2f", node.amqp_ports[0]),
        lapin::ConnectionProperties::default(),
    )
    .await
    .unwrap();
    let ch = plain.create_channel().await.unwrap();
    ch.basic_publish(
        "".into(),
        app.queue(QueueKind::PhoneHistory).as_str().into(),
        Default::default(),
        br#"{"userId": "74706", "newPhone": "13812345679", "oldPhone": ""}"#,
        Default::default(),
    )
    .await
    .unwrap();
    let key = app.key("PrivateNumber_user_phone");
    field_becomes(
        &app,
        &app.redis,
        &key,
        "74706",
        "13812345679",
        "the phone change was applied",
    )
    .await;
    // The broker's view: the worker's connections came in on the TLS port,
    // as TLS, with the test's client certificate.
    let listed = node.ctl_output(0, &["list_connections", "port", "ssl", "peer_cert_issuer"]);
    let worker: Vec<&str> = listed
        .lines()
        .filter(|l| l.starts_with(&format!("{ssl_port}\t")))
        .collect();
    assert!(!worker.is_empty(), "{listed}");
    assert!(
        worker
            .iter()
            .all(|l| l.contains("\ttrue\t") && l.contains("axn test CA")),
        "every worker connection is TLS with the client certificate: {listed}"
    );
    drop(plain);
    drop(app);
    drop(node);
}

/// The mapping API beyond loopback over plain HTTP: its Basic password
/// would cross the network in clear. check-config warns (and the worker at
/// start, through the same list); with [http.tls] set, it does not.
#[test]
fn the_mapping_api_in_clear_beyond_loopback_is_warned_about() {
    let pki = pki();
    let check = |extra: &[(&str, &str)]| {
        let mut env = vec![
            ("AXN__HTTP__LISTEN", "0.0.0.0:8443"),
            ("AXN__MAPPING__PASSWORD", "pw"),
            ("AXN__PLATFORM__BEARER_TOKEN", "t"),
        ];
        env.extend(extra.iter().copied());
        let out = crate::helpers::cli(&["--config", crate::helpers::CONFIG, "check-config"], &env);
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stderr).into_owned()
    };
    let clear = check(&[]);
    assert!(
        clear.contains("the number-mapping API is on over plain HTTP on 0.0.0.0:8443"),
        "{clear}"
    );
    let https = check(&[
        ("AXN__HTTP__TLS__CERT_FILE", pki.server_cert.as_str()),
        ("AXN__HTTP__TLS__KEY_FILE", pki.server_key.as_str()),
    ]);
    assert!(!https.contains("plain HTTP on 0.0.0.0"), "{https}");
    assert!(
        https.contains("HTTPS on 0.0.0.0:8443: certificate"),
        "{https}"
    );
}

/// Secrets from files (`AXN__<KEY>_FILE`, as a Kubernetes Secret volume or
/// systemd's `LoadCredential=` gives them): the broker URL with its
/// password, the mapping password and the binding API's bearer token, each
/// read from a file by the real binary, and used: the worker gets ready and
/// both APIs take the credentials from the files. A missing file is an error
/// naming the variable and the file.
#[tokio::test]
async fn secrets_come_from_files() {
    use crate::helpers::{BIN, CONFIG, env_for, free_port};
    let pki = pki();
    let id = unique_id();
    let settings = test_settings(&id);
    let app = TestApp::connect(id, settings).await;
    let file = |name: &str, content: &str| {
        let path = pki.dir.join(name);
        std::fs::write(&path, content).unwrap();
        path.to_string_lossy().into_owned()
    };
    let url_file = file("amqp-url", &format!("{}\n", crate::helpers::AMQP_URL));
    let mapping_file = file("mapping-password", "from-a-file\n");
    let token_file = file("bearer-token", "token-from-a-file");
    let port = free_port();
    let mut child = tokio::process::Command::new(BIN)
        .args(["run", "--config", CONFIG])
        .envs(
            env_for(&app.settings)
                .into_iter()
                .filter(|(k, _)| k != "AXN__AMQP__URL"),
        )
        .env("AXN__AMQP__URL_FILE", &url_file)
        .env("AXN__MAPPING__PASSWORD_FILE", &mapping_file)
        .env("AXN__PLATFORM__BEARER_TOKEN_FILE", &token_file)
        .env("AXN__HTTP__LISTEN", format!("127.0.0.1:{port}"))
        .env("RUST_LOG", "warn")
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let addr: std::net::SocketAddr = ([127, 0, 0, 1], port).into();
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    while crate::helpers::try_get(addr, "/readyz")
        .await
        .map(|a| a.0)
        .unwrap_or(0)
        != 200
    {
        assert!(
            std::time::Instant::now() < deadline,
            "ready with the broker URL from a file"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let body = br#"{"Numbers": ["13988888888"], "Mode": "PhoneToUID"}"#;
    let ok =
        crate::helpers::post(addr, "/number-mapping", body, Some(("tccc", "from-a-file"))).await;
    assert_eq!(ok.status, 200, "{}", ok.body);
    let wrong = crate::helpers::post(
        addr,
        "/number-mapping",
        body,
        Some(("tccc", "from-a-file\n")),
    )
    .await;
    assert_eq!(
        wrong.status, 401,
        "the file's trailing newline is not part of the password"
    );
    let path = format!("{}/QueryUserAxs?userid=1", axn_worker::platform::BASE_A);
    let none = crate::helpers::request(addr, "GET", &path, &[], b"").await;
    assert_eq!(none.status, 401, "credentials are required");
    let token = [("Authorization", "Bearer token-from-a-file".to_owned())];
    let with_token = crate::helpers::request(addr, "GET", &path, &token, b"").await;
    assert_eq!(with_token.status, 200, "{}", with_token.body);
    let _ = child.kill().await;
    // A missing file: the variable and the file named.
    let out = crate::helpers::cli(
        &["--config", CONFIG, "check-config"],
        &[(
            "AXN__PLATFORM__PASSWORD_FILE",
            "/nonexistent/platform-password",
        )],
    );
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(
        stderr.contains("AXN__PLATFORM__PASSWORD_FILE: the secret file /nonexistent/platform-password cannot be read"),
        "{stderr}"
    );
}

/// HTTPS on the listener: a client that trusts the test's CA gets every
/// endpoint (the mapping API with its password among them), plain HTTP gets
/// nothing; when the files change to a certificate of another CA, new
/// connections get it within the check interval, without a restart; a
/// changed file that is not a certificate keeps the one in use.
#[tokio::test]
async fn https_with_a_certificate_reloaded_when_its_files_change() {
    axn_worker::tls::install_provider();
    let (first, second) = (pki_until(2031), pki_until(2032));
    let cert_file = first.dir.join("https.pem");
    let key_file = first.dir.join("https.key");
    let install = |from: &Pki| {
        // The key first, then the chain: the reload takes the pair once the
        // newer of the two changed (a half-written pair fails and is kept
        // for the next check).
        std::fs::copy(&from.server_key, &key_file).unwrap();
        std::fs::copy(&from.server_cert, &cert_file).unwrap();
    };
    install(&first);
    let id = unique_id();
    let mut settings = test_settings(&id);
    settings.http.tls = axn_worker::config::HttpTls {
        cert_file: cert_file.to_string_lossy().into_owned(),
        key_file: key_file.to_string_lossy().into_owned(),
        reload_check_secs: 1,
    };
    settings.mapping.password = Secret::new("pw");
    let lines = axn_worker::ops::check_config::tls_lines(&settings);
    assert!(
        lines[2].contains("HTTPS on") && lines[2].contains("https.pem"),
        "{lines:?}"
    );
    let mut app = TestApp::connect(id, settings).await;
    app.launch().await;
    let port = app.addr.port();
    let trusting = |pki: &Pki| {
        let ca = std::fs::read(&pki.ca).unwrap();
        reqwest::Client::builder()
            .tls_built_in_root_certs(false)
            .add_root_certificate(reqwest::Certificate::from_pem(&ca).unwrap())
            .pool_max_idle_per_host(0)
            .build()
            .unwrap()
    };
    let (old_ca, new_ca) = (trusting(&first), trusting(&second));
    let url = |path: &str| format!("https://localhost:{port}{path}");
    let ok = |c: &reqwest::Client, path: &str| {
        let r = c.get(url(path)).send();
        async move { r.await.map(|r| r.status().as_u16()).ok() == Some(200) }
    };
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    while !ok(&old_ca, "/readyz").await {
        assert!(std::time::Instant::now() < deadline, "ready over HTTPS");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let mapped = old_ca
        .post(url("/number-mapping"))
        .basic_auth("tccc", Some("pw"))
        .body(r#"{"Numbers": ["13988888888"], "Mode": "PhoneToUID"}"#)
        .send()
        .await
        .unwrap();
    assert_eq!(mapped.status(), 200);
    assert!(
        !ok(&new_ca, "/healthz").await,
        "a client of another CA is refused"
    );
    let expiry = |c: reqwest::Client| async move {
        let page = c
            .get(url("/metrics"))
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap();
        page.lines()
            .find_map(|l| {
                l.strip_prefix(
                    r#"axn_tls_certificate_expiry_timestamp_seconds{certificate="http"} "#,
                )
            })
            .map(|v| v.trim().to_owned())
    };
    // 2031-01-01T00:00:00Z, the first certificate's end.
    assert_eq!(expiry(old_ca.clone()).await.as_deref(), Some("1924992000"));
    let plain = crate::helpers::try_get(app.addr, "/healthz").await;
    assert!(
        plain.map(|a| a.0).unwrap_or(0) != 200,
        "plain HTTP gets nothing"
    );

    // Rotation: the second CA's certificate, for new connections.
    tokio::time::sleep(Duration::from_millis(1100)).await; // a new mtime
    install(&second);
    let deadline = std::time::Instant::now() + Duration::from_secs(15);
    while !ok(&new_ca, "/healthz").await {
        assert!(
            std::time::Instant::now() < deadline,
            "the new certificate is served without a restart"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    // The metric follows: 2032-01-01T00:00:00Z.
    assert_eq!(expiry(new_ca.clone()).await.as_deref(), Some("1956528000"));
    // A new client (no TLS session to resume) of the old CA: refused.
    // (A client resuming a session from before the rotation skips the
    // certificate, as TLS resumption does everywhere.)
    assert!(
        !ok(&trusting(&first), "/healthz").await,
        "the old certificate is gone for new connections"
    );
    // A bad file: the certificate in use stays.
    tokio::time::sleep(Duration::from_millis(1100)).await;
    std::fs::write(&cert_file, "not a certificate").unwrap();
    tokio::time::sleep(Duration::from_millis(2500)).await;
    assert!(
        ok(&new_ca, "/healthz").await,
        "a bad file keeps the certificate in use"
    );
    app.stop().await.unwrap();
}

/// The TLS arguments of a redis-server (or sentinel) of the tests': TLS
/// only (`port 0`), clients must present a certificate, and its own
/// connections (replication, the cluster bus, a sentinel's to the master)
/// over TLS with the client certificate.
fn redis_tls_args(pki: &Pki, tls_port: u16) -> Vec<String> {
    [
        "--port",
        "0",
        "--tls-port",
        &tls_port.to_string(),
        "--tls-cert-file",
        &pki.server_cert,
        "--tls-key-file",
        &pki.server_key,
        "--tls-client-cert-file",
        &pki.client_cert,
        "--tls-client-key-file",
        &pki.client_key,
        "--tls-ca-cert-file",
        &pki.ca,
        "--tls-auth-clients",
        "yes",
        "--tls-replication",
        "yes",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect()
}

/// redis-cli against a TLS port of the tests', with the client certificate
/// (a child process awaited: the worker under test shares this runtime).
async fn redis_cli_tls(pki: &Pki, args: &[&str]) -> String {
    let out = tokio::process::Command::new("redis-cli")
        .args(["--tls", "--cacert", &pki.ca, "--cert", &pki.client_cert])
        .args(["--key", &pki.client_key])
        .args(args)
        .stdin(std::process::Stdio::null())
        .output()
        .await
        .expect("redis-cli is installed");
    String::from_utf8_lossy(&out.stdout).trim().to_owned()
}

/// Waits until a TLS redis-server answers PING on `port`.
async fn until_tls_answers(pki: &Pki, port: u16) {
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    while redis_cli_tls(pki, &["-h", "localhost", "-p", &port.to_string(), "PING"]).await != "PONG"
    {
        assert!(
            std::time::Instant::now() < deadline,
            "the TLS redis-server on {port} answers"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Waits until `HGET key field` through `read` says `want`.
async fn until_hget(read: impl AsyncFn() -> String, want: &str, what: &str) {
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    while read().await != want {
        assert!(std::time::Instant::now() < deadline, "{what}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// A Sentinel-managed master, sentinel and master TLS only, mutual TLS
/// everywhere, their certificate for `localhost` only (no IP address): the
/// sentinel announces host names (`announce-hostnames`), so the worker,
/// asking it over `rediss://`, reaches the master it names (`master_tls`)
/// with the name verified, and writes there.
#[tokio::test]
async fn a_sentinel_and_its_master_over_mutual_tls() {
    let pki = pki_for(2040, &["localhost"]);
    // Declared first, dropped last: the servers are killed before their
    // directory goes, also when the test fails.
    let gone = TempDir::new("axn-tls-sentinel");
    let dir = gone.0.clone();
    let master_port = spare_port();
    let args = redis_tls_args(&pki, master_port);
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let _master = own_redis_with(0, &args).await;
    until_tls_answers(&pki, master_port).await;
    let sentinel_port = spare_port();
    let conf = dir.join("sentinel.conf");
    std::fs::write(
        &conf,
        format!(
            "bind 127.0.0.1\ndir {}\nsentinel resolve-hostnames yes\nsentinel announce-hostnames yes\nsentinel monitor axnm localhost {master_port} 1\nsentinel down-after-milliseconds axnm 1000\n",
            dir.display()
        ),
    )
    .unwrap();
    let mut sentinel_args = redis_tls_args(&pki, sentinel_port);
    sentinel_args.drain(0..2); // "--port 0" is the sentinel's default too
    let _sentinel = tokio::process::Command::new("redis-server")
        .arg(&conf)
        .arg("--sentinel")
        .arg("--port")
        .arg("0")
        .args(&sentinel_args)
        .stdout(std::process::Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .expect("redis-server is installed");
    let sp = sentinel_port.to_string();
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    loop {
        let addr = redis_cli_tls(
            &pki,
            &[
                "-h",
                "localhost",
                "-p",
                &sp,
                "SENTINEL",
                "get-master-addr-by-name",
                "axnm",
            ],
        )
        .await;
        if addr.starts_with("localhost") {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the sentinel names the master by host name: {addr:?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    let id = unique_id();
    let mut settings = test_settings(&id);
    settings.redis.url = RedisUrl::Sentinel(axn_worker::config::SentinelSettings {
        sentinels: vec![Secret::new(format!("rediss://localhost:{sentinel_port}"))],
        master_name: "axnm".into(),
        username: String::new(),
        password: Secret::new(""),
        db: 0,
        master_tls: true,
    });
    settings.redis.tls = pki.client_files();
    settings.validate().expect("the TLS settings are valid");
    let app = TestApp::connect(id, settings).await.start().await;
    app.publish(
        QueueKind::PhoneHistory,
        br#"{"userId": "74707", "newPhone": "13812345670", "oldPhone": ""}"#,
    )
    .await;
    let key = app.key("PrivateNumber_user_phone");
    let mp = master_port.to_string();
    until_hget(
        async || redis_cli_tls(&pki, &["-h", "localhost", "-p", &mp, "HGET", &key, "74707"]).await,
        "13812345670",
        "the phone change reached the master over TLS",
    )
    .await;
}

/// A three-master Redis Cluster, TLS only with mutual TLS on the client
/// port and the cluster bus, its certificate for `localhost` only: the
/// nodes announce their host name (`cluster-announce-hostname`,
/// `cluster-preferred-endpoint-type hostname`), so the worker, from
/// `rediss://localhost:<port>` seeds, reaches every node with the name
/// verified; a message of each kind that writes lands on the cluster.
#[tokio::test]
async fn a_redis_cluster_over_mutual_tls() {
    let pki = pki_for(2040, &["localhost"]);
    // Declared first, dropped last: the nodes are killed before their
    // directory goes, also when the test fails.
    let gone = TempDir::new("axn-tls-cluster");
    let dir = gone.0.clone();
    let mut nodes = Vec::new();
    let mut ports = Vec::new();
    for i in 0..3 {
        let (port, bus) = (spare_port(), spare_port());
        let mut args = redis_tls_args(&pki, port);
        args.extend(
            [
                "--tls-cluster",
                "yes",
                "--cluster-enabled",
                "yes",
                "--cluster-port",
                &bus.to_string(),
                "--cluster-config-file",
                &format!("node-{i}-{port}.conf"),
                "--cluster-announce-hostname",
                "localhost",
                "--cluster-preferred-endpoint-type",
                "hostname",
                "--dir",
                dir.to_str().unwrap(),
                "--appendonly",
                "no",
            ]
            .iter()
            .map(|s| s.to_string()),
        );
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        nodes.push(own_redis_with(0, &args).await);
        ports.push(port);
    }
    for p in &ports {
        until_tls_answers(&pki, *p).await;
    }
    let mut create = vec!["--cluster".to_owned(), "create".to_owned()];
    create.extend(ports.iter().map(|p| format!("127.0.0.1:{p}")));
    create.push("--cluster-yes".into());
    let create: Vec<&str> = create.iter().map(String::as_str).collect();
    let said = redis_cli_tls(&pki, &create).await;
    assert!(said.contains("All 16384 slots covered"), "{said}");
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    for p in &ports {
        let p = p.to_string();
        while !redis_cli_tls(&pki, &["-h", "localhost", "-p", &p, "CLUSTER", "INFO"])
            .await
            .contains("cluster_state:ok")
        {
            assert!(std::time::Instant::now() < deadline, "cluster ok at {p}");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    let id = unique_id();
    let mut settings = test_settings(&id);
    settings.redis.url = RedisUrl::Cluster(
        ports
            .iter()
            .map(|p| Secret::new(format!("rediss://localhost:{p}")))
            .collect(),
    );
    settings.redis.tls = pki.client_files();
    settings.validate().expect("the TLS settings are valid");
    let app = TestApp::connect(id, settings).await.start().await;
    let users = ["74711", "74712", "74713", "74714", "74715", "74716"];
    for (i, u) in users.iter().enumerate() {
        app.publish(
            QueueKind::PhoneHistory,
            format!(r#"{{"userId": "{u}", "newPhone": "1381234568{i}", "oldPhone": ""}}"#)
                .as_bytes(),
        )
        .await;
    }
    let key = app.key("PrivateNumber_user_phone");
    let p0 = ports[0].to_string();
    for (i, u) in users.iter().enumerate() {
        until_hget(
            async || {
                redis_cli_tls(&pki, &["-c", "-h", "localhost", "-p", &p0, "HGET", &key, u]).await
            },
            &format!("1381234568{i}"),
            "the phone change reached the cluster over TLS",
        )
        .await;
    }
    drop(app);
    drop(nodes);
}

/// A Redis client certificate rotated while the worker runs: the files are
/// replaced by a certificate of another CA, the server made to trust only
/// that CA, and the worker's connections killed. The worker reconnects with
/// the new files (within `TLS_RECHECK` of the change), is ready again and
/// writes; the metric follows the new certificate. (Read only at start
/// before: every reconnect presented the old certificate and was refused.)
#[tokio::test]
async fn a_rotated_redis_client_certificate_is_used_without_a_restart() {
    let pki = pki();
    let (_redis, plain, tls) = tls_redis(&pki).await;
    let (other_cert, other) = ca("rotated client CA");
    let (new_cert, new_key) = leaf(
        &other,
        &["axn-worker"],
        ExtendedKeyUsagePurpose::ClientAuth,
        2041,
    );
    let other_ca_file = pki.dir.join("rotated-ca.pem");
    std::fs::write(&other_ca_file, other_cert.pem()).unwrap();
    // The first client certificate, kept to show the server refuses it.
    let old_cert = pki.dir.join("old-client.pem");
    let old_key = pki.dir.join("old-client.key");
    std::fs::copy(&pki.client_cert, &old_cert).unwrap();
    std::fs::copy(&pki.client_key, &old_key).unwrap();
    let id = unique_id();
    let mut settings = test_settings(&id);
    settings.redis.url = RedisUrl::Single(Secret::new(format!("rediss://localhost:{tls}/0")));
    settings.redis.tls = pki.client_files();
    let app = TestApp::connect(id, settings).await.start().await;
    let metric = |want: i64| {
        let app = &app;
        async move {
            let (_, text) = app.get("/metrics").await.unwrap_or_default();
            text.lines().any(|l| {
                l == format!(
                    r#"axn_tls_certificate_expiry_timestamp_seconds{{certificate="redis_client"}} {want}"#
                )
            })
        }
    };
    // 1 January of `y`, 00:00 UTC: rcgen's not_after in `leaf`.
    let year = |y: i32| -> i64 {
        let leap = |y: i32| (y % 4 == 0 && y % 100 != 0) || y % 400 == 0;
        (1970..y)
            .map(|y| if leap(y) { 366 } else { 365 })
            .sum::<i64>()
            * 86_400
    };
    app.eventually("the metric shows the first certificate", || {
        metric(year(2040))
    })
    .await;
    let own = redis::Client::open(format!("redis://127.0.0.1:{plain}/0")).unwrap();
    let mut own = own.get_multiplexed_async_connection().await.unwrap();

    // Rotate: new files, the server trusting only the new CA, the worker's
    // connections cut.
    std::fs::write(&pki.client_key, &new_key).unwrap();
    std::fs::write(&pki.client_cert, &new_cert).unwrap();
    let _: () = redis::cmd("CONFIG")
        .arg("SET")
        .arg("tls-ca-cert-file")
        .arg(other_ca_file.to_str().unwrap())
        .query_async(&mut own)
        .await
        .unwrap();
    let mut old = app.settings.redis.clone();
    old.tls.cert_file = old_cert.to_string_lossy().into_owned();
    old.tls.key_file = old_key.to_string_lossy().into_owned();
    assert!(
        axn_worker::store::Store::new(&old)
            .unwrap()
            .ping()
            .await
            .is_err(),
        "the server now refuses the first client certificate"
    );
    let _: redis::Value = redis::cmd("CLIENT")
        .arg("KILL")
        .arg("TYPE")
        .arg("normal")
        .arg("SKIPME")
        .arg("yes")
        .query_async(&mut own)
        .await
        .unwrap();
    app.eventually("the metric shows the rotated certificate", || {
        metric(year(2041))
    })
    .await;
    let deadline = std::time::Instant::now() + axn_worker::store::TLS_RECHECK * 3;
    loop {
        if let Ok((200, _)) = app.get("/readyz").await {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "ready again with the rotated certificate"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    app.publish(
        QueueKind::PhoneHistory,
        br#"{"userId": "74721", "newPhone": "13812345671", "oldPhone": ""}"#,
    )
    .await;
    let key = app.key("PrivateNumber_user_phone");
    field_becomes(
        &app,
        &own,
        &key,
        "74721",
        "13812345671",
        "written with the rotated certificate",
    )
    .await;
}

/// A server certificate that expired, and one for another host name: both
/// connections refuse them, the error naming the connection and rustls's
/// reason (what the log line and /readyz show).
#[tokio::test]
async fn an_expired_or_wrong_host_certificate_is_refused() {
    for (what, pki, reason) in [
        ("expired", pki_until(2020), "certificate expired"),
        (
            "another host's",
            pki_for(2040, &["elsewhere.test"]),
            "not valid for name",
        ),
    ] {
        let proxy = tls_proxy(&pki).await;
        let (_redis, _plain, tls) = tls_redis(&pki).await;
        let mut s = test_settings(&unique_id());
        s.amqp.url = axn_worker::config::AmqpUrl::one(format!(
            "amqps://guest:guest@localhost:{}/%2f",
            proxy.port
        ));
        s.amqp.connect_timeout_secs = 5;
        s.amqp.tls = pki.client_files();
        s.redis.url = RedisUrl::Single(Secret::new(format!("rediss://localhost:{tls}/0")));
        s.redis.tls = pki.client_files();
        let e = axn_worker::amqp::connect(&s, "tls-test")
            .await
            .expect_err(what)
            .to_string();
        assert!(
            e.contains("Failed to connect to the broker") && e.contains(reason),
            "{what}, broker: {e}"
        );
        let e = axn_worker::store::Store::new(&s.redis)
            .unwrap()
            .ping()
            .await
            .expect_err(what)
            .to_string();
        assert!(e.contains(reason), "{what}, Redis: {e}");
    }
}

/// Waits (the app's deadline) until `HGET key field` on `conn` is `want`.
async fn field_becomes(
    app: &TestApp,
    conn: &redis::aio::MultiplexedConnection,
    key: &str,
    field: &str,
    want: &str,
    what: &str,
) {
    app.eventually(what, || {
        let mut c = conn.clone();
        async move {
            let v: Option<String> = redis::cmd("HGET")
                .arg(key)
                .arg(field)
                .query_async(&mut c)
                .await
                .unwrap();
            v.as_deref() == Some(want)
        }
    })
    .await;
}

/// A directory of a test's own under the temp dir, removed when dropped.
struct TempDir(PathBuf);

impl TempDir {
    fn new(tag: &str) -> TempDir {
        let dir = std::env::temp_dir().join(format!("{tag}-{}", unique_id()));
        std::fs::create_dir_all(&dir).unwrap();
        TempDir(dir)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}
