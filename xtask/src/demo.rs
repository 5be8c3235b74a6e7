//! `cargo xtask run` without arguments: the firewall daemon on a throw-away testbed.
//!
//! `firewall testbed up` builds namespaces, a bridge and veth pairs from the example policy's
//! app addresses and prints, one per line on stdout, `iface NAME` for each root-side interface
//! and `hint COMMAND` for each command worth trying. xtask starts `firewall daemon` on those
//! interfaces with a store, socket and pin root of the demo's own, so that a daemon installed
//! on the host is left alone, in a process group of its own, so that Ctrl-C does not reach
//! it. Once the daemon answers, xtask shows the hints and follows the flow records (every
//! drop and every opened flow, with apps and rules) in the foreground until Ctrl-C. However
//! that ends, it prints the counters, stops the daemon, removes its pins (which outlive a
//! daemon by design) and tears the testbed down.

use std::{
    fs,
    os::unix::process::{CommandExt, ExitStatusExt},
    path::{Path, PathBuf},
    process::{Child, Command, ExitCode, ExitStatus, Stdio},
    thread,
    time::{Duration, Instant},
};

use anyhow::{Context, Result, bail};

use crate::{Workspace, describe, exit_code, foreground::Foreground, run_checked};

const POLICY: &str = "examples/policy.yaml";
const TESTBED: &str = "demo";
/// Where the demo daemon pins its maps and links: not the installed daemon's root.
const PIN_ROOT: &str = "/sys/fs/bpf/firewall-demo";
/// Where the demo daemon serves Prometheus metrics.
const METRICS_ADDR: &str = "127.0.0.1:9477";
/// How long the daemon may take to load its programs and answer.
const READY_TIMEOUT: Duration = Duration::from_secs(30);
/// How long the daemon may take to stop after SIGTERM before it is killed.
const STOP_TIMEOUT: Duration = Duration::from_secs(10);

/// Runs the demo with its store and socket in the system's temporary directory.
///
/// # Errors
///
/// When the testbed cannot be brought up or torn down, or the daemon cannot be started or
/// stopped. Everything the demo made is removed in every case.
pub fn run(workspace: &Workspace) -> Result<ExitCode> {
    run_in(workspace, &std::env::temp_dir().join("firewall-demo"))
}

/// Brings the testbed up, runs the daemon on it until the follower stops, and tears it all
/// down; the daemon's store and socket live in `scratch`, made afresh and removed after.
fn run_in(workspace: &Workspace, scratch: &Path) -> Result<ExitCode> {
    // A store left by an earlier demo that was killed would carry its changes over.
    let _ = fs::remove_dir_all(scratch);
    fs::create_dir_all(scratch).with_context(|| format!("creating {}", scratch.display()))?;
    let demo = Demo {
        workspace,
        socket: scratch.join("firewall.sock"),
        state: scratch.join("state"),
    };
    let testbed = match demo.testbed_up() {
        Ok(testbed) => testbed,
        Err(error) => {
            // `up` may have got half-way; take down whatever it made, on a best-effort basis.
            let _ = testbed_down(workspace);
            let _ = fs::remove_dir_all(scratch);
            return Err(error);
        }
    };
    for line in &testbed.other_output {
        println!("{line}");
    }
    let foreground = Foreground::enter();
    let served = demo.serve(&testbed, &foreground);
    // Still inside `foreground`: the teardown ignores a second Ctrl-C.
    let torn_down = testbed_down(workspace);
    let _ = fs::remove_dir_all(scratch);
    drop(foreground);
    let code = served?;
    torn_down?;
    Ok(code)
}

/// The demo daemon's files.
struct Demo<'a> {
    workspace: &'a Workspace,
    socket: PathBuf,
    state: PathBuf,
}

