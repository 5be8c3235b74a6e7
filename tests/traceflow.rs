//! Traceflow against the live datapath of a daemon process on a testbed: synthetic traces
//! checked against golden outputs (`tests/snapshots`), traces that change nothing, and live
//! traces of real packets. Needs root.
//!
//! Golden outputs are insta snapshots: after a deliberate change of the output, review
//! and accept the new ones with `INSTA_UPDATE=always cargo test --test traceflow`.

mod support;

use std::{
    collections::BTreeMap,
    io::{BufRead, BufReader},
    net::{SocketAddr, UdpSocket},
    path::Path,
    process::{Command, Stdio},
    sync::mpsc,
    time::Duration,
};

use aya::maps::{HashMap, Map, MapData, PerCpuArray, PerCpuHashMap};
use firewall::testbed::{Testbed, in_namespace};
use firewall_common::{
    Counter, Reason, RuleCounter,
    conntrack::{CtEntry, CtKey},
    identity::reserved,
    maps::{self, Stat},
};
use pcap_file::pcap::{PcapHeader, PcapPacket, PcapWriter};
use serde_json::Value;
use support::{
    daemon::{BIN, Setup, testbed},
    packets::{ETH_IPV4, TCP, ethernet, ipv4},
    traffic::eventually,
};

const POLICY: &str = r#"
apps:
  frontend: {org: bank, space: prod, ips: [198.18.1.10, "2001:db8:1::10"]}
  backend:  {org: bank, space: payments, ips: [198.18.2.10, "2001:db8:2::10"]}
networks:
  partners: {cidrs: [198.18.200.0/24]}
policies:
  - {source: frontend, destination: backend, protocol: tcp, ports: 8081}
  - {source: frontend, destination: backend, protocol: udp, ports: 5353}
  - {source: frontend, destination: partners, protocol: tcp, ports: 443}
  - {source: frontend, destination: backend, protocol: tcp, ports: 9000-9010}
"#;

const FRONTEND: &str = "198.18.1.10";
const BACKEND: &str = "198.18.2.10";

/// A daemon enforcing `POLICY` on a testbed of its apps.
fn start(name: &str) -> (Testbed, Setup) {
    let bed = testbed(name, POLICY);
    let mut setup = Setup::new(name, POLICY);
    setup.start(&[&format!("fw{name}[0-9]")]);
    let hosts = bed.hosts().len();
    assert!(
        eventually(Duration::from_secs(5), || setup.attached().len() == hosts),
        "{:?}",
        setup.status()
    );
    (bed, setup)
}

/// The CLI's traceflow output, with this host's name replaced by `<host>`.
fn trace(setup: &Setup, args: &str) -> String {
    let line: Vec<&str> = ["traceflow"]
        .into_iter()
        .chain(args.split_whitespace())
        .collect();
    let host = firewall::events::host_name();
    setup.ok(&line).replace(&host, "<host>")
}

/// Sends UDP datagrams from `port` in `namespace` to `to`, `count` of them, 50 ms apart.
fn send_udp(namespace: &str, from: SocketAddr, to: SocketAddr, count: usize) {
    in_namespace(namespace, move || -> std::io::Result<()> {
        let socket = UdpSocket::bind(from)?;
        for _ in 0..count {
            socket.send_to(b"trace me", to)?;
            std::thread::sleep(Duration::from_millis(50));
        }
        Ok(())
    })
    .expect("namespace")
    .expect("send");
}

fn at(address: &str, port: u16) -> SocketAddr {
    SocketAddr::new(address.parse().expect("address"), port)
}

