//! The daemon's counters from the outside: a daemon process enforcing on a testbed with
//! `--metrics-addr`, a known number of UDP datagrams allowed one way and dropped the other,
//! then `GET /metrics` (read with an independent parser) and `firewall stats` must both
//! report exactly that traffic. Needs root.
//!
//! Figures are checked per rule and per identity pair, never as global reason totals: the
//! namespaces' own IPv6 chatter (MLD, router solicitations) is dropped as well and would
//! make global totals depend on timing. Names: testbed `mtst` (`fwmtst*` links,
//! `fw-mtst-*` namespaces), pin roots `/sys/fs/bpf/firewall-mt*-<pid>`; all removed on drop.

mod support;

use std::{
    io::{Read, Write},
    net::{SocketAddr, TcpListener, TcpStream, UdpSocket},
    process::Command,
    time::{Duration, Instant},
};

use firewall::testbed;
use prometheus_parse::{Scrape, Value};
use serde_json::Value as Json;
use support::{
    daemon::{BIN, Setup},
    traffic::eventually,
};

const POLICY: &str = "\
apps:
  frontend: {org: bank, space: prod, ips: [198.18.61.10]}
  backend:  {org: bank, space: prod, ips: [198.18.62.10]}
";
const FRONTEND: &str = "198.18.61.10";
const BACKEND: &str = "198.18.62.10";
/// The rule the test adds, as the daemon describes it.
const RULE: &str = "frontend -> backend udp 5353";

/// Datagrams sent each way, and their payload.
const ALLOWED: u64 = 25;
const DENIED: u64 = 7;
const PAYLOAD: usize = 100;
/// Bytes of one datagram's frame as the hooks see it: Ethernet, IPv4, UDP, payload.
const FRAME: u64 = 14 + 20 + 8 + PAYLOAD as u64;

/// A loopback port nothing listens on right now.
fn free_port() -> u16 {
    let probe = TcpListener::bind("127.0.0.1:0").expect("bind a probe");
    probe.local_addr().expect("probe address").port()
}

/// `GET /metrics` by hand: the status, the content type and the body.
fn scrape(address: SocketAddr) -> (u16, String, String) {
    let mut stream = TcpStream::connect_timeout(&address, Duration::from_secs(5)).expect("connect");
    stream
        .set_read_timeout(Some(Duration::from_secs(30)))
        .expect("timeout");
    let request = "GET /metrics HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n";
    stream.write_all(request.as_bytes()).expect("send");
    let mut answer = String::new();
    stream.read_to_string(&mut answer).expect("answer");
    let (head, body) = answer.split_once("\r\n\r\n").expect("header end");
    let head = head.to_ascii_lowercase();
    assert!(!head.contains("transfer-encoding: chunked"), "{head}");
    let content_type = head
        .lines()
        .find_map(|line| line.strip_prefix("content-type: "))
        .unwrap_or_default()
        .to_owned();
    let status = head[9..12].parse().expect("status code");
    (status, content_type, body.to_owned())
}

/// The value of the one sample named `metric` with all of `labels`.
fn sample(scrape: &Scrape, metric: &str, labels: &[(&str, &str)]) -> f64 {
    let found: Vec<_> = scrape
        .samples
        .iter()
        .filter(|s| s.metric == metric)
        .filter(|s| labels.iter().all(|(k, v)| s.labels.get(k) == Some(*v)))
        .collect();
    let [one] = found.as_slice() else {
        panic!("{metric} {labels:?}: {} samples", found.len());
    };
    match one.value {
        Value::Counter(v) | Value::Gauge(v) | Value::Untyped(v) => v,
        ref other => panic!("{metric}: {other:?}"),
    }
}

/// Sends `count` datagrams of [`PAYLOAD`] bytes from `namespace`, `from` to `to`.
fn send(namespace: &str, from: &str, to: SocketAddr, count: u64) {
    let from: SocketAddr = format!("{from}:0").parse().expect("address");
    testbed::in_namespace(namespace, move || -> std::io::Result<()> {
        let socket = UdpSocket::bind(from)?;
        for _ in 0..count {
            socket.send_to(&[0x5a; PAYLOAD], to)?;
        }
        Ok(())
    })
    .expect("enter namespace")
    .expect("send datagrams");
}

