//! `cargo xtask`: the project's developer and CI entry point.
//!
//! Every task first makes sure the host can build and load eBPF programs
//! ([`prerequisites::ensure`]), then builds what it needs and runs it. Output of the tools it
//! runs is passed through untouched; xtask's own lines go to stderr and start with `xtask:`.

mod demo;
mod foreground;
mod prerequisites;

use std::{
    env,
    ffi::{OsStr, OsString},
    os::unix::process::ExitStatusExt,
    path::{Path, PathBuf},
    process::{Command, ExitCode, ExitStatus},
};

use anyhow::{Context, Result, bail};
use clap::{Parser, Subcommand};

use crate::foreground::Foreground;

#[derive(Parser)]
#[command(
    bin_name = "cargo xtask",
    about = "Build, run, test and benchmark the firewall"
)]
struct Cli {
    #[command(subcommand)]
    task: Task,
}

#[derive(Subcommand)]
enum Task {
    /// Build the firewall (release) and run it.
    ///
    /// Without arguments, run the demo: bring up a testbed from examples/policy.yaml, start the
    /// daemon enforcing it on the testbed's interfaces, follow its flow records until Ctrl-C,
    /// then print the counters and remove the daemon, its pins and the testbed. With arguments
    /// after `--`, run `firewall ARGS` and pass its exit code on.
    Run {
        /// Arguments for the `firewall` binary.
        #[arg(last = true)]
        args: Vec<OsString>,
    },
    /// Build the workspace and run every test, one at a time (what CI runs).
    Test,
    /// Only set up the host prerequisites, which every other task does first.
    Setup,
    /// Build the firewall (release) and run `firewall bench ARGS`.
    Bench {
        /// Extra arguments for `firewall bench`.
        #[arg(last = true)]
        args: Vec<OsString>,
    },
}

fn main() -> Result<ExitCode> {
    let cli = Cli::parse();
    let workspace = Workspace::locate();
    prerequisites::ensure(&workspace)?;
    match cli.task {
        Task::Run { args } => {
            workspace.build_firewall()?;
            if args.is_empty() {
                demo::run(&workspace)
            } else {
                let status = Foreground::enter().run(workspace.firewall().args(args))?;
                Ok(exit_code(status))
            }
        }
        Task::Test => {
            run_checked(&mut workspace.cargo(["build"]))?;
            run_checked(&mut workspace.cargo([
                "test",
                "--no-fail-fast",
                "--",
                "--test-threads=1",
            ]))?;
            Ok(ExitCode::SUCCESS)
        }
        Task::Setup => Ok(ExitCode::SUCCESS),
        Task::Bench { args } => {
            workspace.build_firewall()?;
            let mut bench = workspace.firewall();
            bench.arg("bench").args(args);
            Ok(exit_code(Foreground::enter().run(&mut bench)?))
        }
    }
}

/// The workspace xtask belongs to, and the cargo that started xtask.
pub(crate) struct Workspace {
    root: PathBuf,
    cargo: OsString,
    /// The binary `cargo build --release --package firewall-user` produces.
    firewall: PathBuf,
}

impl Workspace {
    fn locate() -> Self {
        let manifest_dir = Path::new(env!("CARGO_MANIFEST_DIR"));
        let root = manifest_dir.parent().unwrap_or(manifest_dir).to_path_buf();
        // A target directory set in a cargo config file instead is not seen here; this
        // workspace sets none.
        let target_dir = env::var_os("CARGO_TARGET_DIR")
            .map_or_else(|| root.join("target"), |dir| root.join(dir));
        Self {
            firewall: target_dir.join("release").join("firewall"),
            // `cargo run` sets CARGO to its own path; fall back to PATH when run otherwise.
            cargo: env::var_os("CARGO").unwrap_or_else(|| "cargo".into()),
            root,
        }
    }

    /// `cargo ARGS`, run from the workspace root. Without a package flag, cargo builds the
    /// default members, which leave out firewall-ebpf (it only builds for the BPF target;
    /// firewall-user's build script builds it).
    pub(crate) fn cargo<I, S>(&self, args: I) -> Command
    where
        I: IntoIterator<Item = S>,
        S: AsRef<OsStr>,
    {
        let mut command = Command::new(&self.cargo);
        command.args(args).current_dir(&self.root);
        command
    }