#[test]
fn synthetic_traces_tell_each_step() {
    let (bed, setup) = start("tfs");
    let frontend = bed.host("frontend").expect("frontend").namespace.clone();

    insta::assert_snapshot!(
        "allowed",
        trace(
            &setup,
            "--source-app frontend --destination-app backend --port 8081"
        )
    );
    insta::assert_snapshot!(
        "denied_with_nearest_rules",
        trace(
            &setup,
            "--source-app frontend --destination-app backend --port 8082"
        )
    );
    insta::assert_snapshot!(
        "ipv6",
        trace(
            &setup,
            "--source-app frontend --source-ip 2001:db8:1::10 --destination-app backend --port 9005"
        )
    );
    insta::assert_snapshot!(
        "network_destination",
        trace(
            &setup,
            "--source-app frontend --destination-ip 198.18.200.7 --port 443"
        )
    );
    insta::assert_snapshot!(
        "world_destination",
        trace(
            &setup,
            "--source-app frontend --destination-ip 198.19.5.5 --port 443"
        )
    );
    insta::assert_snapshot!(
        "icmpv6_denied",
        trace(
            &setup,
            "--source-app frontend --destination-app backend --protocol icmpv6"
        )
    );

    // A real flow: frontend:40000 -> backend:5353 over UDP, allowed by rule 2.
    send_udp(&frontend, at(FRONTEND, 40_000), at(BACKEND, 5353), 1);
    insta::assert_snapshot!(
        "reply_of_tracked_flow",
        trace(
            &setup,
            "--source-app backend --destination-app frontend --protocol udp --source-port 5353 --port 40000"
        )
    );
    insta::assert_snapshot!(
        "established",
        trace(
            &setup,
            "--source-app frontend --destination-app backend --protocol udp --source-port 40000 --port 5353"
        )
    );

    // A captured packet whose TCP header is cut short.
    let capture = setup.dir.join("malformed.pcap");
    let cut_short = ipv4(
        FRONTEND,
        BACKEND,
        TCP,
        &[0x9c, 0x40, 0x1f, 0x91, 0, 0, 0, 1],
    );
    write_pcap(&capture, &ethernet(ETH_IPV4, &[], &cut_short));
    let pcap = format!("--pcap {}", capture.display());
    insta::assert_snapshot!("malformed", trace(&setup, &pcap));

    // The same report as one JSON document with an array of observations.
    let json: Value = serde_json::from_str(&trace(
        &setup,
        "--source-app frontend --destination-app backend --port 8082 --json",
    ))
    .expect("JSON");
    let steps: Vec<&str> = json["observations"]
        .as_array()
        .expect("observations")
        .iter()
        .filter_map(|o| o["step"].as_str())
        .collect();
    assert_eq!(
        steps,
        [
            "injected",
            "source-identity",
            "destination-identity",
            "conntrack",
            "policy",
            "verdict"
        ]
    );
    assert_eq!(json["verdict"], "dropped");
    assert_eq!(json["observations"][4]["default_deny"], true);
    assert_eq!(json["observations"][4]["nearest_rules"][0]["rule_id"], 1);
}

#[test]
fn bad_trace_requests_are_refused_with_the_reason() {
    let (_bed, setup) = start("tfb");
    for (args, expected) in [
        (
            "--source-app nobody --destination-app backend --port 1",
            "app nobody is not registered",
        ),
        (
            "--source-app frontend --destination-app backend",
            "tcp needs a destination port (1-65535)",
        ),
        (
            "--source-app frontend --source-ip 198.18.2.10 --destination-app backend --port 1",
            "source_ip 198.18.2.10 is not an address of app frontend",
        ),
        (
            "--source-app frontend --destination-ip 2001:db8:2::10 --source-ip 198.18.1.10 --port 1",
            "different families",
        ),
        (
            "--source-app frontend --destination-app backend --port 1 --tcp-flags SX",
            "tcp_flags: 'X'",
        ),
    ] {
        let line: Vec<&str> = ["traceflow"]
            .into_iter()
            .chain(args.split_whitespace())
            .collect();
        let out = setup.cli(&line);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "{line:?}: {stderr}");
        assert!(stderr.contains(expected), "{line:?}: {stderr}");
    }
}

/// Counters and flows the daemon's pinned maps hold, those the test's apps alone move: the
/// namespaces' own IPv6 neighbour discovery and MLD reports pass as infrastructure or drop
/// between unknown addresses (world to world) while the test runs.
#[derive(Debug, PartialEq)]
struct Snapshot {
    reasons: Vec<(u64, u64)>,
    rules: Vec<(u64, u64, u64)>,
    stats: Vec<u64>,
    drop_pairs: BTreeMap<u64, (u64, u64)>,
    flows: BTreeMap<Vec<u8>, Vec<u8>>,
}

