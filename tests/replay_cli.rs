//! `firewall replay` as users run it: a policy file and a capture in, one JSON line per
//! packet out, for pcap and pcapng and both hooks. Needs root.

mod support;

use std::{
    borrow::Cow,
    path::Path,
    process::{Command, Output},
    time::Duration,
};

use pcap_file::{
    DataLink,
    pcap::{PcapHeader, PcapPacket, PcapWriter},
    pcapng::{
        Block, PcapNgWriter,
        blocks::{
            enhanced_packet::EnhancedPacketBlock, interface_description::InterfaceDescriptionBlock,
        },
    },
};
use serde_json::Value;
use support::{packets::*, scratch::Scratch, *};

fn frames() -> Vec<Vec<u8>> {
    vec![
        tcp4(FRONTEND, BACKEND, 8081),
        tcp4(FRONTEND, BACKEND, 8082),
        ethernet(ETH_ARP, &[], &arp(FRONTEND, BACKEND)),
        tcp6(FRONTEND6, BACKEND6, 9005),
        ethernet(
            ETH_IPV4,
            &[],
            &ipv4_with(FRONTEND, BACKEND, TCP, &[], 0x0003, &[0; 16]),
        ),
    ]
}

fn pcap(frames: &[Vec<u8>], datalink: DataLink) -> Vec<u8> {
    let header = PcapHeader {
        datalink,
        ..PcapHeader::default()
    };
    let mut writer = PcapWriter::with_header(Vec::new(), header).expect("pcap header");
    for (i, f) in frames.iter().enumerate() {
        let packet = PcapPacket::new(Duration::from_millis(i as u64), f.len() as u32, f);
        writer.write_packet(&packet).expect("pcap packet");
    }
    writer.into_writer()
}

fn pcapng(frames: &[Vec<u8>]) -> Vec<u8> {
    let mut writer = PcapNgWriter::new(Vec::new()).expect("pcapng section");
    let interface = InterfaceDescriptionBlock::new(DataLink::ETHERNET, 0);
    writer
        .write_block(&Block::InterfaceDescription(interface))
        .expect("pcapng interface");
    for (i, f) in frames.iter().enumerate() {
        let packet = EnhancedPacketBlock {
            interface_id: 0,
            timestamp: Duration::from_millis(i as u64),
            original_len: f.len() as u32,
            data: Cow::Borrowed(f),
            options: Vec::new(),
        };
        writer
            .write_block(&Block::EnhancedPacket(packet))
            .expect("pcapng packet");
    }
    writer.into_inner()
}

fn replay(policy: &Path, capture: &Path, hook: &str) -> Output {
    Command::new(env!("CARGO_BIN_EXE_firewall"))
        .args(["replay", "--policy"])
        .arg(policy)
        .arg("--pcap")
        .arg(capture)
        .args(["--hook", hook])
        .output()
        .expect("run firewall replay")
}

fn lines(output: &Output) -> Vec<Value> {
    assert!(
        output.status.success(),
        "replay failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8_lossy(&output.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).expect("one JSON object per line"))
        .collect()
}

fn expect_verdicts(records: &[Value]) {
    let summary: Vec<(u64, &str, &str, Option<u64>)> = records
        .iter()
        .map(|r| {
            (
                r["index"].as_u64().expect("index"),
                r["verdict"].as_str().expect("verdict"),
                r["reason"].as_str().expect("reason"),
                r["rule"].as_u64(),
            )
        })
        .collect();
    assert_eq!(
        summary,
        vec![
            (0, "allow", "policy", Some(1)),
            (1, "drop", "denied-by-default", None),
            (2, "allow", "infra-arp", None),
            (3, "allow", "policy", Some(2)),
            (4, "drop", "fragment", None),
        ]
    );
    assert_eq!(records[0]["source"], "frontend");
    assert_eq!(records[0]["destination"], "backend");
    assert_eq!(records[0]["rule_text"], "frontend -> backend tcp 8081");
}

#[test]
fn replays_pcap_and_pcapng_through_both_hooks() {
    let scratch = Scratch::new("replay");
    let policy = scratch.file("policy.yaml", POLICY.as_bytes());
    let frames = frames();
    let captures = [
        scratch.file("capture.pcap", &pcap(&frames, DataLink::ETHERNET)),
        scratch.file("capture.pcapng", &pcapng(&frames)),
    ];
    for capture in &captures {
        for hook in ["tc", "xdp"] {
            expect_verdicts(&lines(&replay(&policy, capture, hook)));
        }
    }
}

#[test]
fn a_bad_policy_names_file_line_and_field_and_replays_nothing() {
    let scratch = Scratch::new("badpolicy");
    let bad = POLICY.replace("ports: 9000-9010", "ports: 9010-9000");
    let policy = scratch.file("bad.yaml", bad.as_bytes());
    let capture = scratch.file("capture.pcap", &pcap(&frames(), DataLink::ETHERNET));
    let output = replay(&policy, &capture, "tc");
    assert!(!output.status.success());
    assert!(
        output.stdout.is_empty(),
        "nothing may be replayed with a bad policy"
    );
    let stderr = String::from_utf8_lossy(&output.stderr);
    let line = bad
        .lines()
        .position(|l| l.contains("9010-9000"))
        .expect("line")
        + 1;
    assert!(stderr.contains("bad.yaml"), "{stderr}");
    assert!(stderr.contains(&format!(":{line}:")), "{stderr}");
    assert!(stderr.contains("policies[1].ports"), "{stderr}");
}

#[test]
fn a_capture_that_is_not_ethernet_is_refused() {
    let scratch = Scratch::new("linktype");
    let policy = scratch.file("policy.yaml", POLICY.as_bytes());
    let capture = scratch.file("raw.pcap", &pcap(&frames(), DataLink::RAW));
    let output = replay(&policy, &capture, "tc");
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("Ethernet"), "{stderr}");
}
