//! Loading whole policy files: the example, identities, compiled entries, descriptions.

use firewall_common::identity::reserved;
use firewall_common::{PolicyKey, PolicyValue};

use super::*;

mod errors;

/// The example shipped in `examples/policy.yaml`.
const EXAMPLE: &str = include_str!("../../../examples/policy.yaml");

fn example() -> Policy {
    match parse_str(EXAMPLE, "examples/policy.yaml") {
        Ok(policy) => policy,
        Err(error) => panic!("the example does not load: {error}"),
    }
}

#[test]
fn example_apps_and_networks_get_identities_in_file_order() {
    let policy = example();
    let apps: Vec<_> = policy
        .apps
        .iter()
        .map(|app| (app.name.as_str(), app.identity))
        .collect();
    assert_eq!(
        apps,
        [("frontend", 256), ("backend", 257), ("reports", 258)]
    );
    assert_eq!(policy.networks[0].name, "legacy-db");
    assert_eq!(policy.networks[0].identity, 259);
    let frontend = &policy.apps[0];
    assert_eq!(frontend.org.as_deref(), Some("bank"));
    assert_eq!(frontend.space.as_deref(), Some("prod"));
    let ips: Vec<IpAddr> = vec![
        "198.18.1.10".parse().unwrap(),
        "2001:db8:1::10".parse().unwrap(),
    ];
    assert_eq!(frontend.ips, ips);
    assert_eq!(policy.identity_name(259), Some("legacy-db"));
    assert_eq!(policy.identity_name(reserved::WORLD), Some("world"));
    assert_eq!(policy.identity_name(999), None);
}

#[test]
fn example_rules_are_numbered_in_file_order() {
    let policy = example();
    let expected = [
        (
            1,
            256,
            257,
            Protocol::Tcp(Some(PortRange {
                start: 8081,
                end: 8081,
            })),
        ),
        (
            2,
            256,
            257,
            Protocol::Tcp(Some(PortRange {
                start: 9000,
                end: 9010,
            })),
        ),
        (3, 256, 257, Protocol::Icmp(IcmpMatch::default())),
        (
            4,
            257,
            259,
            Protocol::Tcp(Some(PortRange {
                start: 1521,
                end: 1521,
            })),
        ),
        (
            5,
            258,
            256,
            Protocol::Icmpv6(IcmpMatch {
                icmp_type: Some(128),
                code: None,
            }),
        ),
        (6, 258, 257, Protocol::Sctp(None)),
    ];
    let rules: Vec<_> = policy
        .rules
        .iter()
        .map(|rule| (rule.id, rule.source, rule.destination, rule.protocol))
        .collect();
    assert_eq!(rules, expected);
    let first_rule_line = EXAMPLE
        .lines()
        .position(|line| line.contains("ports: 8081"));
    assert_eq!(
        first_rule_line.map(|index| index + 1),
        Some(policy.rules[0].line)
    );
    assert_eq!(policy.rule(4).map(|rule| rule.destination), Some(259));
    assert!(policy.rule(0).is_none());
    assert!(policy.rule(7).is_none());
}

#[test]
fn example_rules_describe_themselves() {
    let policy = example();
    let descriptions: Vec<String> = policy
        .rules
        .iter()
        .map(|rule| policy.describe_rule(rule))
        .collect();
    let expected = [
        "frontend -> backend tcp 8081",
        "frontend -> backend tcp 9000-9010",
        "frontend -> backend icmp",
        "backend -> legacy-db tcp 1521",
        "reports -> frontend icmpv6 type 128",
        "reports -> backend sctp",
    ];
    assert_eq!(descriptions, expected);
}

#[test]
fn describe_rule_covers_every_shape() {
    let text = "
apps:
  a: {}
  b: {}
policies:
  - {source: a, destination: b, protocol: all}
  - {source: world, destination: b, protocol: icmp, type: 3, code: 4}
  - {source: a, destination: world, protocol: udp}
";
    let policy = parse_str(text, "shapes.yaml").unwrap();
    let describe = |id| policy.rule(id).map(|rule| policy.describe_rule(rule));
    assert_eq!(describe(1).as_deref(), Some("a -> b all"));
    assert_eq!(
        describe(2).as_deref(),
        Some("world -> b icmp type 3 code 4")
    );
    assert_eq!(describe(3).as_deref(), Some("a -> world udp"));
    assert_eq!(policy.rules[1].source, reserved::WORLD);
}

