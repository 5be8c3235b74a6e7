//! The host daemon for real: a child process with its own store, socket and pin root,
//! enforcing on a testbed, driven through the CLI. Needs root.
//!
//! Pins go to a per-test root under /sys/fs/bpf, removed with `--uninstall` and again on
//! drop; the testbed removes itself on drop; the daemon is killed on drop. Every wait is
//! bounded.

mod support;

use std::{
    net::SocketAddr,
    process::{Command, Stdio},
    time::Duration,
};

use firewall::testbed::Testbed;
use support::{
    daemon::{BIN, Setup},
    traffic::{BusyConnection, Listener, eventually, exchange},
};

const POLICY: &str = "\
apps:
  frontend: {org: bank, space: prod, ips: [198.18.1.10]}
  backend:  {org: bank, space: prod, ips: [198.18.2.10]}
";

fn testbed(name: &str) -> Testbed {
    support::daemon::testbed(name, POLICY)
}

fn backend(port: u16) -> SocketAddr {
    SocketAddr::new("198.18.2.10".parse().expect("address"), port)
}

#[test]
fn policies_enforce_live_and_survive_kill_and_restart() {
    let bed = testbed("dmn");
    let mut setup = Setup::new("dmn", POLICY);
    setup.start(&["fwdmn[0-9]"]);
    assert!(
        eventually(Duration::from_secs(5), || setup.attached().len() == 2),
        "{:?}",
        setup.status()
    );
    let frontend = bed.host("frontend").expect("frontend").namespace.clone();
    let backend_ns = bed.host("backend").expect("backend").namespace.clone();
    let _l1 = Listener::start(&backend_ns, backend(8081));
    let _l2 = Listener::start(&backend_ns, backend(8082));

    assert!(
        !exchange(&frontend, backend(8081)),
        "no rule yet: denied by default"
    );
    setup.ok(&[
        "add-network-policy",
        "frontend",
        "--destination-app",
        "backend",
        "--protocol",
        "tcp",
        "--port",
        "8081",
    ]);
    assert!(
        exchange(&frontend, backend(8081)),
        "the new policy allows 8081"
    );
    assert!(!exchange(&frontend, backend(8082)), "8082 stays denied");

    // SIGKILL under traffic: a busy connection keeps flowing through the kill, and the
    // pinned links keep enforcing the last policy.
    setup.ok(&[
        "add-network-policy",
        "frontend",
        "--destination-app",
        "backend",
        "--port",
        "8084",
    ]);
    let busy = BusyConnection::start(
        &frontend,
        &backend_ns,
        backend(8084),
        Duration::from_secs(3),
    );
    std::thread::sleep(Duration::from_secs(1));
    let killed_at = std::time::Instant::now();
    setup.kill();
    let delivery = busy.finish();
    assert_eq!(
        delivery.arrivals.len() as u64,
        delivery.sent,
        "bytes lost across the kill"
    );
    let after = delivery
        .arrivals
        .iter()
        .filter(|t| **t > killed_at + Duration::from_millis(500))
        .count();
    assert!(
        after >= 20,
        "the connection stopped at the kill: {after} bytes after it"
    );
    assert!(
        exchange(&frontend, backend(8081)),
        "allowed traffic flows with the daemon dead"
    );
    assert!(
        !exchange(&frontend, backend(8082)),
        "denied traffic stays denied with the daemon dead"
    );

    // A restart takes the links over and finds the policy in the store.
    setup.start(&["fwdmn[0-9]"]);
    let listed = setup.ok(&["network-policies", "--json"]);
    assert!(
        listed.contains("\"frontend\"") && listed.contains("8081"),
        "{listed}"
    );
    assert!(exchange(&frontend, backend(8081)));
    setup.ok(&[
        "remove-network-policy",
        "frontend",
        "--destination-app",
        "backend",
        "--protocol",
        "tcp",
        "--port",
        "8081",
    ]);
    assert!(
        !exchange(&frontend, backend(8081)),
        "removing the policy denies 8081 again"
    );

    // Uninstalling removes the pins: nothing filters any more.
    setup.kill();
    setup.uninstall();
    assert!(!setup.pin_root.exists(), "pins left behind");
    assert!(
        exchange(&frontend, backend(8082)),
        "without the firewall everything passes"
    );
    drop(bed);
}

