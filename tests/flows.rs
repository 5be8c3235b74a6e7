//! Flow records from the daemon as a process on a testbed of two apps: what allowed and
//! denied traffic records, how the API, `firewall flows` (listed and followed) and the flow
//! log show it, and what a flood of denied datagrams does to the daemon and its accounting.
//! Needs root.
//!
//! Each test has its own testbed (`fla`, `flf`), pin root and scratch directory, removed on
//! drop; every traffic loop is bounded in count and time.

mod support;

#[path = "flows/harness.rs"]
mod harness;

use std::time::{Duration, Instant};

use harness::{Daemon, backend, file_lines, testbed, udp_burst};
use serde_json::{Value, json};
use support::{
    api::http,
    traffic::{Listener, eventually, exchange},
};

/// The records of `flows` sent to `port`.
fn to_port(flows: &[Value], port: u16) -> Vec<Value> {
    flows
        .iter()
        .filter(|r| r["destination"]["port"] == port)
        .cloned()
        .collect()
}

#[test]
fn records_name_allowed_and_denied_flows_in_the_api_the_cli_and_the_log() {
    let bed = testbed("fla");
    let frontend_ns = bed.host("frontend").expect("frontend").namespace.clone();
    let backend_ns = bed.host("backend").expect("backend").namespace.clone();
    let frontend_if = bed.host("frontend").expect("frontend").interface.clone();
    let scratch = std::env::temp_dir().join(format!("firewall-fla-log-{}", std::process::id()));
    let log_path = scratch.join("flows.log");
    struct Cleanup(std::path::PathBuf);
    impl Drop for Cleanup {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }
    let _cleanup = Cleanup(scratch.clone());
    let daemon = Daemon::start(
        "fla",
        &["fwfla[0-9]"],
        &["--flow-log", log_path.to_str().expect("path")],
    );
    // Added after the start: the records must be named by the policy as it is now.
    daemon.ok(&[
        "add-network-policy",
        "frontend",
        "--destination-app",
        "backend",
        "--protocol",
        "tcp",
        "--port",
        "8081",
    ]);

    // A follower started before the traffic: its first line (the counts) says it is on.
    let follower = daemon.follow(&["--json", "--verdict", "drop", "--app", "backend"]);
    let first = follower
        .line(Duration::from_secs(10))
        .unwrap_or_else(|| panic!("the follower printed nothing\n{}", daemon.log()));
    let first: Value = serde_json::from_str(&first).expect("an NDJSON line");
    assert_eq!(first["counts"]["missed"], 0, "{first}");

    let _listener = Listener::start(&backend_ns, backend(8081));
    for _ in 0..3 {
        assert!(
            exchange(&frontend_ns, backend(8081)),
            "the rule allows 8081"
        );
    }
    let denied = udp_burst(&frontend_ns, backend(9999), 5, 1, Duration::from_secs(5));
    assert_eq!(denied.join().expect("sender"), 5);

    // The API, through the CLI: five drops to 9999, denied by default, named, on this host.
    let host = firewall::events::host_name();
    let mut drops = Vec::new();
    let found = eventually(Duration::from_secs(10), || {
        let (flows, _) =
            daemon.flows(&["--verdict", "drop", "--app", "frontend", "--limit", "1000"]);
        assert!(
            flows.iter().all(|r| r["verdict"] == "drop"
                && (r["source"]["name"] == "frontend" || r["destination"]["name"] == "frontend")),
            "the filter let through another record: {flows:?}"
        );
        drops = to_port(&flows, 9999);
        drops.len() == 5
    });
    assert!(found, "five drop records to 9999 expected: {drops:?}");
    for record in &drops {
        assert_eq!(record["reason"], "denied-by-default", "{record}");
        assert_eq!(record["reason_code"], 64, "{record}");
        assert_eq!(record["host"], host.as_str(), "{record}");
        assert_eq!(record["default_deny"], true, "{record}");
        assert_eq!(record["rule"], Value::Null, "{record}");
        assert_eq!(record["rule_id"], Value::Null, "{record}");
        assert_eq!(record["protocol"], "udp", "{record}");
        assert_eq!(record["hook"], "tc-ingress", "{record}");
        assert_eq!(record["interface"], frontend_if.as_str(), "{record}");
        assert_eq!(record["icmp"], Value::Null, "{record}");
        let source = &record["source"];
        assert_eq!(
            (
                &source["name"],
                &source["kind"],
                &source["org"],
                &source["space"]
            ),
            (
                &json!("frontend"),
                &json!("app"),
                &json!("bank"),
                &json!("prod")
            ),
            "{record}"
        );
        assert_eq!(source["address"], "198.18.1.10", "{record}");
        assert_eq!(record["destination"]["name"], "backend", "{record}");
        assert_eq!(record["destination"]["address"], "198.18.2.10", "{record}");
        assert!(record["time"].as_str().is_some_and(|t| t.ends_with('Z')));
    }

    // One allow record per opened flow, naming the rule added after the start. The SYN
    // crosses two attached interfaces (frontend's ingress, backend's egress) and goes to the
    // policy at both, but only the first hook begins the flow: the second finds it tracked.
    let (allowed, _) = daemon.flows(&["--verdict", "allow", "--app", "backend", "--limit", "1000"]);
    let allowed = to_port(&allowed, 8081);
    assert_eq!(allowed.len(), 3, "one record per connection: {allowed:?}");
    for record in &allowed {
        assert_eq!(record["hook"], "tc-ingress", "{record}");
        assert_eq!(record["interface"], frontend_if.as_str(), "{record}");
    }
    let mut source_ports: Vec<u64> = Vec::new();
    for record in &allowed {
        assert_eq!(record["verdict"], "allow", "{record}");
        assert_eq!(record["reason"], "policy", "{record}");
        assert_eq!(record["reason_code"], 1, "{record}");
        assert_eq!(record["host"], host.as_str(), "{record}");
        assert_eq!(record["rule"], "frontend -> backend tcp 8081", "{record}");
        assert!(
            record["rule_id"].as_u64().is_some_and(|id| id > 0),
            "{record}"
        );
        assert_eq!(record["default_deny"], false, "{record}");
        assert_eq!(record["tcp_flags"], json!(["SYN"]), "{record}");
        source_ports.push(record["source"]["port"].as_u64().expect("port"));
    }
    source_ports.sort_unstable();
    source_ports.dedup();
    assert_eq!(source_ports.len(), 3, "three distinct connections");

    // The table says the same for people.
    let table = daemon.ok(&["flows", "--verdict", "drop", "--app", "frontend"]);
    for expected in [
        "denied-by-default",
        "frontend/198.18.1.10:",
        "-> backend/198.18.2.10:9999",
        "default deny",
        "Since the daemon started:",
    ] {
        assert!(table.contains(expected), "{expected} missing:\n{table}");
    }

    // The follower, started before any of it, saw the drops as they came.
    let deadline = Instant::now() + Duration::from_secs(10);
    let mut followed = Vec::new();
    while followed.len() < 5 && Instant::now() < deadline {
        let Some(line) = follower.line(Duration::from_millis(200)) else {
            continue;
        };
        let value: Value = serde_json::from_str(&line).expect("an NDJSON line");
        if value.get("counts").is_some() {
            continue;
        }
        assert_eq!(value["verdict"], "drop", "the follower's filter: {value}");
        if value["destination"]["port"] == 9999 {
            followed.push(value);
        }
    }
    assert_eq!(followed.len(), 5, "the follower saw {followed:?}");
    assert_eq!(followed, drops, "the follower and the list agree");

    // The flow log holds every record as a JSON line.
    let logged = eventually(Duration::from_secs(10), || {
        let lines = file_lines(&log_path);
        to_port(&lines, 9999) == drops && to_port(&lines, 8081) == allowed
    });
    assert!(
        logged,
        "the flow log lacks records:\n{}",
        std::fs::read_to_string(&log_path).unwrap_or_default()
    );

    // Bad requests are refused, naming what is wrong.
    let socket = &daemon.socket;
    let (status, body) = http(socket, "GET", "/v1/flows?verdict=maybe", None);
    assert_eq!(
        (status, body),
        (
            400,
            json!({"error": "verdict must be drop or allow, not \"maybe\""})
        )
    );
    let (status, body) = http(socket, "GET", "/v1/flows?limit=0", None);
    assert_eq!(status, 400, "{body}");
    let (status, body) = http(socket, "GET", "/v1/flows?verdit=drop", None);
    assert!(
        status == 400 && body["error"].as_str().is_some_and(|e| e.contains("verdit")),
        "{status} {body}"
    );
    let (status, _) = http(socket, "POST", "/v1/flows", None);
    assert_eq!(status, 405);
    let out = daemon.cli(&["flows", "--limit", "0"]);
    assert_eq!(out.status.code(), Some(2), "bad usage exits 2");
    drop(bed);
}

