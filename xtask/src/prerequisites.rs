//! What the host needs before any task can build or load the firewall, in the order it is
//! set up: LLVM 22 and tools from apt, the nightly toolchain with rust-src, bpf-linker, a
//! mounted bpffs, and root.
//!
//! [`ensure`] surveys the host, turns the survey into a [`Plan`], prints one line naming
//! what it is about to install (nothing when all is present), and carries the plan out. The
//! survey is a handful of quick queries, so a host that has everything passes in well under a
//! second. Nothing here downloads a Rust toolchain: without nightly, xtask stops and says so.

use std::{
    env,
    ffi::{OsStr, OsString},
    fs,
    path::{Path, PathBuf},
    process::{Command, Stdio},
};

use anyhow::{Context, Result, bail};

use crate::{Workspace, describe, run_checked};

/// Debian packages: LLVM 22 and the libraries its link pulls in (to build bpf-linker),
/// bpftool (to inspect loaded programs) and iproute2 (namespaces and veths for the tests).
const APT_PACKAGES: &[&str] = &[
    "llvm-22-dev",
    "libpolly-22-dev",
    "libzstd-dev",
    "zlib1g-dev",
    "bpftool",
    "iproute2",
];

/// Where `llvm-22-dev` installs LLVM; bpf-linker's build must be pointed at it, or llvm-sys
/// finds an older LLVM on PATH and fails to link `-lLLVM`.
const LLVM_PREFIX: &str = "/usr/lib/llvm-22";

/// Where aya pins maps and programs.
const BPFFS: &str = "/sys/fs/bpf";

/// Makes sure the host has everything the tasks need, installing what it can.
///
/// Also puts cargo's bin directory on PATH (for this process and so for every child) when it
/// is missing, since that is where bpf-linker lives.
///
/// # Errors
///
/// When the nightly toolchain is missing, when not running as root, or when a step of the
/// set-up fails; the error names the prerequisite and the command that failed.
pub fn ensure(workspace: &Workspace) -> Result<()> {
    put_cargo_bin_on_path();
    let plan = Plan::for_host(&Survey::of_host()?)?;
    if let Some(summary) = plan.summary() {
        eprintln!("xtask: {summary}");
    }
    plan.carry_out(workspace)
}

/// What the host has, as far as the prerequisites go.
#[derive(Debug)]
struct Survey {
    missing_apt_packages: Vec<&'static str>,
    nightly: bool,
    rust_src: bool,
    bpf_linker: bool,
    bpffs_mounted: bool,
    root: bool,
}

impl Survey {
    fn of_host() -> Result<Self> {
        let nightly = has_nightly(&stdout_of(
            Command::new("rustup").args(["toolchain", "list"]),
        )?);
        let rust_src = nightly
            && has_rust_src(&stdout_of(Command::new("rustup").args([
                "component",
                "list",
                "--toolchain",
                "nightly",
                "--installed",
            ]))?);
        let mounts = fs::read_to_string("/proc/mounts").context("reading /proc/mounts")?;
        Ok(Self {
            missing_apt_packages: missing_apt_packages(APT_PACKAGES, &dpkg_status(APT_PACKAGES)?),
            nightly,
            rust_src,
            bpf_linker: bpf_linker_runs(),
            bpffs_mounted: bpffs_mounted(&mounts),
            // SAFETY: geteuid has no preconditions and cannot fail.
            root: unsafe { libc::geteuid() } == 0,
        })
    }
}

/// The set-up steps a host still needs.
#[derive(Debug, PartialEq)]
struct Plan {
    apt_packages: Vec<&'static str>,
    rust_src: bool,
    bpf_linker: bool,
    mount_bpffs: bool,
}

