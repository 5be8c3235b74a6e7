//! A daemon process for tests: its own store, socket and pin root, driven through the CLI.
//!
//! Pins go to a per-test root under /sys/fs/bpf, removed with `--uninstall` and again on
//! drop; the daemon is killed on drop. Every wait is bounded.

use std::{
    path::PathBuf,
    process::{Child, Command, Output, Stdio},
    time::Duration,
};

use firewall::{
    policy,
    testbed::{self, Testbed},
};

use super::traffic::eventually;

pub const BIN: &str = env!("CARGO_BIN_EXE_firewall");

/// A scratch directory, a pin root and a daemon, all removed on drop.
pub struct Setup {
    pub dir: PathBuf,
    pub pin_root: PathBuf,
    pub socket: PathBuf,
    pub daemon: Option<Child>,
}

impl Setup {
    /// A setup for the daemon of test `name`, whose `--policy` file holds `policy`.
    pub fn new(name: &str, policy: &str) -> Setup {
        let dir = std::env::temp_dir().join(format!("firewall-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).expect("scratch dir");
        std::fs::write(dir.join("policy.yaml"), policy).expect("policy file");
        Setup {
            pin_root: PathBuf::from(format!(
                "/sys/fs/bpf/firewall-{name}-{}",
                std::process::id()
            )),
            socket: dir.join("firewall.sock"),
            dir,
            daemon: None,
        }
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

    /// Starts the daemon (importing the policy file, enforcing on `patterns`) and waits for
    /// its socket.
    pub fn start(&mut self, patterns: &[&str]) {
        self.start_with(patterns, &[]);
    }

    /// As [`Setup::start`], with `extra` daemon flags.
    pub fn start_with(&mut self, patterns: &[&str], extra: &[&str]) {
        let policy = self.dir.join("policy.yaml");
        let mut command = self.command(extra);
        command.arg("--policy").arg(policy);
        for pattern in patterns {
            command.arg("--iface").arg(pattern);
        }
        let log = std::fs::File::create(self.dir.join("daemon.log")).expect("log file");
        let child = command
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("start the daemon");
        self.daemon = Some(child);
        self.wait_up();
    }

    pub fn wait_up(&self) {
        let up = eventually(Duration::from_secs(15), || {
            self.cli(&["status", "--json"]).status.success()
        });
        assert!(up, "the daemon did not come up:\n{}", self.log());
    }

    pub fn kill(&mut self) {
        if let Some(mut child) = self.daemon.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    pub fn cli(&self, args: &[&str]) -> Output {
        Command::new(BIN)
            .arg("--socket")
            .arg(&self.socket)
            .args(args)
            .output()
            .expect("run the CLI")
    }

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

    /// A CLI command that must succeed, its output parsed as JSON.
    pub fn json(&self, args: &[&str]) -> serde_json::Value {
        serde_json::from_str(&self.ok(args)).expect("JSON output")
    }

    /// The daemon's process id.
    pub fn pid(&self) -> u32 {
        self.daemon.as_ref().expect("running").id()
    }

    pub fn status(&self) -> serde_json::Value {
        serde_json::from_str(&self.ok(&["status", "--json"])).expect("status JSON")
    }

    pub fn attached(&self) -> Vec<String> {
        self.status()["interfaces"]
            .as_array()
            .map(|a| {
                a.iter()
                    .filter_map(|i| i["interface"].as_str().map(String::from))
                    .collect()
            })
            .unwrap_or_default()
    }

    pub fn uninstall(&self) {
        let out = Command::new(BIN)
            .args(["daemon", "--uninstall", "--pin-root"])
            .arg(&self.pin_root)
            .output()
            .expect("uninstall");
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.join("daemon.log")).unwrap_or_default()
    }
}

impl Drop for Setup {
    fn drop(&mut self) {
        self.kill();
        let _ = Command::new(BIN)
            .args(["daemon", "--uninstall", "--pin-root"])
            .arg(&self.pin_root)
            .output();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// A testbed with one namespace per app of `policy` (YAML), removed on drop.
pub fn testbed(name: &str, policy: &str) -> Testbed {
    let policy = policy::parse_str(policy, "test policy").expect("policy");
    Testbed::up(name, &testbed::hosts_of(&policy)).expect("testbed")
}
