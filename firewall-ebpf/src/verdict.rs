//! The decision for one packet: parse; pass infrastructure; follow tracked flows and
//! fragments; otherwise look up both identities and the policy; then count, report drops
//! and opened flows (within a rate), and report to a trace that marked the packet.
//!
//! A new flow costs one longest-prefix match per address and one for the policy, whatever
//! the number of rules (see `PolicyKey` for why one match covers port ranges); each match is
//! a hash lookup of the full-length key, then a trie walk only on a miss (see
//! `firewall_common::maps`). A tracked flow costs one or two conntrack lookups instead.
//! Nothing here loops over rules.

use core::ptr::NonNull;

use aya_ebpf::{
    bindings::BPF_NOEXIST,
    helpers::{bpf_ktime_get_coarse_ns, bpf_ktime_get_ns},
    maps::RingBuf,
};
use firewall_common::{
    Counter, Decision, FlowEvent, Hook, Identity, Reason, Verdict,
    conntrack::Config,
    identity::reserved,
    maps::{Stat, drop_pair},
    trace::TraceControl,
};

use crate::{
    conntrack,
    maps::{
        CONFIG, DECISION, DROP_PAIRS, EVENT_BUDGET, FLOW, FLOW_EVENTS, REASON_COUNTERS,
        RULE_COUNTERS, TRACE, TRACE_EVENTS,
    },
    packet::Packet,
    parse::{self, FRAGMENT_FIRST, FRAGMENT_LATER, Flow, Frame, IPPROTO_ICMPV6},
};

/// Set to 1 by the loader for replay and benchmarks. It lives in `.rodata`, so the verifier
/// knows its value and drops the replay branch from live programs: zero cost when off.
#[unsafe(no_mangle)]
static REPLAY: u8 = 0;

/// Set to 0 by the loader for the benchmark's baseline without traces: the verifier then
/// removes the trace slot's lookup. Live programs keep 1.
#[unsafe(no_mangle)]
static TRACES: u8 = 1;

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
    /// Whether the packet began a flow: the policy allowed it and no live flow of its tuple
    /// was tracked before (a SYN retransmitted, or seen again at a second hook, is not a
    /// new flow), or it is a message the datapath does not track. Counted per rule, and
    /// reported as a flow record.
    pub opened: bool,
}

impl Outcome {
    #[inline(always)]
    const fn unattributed(reason: Reason) -> Outcome {
        Outcome {
            reason,
            rule_id: 0,
            source_identity: reserved::UNSET,
            destination_identity: reserved::UNSET,
            opened: false,
        }
    }
}

/// Classifies one packet, updates counters, reports drops and opened flows, and reports to
/// a trace that marked the packet. Returns the verdict to enforce.
#[inline(always)]
pub fn classify<P: Packet>(pkt: &P, hook: Hook) -> Verdict {
    // The one lookup every packet pays for traces. `NonNull` keeps "no slot" a null
    // pointer: an `Option<*mut _>` leaves its payload undefined when `None`, and the
    // verifier refuses the spill of an undefined register.
    // SAFETY: as for `REPLAY` below.
    let trace = if unsafe { core::ptr::read_volatile(&TRACES) } != 0 {
        TRACE.get_ptr_mut(0).and_then(NonNull::new)
    } else {
        None
    };
    // SAFETY: an array slot exists for the program's lifetime; a torn read of a token
    // userspace is rewriting can only fail to match.
    let tracing = trace.is_some_and(|control| {
        let token = unsafe { (*control.as_ptr()).synthetic_token };
        token != 0 && pkt.trace_token() == token
    });
    // One call site: two would inline the classifier twice, past the 512-byte stack.
    classify_as(pkt, hook, trace, tracing)
}