/// Receives datagrams at `at` in `namespace` until `count` arrived or 10 s passed; returns
/// how many arrived.
fn receive(namespace: &str, at: SocketAddr, count: u64) -> std::thread::JoinHandle<u64> {
    let socket = testbed::in_namespace(namespace, move || UdpSocket::bind(at))
        .expect("enter namespace")
        .expect("bind the receiver");
    std::thread::spawn(move || {
        let _ = socket.set_read_timeout(Some(Duration::from_millis(100)));
        let deadline = Instant::now() + Duration::from_secs(10);
        let mut received = 0;
        let mut buf = [0u8; 2048];
        while received < count && Instant::now() < deadline {
            if let Ok(n) = socket.recv(&mut buf) {
                assert_eq!(n, PAYLOAD, "a datagram of another size");
                received += 1;
            }
        }
        received
    })
}

#[test]
fn metrics_and_stats_report_exactly_the_traffic_sent() {
    let bed = support::daemon::testbed("mtst", POLICY);
    let frontend = bed.host("frontend").expect("frontend").namespace.clone();
    let backend = bed.host("backend").expect("backend").namespace.clone();
    let mut setup = Setup::new("mt", POLICY);
    let metrics: SocketAddr = format!("127.0.0.1:{}", free_port()).parse().expect("addr");
    let address = metrics.to_string();
    setup.start_with(&["fwmtst[0-9]"], &["--metrics-addr", &address]);
    let attached = eventually(Duration::from_secs(5), || {
        setup.json(&["status", "--json"])["interfaces"]
            .as_array()
            .is_some_and(|a| a.len() == 2)
    });
    assert!(attached, "{}", setup.log());
    assert!(
        setup
            .log()
            .contains(&format!("serving metrics on http://{address}/metrics")),
        "{}",
        setup.log()
    );

    setup.ok(&[
        "add-network-policy",
        "frontend",
        "--destination-app",
        "backend",
        "--protocol",
        "udp",
        "--port",
        "5353",
    ]);
    let to_backend: SocketAddr = format!("{BACKEND}:5353").parse().expect("address");
    let receiver = receive(&backend, to_backend, ALLOWED);
    send(&frontend, FRONTEND, to_backend, ALLOWED);
    let received = receiver.join().expect("receiver");
    assert_eq!(received, ALLOWED, "allowed datagrams lost on the way");
    // No rule lets backend reach frontend: each of these is dropped at the first hook.
    let to_frontend: SocketAddr = format!("{FRONTEND}:7000").parse().expect("address");
    send(&backend, BACKEND, to_frontend, DENIED);

    let stats = |setup: &Setup| setup.json(&["stats", "--json"]);
    let pair = |stats: &Json| -> Option<Json> {
        let pairs = stats["dropped_pairs"].as_array()?;
        let found = pairs
            .iter()
            .find(|p| p["source"] == "backend" && p["destination"] == "frontend");
        found.cloned()
    };
    let settled = eventually(Duration::from_secs(5), || {
        pair(&stats(&setup)).is_some_and(|p| p["packets"] == DENIED)
    });
    let report = stats(&setup);
    assert!(
        settled,
        "the dropped pair never reached {DENIED}: {report:#}"
    );
    let rules = report["rules"].as_array().expect("rules");
    let rule = rules
        .iter()
        .find(|r| r["rule"] == RULE)
        .unwrap_or_else(|| panic!("no rule {RULE}: {report:#}"));
    // Each allowed datagram crosses two hooks, frontend's ingress (the policy opens the
    // flow) and backend's egress (the flow, counted under the rule that opened it).
    let rule_packets = 2 * ALLOWED;
    assert_eq!(rule["packets"], rule_packets, "{report:#}");
    assert_eq!(rule["bytes"], rule_packets * FRAME, "{report:#}");
    assert_eq!(rule["flows"], 1, "{report:#}");
    let dropped = pair(&report).expect("pair");
    assert_eq!(dropped["bytes"], DENIED * FRAME, "{report:#}");
    let id = rule["id"].as_u64().expect("rule id").to_string();

    let (status, content_type, body) = scrape(metrics);
    assert_eq!(status, 200, "{body}");
    assert!(
        content_type.starts_with("text/plain; version=0.0.4"),
        "{content_type}"
    );
    let scraped = Scrape::parse(body.lines().map(|l| Ok(l.to_owned()))).expect("parses");
    let rule_labels = [("rule_id", id.as_str()), ("rule", RULE)];
    let per_rule = |name: &str| sample(&scraped, name, &rule_labels);
    assert_eq!(per_rule("firewall_rule_packets_total"), rule_packets as f64);
    assert_eq!(
        per_rule("firewall_rule_bytes_total"),
        (rule_packets * FRAME) as f64
    );
    assert_eq!(per_rule("firewall_rule_flows_total"), 1.0);
    let pair_labels = [("source", "backend"), ("destination", "frontend")];
    let per_pair = |name: &str| sample(&scraped, name, &pair_labels);
    assert_eq!(
        per_pair("firewall_dropped_pair_packets_total"),
        DENIED as f64
    );
    assert_eq!(
        per_pair("firewall_dropped_pair_bytes_total"),
        (DENIED * FRAME) as f64
    );
    // The same figures as `firewall stats`, which read the maps a moment earlier.
    assert_eq!(
        rule["packets"].as_f64(),
        Some(per_rule("firewall_rule_packets_total"))
    );
    assert_eq!(
        dropped["packets"].as_f64(),
        Some(per_pair("firewall_dropped_pair_packets_total"))
    );

    // Map fill: two app addresses, one single-port entry; the flow is tracked.
    let map = |name: &str, map: &str| sample(&scraped, name, &[("map", map)]);
    assert_eq!(map("firewall_map_entries", "ipcache_hosts_v4"), 2.0);
    assert_eq!(map("firewall_map_capacity", "ipcache_hosts_v4"), 65_536.0);
    assert_eq!(map("firewall_map_entries", "policy_exact"), 1.0);
    assert_eq!(map("firewall_map_entries", "policy_trie"), 0.0);
    assert_eq!(map("firewall_map_capacity", "conntrack"), 524_288.0);
    assert!(sample(&scraped, "firewall_conntrack_entries", &[]) >= 1.0);
    assert!(sample(&scraped, "firewall_conntrack_created_total", &[]) >= 1.0);
    let denied = [("reason", "denied-by-default"), ("verdict", "drop")];
    assert!(sample(&scraped, "firewall_packets_total", &denied) >= DENIED as f64);
    // One change went through the API: the rule added above.
    let applies = sample(
        &scraped,
        "firewall_policy_apply_duration_seconds_count",
        &[],
    );
    assert_eq!(applies, 1.0);

    // The table for people.
    let table = setup.ok(&["stats"]);
    let rule_row = format!(
        "{id}   {RULE}  {rule_packets}       {}   1",
        rule_packets * FRAME
    );
    assert!(table.contains(&rule_row), "no {rule_row:?} in\n{table}");
    let pair_row = format!("backend  frontend     {DENIED}        {}", DENIED * FRAME);
    assert!(table.contains(&pair_row), "no {pair_row:?} in\n{table}");
    assert!(
        table.contains("ipcache_hosts_v4     2        65536"),
        "{table}"
    );

    // Stopping the daemon stops the endpoint with it.
    if let Some(mut child) = setup.daemon.take() {
        let term = Command::new("kill")
            .args(["-TERM", &child.id().to_string()])
            .status()
            .expect("kill");
        assert!(term.success(), "SIGTERM");
        let stopped = eventually(Duration::from_secs(10), || {
            matches!(child.try_wait(), Ok(Some(_)))
        });
        assert!(stopped, "the daemon did not stop:\n{}", setup.log());
    }
    assert!(
        TcpStream::connect_timeout(&metrics, Duration::from_secs(1)).is_err(),
        "the metrics endpoint outlived the daemon"
    );
    drop(bed);
}

