//! Every kind of bad input gives one error naming the file, line, field and problem.

use super::super::{PolicyError, Problem, load, parse_str};

/// Apps and a network the rules below refer to; four lines, so rules start on line 5.
const HEADER: &str = "\
apps:
  web: {ips: [198.18.1.10]}
  api: {ips: [198.18.2.10]}
networks: {db: {cidrs: [198.19.0.0/16]}}
";

/// The error of loading `text`.
fn error(text: &str) -> PolicyError {
    match parse_str(text, "test.yaml") {
        Ok(policy) => panic!("loaded a bad policy: {policy:?}"),
        Err(error) => error,
    }
}

/// Checks that loading `text` fails at `line` on `field`, with a message containing `says`.
fn assert_error(text: &str, line: usize, field: &str, says: &str) -> PolicyError {
    let error = error(text);
    let shown = error.to_string();
    let prefix = format!("test.yaml:{line}:");
    assert!(
        shown.starts_with(&prefix),
        "{shown:?} does not start with {prefix:?}"
    );
    assert!(
        shown.contains(&format!(": {field}: ")),
        "{shown:?} names no field {field:?}"
    );
    assert!(shown.contains(says), "{shown:?} does not say {says:?}");
    error
}

/// Checks that the rule `rule`, the first after [`HEADER`], fails on its `field`.
fn assert_rule_error(rule: &str, field: &str, says: &str) -> PolicyError {
    let text = format!("{HEADER}policies:\n  - {rule}\n");
    assert_error(&text, 6, &format!("policies[0].{field}"), says)
}

#[test]
fn yaml_syntax_error_names_line_and_column() {
    let shown = error("apps:\n  web: {ips: [1.2.3.4}\n").to_string();
    let expected = "test.yaml:2:14: invalid YAML: mismatched bracket '[' closed by '}'";
    assert!(shown.starts_with(expected), "{shown}");
    assert!(!shown.contains('\n'), "{shown}");
}

#[test]
fn repeated_key_is_a_syntax_error() {
    let shown = error("apps:\n  web: {}\n  web: {}\n").to_string();
    assert!(
        shown.starts_with("test.yaml:3:3: invalid YAML: "),
        "{shown}"
    );
    assert!(shown.contains("duplicate"), "{shown}");
}

#[test]
fn two_documents_are_refused() {
    let shown = error("apps: {}\n---\napps: {}\n").to_string();
    assert!(shown.starts_with("test.yaml:3:"), "{shown}");
}

#[test]
fn unknown_fields_are_refused_everywhere() {
    let shown = assert_error("apps: {}\nrules: []\n", 2, "rules", "unknown field `rules`");
    assert!(
        shown.to_string().contains("apps, networks, policies"),
        "{shown}"
    );
    let app = "apps:\n  web: {ip: [1.2.3.4]}\n";
    assert_error(app, 2, "apps.web.ip", "expected one of: org, space, ips");
    let network = "networks:\n  db: {cidr: [10.0.0.0/8]}\n";
    assert_error(network, 2, "networks.db.cidr", "unknown field `cidr`");
    let rule = "{source: web, destination: api, protocol: tcp, port: 80}";
    assert_rule_error(rule, "port", "unknown field `port`");
}

#[test]
fn unknown_fields_report_their_column() {
    let error = error("apps:\n  web: {ips: [], owner: me}\n");
    let shown = error.to_string();
    assert!(
        shown.starts_with("test.yaml:2:18: apps.web.owner: "),
        "{shown}"
    );
    assert_eq!(
        error.position().map(|at| (at.line, at.column)),
        Some((2, 18))
    );
}

#[test]
fn missing_rule_fields_are_named() {
    let text = format!("{HEADER}policies:\n  - {{source: web, destination: api}}\n");
    assert_error(&text, 6, "policies[0]", "missing field `protocol`");
    let text = format!("{HEADER}policies:\n  - {{destination: api, protocol: all}}\n");
    assert_error(&text, 6, "policies[0]", "missing field `source`");
}

#[test]
fn unknown_names_in_rules_are_refused() {
    let rule = "{source: wbe, destination: api, protocol: tcp}";
    assert_rule_error(rule, "source", "no app or network is named `wbe`");
    let rule = "{source: web, destination: dbs, protocol: tcp}";
    assert_rule_error(rule, "destination", "`dbs`");
}

