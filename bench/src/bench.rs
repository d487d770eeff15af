//! `axn-bench`: the worker measured against the broker's own limit, on
//! whatever machine it runs on, with the local RabbitMQ and Redis.
//!
//! Throughput mode: pre-loads N persistent messages (40 % call records that
//! publish call-log events, 30 % XB unbinds, 20 % blacklist changes, 10 % phone
//! changes; the bindings they refer to seeded in Redis) under names of its own,
//! then starts K real worker processes (`axn-worker run`, the binary beside
//! this one unless `--worker` names another; default settings
//! unless overridden) and times the drain from readiness to the last ack
//! (read from the workers' `/metrics`). CPU time (user + system) and peak RSS
//! come from the workers' own accounting in `/proc`. The same load, drained by
//! a bare consumer that only acks (same prefetch per queue, acks from spawned
//! tasks, same runtime flavour), gives the broker-bound rate the worker is
//! compared with.
//!
//! Latency mode: publishes blacklist adds at a fixed rate and polls Redis for
//! each one's effect; reports p50, p99 and max from publish to visible.
//!
//! Everything it creates (queues `<namespace>.*`, keys `<namespace>:*`, the
//! namespace being `axn-bench` unless `--namespace` says otherwise) is removed
//! at the end, and at the start (what a killed run left).

use std::{
    collections::HashMap,
    io::Write,
    path::{Path, PathBuf},
    sync::{
        Arc,
        atomic::{AtomicU64, Ordering},
    },
    time::{Duration, Instant},
};

use anyhow::{Context as _, bail};
use futures_util::StreamExt;
use lapin::{
    BasicProperties, Channel, Connection,
    options::{BasicAckOptions, BasicConsumeOptions, BasicPublishOptions, BasicQosOptions},
    types::FieldTable,
};
use redis::AsyncCommands;
use serde_json::json;

use axn_worker::{
    amqp::{self, topology},
    broker::acks::{AckBatcher, Verdict},
    config::{QueueKind, Settings},
    ops::{namespace, probe},
    store::Keys,
};

/// What to run.
#[derive(Debug, Clone)]
pub struct BenchOptions {
    pub messages: usize,
    /// Throughput runs to take the median of.
    pub repeat: usize,
    pub workers: usize,
    /// Overrides every queue's prefetch; None: the config's.
    pub prefetch: Option<u16>,
    pub latency: bool,
    /// Only this kind of message instead of the mix (which queue limits?).
    pub only: Option<QueueKind>,
    pub rate: u32,
    pub duration: Duration,
    /// Where to append the results (None: print only).
    pub append_to: Option<PathBuf>,
    /// The worker binary (normally this very executable).
    pub binary: PathBuf,
    pub config: PathBuf,
    /// A command (and its arguments) each worker is started under, for
    /// profiling; empty: none.
    pub wrap: Vec<String>,
    /// Prefix of the bench's queue names and Redis keys.
    pub namespace: String,
    /// Measure the binding API instead of the consumers: `clients` loops of
    /// BindAxByplatform + GetCallNumber + ReleaseTelX.
    pub platform: bool,
    pub clients: usize,
    /// Measure the worker on an empty Redis and on one filled to
    /// production size (this factor of the FILL_* counts) instead.
    pub fill: Option<f64>,
    /// Measure an expiry storm of this many XB bindings instead.
    pub expiry_storm: Option<usize>,
}

/// One throughput measurement.
#[derive(Debug, Clone)]
pub struct Throughput {
    pub messages: usize,
    pub seconds: f64,
    pub cpu_seconds: f64,
    pub peak_rss_kib: u64,
    /// Mean time from publishing a call-log event to its confirm, in ms
    /// (None when the run published none).
    pub confirm_ms: Option<f64>,
    /// CPU seconds the local broker used during the drain (None: not found).
    pub broker_cpu_seconds: Option<f64>,
    /// CPU seconds Redis reported using during the drain.
    pub redis_cpu_seconds: Option<f64>,
    /// Cores busy on average during the drain, all processes (from
    /// /proc/stat): with the broker, Redis and the consumer on one machine,
    /// how close the drain came to the machine's limit.
    pub cores_busy: Option<f64>,
}

impl Throughput {
    pub fn rate(&self) -> f64 {
        self.messages as f64 / self.seconds
    }
    pub fn cpu_us_per_message(&self) -> f64 {
        self.cpu_seconds * 1e6 / self.messages as f64
    }
    pub fn redis_us_per_message(&self) -> Option<f64> {
        self.redis_cpu_seconds
            .map(|s| s * 1e6 / self.messages as f64)
    }
    pub fn broker_us_per_message(&self) -> Option<f64> {
        self.broker_cpu_seconds
            .map(|s| s * 1e6 / self.messages as f64)
    }
}

/// The bench's settings: `base` renamed under `namespace`, declaring its own
/// queues, with the prefetch override.
pub fn bench_settings(base: &Settings, namespace: &str, prefetch: Option<u16>) -> Settings {
    let mut s = namespace::namespaced(base, namespace);
    for kind in QueueKind::ALL {
        let q = s.queues.get_mut(kind);
        q.passive = false;
        if let Some(p) = prefetch {
            q.prefetch = p;
        }
    }
    s.publish.call_log.exchange = String::new();
    s.publish.call_log.passive = false;
    s
}

/// Messages (queue, body) and the bindings (subId, JSON) they need.
pub type Load = (Vec<(QueueKind, Vec<u8>)>, Vec<(String, String)>);

/// The mixed load: (queue, body) in a realistic proportion, and the bindings
/// (subId -> JSON) it needs.
pub fn workload(n: usize, tag: &str, only: Option<QueueKind>) -> Load {
    let mut messages = Vec::with_capacity(n);
    let mut bindings = Vec::new();
    let binding = |sub: &str, i: usize| {
        json!({"subId": sub, "platId": 3, "userId": 50000 + i % 5000, "telX": "17111526089", "telB": "13700051234",
               "mapClassId": 1, "mapId": 100000 + i, "contactMapClassId": 0, "contactId": 0,
               "boundAt": 1763892000, "expiresAt": 1763892120})
        .to_string()
    };
    let mut calls = 0usize;
    for i in 0..n {
        let slot = match only {
            None => i % 10,
            Some(QueueKind::CallRecord) => 0,
            Some(QueueKind::XbUnbind) => 4,
            Some(QueueKind::Blacklist) => 7,
            Some(QueueKind::PhoneHistory) => 9,
        };
        let m = match slot {
            0..=3 => {
                // Call records share a pool of 1,000 live bindings.
                let sub = format!("{tag}-cr-{}", calls % 1000);
                if calls < 1000 {
                    bindings.push((sub.clone(), binding(&sub, i)));
                }
                calls += 1;
                (
                    QueueKind::CallRecord,
                    json!({"platId": 3, "subId": sub, "callId": format!("{tag}-call-{i}"), "telA": "1347011****", "telX": "17111526089", "telB": "1370005****", "callType": 0, "startTime": "2026-11-23 10:00:00", "releaseTime": "2026-11-23 10:03:12"}),
                )
            }
            4..=6 => {
                let sub = format!("{tag}-ub-{i}");
                bindings.push((sub.clone(), binding(&sub, i)));
                (
                    QueueKind::XbUnbind,
                    json!({"platId": 3, "telA": "1347011****", "telX": "17111526089", "telB": "1370005****", "subId": sub}),
                )
            }
            7 | 8 => (
                QueueKind::Blacklist,
                json!({"platId": 3, "private_number": format!("134{:08}", i), "action": "add", "userid": 70000 + i % 1000, "type": i % 2}),
            ),
            _ => (
                QueueKind::PhoneHistory,
                json!({"userId": 80000 + i, "newPhone": format!("138{:08}", i), "oldPhone": format!("139{:08}", i), "operatorUser:": "51218"}),
            ),
        };
        messages.push((m.0, m.1.to_string().into_bytes()));
    }
    (messages, bindings)
}

