//! The bench against the real RabbitMQ and Redis: it measures, reports,
//! appends only when asked, and leaves nothing behind. It runs the
//! `axn-worker` binary beside it, which `cargo test --workspace` builds.

use std::{process::Stdio, time::Duration};

use redis::AsyncCommands;

const BIN: &str = env!("CARGO_BIN_EXE_axn-bench");
const CONFIG: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../config.toml");
const REDIS_URL: &str = "redis://127.0.0.1:6379/0";

fn unique_id() -> String {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .subsec_nanos();
    format!("t{}n{nanos}", std::process::id())
}

/// `axn-bench` end to end, small: a throughput run and a latency run against the
/// real services, each printing and appending its row, and nothing of the
/// bench's left on the broker or in Redis afterwards.
#[tokio::test]
async fn bench_measures_reports_and_cleans_up() {
    let namespace = format!("{}-bench", unique_id());
    let report = std::env::temp_dir().join(format!("{namespace}.md"));
    let run = |args: &[&str]| {
        let mut cmd = tokio::process::Command::new(BIN);
        cmd.args(["--config", CONFIG, "--namespace", &namespace, "--append"])
            .arg(&report)
            .args(args)
            .stdin(Stdio::null())
            .kill_on_drop(true);
        cmd.output()
    };
    let number = |row: &str, before: &str, after: &str| -> f64 {
        let start = row
            .find(before)
            .unwrap_or_else(|| panic!("{before:?} in {row}"))
            + before.len();
        let rest = &row[start..];
        rest[..rest.find(after).unwrap()].trim().parse().unwrap()
    };

    let out = tokio::time::timeout(Duration::from_secs(120), run(&["-n", "1000"]))
        .await
        .expect("bench finishes")
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let row = stdout
        .lines()
        .find(|l| l.starts_with("| throughput |"))
        .unwrap();
    assert!(row.contains("1000 messages (40/30/20/10 mix)"), "{row}");
    for (before, after) in [
        ("| worker ", " msg/s"),
        ("bare consumer ", " msg/s"),
        ("publishing per call record ", " msg/s"),
        ("bare consumer on one queue ", " msg/s"),
        ("on one queue storing to Redis ", " msg/s"),
        ("publishes only) ", " msg/s"),
        ("; storing to Redis ", ", ratio"),
        ("; contract floor ", ", ratio"),
        ("call-log confirm mean ", " ms"),
        ("| CPU ", " µs/msg"),
        ("peak RSS ", " MiB"),
    ] {
        assert!(number(row, before, after) > 0.0, "{before}: {row}");
    }
    assert!(number(row, "broker CPU ", " µs/msg") > 0.0, "{row}");
    assert!(number(row, "Redis CPU ", " µs/msg") >= 0.0, "{row}");
    let busy = number(row, "cores busy ", " (");
    assert!(busy > 0.0 && busy <= 64.0, "{row}");

    let out = tokio::time::timeout(
        Duration::from_secs(120),
        run(&["--latency", "--rate", "200", "--duration", "1"]),
    )
    .await
    .expect("bench finishes")
    .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let stdout = String::from_utf8_lossy(&out.stdout);
    let row = stdout
        .lines()
        .find(|l| l.starts_with("| latency |"))
        .unwrap();
    let (p50, p99, max) = (
        number(row, "| p50 ", " ms"),
        number(row, "| p99 ", " ms"),
        number(row, "| max ", " ms"),
    );
    assert!(0.0 < p50 && p50 <= p99 && p99 <= max, "{row}");

    let out = tokio::time::timeout(
        Duration::from_secs(120),
        run(&["--platform", "-n", "40", "--clients", "2"]),
    )
    .await
    .expect("bench finishes")
    .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let stdout = String::from_utf8_lossy(&out.stdout);
    let row = stdout
        .lines()
        .find(|l| l.starts_with("| platform API |"))
        .unwrap();
    assert!(row.contains("40 cycles of BindAxByplatform"), "{row}");
    assert!(number(row, "over HTTP | ", " cycles/s") > 0.0, "{row}");
    let (p50, p99) = (
        number(row, "GetCallNumber p50 ", " ms"),
        number(row, "p99 ", " ms"),
    );
    assert!(0.0 < p50 && p50 <= p99, "{row}");

    let appended = std::fs::read_to_string(&report).unwrap();
    let _ = std::fs::remove_file(&report);
    assert_eq!(appended.matches("### ").count(), 3, "{appended}");
    assert!(appended.contains("| throughput |") && appended.contains("| latency |"));

    let queues = tokio::process::Command::new("rabbitmqctl")
        .args(["list_queues", "-q", "--no-table-headers", "name"])
        .stdin(Stdio::null())
        .output()
        .await
        .unwrap();
    let queues = String::from_utf8_lossy(&queues.stdout);
    assert!(
        !queues.lines().any(|q| q.starts_with(&namespace)),
        "bench queues left: {queues}"
    );
    let mut redis = redis::Client::open(REDIS_URL)
        .unwrap()
        .get_multiplexed_async_connection()
        .await
        .unwrap();
    let keys: Vec<String> = redis.keys(format!("{namespace}:*")).await.unwrap();
    assert!(keys.is_empty(), "bench keys left: {keys:?}");
}