#[test]
fn bad_addresses_are_refused() {
    let text = "apps:\n  web: {ips: [198.18.1.10, 198.18.1.300]}\n";
    assert_error(
        text,
        2,
        "apps.web.ips[1]",
        "`198.18.1.300` is not an IPv4 or IPv6 address",
    );
    let text = "apps:\n  web:\n    ips:\n      - 2001:db8::1::2\n";
    assert_error(text, 4, "apps.web.ips[0]", "not an IPv4 or IPv6 address");
    let text = "apps:\n  web: {ips: [80]}\n";
    assert_error(
        text,
        2,
        "apps.web.ips[0]",
        "expected an IP address, found a number",
    );
}

#[test]
fn bad_cidrs_are_refused() {
    let text = "networks:\n  db: {cidrs: [10.0.0.0/33]}\n";
    assert_error(
        text,
        2,
        "networks.db.cidrs[0]",
        "`10.0.0.0/33` is not a CIDR",
    );
    let text = "networks:\n  db: {cidrs: [10.0.0.5]}\n";
    assert_error(text, 2, "networks.db.cidrs[0]", "is not a CIDR");
}

#[test]
fn cidr_with_host_bits_suggests_the_network() {
    let text = "networks:\n  db:\n    cidrs: [198.19.10.0/24, 198.19.10.1/24]\n";
    let says = "198.19.10.1/24 has host bits set; did you mean 198.19.10.0/24?";
    let error = assert_error(text, 3, "networks.db.cidrs[1]", says);
    assert!(matches!(
        error,
        PolicyError::Invalid {
            problem: Problem::HostBitsSet { .. },
            ..
        }
    ));
    let text = "networks:\n  db: {cidrs: [\"2001:db8::1/64\"]}\n";
    assert_error(
        text,
        2,
        "networks.db.cidrs[0]",
        "did you mean 2001:db8::/64?",
    );
}

#[test]
fn bad_ports_are_refused() {
    let rule =
        |ports: &str| format!("{{source: web, destination: api, protocol: tcp, ports: {ports}}}");
    assert_rule_error(&rule("0"), "ports", "port 0 is out of range 1-65535");
    assert_rule_error(
        &rule("65536"),
        "ports",
        "port 65536 is out of range 1-65535",
    );
    assert_rule_error(&rule("-1"), "ports", "port -1 is out of range");
    assert_rule_error(&rule("0-10"), "ports", "port 0 is out of range");
    assert_rule_error(&rule("1-70000"), "ports", "port 70000 is out of range");
    assert_rule_error(&rule("9010-9000"), "ports", "range 9010-9000 is reversed");
    assert_rule_error(
        &rule("http"),
        "ports",
        "`http` is not a port or a port range",
    );
    assert_rule_error(&rule("80-"), "ports", "`80-` is not a port");
    assert_rule_error(&rule("1-2-3"), "ports", "`1-2-3` is not a port");
    assert_rule_error(
        &rule("8.5"),
        "ports",
        "expected a port or \"start-end\" range",
    );
    assert_rule_error(&rule("[80, 443]"), "ports", "found a list");
}

#[test]
fn unknown_protocol_lists_the_valid_ones() {
    let rule = "{source: web, destination: api, protocol: http}";
    let says = "unknown protocol `http`; expected one of: tcp, udp, sctp, icmp, icmpv6, all";
    assert_rule_error(rule, "protocol", says);
    assert_rule_error(
        "{source: web, destination: api, protocol: TCP}",
        "protocol",
        "`TCP`",
    );
}

#[test]
fn fields_foreign_to_the_protocol_are_refused() {
    let rule = "{source: web, destination: api, protocol: icmp, ports: 80}";
    assert_rule_error(rule, "ports", "`ports` does not apply to protocol icmp");
    let rule = "{source: web, destination: api, protocol: icmpv6, ports: 80}";
    assert_rule_error(rule, "ports", "does not apply to protocol icmpv6");
    let rule = "{source: web, destination: api, protocol: all, ports: 80}";
    assert_rule_error(rule, "ports", "does not apply to protocol all");
    let rule = "{source: web, destination: api, protocol: all, type: 8}";
    assert_rule_error(rule, "type", "`type` does not apply to protocol all");
    let rule = "{source: web, destination: api, protocol: tcp, code: 0}";
    assert_rule_error(rule, "code", "`code` does not apply to protocol tcp");
}

