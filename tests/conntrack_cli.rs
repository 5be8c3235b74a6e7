//! `firewall run` and `firewall conntrack` as operators use them: a flow made by real traffic
//! is listed and flushed from another process, a policy edit is taken on SIGHUP, and the pins
//! go away on SIGTERM. Needs root.
//!
//! Every wait is bounded; the daemon is killed and the testbed removed even when an
//! assertion fails.

mod support;

use std::{
    io::{BufRead, BufReader, Read, Write},
    net::{SocketAddr, TcpStream},
    path::Path,
    process::{Child, Command, Output, Stdio},
    sync::mpsc::{self, Receiver},
    thread::JoinHandle,
    time::{Duration, Instant},
};

use firewall::{
    conntrack::{CONFIG_PIN, CONNTRACK_PIN, STATS_PIN},
    policy,
    testbed::{self, Testbed},
};
use serde_json::Value;
use support::{scratch::Scratch, traffic::Listener};

/// Frontend may reach backend on TCP `{port}`, nothing else.
fn policy_text(port: u16) -> String {
    format!(
        "apps:\n  frontend: {{ips: [198.18.1.10]}}\n  backend:  {{ips: [198.18.2.10]}}\n\
         policies:\n  - {{source: frontend, destination: backend, protocol: tcp, ports: {port}}}\n"
    )
}

const BACKEND: &str = "198.18.2.10";
const STARTUP: Duration = Duration::from_secs(20);
const CONNECT_TIMEOUT: Duration = Duration::from_secs(3);
const DENIED_WAIT: Duration = Duration::from_millis(1500);

/// A running `firewall run`, its stderr lines arriving on a channel. Killed on drop.
struct Daemon {
    child: Child,
    stderr: Receiver<String>,
    seen: Vec<String>,
    stdout: Option<JoinHandle<String>>,
}