#[test]
fn example_compiles_to_the_expected_maps() {
    let compiled = example().compile();
    let v4: Vec<(String, Identity)> = compiled
        .ipcache_v4
        .iter()
        .map(|(prefix, identity)| (prefix.to_string(), *identity))
        .collect();
    let expected_v4 = [
        ("198.18.1.10/32".to_owned(), 256),
        ("198.18.2.10/32".to_owned(), 257),
        ("198.19.10.0/24".to_owned(), 259),
    ];
    assert_eq!(v4, expected_v4);
    let v6: Vec<(String, Identity)> = compiled
        .ipcache_v6
        .iter()
        .map(|(prefix, identity)| (prefix.to_string(), *identity))
        .collect();
    assert_eq!(
        v6,
        [
            ("2001:db8:1::10/128".to_owned(), 256),
            ("2001:db8:2::20/128".to_owned(), 258)
        ]
    );

    let entry = |prefix_len, source, destination, protocol, port, rule_id| PolicyEntry {
        prefix_len,
        key: PolicyKey::new(source, destination, protocol, port),
        value: PolicyValue { rule_id },
    };
    let expected = vec![
        entry(PolicyKey::PREFIX_FULL, 256, 257, 6, 8081, 1),
        // 9000-9010: 9000-9007 (13 port bits), 9008-9009 (15), 9010 (16).
        entry(PolicyKey::PREFIX_FULL - 3, 256, 257, 6, 9000, 2),
        entry(PolicyKey::PREFIX_FULL - 1, 256, 257, 6, 9008, 2),
        entry(PolicyKey::PREFIX_FULL, 256, 257, 6, 9010, 2),
        entry(PolicyKey::PREFIX_ANY_PORT, 256, 257, 1, 0, 3),
        entry(PolicyKey::PREFIX_FULL, 257, 259, 6, 1521, 4),
        entry(PolicyKey::PREFIX_ANY_PORT + 8, 258, 256, 58, 128 << 8, 5),
        entry(PolicyKey::PREFIX_ANY_PORT, 258, 257, 132, 0, 6),
    ];
    assert_eq!(compiled.policy, expected);
    assert_eq!(compiled.max_rule_id, 6);
}

#[test]
fn empty_and_comment_only_files_are_empty_policies() {
    assert_eq!(parse_str("", "empty.yaml").unwrap(), Policy::default());
    assert_eq!(
        parse_str("# nothing yet\n", "empty.yaml").unwrap(),
        Policy::default()
    );
    let empty_sections = "apps:\nnetworks:\npolicies:\n";
    assert_eq!(
        parse_str(empty_sections, "empty.yaml").unwrap(),
        Policy::default()
    );
}

#[test]
fn quoted_ports_and_spaced_ranges_are_accepted() {
    let text = "
apps: {a: {}}
policies:
  - {source: a, destination: a, protocol: tcp, ports: \"443\"}
  - {source: a, destination: a, protocol: udp, ports: 1000 - 2000}
";
    let policy = parse_str(text, "t.yaml").unwrap();
    assert_eq!(
        policy.rules[0].protocol,
        Protocol::Tcp(Some(PortRange {
            start: 443,
            end: 443
        }))
    );
    let range = PortRange {
        start: 1000,
        end: 2000,
    };
    assert_eq!(policy.rules[1].protocol, Protocol::Udp(Some(range)));
}

#[test]
fn app_addresses_inside_a_network_are_allowed() {
    let text = "
apps: {db: {ips: [10.1.2.3]}}
networks: {lan: {cidrs: [10.0.0.0/8]}}
";
    let compiled = parse_str(text, "t.yaml").unwrap().compile();
    assert_eq!(compiled.ipcache_v4.len(), 2);
}

#[test]
fn load_file_reads_the_example() {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples/policy.yaml");
    let policy = load_file(&path).unwrap();
    assert_eq!(policy, example());
}

#[test]
fn anchors_and_merge_keys_are_expanded() {
    let text = "
apps:
  frontend: &bank {org: bank, space: prod}
  backend: {<<: *bank, ips: [10.0.0.2]}
";
    let policy = parse_str(text, "t.yaml").unwrap();
    assert_eq!(policy.apps[1].org.as_deref(), Some("bank"));
    assert_eq!(policy.apps[1].space.as_deref(), Some("prod"));
}
