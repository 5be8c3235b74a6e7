//! `firewall bench`: the datapath's cost per packet, measured by the kernel with
//! `BPF_PROG_TEST_RUN` over many repeats, next to empty programs measured in the same run.
//!
//! Each configuration fills the maps with `entries` policy entries (half single ports, half
//! port blocks), `prefixes` app addresses and 256 network prefixes, then runs TCP SYNs through the TC and XDP
//! programs: app to app allowed ("allow") and denied ("deny"), and app to a network prefix
//! allowed ("net"), which walks the ipcache trie.
//! The figure for a case is the median of several rounds; the kernel reports each round's
//! mean over `repeat` runs. The SYNs go to the policy every time (a SYN never rides on a
//! tracked flow), so "allow" includes the conntrack insert. The connection-tracking paths
//! are measured apart, in [`conntrack`].

mod conntrack;
mod daemon;
mod trace;

use std::net::Ipv4Addr;

use anyhow::Context as _;
use aya::programs::{TestRun, TestRunOptions};
use firewall_common::{Hook, PolicyKey, PolicyValue};
use ipnet::Ipv4Net;

use crate::{
    datapath::{Capacities, Datapath, LoadOptions},
    policy::{CompiledPolicy, PolicyEntry},
};

/// Options of `firewall bench`.
#[derive(Debug, clap::Args)]
pub struct BenchArgs {
    /// Runs per measurement (the kernel reports their mean).
    #[arg(long, default_value_t = 1_000_000)]
    pub repeat: u32,
    /// Measurements per case; the median is printed.
    #[arg(long, default_value_t = 5)]
    pub rounds: usize,
    /// Policy map sizes to measure.
    #[arg(long, value_delimiter = ',', default_values_t = [10, 10_000, 1_000_000])]
    pub entries: Vec<u32>,
    /// IPv4 ipcache prefixes in every configuration.
    #[arg(long, default_value_t = 100_000)]
    pub prefixes: u32,
    /// Tracked flows present while the conntrack paths are measured.
    #[arg(long, value_delimiter = ',', default_values_t = [10, 100_000])]
    pub flows: Vec<u32>,
    /// New flows opened (one test run each) to measure the new-flow path.
    #[arg(long, default_value_t = 20_000)]
    pub new_flows: u16,
    /// Rules present while the daemon's API latency is measured (the largest is also the
    /// import measured).
    #[arg(long, value_delimiter = ',', default_values_t = [0, 10_000, 100_000])]
    pub rules: Vec<u32>,
    /// API calls timed at each size.
    #[arg(long, default_value_t = 200)]
    pub api_calls: u32,
    /// Run one part only: the datapath paths, or the daemon's API and import. Without it,
    /// both run, the daemon part in a fresh process so its peak memory is its own.
    #[arg(long, value_enum)]
    pub only: Option<Part>,
}

/// A part of the benchmark.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum Part {
    /// Policy and connection-tracking paths through BPF_PROG_TEST_RUN.
    Datapath,
    /// API call to enforced, and a bulk import.
    Daemon,
}

/// The measured flows: 198.18.0.1 -> 198.18.0.2, TCP to port 8081 (allowed) or 8082
/// (denied), and 198.18.0.1 -> 198.19.200.7 (inside network prefix 198.19.200.0/24), 8081.
const ALLOWED_PORT: u16 = 8081;
const DENIED_PORT: u16 = 8082;
const BACKEND: [u8; 4] = [198, 18, 0, 2];
const NETWORK_HOST: [u8; 4] = [198, 19, 200, 7];
const FIRST_IDENTITY: u32 = 256;
const TCP: u8 = 6;
/// Identities of the 256 network prefixes 198.19.0.0/24 ... 198.19.255.0/24.
const FIRST_NETWORK: u32 = 1 << 24;

/// Runs the parts asked for and prints their tables.
pub fn run(args: &BenchArgs) -> anyhow::Result<()> {
    match args.only {
        Some(Part::Datapath) => datapath(args),
        Some(Part::Daemon) => daemon::run(args),
        None => {
            datapath(args)?;
            daemon::run_in_child(args)
        }
    }
}

