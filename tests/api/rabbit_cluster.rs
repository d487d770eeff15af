//! A three-node RabbitMQ cluster of the test's own, on this one machine: own
//! node names, ports, data directories and Erlang cookie (an isolated HOME),
//! started detached, clustered with rabbitmqctl, stopped and removed when
//! dropped, also when the test fails. The system broker and its cookie are
//! never touched; epmd is shared and left alone.
//!
//! Pitfalls met while writing it (docs/scaling.md): `/usr/sbin/rabbitmq*`
//! switch to the rabbitmq user and its HOME (the system node's cookie), so
//! the scripts of `/usr/lib/rabbitmq/bin` are run directly;
//! `/etc/rabbitmq/rabbitmq-env.conf` names the system node and is replaced
//! by an empty file; `await_startup` fails before a node registers, so
//! `rabbitmqctl wait <pidfile>` is used; `stop` without the pid file returns
//! before the VM exits.

use std::{
    path::{Path, PathBuf},
    process::Command,
    time::Instant,
};

use crate::lifecycle::spare_port;

const BIN: &str = "/usr/lib/rabbitmq/bin";

pub struct RabbitCluster {
    base: PathBuf,
    pub nodes: Vec<String>,
    pub amqp_ports: Vec<u16>,
    dist_ports: Vec<u16>,
    ctl_ports: u16,
    /// Seconds to start and cluster the three nodes.
    pub startup_secs: f64,
}

impl RabbitCluster {
    /// Whether this machine can run one (RabbitMQ's own scripts present).
    pub fn available() -> bool {
        Path::new(BIN).join("rabbitmq-server").exists()
    }

    /// Starts three nodes and joins nodes 2 and 3 to node 1.
    pub fn start(tag: &str) -> RabbitCluster {
        let mut c = RabbitCluster::start_nodes(tag, 3, "");
        let started = Instant::now();
        let first = c.nodes[0].clone();
        for i in 1..3 {
            c.ctl(i, &["stop_app"]);
            c.ctl(i, &["reset"]);
            c.ctl(i, &["join_cluster", &first]);
            c.ctl(i, &["start_app"]);
        }
        assert_eq!(c.running_nodes(0), 3, "the three nodes form one cluster");
        c.startup_secs += started.elapsed().as_secs_f64();
        c
    }

