//! The datapath's maps. Names and layouts are documented in `firewall_common::maps`;
//! capacities here are defaults the loader overrides.

use aya_ebpf::{
    macros::map,
    maps::{
        Array, HashMap, LpmTrie, LruHashMap, LruPerCpuHashMap, PerCpuArray, RingBuf, lpm_trie::Key,
    },
};
use firewall_common::{
    Counter, Decision, Identity, PolicyKey, PolicyValue, Reason, RuleCounter,
    conntrack::{self, Config, CtEntry, CtKey, FragEntry, FragKey},
    maps::{IpcacheKeyV4, IpcacheKeyV6, Stat, capacity},
    trace::TraceControl,
};

use crate::parse::Flow;

/// (generation, IPv4 app instance address) to identity.
#[map(name = "IPCACHE_HOSTS_V4")]
pub static IPCACHE_HOSTS_V4: HashMap<IpcacheKeyV4, Identity> =
    HashMap::with_max_entries(capacity::IPCACHE_HOSTS_V4, 0);

/// (generation, IPv6 app instance address) to identity.
#[map(name = "IPCACHE_HOSTS_V6")]
pub static IPCACHE_HOSTS_V6: HashMap<IpcacheKeyV6, Identity> =
    HashMap::with_max_entries(capacity::IPCACHE_HOSTS_V6, 0);

/// The keys of one packet's ipcache and policy lookups.
///
/// They are built here rather than on the stack: the lookups are inlined at several call
/// sites, and with the generation byte their stack copies pushed the programs past the
/// 512-byte limit. The slot is per CPU and programs on one CPU do not preempt each other, so
/// a key written here is not touched by anyone else before the lookup that reads it.
#[repr(C)]
pub struct LookupKeys {
    pub ipcache_v4: Key<IpcacheKeyV4>,
    pub ipcache_v6: Key<IpcacheKeyV6>,
    pub policy: Key<PolicyKey>,
}

/// What the packet being classified on this CPU is, filled by `parse::parse`.
///
/// Kept here rather than on the stack for the same reason as [`LookupKeys`] (with the trace
/// paths the programs passed 512 bytes again), and safe for the same reason: programs on one
/// CPU do not preempt each other, so the slot is one packet's from parse to verdict.
#[map(name = "FLOW")]
pub static FLOW: PerCpuArray<Flow> = PerCpuArray::with_max_entries(1, 0);

/// One [`LookupKeys`] per CPU.
#[map(name = "LOOKUP_KEYS")]
pub static LOOKUP_KEYS: PerCpuArray<LookupKeys> = PerCpuArray::with_max_entries(1, 0);

/// (generation, IPv4 network prefix) to identity.
#[map(name = "IPCACHE_V4")]
pub static IPCACHE_V4: LpmTrie<IpcacheKeyV4, Identity> =
    LpmTrie::with_max_entries(capacity::IPCACHE_V4, 0);

/// (generation, IPv6 network prefix) to identity.
#[map(name = "IPCACHE_V6")]
pub static IPCACHE_V6: LpmTrie<IpcacheKeyV6, Identity> =
    LpmTrie::with_max_entries(capacity::IPCACHE_V6, 0);

/// Fully specified (generation, source, destination, protocol, port) to the allowing rule.
#[map(name = "POLICY_EXACT")]
pub static POLICY_EXACT: HashMap<PolicyKey, PolicyValue> =
    HashMap::with_max_entries(capacity::POLICY_EXACT, 0);

/// (generation, source, destination, protocol, port prefix) to the allowing rule.
#[map(name = "POLICY")]
pub static POLICY: LpmTrie<PolicyKey, PolicyValue> = LpmTrie::with_max_entries(capacity::POLICY, 0);

/// Packets and bytes per reason code.
#[map(name = "REASON_COUNTERS")]
pub static REASON_COUNTERS: PerCpuArray<Counter> = PerCpuArray::with_max_entries(Reason::COUNT, 0);

/// Packets, bytes and opened flows per rule id.
#[map(name = "RULE_COUNTERS")]
pub static RULE_COUNTERS: PerCpuArray<RuleCounter> =
    PerCpuArray::with_max_entries(capacity::RULES, 0);

/// Drops per (source identity, destination identity), see `maps::drop_pair`.
#[map(name = "DROP_PAIRS")]
pub static DROP_PAIRS: LruPerCpuHashMap<u64, Counter> =
    LruPerCpuHashMap::with_max_entries(capacity::DROP_PAIRS, 0);

/// A record per drop and per opened flow, within the rate.
#[map(name = "FLOW_EVENTS")]
pub static FLOW_EVENTS: RingBuf = RingBuf::with_byte_size(capacity::FLOW_EVENTS_BYTES, 0);

/// The flow record rate limiter: per CPU, the time at which the CPU's record budget is
/// spent (the "theoretical arrival time" of the generic cell rate algorithm).
#[map(name = "EVENT_BUDGET")]
pub static EVENT_BUDGET: PerCpuArray<u64> = PerCpuArray::with_max_entries(1, 0);

/// The running traces, see `firewall_common::trace`.
#[map(name = "TRACE")]
pub static TRACE: Array<TraceControl> = Array::with_max_entries(1, 0);

/// An observation per traced packet and hook.
#[map(name = "TRACE_EVENTS")]
pub static TRACE_EVENTS: RingBuf = RingBuf::with_byte_size(capacity::TRACE_EVENTS_BYTES, 0);

/// The datapath's own statistics, indexed by [`Stat`].
#[map(name = "DATAPATH_STATS")]
pub static DATAPATH_STATS: PerCpuArray<u64> = PerCpuArray::with_max_entries(Stat::COUNT, 0);

/// The last decision, kept only when the programs were loaded for replay.
#[map(name = "DECISION")]
pub static DECISION: Array<Decision> = Array::with_max_entries(1, 0);

/// Tracked flows, under the tuple of the packet that opened each.
#[map(name = "CONNTRACK")]
pub static CONNTRACK: LruHashMap<CtKey, CtEntry> =
    LruHashMap::with_max_entries(conntrack::DEFAULT_CONNTRACK_ENTRIES, 0);

/// Verdicts of first fragments, for the rest of their datagrams.
#[map(name = "FRAGMENTS")]
pub static FRAGMENTS: LruHashMap<FragKey, FragEntry> =
    LruHashMap::with_max_entries(conntrack::DEFAULT_FRAGMENT_ENTRIES, 0);

/// Runtime configuration: the policy revision and generation, and the lifetimes.
#[map(name = "CONFIG")]
pub static CONFIG: Array<Config> = Array::with_max_entries(1, 0);