impl Demo<'_> {
    /// `firewall SUBCOMMAND --socket SOCKET`, for the commands that talk to the daemon.
    fn client(&self, subcommand: &str) -> Command {
        let mut command = self.workspace.firewall();
        command.arg(subcommand).arg("--socket").arg(&self.socket);
        command
    }

    fn testbed_up(&self) -> Result<Testbed> {
        let mut up = self.workspace.firewall();
        up.args(["testbed", "up", "--socket"])
            .arg(&self.socket)
            .args(["--policy", POLICY, "--name", TESTBED]);
        let output = up
            .stderr(Stdio::inherit())
            .output()
            .with_context(|| format!("could not start `{}`", describe(&up)))?;
        let stdout = String::from_utf8_lossy(&output.stdout);
        if !output.status.success() {
            print!("{stdout}");
            bail!("`{}` failed ({})", describe(&up), output.status);
        }
        let testbed = Testbed::parse(&stdout);
        if testbed.ifaces.is_empty() {
            print!("{stdout}");
            bail!(
                "`{}` printed no `iface NAME` line, so there is nothing to attach the firewall to",
                describe(&up)
            );
        }
        Ok(testbed)
    }

    /// Starts the daemon, follows its flow records until the follower ends, then prints the
    /// counters, stops the daemon and removes its pins. Returns the daemon's exit code, or
    /// the follower's when it ended otherwise than by Ctrl-C or SIGTERM.
    fn serve(&self, testbed: &Testbed, foreground: &Foreground) -> Result<ExitCode> {
        let mut daemon = self.client("daemon");
        daemon
            .arg("--state-dir")
            .arg(&self.state)
            .args(["--pin-root", PIN_ROOT, "--policy", POLICY])
            .args(["--metrics-addr", METRICS_ADDR]);
        for iface in &testbed.ifaces {
            daemon.args(["--iface", iface]);
        }
        // A process group of its own: the terminal's Ctrl-C goes to the follower and xtask.
        daemon.stdin(Stdio::null()).process_group(0);
        let mut child = daemon
            .spawn()
            .with_context(|| format!("could not start `{}`", describe(&daemon)))?;
        let followed = self.wait_for_api(&mut child).and_then(|()| {
            testbed.show_hints();
            foreground.run(self.client("flows").arg("--follow"))
        });
        if matches!(child.try_wait(), Ok(None)) {
            eprintln!("xtask: the datapath's counters:");
            if let Err(error) = run_checked(&mut self.client("stats")) {
                eprintln!("xtask: {error:#}");
            }
        }
        let stopped = stop(&mut child);
        let uninstalled = run_checked(self.workspace.firewall().args([
            "daemon",
            "--uninstall",
            "--pin-root",
            PIN_ROOT,
        ]));
        let followed = followed?;
        let stopped = stopped?;
        uninstalled?;
        let asked_to_stop = matches!(followed.signal(), Some(libc::SIGINT | libc::SIGTERM));
        Ok(if followed.success() || asked_to_stop {
            exit_code(stopped)
        } else {
            exit_code(followed)
        })
    }

    /// Waits until the daemon answers `firewall status`.
    fn wait_for_api(&self, daemon: &mut Child) -> Result<()> {
        let deadline = Instant::now() + READY_TIMEOUT;
        loop {
            if let Some(status) = daemon.try_wait().context("waiting for the daemon")? {
                bail!("the daemon exited ({status}) before it served its API");
            }
            let answered = self
                .client("status")
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .status()
                .is_ok_and(|status| status.success());
            if answered {
                return Ok(());
            }
            if Instant::now() > deadline {
                bail!(
                    "the daemon did not answer on {} within {READY_TIMEOUT:?}",
                    self.socket.display()
                );
            }
            thread::sleep(Duration::from_millis(200));
        }
    }
}

/// Sends SIGTERM to `daemon` (unless it has exited) and waits for it; kills it when it
/// takes longer than [`STOP_TIMEOUT`].
fn stop(daemon: &mut Child) -> Result<ExitStatus> {
    if let Some(status) = daemon.try_wait().context("waiting for the daemon")? {
        return Ok(status);
    }
    let pid = i32::try_from(daemon.id()).context("daemon process id out of range")?;
    // SAFETY: kill(2) on our own child, not reaped yet (try_wait found it running), so the
    // pid names no other process.
    unsafe { libc::kill(pid, libc::SIGTERM) };
    let deadline = Instant::now() + STOP_TIMEOUT;
    while Instant::now() < deadline {
        if let Some(status) = daemon.try_wait().context("waiting for the daemon")? {
            return Ok(status);
        }
        thread::sleep(Duration::from_millis(100));
    }
    daemon.kill().context("killing the daemon")?;
    let status = daemon.wait().context("waiting for the daemon")?;
    bail!("the daemon did not stop within {STOP_TIMEOUT:?} of SIGTERM and was killed ({status})")
}

