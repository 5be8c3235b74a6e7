//! `cargo xtask run` without arguments: the firewall on a throw-away testbed.
//!
//! `firewall testbed up` builds namespaces, a bridge and veth pairs from the example policy's
//! app addresses and prints, one per line on stdout, `iface NAME` for each root-side interface
//! and `hint COMMAND` for each command worth trying against the running firewall. xtask shows
//! the hints, runs `firewall run` on those interfaces in the foreground until Ctrl-C, and then
//! runs `firewall testbed down`, whatever way the firewall ended.

use std::process::{ExitCode, Stdio};

use anyhow::{Context, Result, bail};

use crate::{Workspace, describe, exit_code, foreground::Foreground, run_checked};

const POLICY: &str = "examples/policy.yaml";
const TESTBED: &str = "demo";

/// Brings the testbed up, runs the firewall on it until it stops, and tears the testbed down.
///
/// # Errors
///
/// When the testbed cannot be brought up or torn down, or the firewall cannot be started.
/// The testbed is torn down in every case.
pub fn run(workspace: &Workspace) -> Result<ExitCode> {
    let testbed = match testbed_up(workspace) {
        Ok(testbed) => testbed,
        Err(error) => {
            // `up` may have got half-way; take down whatever it made, on a best-effort basis.
            let _ = testbed_down(workspace);
            return Err(error);
        }
    };
    for line in &testbed.other_output {
        println!("{line}");
    }
    eprintln!(
        "xtask: testbed {TESTBED:?} is up; the firewall attaches to {}",
        testbed.ifaces.join(", ")
    );
    if !testbed.hints.is_empty() {
        eprintln!("xtask: to send traffic through it, run from another terminal:");
        for hint in &testbed.hints {
            eprintln!("    {hint}");
        }
    }
    eprintln!("xtask: starting the firewall; Ctrl-C stops it and tears the testbed down");

    let foreground = Foreground::enter();
    let mut firewall = workspace.firewall();
    firewall.args(["run", "--policy", POLICY]);
    for iface in &testbed.ifaces {
        firewall.args(["--iface", iface]);
    }
    let firewall_status = foreground.run(&mut firewall);
    // Still inside `foreground`: the teardown ignores a second Ctrl-C.
    let torn_down = testbed_down(workspace);
    drop(foreground);

    let status = firewall_status?;
    torn_down?;
    Ok(exit_code(status))
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
}

fn testbed_up(workspace: &Workspace) -> Result<Testbed> {
    let mut up = workspace.firewall();
    up.args(["testbed", "up", "--policy", POLICY, "--name", TESTBED]);
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

    /// A fake `firewall` that logs its arguments to `calls`, brings up a testbed on two
    /// interfaces, and exits from `run` with `run_exit`.
    fn fake_firewall(up_exit: u8, run_exit: u8) -> String {
        format!(
            r#"echo "$*" >> calls
case "$1 $2" in
"testbed up") echo "iface fw-a"; echo "hint ping 10.0.0.2"; echo "iface fw-b"; exit {up_exit};;
"run --policy") exit {run_exit};;
esac
"#
        )
    }

    #[test]
    fn demo_runs_the_firewall_on_the_testbed_interfaces_then_tears_it_down() {
        let _serial = PROCESS_TESTS.lock();
        let workspace = fake_workspace("demo-ok", &fake_firewall(0, 3));

        let exit = run(&workspace).expect("the demo runs");
        let calls = fs::read_to_string(workspace.root.join("calls")).expect("calls logged");
        fs::remove_dir_all(&workspace.root).expect("removing the fake workspace");

        assert_eq!(
            exit,
            ExitCode::from(3),
            "the firewall's exit code is passed on"
        );
        assert_eq!(
            calls,
            "testbed up --policy examples/policy.yaml --name demo\n\
             run --policy examples/policy.yaml --iface fw-a --iface fw-b\n\
             testbed down --name demo\n"
        );
    }

    #[test]
    fn a_failed_testbed_up_is_torn_down_and_reported() {
        let _serial = PROCESS_TESTS.lock();
        let workspace = fake_workspace("demo-up-fails", &fake_firewall(1, 0));

        let error = run(&workspace).expect_err("testbed up failed");
        let calls = fs::read_to_string(workspace.root.join("calls")).expect("calls logged");
        fs::remove_dir_all(&workspace.root).expect("removing the fake workspace");

        assert!(error.to_string().contains("testbed up"), "{error}");
        assert_eq!(
            calls,
            "testbed up --policy examples/policy.yaml --name demo\n\
             testbed down --name demo\n"
        );
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