/// Classifies a live packet (`tracing` false) or a synthetic trace packet (true), which
/// changes nothing and is reported only to its trace. `trace` is the trace control slot.
#[inline(always)]
fn classify_as<P: Packet>(
    pkt: &P,
    hook: Hook,
    trace: Option<NonNull<TraceControl>>,
    tracing: bool,
) -> Verdict {
    let Some(slot) = FLOW.get_ptr_mut(0) else {
        // Unreachable: a per-CPU array's slot always exists. Fail closed all the same.
        return Verdict::Drop;
    };
    // SAFETY: see `maps::FLOW`: the slot is this CPU's alone until the program returns.
    let flow = unsafe { &mut *slot };
    *flow = Flow::unknown();
    let outcome = match parse::parse(pkt, flow) {
        Ok(Frame::Arp) => Outcome::unattributed(Reason::InfraArp),
        Ok(Frame::Ip) => decide_ip(pkt, flow, tracing),
        Err(reason) => Outcome::unattributed(reason),
    };
    let verdict = outcome.reason.verdict();
    if tracing {
        observe(pkt, hook, &outcome, flow, pkt.trace_id());
        return verdict;
    }
    let len = pkt.len();
    count(&REASON_COUNTERS, outcome.reason as u32, len);
    let opened = outcome.opened;
    if outcome.rule_id != 0 {
        count_rule(outcome.rule_id, len, opened);
    }
    if verdict == Verdict::Drop {
        count_drop_pair(&outcome, len);
    }
    if (verdict == Verdict::Drop || opened) && within_rate() {
        emit(
            &FLOW_EVENTS,
            pkt,
            hook,
            &outcome,
            flow,
            0,
            Stat::FlowEventsLost,
        );
    }
    if let Some(control) = trace {
        follow_live_trace(control.as_ptr(), pkt, hook, &outcome, flow);
    }
    // SAFETY: reading a plain `u8` static; volatile so the compiler keeps the load that the
    // loader's value replaces.
    if unsafe { core::ptr::read_volatile(&REPLAY) } != 0 {
        record_decision(&outcome, flow);
    }
    verdict
}