/// Adds `count` made-up UDP flows (198.19.x.y:`port` -> 198.18.0.2:53) to the conntrack
/// map pinned under `pin_root`, as if the datapath had opened them.
fn fill_conntrack(pin_root: &std::path::Path, port: u16, count: u32) {
    use aya::maps::{HashMap, Map, MapData};
    use firewall_common::conntrack::{CONNTRACK, CtEntry, CtKey, CtState};

    let pin = firewall::datapath::pinning::directory(pin_root).join(CONNTRACK);
    let map = Map::from_map_data(MapData::from_pin(&pin).expect("open pin")).expect("map");
    let mut flows: HashMap<MapData, CtKey, CtEntry> = HashMap::try_from(map).expect("typed");
    for i in 0..count {
        let mut key = CtKey {
            family: 4,
            protocol: 17,
            source_port: port,
            destination_port: 53,
            ..CtKey::default()
        };
        key.source[..4].copy_from_slice(&[198, 19, (i >> 8) as u8, i as u8]);
        key.source[4..8].copy_from_slice(&i.to_be_bytes());
        key.destination[..4].copy_from_slice(&[198, 18, 0, 2]);
        let entry = CtEntry {
            rule_id: 1,
            state: CtState::Open as u8,
            ..CtEntry::default()
        };
        flows.insert(key, entry, 0).expect("insert a flow");
    }
}

