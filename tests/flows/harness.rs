//! A daemon process for the flow record tests: its own store, socket, pin root and flow log,
//! driven through the CLI, with the datapath's counters read from its pins. Everything it
//! makes is removed on drop; every wait is bounded.

use std::{
    io::{BufRead, BufReader},
    net::{SocketAddr, UdpSocket},
    path::{Path, PathBuf},
    process::{Child, Command, Output, Stdio},
    sync::mpsc,
    thread::JoinHandle,
    time::{Duration, Instant},
};

use aya::maps::{Map, MapData, PerCpuArray, PerCpuHashMap};
use firewall::{
    datapath::pinning,
    policy,
    testbed::{self, Testbed},
};
use firewall_common::{Counter, Reason, maps};
use serde_json::Value;

use crate::support::traffic::eventually;

const BIN: &str = env!("CARGO_BIN_EXE_firewall");

pub const POLICY: &str = "\
apps:
  frontend: {org: bank, space: prod, ips: [198.18.1.10]}
  backend:  {org: bank, space: prod, ips: [198.18.2.10]}
";

pub fn testbed(name: &str) -> Testbed {
    let policy = policy::parse_str(POLICY, "flow test").expect("policy");
    Testbed::up(name, &testbed::hosts_of(&policy)).expect("testbed")
}

pub fn backend(port: u16) -> SocketAddr {
    SocketAddr::new("198.18.2.10".parse().expect("address"), port)
}

/// A daemon enforcing on the testbed's interfaces.
pub struct Daemon {
    pub dir: PathBuf,
    pub pin_root: PathBuf,
    pub socket: PathBuf,
    child: Option<Child>,
}

impl Daemon {
    /// Starts `firewall daemon` on `patterns` with `extra` flags, imports [`POLICY`], and
    /// waits until both testbed interfaces are attached.
    pub fn start(name: &str, patterns: &[&str], extra: &[&str]) -> Daemon {
        let dir = std::env::temp_dir().join(format!("firewall-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).expect("scratch dir");
        std::fs::write(dir.join("policy.yaml"), POLICY).expect("policy file");
        let mut daemon = Daemon {
            pin_root: PathBuf::from(format!(
                "/sys/fs/bpf/firewall-{name}-{}",
                std::process::id()
            )),
            socket: dir.join("firewall.sock"),
            dir,
            child: None,
        };
        let mut command = daemon.command(extra);
        command.arg("--policy").arg(daemon.dir.join("policy.yaml"));
        for pattern in patterns {
            command.arg("--iface").arg(pattern);
        }
        let log = std::fs::File::create(daemon.dir.join("daemon.log")).expect("log file");
        let child = command
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("start the daemon");
        daemon.child = Some(child);
        let up = eventually(Duration::from_secs(15), || {
            daemon.cli(&["status", "--json"]).status.success()
        });
        assert!(up, "the daemon did not come up:\n{}", daemon.log());
        let attached = eventually(Duration::from_secs(10), || {
            let status = daemon.json(&["status", "--json"]);
            status["interfaces"].as_array().map_or(0, Vec::len) == patterns.len() * 2
        });
        assert!(attached, "not attached:\n{}", daemon.log());
        daemon
    }

    /// The daemon's command line on this setup's store, socket and pin root.
    pub fn command(&self, extra: &[&str]) -> Command {
        let mut command = Command::new(BIN);
        command
            .arg("daemon")
            .arg("--state-dir")
            .arg(self.dir.join("state"))
            .arg("--socket")
            .arg(&self.socket)
            .arg("--pin-root")
            .arg(&self.pin_root)
            .args(extra);
        command
    }

    pub fn pid(&self) -> u32 {
        self.child.as_ref().expect("running").id()
    }

    pub fn cli(&self, args: &[&str]) -> Output {
        Command::new(BIN)
            .arg("--socket")
            .arg(&self.socket)
            .args(args)
            .output()
            .expect("run the CLI")
    }

    /// A CLI command that must succeed; its standard output.
    pub fn ok(&self, args: &[&str]) -> String {
        let out = self.cli(args);
        assert!(
            out.status.success(),
            "firewall {args:?} failed: {}\n{}",
            String::from_utf8_lossy(&out.stderr),
            self.log()
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    pub fn json(&self, args: &[&str]) -> Value {
        serde_json::from_str(&self.ok(args)).expect("JSON output")
    }

    /// The records `firewall flows ARGS --json` lists.
    pub fn flows(&self, args: &[&str]) -> (Vec<Value>, Value) {
        let mut all = vec!["flows", "--json"];
        all.extend_from_slice(args);
        let answer = self.json(&all);
        let flows = answer["flows"].as_array().expect("flows").clone();
        (flows, answer)
    }

    /// `firewall flows --follow ARGS` as a child whose output lines arrive on a channel.
    pub fn follow(&self, args: &[&str]) -> Follower {
        let mut child = Command::new(BIN)
            .arg("--socket")
            .arg(&self.socket)
            .args(["flows", "--follow"])
            .args(args)
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("start the follower");
        let stdout = child.stdout.take().expect("stdout");
        let (lines, received) = mpsc::channel();
        let reader = std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                if lines.send(line).is_err() {
                    break;
                }
            }
        });
        Follower {
            child,
            lines: received,
            reader: Some(reader),
        }
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.join("daemon.log")).unwrap_or_default()
    }

