//! `spawn_app()`: the real worker, in this process, with unique names.
//!
//! Each app gets an id (`t<pid>x<counter><nanos>`) used as a prefix of its
//! queue names, its Redis key prefix and its call-log queue, so tests never
//! see each other's messages or keys. `TestApp` deletes exactly those queues
//! and keys when it is dropped, even if the test panicked.

use std::{
    net::SocketAddr,
    sync::atomic::{AtomicU64, Ordering},
    time::{Duration, Instant},
};

use axn_worker::{
    config::{QueueKind, Settings},
    startup::Application,
};
use lapin::{
    BasicProperties, Channel, Connection, ConnectionProperties,
    message::Delivery,
    options::{BasicGetOptions, BasicPublishOptions},
};
use redis::AsyncCommands;
use tokio::{io::AsyncReadExt, io::AsyncWriteExt, net::TcpListener, task::JoinHandle};
use tokio_util::sync::CancellationToken;

/// Declares a durable queue (with `args`) for a test that needs one before
/// the worker declares its own.
pub async fn declare_durable(ch: &Channel, name: &str, args: lapin::types::FieldTable) {
    ch.queue_declare(
        name.into(),
        lapin::options::QueueDeclareOptions {
            durable: true,
            ..Default::default()
        },
        args,
    )
    .await
    .unwrap_or_else(|e| panic!("declare {name}: {e}"));
}

pub const AMQP_URL: &str = "amqp://guest:guest@127.0.0.1:5672/%2f";
pub const REDIS_URL: &str = "redis://127.0.0.1:6379/0";

/// How long any eventual condition may take before a test fails.
pub const DEADLINE: Duration = Duration::from_secs(20);

pub fn unique_id() -> String {
    static N: AtomicU64 = AtomicU64::new(0);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .subsec_nanos();
    format!(
        "t{}x{}n{nanos}",
        std::process::id(),
        N.fetch_add(1, Ordering::Relaxed)
    )
}

/// Settings for a test: the shipped defaults, renamed under `id`, with short
/// retry delays so retry paths run in well under a second.
pub fn test_settings(id: &str) -> Settings {
    let base = Settings::defaults().expect("shipped config loads");
    let mut s = axn_worker::ops::namespace::namespaced(&base, id);
    for kind in QueueKind::ALL {
        let q = s.queues.get_mut(kind);
        q.retry_delays_ms = vec![100, 200];
        q.max_attempts = 3;
    }
    s.http.listen = "127.0.0.1:0".into();
    s.shutdown.grace_period_secs = 10;
    s.amqp.reconnect_min_delay_ms = 100;
    s.amqp.reconnect_max_delay_ms = 1000;
    s
}

pub struct TestApp {
    pub id: String,
    pub settings: Settings,
    pub addr: SocketAddr,
    pub redis: redis::aio::MultiplexedConnection,
    pub amqp: Connection,
    pub channel: Channel,
    shutdown: CancellationToken,
    handle: Option<JoinHandle<anyhow::Result<()>>>,
    /// The running worker's health (readiness, reconnect count).
    pub health: Option<std::sync::Arc<axn_worker::health::Health>>,
}

pub async fn spawn_app() -> TestApp {
    spawn_app_with(|_| {}).await
}

/// Spawns an app whose settings `tweak` may change (names stay unique).
pub async fn spawn_app_with(tweak: impl FnOnce(&mut Settings)) -> TestApp {
    let id = unique_id();
    let mut settings = test_settings(&id);
    tweak(&mut settings);
    let app = TestApp::connect(id, settings).await;
    app.start().await
}

impl TestApp {
    /// Client connections for the test itself; the worker is not started.
    pub async fn connect(id: String, settings: Settings) -> TestApp {
        let client = redis::Client::open(REDIS_URL).unwrap();
        let redis = client
            .get_multiplexed_async_connection()
            .await
            .expect("Redis must run on 127.0.0.1:6379");
        let amqp = Connection::connect(AMQP_URL, ConnectionProperties::default())
            .await
            .expect("RabbitMQ must run on 127.0.0.1:5672");
        let channel = amqp.create_channel().await.unwrap();
        channel.confirm_select(Default::default()).await.unwrap();
        TestApp {
            id,
            settings,
            addr: "127.0.0.1:0".parse().unwrap(),
            redis,
            amqp,
            channel,
            shutdown: CancellationToken::new(),
            handle: None,
            health: None,
        }
    }

    /// Starts (or restarts) the worker and waits until it is ready.
    pub async fn start(mut self) -> TestApp {
        self.launch().await;
        self.wait_ready().await;
        self
    }