#[test]
fn bad_icmp_type_and_code_are_refused() {
    let rule = "{source: web, destination: api, protocol: icmp, type: 256}";
    assert_rule_error(
        rule,
        "type",
        "`256` is not an ICMP type; expected a number in 0-255",
    );
    let rule = "{source: web, destination: api, protocol: icmp, type: 3, code: -1}";
    assert_rule_error(rule, "code", "`-1` is not an ICMP code");
    let rule = "{source: web, destination: api, protocol: icmpv6, type: echo}";
    assert_rule_error(rule, "type", "`echo` is not an ICMP type");
    let rule = "{source: web, destination: api, protocol: icmp, code: 0}";
    assert_rule_error(rule, "code", "an ICMP code needs a `type`");
}

#[test]
fn an_address_in_two_apps_names_both() {
    let text = "apps:\n  web: {ips: [198.18.1.10]}\n  api: {ips: [\"198.18.1.10\"]}\n";
    let says = "198.18.1.10 already belongs to app `web` (line 2)";
    assert_error(text, 3, "apps.api.ips[0]", says);
}

#[test]
fn an_address_twice_in_one_app_is_refused() {
    let text = "apps:\n  web:\n    ips:\n      - 2001:db8::1\n      - 2001:db8:0::1\n";
    let says = "2001:db8::1 is listed twice (first as apps.web.ips[0], line 4)";
    assert_error(text, 5, "apps.web.ips[1]", says);
}

#[test]
fn a_cidr_in_two_networks_is_refused() {
    let text = "networks:\n  a: {cidrs: [10.0.0.0/8]}\n  b: {cidrs: [10.0.0.0/8]}\n";
    assert_error(
        text,
        3,
        "networks.b.cidrs[0]",
        "10.0.0.0/8 already belongs to network `a`",
    );
    let text = "apps: {web: {ips: [10.0.0.1]}}\nnetworks: {a: {cidrs: [10.0.0.1/32]}}\n";
    assert_error(
        text,
        2,
        "networks.a.cidrs[0]",
        "10.0.0.1 already belongs to app `web`",
    );
}

#[test]
fn reserved_and_clashing_names_are_refused() {
    let says = "`world` is reserved";
    assert_error("apps:\n  world: {}\n", 2, "apps.world", says);
    assert_error(
        "networks:\n  world: {cidrs: []}\n",
        2,
        "networks.world",
        says,
    );
    let text = "apps:\n  web: {}\nnetworks:\n  web: {cidrs: [10.0.0.0/8]}\n";
    assert_error(
        text,
        4,
        "networks.web",
        "`web` already names an app (line 2)",
    );
    assert_error(
        "apps:\n  \"\": {}\n",
        2,
        "apps.\"\"",
        "a name must not be empty",
    );
    assert_error(
        "apps:\n  true: {}\n",
        2,
        "apps",
        "expected a name, found a boolean",
    );
}

#[test]
fn wrong_kinds_of_node_are_refused() {
    assert_error("- web\n", 1, "", "expected a mapping, found a list");
    assert_error(
        "apps: [web]\n",
        1,
        "apps",
        "expected a mapping of names, found a list",
    );
    assert_error(
        "apps:\n  web: {ips: 1.2.3.4}\n",
        2,
        "apps.web.ips",
        "expected a list",
    );
    assert_error(
        "apps:\n  web:\n",
        2,
        "apps.web",
        "expected a mapping, found nothing",
    );
    assert_error(
        "apps:\n  web: {org: 7}\n",
        2,
        "apps.web.org",
        "expected a string",
    );
    let text = format!("{HEADER}policies:\n  - web\n");
    assert_error(
        &text,
        6,
        "policies[0]",
        "expected a mapping, found a string",
    );
    assert_error("policies: {a: b}\n", 1, "policies", "expected a list");
}

#[test]
fn too_many_rules_are_refused_at_the_first_one_over() {
    let rules = "  - {source: web, destination: api, protocol: all}\n".repeat(4);
    let text = format!("{HEADER}policies:\n{rules}");
    assert!(load::load(&text, "test.yaml", 4).is_ok());
    let shown = load::load(&text, "test.yaml", 3).unwrap_err().to_string();
    let expected = "test.yaml:9:5: policies[3]: too many rules: at most 3 fit the rule counters";
    assert_eq!(shown, expected);
}

#[test]
fn the_rule_limit_follows_the_rule_counters() {
    assert_eq!(load::MAX_RULES, firewall_common::maps::capacity::RULES - 1);
}

#[test]
fn unreadable_file_names_the_path() {
    let path = std::path::Path::new("/nonexistent/policy.yaml");
    let shown = super::super::load_file(path).unwrap_err().to_string();
    assert!(
        shown.starts_with("/nonexistent/policy.yaml: cannot read: "),
        "{shown}"
    );
}