#[test]
fn walking_a_big_conntrack_map_holds_up_neither_scrapes_nor_changes() {
    // Large enough that a walk takes far longer than a scrape or a change, well inside the
    // map's 524,288 so the LRU map evicts none of them.
    const FLOWS: u32 = 300_000;
    const MORE: u32 = 1_000;
    let mut setup = Setup::new("mtw", POLICY);
    let metrics: SocketAddr = format!("127.0.0.1:{}", free_port()).parse().expect("addr");
    setup.start_with(&[], &["--metrics-addr", &metrics.to_string()]);
    fill_conntrack(&setup.pin_root, 1, FLOWS);
    let entries = |body: &str| {
        let scraped = Scrape::parse(body.lines().map(|l| Ok(l.to_owned()))).expect("parses");
        sample(&scraped, "firewall_conntrack_entries", &[])
    };

    // `firewall stats` walks the map while it waits: that is the cost of one walk.
    let started = Instant::now();
    let report = setup.json(&["stats", "--json"]);
    let walk = started.elapsed();
    assert_eq!(
        report["conntrack"]["entries"], FLOWS,
        "{:#}",
        report["conntrack"]
    );
    // The first scrape's reading is that one (shared, younger than its age limit); so is
    // the next scrape's, without a walk.
    let started = Instant::now();
    let (status, _, body) = scrape(metrics);
    let one_scrape = started.elapsed();
    assert_eq!((status, entries(&body)), (200, f64::from(FLOWS)), "{body}");
    assert!(
        one_scrape * 4 < walk,
        "a scrape took {one_scrape:?}, a walk {walk:?}: the scrape walked"
    );

    // A change made while a walk runs does not wait for it: the walk runs outside the
    // controller's lock. A change that waited would take three quarters of a walk every
    // time; one that did not can still be slowed by a busy machine now and then, so it gets
    // three tries.
    let mut changes = Vec::new();
    for port in ["8081", "8082", "8083"] {
        let walker = {
            let (bin, socket) = (BIN, setup.socket.clone());
            std::thread::spawn(move || {
                Command::new(bin)
                    .arg("--socket")
                    .arg(socket)
                    .args(["stats", "--json"])
                    .output()
                    .expect("stats")
            })
        };
        std::thread::sleep(walk / 4);
        let started = Instant::now();
        setup.ok(&[
            "add-network-policy",
            "frontend",
            "--destination-app",
            "backend",
            "--port",
            port,
        ]);
        let change = started.elapsed();
        assert!(walker.join().expect("walker").status.success());
        changes.push(change);
        if change * 2 < walk {
            break;
        }
    }
    assert!(
        changes.iter().any(|change| *change * 2 < walk),
        "changes took {changes:?} during walks of {walk:?}: they waited for the walk"
    );

    // A scrape after the age limit answers at once with the old count and has it refreshed
    // behind it; a later scrape sees the new flows.
    fill_conntrack(&setup.pin_root, 2, MORE);
    std::thread::sleep(firewall::metrics::CONNTRACK_MAX_AGE);
    let (_, _, body) = scrape(metrics);
    assert_eq!(
        entries(&body),
        f64::from(FLOWS),
        "refreshed while the scrape waited"
    );
    let refreshed = eventually(Duration::from_secs(30), || {
        entries(&scrape(metrics).2) == f64::from(FLOWS + MORE)
    });
    assert!(
        refreshed,
        "the background count never arrived:\n{}",
        setup.log()
    );
}

#[test]
fn a_taken_metrics_address_stops_the_daemon_with_a_clear_error() {
    let setup = Setup::new("mtb", POLICY);
    let taken = TcpListener::bind("127.0.0.1:0").expect("bind");
    let address = taken.local_addr().expect("address").to_string();
    let out = setup
        .command(&["--metrics-addr", &address])
        .output()
        .expect("run the daemon");
    assert!(!out.status.success(), "started on a taken address");
    let stderr = String::from_utf8_lossy(&out.stderr);
    let expected = format!("binding the metrics address {address}");
    assert!(stderr.contains(&expected), "{stderr}");

    let out = setup
        .command(&["--metrics-addr", "localhost"])
        .output()
        .expect("run the daemon");
    assert_eq!(
        out.status.code(),
        Some(2),
        "a malformed address is bad usage"
    );
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("--metrics-addr"), "{stderr}");
}

#[test]
fn stats_without_a_datapath_is_refused_with_the_reason() {
    let daemon = support::api::Daemon::start("mt-stats");
    let refused = daemon.client("stats").expect_err("no datapath, no stats");
    assert_eq!(refused.exit_code(), 1);
    assert!(
        matches!(
            refused,
            firewall::client::ClientError::Refused { status: 503, .. }
        ),
        "{refused:?}"
    );
    assert!(
        refused.to_string().contains("runs without a datapath"),
        "{refused}"
    );
}