impl Daemon {
    fn start(policy: &Path, interfaces: &[String]) -> Daemon {
        let mut command = Command::new(env!("CARGO_BIN_EXE_firewall"));
        command.arg("run").arg("--policy").arg(policy);
        for interface in interfaces {
            command.args(["--iface", interface]);
        }
        let mut child = command
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("start firewall run");
        let stderr = child.stderr.take().expect("stderr pipe");
        let mut stdout = child.stdout.take().expect("stdout pipe");
        let (sender, receiver) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                if sender.send(line).is_err() {
                    break;
                }
            }
        });
        let stdout = std::thread::spawn(move || {
            let mut text = String::new();
            let _ = stdout.read_to_string(&mut text);
            text
        });
        Daemon {
            child,
            stderr: receiver,
            seen: Vec::new(),
            stdout: Some(stdout),
        }
    }

    /// Waits until a stderr line contains `needle`, at most `wait`.
    fn wait_for(&mut self, needle: &str, wait: Duration) {
        let deadline = Instant::now() + wait;
        if self.seen.iter().any(|line| line.contains(needle)) {
            return;
        }
        while let Some(left) = deadline.checked_duration_since(Instant::now()) {
            match self.stderr.recv_timeout(left) {
                Ok(line) => {
                    let found = line.contains(needle);
                    self.seen.push(line);
                    if found {
                        return;
                    }
                }
                Err(_) => break,
            }
        }
        panic!(
            "firewall run never said {needle:?} within {wait:?}; stderr so far:\n{}",
            self.seen.join("\n")
        );
    }

    fn signal(&self, signal: libc::c_int) {
        let pid = libc::pid_t::try_from(self.child.id()).expect("pid");
        // SAFETY: kill only sends a signal to our own child process.
        let rc = unsafe { libc::kill(pid, signal) };
        assert_eq!(rc, 0, "kill: {}", std::io::Error::last_os_error());
    }

    /// Sends SIGTERM and waits (bounded) for a clean exit; returns its stdout.
    fn stop(mut self) -> String {
        self.signal(libc::SIGTERM);
        let deadline = Instant::now() + Duration::from_secs(15);
        let status = loop {
            if let Some(status) = self.child.try_wait().expect("wait for firewall run") {
                break status;
            }
            assert!(Instant::now() < deadline, "firewall run ignored SIGTERM");
            std::thread::sleep(Duration::from_millis(50));
        };
        while let Ok(line) = self.stderr.recv_timeout(Duration::from_millis(200)) {
            self.seen.push(line);
        }
        let stdout = self.stdout.take().map(|t| t.join().unwrap_or_default());
        let stdout = stdout.unwrap_or_default();
        assert!(
            status.success(),
            "firewall run exited with {status}; stderr:\n{}\nstdout:\n{stdout}",
            self.seen.join("\n")
        );
        stdout
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

fn backend(port: u16) -> SocketAddr {
    SocketAddr::new(BACKEND.parse().expect("address"), port)
}

/// Connects, sends "ping", expects "pong"; returns the still open connection.
fn exchange(to: SocketAddr, connect_wait: Duration) -> std::io::Result<TcpStream> {
    let mut stream = TcpStream::connect_timeout(&to, connect_wait)?;
    stream.set_read_timeout(Some(CONNECT_TIMEOUT))?;
    stream.write_all(b"ping")?;
    let mut buf = [0u8; 4];
    stream.read_exact(&mut buf)?;
    if &buf == b"pong" {
        Ok(stream)
    } else {
        Err(std::io::Error::other("wrong answer"))
    }
}

/// Runs `firewall conntrack ARGS` and returns its output.
fn conntrack(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_firewall"))
        .arg("conntrack")
        .args(args)
        .output()
        .expect("run firewall conntrack")
}

fn listed_flows() -> Vec<Value> {
    let out = conntrack(&["list", "--json"]);
    assert!(
        out.status.success(),
        "conntrack list failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let json: Value = serde_json::from_slice(&out.stdout).expect("conntrack list prints JSON");
    json.as_array().expect("a JSON array of flows").clone()
}

fn pins_exist() -> bool {
    [CONNTRACK_PIN, CONFIG_PIN, STATS_PIN]
        .iter()
        .any(|pin| Path::new(pin).exists())
}

#[test]
fn flows_are_listed_flushed_and_a_reload_moves_the_allowed_port() {
    assert!(!pins_exist(), "another firewall run holds {CONNTRACK_PIN}");
    let idle = conntrack(&["list"]);
    assert!(
        !idle.status.success(),
        "conntrack list without firewall run succeeded"
    );
    let said = String::from_utf8_lossy(&idle.stderr);
    assert!(said.contains("no `firewall run` is active"), "{said}");

    let scratch = Scratch::new("ctcli");
    let policy_path = scratch.0.join("policy.yaml");
    std::fs::write(&policy_path, policy_text(8081)).expect("write policy");
    let parsed = policy::load_file(&policy_path).expect("valid policy");
    let testbed = Testbed::up("cttest", &testbed::hosts_of(&parsed)).expect("testbed");
    let frontend = testbed
        .host("frontend")
        .expect("frontend")
        .namespace
        .clone();
    let backend_ns = testbed.host("backend").expect("backend").namespace.clone();
    let mut daemon = Daemon::start(&policy_path, &testbed.interfaces());
    daemon.wait_for("enforcing", STARTUP);
    assert!(pins_exist(), "firewall run pinned nothing");
    let _servers = [8081, 8082].map(|port| Listener::start(&backend_ns, backend(port)));
    std::thread::sleep(Duration::from_millis(200));
    let client = |port: u16, wait: Duration| {
        testbed::in_namespace(&frontend, move || exchange(backend(port), wait))
            .expect("enter frontend namespace")
    };

    // A flow from real traffic is listed with its rule.
    let open = client(8081, CONNECT_TIMEOUT).expect("frontend reaches backend on 8081");
    let flows = listed_flows();
    let ours = flows.iter().find(|f| {
        f["source"] == "198.18.1.10"
            && f["destination"] == BACKEND
            && f["destination_port"] == 8081
            && f["protocol"] == "tcp"
    });
    let ours = ours.unwrap_or_else(|| panic!("the 8081 flow is not listed: {flows:#?}"));
    assert_eq!(ours["rule_id"], 1, "{ours:#}");
    assert_eq!(ours["expired"], false, "{ours:#}");
    drop(open);
    std::thread::sleep(Duration::from_millis(300));

    // A flush forgets every flow and says how many.
    let flushed = conntrack(&["flush"]);
    let said = String::from_utf8_lossy(&flushed.stdout);
    assert!(
        flushed.status.success(),
        "{}",
        String::from_utf8_lossy(&flushed.stderr)
    );
    let removed: u64 = said
        .split_whitespace()
        .nth(1)
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("flush said {said:?}"));
    assert!(removed >= 1, "flush said {said:?}");
    let flows = listed_flows();
    assert!(flows.is_empty(), "flows survived the flush: {flows:#?}");

    // SIGHUP takes the edited file: 8082 is allowed now, 8081 no longer.
    std::fs::write(&policy_path, policy_text(8082)).expect("rewrite policy");
    daemon.signal(libc::SIGHUP);
    daemon.wait_for("reloaded", Duration::from_secs(10));
    let denied = client(8081, DENIED_WAIT);
    assert!(denied.is_err(), "8081 still connects after the reload");
    client(8082, CONNECT_TIMEOUT).expect("frontend reaches backend on 8082 after the reload");

    // A broken file is refused and the policy in force stays.
    std::fs::write(&policy_path, "apps: [").expect("break policy");
    daemon.signal(libc::SIGHUP);
    daemon.wait_for(
        "still enforcing the previous policy",
        Duration::from_secs(10),
    );
    client(8082, CONNECT_TIMEOUT).expect("8082 still allowed after a refused reload");

    // SIGTERM unpins, and the counters include the flush done from the other process.
    let stdout = daemon.stop();
    assert!(!pins_exist(), "pins left behind after a clean exit");
    let flushed_line = stdout
        .lines()
        .find(|line| line.contains("flows flushed"))
        .unwrap_or_else(|| panic!("no conntrack counters printed:\n{stdout}"));
    let counted: u64 = flushed_line
        .split_whitespace()
        .last()
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("unreadable line {flushed_line:?}"));
    assert_eq!(counted, removed, "{stdout}");
    drop(testbed);
}