fn datapath(args: &BenchArgs) -> anyhow::Result<()> {
    let allow = tcp_syn(BACKEND, ALLOWED_PORT);
    let deny = tcp_syn(BACKEND, DENIED_PORT);
    let net = tcp_syn(NETWORK_HOST, ALLOWED_PORT);
    println!(
        "repeat {} per round, median of {} rounds, {} ipcache prefixes",
        args.repeat, args.rounds, args.prefixes
    );
    println!(
        "{:<5} {:>9} {:<6} {:>8} {:>8} {:>10} {:>9}",
        "hook", "entries", "path", "ns/pkt", "empty", "over-empty", "vs-first"
    );
    let mut first: [Option<f64>; 6] = [None; 6];
    for &entries in &args.entries {
        let compiled = synthetic(entries, args.prefixes);
        let capacities = Capacities {
            ipcache_hosts_v4: args.prefixes.max(16),
            policy_exact: entries.max(16),
            policy: entries.max(16),
            ..Capacities::default()
        };
        let mut datapath = Datapath::load(&LoadOptions {
            capacities,
            ..LoadOptions::default()
        })?;
        datapath
            .apply(&compiled)
            .with_context(|| format!("filling {entries} entries"))?;
        let mut column = 0;
        for hook in [Hook::TcIngress, Hook::Xdp] {
            let empty = measure(&mut datapath, hook, true, &allow, args)?;
            for (path, frame) in [("allow", &allow), ("deny", &deny), ("net", &net)] {
                let ns = measure(&mut datapath, hook, false, frame, args)?;
                let base = *first[column].get_or_insert(ns);
                println!(
                    "{:<5} {:>9} {:<6} {:>8.1} {:>8.1} {:>+10.1} {:>8.2}x",
                    if hook == Hook::Xdp { "xdp" } else { "tc" },
                    entries,
                    path,
                    ns,
                    empty,
                    ns - empty,
                    ns / base
                );
                column += 1;
            }
        }
    }
    trace::run(args)?;
    conntrack::run(args)
}

/// The median over `args.rounds` of the kernel's mean time per run over `args.repeat` runs.
fn measure(
    datapath: &mut Datapath,
    hook: Hook,
    baseline: bool,
    frame: &[u8],
    args: &BenchArgs,
) -> anyhow::Result<f64> {
    let mut rounds = Vec::with_capacity(args.rounds);
    for _ in 0..args.rounds.max(1) {
        rounds.push(test_run(datapath, hook, baseline, frame, args.repeat)?);
    }
    rounds.sort_by(f64::total_cmp);
    Ok(rounds[rounds.len() / 2])
}

/// Runs `frame` `repeat` times through the hook's program (or its empty baseline); the
/// kernel's mean time per run, in nanoseconds.
fn test_run(
    datapath: &mut Datapath,
    hook: Hook,
    baseline: bool,
    frame: &[u8],
    repeat: u32,
) -> anyhow::Result<f64> {
    let options = TestRunOptions {
        data_in: Some(frame),
        repeat,
        ..TestRunOptions::new()
    };
    let result = match (hook, baseline) {
        (Hook::Xdp, true) => datapath.baseline_xdp()?.test_run(options)?,
        (Hook::Xdp, false) => datapath.xdp()?.test_run(options)?,
        (_, true) => datapath.baseline_tc()?.test_run(options)?,
        (_, false) => datapath.tc(hook)?.test_run(options)?,
    };
    Ok(result.duration.as_nanos() as f64)
}