async fn publish_all(
    channel: &Channel,
    settings: &Settings,
    messages: &[(QueueKind, Vec<u8>)],
) -> anyhow::Result<()> {
    for chunk in messages.chunks(2000) {
        for (kind, body) in chunk {
            let props = BasicProperties::default()
                .with_delivery_mode(2)
                .with_content_type("application/json".into());
            // Confirms are awaited for the whole chunk below.
            let _unawaited_confirm = channel
                .basic_publish(
                    "".into(),
                    settings.queues.get(*kind).name.as_str().into(),
                    BasicPublishOptions::default(),
                    body,
                    props,
                )
                .await?;
        }
        let returned = channel.wait_for_confirms().await?;
        if !returned.is_empty() {
            bail!("{} messages were returned by the broker", returned.len());
        }
    }
    Ok(())
}

async fn seed(
    redis: &mut redis::aio::MultiplexedConnection,
    keys: &Keys,
    bindings: &[(String, String)],
) -> anyhow::Result<()> {
    for chunk in bindings.chunks(1000) {
        let _: () = redis.hset_multiple(keys.xb(), chunk).await?;
    }
    Ok(())
}

/// CPU seconds (user + system) and peak RSS (KiB) of a process, from /proc.
pub fn process_usage(pid: u32) -> anyhow::Result<(f64, u64)> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat"))?;
    // Fields after the ")" that closes the command name; utime and stime
    // are fields 14 and 15 of the whole line.
    let after = stat.rsplit_once(')').map(|(_, a)| a).unwrap_or("");
    let f: Vec<&str> = after.split_whitespace().collect();
    let ticks: f64 = f.get(11).and_then(|v| v.parse::<f64>().ok()).unwrap_or(0.0)
        + f.get(12).and_then(|v| v.parse::<f64>().ok()).unwrap_or(0.0);
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))?;
    let hwm = status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse().ok())
        .unwrap_or(0);
    Ok((ticks / clock_ticks() as f64, hwm))
}

/// The local RabbitMQ server's CPU so far: (pid, seconds), when it runs on
/// this machine and /proc shows it. `rabbitmqctl` runs in a `beam.smp` too;
/// the server is the one that was started to boot `rabbit`; with several
/// (a node of one's own beside the system's), `AXN_BENCH_BROKER_PID` names it.
fn broker_cpu() -> Option<(u32, f64)> {
    if let Some(pid) = std::env::var("AXN_BENCH_BROKER_PID")
        .ok()
        .and_then(|p| p.trim().parse::<u32>().ok())
    {
        return user_sys(pid).map(|(u, s)| (pid, u + s));
    }
    let pid = std::fs::read_dir("/proc").ok()?.find_map(|e| {
        let e = e.ok()?;
        let pid: u32 = e.file_name().to_str()?.parse().ok()?;
        let comm = std::fs::read_to_string(e.path().join("comm")).ok()?;
        let cmdline = std::fs::read(e.path().join("cmdline")).ok()?;
        let args: Vec<&[u8]> = cmdline.split(|b| *b == 0).collect();
        let boots_rabbit = args.windows(2).any(|w| w[0] == b"-s" && w[1] == b"rabbit");
        (comm.trim() == "beam.smp" && boots_rabbit).then_some(pid)
    })?;
    user_sys(pid).map(|(u, s)| (pid, u + s))
}

/// What the other processes of the machine used during a drain.
struct Others {
    broker: Option<(u32, f64)>,
    redis: Option<f64>,
    machine: Option<(f64, f64)>,
}

impl Others {
    async fn start(redis: &redis::aio::MultiplexedConnection) -> Self {
        Self {
            broker: broker_cpu(),
            redis: redis_cpu(redis).await,
            machine: machine_ticks(),
        }
    }

    /// (broker CPU s, Redis CPU s, cores busy) since `start`.
    async fn since(
        self,
        redis: &redis::aio::MultiplexedConnection,
    ) -> (Option<f64>, Option<f64>, Option<f64>) {
        let redis1 = redis_cpu(redis).await;
        let machine = match (self.machine, machine_ticks()) {
            (Some((b0, t0)), Some((b1, t1))) if t1 > t0 => Some(
                (b1 - b0) / (t1 - t0)
                    * std::thread::available_parallelism().map_or(1, |n| n.get()) as f64,
            ),
            _ => None,
        };
        (
            broker_cpu_since(self.broker),
            self.redis.zip(redis1).map(|(a, b)| b - a),
            machine,
        )
    }
}

/// Redis's own CPU seconds so far (`INFO cpu`: used_cpu_user + used_cpu_sys).
async fn redis_cpu(redis: &redis::aio::MultiplexedConnection) -> Option<f64> {
    let info: String = redis::cmd("INFO")
        .arg("cpu")
        .query_async(&mut redis.clone())
        .await
        .ok()?;
    let field = |name: &str| {
        info.lines().find_map(|l| {
            l.strip_prefix(name)?
                .strip_prefix(':')?
                .trim()
                .parse::<f64>()
                .ok()
        })
    };
    Some(field("used_cpu_user")? + field("used_cpu_sys")?)
}

/// (busy, total) jiffies of all CPUs from /proc/stat.
fn machine_ticks() -> Option<(f64, f64)> {
    let stat = std::fs::read_to_string("/proc/stat").ok()?;
    let v: Vec<f64> = stat
        .lines()
        .next()?
        .split_whitespace()
        .skip(1)
        .filter_map(|x| x.parse().ok())
        .collect();
    let total: f64 = v.iter().take(8).sum();
    let idle = v.get(3)? + v.get(4)?;
    Some((total - idle, total))
}

/// Broker CPU seconds between two readings of the same server process.
fn broker_cpu_since(start: Option<(u32, f64)>) -> Option<f64> {
    let (pid, before) = start?;
    user_sys(pid).map(|(u, s)| u + s - before)
}

/// (user, system) CPU seconds of a process.
fn user_sys(pid: u32) -> Option<(f64, f64)> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let f: Vec<&str> = stat.rsplit_once(')')?.1.split_whitespace().collect();
    let t = clock_ticks() as f64;
    Some((
        f.get(11)?.parse::<f64>().ok()? / t,
        f.get(12)?.parse::<f64>().ok()? / t,
    ))
}

fn clock_ticks() -> u64 {
    std::process::Command::new("getconf")
        .arg("CLK_TCK")
        .output()
        .ok()
        .and_then(|o| String::from_utf8_lossy(&o.stdout).trim().parse().ok())
        .unwrap_or(100)
}

/// The worker processes under measurement.
struct Workers {
    children: Vec<(std::process::Child, u16)>,
}

impl Workers {
    fn start(opts: &BenchOptions, settings: &Settings) -> anyhow::Result<Self> {
        let mut children = Vec::new();
        for _ in 0..opts.workers {
            let port = std::net::TcpListener::bind("127.0.0.1:0")?
                .local_addr()?
                .port();
            let mut cmd = match opts.wrap.split_first() {
                Some((wrapper, args)) => {
                    let mut cmd = std::process::Command::new(wrapper);
                    cmd.args(args).arg(&opts.binary);
                    cmd
                }
                None => std::process::Command::new(&opts.binary),
            };
            cmd.args(["run", "--config"]).arg(&opts.config);
            cmd.envs(namespace::env(settings))
                .env("AXN__HTTP__LISTEN", format!("127.0.0.1:{port}"))
                .env("RUST_LOG", "warn")
                .stdout(std::process::Stdio::null())
                .stderr(std::process::Stdio::null());
            children.push((
                cmd.spawn()
                    .with_context(|| format!("Failed to start {}", opts.binary.display()))?,
                port,
            ));
        }
        Ok(Workers { children })
    }

    async fn get(port: u16, path: &str) -> Option<(u16, String)> {
        probe::http_get(([127, 0, 0, 1], port).into(), path)
            .await
            .ok()
    }

    async fn all_ready(&self) -> bool {
        for (_, port) in &self.children {
            if Self::get(*port, "/readyz").await.map(|r| r.0) != Some(200) {
                return false;
            }
        }
        true
    }

