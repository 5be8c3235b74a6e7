//! Connection and fragment tracking.
//!
//! A flow is opened when the policy allows a packet that can open one, and stored under that
//! packet's tuple. Later packets find it as they are (established) or swapped (reply) and
//! pass without a policy lookup, unless the policy changed since the flow last passed: then
//! the opening direction is looked up again, and a flow whose rule is gone is deleted and its
//! packet dropped as revoked. That re-check is what makes a revoked rule stop its established
//! flows at their very next packet.
//!
//! A TCP SYN without ACK always goes to the policy, even when a flow exists, so a SYN cannot
//! ride on an old entry, and a SYN in the reply direction is never a reply. A SYN-ACK, ACK or
//! RST with no flow is judged by the policy like any packet.
//!
//! With `tracing` set (a synthetic trace packet, see `firewall_common::trace`) every function
//! here reads and never writes: the packet gets the verdict a live one would, and the table
//! stays as it was.

use core::ptr::read_volatile;

use aya_ebpf::bindings::{BPF_ANY, BPF_NOEXIST};

/// `EEXIST`, as map helpers return it (negated).
const EEXIST: u32 = 17;
use firewall_common::{
    Reason,
    conntrack::{Config, CtEntry, CtKey, CtState, FragEntry, FragKey},
    maps::Stat,
};

use crate::{
    maps::{CONNTRACK, DATAPATH_STATS, FRAGMENTS},
    packet::Packet,
    parse::{
        self, ECHO_REPLY, ECHO_REQUEST, Flow, IPPROTO_ICMP, IPPROTO_ICMPV6, IPPROTO_SCTP,
        IPPROTO_TCP, IPPROTO_UDP, TCP_ACK, TCP_FIN, TCP_RST, TCP_SYN,
    },
    policy,
    verdict::Outcome,
};

/// A flow's last-seen time is written at most this often, so that a busy flow does not
/// write its entry on every packet (the write would bounce the cache line between CPUs).
/// Lifetimes are thus exact to within this.
const REFRESH_NS: u64 = 1_000_000_000;

/// `Config::lifetime_ns` for a `config` that is the live `CONFIG` slot. Every lifetime is
/// loaded, then one chosen: left to itself the compiler turns the match into one load at a
/// computed offset, whose bound the verifier cannot follow into a map value.
#[inline(always)]
fn lifetime_ns(config: &Config, state: u8) -> u64 {
    // SAFETY: each pointer comes from a reference to a field of a live `Config`.
    let (syn, established, closing, echo, other) = unsafe {
        (
            read_volatile(&config.tcp_syn_timeout),
            read_volatile(&config.tcp_established_timeout),
            read_volatile(&config.tcp_closing_timeout),
            read_volatile(&config.icmp_timeout),
            read_volatile(&config.other_timeout),
        )
    };
    let seconds = match CtState::from_code(state) {
        Some(CtState::SynSent) => syn,
        Some(CtState::Established) => established,
        Some(CtState::Closing) => closing,
        Some(CtState::Echo) => echo,
        Some(CtState::Open) | None => other,
    };
    seconds as u64 * 1_000_000_000
}

/// The verdict on a non-fragment or first-fragment IP packet.
#[inline(always)]
pub fn track<P: Packet>(pkt: &P, flow: &Flow, now: u64, config: &Config, tracing: bool) -> Outcome {
    if parse::is_icmp_error(flow) {
        return related(pkt, flow, now, config);
    }
    let Some(key) = flow_key(flow) else {
        // ICMP other than echo and errors: judged alone, never tracked; each allowed one is
        // a flow of its own.
        let mut outcome = policy::decide(config.generation, flow);
        outcome.opened = outcome.reason == Reason::Policy;
        return outcome;
    };
    let syn_only = flow.protocol == IPPROTO_TCP && flow.tcp_flags & (TCP_SYN | TCP_ACK) == TCP_SYN;
    let stored = CONNTRACK.get_ptr_mut(&key);
    if !syn_only {
        if let Some(entry) = stored.filter(|e| is_live(*e, now, config)) {
            return follow(entry, &key, flow, false, now, config, tracing);
        }
        let reverse = key.reversed();
        if let Some(entry) = live(&reverse, now, config) {
            return follow(entry, &reverse, flow, true, now, config, tracing);
        }
    }
    let mut outcome = policy::decide(config.generation, flow);
    if outcome.reason == Reason::Policy && opens(flow) {
        // A SYN of a flow tracked already (retransmitted, or crossing a second hook on this
        // host) renews the flow; it does not begin another.
        outcome.opened = !stored.is_some_and(|e| is_live(e, now, config));
        if !tracing {
            open(&key, stored, flow, &outcome, now, config);
        }
    }
    outcome
}