/// What `firewall testbed up` reported.
#[derive(Debug, Default, PartialEq)]
struct Testbed {
    /// Root-side interfaces to attach the firewall to.
    ifaces: Vec<String>,
    /// Commands that send traffic through the firewall, printed as they are.
    hints: Vec<String>,
    /// Any other non-empty lines, passed on to the user.
    other_output: Vec<String>,
}

impl Testbed {
    fn parse(stdout: &str) -> Self {
        let mut testbed = Self::default();
        for line in stdout
            .lines()
            .map(str::trim_end)
            .filter(|line| !line.is_empty())
        {
            if let Some(iface) = line.strip_prefix("iface ") {
                testbed.ifaces.push(iface.trim().to_owned());
            } else if let Some(hint) = line.strip_prefix("hint ") {
                testbed.hints.push(hint.to_owned());
            } else {
                testbed.other_output.push(line.to_owned());
            }
        }
        testbed
    }

    /// Tells what the demo runs and what to try from another terminal.
    fn show_hints(&self) {
        eprintln!(
            "xtask: testbed {TESTBED:?} is up; the daemon enforces {POLICY} on {}",
            self.ifaces.join(", ")
        );
        eprintln!("xtask: to send traffic through it and ask why, run from another terminal:");
        for hint in &self.hints {
            eprintln!("    {hint}");
        }
        eprintln!("    curl -s http://{METRICS_ADDR}/metrics   # Prometheus metrics");
        eprintln!(
            "xtask: following flow records below; Ctrl-C stops the daemon and tears the \
             testbed down"
        );
    }
}

fn testbed_down(workspace: &Workspace) -> Result<()> {
    run_checked(
        workspace
            .firewall()
            .args(["testbed", "down", "--name", TESTBED]),
    )
    .with_context(|| format!("tearing down the {TESTBED:?} testbed"))
}

#[cfg(test)]
mod tests {
    use std::fs;

    use super::*;
    use crate::tests::{PROCESS_TESTS, fake_workspace};

