//! The decision: parse, find both identities, look the policy up once, count, report.
//!
//! Per packet this costs one longest-prefix match per address and one for the policy,
//! whatever the number of rules (see `PolicyKey` for why one match covers port ranges), plus
//! the counter updates. Each match is a hash lookup of the full-length key, then a trie walk
//! only on a miss (see `firewall_common::maps`): three to six lookups, never more.

use aya_ebpf::{helpers::bpf_ktime_get_ns, maps::lpm_trie::Key};
use firewall_common::{
    Counter, Decision, DropEvent, Hook, Identity, PolicyKey, Reason, Verdict, identity::reserved,
    maps::Stat,
};

use crate::{
    maps::{
        DATAPATH_STATS, DECISION, DROP_EVENTS, IPCACHE_HOSTS_V4, IPCACHE_HOSTS_V6, IPCACHE_V4,
        IPCACHE_V6, POLICY, POLICY_EXACT, REASON_COUNTERS, RULE_COUNTERS,
    },
    packet::Packet,
    parse::{self, Flow, Frame, IPPROTO_ICMPV6},
};

/// Set to 1 by the loader for replay and benchmarks. It lives in `.rodata`, so the verifier
/// knows its value and drops the replay branch from live programs: zero cost when off.
#[unsafe(no_mangle)]
static REPLAY: u8 = 0;

/// ICMPv6 router solicitation, router advertisement, neighbour solicitation, neighbour
/// advertisement (RFC 4861). Valid only with hop limit 255, which proves the sender is on-link.
const ND_ROUTER_SOLICIT: u8 = 133;
const ND_ROUTER_ADVERT: u8 = 134;
const ND_NEIGHBOUR_SOLICIT: u8 = 135;
const ND_NEIGHBOUR_ADVERT: u8 = 136;
const ND_HOP_LIMIT: u8 = 255;

struct Outcome {
    reason: Reason,
    rule_id: u32,
    source_identity: Identity,
    destination_identity: Identity,
}

/// Classifies one packet, updates counters and reports drops. Returns the verdict to enforce.
#[inline(always)]
pub fn classify<P: Packet>(pkt: &P, hook: Hook) -> Verdict {
    let (outcome, flow) = match parse::parse(pkt) {
        Ok(Frame::Arp) => (infrastructure(Reason::InfraArp), None),
        Ok(Frame::Ip(flow)) => (decide(&flow), Some(flow)),
        Err(rejected) => (
            Outcome {
                reason: rejected.reason,
                rule_id: 0,
                source_identity: reserved::UNSET,
                destination_identity: reserved::UNSET,
            },
            Some(rejected.flow),
        ),
    };
    let len = pkt.len();
    count(&REASON_COUNTERS, outcome.reason as u32, len);
    if outcome.rule_id != 0 {
        count(&RULE_COUNTERS, outcome.rule_id, len);
    }
    let verdict = outcome.reason.verdict();
    if verdict == Verdict::Drop {
        report_drop(pkt, hook, &outcome, flow.as_ref());
    }
    // SAFETY: reading a plain `u8` static; volatile so the compiler keeps the load that the
    // loader's value replaces.
    if unsafe { core::ptr::read_volatile(&REPLAY) } != 0 {
        record_decision(&outcome, flow.as_ref());
    }
    verdict
}

#[inline(always)]
fn infrastructure(reason: Reason) -> Outcome {
    Outcome {
        reason,
        rule_id: 0,
        source_identity: reserved::UNSET,
        destination_identity: reserved::UNSET,
    }
}

#[inline(always)]
fn decide(flow: &Flow) -> Outcome {
    if flow.family == 6 && flow.protocol == IPPROTO_ICMPV6 && flow.hop_limit == ND_HOP_LIMIT {
        let icmp_type = (flow.destination_port >> 8) as u8;
        if icmp_type == ND_ROUTER_SOLICIT || icmp_type == ND_ROUTER_ADVERT {
            return infrastructure(Reason::InfraRouterDiscovery);
        }
        if icmp_type == ND_NEIGHBOUR_SOLICIT || icmp_type == ND_NEIGHBOUR_ADVERT {
            return infrastructure(Reason::InfraNeighbourDiscovery);
        }
    }
    let source_identity = identity_of(flow.family, &flow.source);
    let destination_identity = identity_of(flow.family, &flow.destination);
    let key = PolicyKey::new(
        source_identity,
        destination_identity,
        flow.protocol,
        flow.destination_port,
    );
    // SAFETY: the value is copied out at once.
    let exact = unsafe { POLICY_EXACT.get(&key) }.copied();
    match exact.or_else(|| POLICY.get(Key::new(PolicyKey::PREFIX_FULL, key)).copied()) {
        Some(value) => Outcome {
            reason: Reason::Policy,
            rule_id: value.rule_id,
            source_identity,
            destination_identity,
        },
        None => Outcome {
            reason: Reason::DeniedByDefault,
            rule_id: 0,
            source_identity,
            destination_identity,
        },
    }
}

/// The identity of an address: the longest ipcache prefix holding it, or world.
#[inline(always)]
fn identity_of(family: u8, address: &[u8; 16]) -> Identity {
    // SAFETY (both hash lookups): the value is copied out at once.
    let found = if family == 4 {
        let v4 = [address[0], address[1], address[2], address[3]];
        unsafe { IPCACHE_HOSTS_V4.get(&v4) }
            .copied()
            .or_else(|| IPCACHE_V4.get(&Key::new(32, v4)).copied())
    } else {
        unsafe { IPCACHE_HOSTS_V6.get(address) }
            .copied()
            .or_else(|| IPCACHE_V6.get(&Key::new(128, *address)).copied())
    };
    found.unwrap_or(reserved::WORLD)
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
fn report_drop<P: Packet>(pkt: &P, hook: Hook, outcome: &Outcome, flow: Option<&Flow>) {
    let Some(mut entry) = DROP_EVENTS.reserve::<DropEvent>(0) else {
        if let Some(lost) = DATAPATH_STATS.get_ptr_mut(Stat::DropEventsLost as u32) {
            // SAFETY: per-CPU slot, as in `count`.
            unsafe { *lost += 1 };
        }
        return;
    };
    let empty = Flow {
        family: 0,
        protocol: 0,
        hop_limit: 0,
        source: [0; 16],
        destination: [0; 16],
        source_port: 0,
        destination_port: 0,
    };
    let flow = flow.unwrap_or(&empty);
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
fn record_decision(outcome: &Outcome, flow: Option<&Flow>) {
    if let Some(slot) = DECISION.get_ptr_mut(0) {
        // SAFETY: replay runs one packet at a time from one thread, so nothing else writes
        // the slot concurrently.
        unsafe {
            let sequence = (*slot).sequence.wrapping_add(1);
            *slot = Decision {
                sequence,
                reason: outcome.reason as u8,
                protocol: flow.map(|f| f.protocol).unwrap_or(0),
                _pad: [0; 2],
                rule_id: outcome.rule_id,
                source_identity: outcome.source_identity,
                destination_identity: outcome.destination_identity,
            };
        }
    }
}