/// A policy of `entries` entries over `prefixes` /32 app addresses and 256 /24 networks. The
/// measured pairs (identities 256 -> 257, and 256 -> the network of 198.19.200.0/24) get
/// allow entries for port 8081.
fn synthetic(entries: u32, prefixes: u32) -> CompiledPolicy {
    let base = u32::from(Ipv4Addr::new(198, 18, 0, 1));
    let ipcache_v4 = (0..prefixes)
        .map(|i| {
            let net = Ipv4Net::new(Ipv4Addr::from(base + i), 32).expect("valid /32");
            (net, FIRST_IDENTITY + i)
        })
        .chain((0..=255u8).map(|n| {
            let net = Ipv4Net::new(Ipv4Addr::new(198, 19, n, 0), 24).expect("valid /24");
            (net, FIRST_NETWORK + u32::from(n))
        }))
        .collect();
    // The other entries are between other identities, spread over the sources first so the
    // trie branches the way a real cluster's policy does; half are single ports (hash map),
    // half two-port blocks (trie), so both structures hold entries / 2 at scale. The measured
    // pair also has a block, so its denied packet walks the trie into that pair's entries.
    let others = prefixes.saturating_sub(2).max(1);
    let mut policy = vec![
        entry(FIRST_IDENTITY, FIRST_IDENTITY + 1, ALLOWED_PORT, 1),
        entry(FIRST_IDENTITY, FIRST_NETWORK + 200, ALLOWED_PORT, 2),
        block(
            FIRST_IDENTITY,
            FIRST_IDENTITY + 1,
            9000,
            PolicyKey::PREFIX_FULL - 1,
            3,
        ),
    ];
    for i in 3..entries {
        let source = FIRST_IDENTITY + 2 + i % others;
        let destination = FIRST_IDENTITY + 2 + (i / others) % others;
        let port = 443 + (i / others / others) as u16;
        let prefix_len = PolicyKey::PREFIX_FULL - i % 2;
        policy.push(block(source, destination, port, prefix_len, i % 60_000 + 1));
    }
    CompiledPolicy {
        ipcache_v4,
        ipcache_v6: Vec::new(),
        policy,
        max_rule_id: 60_000,
    }
}

fn entry(source: u32, destination: u32, port: u16, rule_id: u32) -> PolicyEntry {
    block(source, destination, port, PolicyKey::PREFIX_FULL, rule_id)
}

/// A TCP entry covering the ports that share `prefix_len - 72` leading bits with `port`.
fn block(source: u32, destination: u32, port: u16, prefix_len: u32, rule_id: u32) -> PolicyEntry {
    let mask = u16::MAX << (PolicyKey::PREFIX_FULL - prefix_len);
    PolicyEntry {
        prefix_len,
        key: PolicyKey::new(source, destination, TCP, port & mask),
        value: PolicyValue { rule_id },
    }
}

/// Ethernet + IPv4 + TCP SYN from 198.18.0.1:40000 to `destination`:`port`. Checksums are
/// not filled in: the datapath does not check them.
fn tcp_syn(destination: [u8; 4], port: u16) -> Vec<u8> {
    let mut f = ipv4_frame(destination, TCP, 40);
    f.extend_from_slice(&40000u16.to_be_bytes());
    f.extend_from_slice(&port.to_be_bytes());
    f.extend_from_slice(&[0, 0, 0, 1, 0, 0, 0, 0, 0x50, 0x02, 0xff, 0xff, 0, 0, 0, 0]);
    f
}

/// Ethernet and IPv4 headers from 198.18.0.1 to `destination`, for a datagram of
/// `total_len` bytes whose transport header and payload the caller appends.
fn ipv4_frame(destination: [u8; 4], protocol: u8, total_len: u16) -> Vec<u8> {
    let mut f = Vec::with_capacity(14 + usize::from(total_len));
    f.extend_from_slice(&[0x02, 0, 0, 0, 0, 2, 0x02, 0, 0, 0, 0, 1, 0x08, 0x00]);
    f.extend_from_slice(&[0x45, 0]);
    f.extend_from_slice(&total_len.to_be_bytes());
    f.extend_from_slice(&[0, 1, 0x40, 0, 64, protocol, 0, 0]);
    f.extend_from_slice(&[198, 18, 0, 1]);
    f.extend_from_slice(&destination);
    f
}