    /// The sum of a metric's samples (lines starting with `prefix`) across
    /// the workers.
    async fn metric_sum(&self, prefix: &str) -> f64 {
        let mut total = 0.0;
        for (_, port) in &self.children {
            if let Some((_, page)) = Self::get(*port, "/metrics").await {
                total += page
                    .lines()
                    .filter(|l| l.starts_with(prefix))
                    .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
                    .sum::<f64>();
            }
        }
        total
    }

    /// Acknowledged deliveries across the workers.
    async fn acked(&self) -> u64 {
        self.metric_sum("axn_messages_acked_total{").await as u64
    }

    /// Mean call-log confirm time in ms, if any event was published.
    async fn confirm_ms(&self) -> Option<f64> {
        let count = self.metric_sum("axn_call_log_confirm_seconds_count ").await;
        let sum = self.metric_sum("axn_call_log_confirm_seconds_sum ").await;
        (count > 0.0).then(|| sum * 1e3 / count)
    }

    fn usage(&self) -> (f64, u64) {
        let mut cpu = 0.0;
        let mut rss = 0;
        for (c, _) in &self.children {
            if let Ok((s, r)) = process_usage(c.id()) {
                cpu += s;
                rss = rss.max(r);
            }
        }
        (cpu, rss)
    }

    fn stop(mut self) {
        for (c, _) in &mut self.children {
            let _ = std::process::Command::new("kill")
                .args(["-TERM", &c.id().to_string()])
                .status();
        }
        for (c, _) in &mut self.children {
            let _ = c.wait();
        }
    }
}