/// The daemon's view and the datapath's, read at one quiet moment.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Books {
    /// Records the datapath tried to send (every drop and opened flow).
    attempted: u64,
    /// Drops from frontend to backend.
    pair: u64,
    received: u64,
    rate_limited: u64,
    lost: u64,
}

impl Books {
    fn read(daemon: &Daemon, frontend: u32, backend: u32) -> Books {
        let (_, answer) = daemon.flows(&["--limit", "1"]);
        let count = |key: &str| answer[key].as_u64().expect("a count");
        Books {
            attempted: daemon.records_attempted(),
            pair: daemon.pair_drops(frontend, backend),
            received: count("received"),
            rate_limited: count("rate_limited"),
            lost: count("lost"),
        }
    }

    /// Every record the datapath tried to send was received, rate-limited or lost.
    fn balanced(&self) -> bool {
        self.received + self.rate_limited + self.lost == self.attempted
    }

    /// Reads until two readings half a second apart agree and balance (20 s at most).
    fn settled(daemon: &Daemon, frontend: u32, backend: u32) -> Books {
        let deadline = Instant::now() + Duration::from_secs(20);
        let mut last = None;
        loop {
            let books = Books::read(daemon, frontend, backend);
            if books.balanced() && last == Some(books) {
                return books;
            }
            assert!(
                Instant::now() < deadline,
                "the books never balanced: {books:?}\n{}",
                daemon.log()
            );
            last = Some(books);
            std::thread::sleep(Duration::from_millis(500));
        }
    }
}

