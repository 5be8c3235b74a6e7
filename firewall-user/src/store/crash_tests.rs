//! A writer killed with SIGKILL in the middle of a run of commits leaves a store that holds
//! exactly the model after one of its commits, at least the last one it reported as done.
//!
//! The writer is this test binary run again, selecting only the helper test below, with
//! [`CHILD_ENV`] naming the state directory. It reports each commit on stdout.

use std::io::{BufRead, BufReader, Write};
use std::os::unix::process::ExitStatusExt;
use std::process::{Command, Stdio};
use std::time::Duration;

use super::tests::TempDir;
use super::*;
use crate::model::{
    AppRecord, CfProtocol, Change, EgressRule, Limits, NetworkPolicy, NetworkRecord,
};

/// Environment variable that turns the helper test into the writer, naming its directory.
const CHILD_ENV: &str = "FIREWALL_STORE_CRASH_CHILD";
/// Full name of the helper test.
const CHILD_TEST: &str = "store::crash_tests::crash_child_commits_until_killed";

/// The `n`th change of the writer's run. Some are refused (unregistering an app that is not
/// registered); a refused change leaves the model as it was.
fn change(n: u64) -> Change {
    let app = |k: u64| format!("app-{}", k % 7);
    let policy = |k: u64| NetworkPolicy {
        source: app(k),
        destination: app(k + 1),
        protocol: CfProtocol::Tcp,
        start_port: u16::try_from(1 + k % 60_000).unwrap_or(1),
        end_port: u16::try_from(1 + k % 60_000).unwrap_or(1),
    };
    match n % 6 {
        0 => Change::RegisterApp(AppRecord {
            name: app(n),
            org: Some(format!("org-{}", n % 3)),
            space: None,
            ips: vec![
                format!("10.{}.{}.{}", n % 7, n / 250 % 250, n % 250 + 1)
                    .parse()
                    .unwrap(),
            ],
        }),
        1 => Change::AddPolicies(vec![policy(n)]),
        // The policy added 7 changes before.
        2 => Change::DeletePolicies(n.checked_sub(7).map(policy).into_iter().collect()),
        3 => {
            let json = format!(
                r#"[{{"protocol":"tcp","destination":"198.19.{}.0/24","ports":"443,8443"}}]"#,
                n % 256
            );
            let rules: Vec<EgressRule> = serde_json::from_str(&json).unwrap();
            Change::SetEgress { app: app(n), rules }
        }
        4 => Change::PutNetwork(NetworkRecord {
            name: format!("net-{}", n % 3),
            cidrs: vec![
                format!("172.{}.{}.0/24", 16 + n % 3, n % 256)
                    .parse()
                    .unwrap(),
            ],
        }),
        _ if n % 12 == 5 => Change::UnregisterApp(app(n / 2)),
        _ => Change::DeleteNetwork(format!("net-{}", n % 3)),
    }
}

/// The model after change `n`, from the model before it.
fn step(model: &Model, n: u64) -> Model {
    model
        .apply(&change(n), &Limits::default())
        .unwrap_or_else(|_| model.clone())
}

/// The writer: commits change after change until killed. Does nothing unless started by
/// [`a_killed_writer_leaves_exactly_a_prefix_of_its_commits`].
#[test]
#[ignore = "helper: runs only as the child of a_killed_writer_leaves_exactly_a_prefix_of_its_commits"]
fn crash_child_commits_until_killed() {
    let Some(dir) = std::env::var_os(CHILD_ENV) else {
        return;
    };
    let store = Store::open(Path::new(&dir)).unwrap();
    let mut model = store.load().unwrap();
    let mut stdout = std::io::stdout().lock();
    for n in 0..1_000_000 {
        let next = step(&model, n);
        store.commit(&model, &next).unwrap();
        model = next;
        writeln!(stdout, "committed {n}").unwrap();
        stdout.flush().unwrap();
    }
}

#[test]
fn a_killed_writer_leaves_exactly_a_prefix_of_its_commits() {
    // Each round kills at another point: right away, or a little into the next commits.
    for (kill_after, delay_us) in [(2, 0), (17, 400), (40, 1_300), (60, 2_900)] {
        let dir = TempDir::new(&format!("crash-{kill_after}"));
        let mut child = Command::new(std::env::current_exe().unwrap())
            .args([
                CHILD_TEST,
                "--exact",
                "--ignored",
                "--nocapture",
                "--test-threads=1",
            ])
            .env(CHILD_ENV, dir.path())
            .stdout(Stdio::piped())
            .spawn()
            .unwrap();
        let stdout = child.stdout.take().unwrap();
        let mut lines = BufReader::new(stdout).lines();
        let mut reported = None;
        for line in lines.by_ref() {
            let line = line.unwrap();
            if let Some(n) = line.strip_prefix("committed ") {
                let n: u64 = n.parse().unwrap();
                reported = Some(n);
                if n >= kill_after {
                    break;
                }
            }
        }
        // SIGKILL, while the child is most likely inside a commit. The pipe stays open until
        // the child is gone, so it never dies of a failed write instead.
        std::thread::sleep(Duration::from_micros(delay_us));
        child.kill().unwrap();
        let status = child.wait().unwrap();
        drop(lines);
        assert_eq!(status.signal(), Some(libc::SIGKILL), "{status}");
        let reported = reported.filter(|n| *n >= kill_after);
        let reported = reported.unwrap_or_else(|| panic!("the writer stopped early"));

        let store = Store::open(dir.path()).unwrap();
        let loaded = store.load().unwrap();
        let mut model = Model::new();
        let mut matched = None;
        for n in 0..=reported + 1_000 {
            model = step(&model, n);
            if n >= reported && model == loaded {
                matched = Some(n);
                break;
            }
        }
        let Some(last) = matched else {
            panic!(
                "revision {} matches no model at or after change {reported}",
                loaded.revision()
            );
        };
        // The model is whole and the store takes further commits.
        loaded.to_policy().compile();
        let next = step(&loaded, last + 1);
        store.commit(&loaded, &next).unwrap();
        assert_eq!(store.load().unwrap(), next);
    }
}
