//! Keys and values of the datapath's maps, and the maps' names.
//!
//! The maps, by name:
//! - `IPCACHE_HOSTS_V4`, `IPCACHE_HOSTS_V6`: hash maps, [`IpcacheKeyV4`] / [`IpcacheKeyV6`]
//!   (generation, then a full-length address) to [`Identity`](crate::Identity): app instances.
//! - `IPCACHE_V4`, `IPCACHE_V6`: LPM tries, the same keys with shorter prefixes to identity:
//!   networks. A trie entry's prefix length is [`IPCACHE_GENERATION_BITS`] plus the address
//!   prefix length.
//! - `POLICY_EXACT`: hash map, fully specified [`PolicyKey`] (prefix length 96) to
//!   [`PolicyValue`]: single-port rules.
//! - `POLICY`: LPM trie, shorter [`PolicyKey`] prefixes to [`PolicyValue`]: port ranges,
//!   every-port and every-protocol rules.
//!
//! Together each pair is one longest-prefix match: a full-length entry is the longest prefix
//! there can be, so when the hash map holds the key its answer is the trie's answer, and the
//! trie is only walked on a miss. App-to-app traffic on a single-port rule thus costs three
//! hash lookups; the trie walks (the dearer lookups) are left to networks, the world and
//! ranges. Userspace splits entries by prefix length; the datapath never sees the split.
//! - `REASON_COUNTERS`: per-CPU array of [`Counter`], indexed by reason code.
//! - `RULE_COUNTERS`: per-CPU array of [`RuleCounter`], indexed by rule id.
//! - `DROP_PAIRS`: per-CPU LRU hash, [`drop_pair`] (source and destination identity) to
//!   [`Counter`]: drops between two identities, for the most-dropped pairs.
//! - `FLOW_EVENTS`: ring buffer of [`FlowEvent`](crate::FlowEvent) flow records.
//! - `EVENT_BUDGET`: per-CPU `u64`, the flow record rate limiter's state; private to the
//!   programs.
//! - `TRACE`, `TRACE_EVENTS`: see [`trace`](crate::trace).
//! - `DATAPATH_STATS`: per-CPU array of `u64`, indexed by [`Stat`].
//! - `DECISION`: one [`Decision`] slot, written only by programs loaded for replay.
//! - `LOOKUP_KEYS`: per-CPU scratch where the datapath builds its ipcache and policy lookup
//!   keys off the stack; private to the programs (not pinned, not read by userspace).
//!
//! Every ipcache and policy key starts with a generation byte, and every prefix fixes it. The
//! datapath reads the active generation from `Config::generation` once per packet and looks
//! up only that generation's entries. Userspace replaces a whole policy by writing it under
//! the other generation, flipping `Config::generation` with one write, then deleting the old
//! generation: a packet sees either the whole old policy or the whole new one, never a mix.

/// Name of the IPv4 host map of the ipcache.
pub const IPCACHE_HOSTS_V4: &str = "IPCACHE_HOSTS_V4";
/// Name of the IPv6 host map of the ipcache.
pub const IPCACHE_HOSTS_V6: &str = "IPCACHE_HOSTS_V6";
/// Name of the IPv4 prefix trie of the ipcache.
pub const IPCACHE_V4: &str = "IPCACHE_V4";
/// Name of the IPv6 prefix trie of the ipcache.
pub const IPCACHE_V6: &str = "IPCACHE_V6";
/// Name of the exact policy map.
pub const POLICY_EXACT: &str = "POLICY_EXACT";
/// Name of the policy prefix trie.
pub const POLICY: &str = "POLICY";
/// Name of the per-reason counters.
pub const REASON_COUNTERS: &str = "REASON_COUNTERS";
/// Name of the per-rule counters.
pub const RULE_COUNTERS: &str = "RULE_COUNTERS";
/// Name of the per-identity-pair drop counters.
pub const DROP_PAIRS: &str = "DROP_PAIRS";
/// Name of the flow record ring buffer.
pub const FLOW_EVENTS: &str = "FLOW_EVENTS";
/// Name of the datapath's own statistics.
pub const DATAPATH_STATS: &str = "DATAPATH_STATS";
/// Name of the replay decision slot.
pub const DECISION: &str = "DECISION";
/// Name of the read-only global that turns on the replay decision slot. The verifier sees
/// its value at load time and removes the replay branch from live programs entirely.
pub const REPLAY_GLOBAL: &str = "REPLAY";
/// Name of the read-only global that keeps the trace slot's lookup (1, the default); the
/// benchmark clears it to measure what that lookup costs.
pub const TRACES_GLOBAL: &str = "TRACES";

