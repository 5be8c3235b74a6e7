//! Command-line parsing and rendering of the client, without a daemon.

use std::path::Path;

use clap::Parser;
use serde_json::json;

use super::{
    ClientCommand, ClientError, PortRange, Protocol,
    commands::{apps_table, egress_table, encode, policies_table},
    table::render_fields,
};
use crate::api::wire::{AppList, AppView, PolicyList};

#[derive(Parser)]
struct Cli {
    #[command(subcommand)]
    command: ClientCommand,
}

fn parse(args: &[&str]) -> Result<ClientCommand, clap::Error> {
    Cli::try_parse_from(std::iter::once("firewall").chain(args.iter().copied()))
        .map(|cli| cli.command)
}

#[test]
fn port_ranges_parse_like_the_cf_cli() {
    assert_eq!(
        "8080".parse(),
        Ok(PortRange {
            start: 8080,
            end: 8080
        })
    );
    assert_eq!(
        "8080-8090".parse(),
        Ok(PortRange {
            start: 8080,
            end: 8090
        })
    );
    for bad in ["0", "65536", "9000-8000", "http", "1-", "-5", ""] {
        assert!(bad.parse::<PortRange>().is_err(), "{bad:?} accepted");
    }
    assert_eq!(PortRange { start: 1, end: 1 }.to_string(), "1");
    assert_eq!(PortRange { start: 1, end: 9 }.to_string(), "1-9");
}

#[test]
fn add_network_policy_defaults_to_tcp_8080() {
    let command = parse(&[
        "add-network-policy",
        "frontend",
        "--destination-app",
        "backend",
    ])
    .expect("parses");
    let ClientCommand::AddNetworkPolicy {
        source,
        destination,
        protocol,
        port,
        json,
    } = command
    else {
        panic!("wrong command: {command:?}");
    };
    assert_eq!(
        (source.as_str(), destination.as_str()),
        ("frontend", "backend")
    );
    assert_eq!(protocol, Protocol::Tcp);
    assert_eq!(
        port,
        PortRange {
            start: 8080,
            end: 8080
        }
    );
    assert!(!json);
}

#[test]
fn usage_errors_are_clap_errors() {
    // clap exits with 2 on these, the code this client uses for bad local input.
    for args in [
        &[
            "add-network-policy",
            "a",
            "--destination-app",
            "b",
            "--port",
            "0",
        ][..],
        &[
            "add-network-policy",
            "a",
            "--destination-app",
            "b",
            "--protocol",
            "icmp",
        ],
        &["remove-network-policy", "a", "--destination-app", "b"],
        &["register-app", "a"],
        &["register-app", "a", "--ip", "300.1.1.1"],
        &["add-network", "n", "--cidr", "10.0.0.0/33"],
    ] {
        let error = parse(args).expect_err("should not parse");
        assert_eq!(error.exit_code(), 2, "{args:?}");
    }
}

#[test]
fn repeated_and_comma_separated_values_collect() {
    let command = parse(&[
        "register-app",
        "frontend",
        "--ip",
        "198.18.1.10,2001:db8::1",
        "--ip",
        "198.18.1.11",
    ])
    .expect("parses");
    let ClientCommand::RegisterApp { ips, .. } = command else {
        panic!("wrong command");
    };
    assert_eq!(ips.len(), 3);
}

#[test]
fn policies_table_aligns_columns() {
    let list: PolicyList = serde_json::from_value(json!({
        "total_policies": 2,
        "policies": [
            {"source": {"id": "frontend"}, "destination":
                {"id": "backend", "protocol": "tcp", "ports": {"start": 8080, "end": 8090}}},
            {"source": {"id": "monitor"}, "destination":
                {"id": "db", "protocol": "udp", "ports": {"start": 53, "end": 53}}}
        ]
    }))
    .expect("list");
    assert_eq!(
        policies_table(&list),
        "Source    Destination  Protocol  Ports\n\
         frontend  backend      tcp       8080-8090\n\
         monitor   db           udp       53\n"
    );
    assert_eq!(
        policies_table(&PolicyList::default()),
        "No network policies.\n"
    );
}

#[test]
fn apps_and_egress_tables_leave_missing_cells_empty() {
    let list = AppList {
        apps: vec![AppView {
            name: "monitor".into(),
            org: None,
            space: None,
            ips: vec!["198.18.3.10".parse().expect("ip")],
            identity: Some(7),
        }],
    };
    assert_eq!(
        apps_table(&list),
        "Name     Org  Space  IPs          Identity\nmonitor              198.18.3.10  7\n"
    );
    let rules = [json!({"protocol": "icmp", "destination": "0.0.0.0/0", "type": 8, "code": 0})];
    assert_eq!(
        egress_table("monitor", &rules),
        "Protocol  Destination  Ports  Type  Code  Description\n\
         icmp      0.0.0.0/0           8     0\n"
    );
}

#[test]
fn status_fields_flatten_with_dots() {
    // Keys in alphabetical order: serde_json may or may not keep insertion order.
    let status = json!({"counts": {"apps": 2, "policies": 5}, "datapath": null,
        "interfaces": ["eth0", "eth1"], "revision": 3});
    assert_eq!(
        render_fields(&status),
        "counts.apps:      2\n\
         counts.policies:  5\n\
         datapath:\n\
         interfaces:       eth0, eth1\n\
         revision:         3\n"
    );
}

#[test]
fn names_are_percent_encoded() {
    assert_eq!(encode("front-end_1.x~"), "front-end_1.x~");
    assert_eq!(encode("a b/c?d#e%"), "a%20b%2Fc%3Fd%23e%25");
}

#[test]
fn exit_codes_separate_refusal_input_and_reachability() {
    let unreachable = ClientError::Unreachable {
        path: Path::new("/run/firewall/firewall.sock").into(),
        source: std::io::ErrorKind::NotFound.into(),
    };
    assert_eq!(unreachable.exit_code(), 3);
    assert!(unreachable.to_string().starts_with(
        "cannot reach the firewall daemon at /run/firewall/firewall.sock: start it with \
         `firewall daemon` (or `systemctl start firewall`)"
    ));
    let refused = ClientError::Refused {
        status: 403,
        message: "policy quota exceeded".into(),
    };
    assert_eq!(refused.exit_code(), 1);
    assert_eq!(ClientError::Input("bad".into()).exit_code(), 2);
}
