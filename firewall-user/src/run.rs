//! `firewall run`: enforce a policy file on interfaces until Ctrl-C or SIGTERM, printing
//! drops as they happen and the counters at the end.

use std::os::fd::AsRawFd;

use anyhow::Context as _;
use aya::maps::{MapData, RingBuf};
use tokio::{
    io::{Interest, unix::AsyncFd},
    signal::unix::{SignalKind, signal},
};

use crate::{
    attach,
    datapath::{Datapath, LoadOptions},
    events,
    policy::Policy,
};

/// Loads, fills, attaches, reports; detaches when a signal arrives.
pub async fn run(policy: &Policy, interfaces: &[String], xdp: bool) -> anyhow::Result<()> {
    let compiled = policy.compile();
    let mut datapath = Datapath::load(&LoadOptions::default())?;
    datapath.apply(&compiled)?;
    let attachments = attach::attach(&mut datapath, interfaces, xdp)?;
    for a in &attachments {
        log::info!("attached {} to {}", a.hook.name(), a.interface);
    }
    eprintln!(
        "enforcing {} rules for {} apps and {} networks on {}; Ctrl-C to stop",
        policy.rules.len(),
        policy.apps.len(),
        policy.networks.len(),
        interfaces.join(", ")
    );
    let ring = datapath.take_drop_events()?;
    // SAFETY: the ring buffer owns its file descriptor and lives inside the AsyncFd, so the
    // descriptor stays open for as long as it is registered.
    let mut ring = unsafe { AsyncFd::register_with_interest(RingBufFd(ring), Interest::READABLE) }
        .map_err(std::io::Error::from)
        .context("polling the drop event ring buffer")?;
    let mut interrupt = signal(SignalKind::interrupt())?;
    let mut terminate = signal(SignalKind::terminate())?;
    loop {
        tokio::select! {
            _ = interrupt.recv() => break,
            _ = terminate.recv() => break,
            guard = ring.readable_mut() => {
                let mut guard = guard?;
                while let Some(item) = guard.get_inner_mut().0.next() {
                    if let Some(event) = events::parse(&item) {
                        println!("{}", events::describe(&event, policy));
                    }
                }
                guard.clear_ready();
            }
        }
    }
    print_counters(&datapath, policy)?;
    // Dropping the datapath detaches every link.
    drop(datapath);
    eprintln!("detached");
    Ok(())
}

/// Prints the per-reason and per-rule counters.
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
            "  #{:<4} {:<40} {:>10} packets {:>12} bytes",
            rule.id,
            policy.describe_rule(rule),
            c.packets,
            c.bytes
        );
    }
    let lost = datapath.drop_events_lost()?;
    if lost != 0 {
        println!("drop events lost (ring buffer full): {lost}");
    }
    Ok(())
}

struct RingBufFd(RingBuf<MapData>);

impl AsRawFd for RingBufFd {
    fn as_raw_fd(&self) -> std::os::fd::RawFd {
        self.0.as_raw_fd()
    }
}