    /// The identity of an app, from `firewall apps --json`.
    pub fn identity(&self, app: &str) -> u32 {
        let apps = self.json(&["apps", "--json"]);
        let found = apps["apps"]
            .as_array()
            .expect("apps")
            .iter()
            .find(|a| a["name"] == app)
            .and_then(|a| a["identity"].as_u64());
        found.expect("an identity") as u32
    }

    fn pin(&self, name: &str) -> Map {
        let path = pinning::directory(&self.pin_root).join(name);
        Map::from_map_data(MapData::from_pin(&path).expect("open pin")).expect("map")
    }

    /// Flow records the datapath tried to send: every drop and every opened flow, by the
    /// per-reason counters.
    pub fn records_attempted(&self) -> u64 {
        let counters: PerCpuArray<MapData, Counter> =
            PerCpuArray::try_from(self.pin(maps::REASON_COUNTERS)).expect("reason counters");
        Reason::ALL
            .iter()
            .filter(|r| r.verdict() == firewall_common::Verdict::Drop || **r == Reason::Policy)
            .map(|r| {
                let values = counters.get(&u32::from(*r as u8), 0).expect("counter");
                values.iter().map(|c| c.packets).sum::<u64>()
            })
            .sum()
    }

    /// Packets dropped from `source` to `destination`, by the datapath's pair counters.
    pub fn pair_drops(&self, source: u32, destination: u32) -> u64 {
        let pairs: PerCpuHashMap<MapData, u64, Counter> =
            PerCpuHashMap::try_from(self.pin(maps::DROP_PAIRS)).expect("drop pairs");
        match pairs.get(&maps::drop_pair(source, destination), 0) {
            Ok(values) => values.iter().map(|c| c.packets).sum(),
            Err(_) => 0,
        }
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            // A stopped daemon dies of SIGKILL all the same.
            let _ = child.kill();
            let _ = child.wait();
        }
        let _ = Command::new(BIN)
            .args(["daemon", "--uninstall", "--pin-root"])
            .arg(&self.pin_root)
            .output();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// A `firewall flows --follow` child; killed on drop.
pub struct Follower {
    child: Child,
    pub lines: mpsc::Receiver<String>,
    reader: Option<JoinHandle<()>>,
}

impl Follower {
    /// The next line within `limit`.
    pub fn line(&self, limit: Duration) -> Option<String> {
        self.lines.recv_timeout(limit).ok()
    }
}

impl Drop for Follower {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        if let Some(reader) = self.reader.take() {
            let _ = reader.join();
        }
    }
}

/// Sends up to `count` UDP datagrams from `namespace` to `to`, `per_millisecond` at a time
/// each millisecond, for at most `limit`; returns how many the socket took.
pub fn udp_burst(
    namespace: &str,
    to: SocketAddr,
    count: u32,
    per_millisecond: u32,
    limit: Duration,
) -> JoinHandle<u32> {
    let thread = testbed::spawn_in_namespace(namespace, move || -> std::io::Result<u32> {
        let socket = UdpSocket::bind("0.0.0.0:0")?;
        let deadline = Instant::now() + limit;
        let mut sent = 0;
        while sent < count && Instant::now() < deadline {
            for _ in 0..per_millisecond.min(count - sent) {
                // A datagram the stack refuses (no buffer) is simply not counted.
                if socket.send_to(b"flood", to).is_ok() {
                    sent += 1;
                }
            }
            std::thread::sleep(Duration::from_millis(1));
        }
        Ok(sent)
    })
    .expect("enter namespace");
    std::thread::spawn(move || {
        thread
            .join()
            .expect("sender thread")
            .expect("sender namespace")
            .expect("sender socket")
    })
}

/// The records in a flow log file, each line parsed.
pub fn file_lines(path: &Path) -> Vec<Value> {
    std::fs::read_to_string(path)
        .unwrap_or_default()
        .lines()
        .map(|line| serde_json::from_str(line).expect("every flow log line is JSON"))
        .collect()
}
