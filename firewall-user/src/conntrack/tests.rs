use super::*;

const SECOND: u64 = NANOS_PER_SECOND;

fn v4(a: [u8; 4]) -> [u8; 16] {
    let mut bytes = [0; 16];
    bytes[..4].copy_from_slice(&a);
    bytes
}

fn tcp_key() -> CtKey {
    CtKey {
        source: v4([198, 18, 1, 10]),
        destination: v4([198, 18, 2, 10]),
        source_port: 40_000,
        destination_port: 8081,
        family: 4,
        protocol: 6,
        _pad: [0; 2],
    }
}

fn entry(state: CtState, last_seen_s: u64) -> CtEntry {
    CtEntry {
        last_seen_ns: last_seen_s * SECOND,
        created_ns: SECOND,
        rule_id: 1,
        revision: 1,
        source_identity: 256,
        destination_identity: 257,
        policy_port: 8081,
        state: state as u8,
        flags: CtEntry::SEEN_REPLY,
        _pad: 0,
    }
}

#[test]
fn each_state_lives_as_long_as_its_configured_lifetime() {
    let config = Config {
        tcp_syn_timeout: 1,
        tcp_established_timeout: 2,
        tcp_closing_timeout: 3,
        other_timeout: 4,
        icmp_timeout: 5,
        ..Config::default()
    };
    let states = [
        CtState::SynSent,
        CtState::Established,
        CtState::Closing,
        CtState::Open,
        CtState::Echo,
    ];
    let lifetimes = states.map(|s| config.lifetime_ns(s as u8) / 1_000_000_000);
    assert_eq!(lifetimes, [1, 2, 3, 4, 5]);
}

#[test]
fn a_tcp_flow_shows_ports_state_idle_time_and_time_left() {
    let config = Config::default();
    let record = FlowRecord::new(
        &tcp_key(),
        &entry(CtState::Established, 100),
        110 * SECOND,
        &config,
    );
    assert_eq!(record.protocol, "tcp");
    assert_eq!(record.source, IpAddr::from([198, 18, 1, 10]));
    assert_eq!(record.source_port, Some(40_000));
    assert_eq!(record.destination, IpAddr::from([198, 18, 2, 10]));
    assert_eq!(record.destination_port, Some(8081));
    assert_eq!(record.echo_id, None);
    assert_eq!(record.state, "established");
    assert!(record.seen_reply);
    assert_eq!(record.age_seconds, 109);
    assert_eq!(record.idle_seconds, 10);
    let left = u64::from(config.tcp_established_timeout) - 10;
    assert_eq!(record.expires_in_seconds, left);
    assert!(!record.expired);
}

#[test]
fn a_flow_idle_past_its_lifetime_is_expired() {
    let config = Config::default();
    let syn = u64::from(config.tcp_syn_timeout);
    let at_limit = FlowRecord::new(
        &tcp_key(),
        &entry(CtState::SynSent, 10),
        (10 + syn) * SECOND,
        &config,
    );
    assert!(!at_limit.expired);
    assert_eq!(at_limit.expires_in_seconds, 0);
    let past = FlowRecord::new(
        &tcp_key(),
        &entry(CtState::SynSent, 10),
        (11 + syn) * SECOND,
        &config,
    );
    assert!(past.expired);
    assert_eq!(past.expires_in_seconds, 0);
}

#[test]
fn an_echo_flow_shows_its_identifier_instead_of_ports() {
    let key = CtKey {
        source_port: 77,
        destination_port: 0,
        protocol: 58,
        family: 6,
        source: [
            0x20, 0x01, 0x0d, 0xb8, 0, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0x10,
        ],
        destination: [
            0x20, 0x01, 0x0d, 0xb8, 0, 2, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0x10,
        ],
        _pad: [0; 2],
    };
    let record = FlowRecord::new(
        &key,
        &entry(CtState::Echo, 5),
        5 * SECOND,
        &Config::default(),
    );
    assert_eq!(record.protocol, "icmpv6");
    assert_eq!(record.echo_id, Some(77));
    assert_eq!(record.source_port, None);
    assert_eq!(record.destination_port, None);
    assert_eq!(
        record.source,
        "2001:db8:1::10".parse::<IpAddr>().expect("address")
    );
    let table = format_table(&[record], None);
    assert!(table.contains("2001:db8:1::10 id 77"), "{table}");
}

#[test]
fn an_unknown_state_is_shown_by_number_and_lives_like_other_flows() {
    let mut unknown = entry(CtState::Open, 0);
    unknown.state = 99;
    let config = Config::default();
    let record = FlowRecord::new(&tcp_key(), &unknown, SECOND, &config);
    assert_eq!(record.state, "state 99");
    assert_eq!(
        record.expires_in_seconds,
        u64::from(config.other_timeout) - 1
    );
    assert!(!record.expired);
}

#[test]
fn a_clock_behind_a_flow_stamp_counts_as_no_time_passed() {
    let record = FlowRecord::new(&tcp_key(), &entry(CtState::Open, 50), 0, &Config::default());
    assert_eq!(record.idle_seconds, 0);
    assert_eq!(record.age_seconds, 0);
}

#[test]
fn the_table_names_identities_from_the_policy() {
    let policy = crate::policy::parse_str(
        "apps:\n  frontend: {ips: [198.18.1.10]}\n  backend: {ips: [198.18.2.10]}\npolicies:\n  - {source: frontend, destination: backend, protocol: tcp, ports: 8081}\n",
        "test",
    )
    .expect("policy");
    let mut e = entry(CtState::Established, 1);
    e.source_identity = policy.apps[0].identity;
    e.destination_identity = policy.apps[1].identity;
    let record = FlowRecord::new(&tcp_key(), &e, SECOND, &Config::default());
    let table = format_table(std::slice::from_ref(&record), Some(&policy));
    assert!(table.contains("198.18.1.10:40000"), "{table}");
    assert!(table.contains("198.18.2.10:8081"), "{table}");
    assert!(table.contains("frontend -> backend"), "{table}");
    assert!(table.ends_with("1 flow\n"), "{table}");
    let unnamed = format_table(&[record], None);
    assert!(unnamed.contains(&format!(
        "{} -> {}",
        e.source_identity, e.destination_identity
    )));
}

#[test]
fn json_records_carry_addresses_as_text() {
    let record = FlowRecord::new(
        &tcp_key(),
        &entry(CtState::Established, 1),
        SECOND,
        &Config::default(),
    );
    let json = serde_json::to_value(&record).expect("serialize");
    assert_eq!(json["source"], "198.18.1.10");
    assert_eq!(json["destination_port"], 8081);
    assert_eq!(json["rule_id"], 1);
    assert_eq!(json["state"], "established");
}

#[test]
fn pins_sit_in_the_datapath_layout_directory_under_their_map_names() {
    let dir = crate::datapath::pinning::directory(std::path::Path::new("/sys/fs/bpf/firewall"));
    assert_eq!(std::path::Path::new(PIN_DIR), dir);
    for (path, name) in [
        (CONNTRACK_PIN, firewall_common::conntrack::CONNTRACK),
        (CONFIG_PIN, firewall_common::conntrack::CONFIG),
        (STATS_PIN, firewall_common::maps::DATAPATH_STATS),
    ] {
        assert_eq!(std::path::Path::new(path), dir.join(name));
    }
}

#[test]
fn the_coarse_monotonic_clock_moves_forward() {
    let first = monotonic_coarse_ns().expect("clock");
    let second = monotonic_coarse_ns().expect("clock");
    assert!(first > 0);
    assert!(second >= first);
}