impl Plan {
    /// The steps that bring the surveyed host up to the prerequisites.
    ///
    /// # Errors
    ///
    /// When a prerequisite is missing that xtask does not install: nightly, or root.
    fn for_host(survey: &Survey) -> Result<Self> {
        if !survey.nightly {
            bail!(
                "the nightly Rust toolchain is missing (`rustup toolchain list` shows none); \
                 it builds the eBPF programs. Install it with \
                 `rustup toolchain install nightly --component rust-src`"
            );
        }
        if !survey.root {
            bail!(
                "xtask must run as root: it installs packages, mounts bpffs and loads eBPF \
                 programs (effective uid is not 0)"
            );
        }
        Ok(Self {
            apt_packages: survey.missing_apt_packages.clone(),
            rust_src: !survey.rust_src,
            bpf_linker: !survey.bpf_linker,
            mount_bpffs: !survey.bpffs_mounted,
        })
    }

    /// One line saying what [`Plan::carry_out`] is about to do, or `None` when it has
    /// nothing to do.
    fn summary(&self) -> Option<String> {
        let mut installs = Vec::new();
        if !self.apt_packages.is_empty() {
            installs.push(format!("apt packages {}", self.apt_packages.join(" ")));
        }
        if self.rust_src {
            installs.push("rust-src for nightly".to_owned());
        }
        if self.bpf_linker {
            installs.push("bpf-linker".to_owned());
        }
        let mut steps = Vec::new();
        if !installs.is_empty() {
            steps.push(format!("installing {}", installs.join("; ")));
        }
        if self.mount_bpffs {
            steps.push(format!("mounting bpffs at {BPFFS}"));
        }
        (!steps.is_empty()).then(|| steps.join("; "))
    }

    fn carry_out(&self, workspace: &Workspace) -> Result<()> {
        if !self.apt_packages.is_empty() {
            let packages = self.apt_packages.join(" ");
            run_checked(Command::new("apt-get").arg("update"))
                .with_context(|| format!("installing apt packages {packages}"))?;
            run_checked(
                Command::new("apt-get")
                    .env("DEBIAN_FRONTEND", "noninteractive")
                    .args(["install", "-y", "--no-install-recommends"])
                    .args(&self.apt_packages),
            )
            .with_context(|| format!("installing apt packages {packages}"))?;
        }
        if self.rust_src {
            run_checked(Command::new("rustup").args([
                "component",
                "add",
                "rust-src",
                "--toolchain",
                "nightly",
            ]))
            .context("installing rust-src for the nightly toolchain")?;
        }
        if self.bpf_linker {
            run_checked(
                workspace
                    .cargo([
                        "install",
                        "bpf-linker",
                        "--no-default-features",
                        "--features",
                        "llvm-22",
                        "--locked",
                    ])
                    .env("LLVM_SYS_221_PREFIX", LLVM_PREFIX)
                    .env("LLVM_PREFIX", LLVM_PREFIX),
            )
            .context("installing bpf-linker")?;
            if !bpf_linker_runs() {
                bail!(
                    "bpf-linker was installed but `bpf-linker --version` still fails; \
                     is cargo's install directory on PATH?"
                );
            }
        }
        if self.mount_bpffs {
            run_checked(Command::new("mount").args(["-t", "bpf", "bpf", BPFFS]))
                .with_context(|| format!("mounting bpffs at {BPFFS}"))?;
        }
        Ok(())
    }
}

/// Asks dpkg about `packages`, one `NAME<TAB>STATUS` line per package it knows.
fn dpkg_status(packages: &[&str]) -> Result<String> {
    let mut query = Command::new("dpkg-query");
    query
        .args(["-W", "-f=${Package}\t${Status}\n"])
        .args(packages)
        .stderr(Stdio::null());
    // dpkg-query exits with 1 when it knows none of some package: that is an answer here.
    let output = query.output().with_context(|| {
        format!(
            "could not start `{}`; xtask installs prerequisites with apt and needs a \
             Debian or Ubuntu host",
            describe(&query)
        )
    })?;
    Ok(String::from_utf8_lossy(&output.stdout).into_owned())
}