/// The tuple a packet is tracked under; `None` for what is not tracked.
#[inline(always)]
fn flow_key(flow: &Flow) -> Option<CtKey> {
    let (source_port, destination_port) = match flow.protocol {
        IPPROTO_TCP | IPPROTO_UDP | IPPROTO_SCTP => (flow.source_port, flow.destination_port),
        IPPROTO_ICMP | IPPROTO_ICMPV6 => match flow.echo {
            ECHO_REQUEST => (flow.echo_id, 0),
            ECHO_REPLY => (0, flow.echo_id),
            _ => return None,
        },
        _ => (0, 0),
    };
    Some(CtKey {
        source: flow.source,
        destination: flow.destination,
        source_port,
        destination_port,
        family: flow.family,
        protocol: flow.protocol,
        _pad: [0; 2],
    })
}

/// Whether an allowed packet opens a flow: not a lone RST, not an echo reply.
#[inline(always)]
fn opens(flow: &Flow) -> bool {
    let rst = flow.protocol == IPPROTO_TCP && flow.tcp_flags & TCP_RST != 0;
    !rst && flow.echo != ECHO_REPLY
}

/// The entry under `key` if it has not outlived its state's lifetime.
#[inline(always)]
fn live(key: &CtKey, now: u64, config: &Config) -> Option<*mut CtEntry> {
    CONNTRACK
        .get_ptr_mut(key)
        .filter(|e| is_live(*e, now, config))
}

/// Whether an entry is within its state's lifetime: an expired one counts as absent.
#[inline(always)]
fn is_live(entry: *mut CtEntry, now: u64, config: &Config) -> bool {
    // SAFETY: the pointer came from a successful lookup and stays valid for this program
    // run (RCU); fields are read without tearing because each is naturally aligned.
    let (last_seen, state) = unsafe { ((*entry).last_seen_ns, (*entry).state) };
    now.saturating_sub(last_seen) <= lifetime_ns(config, state)
}

#[inline(always)]
fn follow(
    entry: *mut CtEntry,
    stored: &CtKey,
    flow: &Flow,
    reply: bool,
    now: u64,
    config: &Config,
    tracing: bool,
) -> Outcome {
    // SAFETY: see `live`. Concurrent packets of one flow on two CPUs may both write the
    // entry; every write leaves it valid, and the worst a lost update does is delay a
    // state change by one packet.
    let e = unsafe { &mut *entry };
    // `config` is the live slot: read the revision and the generation once each, so the
    // re-check uses one policy throughout.
    let revision = config.revision;
    if e.revision != revision {
        let generation = config.generation;
        let source = policy::identity_of(generation, stored.family, &stored.source);
        let destination = policy::identity_of(generation, stored.family, &stored.destination);
        match policy::rule_for(
            generation,
            source,
            destination,
            stored.protocol,
            e.policy_port,
        ) {
            Some(rule_id) if tracing => {
                return tracked(reply, rule_id, source, destination);
            }
            Some(rule_id) => {
                e.rule_id = rule_id;
                e.source_identity = source;
                e.destination_identity = destination;
                e.revision = revision;
            }
            None => {
                if !tracing && CONNTRACK.remove(stored).is_ok() {
                    bump(Stat::ConntrackDeleted);
                }
                let (source_identity, destination_identity) = if reply {
                    (destination, source)
                } else {
                    (source, destination)
                };
                return Outcome {
                    reason: Reason::Revoked,
                    rule_id: 0,
                    source_identity,
                    destination_identity,
                    opened: false,
                };
            }
        }
    }
    if tracing {
        return tracked(reply, e.rule_id, e.source_identity, e.destination_identity);
    }
    let state = e.state;
    let mut next = state;
    if flow.protocol == IPPROTO_TCP {
        if flow.tcp_flags & (TCP_FIN | TCP_RST) != 0 {
            next = CtState::Closing as u8;
        } else if reply && state == CtState::SynSent as u8 && flow.tcp_flags & TCP_ACK != 0 {
            next = CtState::Established as u8;
        }
    }
    if reply {
        e.flags |= CtEntry::SEEN_REPLY;
    }
    if next != state || now.saturating_sub(e.last_seen_ns) >= REFRESH_NS {
        e.state = next;
        e.last_seen_ns = now;
    }
    tracked(reply, e.rule_id, e.source_identity, e.destination_identity)
}

/// The outcome of a packet of a tracked flow whose rule stands; identities are the flow's
/// original source and destination, and come out in the packet's direction.
#[inline(always)]
fn tracked(reply: bool, rule_id: u32, source: u32, destination: u32) -> Outcome {
    let (reason, source_identity, destination_identity) = if reply {
        (Reason::Reply, destination, source)
    } else {
        (Reason::Established, source, destination)
    };
    Outcome {
        reason,
        rule_id,
        source_identity,
        destination_identity,
        opened: false,
    }
}