#[test]
fn a_restart_reconciles_the_pinned_maps_with_the_store() {
    use aya::maps::{HashMap, Map, MapData};
    use firewall_common::{PolicyKey, PolicyValue, maps};

    let bed = testbed("dmr");
    let mut setup = Setup::new("dmr", POLICY);
    setup.start(&["fwdmr[0-9]"]);
    assert!(eventually(Duration::from_secs(5), || setup
        .attached()
        .len()
        == 2));
    let frontend = bed.host("frontend").expect("frontend").namespace.clone();
    let backend_ns = bed.host("backend").expect("backend").namespace.clone();
    let _l1 = Listener::start(&backend_ns, backend(8081));
    let _l2 = Listener::start(&backend_ns, backend(8082));
    setup.ok(&[
        "add-network-policy",
        "frontend",
        "--destination-app",
        "backend",
        "--port",
        "8081",
    ]);
    assert!(exchange(&frontend, backend(8081)));
    setup.kill();

    // Tamper with the pinned policy while no daemon runs: drop the stored allow and add one
    // the store never had.
    let pin = firewall::datapath::pinning::directory(&setup.pin_root).join(maps::POLICY_EXACT);
    let map = Map::from_map_data(MapData::from_pin(&pin).expect("open pin")).expect("map");
    let mut exact: HashMap<MapData, PolicyKey, PolicyValue> =
        HashMap::try_from(map).expect("typed");
    let keys: Vec<PolicyKey> = exact.keys().map(|k| k.expect("key")).collect();
    assert_eq!(keys.len(), 1, "one single-port entry: {keys:?}");
    let stale = PolicyKey {
        port: 8082u16.to_be_bytes(),
        ..keys[0]
    };
    exact.remove(&keys[0]).expect("remove");
    exact
        .insert(stale, PolicyValue { rule_id: 1 }, 0)
        .expect("insert");
    assert!(
        !exchange(&frontend, backend(8081)),
        "the missing entry denies 8081"
    );
    assert!(
        exchange(&frontend, backend(8082)),
        "the stale entry allows 8082"
    );

    setup.start(&["fwdmr[0-9]"]);
    assert!(
        exchange(&frontend, backend(8081)),
        "reconciliation added the missing entry"
    );
    assert!(
        !exchange(&frontend, backend(8082)),
        "reconciliation removed the stale entry"
    );
    drop(bed);
}

#[test]
fn interfaces_that_appear_later_are_attached_and_released_when_they_go() {
    let mut setup = Setup::new("dmi", POLICY);
    setup.start(&["fwdmi*"]);
    assert!(setup.attached().is_empty());
    let link = "fwdmia";
    let add = Command::new("ip")
        .args([
            "link", "add", link, "type", "veth", "peer", "name", "fwqdmib",
        ])
        .status()
        .expect("ip");
    assert!(add.success());
    struct Cleanup(&'static str);
    impl Drop for Cleanup {
        fn drop(&mut self) {
            let _ = Command::new("ip").args(["link", "delete", self.0]).status();
        }
    }
    let cleanup = Cleanup(link);
    assert!(
        eventually(Duration::from_secs(5), || setup.attached()
            == vec![link.to_string()]),
        "not attached: {:?}\n{}",
        setup.status(),
        setup.log()
    );
    drop(cleanup);
    assert!(
        eventually(Duration::from_secs(5), || setup.attached().is_empty()),
        "still attached: {:?}",
        setup.status()
    );
    let log = setup.log();
    assert!(
        log.contains("attached to fwdmia") && log.contains("detached from fwdmia"),
        "{log}"
    );
}

#[test]
fn every_acknowledged_change_survives_a_kill_in_the_middle_of_a_burst() {
    let mut setup = Setup::new("dmk", POLICY);
    setup.start(&[]);
    let socket = setup.socket.clone();
    let burst = std::thread::spawn(move || {
        let mut acknowledged = Vec::new();
        for port in 1000..1400u16 {
            let out = Command::new(BIN)
                .arg("--socket")
                .arg(&socket)
                .arg("add-network-policy")
                .arg(format!("app{port}"))
                .args(["--destination-app", "backend", "--port", &port.to_string()])
                .output()
                .expect("CLI");
            if !out.status.success() {
                break;
            }
            acknowledged.push(port);
        }
        acknowledged
    });
    std::thread::sleep(Duration::from_millis(700));
    setup.kill();
    let acknowledged = burst.join().expect("burst thread");
    assert!(
        !acknowledged.is_empty() && acknowledged.len() < 400,
        "the kill missed the burst: {}",
        acknowledged.len()
    );
    setup.start(&[]);
    let listed: serde_json::Value =
        serde_json::from_str(&setup.ok(&["network-policies", "--json"])).expect("JSON");
    let stored: Vec<u64> = listed["policies"]
        .as_array()
        .expect("policies")
        .iter()
        .filter_map(|p| p["destination"]["ports"]["start"].as_u64())
        .collect();
    for port in &acknowledged {
        assert!(
            stored.contains(&u64::from(*port)),
            "acknowledged policy for port {port} lost"
        );
    }
    // At most the one change in flight when the kill came may be stored unacknowledged.
    assert!(
        stored.len() <= acknowledged.len() + 1,
        "{} stored, {} acknowledged",
        stored.len(),
        acknowledged.len()
    );
}

#[test]
fn a_pinned_map_of_another_layout_is_refused_not_reused() {
    let mut setup = Setup::new("dml", POLICY);
    setup.start(&[]);
    setup.kill();
    // Same pins, but this daemon wants a conntrack map of another size.
    let other_size = ["--conntrack-entries", "4096"];
    let out = setup.command(&other_size).output().expect("run the daemon");
    assert!(
        !out.status.success(),
        "a daemon started over pins of another layout"
    );
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("CONNTRACK") && stderr.contains("--uninstall"),
        "{stderr}"
    );
    // After an uninstall the new layout starts cleanly.
    setup.uninstall();
    let child = setup
        .command(&other_size)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("start the daemon");
    setup.daemon = Some(child);
    setup.wait_up();
}