    /// Starts the worker without waiting for readiness.
    pub async fn launch(&mut self) {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let app = Application::build(self.settings.clone(), listener)
            .unwrap()
            .with_instance(self.id.clone());
        self.addr = app.local_addr().unwrap();
        self.health = Some(app.health());
        self.shutdown = CancellationToken::new();
        self.handle = Some(tokio::spawn(app.run_until_stopped(self.shutdown.clone())));
    }

    pub async fn wait_ready(&self) {
        let deadline = Instant::now() + DEADLINE;
        loop {
            if let Ok((200, _)) = self.get("/readyz").await {
                return;
            }
            if self.handle.as_ref().is_some_and(|h| h.is_finished()) {
                panic!("the worker stopped before it was ready");
            }
            assert!(
                Instant::now() < deadline,
                "worker not ready within {DEADLINE:?}"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Asks the worker to stop and returns what `run_until_stopped` returned.
    pub async fn stop(&mut self) -> anyhow::Result<()> {
        self.shutdown.cancel();
        match self.handle.take() {
            Some(h) => tokio::time::timeout(Duration::from_secs(30), h)
                .await
                .expect("stops in time")
                .unwrap(),
            None => Ok(()),
        }
    }

    /// Waits for the worker's run to end by itself (e.g. a fatal error).
    pub async fn finished(&mut self) -> anyhow::Result<()> {
        let h = self.handle.take().expect("running");
        tokio::time::timeout(DEADLINE, h)
            .await
            .expect("ends in time")
            .unwrap()
    }

    pub fn queue(&self, kind: QueueKind) -> String {
        self.settings.queues.get(kind).name.clone()
    }
    pub fn dlq(&self, kind: QueueKind) -> String {
        self.settings.queues.get(kind).dlq_name()
    }
    pub fn call_log_queue(&self) -> String {
        self.settings.publish.call_log.routing_key.clone()
    }
    /// A Redis key under this test's prefix.
    pub fn key(&self, name: &str) -> String {
        format!("{}{name}", self.settings.redis.key_prefix)
    }

    pub async fn publish(&self, kind: QueueKind, body: &[u8]) {
        self.publish_to(&self.queue(kind), body, BasicProperties::default())
            .await
    }

    pub async fn publish_to(&self, queue: &str, body: &[u8], props: BasicProperties) {
        let confirm = self
            .channel
            .basic_publish(
                "".into(),
                queue.into(),
                BasicPublishOptions {
                    mandatory: true,
                    ..Default::default()
                },
                body,
                props.with_delivery_mode(2),
            )
            .await
            .unwrap()
            .await
            .unwrap();
        assert!(
            confirm.is_ack() && confirm.take_message().is_none(),
            "publish to {queue} confirmed and routed"
        );
    }

    /// Publishes many messages to an input queue without waiting for each
    /// confirm (then for all of them): a backlog in a fraction of a second.
    pub async fn publish_many(&self, kind: QueueKind, bodies: &[Vec<u8>]) {
        let ch = self.amqp.create_channel().await.unwrap();
        ch.confirm_select(Default::default()).await.unwrap();
        let queue = self.queue(kind);
        for body in bodies {
            let props = BasicProperties::default().with_delivery_mode(2);
            let _unawaited_confirm = ch
                .basic_publish(
                    "".into(),
                    queue.as_str().into(),
                    BasicPublishOptions::default(),
                    body,
                    props,
                )
                .await
                .unwrap();
        }
        let returned = ch.wait_for_confirms().await.unwrap();
        assert!(returned.is_empty());
        let _ = ch.close(200, "".into()).await;
    }

    /// Messages now in `queue`.
    pub async fn queue_len(&self, queue: &str) -> u32 {
        let ch = self.amqp.create_channel().await.unwrap();
        let n = axn_worker::ops::dlq::depth(&ch, queue)
            .await
            .unwrap_or_else(|e| panic!("{e:#}"));
        let _ = ch.close(200, "".into()).await;
        n
    }

    /// Takes the next message off `queue`, waiting up to the deadline.
    pub async fn take(&self, queue: &str) -> Delivery {
        let deadline = Instant::now() + DEADLINE;
        loop {
            if let Some(m) = self
                .channel
                .basic_get(queue.into(), BasicGetOptions { no_ack: true })
                .await
                .unwrap()
            {
                return m.delivery;
            }
            assert!(
                Instant::now() < deadline,
                "no message on {queue} within {DEADLINE:?}"
            );
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
    }

    /// Takes `n` messages off `queue`, waiting up to the deadline.
    pub async fn take_n(&self, queue: &str, n: usize) -> Vec<Delivery> {
        let mut out = Vec::with_capacity(n);
        for _ in 0..n {
            out.push(self.take(queue).await);
        }
        out
    }

    /// Waits until every input queue and retry queue of the app is empty and
    /// nothing is unacknowledged: all published messages have been settled.
    /// One `rabbitmqctl list_queues` reads every queue's count at nearly the
    /// same instant (reading them one by one could miss a message on its way
    /// from a retry queue back to its queue), and it must read zero twice in
    /// a row.
    pub async fn drained(&self) {
        let names: Vec<String> = QueueKind::ALL
            .iter()
            .flat_map(|kind| {
                let q = self.settings.queues.get(*kind);
                std::iter::once(q.name.clone()).chain(
                    q.retry_delays_ms
                        .iter()
                        .map(|d| q.retry_queue_name(*d))
                        .collect::<Vec<_>>(),
                )
            })
            .collect();
        let deadline = Instant::now() + DEADLINE;
        let mut clean = 0;
        loop {
            if self.messages_in(&names).await == 0 {
                clean += 1;
                if clean == 2 {
                    return;
                }
            } else {
                clean = 0;
            }
            assert!(
                Instant::now() < deadline,
                "queues not drained within {DEADLINE:?}"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// Messages (ready and unacknowledged) in `queues`, in one broker query.
    async fn messages_in(&self, queues: &[String]) -> usize {
        let out = tokio::process::Command::new("rabbitmqctl")
            .args([
                "list_queues",
                "-q",
                "--no-table-headers",
                "name",
                "messages",
            ])
            .stdin(std::process::Stdio::null())
            .output()
            .await
            .expect("rabbitmqctl runs");
        assert!(out.status.success(), "rabbitmqctl list_queues failed");
        String::from_utf8_lossy(&out.stdout)
            .lines()
            .filter_map(|l| l.split_once('\t'))
            .filter(|(name, _)| queues.iter().any(|q| q == name))
            .filter_map(|(_, n)| n.trim().parse::<usize>().ok())
            .sum()
    }

    /// Polls `check` until it returns true or the deadline passes.
    pub async fn eventually<F, Fut>(&self, what: &str, mut check: F)
    where
        F: FnMut() -> Fut,
        Fut: std::future::Future<Output = bool>,
    {
        let deadline = Instant::now() + DEADLINE;
        while !check().await {
            assert!(Instant::now() < deadline, "not within {DEADLINE:?}: {what}");
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
    }

    /// Writes an XB binding into `PrivateNumber_xb`, as the binding service
    /// would (see `xb_unbind::binding` for its JSON).
    pub async fn put_binding(&self, sub_id: &str, user_id: u64, map_id: u64) {
        let json = crate::xb_unbind::binding(sub_id, user_id, map_id);
        let _: () = self
            .redis
            .clone()
            .hset(self.key("PrivateNumber_xb"), sub_id, json)
            .await
            .unwrap();
    }

    /// Publishes a blacklist add for `user_id` whose set key holds a string,
    /// so Redis answers WRONGTYPE (a transient failure), and waits until the
    /// message sits in the retry queue of `delay_ms`. Returns the set's key:
    /// deleting it lets the retry succeed.
    pub async fn park_in_retry(&self, user_id: u64, delay_ms: u64) -> String {
        let key = self.key(&format!("PrivateNumber_black:{user_id}:0"));
        let _: () = self.redis.clone().set(&key, "not a set").await.unwrap();
        let body = format!(
            r#"{{"private_number":"13470110001","action":"add","userid":{user_id},"type":0}}"#
        );
        self.publish(QueueKind::Blacklist, body.as_bytes()).await;
        let retry_queue = self.settings.queues.blacklist.retry_queue_name(delay_ms);
        self.eventually("the message waits in the retry queue", || async {
            self.queue_len(&retry_queue).await == 1
        })
        .await;
        key
    }

    /// True when `member` is in the set `key` (a full key name).
    pub async fn is_member(&self, key: &str, member: &str) -> bool {
        self.redis
            .clone()
            .sismember(key, member)
            .await
            .unwrap_or(false)
    }

    pub async fn hget(&self, key: &str, field: &str) -> Option<String> {
        self.redis.clone().hget(self.key(key), field).await.unwrap()
    }

    /// GET `path` on the worker's HTTP server: (status, body).
    pub async fn get(&self, path: &str) -> std::io::Result<(u16, String)> {
        try_get(self.addr, path).await
    }
}

/// GET `path` on `addr` over HTTP/1.0: (status, body).
pub async fn try_get(addr: SocketAddr, path: &str) -> std::io::Result<(u16, String)> {
    axn_worker::ops::probe::http_get(addr, path).await
}

/// [`try_get`] that must succeed.
pub async fn http_get(addr: SocketAddr, path: &str) -> (u16, String) {
    try_get(addr, path)
        .await
        .unwrap_or_else(|e| panic!("GET {path} on {addr}: {e}"))
}

pub const BIN: &str = env!("CARGO_BIN_EXE_axn-worker");
pub const CONFIG: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/config.toml");

/// The environment that makes the shipped config.toml into `s` (names,
/// prefix, retries, timeouts, Redis): how a test runs the real binary.
pub fn env_for(s: &Settings) -> Vec<(String, String)> {
    axn_worker::ops::namespace::env(s)
}

/// Runs `axn-worker <args>` (an operator command) with the shipped config
/// turned into `settings` by the environment, and waits for it.
pub async fn run_cli(settings: &Settings, args: &[&str]) -> std::process::Output {
    tokio::process::Command::new(BIN)
        .args(["--config", CONFIG])
        .args(args)
        .envs(env_for(settings))
        .output()
        .await
        .expect("the axn-worker binary runs")
}

/// The real `axn-worker run` as a child process under `settings`, ready.
pub struct WorkerProcess {
    pub child: tokio::process::Child,
    pub port: u16,
}

/// A port the system says is free now, for a child process's listener.
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// `axn-worker run` under `settings`, listening on `port`, its stderr
/// piped to the test, with `env` set on top (RUST_LOG unset unless `env`
/// sets it); killed when dropped, not waited for.
pub fn spawn_run(settings: &Settings, port: u16, env: &[(&str, &str)]) -> tokio::process::Child {
    tokio::process::Command::new(BIN)
        .args(["run", "--config", CONFIG])
        .envs(env_for(settings))
        .env("AXN__HTTP__LISTEN", format!("127.0.0.1:{port}"))
        .env_remove("RUST_LOG")
        .envs(env.iter().copied())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("the axn-worker binary runs")
}

impl WorkerProcess {
    pub async fn start(settings: &Settings) -> WorkerProcess {
        WorkerProcess::start_with(settings, &[]).await
    }

    /// As `start`, with `env` set on top of the settings' environment.
    pub async fn start_with(settings: &Settings, env: &[(&str, &str)]) -> WorkerProcess {
        let port = free_port();
        let child = tokio::process::Command::new(BIN)
            .args(["run", "--config", CONFIG])
            .envs(env_for(settings))
            .env("AXN__HTTP__LISTEN", format!("127.0.0.1:{port}"))
            .env("RUST_LOG", "warn")
            .envs(env.iter().copied())
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .kill_on_drop(true)
            .spawn()
            .expect("the axn-worker binary runs");
        let w = WorkerProcess { child, port };
        let deadline = Instant::now() + DEADLINE;
        while w.readyz().await != 200 {
            assert!(
                Instant::now() < deadline,
                "the worker process did not become ready"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        w
    }

    pub async fn readyz(&self) -> u16 {
        let addr: SocketAddr = ([127, 0, 0, 1], self.port).into();
        try_get(addr, "/readyz").await.map(|(s, _)| s).unwrap_or(0)
    }

    pub fn signal(&self, sig: &str) {
        let pid = self.child.id().expect("running").to_string();
        let ok = std::process::Command::new("kill")
            .args([&format!("-{sig}"), &pid])
            .status()
            .unwrap()
            .success();
        assert!(ok, "kill -{sig} {pid}");
    }
}

impl Drop for WorkerProcess {
    /// Kills the process and waits (up to 5 s) until it is gone, so that a
    /// test's cleanup that follows cannot race a live worker.
    fn drop(&mut self) {
        let Some(pid) = self.child.id() else {
            return;
        };
        let _ = std::process::Command::new("kill")
            .args(["-9", &pid.to_string()])
            .status();
        let deadline = Instant::now() + Duration::from_secs(5);
        while Instant::now() < deadline {
            let state = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
            // Gone, or a zombie (dead, not yet reaped).
            if state.is_empty() || state.split(") ").nth(1).is_some_and(|s| s.starts_with('Z')) {
                return;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    }
}

/// An HTTP answer: status, the header block (lowercased names) and body.
pub struct HttpAnswer {
    pub status: u16,
    pub headers: String,
    pub body: String,
}

impl HttpAnswer {
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_str(&self.body)
            .unwrap_or_else(|e| panic!("JSON body ({e}): {}", self.body))
    }
}

/// POSTs a JSON `body` to `addr` + `path`, with Basic credentials if given.
pub async fn post(
    addr: SocketAddr,
    path: &str,
    body: &[u8],
    auth: Option<(&str, &str)>,
) -> HttpAnswer {
    send_post(addr, path, "application/json", body, auth).await
}

/// POSTs `body` of `content_type` without credentials: (status, body).
pub async fn post_raw(
    addr: SocketAddr,
    path: &str,
    content_type: &str,
    body: &[u8],
) -> (u16, String) {
    let a = send_post(addr, path, content_type, body, None).await;
    (a.status, a.body)
}

async fn send_post(
    addr: SocketAddr,
    path: &str,
    content_type: &str,
    body: &[u8],
    auth: Option<(&str, &str)>,
) -> HttpAnswer {
    use base64::Engine as _;
    let mut headers = vec![("Content-Type", content_type.to_owned())];
    if let Some((u, p)) = auth {
        let token = base64::engine::general_purpose::STANDARD.encode(format!("{u}:{p}"));
        headers.push(("Authorization", format!("Basic {token}")));
    }
    request(addr, "POST", path, &headers, body).await
}

/// Any method, path, headers and body, as raw HTTP/1.0 (Content-Length for
/// a body or a POST); the answer read to its end.
pub async fn request(
    addr: SocketAddr,
    method: &str,
    path: &str,
    headers: &[(&str, String)],
    body: &[u8],
) -> HttpAnswer {
    let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
    let mut head = format!("{method} {path} HTTP/1.0\r\nHost: test\r\n");
    for (name, value) in headers {
        head.push_str(&format!("{name}: {value}\r\n"));
    }
    if !body.is_empty() || method == "POST" {
        head.push_str(&format!("Content-Length: {}\r\n", body.len()));
    }
    head.push_str("\r\n");
    s.write_all(head.as_bytes()).await.unwrap();
    // The server may answer (413) before reading a large body.
    let _ = s.write_all(body).await;
    let mut buf = Vec::new();
    let _ = s.read_to_end(&mut buf).await;
    let text = String::from_utf8_lossy(&buf).into_owned();
    let (headers, body) = text
        .split_once("\r\n\r\n")
        .map(|(h, b)| (h.to_owned(), b.to_owned()))
        .unwrap_or((text.clone(), String::new()));
    let status = headers
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    HttpAnswer {
        status,
        headers: headers.to_lowercase(),
        body,
    }
}

/// A header of a delivery, as text.
pub fn header(d: &Delivery, name: &str) -> Option<String> {
    axn_worker::ops::dlq::header(&d.properties, name)
}

impl Drop for TestApp {
    fn drop(&mut self) {
        self.shutdown.cancel();
        if let Some(h) = self.handle.take() {
            h.abort();
        }
        // Exactly this test's queues and keys. Cleanup needs async clients;
        // run them on a runtime of their own so that it works from any test,
        // panicking or not.
        // Through the local broker itself: a test may have pointed its
        // worker at a proxy that is stalled or gone by now.
        let mut settings = self.settings.clone();
        settings.amqp.url = axn_worker::config::AmqpUrl::one(AMQP_URL);
        let cleaner = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap();
            rt.block_on(async {
                axn_worker::ops::namespace::cleanup(&settings).await;
                // Keys a test wrote to the shared Redis while its worker
                // used a Redis of the test's own.
                let mut shared = settings.clone();
                shared.redis.url = axn_worker::config::RedisUrl::Single(
                    axn_worker::config::Secret::new(REDIS_URL),
                );
                if shared.redis.url != settings.redis.url {
                    let _ = axn_worker::ops::namespace::delete_keys(&shared).await;
                }
            });
        });
        let _ = cleaner.join();
    }
}

/// SIGTERM to a running child.
pub fn sigterm(child: &tokio::process::Child) {
    let pid = child.id().expect("running").to_string();
    assert!(
        std::process::Command::new("kill")
            .args(["-TERM", &pid])
            .status()
            .unwrap()
            .success()
    );
}

/// `axn-worker <args>` with `env` on top of the test's environment (no
/// `AXN_CONFIG`), waited for: an operator's one-shot command.
pub fn cli(args: &[&str], env: &[(&str, &str)]) -> std::process::Output {
    std::process::Command::new(BIN)
        .args(args)
        .envs(env.iter().copied())
        .env_remove("AXN_CONFIG")
        .output()
        .unwrap()
}
