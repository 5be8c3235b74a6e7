//! Decoding and naming of flow records, without a datapath.

use std::sync::Arc;

use firewall_common::{FlowEvent, Hook, Reason};
use serde_json::json;

use super::*;
use crate::policy;

const POLICY: &str = "
apps:
  frontend: {org: bank, space: prod, ips: [198.18.1.10, \"2001:db8:1::10\"]}
  backend:  {ips: [198.18.2.10]}
policies:
  - {source: frontend, destination: backend, protocol: tcp, ports: 8081}
  - {source: frontend, destination: backend, protocol: icmp}
";

/// 2026-12-03T19:19:06Z, a whole second.
const WALL: i128 = 1_796_325_546 * 1_000_000_000;

fn names() -> NameTable {
    NameTable::new(Arc::new(policy::parse_str(POLICY, "test").expect("policy")))
}

fn v4(a: [u8; 4]) -> [u8; 16] {
    let mut bytes = [0; 16];
    bytes[..4].copy_from_slice(&a);
    bytes
}

fn event(reason: Reason, protocol: u8, destination_port: u16) -> FlowEvent {
    FlowEvent {
        timestamp_ns: 5_000_000_123,
        ifindex: 1,
        length: 74,
        source_identity: 256,
        destination_identity: 257,
        rule_id: 0,
        trace_id: 0,
        reason: reason as u8,
        hook: Hook::TcIngress as u8,
        family: 4,
        protocol,
        source_port: 40312,
        destination_port,
        tcp_flags: 0,
        _pad: [0; 7],
        source_address: v4([198, 18, 1, 10]),
        destination_address: v4([198, 18, 2, 10]),
    }
}

fn record(event: &FlowEvent) -> FlowRecord {
    // The monotonic timestamp 5.000000123 s lands 5 s after WALL.
    let clock = WallClock::with_offset(WALL - 5_000_000_000);
    FlowRecord::new(event, &names(), &clock, "node-7", "fwfl0".into())
}

#[test]
fn a_default_deny_drop_says_so_with_no_rule_and_names_both_apps() {
    let drop = record(&event(Reason::DeniedByDefault, 17, 9999));
    let value = serde_json::to_value(&drop).expect("JSON");
    assert_eq!(
        value,
        json!({
            "time": "2026-12-03T19:19:06.000000123Z",
            "host": "node-7",
            "hook": "tc-ingress",
            "interface": "fwfl0",
            "ifindex": 1,
            "verdict": "drop",
            "reason": "denied-by-default",
            "reason_code": 64,
            "protocol": "udp",
            "source": {"address": "198.18.1.10", "port": 40312, "identity": 256,
                       "name": "frontend", "kind": "app", "org": "bank", "space": "prod"},
            "destination": {"address": "198.18.2.10", "port": 9999, "identity": 257,
                            "name": "backend", "kind": "app", "org": null, "space": null},
            "icmp": null,
            "tcp_flags": null,
            "length": 74,
            "rule_id": null,
            "rule": null,
            "default_deny": true
        })
    );
    let back: FlowRecord = serde_json::from_value(value).expect("reads back");
    assert_eq!(back, drop);
}

#[test]
fn an_opened_flow_names_its_rule_and_tcp_flags() {
    let mut opened = event(Reason::Policy, 6, 8081);
    opened.rule_id = 1;
    opened.tcp_flags = 0x02;
    let allow = record(&opened);
    assert_eq!(allow.verdict, FlowVerdict::Allow);
    assert_eq!(allow.reason, "policy");
    assert_eq!(allow.rule_id, Some(1));
    assert_eq!(allow.rule.as_deref(), Some("frontend -> backend tcp 8081"));
    assert!(!allow.default_deny);
    assert_eq!(allow.tcp_flags, Some(vec!["SYN".to_owned()]));
    assert_eq!(allow.destination.port, Some(8081));

    opened.tcp_flags = 0x12;
    opened.rule_id = 77;
    let unknown_rule = record(&opened);
    assert_eq!(
        unknown_rule.tcp_flags,
        Some(vec!["SYN".to_owned(), "ACK".to_owned()])
    );
    assert_eq!(unknown_rule.rule_id, Some(77), "the id stays");
    assert_eq!(unknown_rule.rule, None, "a rule removed since has no text");
}

#[test]
fn icmp_gets_type_and_code_and_no_ports() {
    let echo = record(&event(Reason::DeniedByDefault, 1, 8 << 8));
    assert_eq!(echo.protocol.as_deref(), Some("icmp"));
    assert_eq!(
        echo.icmp,
        Some(Icmp {
            icmp_type: 8,
            code: 0
        })
    );
    assert_eq!((echo.source.port, echo.destination.port), (None, None));
    let unreachable = record(&event(Reason::UntrackedIcmpError, 1, 3 << 8 | 4));
    assert_eq!(
        unreachable.icmp,
        Some(Icmp {
            icmp_type: 3,
            code: 4
        })
    );
    assert!(!unreachable.default_deny, "another reason than the default");
}

#[test]
fn ipv6_and_unknown_identities_and_non_ip_frames() {
    let mut six = event(Reason::DeniedByDefault, 17, 53);
    six.family = 6;
    six.source_address = "2001:db8:1::10"
        .parse::<std::net::Ipv6Addr>()
        .expect("v6")
        .octets();
    six.destination_identity = 4242;
    let record6 = record(&six);
    assert_eq!(
        record6.source.address,
        Some("2001:db8:1::10".parse().expect("v6"))
    );
    assert_eq!(record6.destination.identity, Some(4242));
    assert_eq!(record6.destination.name, None, "unknown to the policy");

    let mut world = event(Reason::DeniedByDefault, 6, 22);
    world.source_identity = 1;
    assert_eq!(record(&world).source.name.as_deref(), Some("world"));
    assert_eq!(record(&world).source.kind.as_deref(), Some("world"));

    let mut frame = event(Reason::UnsupportedEthertype, 0, 0);
    frame.family = 0;
    frame.source_identity = 0;
    frame.destination_identity = 0;
    let other = record(&frame);
    assert_eq!(other.protocol, None);
    assert_eq!(other.source, Endpoint::default());
    assert_eq!(other.destination, Endpoint::default());
    assert_eq!(other.reason, "unsupported-ethertype");
    assert_eq!(other.verdict, FlowVerdict::Drop);
}

#[test]
fn unknown_codes_are_shown_as_numbers_and_count_as_drops() {
    let mut odd = event(Reason::DeniedByDefault, 17, 1);
    odd.reason = 99;
    odd.hook = 9;
    let record = record(&odd);
    assert_eq!(record.reason, "unknown (99)");
    assert_eq!(
        record.reason_code, 99,
        "the code is kept as the datapath sent it"
    );
    assert_eq!(record.hook, "unknown (9)");
    assert_eq!(record.verdict, FlowVerdict::Drop);
    assert!(!record.default_deny);
}

#[test]
fn the_wall_clock_follows_the_monotonic_one_by_its_offset() {
    let clock = WallClock::with_offset(WALL);
    assert_eq!(clock.format(0), "2026-12-03T19:19:06.000000000Z");
    assert_eq!(
        clock.format(1_500_000_001),
        "2026-12-03T19:19:07.500000001Z"
    );
    let now = WallClock::now().expect("clocks");
    let year = now.format(0);
    // Boot time: some time after 2000 on any machine this runs on.
    assert!(year.as_str() > "2000" && year.ends_with('Z'), "{year}");
}