/// Default capacities, used unless the loader is told otherwise.
pub mod capacity {
    /// IPv4 app instance addresses.
    pub const IPCACHE_HOSTS_V4: u32 = 65_536;
    /// IPv6 app instance addresses.
    pub const IPCACHE_HOSTS_V6: u32 = 65_536;
    /// IPv4 network prefixes.
    pub const IPCACHE_V4: u32 = 16_384;
    /// IPv6 network prefixes.
    pub const IPCACHE_V6: u32 = 16_384;
    /// Single-port policy entries (the hash map is preallocated: about 100 bytes each).
    pub const POLICY_EXACT: u32 = 131_072;
    /// Shorter policy entries (a port range becomes one entry per aligned block).
    pub const POLICY: u32 = 131_072;
    /// Rule ids: rule counters are an array indexed by id, ids run from 1 to this minus one.
    pub const RULES: u32 = 65_536;
    /// Identity pairs with drop counters; the least recently dropped pair makes room.
    pub const DROP_PAIRS: u32 = 16_384;
    /// Bytes of the flow record ring buffer (a power of two, a multiple of the page size):
    /// 2,978 records of 80 bytes with their 8-byte headers.
    pub const FLOW_EVENTS_BYTES: u32 = 256 * 1024;
    /// Bytes of the trace observation ring buffer.
    pub const TRACE_EVENTS_BYTES: u32 = 64 * 1024;
}

/// Bits of an ipcache or policy key taken by its generation byte; every prefix length
/// stored in an ipcache trie or the policy trie counts them.
pub const IPCACHE_GENERATION_BITS: u32 = 8;

/// Key of the IPv4 ipcache maps: the generation, then the address in network order.
pub type IpcacheKeyV4 = [u8; 5];
/// Key of the IPv6 ipcache maps: the generation, then the address in network order.
pub type IpcacheKeyV6 = [u8; 17];

/// The IPv4 ipcache key of `address` in `generation`.
#[inline(always)]
pub const fn ipcache_key_v4(generation: u8, address: [u8; 4]) -> IpcacheKeyV4 {
    [generation, address[0], address[1], address[2], address[3]]
}

/// The IPv6 ipcache key of `address` in `generation`.
#[inline(always)]
pub const fn ipcache_key_v6(generation: u8, address: &[u8; 16]) -> IpcacheKeyV6 {
    let mut key = [0u8; 17];
    key[0] = generation;
    let mut i = 0;
    while i < 16 {
        key[i + 1] = address[i];
        i += 1;
    }
    key
}

/// Key of the `POLICY` LPM trie (the data part; the trie adds the 32-bit prefix length).
///
/// Fields are byte arrays in network order so the trie compares them most significant bit
/// first, in this order: generation (bits 0-7), source identity (8-39), destination identity
/// (40-71), protocol (72-79), port (80-95). A rule is an entry whose prefix length says how
/// much of that is fixed:
/// - 72 ([`PolicyKey::PREFIX_ANY_PROTOCOL`]): every protocol and port between two identities;
/// - 80 ([`PolicyKey::PREFIX_ANY_PORT`]): one protocol, every port (or ICMP type);
/// - 80 + n, n in 1..=16: the ports whose top n bits match, one block of a port range.
///
/// The datapath makes exactly one lookup with the full 96-bit key of the active generation;
/// the longest matching entry wins. For ICMP and ICMPv6 the port field holds
/// `type << 8 | code`, so "type 8" is a prefix of 88 bits and "type 3 code 4" one of 96.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct PolicyKey {
    /// Policy generation the entry belongs to (see `Config::generation`).
    pub generation: u8,
    /// Source identity, big-endian.
    pub source: [u8; 4],
    /// Destination identity, big-endian.
    pub destination: [u8; 4],
    /// IP protocol number (6 TCP, 17 UDP, 132 SCTP, 1 ICMP, 58 ICMPv6, ...).
    pub protocol: u8,
    /// Destination port, or ICMP `type << 8 | code`, big-endian.
    pub port: [u8; 2],
}

impl PolicyKey {
    /// Prefix length that fixes the generation and both identities only.
    pub const PREFIX_ANY_PROTOCOL: u32 = 72;
    /// Prefix length that fixes the generation, the identities and the protocol.
    pub const PREFIX_ANY_PORT: u32 = 80;
    /// Prefix length of a fully specified key (the datapath's lookups).
    pub const PREFIX_FULL: u32 = 96;

