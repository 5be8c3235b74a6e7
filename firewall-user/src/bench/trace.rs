//! What traces cost packets while none runs: the same programs and policy loaded twice,
//! with the trace slot's lookup (as live programs run) and without it (the verifier removes
//! it when the `TRACES` global is 0), measured in the same run.

use anyhow::Context as _;
use firewall_common::Hook;

use super::{ALLOWED_PORT, BACKEND, BenchArgs, DENIED_PORT, measure, synthetic, tcp_syn};
use crate::datapath::{Capacities, Datapath, LoadOptions};

/// Policy entries of the measured policy.
const ENTRIES: u32 = 1_000;

/// Prints ns/packet with and without the trace check, and their ratio, per hook and path.
pub(super) fn run(args: &BenchArgs) -> anyhow::Result<()> {
    let compiled = synthetic(ENTRIES, args.prefixes);
    let load = |traces: bool| -> anyhow::Result<Datapath> {
        let mut datapath = Datapath::load(&LoadOptions {
            capacities: Capacities {
                ipcache_hosts_v4: args.prefixes.max(16),
                ..Capacities::default()
            },
            traces,
            ..LoadOptions::default()
        })?;
        datapath.apply(&compiled).context("filling the policy")?;
        Ok(datapath)
    };
    let mut with = load(true)?;
    let mut without = load(false)?;
    println!();
    println!("trace check while no trace runs ({ENTRIES} policy entries):");
    println!(
        "{:<5} {:<6} {:>12} {:>15} {:>8}",
        "hook", "path", "with ns/pkt", "without ns/pkt", "ratio"
    );
    let allow = tcp_syn(BACKEND, ALLOWED_PORT);
    let deny = tcp_syn(BACKEND, DENIED_PORT);
    for hook in [Hook::TcIngress, Hook::Xdp] {
        for (path, frame) in [("allow", &allow), ("deny", &deny)] {
            // Alternate the two so that drift of the machine hits both alike.
            let mut pairs = Vec::with_capacity(args.rounds);
            for _ in 0..args.rounds.max(1) {
                let on = measure(&mut with, hook, false, frame, args)?;
                let off = measure(&mut without, hook, false, frame, args)?;
                pairs.push((on, off));
            }
            pairs.sort_by(|a, b| (a.0 / a.1).total_cmp(&(b.0 / b.1)));
            let (on, off) = pairs[pairs.len() / 2];
            println!(
                "{:<5} {:<6} {:>12.1} {:>15.1} {:>7.2}x",
                if hook == Hook::Xdp { "xdp" } else { "tc" },
                path,
                on,
                off,
                on / off
            );
        }
    }
    Ok(())
}
