//! `firewall flows` without a daemon: its command line, request and table.

use clap::Parser;

use super::*;
use crate::{
    client::ClientCommand,
    flows::{FlowVerdict, Icmp, sample},
};

#[derive(Parser)]
struct Cli {
    #[command(subcommand)]
    command: ClientCommand,
}

fn parse(args: &[&str]) -> Result<FlowsArgs, String> {
    let cli = Cli::try_parse_from(["firewall", "flows"].iter().chain(args).copied())
        .map_err(|e| e.to_string())?;
    match cli.command {
        ClientCommand::Flows(args) => Ok(args),
        _ => Err("not flows".into()),
    }
}

#[test]
fn options_become_the_query() {
    let args = parse(&[
        "--verdict",
        "drop",
        "--app",
        "front end",
        "--limit",
        "5",
        "--follow",
    ])
    .expect("parses");
    assert_eq!(
        path(&args),
        "/v1/flows?verdict=drop&app=front%20end&limit=5&follow=true"
    );
    assert_eq!(path(&parse(&[]).expect("parses")), "/v1/flows");
    let allow = parse(&["--verdict", "allow", "--json"]).expect("parses");
    assert_eq!(path(&allow), "/v1/flows?verdict=allow");
    assert!(allow.json);
}

#[test]
fn bad_options_are_refused_naming_them() {
    for (args, flag) in [
        (&["--limit", "0"][..], "--limit"),
        (&["--limit", "many"][..], "--limit"),
        (&["--verdict", "maybe"][..], "--verdict"),
    ] {
        let message = parse(args).expect_err("refused");
        assert!(message.contains(flag), "{args:?}: {message}");
    }
}

#[test]
fn a_drop_and_an_opened_flow_in_the_table() {
    let mut drop = sample(FlowVerdict::Drop, "frontend", "backend");
    drop.time = "2026-12-03T19:19:06.123456789Z".into();
    drop.reason = "denied-by-default".into();
    drop.default_deny = true;
    drop.source.address = Some("198.18.1.10".parse().expect("address"));
    drop.source.port = Some(40312);
    drop.destination.address = Some("2001:db8:2::10".parse().expect("address"));
    drop.destination.port = Some(9999);
    let mut allow = sample(FlowVerdict::Allow, "monitor", "");
    allow.protocol = Some("icmp".into());
    allow.icmp = Some(Icmp {
        icmp_type: 8,
        code: 0,
    });
    allow.source.address = Some("198.18.3.10".parse().expect("address"));
    allow.destination.address = Some("198.18.9.9".parse().expect("address"));
    allow.rule_id = Some(6);
    allow.rule = Some("monitor -> backend icmp type 8".into());
    let list = FlowList {
        flows: vec![drop.clone(), allow],
        counts: FlowCounts {
            received: 12,
            rate_limited: 3,
            lost: 1,
        },
    };
    let text = table(&list);
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines.len(), 4, "{text}");
    assert!(lines[0].starts_with("Time "), "{text}");
    for expected in [
        "2026-12-03 19:19:06.123",
        "drop",
        "denied-by-default",
        "frontend/198.18.1.10:40312 -> backend/[2001:db8:2::10]:9999",
        "default deny",
    ] {
        assert!(
            lines[1].contains(expected),
            "{expected} missing: {}",
            lines[1]
        );
    }
    for expected in [
        "allow",
        "monitor/198.18.3.10 -> 198.18.9.9",
        "icmp 8/0",
        "#6 monitor -> backend icmp type 8",
    ] {
        assert!(
            lines[2].contains(expected),
            "{expected} missing: {}",
            lines[2]
        );
    }
    assert!(
        lines[3].contains("12 records received, 3 rate-limited")
            && lines[3].contains("1 lost (ring buffer full)"),
        "{}",
        lines[3]
    );

    drop.tcp_flags = Some(vec!["SYN".into(), "ACK".into()]);
    drop.protocol = Some("tcp".into());
    let row = fixed(&cells(&drop));
    assert!(
        row.contains("tcp SYN,ACK") && row.ends_with("default deny\n"),
        "{row}"
    );
    let empty = FlowList {
        flows: Vec::new(),
        counts: FlowCounts::default(),
    };
    assert!(table(&empty).starts_with("No flow records.\n"));
}

#[test]
fn a_follower_is_told_what_it_missed() {
    let counts = StreamCounts {
        counts: FlowCounts {
            received: 5,
            rate_limited: 0,
            lost: 0,
        },
        missed: 7,
    };
    let line = stream_counts(&counts);
    assert!(
        line.starts_with("-- Since the daemon started: 5 records"),
        "{line}"
    );
    assert!(line.contains("7 records missed by this client"), "{line}");
    let none_missed = stream_counts(&StreamCounts {
        missed: 0,
        ..counts
    });
    assert!(!none_missed.contains("missed"), "{none_missed}");
}
