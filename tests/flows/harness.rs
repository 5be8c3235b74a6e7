//! A daemon process for the flow record tests: its own store, socket, pin root and flow log,
//! driven through the CLI, with the datapath's counters read from its pins. Everything it
//! makes is removed on drop; every wait is bounded.

use std::{
    io::{BufRead, BufReader},
    net::{SocketAddr, UdpSocket},
    path::Path,
    process::{Child, Command, Stdio},
    sync::mpsc,
    thread::JoinHandle,
    time::{Duration, Instant},
};

use aya::maps::{Map, MapData, PerCpuArray, PerCpuHashMap};
use firewall::{
    datapath::pinning,
    testbed::{self, Testbed},
};
use firewall_common::{Counter, Reason, RuleCounter, maps};

/// Rule ids the tests' policies can reach: the policy file has none, and the tests add a
/// few through the API.
const RULE_IDS: u32 = 64;
use serde_json::Value;

use crate::support::{
    daemon::{BIN, Setup},
    traffic::eventually,
};

pub const POLICY: &str = "\
apps:
  frontend: {org: bank, space: prod, ips: [198.18.1.10]}
  backend:  {org: bank, space: prod, ips: [198.18.2.10]}
";

pub fn testbed(name: &str) -> Testbed {
    crate::support::daemon::testbed(name, POLICY)
}

pub fn backend(port: u16) -> SocketAddr {
    SocketAddr::new("198.18.2.10".parse().expect("address"), port)
}

/// A daemon enforcing on the testbed's interfaces: the shared [`Setup`] (store, socket,
/// pin root, CLI, clean-up on drop) with the flow tests' own readings.
pub struct Daemon {
    setup: Setup,
}

impl std::ops::Deref for Daemon {
    type Target = Setup;

    fn deref(&self) -> &Setup {
        &self.setup
    }
}

impl Daemon {
    /// Starts `firewall daemon` on `patterns` with `extra` flags, imports [`POLICY`], and
    /// waits until both testbed interfaces are attached.
    pub fn start(name: &str, patterns: &[&str], extra: &[&str]) -> Daemon {
        let mut setup = Setup::new(name, POLICY);
        setup.start_with(patterns, extra);
        let attached = eventually(Duration::from_secs(10), || {
            let status = setup.json(&["status", "--json"]);
            status["interfaces"].as_array().map_or(0, Vec::len) == patterns.len() * 2
        });
        assert!(attached, "not attached:\n{}", setup.log());
        Daemon { setup }
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

    /// Flow records the datapath tried to send: every drop, by the per-reason counters, and
    /// every opened flow, by the per-rule counters of the test's rules.
    pub fn records_attempted(&self) -> u64 {
        let counters: PerCpuArray<MapData, Counter> =
            PerCpuArray::try_from(self.pin(maps::REASON_COUNTERS)).expect("reason counters");
        let drops: u64 = Reason::ALL
            .iter()
            .filter(|r| r.verdict() == firewall_common::Verdict::Drop)
            .map(|r| {
                let values = counters.get(&u32::from(*r as u8), 0).expect("counter");
                values.iter().map(|c| c.packets).sum::<u64>()
            })
            .sum();
        let rules: PerCpuArray<MapData, RuleCounter> =
            PerCpuArray::try_from(self.pin(maps::RULE_COUNTERS)).expect("rule counters");
        let opened: u64 = (1..=RULE_IDS)
            .map(|id| {
                let values = rules.get(&id, 0).expect("rule counter");
                values.iter().map(|c| c.flows).sum::<u64>()
            })
            .sum();
        drops + opened
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
