//! `firewall run`: enforce a policy file on interfaces until Ctrl-C or SIGTERM, printing
//! drops and opened flows as they happen and the counters at the end. SIGHUP reloads the policy file.
//!
//! While it runs, the conntrack, config and stats maps are pinned (see
//! [`crate::conntrack::pin`]) for `firewall conntrack`.

use std::path::{Path, PathBuf};

use anyhow::Context as _;
use firewall_common::maps::Stat;
use tokio::signal::unix::{SignalKind, signal};

use crate::{
    attach,
    conntrack::{self, ConntrackFigures},
    datapath::{Datapath, LoadOptions},
    events,
    policy::{self, CompiledPolicy, Policy},
    update,
};

/// What `firewall run` enforces, where, and with which map sizes and lifetimes.
#[derive(Clone, Debug)]
pub struct RunOptions {
    /// The policy file, read at start and again on SIGHUP.
    pub policy_path: PathBuf,
    /// Interfaces to attach to.
    pub interfaces: Vec<String>,
    /// XDP instead of TC on the receive side.
    pub xdp: bool,
    /// Map sizes and conntrack lifetimes.
    pub load: LoadOptions,
}

/// The policy in force, as read and as written to the maps.
struct Enforced {
    policy: Policy,
    compiled: CompiledPolicy,
}

/// Loads, fills, pins, attaches, reports; reloads on SIGHUP; unpins and detaches when
/// SIGINT or SIGTERM arrives.
///
/// # Errors
/// When the policy file is invalid, the programs cannot be loaded or attached, another
/// `firewall run` holds the pins, or a map cannot be read.
pub async fn run(options: &RunOptions) -> anyhow::Result<()> {
    let policy = policy::load_file(&options.policy_path)?;
    let compiled = policy.compile();
    let mut datapath = Datapath::load(&options.load)?;
    datapath.apply(&compiled)?;
    // Pinned before attaching, so a second `firewall run` stops before it touches an
    // interface; the guard unpins on every way out.
    let pins = conntrack::pin(&mut datapath)?;
    let attachments = attach::attach(&mut datapath, &options.interfaces, options.xdp)?;
    for a in &attachments {
        log::info!("attached {} to {}", a.hook.name(), a.interface);
    }
    eprintln!(
        "enforcing {} rules for {} apps and {} networks on {}; Ctrl-C to stop, SIGHUP to reload",
        policy.rules.len(),
        policy.apps.len(),
        policy.networks.len(),
        options.interfaces.join(", ")
    );
    let mut enforced = Enforced { policy, compiled };
    let ring = datapath.take_flow_events()?;
    let mut ring = events::poll_ring(ring).context("polling the flow record ring buffer")?;
    let mut interrupt = signal(SignalKind::interrupt())?;
    let mut terminate = signal(SignalKind::terminate())?;
    let mut hangup = signal(SignalKind::hangup())?;
    loop {
        tokio::select! {
            _ = interrupt.recv() => break,
            _ = terminate.recv() => break,
            _ = hangup.recv() => reload(&mut datapath, &options.policy_path, &mut enforced),
            guard = ring.readable_mut() => {
                let mut guard = guard?;
                // Cleared before the drain: see `daemon::tracer::drain`.
                guard.clear_ready();
                while let Some(item) = guard.get_inner_mut().0.next() {
                    if let Some(event) = events::parse(&item) {
                        println!("{}", events::describe(&event, &enforced.policy));
                    }
                }
            }
        }
    }
    print_counters(&datapath, &enforced.policy)?;
    pins.unpin()?;
    // Dropping the datapath detaches every link.
    drop(datapath);
    eprintln!("detached");
    Ok(())
}

/// Reads the policy file again and moves the datapath to it. A policy that does not load or
/// does not fit is reported and the one in force stays.
fn reload(datapath: &mut Datapath, path: &Path, enforced: &mut Enforced) {
    let policy = match policy::load_file(path) {
        Ok(policy) => policy,
        Err(e) => {
            log::error!("reload: {e}; still enforcing the previous policy");
            return;
        }
    };
    let compiled = policy.compile();
    match update::update(datapath, &enforced.compiled, &compiled) {
        Ok(summary) => {
            eprintln!(
                "reloaded {}: {} rules, {} entries added, {} removed{}, revision {}",
                path.display(),
                policy.rules.len(),
                summary.added,
                summary.removed,
                if summary.swapped {
                    " (swapped in whole)"
                } else {
                    ""
                },
                summary.revision
            );
            *enforced = Enforced { policy, compiled };
        }
        // A failed insert is taken back. A failed removal (the kernel refusing to delete a
        // present key) would leave entries of the new policy the next reload does not know.
        Err(e) => log::error!(
            "reload of {}: {e}; still enforcing the previous policy",
            path.display()
        ),
    }
}

/// Prints the per-reason, per-rule and conntrack counters.
///
/// # Errors
/// When a map cannot be read.
pub fn print_counters(datapath: &Datapath, policy: &Policy) -> anyhow::Result<()> {
    println!("counters by reason:");
    for (reason, c) in datapath.reason_counters()? {
        println!(
            "  {:<28} {:>10} packets {:>12} bytes",
            reason.name(),
            c.packets,
            c.bytes
        );
    }
    println!("counters by rule:");
    for rule in &policy.rules {
        let c = datapath.rule_counter(rule.id)?;
        println!(
            "  #{:<4} {:<40} {:>10} packets {:>12} bytes {:>8} flows",
            rule.id,
            policy.describe_rule(rule),
            c.packets,
            c.bytes,
            c.flows
        );
    }
    let lost = datapath.flow_events_lost()?;
    if lost != 0 {
        println!("flow records lost (ring buffer full): {lost}");
    }
    let limited = datapath.stat(Stat::FlowEventsRateLimited)?;
    if limited != 0 {
        println!("flow records not sent (over the per-CPU rate): {limited}");
    }
    let flows = ConntrackFigures::read(datapath)?;
    println!("conntrack:");
    for (label, value) in [
        ("flows created", flows.created),
        ("flows deleted (revoked)", flows.deleted),
        ("flows flushed", flows.flushed),
        ("insert failures", flows.insert_failed),
        ("flows present now", flows.present),
        ("reclaimed by LRU (expired or evicted)", flows.reclaimed()),
    ] {
        println!("  {label:<40} {value:>10}");
    }
    Ok(())
}
