//! The connection-tracking paths: a packet of an established flow against the packet that
//! opens a new one (two conntrack misses, the policy, and the insert), with 10 and 100k
//! other flows in the table.
//!
//! An established flow is measured like the policy paths, one packet repeated. A new flow
//! cannot be repeated (the second run would find the first's entry), so each new flow is
//! its own test run with a fresh source port, and the kernel's time for that one run is
//! averaged; the empty program and the established flow are measured the same way beside it.

use firewall_common::{
    Hook, PolicyKey, PolicyValue,
    conntrack::{CtEntry, CtKey, CtState},
};
use ipnet::Ipv4Net;

use super::{BACKEND, BenchArgs, FIRST_IDENTITY, ipv4_frame, measure, test_run};
use crate::{
    conntrack::monotonic_coarse_ns,
    datapath::{Datapath, LoadOptions},
    policy::{CompiledPolicy, PolicyEntry},
};

const UDP: u8 = 17;
const PORT: u16 = 53;
const ESTABLISHED_SOURCE_PORT: u16 = 40000;

pub fn run(args: &BenchArgs) -> anyhow::Result<()> {
    println!();
    println!(
        "conntrack: UDP 198.18.0.1 -> 198.18.0.2:{PORT}; established: repeat {} (median of \
         {}); new and the one-run baselines: mean of {} single runs",
        args.repeat, args.rounds, args.new_flows
    );
    println!(
        "{:<5} {:>8} {:<12} {:>8} {:>8} {:>10} {:>8}",
        "hook", "flows", "path", "ns/pkt", "empty", "over-empty", "vs-new"
    );
    for &flows in &args.flows {
        let options = LoadOptions {
            conntrack_entries: (flows + u32::from(args.new_flows) + 1024).max(65_536),
            ..LoadOptions::default()
        };
        let mut datapath = Datapath::load(&options)?;
        datapath.apply(&policy())?;
        fill(&mut datapath, flows)?;
        for hook in [Hook::TcIngress, Hook::Xdp] {
            let name = if hook == Hook::Xdp { "xdp" } else { "tc" };
            let established = udp(ESTABLISHED_SOURCE_PORT);
            // Opens the measured flow; every later run of this packet is established.
            single(&mut datapath, hook, false, &established)?;
            let repeated = measure(&mut datapath, hook, false, &established, args)?;
            let repeated_empty = measure(&mut datapath, hook, true, &established, args)?;
            let mut new = 0.0;
            let mut one_run = 0.0;
            let mut one_run_empty = 0.0;
            for i in 0..args.new_flows {
                // Each hook opens its own flows: TC from port 1024, XDP from 30000.
                let base = if hook == Hook::Xdp { 30_000 } else { 1024 };
                new += single(&mut datapath, hook, false, &udp(base + i))?;
                one_run += single(&mut datapath, hook, false, &established)?;
                one_run_empty += single(&mut datapath, hook, true, &established)?;
            }
            let n = f64::from(args.new_flows.max(1));
            let (new, one_run, one_run_empty) = (new / n, one_run / n, one_run_empty / n);
            let rows = [
                ("established", repeated, repeated_empty),
                ("est-1-run", one_run, one_run_empty),
                ("new-1-run", new, one_run_empty),
            ];
            for (path, ns, empty) in rows {
                println!(
                    "{name:<5} {flows:>8} {path:<12} {ns:>8.1} {empty:>8.1} {:>+10.1} {:>7.2}x",
                    ns - empty,
                    ns / new
                );
            }
        }
    }
    Ok(())
}

/// One test run; the kernel's time for it in nanoseconds.
fn single(
    datapath: &mut Datapath,
    hook: Hook,
    baseline: bool,
    frame: &[u8],
) -> anyhow::Result<f64> {
    test_run(datapath, hook, baseline, frame, 1)
}

/// 198.18.0.1 -> 198.18.0.2 allowed on UDP 53.
fn policy() -> CompiledPolicy {
    let host = |last: u8, identity| {
        (
            Ipv4Net::new([198, 18, 0, last].into(), 32).expect("valid /32"),
            identity,
        )
    };
    CompiledPolicy {
        ipcache_v4: vec![host(1, FIRST_IDENTITY), host(2, FIRST_IDENTITY + 1)],
        ipcache_v6: Vec::new(),
        policy: vec![PolicyEntry {
            prefix_len: PolicyKey::PREFIX_FULL,
            key: PolicyKey::new(FIRST_IDENTITY, FIRST_IDENTITY + 1, UDP, PORT),
            value: PolicyValue { rule_id: 1 },
        }],
        max_rule_id: 1,
    }
}

/// Puts `flows` live flows between other addresses into the conntrack map.
fn fill(datapath: &mut Datapath, flows: u32) -> anyhow::Result<()> {
    let now = monotonic_coarse_ns()?;
    let revision = datapath.config()?.revision;
    let mut map = datapath.conntrack_mut()?;
    for i in 0..flows {
        let mut key = CtKey {
            family: 4,
            protocol: UDP,
            ..CtKey::default()
        };
        key.source[..4].copy_from_slice(&[198, 19, (i >> 8) as u8, i as u8]);
        key.destination[..4].copy_from_slice(&BACKEND);
        key.source_port = (i >> 16) as u16 + 1;
        key.destination_port = PORT;
        let entry = CtEntry {
            last_seen_ns: now,
            created_ns: now,
            rule_id: 1,
            revision,
            state: CtState::Open as u8,
            policy_port: PORT,
            ..CtEntry::default()
        };
        map.insert(key, entry, 0)?;
    }
    Ok(())
}

/// Ethernet + IPv4 + UDP from 198.18.0.1:`source_port` to 198.18.0.2:53, 4 bytes of data.
fn udp(source_port: u16) -> Vec<u8> {
    let mut f = ipv4_frame(BACKEND, UDP, 32);
    f.extend_from_slice(&source_port.to_be_bytes());
    f.extend_from_slice(&PORT.to_be_bytes());
    f.extend_from_slice(&12u16.to_be_bytes());
    f.extend_from_slice(&[0, 0, 1, 2, 3, 4]);
    f
}