    /// Starts `n` unclustered nodes, `extra` appended to each one's
    /// rabbitmq.conf (a TLS listener, say).
    pub fn start_nodes(tag: &str, n: usize, extra: &str) -> RabbitCluster {
        let started = Instant::now();
        let base = std::env::temp_dir().join(format!("axn-rmq-{tag}"));
        let _ = std::fs::remove_dir_all(&base);
        std::fs::create_dir_all(base.join("home")).unwrap();
        let cookie = base.join("home/.erlang.cookie");
        let secret = format!(
            "{:016x}{:016x}",
            rand::random::<u64>(),
            rand::random::<u64>()
        );
        std::fs::write(&cookie, secret).unwrap();
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&cookie, std::fs::Permissions::from_mode(0o400)).unwrap();
        std::fs::write(base.join("rabbitmq-env.conf"), "").unwrap();
        std::fs::write(base.join("enabled_plugins"), "[].").unwrap();
        let short: String = tag.chars().filter(|c| c.is_ascii_alphanumeric()).collect();
        let mut c = RabbitCluster {
            base,
            nodes: (1..=n)
                .map(|i| format!("axn{short}n{i}@localhost"))
                .collect(),
            amqp_ports: (0..n).map(|_| spare_port()).collect(),
            dist_ports: (0..n).map(|_| spare_port()).collect(),
            ctl_ports: spare_port(),
            startup_secs: 0.0,
        };
        for i in 0..n {
            let d = c.dir(i);
            std::fs::create_dir_all(d.join("mnesia")).unwrap();
            std::fs::write(
                d.join("rabbitmq.conf"),
                format!(
                    "listeners.tcp.default = 127.0.0.1:{}\nlog.console = false\nlog.file.level = warning\n{extra}",
                    c.amqp_ports[i]
                ),
            )
            .unwrap();
            c.run(i, "rabbitmq-server", &["-detached"]);
        }
        for i in 0..n {
            let pid = c.pidfile(i);
            c.ctl(i, &["wait", pid.to_str().unwrap(), "--timeout", "120"]);
        }
        c.startup_secs = started.elapsed().as_secs_f64();
        c
    }

    /// AMQP URLs of the nodes, in order.
    pub fn urls(&self) -> Vec<String> {
        self.amqp_ports
            .iter()
            .map(|p| format!("amqp://guest:guest@127.0.0.1:{p}/%2f"))
            .collect()
    }

    fn dir(&self, i: usize) -> PathBuf {
        self.base.join(format!("n{}", i + 1))
    }

    fn pidfile(&self, i: usize) -> PathBuf {
        self.dir(i).join("rabbit.pid")
    }

    fn command(&self, i: usize, script: &str) -> Command {
        let d = self.dir(i);
        let mut cmd = Command::new(Path::new(BIN).join(script));
        cmd.env("HOME", self.base.join("home"))
            .env(
                "RABBITMQ_CONF_ENV_FILE",
                self.base.join("rabbitmq-env.conf"),
            )
            .env("RABBITMQ_NODENAME", &self.nodes[i])
            .env("RABBITMQ_NODE_IP_ADDRESS", "127.0.0.1")
            .env("RABBITMQ_NODE_PORT", self.amqp_ports[i].to_string())
            .env("RABBITMQ_DIST_PORT", self.dist_ports[i].to_string())
            .env("RABBITMQ_CONFIG_FILE", d.join("rabbitmq"))
            .env("RABBITMQ_ADVANCED_CONFIG_FILE", d.join("advanced.config"))
            .env("RABBITMQ_MNESIA_BASE", d.join("mnesia"))
            .env("RABBITMQ_LOG_BASE", d.join("log"))
            .env("RABBITMQ_PID_FILE", self.pidfile(i))
            .env(
                "RABBITMQ_ENABLED_PLUGINS_FILE",
                self.base.join("enabled_plugins"),
            )
            .env("RABBITMQ_PLUGINS_EXPAND_DIR", d.join("plugins-expand"))
            .env(
                "RABBITMQ_SERVER_ADDITIONAL_ERL_ARGS",
                "-kernel inet_dist_use_interface {127,0,0,1}",
            )
            .env("RABBITMQ_CTL_DIST_PORT_MIN", self.ctl_ports.to_string())
            .env(
                "RABBITMQ_CTL_DIST_PORT_MAX",
                (self.ctl_ports + 9).to_string(),
            )
            .env("ERL_EPMD_ADDRESS", "127.0.0.1")
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::piped());
        cmd
    }

    fn run(&self, i: usize, script: &str, args: &[&str]) {
        let out = self.command(i, script).args(args).output().unwrap();
        assert!(
            out.status.success(),
            "{script} {args:?} on node {}: {}",
            i + 1,
            String::from_utf8_lossy(&out.stderr)
        );
    }

    /// rabbitmqctl against node `i`.
    pub fn ctl(&self, i: usize, args: &[&str]) {
        let mut all = vec!["-n", self.nodes[i].as_str(), "-q"];
        all.extend_from_slice(args);
        self.run(i, "rabbitmqctl", &all);
    }

    /// What rabbitmqctl against node `i` prints.
    pub fn ctl_output(&self, i: usize, args: &[&str]) -> String {
        let mut all = vec!["-n", self.nodes[i].as_str(), "-q"];
        all.extend_from_slice(args);
        let out = self
            .command(i, "rabbitmqctl")
            .args(&all)
            .stdout(std::process::Stdio::piped())
            .output()
            .unwrap();
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// Running nodes as node `i` sees them.
    pub fn running_nodes(&self, i: usize) -> usize {
        let out = self
            .command(i, "rabbitmqctl")
            .args([
                "-n",
                &self.nodes[i],
                "cluster_status",
                "--formatter",
                "json",
            ])
            .stdout(std::process::Stdio::piped())
            .output()
            .unwrap();
        let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap_or_default();
        v["running_nodes"].as_array().map_or(0, Vec::len)
    }

    /// Stops node `i` and waits until its VM has exited.
    pub fn stop_node(&self, i: usize) {
        let pid = self.pidfile(i);
        self.ctl(i, &["stop", pid.to_str().unwrap()]);
    }
}

impl Drop for RabbitCluster {
    fn drop(&mut self) {
        for i in 0..self.nodes.len() {
            let pidfile = self.pidfile(i);
            let Ok(pid) = std::fs::read_to_string(&pidfile) else {
                continue;
            };
            let pid = pid.trim().to_owned();
            let alive = Command::new("kill")
                .args(["-0", &pid])
                .status()
                .is_ok_and(|s| s.success());
            if alive {
                let stopped = self
                    .command(i, "rabbitmqctl")
                    .args([
                        "-n",
                        &self.nodes[i],
                        "-q",
                        "stop",
                        pidfile.to_str().unwrap(),
                    ])
                    .status()
                    .is_ok_and(|s| s.success());
                if !stopped {
                    let _ = Command::new("kill").args(["-9", &pid]).status();
                }
            }
        }
        let _ = std::fs::remove_dir_all(&self.base);
    }
}