#[inline(always)]
fn decide_ip<P: Packet>(pkt: &P, flow: &Flow, tracing: bool) -> Outcome {
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
    let outcome = conntrack::track(pkt, flow, now, config, tracing);
    if !tracing && flow.fragment == FRAGMENT_FIRST {
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
fn count_rule(rule_id: u32, len: u32, opened: bool) {
    if let Some(counter) = RULE_COUNTERS.get_ptr_mut(rule_id) {
        // SAFETY: as in `count`.
        unsafe {
            (*counter).packets += 1;
            (*counter).bytes += len as u64;
            (*counter).flows += opened as u64;
        }
    }
}

/// Counts a drop against its identity pair, when the packet got as far as a lookup.
#[inline(always)]
fn count_drop_pair(outcome: &Outcome, len: u32) {
    if outcome.source_identity == reserved::UNSET && outcome.destination_identity == reserved::UNSET
    {
        return;
    }
    let key = drop_pair(outcome.source_identity, outcome.destination_identity);
    match DROP_PAIRS.get_ptr_mut(&key) {
        // SAFETY: a per-CPU value is only touched by programs on this CPU.
        Some(counter) => unsafe {
            (*counter).packets += 1;
            (*counter).bytes += len as u64;
        },
        None => {
            let first = Counter {
                packets: 1,
                bytes: len as u64,
            };
            // A full map makes room by dropping its least recently dropped pair.
            let _ = DROP_PAIRS.insert(&key, &first, BPF_NOEXIST as u64);
        }
    }
}

/// Whether this CPU may send a flow record now: the generic cell rate algorithm, with one
/// record per `Config::event_interval_ns` and `Config::event_burst` records of slack.
#[inline(always)]
fn within_rate() -> bool {
    let config = CONFIG.get(0).unwrap_or(&DEFAULT_CONFIG);
    let interval = config.event_interval_ns as u64;
    if interval == 0 {
        return true;
    }
    let Some(budget) = EVENT_BUDGET.get_ptr_mut(0) else {
        return true;
    };
    // SAFETY: the helper has no preconditions.
    let now = unsafe { bpf_ktime_get_coarse_ns() };
    // SAFETY: a per-CPU slot is only touched by programs on this CPU.
    let spent_until = unsafe { *budget }.max(now);
    if spent_until - now > interval * config.event_burst as u64 {
        conntrack::bump(Stat::FlowEventsRateLimited);
        return false;
    }
    // SAFETY: as above.
    unsafe { *budget = spent_until + interval };
    true
}

/// Reports a packet to the live trace when it matches the trace's filter and the trace has
/// observations left.
#[inline(always)]
fn follow_live_trace<P: Packet>(
    control: *mut TraceControl,
    pkt: &P,
    hook: Hook,
    outcome: &Outcome,
    flow: &Flow,
) {
    // SAFETY: see `classify`; userspace rewrites the slot whole, and a packet that reads a
    // half-written filter is at worst reported to the trace being set up or torn down.
    let trace_id = unsafe { (*control).live_id };
    if trace_id == 0 {
        return;
    }
    // SAFETY: as above.
    let matches = unsafe {
        (*control).matches(
            outcome.source_identity,
            outcome.destination_identity,
            flow.protocol,
            flow.destination_port,
        )
    };
    if !matches {
        return;
    }
    // The count-down is a plain read and write: the target has no atomic subtraction that
    // builds here, and two CPUs racing can only let a trace emit one observation more each.
    // SAFETY: the field is a naturally aligned `i64` in a map value that lives as long as
    // the program; volatile accesses keep the compiler from caching it.
    unsafe {
        let remaining = core::ptr::addr_of_mut!((*control).live_remaining);
        let left = core::ptr::read_volatile(remaining);
        if left <= 0 {
            return;
        }
        core::ptr::write_volatile(remaining, left - 1);
    }
    observe(pkt, hook, outcome, flow, trace_id);
}

/// Sends a trace observation.
#[inline(always)]
fn observe<P: Packet>(pkt: &P, hook: Hook, outcome: &Outcome, flow: &Flow, trace_id: u32) {
    emit(
        &TRACE_EVENTS,
        pkt,
        hook,
        outcome,
        flow,
        trace_id,
        Stat::TraceEventsLost,
    );
}

/// Writes one [`FlowEvent`] into `ring`, or counts it as `lost` when the ring is full. Each
/// field is written in place: a whole record built first would take 80 bytes of stack.
#[inline(always)]
fn emit<P: Packet>(
    ring: &RingBuf,
    pkt: &P,
    hook: Hook,
    outcome: &Outcome,
    flow: &Flow,
    trace_id: u32,
    lost: Stat,
) {
    let Some(mut entry) = ring.reserve::<FlowEvent>(0) else {
        conntrack::bump(lost);
        return;
    };
    let event = entry.as_mut_ptr();
    // SAFETY: `event` points at the reserved record, which is ours until submitted; every
    // field, padding included, is written before the submit.
    unsafe {
        (*event).timestamp_ns = bpf_ktime_get_ns();
        (*event).ifindex = pkt.ifindex();
        (*event).length = pkt.len();
        (*event).source_identity = outcome.source_identity;
        (*event).destination_identity = outcome.destination_identity;
        (*event).rule_id = outcome.rule_id;
        (*event).trace_id = trace_id;
        (*event).reason = outcome.reason as u8;
        (*event).hook = hook as u8;
        (*event).family = flow.family;
        (*event).protocol = flow.protocol;
        (*event).source_port = flow.source_port;
        (*event).destination_port = flow.destination_port;
        (*event).tcp_flags = flow.tcp_flags;
        (*event)._pad = [0; 7];
        (*event).source_address = flow.source;
        (*event).destination_address = flow.destination;
    }
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