/// `bench/scripts/tls-ab.sh`, small: its own broker node and redis-server
/// start, both modes run (the TLS one over amqps:// and rediss:// with the
/// script's CA) and report, and nothing of it is left running or on disk.
#[tokio::test]
async fn the_tls_side_by_side_script_runs_both_modes_and_cleans_up() {
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/scripts/tls-ab.sh");
    let before: std::collections::HashSet<_> = std::fs::read_dir("/tmp")
        .unwrap()
        .filter_map(|e| e.ok()?.file_name().into_string().ok())
        .filter(|n| n.starts_with("axn-tls-ab."))
        .collect();
    let child = tokio::process::Command::new(script)
        .env("BENCH", BIN)
        .env("N", "1000")
        .env("ROUNDS", "1")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let pid = child.id().unwrap().to_string();
    let out = match tokio::time::timeout(Duration::from_secs(300), child.wait_with_output()).await {
        Ok(out) => out.unwrap(),
        Err(_) => {
            // SIGTERM, so that the script's trap stops what it started.
            let _ = std::process::Command::new("kill")
                .args(["-TERM", &pid])
                .status();
            tokio::time::sleep(Duration::from_secs(10)).await;
            panic!("the script did not finish within 300 s");
        }
    };
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stdout}{stderr}");
    // Every port it named is closed again: its broker node and redis-server
    // are gone.
    let ports = stderr
        .lines()
        .find_map(|l| l.strip_prefix("tls-ab: ports "))
        .unwrap_or_else(|| panic!("the script names its ports: {stderr}"));
    for port in ports
        .split([' ', ','])
        .filter_map(|w| w.split_once('=')?.1.parse::<u16>().ok())
    {
        assert!(
            std::net::TcpStream::connect(("127.0.0.1", port)).is_err(),
            "port {port} still open after the script: {ports}"
        );
    }
    for mode in ["plain", "tls"] {
        let part = stdout
            .split(&format!("=== round 1: {mode} ===\n"))
            .nth(1)
            .unwrap_or_else(|| panic!("{mode} ran: {stdout}"));
        let row = part
            .lines()
            .find(|l| l.starts_with("| throughput |"))
            .unwrap_or_else(|| panic!("{mode} reported: {stdout}"));
        assert!(row.contains("1000 messages"), "{row}");
        assert!(row.contains("call-log confirm mean"), "{row}");
    }
    let left: Vec<_> = std::fs::read_dir("/tmp")
        .unwrap()
        .filter_map(|e| e.ok()?.file_name().into_string().ok())
        .filter(|n| n.starts_with("axn-tls-ab.") && !before.contains(n))
        .collect();
    assert!(left.is_empty(), "left on disk: {left:?}");
    let ps = std::process::Command::new("ps")
        .args(["-eo", "args"])
        .output()
        .unwrap();
    let ps = String::from_utf8_lossy(&ps.stdout);
    assert!(
        !ps.lines().any(|l| l.contains("axntlsab")),
        "its broker node left running: {ps}"
    );
}

/// `--fill`, small: the worker measured on an empty Redis and on one filled
/// (a thousandth of production size), the memory figures reported, and the
/// fill removed afterwards.
#[tokio::test]
async fn the_production_size_mode_reports_both_states_and_cleans_up() {
    let namespace = format!("{}-fill", unique_id());
    let row = bench_row(
        &namespace,
        &["-n", "1000", "--fill", "0.001"],
        "| production size |",
    )
    .await;
    assert!(
        row.contains(
            "holding 1000 live XB bindings, 1000 unbound, 1000 call-log marks, 100 pool numbers"
        ),
        "{row}"
    );
    for what in ["drain ", "worker CPU ", "Redis CPU "] {
        assert!(
            row.contains(what) && row.contains("(ratio "),
            "{what}: {row}"
        );
    }
    let per = |label: &str| -> u64 {
        let end = row.find(label).unwrap_or_else(|| panic!("{label}: {row}"));
        row[..end]
            .rsplit(' ')
            .nth(1)
            .and_then(|n| n.parse().ok())
            .unwrap_or_else(|| panic!("a number before {label}: {row}"))
    };
    for label in ["B per live binding", "B per mark", "B per pool number"] {
        let bytes = per(label);
        assert!((40..2000).contains(&bytes), "{label}: {bytes}: {row}");
    }
    no_keys_left(&namespace).await;
}

/// `--expiry-storm`, small: more bindings due at once than one expiry pass
/// takes, each published and consumed exactly once (the bench fails
/// otherwise), GetCallNumber measured meanwhile, nothing left behind.
#[tokio::test]
async fn the_expiry_storm_mode_publishes_each_once_and_cleans_up() {
    let namespace = format!("{}-storm", unique_id());
    let row = bench_row(
        &namespace,
        &["--expiry-storm", "450", "--clients", "2"],
        "| expiry storm |",
    )
    .await;
    assert!(
        row.contains("MQ108 published 450 and consumed 450 times for 450 bindings"),
        "{row}"
    );
    assert!(row.contains("GetCallNumber during the storm p50 "), "{row}");
    no_keys_left(&namespace).await;
}

/// Runs axn-bench with `args` under `namespace`; its row that starts with
/// `row` (the run must succeed).
async fn bench_row(namespace: &str, args: &[&str], row: &str) -> String {
    let out = tokio::time::timeout(
        Duration::from_secs(300),
        tokio::process::Command::new(BIN)
            .args(["--config", CONFIG, "--namespace", namespace])
            .args(args)
            .stdin(Stdio::null())
            .kill_on_drop(true)
            .output(),
    )
    .await
    .expect("bench finishes")
    .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    stdout
        .lines()
        .find(|l| l.starts_with(row))
        .unwrap_or_else(|| panic!("{row}: {stdout}"))
        .to_owned()
}

/// No key of `namespace` is left in the local Redis.
async fn no_keys_left(namespace: &str) {
    let mut redis = redis::Client::open(REDIS_URL)
        .unwrap()
        .get_multiplexed_async_connection()
        .await
        .unwrap();
    let keys: Vec<String> = redis.keys(format!("{namespace}:*")).await.unwrap();
    assert!(keys.is_empty(), "keys left: {}", keys.len());
}