/// Records received for drops from frontend to backend port `port`.
fn pair_records(daemon: &Daemon, port: u16) -> u64 {
    let (drops, _) = daemon.flows(&[
        "--verdict",
        "drop",
        "--app",
        "frontend",
        "--limit",
        "1000000",
    ]);
    to_port(&drops, port)
        .iter()
        .filter(|r| r["source"]["name"] == "frontend" && r["destination"]["name"] == "backend")
        .count() as u64
}

/// Continues a stopped process when dropped, whatever happened meanwhile.
struct Stopped(u32);

impl Stopped {
    fn stop(pid: u32) -> Stopped {
        // SAFETY: kill has no memory effects; the pid is the daemon child this test started.
        assert_eq!(unsafe { libc::kill(pid as i32, libc::SIGSTOP) }, 0);
        Stopped(pid)
    }
}

impl Drop for Stopped {
    fn drop(&mut self) {
        // SAFETY: as in `stop`.
        unsafe { libc::kill(self.0 as i32, libc::SIGCONT) };
    }
}

#[test]
fn a_flood_of_denied_datagrams_is_accounted_for_and_the_daemon_stays_responsive() {
    let bed = testbed("flf");
    let frontend_ns = bed.host("frontend").expect("frontend").namespace.clone();
    // The default record rate; memory enough for every record of the test.
    let daemon = Daemon::start("flf", &["fwflf[0-9]"], &["--flow-buffer", "1000000"]);
    let (frontend, backend_id) = (daemon.identity("frontend"), daemon.identity("backend"));
    let before = Books::settled(&daemon, frontend, backend_id);

    // 20,000 denied datagrams at about 10,000 a second, five times the default rate of one
    // CPU, while the API keeps being asked.
    let started = Instant::now();
    let flood = udp_burst(
        &frontend_ns,
        backend(9999),
        20_000,
        10,
        Duration::from_secs(10),
    );
    let mut calls = 0;
    let mut slowest = Duration::ZERO;
    while !flood.is_finished() {
        for args in [
            &["status", "--json"][..],
            &["flows", "--limit", "5", "--json"],
        ] {
            let asked = Instant::now();
            daemon.ok(args);
            slowest = slowest.max(asked.elapsed());
            calls += 1;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    let sent = flood.join().expect("sender");
    let flood_time = started.elapsed();
    assert!(calls >= 4, "only {calls} API calls during the flood");
    assert!(
        slowest < Duration::from_secs(5),
        "an API call took {slowest:?} during the flood"
    );

    let after = Books::settled(&daemon, frontend, backend_id);
    let dropped = after.pair - before.pair;
    let records = pair_records(&daemon, 9999);
    let limited = after.rate_limited - before.rate_limited;
    let lost = after.lost - before.lost;
    eprintln!(
        "flood: {sent} sent in {flood_time:?}, {dropped} dropped, {records} records \
         ({:.0}/s), {limited} rate-limited, {lost} lost; {calls} API calls, slowest {slowest:?}",
        records as f64 / flood_time.as_secs_f64()
    );
    assert!(
        dropped > u64::from(sent) / 2 && dropped <= u64::from(sent),
        "{dropped} of {sent} datagrams dropped"
    );
    assert!(records <= dropped, "{records} records for {dropped} drops");
    assert!(
        records + limited + lost >= dropped,
        "drops unaccounted for: {records} received + {limited} rate-limited + {lost} lost < \
         {dropped} dropped"
    );
    assert!(limited > 0, "the default rate limited nothing: {after:?}");
    let table = daemon.ok(&["flows", "--limit", "1"]);
    assert!(
        table.contains(&format!("{} rate-limited", after.rate_limited)),
        "{table}"
    );

    // A daemon that does not drain the ring (stopped here) loses what does not fit, and
    // says so.
    let paused = Stopped::stop(daemon.pid());
    let burst = udp_burst(
        &frontend_ns,
        backend(9998),
        15_000,
        5,
        Duration::from_secs(8),
    );
    let sent = burst.join().expect("sender");
    drop(paused);
    let last = Books::settled(&daemon, frontend, backend_id);
    let dropped = last.pair - after.pair;
    let records = pair_records(&daemon, 9998);
    let limited = last.rate_limited - after.rate_limited;
    let lost = last.lost - after.lost;
    eprintln!(
        "stopped daemon: {sent} sent, {dropped} dropped, {records} records, {limited} \
         rate-limited, {lost} lost"
    );
    assert!(lost > 0, "nothing lost with the daemon stopped: {last:?}");
    assert!(records <= dropped && records + limited + lost >= dropped);
    let (_, answer) = daemon.flows(&["--limit", "1"]);
    assert_eq!(answer["lost"], last.lost, "{answer}");
    let table = daemon.ok(&["flows", "--limit", "1"]);
    assert!(
        table.contains(&format!("{} lost (ring buffer full)", last.lost)),
        "{table}"
    );
    drop(bed);
}
