//! Running a child in the foreground the way a shell does, so that xtask outlives it.
//!
//! Ctrl-C makes the terminal send SIGINT to the whole foreground process group, which holds
//! both xtask and its child: the child stops, and xtask, ignoring SIGINT, lives on to tear down
//! what it set up and to pass the child's exit status on. A SIGTERM sent to xtask alone is
//! forwarded to the child, which then stops the same way.

use std::{
    os::unix::process::CommandExt,
    process::{Command, ExitStatus},
    sync::atomic::{AtomicBool, AtomicI32, Ordering},
};

use anyhow::{Context, Result};

use crate::describe;

/// Process id of the child in the foreground, or 0 when there is none.
static FOREGROUND_CHILD: AtomicI32 = AtomicI32::new(0);

/// Set when a SIGTERM arrived while no child was in the foreground.
static TERMINATION_PENDING: AtomicBool = AtomicBool::new(false);

/// While alive, xtask ignores SIGINT and forwards SIGTERM to the child started by
/// [`Foreground::run`]; dropping it restores the previous dispositions.
///
/// Children started with a plain [`Command`] meanwhile inherit the ignored SIGINT: that is
/// what a clean-up step wants, so a second Ctrl-C cannot cut it short.
pub struct Foreground {
    previous_sigint: libc::sighandler_t,
    previous_sigterm: libc::sighandler_t,
}

impl Foreground {
    pub fn enter() -> Self {
        let forward: extern "C" fn(libc::c_int) = forward_sigterm;
        // SAFETY: SIG_IGN is always a valid disposition, and `forward_sigterm` only does
        // async-signal-safe work (atomic loads and stores, kill(2)).
        unsafe {
            Self {
                previous_sigint: libc::signal(libc::SIGINT, libc::SIG_IGN),
                previous_sigterm: libc::signal(libc::SIGTERM, forward as libc::sighandler_t),
            }
        }
    }

    /// Runs `command` with inherited stdio and default signal handling, and waits for it.
    /// (A method so that only code holding a live `Foreground` can call it.)
    ///
    /// # Errors
    ///
    /// When the command cannot be started or waited for; its exit status, whatever it is,
    /// is returned.
    pub fn run(&self, command: &mut Command) -> Result<ExitStatus> {
        // SAFETY: the closure runs in the child between fork and exec, where only
        // async-signal-safe calls are allowed; signal(2) is one. Ignored signals stay ignored
        // across exec, so without this the child could not be stopped with Ctrl-C.
        unsafe {
            command.pre_exec(|| {
                libc::signal(libc::SIGINT, libc::SIG_DFL);
                Ok(())
            });
        }
        let mut child = command
            .spawn()
            .with_context(|| format!("could not start `{}`", describe(command)))?;
        let pid = i32::try_from(child.id()).context("child process id out of range")?;
        FOREGROUND_CHILD.store(pid, Ordering::SeqCst);
        if TERMINATION_PENDING.swap(false, Ordering::SeqCst) {
            // SAFETY: kill(2) on our own, not yet reaped child: the pid cannot be reused.
            unsafe { libc::kill(pid, libc::SIGTERM) };
        }
        // Wait for the exit without reaping, so the pid stays ours until the handler can no
        // longer see it; only then reap.
        let exited = wait_without_reaping(child.id());
        FOREGROUND_CHILD.store(0, Ordering::SeqCst);
        exited
            .and_then(|()| child.wait())
            .with_context(|| format!("waiting for `{}`", describe(command)))
    }
}

/// Blocks until child `pid` has exited, leaving it to be reaped by the caller.
fn wait_without_reaping(pid: libc::id_t) -> std::io::Result<()> {
    loop {
        // SAFETY: an all-zero siginfo_t is a valid value for waitid(2) to fill in.
        let mut info: libc::siginfo_t = unsafe { std::mem::zeroed() };
        // SAFETY: `info` is a valid, writable siginfo_t, and `pid` is our own child.
        let result = unsafe {
            libc::waitid(
                libc::P_PID,
                pid,
                &raw mut info,
                libc::WEXITED | libc::WNOWAIT,
            )
        };
        if result == 0 {
            return Ok(());
        }
        let error = std::io::Error::last_os_error();
        if error.kind() != std::io::ErrorKind::Interrupted {
            return Err(error);
        }
    }
}

impl Drop for Foreground {
    fn drop(&mut self) {
        // SAFETY: both values came from signal(2), so they are valid dispositions.
        unsafe {
            libc::signal(libc::SIGINT, self.previous_sigint);
            libc::signal(libc::SIGTERM, self.previous_sigterm);
        }
    }
}

extern "C" fn forward_sigterm(_signal: libc::c_int) {
    let pid = FOREGROUND_CHILD.load(Ordering::SeqCst);
    if pid > 0 {
        // SAFETY: kill(2) is async-signal-safe; `pid` is a child that `run` has not reaped
        // yet (it clears the pid before reaping), so it names no other process.
        unsafe { libc::kill(pid, libc::SIGTERM) };
    } else {
        TERMINATION_PENDING.store(true, Ordering::SeqCst);
    }
}

#[cfg(test)]
mod tests {
    use std::os::unix::process::ExitStatusExt;

    use super::*;

    #[test]
    fn child_gets_ctrl_c_back_and_a_sigterm_to_xtask_is_forwarded_to_it() {
        let _serial = crate::tests::PROCESS_TESTS.lock();
        let foreground = Foreground::enter();

        // Were SIGINT still ignored in the child, the shell would sleep and exit with 0.
        let interrupted = foreground
            .run(Command::new("sh").args(["-c", "kill -INT $$; sleep 5"]))
            .expect("sh runs");
        assert_eq!(interrupted.signal(), Some(libc::SIGINT), "{interrupted}");

        // The shell signals its parent, this test process; the handler passes it on.
        let terminated = foreground
            .run(Command::new("sh").args(["-c", "kill -TERM $PPID; sleep 5"]))
            .expect("sh runs");
        assert_eq!(terminated.signal(), Some(libc::SIGTERM), "{terminated}");
    }
}