fn snapshot(pin_root: &Path) -> Snapshot {
    let dir = pin_root.join(format!("v{}", firewall::datapath::pinning::LAYOUT_VERSION));
    let open = |name: &str| MapData::from_pin(dir.join(name)).expect("pinned map");
    let reasons = PerCpuArray::<_, Counter>::try_from(Map::PerCpuArray(open("REASON_COUNTERS")))
        .expect("reasons");
    let reasons = [
        Reason::Policy,
        Reason::Established,
        Reason::Reply,
        Reason::Revoked,
    ]
    .into_iter()
    .map(|reason| {
        let i = u32::from(reason as u8);
        let values = reasons.get(&i, 0).expect("reason");
        values
            .iter()
            .fold((0, 0), |(p, b), c| (p + c.packets, b + c.bytes))
    })
    .collect();
    let rules = PerCpuArray::<_, RuleCounter>::try_from(Map::PerCpuArray(open("RULE_COUNTERS")))
        .expect("rules");
    let rules = (1..=4)
        .map(|i| {
            let values = rules.get(&i, 0).expect("rule");
            values.iter().fold((0, 0, 0), |(p, b, f), c| {
                (p + c.packets, b + c.bytes, f + c.flows)
            })
        })
        .collect();
    let stats =
        PerCpuArray::<_, u64>::try_from(Map::PerCpuArray(open("DATAPATH_STATS"))).expect("stats");
    // The conntrack statistics; the record counts move with the background drops.
    let stats = [
        Stat::ConntrackCreated,
        Stat::ConntrackDeleted,
        Stat::ConntrackFlushed,
        Stat::ConntrackInsertFailed,
    ]
    .into_iter()
    .map(|stat| stats.get(&(stat as u32), 0).expect("stat").iter().sum())
    .collect();
    let pairs =
        PerCpuHashMap::<_, u64, Counter>::try_from(Map::PerCpuLruHashMap(open("DROP_PAIRS")))
            .expect("drop pairs");
    let world_to_world = maps::drop_pair(reserved::WORLD, reserved::WORLD);
    let drop_pairs = pairs
        .iter()
        .map(|entry| entry.expect("pair"))
        .filter(|(key, _)| *key != world_to_world)
        .map(|(key, values)| {
            let sum = values
                .iter()
                .fold((0, 0), |(p, b), c| (p + c.packets, b + c.bytes));
            (key, sum)
        })
        .collect();
    let conntrack = HashMap::<_, CtKey, CtEntry>::try_from(Map::LruHashMap(open("CONNTRACK")))
        .expect("conntrack");
    let flows = conntrack
        .iter()
        .map(|entry| {
            let (key, value) = entry.expect("flow");
            (
                format!("{key:?}").into_bytes(),
                format!("{value:?}").into_bytes(),
            )
        })
        .collect();
    Snapshot {
        reasons,
        rules,
        stats,
        drop_pairs,
        flows,
    }
}

#[test]
fn a_trace_leaves_conntrack_and_counters_as_they_were() {
    let (bed, setup) = start("tfc");
    let frontend = bed.host("frontend").expect("frontend").namespace.clone();
    send_udp(&frontend, at(FRONTEND, 40_001), at(BACKEND, 5353), 1);
    // Past the datapath's refresh interval, so a live packet of the flow would rewrite
    // the flow's last-seen time: a trace that did so would show.
    std::thread::sleep(Duration::from_millis(1_100));
    let before = snapshot(&setup.pin_root);
    assert_eq!(
        before.flows.len(),
        1,
        "the real flow is tracked: {before:?}"
    );
    for args in [
        // Would open a flow.
        "--source-app frontend --destination-app backend --port 8081",
        // Would be counted as a drop, and against the pair.
        "--source-app frontend --destination-app backend --port 8082",
        // Would refresh the flow and mark its reply seen.
        "--source-app backend --destination-app frontend --protocol udp --source-port 5353 --port 40001",
        "--source-app frontend --destination-app backend --protocol udp --source-port 40001 --port 5353",
        // Would close a TCP flow.
        "--source-app frontend --destination-app backend --port 8081 --tcp-flags R",
    ] {
        trace(&setup, args);
    }
    let after = snapshot(&setup.pin_root);
    assert_eq!(before, after, "a trace changed the datapath's state");
}