/// Records a flow the policy just allowed. When the key is already there (an expired flow,
/// or a SYN re-opening one) its entry is rewritten in place: an LRU map update would take a
/// fresh node from the LRU lists even to replace a key.
#[inline(always)]
fn open(
    key: &CtKey,
    stored: Option<*mut CtEntry>,
    flow: &Flow,
    outcome: &Outcome,
    now: u64,
    config: &Config,
) {
    let state = match flow.protocol {
        IPPROTO_TCP if flow.tcp_flags & (TCP_SYN | TCP_ACK) == TCP_SYN => CtState::SynSent,
        IPPROTO_TCP if flow.tcp_flags & TCP_FIN != 0 => CtState::Closing,
        // Picked up mid-stream (an allowed ACK after a restart or a flush), as Linux's
        // conntrack does with tcp_loose: the policy allowed this direction anyway.
        IPPROTO_TCP => CtState::Established,
        IPPROTO_ICMP | IPPROTO_ICMPV6 => CtState::Echo,
        _ => CtState::Open,
    };
    let entry = CtEntry {
        last_seen_ns: now,
        created_ns: now,
        rule_id: outcome.rule_id,
        revision: config.revision,
        source_identity: outcome.source_identity,
        destination_identity: outcome.destination_identity,
        policy_port: flow.destination_port,
        state: state as u8,
        flags: 0,
        _pad: 0,
    };
    if let Some(slot) = stored {
        // SAFETY: see `live`; a concurrent reader sees the old or the new flow, both valid.
        unsafe { *slot = entry };
        return;
    }
    match CONNTRACK.insert(key, &entry, BPF_NOEXIST as u64) {
        Ok(()) => bump(Stat::ConntrackCreated),
        // Another CPU opened the same flow a moment ago; its entry stands.
        Err(e) if e == -(EEXIST as i32) => {}
        Err(_) => bump(Stat::ConntrackInsertFailed),
    }
}

/// An ICMP error passes as related when the packet it quotes belongs to a live flow, in
/// either direction; otherwise it is dropped.
#[inline(always)]
fn related<P: Packet>(pkt: &P, flow: &Flow, now: u64, config: &Config) -> Outcome {
    let generation = config.generation;
    let mut outcome = Outcome {
        reason: Reason::UntrackedIcmpError,
        rule_id: 0,
        source_identity: policy::identity_of(generation, flow.family, &flow.source),
        destination_identity: policy::identity_of(generation, flow.family, &flow.destination),
        opened: false,
    };
    if let Some(quoted) = parse::quoted_flow(pkt, flow) {
        let found = match live(&quoted, now, config) {
            Some(entry) => Some(entry),
            None => live(&quoted.reversed(), now, config),
        };
        if let Some(entry) = found {
            // SAFETY: see `live`; only read.
            outcome.rule_id = unsafe { (*entry).rule_id };
            outcome.reason = Reason::Related;
        }
    }
    outcome
}

#[inline(always)]
fn fragment_key(flow: &Flow) -> FragKey {
    FragKey {
        source: flow.source,
        destination: flow.destination,
        id: flow.fragment_id,
        family: flow.family,
        protocol: flow.protocol,
        _pad: [0; 2],
    }
}

/// Keeps a first fragment's verdict for the rest of its datagram.
#[inline(always)]
pub fn record_first_fragment(flow: &Flow, outcome: &Outcome, now: u64) {
    let entry = FragEntry {
        seen_ns: now,
        rule_id: outcome.rule_id,
        source_identity: outcome.source_identity,
        destination_identity: outcome.destination_identity,
        reason: outcome.reason as u8,
        _pad: [0; 3],
    };
    // A full map evicts the least recently used datagram; its later fragments then drop.
    let _ = FRAGMENTS.insert(&fragment_key(flow), &entry, BPF_ANY as u64);
}

/// A later fragment gets its first fragment's verdict; without one it is dropped.
#[inline(always)]
pub fn later_fragment(flow: &Flow, now: u64, config: &Config) -> Outcome {
    // SAFETY: the value is copied out at once.
    let first = unsafe { FRAGMENTS.get(&fragment_key(flow)) }.copied();
    let lifetime = config.fragment_timeout as u64 * 1_000_000_000;
    match first {
        Some(first) if now.saturating_sub(first.seen_ns) <= lifetime => Outcome {
            reason: if first.reason < Reason::FIRST_DROP {
                Reason::FragmentOfAllowed
            } else {
                Reason::FragmentOfDenied
            },
            rule_id: first.rule_id,
            source_identity: first.source_identity,
            destination_identity: first.destination_identity,
            opened: false,
        },
        _ => Outcome {
            reason: Reason::Fragment,
            rule_id: 0,
            source_identity: 0,
            destination_identity: 0,
            opened: false,
        },
    }
}

/// Adds one to a datapath statistic.
#[inline(always)]
pub fn bump(stat: Stat) {
    if let Some(slot) = DATAPATH_STATS.get_ptr_mut(stat as u32) {
        // SAFETY: a per-CPU slot is only touched by programs on this CPU.
        unsafe { *slot += 1 };
    }
}