    /// A key of generation 0 from host-order values.
    #[inline(always)]
    pub const fn new(source: u32, destination: u32, protocol: u8, port: u16) -> Self {
        PolicyKey {
            generation: 0,
            source: source.to_be_bytes(),
            destination: destination.to_be_bytes(),
            protocol,
            port: port.to_be_bytes(),
        }
    }

    /// The same key in `generation`.
    #[inline(always)]
    pub const fn with_generation(self, generation: u8) -> Self {
        PolicyKey { generation, ..self }
    }
}

/// Value of the `POLICY` trie: the rule that allows what the key covers.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PolicyValue {
    /// Id of the allowing rule, at least 1 and below the rule counters' capacity.
    pub rule_id: u32,
}

/// A packet and byte counter.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Counter {
    /// Packets counted.
    pub packets: u64,
    /// Bytes counted (the whole frame as the hook sees it).
    pub bytes: u64,
}

/// Packets, bytes and opened flows of one rule.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct RuleCounter {
    /// Packets the rule allowed, its flows' later packets included.
    pub packets: u64,
    /// Bytes of those packets.
    pub bytes: u64,
    /// Flows the rule opened.
    pub flows: u64,
}

/// Key of `DROP_PAIRS`: source identity in the high half, destination in the low.
#[inline(always)]
pub const fn drop_pair(source: u32, destination: u32) -> u64 {
    (source as u64) << 32 | destination as u64
}

/// Indices of `DATAPATH_STATS`.
#[repr(u32)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Stat {
    /// Flow records that did not fit in the ring buffer.
    FlowEventsLost = 0,
    /// Flows the datapath added to the conntrack map (the key was absent).
    ConntrackCreated = 1,
    /// Flows the datapath removed (revoked rules).
    ConntrackDeleted = 2,
    /// Flows userspace removed (`firewall conntrack flush`), kept in CPU 0's slot.
    ConntrackFlushed = 3,
    /// Conntrack inserts the kernel refused.
    ConntrackInsertFailed = 4,
    /// Flow records not sent because the CPU was over its record rate.
    FlowEventsRateLimited = 5,
    /// Trace observations that did not fit in the ring buffer.
    TraceEventsLost = 6,
}

impl Stat {
    /// Size of the `DATAPATH_STATS` array.
    pub const COUNT: u32 = 8;
}

/// What the program decided for the last packet, kept only by programs loaded for replay
/// (see [`REPLAY_GLOBAL`]).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Decision {
    /// Bumped on every packet, so a reader can tell a fresh decision from a stale one.
    pub sequence: u32,
    /// Reason code (see [`Reason`](crate::Reason)).
    pub reason: u8,
    /// IP protocol number, 0 when the packet was not IP.
    pub protocol: u8,
    /// Always zero.
    pub _pad: [u8; 2],
    /// The allowing rule, 0 when no rule decided.
    pub rule_id: u32,
    /// Source identity, 0 when the packet was not looked up.
    pub source_identity: u32,
    /// Destination identity, 0 when the packet was not looked up.
    pub destination_identity: u32,
}

#[cfg(feature = "user")]
mod pod {
    // SAFETY: each type is `#[repr(C)]`, made of integers and byte arrays only, with no
    // implicit padding, so every bit pattern is a valid value.
    unsafe impl aya::Pod for super::PolicyKey {}
    // SAFETY: as above.
    unsafe impl aya::Pod for super::PolicyValue {}
    // SAFETY: as above.
    unsafe impl aya::Pod for super::Counter {}
    // SAFETY: as above.
    unsafe impl aya::Pod for super::Decision {}
    // SAFETY: as above.
    unsafe impl aya::Pod for super::RuleCounter {}
    // SAFETY: as above.
    unsafe impl aya::Pod for crate::FlowEvent {}
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn policy_key_has_no_padding_and_generation_first() {
        assert_eq!(size_of::<PolicyKey>(), 12);
        assert_eq!(PolicyKey::PREFIX_FULL as usize, size_of::<PolicyKey>() * 8);
        let key = PolicyKey::new(1, 2, 6, 443).with_generation(1);
        assert!(key > PolicyKey::new(u32::MAX, u32::MAX, 255, u16::MAX));
    }

    #[test]
    fn ipcache_keys_put_the_generation_first() {
        assert_eq!(ipcache_key_v4(1, [10, 0, 0, 1]), [1, 10, 0, 0, 1]);
        let v6 = ipcache_key_v6(1, &[7; 16]);
        assert_eq!(v6[0], 1);
        assert_eq!(&v6[1..], &[7; 16]);
    }
}