/// The packages of `wanted` that `dpkg_status` (see [`dpkg_status`]) does not show as
/// installed, in the order of `wanted`.
fn missing_apt_packages(wanted: &[&'static str], dpkg_status: &str) -> Vec<&'static str> {
    let installed: Vec<&str> = dpkg_status
        .lines()
        .filter_map(|line| line.split_once('\t'))
        .filter(|(_, status)| status.trim() == "install ok installed")
        .map(|(name, _)| name)
        .collect();
    wanted
        .iter()
        .copied()
        .filter(|package| !installed.contains(package))
        .collect()
}

/// Whether `rustup toolchain list` output shows a nightly toolchain.
fn has_nightly(toolchains: &str) -> bool {
    toolchains.lines().any(|line| line.starts_with("nightly"))
}

/// Whether `rustup component list --installed` output shows rust-src.
fn has_rust_src(components: &str) -> bool {
    components
        .lines()
        .any(|line| line.split_whitespace().next() == Some("rust-src"))
}

fn bpf_linker_runs() -> bool {
    Command::new("bpf-linker")
        .arg("--version")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|status| status.success())
}

/// Whether `/proc/mounts` content shows a bpf filesystem at [`BPFFS`].
fn bpffs_mounted(mounts: &str) -> bool {
    mounts.lines().any(|line| {
        let mut fields = line.split_whitespace().skip(1);
        fields.next() == Some(BPFFS) && fields.next() == Some("bpf")
    })
}

/// Runs `command` for its standard output.
fn stdout_of(command: &mut Command) -> Result<String> {
    let output = command
        .stderr(Stdio::inherit())
        .output()
        .with_context(|| format!("could not start `{}`", describe(command)))?;
    if !output.status.success() {
        bail!("`{}` failed ({})", describe(command), output.status);
    }
    Ok(String::from_utf8_lossy(&output.stdout).into_owned())
}

/// Prepends cargo's bin directory to this process's PATH when it is not already there.
fn put_cargo_bin_on_path() {
    let Some(cargo_bin) = cargo_bin_dir() else {
        return;
    };
    if let Some(path) = path_with_dir_first(env::var_os("PATH").as_deref(), &cargo_bin) {
        // SAFETY: xtask is single-threaded; no other thread can read the environment while
        // it changes.
        unsafe { env::set_var("PATH", path) };
    }
}

/// `$CARGO_HOME/bin`, or `$HOME/.cargo/bin` when `CARGO_HOME` is unset.
fn cargo_bin_dir() -> Option<PathBuf> {
    let cargo_home = env::var_os("CARGO_HOME")
        .map(PathBuf::from)
        .or_else(|| env::var_os("HOME").map(|home| Path::new(&home).join(".cargo")))?;
    Some(cargo_home.join("bin"))
}

/// `path` with `dir` in front, or `None` when `dir` is on it already (or cannot be put on
/// it).
fn path_with_dir_first(path: Option<&OsStr>, dir: &Path) -> Option<OsString> {
    let entries: Vec<PathBuf> = path.map(env::split_paths).into_iter().flatten().collect();
    if entries.iter().any(|entry| entry == dir) {
        return None;
    }
    env::join_paths(std::iter::once(dir.to_path_buf()).chain(entries)).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn complete_host() -> Survey {
        Survey {
            missing_apt_packages: Vec::new(),
            nightly: true,
            rust_src: true,
            bpf_linker: true,
            bpffs_mounted: true,
            root: true,
        }
    }

    #[test]
    fn missing_apt_packages_are_those_dpkg_does_not_show_installed() {
        let status = "bpftool\tinstall ok installed\n\
                      iproute2\tdeinstall ok config-files\n\
                      zlib1g-dev\tinstall ok installed\n";
        assert_eq!(
            missing_apt_packages(
                &["bpftool", "iproute2", "zlib1g-dev", "no-such-pkg"],
                status
            ),
            ["iproute2", "no-such-pkg"]
        );
    }

    #[test]
    fn dpkg_reports_an_unknown_package_as_missing() {
        let _serial = crate::tests::PROCESS_TESTS.lock();
        if Command::new("dpkg-query")
            .arg("--version")
            .output()
            .is_err()
        {
            return; // Not a Debian host: nothing to ask.
        }
        let wanted = ["xtask-no-such-package"];
        let status = dpkg_status(&wanted).expect("dpkg-query runs");
        assert_eq!(missing_apt_packages(&wanted, &status), wanted);
    }

    #[test]
    fn a_complete_host_needs_no_steps_and_prints_nothing() {
        let plan = Plan::for_host(&complete_host()).expect("nothing is unfixable");
        assert_eq!(
            plan,
            Plan {
                apt_packages: Vec::new(),
                rust_src: false,
                bpf_linker: false,
                mount_bpffs: false,
            }
        );
        assert_eq!(plan.summary(), None);
    }

    #[test]
    fn summary_names_everything_to_install_on_one_line() {
        let survey = Survey {
            missing_apt_packages: vec!["llvm-22-dev", "bpftool"],
            bpf_linker: false,
            ..complete_host()
        };
        let plan = Plan::for_host(&survey).expect("nothing is unfixable");
        assert_eq!(
            plan.summary().as_deref(),
            Some("installing apt packages llvm-22-dev bpftool; bpf-linker")
        );

        let survey = Survey {
            rust_src: false,
            bpffs_mounted: false,
            ..complete_host()
        };
        assert_eq!(
            Plan::for_host(&survey)
                .expect("nothing is unfixable")
                .summary()
                .as_deref(),
            Some("installing rust-src for nightly; mounting bpffs at /sys/fs/bpf")
        );
    }

    #[test]
    fn a_missing_nightly_or_root_stops_with_a_named_error() {
        let no_nightly = Survey {
            nightly: false,
            ..complete_host()
        };
        let error = Plan::for_host(&no_nightly).expect_err("nightly is not installed by xtask");
        assert!(error.to_string().contains("nightly"), "{error}");

        let not_root = Survey {
            root: false,
            ..complete_host()
        };
        let error = Plan::for_host(&not_root).expect_err("root cannot be installed");
        assert!(error.to_string().contains("root"), "{error}");
    }

    #[test]
    fn rustup_listings_are_read_line_by_line() {
        let toolchains = "stable-x86_64-unknown-linux-gnu (active, default)\n\
                          nightly-x86_64-unknown-linux-gnu\n";
        assert!(has_nightly(toolchains));
        assert!(!has_nightly("stable-x86_64-unknown-linux-gnu (default)\n"));
        assert!(has_rust_src("cargo-x86_64-unknown-linux-gnu\nrust-src\n"));
        assert!(!has_rust_src("rust-std-x86_64-unknown-linux-gnu\n"));
    }

    #[test]
    fn bpffs_must_be_a_bpf_mount_at_sys_fs_bpf() {
        let mounted = "sysfs /sys sysfs rw 0 0\nbpf /sys/fs/bpf bpf rw,relatime 0 0\n";
        assert!(bpffs_mounted(mounted));
        assert!(!bpffs_mounted("sysfs /sys sysfs rw 0 0\n"));
        assert!(!bpffs_mounted("tmpfs /sys/fs/bpf tmpfs rw 0 0\n"));
    }

    #[test]
    fn cargo_bin_is_prepended_to_path_only_when_absent() {
        let bin = Path::new("/root/.cargo/bin");
        assert_eq!(
            path_with_dir_first(Some(OsStr::new("/usr/bin:/root/.cargo/bin")), bin),
            None
        );
        assert_eq!(
            path_with_dir_first(Some(OsStr::new("/usr/bin:/bin")), bin),
            Some(OsString::from("/root/.cargo/bin:/usr/bin:/bin"))
        );
        assert_eq!(
            path_with_dir_first(None, bin),
            Some(OsString::from("/root/.cargo/bin"))
        );
    }
}