/// Drains a pre-loaded copy of the load with the worker processes.
async fn measure_worker(
    opts: &BenchOptions,
    settings: &Settings,
    channel: &Channel,
    redis: &mut redis::aio::MultiplexedConnection,
) -> anyhow::Result<Throughput> {
    let keys = Keys::new(settings.redis.key_prefix.clone());
    let (messages, bindings) = workload(opts.messages, "w", opts.only);
    seed(redis, &keys, &bindings).await?;
    publish_all(channel, settings, &messages).await?;
    let workers = Workers::start(opts, settings)?;
    let deadline = Instant::now() + Duration::from_secs(60);
    while !workers.all_ready().await {
        if Instant::now() > deadline {
            workers.stop();
            bail!("the worker processes did not become ready");
        }
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    let started = Instant::now();
    let others = Others::start(redis).await;
    let (cpu0, _) = workers.usage();
    let split0 = workers
        .children
        .iter()
        .filter_map(|(c, _)| user_sys(c.id()))
        .fold((0.0, 0.0), |a, b| (a.0 + b.0, a.1 + b.1));
    let n = opts.messages as u64;
    let deadline = Instant::now() + Duration::from_secs(600);
    while workers.acked().await < n {
        if Instant::now() > deadline {
            workers.stop();
            bail!("the workers did not drain the load within 10 minutes");
        }
        // Each poll renders the worker's /metrics, on the worker's CPU: not
        // more often than the rate's precision needs.
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let seconds = started.elapsed().as_secs_f64();
    let (cpu1, rss) = workers.usage();
    let (broker_cpu_seconds, redis_cpu_seconds, cores_busy) = others.since(redis).await;
    let split1 = workers
        .children
        .iter()
        .filter_map(|(c, _)| user_sys(c.id()))
        .fold((0.0, 0.0), |a, b| (a.0 + b.0, a.1 + b.1));
    eprintln!(
        "worker CPU: user {:.1} µs/msg, system {:.1} µs/msg",
        (split1.0 - split0.0) * 1e6 / n as f64,
        (split1.1 - split0.1) * 1e6 / n as f64
    );
    let confirm_ms = workers.confirm_ms().await;
    // A drain that skipped the work is not a rate: every call record must
    // have produced its call-log event (stale dedupe marks of an earlier
    // run left behind would make the worker skip them, and look fast).
    let records = messages
        .iter()
        .filter(|(k, _)| *k == QueueKind::CallRecord)
        .count() as f64;
    let events = workers
        .metric_sum("axn_call_log_confirm_seconds_count ")
        .await;
    if events != records {
        workers.stop();
        bail!(
            "the worker published {events} call-log events for {records} call records: state left by an earlier run? (the bench removes its namespace's queues and keys before and after each drain)"
        );
    }
    workers.stop();
    Ok(Throughput {
        messages: opts.messages,
        seconds,
        cpu_seconds: cpu1 - cpu0,
        peak_rss_kib: rss,
        confirm_ms,
        broker_cpu_seconds,
        redis_cpu_seconds,
        cores_busy,
    })
}

/// The bare consumers the worker is compared with.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Bare {
    /// Acks each delivery, on the worker's queues at their prefetch.
    AckOnly,
    /// Also publishes one confirmed persistent message per call record.
    Publishing,
    /// Acks each delivery, with the whole load in one queue (the call-record
    /// queue, at its prefetch): the yardstick issue 6 calibrates (~18k msg/s
    /// at prefetch 10 on this kind of machine).
    OneQueue,
    /// As `OneQueue`, plus one Redis script per delivery (an HSET and an
    /// EXPIRE, awaited before the ack): the least any consumer that applies
    /// each message to Redis must spend. The worker makes at least this
    /// round trip for every message (two for a call record).
    Storing,
    /// The contract's unavoidable external work and nothing else, on the
    /// worker's queues at their prefetch: per delivery one Redis script, and
    /// for a call record a second one after one confirmed persistent publish
    /// (the worker's claim, event and commit), then the ack, coalesced as
    /// the worker coalesces them (its `AckBatcher`). No parsing, no
    /// ordering, no metrics or logs.
    Floor,
}

/// Drains a pre-loaded copy of the load with a bare consumer.
async fn measure_bare(
    settings: &Settings,
    conn: &Connection,
    channel: &Channel,
    n: usize,
    only: Option<QueueKind>,
    bare: Bare,
    redis: &redis::aio::MultiplexedConnection,
) -> anyhow::Result<Throughput> {
    let (mut messages, _) = workload(n, "b", only);
    if matches!(bare, Bare::OneQueue | Bare::Storing) {
        for m in &mut messages {
            m.0 = QueueKind::CallRecord;
        }
    }
    let publish_per_call = matches!(bare, Bare::Publishing | Bare::Floor);
    publish_all(channel, settings, &messages).await?;
    let acked = Arc::new(AtomicU64::new(0));
    // (confirms, their total time in µs) of the publishing variant.
    let confirms = Arc::new((AtomicU64::new(0), AtomicU64::new(0)));
    let started = Instant::now();
    let others = Others::start(redis).await;
    // The bare consumer runs in this process: its CPU over the drain is the
    // yardstick for the worker's (the drain loop's polls are negligible).
    let own = std::process::id();
    let cpu0 = process_usage(own)?.0;
    let mut channels = Vec::new();
    let tracker = tokio_util::task::TaskTracker::new();
    let kinds: &[QueueKind] = match bare {
        Bare::OneQueue | Bare::Storing => &[QueueKind::CallRecord],
        _ => &QueueKind::ALL,
    };
    for &kind in kinds {
        let q = settings.queues.get(kind);
        let ch = conn.create_channel().await?;
        ch.basic_qos(q.prefetch, BasicQosOptions::default()).await?;
        let mut consumer = ch
            .basic_consume(
                q.name.as_str().into(),
                "axn-bench-bare".into(),
                BasicConsumeOptions::default(),
                FieldTable::default(),
            )
            .await?;
        let acked = Arc::clone(&acked);
        let confirms = Arc::clone(&confirms);
        // With publish_per_call, a call record is acked only after one
        // persistent confirmed publish, as the worker's call-log event is.
        let publisher = if publish_per_call && kind == QueueKind::CallRecord {
            Some(axn_worker::amqp::publisher::Publisher::new(conn.create_channel().await?).await?)
        } else {
            None
        };
        let out = settings.publish.call_log.routing_key.clone();
        // Scripts per delivery before the publish (if any) and after it.
        let scripts = match bare {
            Bare::Storing => (1, 0),
            Bare::Floor if kind == QueueKind::CallRecord => (1, 1),
            Bare::Floor => (1, 0),
            _ => (0, 0),
        };
        // The floor acks as the worker does: runs of settled deliveries in
        // one `multiple` frame.
        let batcher = (bare == Bare::Floor).then(|| AckBatcher::new(tracker.clone()));
        let store = (scripts.0 > 0).then(|| {
            (
                redis.clone(),
                Arc::new(redis::Script::new(
                    "redis.call('HSET', KEYS[1], 'v', ARGV[1]) redis.call('EXPIRE', KEYS[1], 3600) return 1",
                )),
                settings.redis.key_prefix.clone(),
            )
        });
        tokio::spawn(async move {
            let mut i = 0u64;
            while let Some(Ok(d)) = consumer.next().await {
                if let Some(b) = &batcher {
                    b.register(d.delivery_tag);
                }
                let batcher = batcher.clone();
                let acked = Arc::clone(&acked);
                let confirms = Arc::clone(&confirms);
                let publisher = publisher.clone();
                let out = out.clone();
                let store = store.clone();
                i += 1;
                tokio::spawn(async move {
                    // One script on the key of this delivery (if this yardstick stores).
                    let store_once = async |value: usize| -> bool {
                        let Some((r, script, prefix)) = &store else {
                            return true;
                        };
                        script
                            .key(format!("{prefix}bench-store:{}", i % 1000))
                            .arg(value)
                            .invoke_async::<i64>(&mut r.clone())
                            .await
                            .is_ok()
                    };
                    if scripts.0 > 0 && !store_once(d.data.len()).await {
                        return;
                    }
                    if let Some(p) = publisher {
                        let props = BasicProperties::default().with_delivery_mode(2);
                        let at = Instant::now();
                        if p.publish("", &out, br#"{"user":1,"houseid":1}"#, props)
                            .await
                            .is_err()
                        {
                            return;
                        }
                        confirms.0.fetch_add(1, Ordering::Relaxed);
                        confirms
                            .1
                            .fetch_add(at.elapsed().as_micros() as u64, Ordering::Relaxed);
                    }
                    if scripts.1 > 0 && !store_once(0).await {
                        return;
                    }
                    if let Some(b) = batcher {
                        // Counted when settled; its frame follows within the round.
                        b.settle(d.delivery_tag, Verdict::Ack, d.acker);
                        acked.fetch_add(1, Ordering::Relaxed);
                    } else if d.acker.ack(BasicAckOptions::default()).await.is_ok() {
                        acked.fetch_add(1, Ordering::Relaxed);
                    }
                });
            }
        });
        channels.push(ch);
    }
    let deadline = Instant::now() + Duration::from_secs(600);
    while acked.load(Ordering::Relaxed) < n as u64 {
        if Instant::now() > deadline {
            bail!("the bare consumer did not drain the load");
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    // The last acks' frames (the floor's batcher) are part of the drain.
    tracker.close();
    tracker.wait().await;
    let seconds = started.elapsed().as_secs_f64();
    let cpu_seconds = process_usage(own)?.0 - cpu0;
    let (broker_cpu_seconds, redis_cpu_seconds, cores_busy) = others.since(redis).await;
    for ch in channels {
        let _ = ch.close(200, "bench".into()).await;
    }
    let (count, micros) = (
        confirms.0.load(Ordering::Relaxed),
        confirms.1.load(Ordering::Relaxed),
    );
    Ok(Throughput {
        messages: n,
        seconds,
        cpu_seconds,
        peak_rss_kib: 0,
        confirm_ms: (count > 0).then(|| micros as f64 / 1e3 / count as f64),
        broker_cpu_seconds,
        redis_cpu_seconds,
        cores_busy,
    })
}

/// Publish-to-visible latency at a fixed rate, in milliseconds: (p50, p99, max, count).
async fn measure_latency(
    opts: &BenchOptions,
    settings: &Settings,
    redis: &mut redis::aio::MultiplexedConnection,
    conn: &Connection,
) -> anyhow::Result<(f64, f64, f64, usize)> {
    let keys = Keys::new(settings.redis.key_prefix.clone());
    let set = keys.black(99, 0);
    let workers = Workers::start(opts, settings)?;
    while !workers.all_ready().await {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let channel = conn.create_channel().await?;
    channel.confirm_select(Default::default()).await?;
    let queue = settings.queues.blacklist.name.clone();
    let total = (opts.rate as f64 * opts.duration.as_secs_f64()) as usize;
    let sent: Arc<std::sync::Mutex<HashMap<String, Instant>>> = Default::default();
    let publisher = {
        let sent = Arc::clone(&sent);
        let rate = opts.rate;
        tokio::spawn(async move {
            let tick = Duration::from_millis(5);
            let per_tick = (rate as f64 * tick.as_secs_f64()).max(1.0);
            let start = Instant::now();
            let mut i = 0usize;
            while i < total {
                let due = ((start.elapsed().as_secs_f64() / tick.as_secs_f64()).floor() as usize
                    + 1)
                    * per_tick as usize;
                while i < due.min(total) {
                    let member = format!("{:011}", i);
                    let body =
                        json!({"private_number": member, "action": "add", "userid": 99, "type": 0})
                            .to_string();
                    sent.lock()
                        .unwrap_or_else(|p| p.into_inner())
                        .insert(member, Instant::now());
                    let props = BasicProperties::default().with_delivery_mode(2);
                    let _ = channel
                        .basic_publish(
                            "".into(),
                            queue.as_str().into(),
                            BasicPublishOptions::default(),
                            body.as_bytes(),
                            props,
                        )
                        .await;
                    i += 1;
                }
                tokio::time::sleep(tick).await;
            }
            let _ = channel.wait_for_confirms().await;
        })
    };
    let mut latencies = Vec::with_capacity(total);
    let deadline = Instant::now() + opts.duration + Duration::from_secs(30);
    while latencies.len() < total && Instant::now() < deadline {
        let pending: Vec<(String, Instant)> = sent
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .iter()
            .map(|(k, v)| (k.clone(), *v))
            .collect();
        if !pending.is_empty() {
            let names: Vec<&str> = pending.iter().map(|(k, _)| k.as_str()).collect();
            let found: Vec<bool> = redis::cmd("SMISMEMBER")
                .arg(&set)
                .arg(&names)
                .query_async(redis)
                .await?;
            let now = Instant::now();
            let mut map = sent.lock().unwrap_or_else(|p| p.into_inner());
            for ((member, at), hit) in pending.iter().zip(found) {
                if hit {
                    latencies.push(now.duration_since(*at).as_secs_f64() * 1000.0);
                    map.remove(member);
                }
            }
        }
        tokio::time::sleep(Duration::from_micros(500)).await;
    }
    let _ = publisher.await;
    workers.stop();
    if latencies.len() < total {
        bail!(
            "only {} of {total} messages became visible",
            latencies.len()
        );
    }
    latencies.sort_by(|a, b| a.total_cmp(b));
    let pct = |p: f64| latencies[((latencies.len() as f64 * p) as usize).min(latencies.len() - 1)];
    Ok((
        pct(0.50),
        pct(0.99),
        *latencies.last().unwrap_or(&0.0),
        latencies.len(),
    ))
}

/// One run of the platform API's cycle.
struct PlatformRun {
    cycles: usize,
    clients: usize,
    seconds: f64,
    p50: f64,
    p99: f64,
    max: f64,
    peak_rss_kib: u64,
}

/// `clients` concurrent loops, each with a user and a number of its own,
/// cycling BindAxByplatform -> GetCallNumber -> ReleaseTelX through HTTP
/// against real worker processes (simulated carrier), `opts.messages`
/// cycles in all.
async fn measure_platform(opts: &BenchOptions, settings: &Settings) -> anyhow::Result<PlatformRun> {
    use axn_worker::platform::{BASE_A, BASE_B};
    let clients = opts.clients.max(1);
    let workers = platform_workers(opts, settings, clients).await?;
    let ports: Vec<u16> = workers.children.iter().map(|(_, p)| *p).collect();
    let per_client = opts.messages.div_ceil(clients);
    let started = Instant::now();
    let mut tasks = Vec::new();
    for c in 0..clients {
        let port = ports[c % ports.len()];
        tasks.push(tokio::spawn(async move {
            let addr = std::net::SocketAddr::from(([127, 0, 0, 1], port));
            let user = 900_000 + c;
            let mut latencies = Vec::with_capacity(per_client);
            for i in 0..per_client {
                let ask = |path: String| async move {
                    let (status, body) = probe::http_get(addr, &path).await?;
                    let v: serde_json::Value = serde_json::from_str(&body)?;
                    anyhow::ensure!(status == 200 && v["ResultCode"] == 2000, "{path}: {body}");
                    anyhow::Ok(v)
                };
                let bound = ask(format!("{BASE_B}/BindAxByplatform?userId={user}&platformID=3&cycle={i}")).await?;
                let x = bound["ResultMsg"].as_str().and_then(|m| m.split(':').nth(1)).unwrap_or_default().to_owned();
                let t = Instant::now();
                ask(format!("{BASE_A}/GetCallNumber?xbid={i}&userid={user}&Mapclassid=1&Mapid={i}&Mobile=13700000000&expiration=120")).await?;
                latencies.push(t.elapsed().as_secs_f64() * 1e3);
                ask(format!("{BASE_A}/ReleaseTelX?userId={user}&private_number={x}")).await?;
            }
            anyhow::Ok(latencies)
        }));
    }
    let mut latencies = Vec::new();
    let mut failure = None;
    for t in tasks {
        match t.await? {
            Ok(l) => latencies.extend(l),
            Err(e) => failure = Some(e),
        }
    }
    let seconds = started.elapsed().as_secs_f64();
    let (_, peak_rss_kib) = workers.usage();
    workers.stop();
    if let Some(e) = failure {
        return Err(e);
    }
    latencies.sort_by(|a, b| a.total_cmp(b));
    let pct = |q: f64| latencies[((latencies.len() as f64 * q) as usize).min(latencies.len() - 1)];
    Ok(PlatformRun {
        cycles: per_client * clients,
        clients,
        seconds,
        p50: pct(0.50),
        p99: pct(0.99),
        max: *latencies.last().unwrap_or(&0.0),
        peak_rss_kib,
    })
}

fn median(values: impl Iterator<Item = f64>) -> f64 {
    let mut v: Vec<f64> = values.collect();
    v.sort_by(|a, b| a.total_cmp(b));
    if v.is_empty() { 0.0 } else { v[v.len() / 2] }
}

fn machine() -> String {
    let cpu = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|c| {
            c.lines().find_map(|l| {
                l.strip_prefix("model name")
                    .map(|v| v.trim_start_matches([' ', '\t', ':']).to_owned())
            })
        })
        .unwrap_or_else(|| "unknown CPU".into());
    let cores = std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(0);
    format!("{cores} cores, {cpu}")
}

/// Runs the benchmark and writes its report to `out` (and the file).
pub async fn run(base: &Settings, opts: &BenchOptions, out: &mut dyn Write) -> anyhow::Result<()> {
    let settings = bench_settings(base, &opts.namespace, opts.prefetch);
    let conn = amqp::connect(&settings, &amqp::connection_name(Some("bench"))).await?;
    let url = settings.redis.url.single_url()?;
    let mut redis =
        axn_worker::store::client(url, url.starts_with("rediss://"), &settings.redis.tls)?
            .get_multiplexed_async_connection()
            .await?;
    let redis_version: String = redis::cmd("INFO")
        .arg("server")
        .query_async::<String>(&mut redis)
        .await?
        .lines()
        .find_map(|l| l.strip_prefix("redis_version:").map(str::to_owned))
        .unwrap_or_default();
    namespace::cleanup(&settings).await;
    topology::declare(&conn, &settings).await?;
    let channel = conn.create_channel().await?;
    channel.confirm_select(Default::default()).await?;

    let prefetch = opts.prefetch.map(|p| p.to_string()).unwrap_or_else(|| {
        let q = |k| settings.queues.get(k).prefetch.to_string();
        format!("config {}", QueueKind::ALL.map(q).join("/"))
    });
    let concurrency = QueueKind::ALL
        .map(|k| settings.queues.get(k).concurrency.to_string())
        .join("/");
    let prefetch = format!("{prefetch}, concurrency {concurrency}");
    let mut report = String::new();
    let result: anyhow::Result<()> = async {
        if opts.platform && let Some(scale) = opts.fill {
            // The binding API on an empty Redis and on one of production
            // size (its pool 10^5 numbers over three platforms, and the rest).
            let empty = measure_platform(opts, &settings).await?;
            namespace::cleanup(&settings).await;
            topology::declare(&conn, &settings).await?;
            let f = fill(&mut redis, &settings, scale).await?;
            let filled = measure_platform(opts, &settings).await?;
            let rate = |p: &PlatformRun| p.cycles as f64 / p.seconds;
            report += &format!(
                "| platform API, production size | {} worker(s), {} clients, simulated carrier | {} cycles of BindAxByplatform + GetCallNumber + ReleaseTelX, on an empty Redis and on one holding {} pool numbers (3 platforms), {} live XB bindings, {} unbound, {} marks, {} users | {:.0} -> {:.0} cycles/s (ratio {:.2}) | GetCallNumber p99 {:.2} -> {:.2} ms | peak RSS {:.1} MiB |\n",
                opts.workers,
                empty.clients,
                empty.cycles,
                f.pool,
                f.xb,
                f.unbound,
                f.marks,
                f.users,
                rate(&empty),
                rate(&filled),
                rate(&filled) / rate(&empty),
                empty.p99,
                filled.p99,
                empty.peak_rss_kib.max(filled.peak_rss_kib) as f64 / 1024.0
            );
        } else if opts.platform {
            let p = measure_platform(opts, &settings).await?;
            report += &format!(
                "| platform API | {} worker(s), {} clients, simulated carrier | {} cycles of BindAxByplatform + GetCallNumber + ReleaseTelX over HTTP | {:.0} cycles/s ({:.0} requests/s) | GetCallNumber p50 {:.2} ms, p99 {:.2} ms, max {:.2} ms | peak RSS {:.1} MiB |\n",
                opts.workers,
                p.clients,
                p.cycles,
                p.cycles as f64 / p.seconds,
                3.0 * p.cycles as f64 / p.seconds,
                p.p50,
                p.p99,
                p.max,
                p.peak_rss_kib as f64 / 1024.0
            );
        } else if opts.latency {
            let (p50, p99, max, n) = measure_latency(opts, &settings, &mut redis, &conn).await?;
            report += &format!(
                "| latency | {} worker(s), prefetch {prefetch} | {} msg/s for {} s ({n} messages) | p50 {p50:.2} ms | p99 {p99:.2} ms | max {max:.2} ms |\n",
                opts.workers,
                opts.rate,
                opts.duration.as_secs()
            );
        } else if let Some(n) = opts.expiry_storm {
            let s = measure_storm(opts, &settings, n).await?;
            report += &format!(
                "| expiry storm | {} worker(s), {} GetCallNumber clients | {} XB bindings due at the same second | published in {:.2} s ({:.0} expiries/s), unbound in {:.2} s; MQ108 published {} and consumed {} times for {} bindings | GetCallNumber during the storm p50 {:.2} ms, p99 {:.2} ms ({} calls) | |\n",
                opts.workers,
                opts.clients.max(1),
                s.bindings,
                s.published_secs,
                s.bindings as f64 / s.published_secs,
                s.unbound_secs,
                s.published,
                s.acked,
                s.bindings,
                s.get_call_p50,
                s.get_call_p99,
                s.get_calls
            );
            if s.published != s.bindings as u64 || s.acked != s.bindings as u64 {
                bail!("{report}each expired binding must be published and consumed exactly once");
            }
        } else if let Some(scale) = opts.fill {
            // The worker on an empty Redis and on one filled to production
            // size, alternating; medians with --repeat.
            let (mut empty, mut filled, mut fills) = (Vec::new(), Vec::new(), Vec::new());
            for _ in 0..opts.repeat.max(1) {
                empty.push(measure_worker(opts, &settings, &channel, &mut redis).await?);
                namespace::cleanup(&settings).await;
                topology::declare(&conn, &settings).await?;
                fills.push(fill(&mut redis, &settings, scale).await?);
                filled.push(measure_worker(opts, &settings, &channel, &mut redis).await?);
                namespace::cleanup(&settings).await;
                topology::declare(&conn, &settings).await?;
            }
            let m = |v: &[Throughput], f: fn(&Throughput) -> f64| median(v.iter().map(f));
            let (re, rf) = (m(&empty, Throughput::rate), m(&filled, Throughput::rate));
            let (ce, cf) = (
                m(&empty, Throughput::cpu_us_per_message),
                m(&filled, Throughput::cpu_us_per_message),
            );
            let redis_us = |t: &Throughput| t.redis_us_per_message().unwrap_or(f64::NAN);
            let (xe, xf) = (m(&empty, redis_us), m(&filled, redis_us));
            let f = fills.last().cloned().unwrap_or_default();
            let b = |v: Option<u64>| v.map_or("?".into(), |v| v.to_string());
            report += &format!(
                "| production size | {} worker(s), prefetch {prefetch} | {} messages{} on an empty Redis and on one holding {} live XB bindings, {} unbound, {} call-log marks, {} pool numbers (3 platforms), {} users with phones and blacklists | drain {re:.0} -> {rf:.0} msg/s (ratio {:.2}); worker CPU {ce:.1} -> {cf:.1} µs/msg (ratio {:.2}); Redis CPU {xe:.1} -> {xf:.1} µs/msg (ratio {:.2}) | fill {:.0} s, Redis used_memory +{:.0} MiB; MEMORY USAGE: {} B per live binding (hash field), {} B per unbound one (with its index entry), {} B per mark, {} B per pool number, {} B per user's phone zset | peak RSS {:.1} MiB |\n",
                opts.workers,
                opts.messages,
                match opts.only {
                    Some(k) => format!(" ({})", k.key()),
                    None => " (40/30/20/10 mix)".into(),
                },
                f.xb,
                f.unbound,
                f.marks,
                f.pool,
                f.users,
                rf / re,
                cf / ce,
                xf / xe,
                f.seconds,
                (f.used_after.saturating_sub(f.used_before)) as f64 / 1048576.0,
                b(f.per_binding),
                b(f.per_unbound),
                b(f.per_mark),
                b(f.per_number),
                b(f.per_user_phones),
                filled
                    .iter()
                    .chain(&empty)
                    .map(|w| w.peak_rss_kib)
                    .max()
                    .unwrap_or(0) as f64
                    / 1024.0
            );
        } else {
            // Worker and bare drains alternate, so both see the same
            // conditions; with --repeat the medians are reported.
            let (mut workers, mut bares, mut publishing, mut one_queue, mut storing, mut floor) =
                (Vec::new(), Vec::new(), Vec::new(), Vec::new(), Vec::new(), Vec::new());
            for _ in 0..opts.repeat.max(1) {
                workers.push(measure_worker(opts, &settings, &channel, &mut redis).await?);
                namespace::cleanup(&settings).await;
                topology::declare(&conn, &settings).await?;
                bares.push(measure_bare(&settings, &conn, &channel, opts.messages, opts.only, Bare::AckOnly, &redis).await?);
                namespace::cleanup(&settings).await;
                topology::declare(&conn, &settings).await?;
                publishing.push(measure_bare(&settings, &conn, &channel, opts.messages, opts.only, Bare::Publishing, &redis).await?);
                namespace::cleanup(&settings).await;
                topology::declare(&conn, &settings).await?;
                one_queue.push(measure_bare(&settings, &conn, &channel, opts.messages, opts.only, Bare::OneQueue, &redis).await?);
                namespace::cleanup(&settings).await;
                topology::declare(&conn, &settings).await?;
                storing.push(measure_bare(&settings, &conn, &channel, opts.messages, opts.only, Bare::Storing, &redis).await?);
                namespace::cleanup(&settings).await;
                topology::declare(&conn, &settings).await?;
                floor.push(measure_bare(&settings, &conn, &channel, opts.messages, opts.only, Bare::Floor, &redis).await?);
                namespace::cleanup(&settings).await;
                topology::declare(&conn, &settings).await?;
            }
            let ratios: Vec<f64> = workers.iter().zip(&bares).map(|(w, b)| w.rate() / b.rate()).collect();
            let fair: Vec<f64> = workers.iter().zip(&publishing).map(|(w, b)| w.rate() / b.rate()).collect();
            let single: Vec<f64> = workers.iter().zip(&one_queue).map(|(w, b)| w.rate() / b.rate()).collect();
            let spread = if ratios.len() > 1 {
                let (lo, hi) = ratios.iter().fold((f64::MAX, f64::MIN), |(l, h), r| (l.min(*r), h.max(*r)));
                format!(" (runs {lo:.2}-{hi:.2})")
            } else {
                String::new()
            };
            // The broker's confirm, which holds each call record's delivery,
            // in the worker and in the publishing yardstick.
            let confirm = |runs: &[Throughput]| {
                let v: Vec<f64> = runs.iter().filter_map(|t| t.confirm_ms).collect();
                (!v.is_empty()).then(|| median(v.into_iter()))
            };
            let confirms = match (confirm(&workers), confirm(&publishing)) {
                (Some(w), Some(b)) => format!("; call-log confirm mean {w:.2} ms (yardstick's {b:.2} ms)"),
                _ => String::new(),
            };
            // What each drain cost the broker, per message.
            let broker = |runs: &[Throughput]| {
                let v: Vec<f64> = runs.iter().filter_map(Throughput::broker_us_per_message).collect();
                (!v.is_empty()).then(|| median(v.into_iter()))
            };
            let broker = match (broker(&workers), broker(&bares), broker(&publishing), broker(&floor)) {
                (Some(w), Some(b), Some(p), Some(f)) => format!("; broker CPU {w:.1} µs/msg (bare consumer's {b:.1}, publishing yardstick's {p:.1}, floor's {f:.1})"),
                _ => String::new(),
            };
            // Redis's CPU and the whole machine's: the drains share its cores.
            let redis_cpu = |runs: &[Throughput]| {
                let v: Vec<f64> = runs.iter().filter_map(Throughput::redis_us_per_message).collect();
                (!v.is_empty()).then(|| median(v.into_iter()))
            };
            let busy = |runs: &[Throughput]| {
                let v: Vec<f64> = runs.iter().filter_map(|t| t.cores_busy).collect();
                (!v.is_empty()).then(|| median(v.into_iter()))
            };
            let machine = match (redis_cpu(&workers), redis_cpu(&floor), busy(&workers), busy(&one_queue), busy(&publishing), busy(&floor)) {
                (Some(rw), Some(rf), Some(bw), Some(bo), Some(bp), Some(bf)) => format!(
                    "; Redis CPU {rw:.1} µs/msg (floor's {rf:.1}); cores busy {bw:.2} (one bare queue {bo:.2}, publishing yardstick {bp:.2}, floor {bf:.2}) of {}",
                    std::thread::available_parallelism().map_or(1, |n| n.get())
                ),
                _ => String::new(),
            };
            report += &format!(
                "| throughput | {} worker(s), prefetch {prefetch} | {} messages ({}){} | worker {:.0} msg/s, bare consumer {:.0} msg/s, ratio {:.2}{spread}; bare consumer publishing per call record {:.0} msg/s, ratio {:.2}; bare consumer on one queue {:.0} msg/s, ratio {:.2}{confirms}{broker}{machine}; bare consumer on one queue storing to Redis {:.0} msg/s, ratio {:.2}; the contract's floor (Redis scripts and call-log publishes only) {:.0} msg/s, ratio {:.2} | CPU {:.1} µs/msg (bare consumer on one queue {:.1}, ratio {:.2}; storing to Redis {:.1}, ratio {:.2}; contract floor {:.1}, ratio {:.2}) | peak RSS {:.1} MiB |\n",
                opts.workers,
                opts.messages,
                opts.only.map_or("40/30/20/10 mix", |k| k.key()),
                if ratios.len() > 1 { format!(", median of {}", ratios.len()) } else { String::new() },
                median(workers.iter().map(Throughput::rate)),
                median(bares.iter().map(Throughput::rate)),
                median(ratios.iter().copied()),
                median(publishing.iter().map(Throughput::rate)),
                median(fair.iter().copied()),
                median(one_queue.iter().map(Throughput::rate)),
                median(single.iter().copied()),
                median(storing.iter().map(Throughput::rate)),
                median(workers.iter().zip(&storing).map(|(w, b)| w.rate() / b.rate())),
                median(floor.iter().map(Throughput::rate)),
                median(workers.iter().zip(&floor).map(|(w, b)| w.rate() / b.rate())),
                median(workers.iter().map(Throughput::cpu_us_per_message)),
                median(one_queue.iter().map(Throughput::cpu_us_per_message)),
                median(workers.iter().zip(&one_queue).map(|(w, b)| w.cpu_us_per_message() / b.cpu_us_per_message())),
                median(storing.iter().map(Throughput::cpu_us_per_message)),
                median(workers.iter().zip(&storing).map(|(w, b)| w.cpu_us_per_message() / b.cpu_us_per_message())),
                median(floor.iter().map(Throughput::cpu_us_per_message)),
                median(workers.iter().zip(&floor).map(|(w, b)| w.cpu_us_per_message() / b.cpu_us_per_message())),
                workers.iter().map(|w| w.peak_rss_kib).max().unwrap_or(0) as f64 / 1024.0
            );
        }
        Ok(())
    }
    .await;
    namespace::cleanup(&settings).await;
    let _ = conn.close(200, "bench done".into()).await;
    result?;

    let header = format!(
        "\n### {} — {} — axn-worker {} (release: {}), Redis {redis_version}\n\n| mode | setup | load | result | | |\n|---|---|---|---|---|---|\n",
        humantime::format_rfc3339_seconds(std::time::SystemTime::now()),
        machine(),
        env!("CARGO_PKG_VERSION"),
        !cfg!(debug_assertions),
    );
    write!(out, "{header}{report}")?;
    if let Some(path) = &opts.append_to {
        append(path, &format!("{header}{report}"))?;
    }
    Ok(())
}

fn append(path: &Path, text: &str) -> anyhow::Result<()> {
    let mut f = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .with_context(|| format!("Failed to open {}", path.display()))?;
    f.write_all(text.as_bytes())?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn workload_has_the_mix_and_its_bindings() {
        let (m, b) = workload(1000, "t", None);
        let count = |k: QueueKind| m.iter().filter(|(q, _)| *q == k).count();
        assert_eq!(
            (
                count(QueueKind::CallRecord),
                count(QueueKind::XbUnbind),
                count(QueueKind::Blacklist),
                count(QueueKind::PhoneHistory)
            ),
            (400, 300, 200, 100)
        );
        let subs: std::collections::HashSet<&str> = b.iter().map(|(s, _)| s.as_str()).collect();
        for (k, body) in &m {
            if matches!(k, QueueKind::CallRecord | QueueKind::XbUnbind) {
                let v: serde_json::Value = serde_json::from_slice(body).unwrap();
                assert!(subs.contains(v["subId"].as_str().unwrap()), "{v}");
            }
        }
    }

    #[test]
    fn own_process_usage_is_readable() {
        let (cpu, rss) = process_usage(std::process::id()).unwrap();
        assert!(cpu >= 0.0 && rss > 0);
    }

    /// The tests' RabbitMQ runs on this machine (see README, .ci/run), so
    /// the bench can account for its CPU.
    #[test]
    fn local_broker_cpu_is_found() {
        let (_, used) = broker_cpu().expect("the local RabbitMQ server's beam.smp in /proc");
        assert!(used > 0.0, "a running broker has used some CPU: {used}");
    }
}

/// Production-size state (`--fill`): what a company's Redis holds besides
/// the bench's own load, at `scale` x these counts.
pub const FILL_XB: usize = 1_000_000;
pub const FILL_UNBOUND: usize = 1_000_000;
pub const FILL_MARKS: usize = 1_000_000;
pub const FILL_POOL: usize = 100_000;
pub const FILL_USERS: usize = 100_000;

/// What the fill wrote and what it costs Redis.
#[derive(Debug, Clone, Default)]
pub struct Fill {
    pub xb: usize,
    pub unbound: usize,
    pub marks: usize,
    pub pool: usize,
    pub users: usize,
    pub seconds: f64,
    /// `INFO memory` used_memory before and after, bytes.
    pub used_before: u64,
    pub used_after: u64,
    /// `MEMORY USAGE` (bytes) of one live binding's field, one mark key, one
    /// pool number's record, one user's phone history zset, sampled.
    pub per_binding: Option<u64>,
    /// An unbound binding: its hash field and its retention index entry.
    pub per_unbound: Option<u64>,
    pub per_mark: Option<u64>,
    pub per_number: Option<u64>,
    pub per_user_phones: Option<u64>,
}

async fn used_memory(redis: &mut redis::aio::MultiplexedConnection) -> anyhow::Result<u64> {
    let info: String = redis::cmd("INFO").arg("memory").query_async(redis).await?;
    Ok(info
        .lines()
        .find_map(|l| l.strip_prefix("used_memory:")?.trim().parse().ok())
        .unwrap_or(0))
}

/// Fills Redis under the bench's prefix to production size (`scale` x the
/// FILL_* counts), through pipelines of 5,000 commands; the pool numbers
/// through the worker's own import, as `axn-worker pool import` adds them.
pub async fn fill(
    redis: &mut redis::aio::MultiplexedConnection,
    settings: &Settings,
    scale: f64,
) -> anyhow::Result<Fill> {
    let n = |base: usize| ((base as f64 * scale).round() as usize).max(1);
    let keys = Keys::new(settings.redis.key_prefix.clone());
    let started = Instant::now();
    let mut out = Fill {
        xb: n(FILL_XB),
        unbound: n(FILL_UNBOUND),
        marks: n(FILL_MARKS),
        pool: n(FILL_POOL),
        users: n(FILL_USERS),
        used_before: used_memory(redis).await?,
        ..Fill::default()
    };
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)?
        .as_secs();
    let binding = |sub: &str, i: usize| {
        json!({"subId": sub, "platId": 3, "userId": 10_000_000 + i, "telX": format!("171{:08}", i % 100_000_000),
               "telB": format!("137{:08}", i % 100_000_000), "mapClassId": 1, "mapId": 20_000_000 + i,
               "contactMapClassId": 0, "contactId": 0, "boundAt": now, "expiresAt": now + 86_400})
        .to_string()
    };
    let ttl = settings.redis.calllog_dedupe_ttl_secs.max(1);
    let step = 5_000;
    let mut i = 0;
    while i < out.xb.max(out.unbound).max(out.marks).max(out.users) {
        let mut p = redis::pipe();
        for j in i..i + step {
            if j < out.xb {
                p.hset(
                    keys.xb(),
                    format!("fill-xb-{j}"),
                    binding(&format!("fill-xb-{j}"), j),
                )
                .ignore();
            }
            if j < out.unbound {
                let sub = format!("fill-ub-{j}");
                let b = binding(&sub, j);
                let stamped = format!("{},\"unboundAt\":{now}}}", &b[..b.len() - 1]);
                p.hset(keys.xb_unbound(), &sub, stamped).ignore();
                p.zadd(keys.xb_unbound_index(), &sub, now).ignore();
            }
            if j < out.marks {
                p.set_ex(keys.calllog(&format!("fill-call-{j}")), "1", ttl)
                    .ignore();
            }
            if j < out.users {
                let uid = 90_000_000 + j as u64;
                let (phone, old) = (format!("136{:08}", j), format!("135{:08}", j));
                p.hset(keys.user_phone(), uid, &phone).ignore();
                p.zadd(keys.user_phones(uid), &old, now - 86_400).ignore();
                p.zadd(keys.user_phones(uid), &phone, now).ignore();
                p.hset(keys.phone_user(), &phone, uid).ignore();
                p.hset(keys.phone_user(), &old, uid).ignore();
                p.sadd(keys.black(uid, 0), format!("134{:08}", j)).ignore();
            }
        }
        let _: () = p.query_async(redis).await?;
        i += step;
    }
    // The pool: three platforms, through the worker's import script.
    let store = axn_worker::store::Store::new(&settings.redis)?;
    for chunk in (0..out.pool).collect::<Vec<_>>().chunks(500) {
        let imports = chunk.iter().map(|j| {
            let store = store.clone();
            let number = format!("170{:08}", j);
            async move {
                store
                    .import_number(&number, 1 + (*j % 3) as u32, 1, 1, now)
                    .await
            }
        });
        for r in futures_util::future::join_all(imports).await {
            r?;
        }
    }
    out.seconds = started.elapsed().as_secs_f64();
    out.used_after = used_memory(redis).await?;
    let usage = async |redis: &mut redis::aio::MultiplexedConnection, key: String| -> Option<u64> {
        redis::cmd("MEMORY")
            .arg("USAGE")
            .arg(key)
            .arg("SAMPLES")
            .arg(1000)
            .query_async::<Option<u64>>(redis)
            .await
            .ok()
            .flatten()
    };
    // A hash's cost per field: its usage over its field count.
    out.per_binding = usage(redis, keys.xb()).await.map(|b| b / out.xb as u64);
    let unbound = usage(redis, keys.xb_unbound()).await;
    let index = usage(redis, keys.xb_unbound_index()).await;
    out.per_unbound = unbound
        .zip(index)
        .map(|(h, z)| (h + z) / out.unbound as u64);
    out.per_mark = usage(redis, keys.calllog("fill-call-0")).await;
    out.per_number = usage(redis, keys.number("17000000000")).await;
    out.per_user_phones = usage(redis, keys.user_phones(90_000_000)).await;
    Ok(out)
}

/// An expiry storm (`--expiry-storm N`): N XB bindings due at the same
/// second while `clients` loops keep calling GetCallNumber.
#[derive(Debug, Clone)]
pub struct Storm {
    pub bindings: usize,
    /// From the storm's write to the last MQ108 confirmed (the expiry
    /// index empty), and to the last binding unbound by the consumer.
    pub published_secs: f64,
    pub unbound_secs: f64,
    /// MQ108s the platform counted, and XB unbind deliveries acked.
    pub published: u64,
    pub acked: u64,
    pub get_call_p50: f64,
    pub get_call_p99: f64,
    pub get_calls: usize,
}

async fn measure_storm(
    opts: &BenchOptions,
    settings: &Settings,
    n: usize,
) -> anyhow::Result<Storm> {
    use axn_worker::platform::{BASE_A, BASE_B};
    let clients = opts.clients.max(1);
    let keys = Keys::new(settings.redis.key_prefix.clone());
    let url = settings.redis.url.single_url()?;
    let mut redis =
        axn_worker::store::client(url, url.starts_with("rediss://"), &settings.redis.tls)?
            .get_multiplexed_async_connection()
            .await?;
    let workers = platform_workers(opts, settings, clients).await?;
    let ports: Vec<u16> = workers.children.iter().map(|(_, p)| *p).collect();
    // The GetCallNumber load: each client binds once, then asks again and
    // again (the binding exists: the answer comes from Redis alone).
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let mut tasks = Vec::new();
    for c in 0..clients {
        let (port, stop) = (ports[c % ports.len()], Arc::clone(&stop));
        tasks.push(tokio::spawn(async move {
            let addr = std::net::SocketAddr::from(([127, 0, 0, 1], port));
            let user = 900_000 + c;
            let mut latencies = Vec::new();
            let (status, body) = probe::http_get(addr, &format!("{BASE_B}/BindAxByplatform?userId={user}&platformID=3")).await?;
            anyhow::ensure!(status == 200 && body.contains("\"ResultCode\":2000"), "BindAxByplatform: {body}");
            let mut i = 0u64;
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                i += 1;
                let t = Instant::now();
                let (status, body) = probe::http_get(addr, &format!("{BASE_A}/GetCallNumber?xbid={i}&userid={user}&Mapclassid=1&Mapid={i}&Mobile=13700000000&expiration=3600")).await?;
                anyhow::ensure!(status == 200 && body.contains("\"ResultCode\":2000"), "GetCallNumber: {body}");
                latencies.push(t.elapsed().as_secs_f64() * 1e3);
            }
            anyhow::Ok(latencies)
        }));
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    // The storm: n bindings, all due now.
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)?
        .as_secs();
    for chunk in (0..n).collect::<Vec<_>>().chunks(5_000) {
        let mut p = redis::pipe();
        for i in chunk {
            let sub = format!("storm-{i}");
            let b = json!({"subId": sub, "platId": 3, "userId": 5_000_000 + i, "telA": "13470111234",
                           "telX": format!("171{:08}", i), "telB": format!("137{:08}", i),
                           "mapClassId": 1, "mapId": i, "boundAt": now - 60, "expiresAt": now});
            p.hset(keys.xb(), &sub, b.to_string()).ignore();
            p.zadd(keys.xb_expiry(), &sub, now).ignore();
        }
        let _: () = p.query_async(&mut redis).await?;
    }
    let started = Instant::now();
    let deadline = started + Duration::from_secs(600);
    let mut published_secs = None;
    let unbound_secs = loop {
        // Due: the storm's (the clients' own bindings expire in an hour).
        let due: u64 = redis.zcount(keys.xb_expiry(), "-inf", now + 60).await?;
        if due == 0 && published_secs.is_none() {
            published_secs = Some(started.elapsed().as_secs_f64());
        }
        let unbound: u64 = redis.hlen(keys.xb_unbound()).await?;
        if due == 0 && unbound >= n as u64 {
            break started.elapsed().as_secs_f64();
        }
        if Instant::now() > deadline {
            stop.store(true, std::sync::atomic::Ordering::Relaxed);
            workers.stop();
            bail!("the storm did not end within 10 minutes ({due} due, {unbound} unbound)");
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let mut latencies = Vec::new();
    for t in tasks {
        latencies.extend(t.await??);
    }
    // Quiet for a moment: a second copy of an MQ108 would arrive now.
    tokio::time::sleep(Duration::from_secs(2)).await;
    let published = workers.metric_sum("axn_platform_xb_expired_total").await as u64;
    let acked = workers
        .metric_sum("axn_messages_acked_total{queue=\"xb_unbind\"}")
        .await as u64;
    workers.stop();
    latencies.sort_by(|a, b| a.total_cmp(b));
    let pct = |q: f64| {
        latencies
            .get(((latencies.len() as f64 * q) as usize).min(latencies.len().saturating_sub(1)))
            .copied()
            .unwrap_or(f64::NAN)
    };
    Ok(Storm {
        bindings: n,
        published_secs: published_secs.unwrap_or(unbound_secs),
        unbound_secs,
        published,
        acked,
        get_call_p50: pct(0.50),
        get_call_p99: pct(0.99),
        get_calls: latencies.len(),
    })
}

/// For the binding API's modes: a number of platform 3 and a user with a
/// phone for each of `clients`, then the worker processes, ready.
async fn platform_workers(
    opts: &BenchOptions,
    settings: &Settings,
    clients: usize,
) -> anyhow::Result<Workers> {
    let store = axn_worker::store::Store::new(&settings.redis)?;
    let url = settings.redis.url.single_url()?;
    let mut redis =
        axn_worker::store::client(url, url.starts_with("rediss://"), &settings.redis.tls)?
            .get_multiplexed_async_connection()
            .await?;
    for c in 0..clients {
        store
            .import_number(&format!("{}", 17_900_000_000u64 + c as u64), 3, 1, 1, 0)
            .await?;
        let _: () = redis
            .hset(
                store.keys().user_phone(),
                900_000 + c,
                format!("138{:08}", c),
            )
            .await?;
    }
    let workers = Workers::start(opts, settings)?;
    let ready = Instant::now() + Duration::from_secs(30);
    while !workers.all_ready().await {
        if Instant::now() > ready {
            workers.stop();
            bail!("the workers did not become ready");
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    Ok(workers)
}