    /// A fake `firewall` that logs each call it serves to `calls`: `testbed up` reports two
    /// interfaces and exits with `up_exit`; the daemon is ready (`status` succeeds) once it
    /// runs, and stops on SIGTERM, or exits at once with `daemon_exit` when that is not 0;
    /// the follower exits with `follow_exit`.
    fn fake_firewall(up_exit: u8, daemon_exit: u8, follow_exit: u8) -> String {
        format!(
            r#"log() {{ echo "$*" >> calls; }}
case "$1 $2" in
"testbed up") log "$@"; echo "iface fw-a"; echo "hint ping 198.18.0.2"; echo "iface fw-b"; exit {up_exit};;
"daemon --socket")
    log "$@"
    [ {daemon_exit} -ne 0 ] && exit {daemon_exit}
    trap 'rm -f ready; exit 0' TERM
    touch ready
    while :; do sleep 0.05; done;;
"status --socket") [ -f ready ] || exit 1; log "status";;
"flows --socket") log "$@"; exit {follow_exit};;
*) log "$@";;
esac
"#
        )
    }

    /// What the demo ends with, whatever went wrong before.
    const TEARDOWN: &str =
        "daemon --uninstall --pin-root /sys/fs/bpf/firewall-demo\ntestbed down --name demo\n";

    /// Runs the demo in a fake workspace `name` whose `firewall` is `script`, removes the
    /// workspace, and returns the demo's result, the calls logged (the scratch directory
    /// written as `SCRATCH`) and whether the scratch directory was left behind.
    fn run_fake(name: &str, script: &str) -> (Result<ExitCode>, String, bool) {
        let _serial = PROCESS_TESTS.lock();
        let workspace = fake_workspace(name, script);
        let scratch = workspace.root.join("scratch");
        let result = run_in(&workspace, &scratch);
        let calls = fs::read_to_string(workspace.root.join("calls"))
            .expect("calls logged")
            .replace(&scratch.display().to_string(), "SCRATCH");
        let scratch_left = scratch.exists();
        fs::remove_dir_all(&workspace.root).expect("removing the fake workspace");
        (result, calls, scratch_left)
    }

    #[test]
    fn demo_runs_the_daemon_follows_its_flows_then_stops_it_and_removes_everything() {
        let (result, calls, scratch_left) = run_fake("demo-ok", &fake_firewall(0, 0, 0));

        let exit = result.expect("the demo runs");
        assert_eq!(exit, ExitCode::SUCCESS, "the daemon stopped cleanly");
        assert_eq!(
            calls,
            format!(
                "testbed up --socket SCRATCH/firewall.sock --policy examples/policy.yaml --name demo\n\
                 daemon --socket SCRATCH/firewall.sock --state-dir SCRATCH/state \
                 --pin-root /sys/fs/bpf/firewall-demo --policy examples/policy.yaml \
                 --metrics-addr 127.0.0.1:9477 --iface fw-a --iface fw-b\n\
                 status\n\
                 flows --socket SCRATCH/firewall.sock --follow\n\
                 stats --socket SCRATCH/firewall.sock\n\
                 {TEARDOWN}"
            )
        );
        assert!(!scratch_left, "the demo's store and socket are removed");
    }

    #[test]
    fn a_follower_that_fails_passes_its_code_on_after_the_teardown() {
        let (result, calls, scratch_left) = run_fake("demo-follow-fails", &fake_firewall(0, 0, 3));

        let exit = result.expect("the demo runs");
        assert_eq!(
            exit,
            ExitCode::from(3),
            "the follower's exit code is passed on"
        );
        assert!(calls.ends_with(TEARDOWN), "{calls}");
        assert!(!scratch_left, "the demo's store and socket are removed");
    }

    #[test]
    fn a_daemon_that_exits_at_start_is_reported_and_everything_torn_down() {
        let (result, calls, scratch_left) = run_fake("demo-daemon-fails", &fake_firewall(0, 1, 0));

        let error = result.expect_err("the daemon failed");
        assert!(error.to_string().contains("the daemon exited"), "{error:#}");
        assert!(!calls.contains("flows"), "nothing to follow: {calls}");
        assert!(!calls.contains("stats"), "no daemon to ask: {calls}");
        assert!(calls.ends_with(TEARDOWN), "{calls}");
        assert!(!scratch_left, "the demo's store and socket are removed");
    }

    #[test]
    fn a_failed_testbed_up_is_torn_down_and_reported() {
        let (result, calls, scratch_left) = run_fake("demo-up-fails", &fake_firewall(1, 0, 0));

        let error = result.expect_err("testbed up failed");
        assert!(error.to_string().contains("testbed up"), "{error}");
        assert_eq!(
            calls,
            "testbed up --socket SCRATCH/firewall.sock --policy examples/policy.yaml --name demo\n\
             testbed down --name demo\n"
        );
        assert!(!scratch_left, "the demo's store and socket are removed");
    }

    #[test]
    fn testbed_output_splits_into_interfaces_hints_and_the_rest() {
        let stdout = "iface fw-web0\n\
                      hint ip netns exec demo-client curl http://10.0.0.2/\n\
                      \n\
                      bridge demo-br0 created\n\
                      iface fw-db0  \n";
        assert_eq!(
            Testbed::parse(stdout),
            Testbed {
                ifaces: vec!["fw-web0".into(), "fw-db0".into()],
                hints: vec!["ip netns exec demo-client curl http://10.0.0.2/".into()],
                other_output: vec!["bridge demo-br0 created".into()],
            }
        );
    }
}