#[test]
fn a_live_trace_reports_real_packets_at_each_hook_and_stops_at_its_count() {
    let (bed, setup) = start("tfl");
    let frontend = bed.host("frontend").expect("frontend").clone();
    let backend = bed.host("backend").expect("backend").clone();
    let mut child = Command::new(BIN)
        .arg("--socket")
        .arg(&setup.socket)
        .args(
            "traceflow --live --source-app frontend --destination-app backend --protocol udp \
             --port 5353 --count 3 --timeout 20 --json"
                .split_whitespace(),
        )
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start the live trace");
    let (lines, received) = mpsc::channel::<Value>();
    let stdout = child.stdout.take().expect("stdout");
    let reader = std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            let _ = lines.send(serde_json::from_str(&line).expect("a JSON line"));
        }
    });
    let armed = received
        .recv_timeout(Duration::from_secs(10))
        .expect("armed");
    assert_eq!(armed["event"], "armed", "{armed}");

    // Denied traffic and other ports do not match; then five matching datagrams.
    send_udp(
        &frontend.namespace,
        at(FRONTEND, 40_010),
        at(BACKEND, 5354),
        2,
    );
    send_udp(
        &frontend.namespace,
        at(FRONTEND, 40_011),
        at(BACKEND, 5353),
        5,
    );

    let mut observations = Vec::new();
    let done = loop {
        let message = received
            .recv_timeout(Duration::from_secs(20))
            .expect("a line");
        match message["event"].as_str() {
            Some("observation") => observations.push(message),
            Some("done") => break message,
            other => panic!("unexpected line {other:?}: {message}"),
        }
    };
    assert_eq!(done["packets"], 3, "{done}");
    assert_eq!(done["ended"], "count", "{done}");
    let status = child.wait().expect("the trace exits");
    assert!(status.success());
    reader.join().expect("reader");

    let seen: Vec<(u64, String, String)> = observations
        .iter()
        .map(|o| {
            assert_eq!(o["headers"]["destination_port"], 5353, "{o}");
            assert_eq!(o["verdict"], "forwarded", "{o}");
            assert_eq!(o["rule"], "frontend -> backend udp 5353", "{o}");
            (
                o["packet"].as_u64().expect("packet"),
                o["hook"].as_str().expect("hook").to_owned(),
                o["interface"].as_str().expect("interface").to_owned(),
            )
        })
        .collect();
    let mut expected = Vec::new();
    for packet in 1..=3 {
        expected.push((packet, "tc-ingress".to_owned(), frontend.interface.clone()));
        expected.push((packet, "tc-egress".to_owned(), backend.interface.clone()));
    }
    assert_eq!(seen, expected);
    assert_eq!(observations[0]["conntrack"], "new");
    assert_eq!(observations[2]["conntrack"], "established");

    // The filter is disarmed: a new live trace may start at once.
    let out = setup.cli(&[
        "traceflow",
        "--live",
        "--source-app",
        "frontend",
        "--destination-app",
        "backend",
        "--timeout",
        "1",
    ]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{text}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(text.contains("Done: 0 packets (timeout)"), "{text}");
}

fn write_pcap(path: &Path, frame: &[u8]) {
    let mut writer = PcapWriter::with_header(Vec::new(), PcapHeader::default()).expect("header");
    let packet = PcapPacket::new(Duration::ZERO, frame.len() as u32, frame);
    writer.write_packet(&packet).expect("packet");
    std::fs::write(path, writer.into_writer()).expect("write pcap");
}