    /// The release `firewall` binary, run from the workspace root so that paths such as
    /// `examples/policy.yaml` resolve.
    pub(crate) fn firewall(&self) -> Command {
        let mut command = Command::new(&self.firewall);
        command.current_dir(&self.root);
        command
    }

    fn build_firewall(&self) -> Result<()> {
        run_checked(&mut self.cargo(["build", "--release", "--package", "firewall-user"]))
    }
}

/// Runs `command` with inherited stdio.
///
/// # Errors
///
/// When the command cannot be started or does not exit successfully; the error quotes it.
pub(crate) fn run_checked(command: &mut Command) -> Result<()> {
    let status = command
        .status()
        .with_context(|| format!("could not start `{}`", describe(command)))?;
    if !status.success() {
        bail!("`{}` failed ({status})", describe(command));
    }
    Ok(())
}

/// A command as a user would type it, with the environment it sets explicitly in front.
pub(crate) fn describe(command: &Command) -> String {
    let envs = command
        .get_envs()
        .filter_map(|(key, value)| Some(format!("{}={}", key.display(), value?.display())));
    let program = command.get_program().display().to_string();
    let args = command.get_args().map(|arg| arg.display().to_string());
    envs.chain([program])
        .chain(args)
        .collect::<Vec<_>>()
        .join(" ")
}

/// The exit code a shell would report for `status`: the child's own code, or 128 plus the
/// number of the signal that killed it.
fn exit_code(status: ExitStatus) -> ExitCode {
    let code = match (status.code(), status.signal()) {
        (Some(code), _) => code,
        (None, Some(signal)) => 128 + signal,
        (None, None) => 1,
    };
    ExitCode::from(u8::try_from(code & 0xff).unwrap_or(1))
}

#[cfg(test)]
mod tests {
    use std::sync::Mutex;

    use super::*;

    /// Held by tests that start processes or change signal dispositions. Dispositions are
    /// process-wide, and a test that writes a script and runs it can fail with "text file
    /// busy" when another thread forks while the script is open for writing.
    pub(crate) static PROCESS_TESTS: Mutex<()> = Mutex::new(());

    /// A workspace rooted at a fresh directory whose `firewall` is the shell script
    /// `script`, made for the test `name`. Remove the directory when done.
    pub(crate) fn fake_workspace(name: &str, script: &str) -> Workspace {
        use std::os::unix::fs::PermissionsExt;

        let root = env::temp_dir().join(format!("xtask-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&root);
        std::fs::create_dir_all(&root).expect("creating the fake workspace");
        let firewall = root.join("firewall");
        std::fs::write(&firewall, format!("#!/bin/sh\n{script}"))
            .expect("writing the fake firewall");
        std::fs::set_permissions(&firewall, std::fs::Permissions::from_mode(0o755))
            .expect("making the fake firewall executable");
        Workspace {
            root,
            cargo: "cargo".into(),
            firewall,
        }
    }

    #[test]
    fn describe_puts_explicit_environment_before_the_program() {
        let mut command = Command::new("cargo");
        command
            .env("LLVM_PREFIX", "/usr/lib/llvm-22")
            .args(["install", "bpf-linker"]);
        assert_eq!(
            describe(&command),
            "LLVM_PREFIX=/usr/lib/llvm-22 cargo install bpf-linker"
        );
    }

    #[test]
    fn exit_code_passes_the_code_on_and_maps_signals_like_a_shell() {
        assert_eq!(exit_code(ExitStatus::from_raw(0)), ExitCode::SUCCESS);
        assert_eq!(exit_code(ExitStatus::from_raw(3 << 8)), ExitCode::from(3));
        assert_eq!(
            exit_code(ExitStatus::from_raw(libc::SIGINT)),
            ExitCode::from(130)
        );
    }

    #[test]
    fn cli_takes_firewall_arguments_only_after_a_double_dash() {
        let cli = Cli::try_parse_from(["xtask", "run", "--", "testbed", "down", "--name", "x"])
            .expect("run with firewall arguments parses");
        let Task::Run { args } = cli.task else {
            panic!("expected the run task");
        };
        assert_eq!(args, ["testbed", "down", "--name", "x"]);
        assert!(Cli::try_parse_from(["xtask", "bench", "--iterations", "3"]).is_err());
    }
}
