//! The decision for one packet: parse; pass infrastructure; follow tracked flows and
//! fragments; otherwise look up both identities and the policy; then count and report.
//!
//! A new flow costs one longest-prefix match per address and one for the policy, whatever
//! the number of rules (see `PolicyKey` for why one match covers port ranges); each match is
//! a hash lookup of the full-length key, then a trie walk only on a miss (see
//! `firewall_common::maps`). A tracked flow costs one or two conntrack lookups instead.
//! Nothing here loops over rules.

use aya_ebpf::helpers::{bpf_ktime_get_coarse_ns, bpf_ktime_get_ns};
use firewall_common::{
    Counter, Decision, DropEvent, Hook, Identity, Reason, Verdict, conntrack::Config,
    identity::reserved, maps::Stat,
};

use crate::{
    conntrack,
    maps::{CONFIG, DECISION, DROP_EVENTS, REASON_COUNTERS, RULE_COUNTERS},
    packet::Packet,
    parse::{self, FRAGMENT_FIRST, FRAGMENT_LATER, Flow, Frame, IPPROTO_ICMPV6},
};

/// Set to 1 by the loader for replay and benchmarks. It lives in `.rodata`, so the verifier
/// knows its value and drops the replay branch from live programs: zero cost when off.
#[unsafe(no_mangle)]
static REPLAY: u8 = 0;

/// Settings used while the `CONFIG` slot cannot be read (it always can: an array's slots exist
/// from creation).
static DEFAULT_CONFIG: Config = Config::DEFAULT;

/// ICMPv6 router solicitation, router advertisement, neighbour solicitation, neighbour
/// advertisement (RFC 4861). Valid only with hop limit 255, which proves the sender is on-link.
const ND_ROUTER_SOLICIT: u8 = 133;
const ND_ROUTER_ADVERT: u8 = 134;
const ND_NEIGHBOUR_SOLICIT: u8 = 135;
const ND_NEIGHBOUR_ADVERT: u8 = 136;
const ND_HOP_LIMIT: u8 = 255;

/// Why a packet got its verdict, and on whose behalf.
pub struct Outcome {
    pub reason: Reason,
    /// The rule that allowed the packet or its flow; 0 for none.
    pub rule_id: u32,
    pub source_identity: Identity,
    pub destination_identity: Identity,
}

impl Outcome {
    #[inline(always)]
    const fn unattributed(reason: Reason) -> Outcome {
        Outcome {
            reason,
            rule_id: 0,
            source_identity: reserved::UNSET,
            destination_identity: reserved::UNSET,
        }
    }
}

/// Classifies one packet, updates counters and reports drops. Returns the verdict to enforce.
#[inline(always)]
pub fn classify<P: Packet>(pkt: &P, hook: Hook) -> Verdict {
    let mut flow = Flow::unknown();
    let outcome = match parse::parse(pkt, &mut flow) {
        Ok(Frame::Arp) => Outcome::unattributed(Reason::InfraArp),
        Ok(Frame::Ip) => decide_ip(pkt, &flow),
        Err(reason) => Outcome::unattributed(reason),
    };
    let len = pkt.len();
    count(&REASON_COUNTERS, outcome.reason as u32, len);
    if outcome.rule_id != 0 {
        count(&RULE_COUNTERS, outcome.rule_id, len);
    }
    let verdict = outcome.reason.verdict();
    if verdict == Verdict::Drop {
        report_drop(pkt, hook, &outcome, &flow);
    }
    // SAFETY: reading a plain `u8` static; volatile so the compiler keeps the load that the
    // loader's value replaces.
    if unsafe { core::ptr::read_volatile(&REPLAY) } != 0 {
        record_decision(&outcome, &flow);
    }
    verdict
}

#[inline(always)]
fn decide_ip<P: Packet>(pkt: &P, flow: &Flow) -> Outcome {
    if let Some(reason) = neighbour_discovery(flow) {
        return Outcome::unattributed(reason);
    }
    // The slot is used in place, not copied: a copy would cost 32 bytes of the 512-byte
    // stack. Each policy evaluation reads `generation` once (see `conntrack::follow`).
    // A swap writes the new generation, then the new revision, in two writes; the revision
    // check (conntrack::follow) reads the revision before the generation. The two are plain
    // loads: a CPU that reorders loads could still pair a new revision with the old
    // generation, and that flow would keep a revoked rule until the next change.
    let config = CONFIG.get(0).unwrap_or(&DEFAULT_CONFIG);
    // SAFETY: the helper has no preconditions.
    let now = unsafe { bpf_ktime_get_coarse_ns() };
    if flow.fragment == FRAGMENT_LATER {
        return conntrack::later_fragment(flow, now, config);
    }
    let outcome = conntrack::track(pkt, flow, now, config);
    if flow.fragment == FRAGMENT_FIRST {
        conntrack::record_first_fragment(flow, &outcome, now);
    }
    outcome
}

#[inline(always)]
fn neighbour_discovery(flow: &Flow) -> Option<Reason> {
    if flow.family != 6 || flow.protocol != IPPROTO_ICMPV6 || flow.hop_limit != ND_HOP_LIMIT {
        return None;
    }
    match (flow.destination_port >> 8) as u8 {
        ND_ROUTER_SOLICIT | ND_ROUTER_ADVERT => Some(Reason::InfraRouterDiscovery),
        ND_NEIGHBOUR_SOLICIT | ND_NEIGHBOUR_ADVERT => Some(Reason::InfraNeighbourDiscovery),
        _ => None,
    }
}

#[inline(always)]
fn count(map: &aya_ebpf::maps::PerCpuArray<Counter>, index: u32, len: u32) {
    if let Some(counter) = map.get_ptr_mut(index) {
        // SAFETY: a per-CPU slot is only touched by programs on this CPU, which do not
        // preempt each other, so this plain read-modify-write cannot race.
        unsafe {
            (*counter).packets += 1;
            (*counter).bytes += len as u64;
        }
    }
}

#[inline(always)]
fn report_drop<P: Packet>(pkt: &P, hook: Hook, outcome: &Outcome, flow: &Flow) {
    let Some(mut entry) = DROP_EVENTS.reserve::<DropEvent>(0) else {
        conntrack::bump(Stat::DropEventsLost);
        return;
    };
    entry.write(DropEvent {
        // SAFETY: the helper has no preconditions.
        timestamp_ns: unsafe { bpf_ktime_get_ns() },
        ifindex: pkt.ifindex(),
        length: pkt.len(),
        source_identity: outcome.source_identity,
        destination_identity: outcome.destination_identity,
        reason: outcome.reason as u8,
        hook: hook as u8,
        family: flow.family,
        protocol: flow.protocol,
        source_port: flow.source_port,
        destination_port: flow.destination_port,
        source_address: flow.source,
        destination_address: flow.destination,
    });
    entry.submit(0);
}

#[inline(always)]
fn record_decision(outcome: &Outcome, flow: &Flow) {
    if let Some(slot) = DECISION.get_ptr_mut(0) {
        // SAFETY: replay runs one packet at a time from one thread, so nothing else writes
        // the slot concurrently.
        unsafe {
            let sequence = (*slot).sequence.wrapping_add(1);
            *slot = Decision {
                sequence,
                reason: outcome.reason as u8,
                protocol: flow.protocol,
                _pad: [0; 2],
                rule_id: outcome.rule_id,
                source_identity: outcome.source_identity,
                destination_identity: outcome.destination_identity,
            };
        }
    }
}
