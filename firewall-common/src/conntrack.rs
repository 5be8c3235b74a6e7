//! Connection tracking and fragment tracking: map layouts and lifetimes.
//!
//! A flow is stored once, under the tuple of the packet that opened it (its "original"
//! direction). A packet is looked up as it is (a hit: established) and, on a miss, with
//! source and destination swapped (a hit: reply). ICMP echo is keyed by its identifier:
//! a request puts it in the source port, a reply in the destination port, so the swap of a
//! reply finds its request.

/// Name of the conntrack map (LRU hash, [`CtKey`] to [`CtEntry`]).
pub const CONNTRACK: &str = "CONNTRACK";
/// Name of the fragment map (LRU hash, [`FragKey`] to [`FragEntry`]).
pub const FRAGMENTS: &str = "FRAGMENTS";
/// Name of the one-slot runtime configuration array ([`Config`]).
pub const CONFIG: &str = "CONFIG";

/// Default number of tracked flows. The kernel preallocates 144 bytes a flow (40-byte key,
/// 40-byte value, 64 bytes of hash and LRU bookkeeping; `bpftool map show` reports 75,498,432
/// bytes locked for this size on Linux 6.18): 72 MiB.
pub const DEFAULT_CONNTRACK_ENTRIES: u32 = 524_288;
/// Default number of datagrams whose fragments are tracked at once.
pub const DEFAULT_FRAGMENT_ENTRIES: u32 = 8_192;

/// A flow's tuple. IPv4 addresses fill the first four bytes, the rest stay zero.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct CtKey {
    /// Source address.
    pub source: [u8; 16],
    /// Destination address.
    pub destination: [u8; 16],
    /// Source port (host order); an ICMP echo request's identifier.
    pub source_port: u16,
    /// Destination port (host order); an ICMP echo reply's identifier.
    pub destination_port: u16,
    /// 4 or 6.
    pub family: u8,
    /// IP protocol.
    pub protocol: u8,
    /// Always zero.
    pub _pad: [u8; 2],
}

impl CtKey {
    /// The same flow seen from the other end.
    #[inline(always)]
    pub const fn reversed(&self) -> CtKey {
        CtKey {
            source: self.destination,
            destination: self.source,
            source_port: self.destination_port,
            destination_port: self.source_port,
            family: self.family,
            protocol: self.protocol,
            _pad: [0; 2],
        }
    }
}

/// Where a flow is in its life; each state has its own lifetime ([`Config`]).
#[repr(u8)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CtState {
    /// TCP: a SYN was allowed, no answer yet.
    SynSent = 1,
    /// TCP: the other end answered.
    Established = 2,
    /// TCP: a FIN or RST was seen.
    Closing = 3,
    /// UDP, SCTP and any other protocol: packets were allowed.
    Open = 4,
    /// ICMP echo: a request was allowed.
    Echo = 5,
}

impl CtState {
    /// The state with this code.
    pub const fn from_code(code: u8) -> Option<CtState> {
        match code {
            1 => Some(CtState::SynSent),
            2 => Some(CtState::Established),
            3 => Some(CtState::Closing),
            4 => Some(CtState::Open),
            5 => Some(CtState::Echo),
            _ => None,
        }
    }

    /// Stable lower-case name.
    pub const fn name(self) -> &'static str {
        match self {
            CtState::SynSent => "syn-sent",
            CtState::Established => "established",
            CtState::Closing => "closing",
            CtState::Open => "open",
            CtState::Echo => "echo",
        }
    }
}

/// What is known of a tracked flow.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct CtEntry {
    /// Last time a packet refreshed the flow (coarse monotonic ns, `bpf_ktime_get_coarse_ns`).
    pub last_seen_ns: u64,
    /// When the flow was opened (same clock).
    pub created_ns: u64,
    /// The rule that allowed the opening packet.
    pub rule_id: u32,
    /// [`Config::revision`] when the rule was last confirmed; a flow whose revision is behind
    /// is checked against the policy again before its next packet passes.
    pub revision: u32,
    /// Identity of the original source when the flow was opened.
    pub source_identity: u32,
    /// Identity of the original destination.
    pub destination_identity: u32,
    /// The port (or ICMP `type << 8 | code`) the policy was asked about.
    pub policy_port: u16,
    /// [`CtState`] code.
    pub state: u8,
    /// Bit 0: a reply was seen.
    pub flags: u8,
    /// Always zero.
    pub _pad: u32,
}

impl CtEntry {
    /// Set in [`CtEntry::flags`] once the reverse direction has carried a packet.
    pub const SEEN_REPLY: u8 = 1;
}

/// Identifies one IP datagram's fragments.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct FragKey {
    /// Source address (IPv4 in the first four bytes).
    pub source: [u8; 16],
    /// Destination address.
    pub destination: [u8; 16],
    /// IPv4 identification (16 bits) or IPv6 fragment identification (32 bits).
    pub id: u32,
    /// 4 or 6.
    pub family: u8,
    /// IP protocol of the fragmented payload.
    pub protocol: u8,
    /// Always zero.
    pub _pad: [u8; 2],
}

/// The verdict of a datagram's first fragment, applied to the rest.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct FragEntry {
    /// When the first fragment was seen (coarse monotonic ns).
    pub seen_ns: u64,
    /// The first fragment's rule, 0 if none.
    pub rule_id: u32,
    /// Source identity.
    pub source_identity: u32,
    /// Destination identity.
    pub destination_identity: u32,
    /// The first fragment's reason code.
    pub reason: u8,
    /// Always zero.
    pub _pad: [u8; 3],
}

/// Runtime settings the datapath reads on every packet (one slot of `CONFIG`).
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Config {
    /// Bumped by userspace after every policy change; see [`CtEntry::revision`].
    pub revision: u32,
    /// Lifetime of a TCP flow after its SYN, in seconds.
    pub tcp_syn_timeout: u32,
    /// Lifetime of an established TCP flow since its last packet, in seconds.
    pub tcp_established_timeout: u32,
    /// Lifetime of a TCP flow after FIN or RST, in seconds.
    pub tcp_closing_timeout: u32,
    /// Lifetime of a UDP, SCTP or other flow since its last packet, in seconds.
    pub other_timeout: u32,
    /// Lifetime of an ICMP echo flow, in seconds.
    pub icmp_timeout: u32,
    /// How long the verdict of a first fragment holds for the rest, in seconds.
    pub fragment_timeout: u32,
    /// The policy generation packets are judged by: ipcache and policy lookups use only the
    /// entries whose keys carry it (see `firewall_common::maps`). Userspace flips it, together
    /// with [`Config::revision`], in one write when it swaps in a whole new policy.
    pub generation: u8,
    /// Always zero.
    pub _pad: [u8; 3],
    /// Flow records: each CPU sends at most one per this many nanoseconds on average; 0
    /// sends every record. Drops and new flows beyond the rate are counted
    /// (`Stat::FlowEventsRateLimited`), not reported.
    pub event_interval_ns: u32,
    /// Flow records a CPU may send at once above its rate, after a quiet spell.
    pub event_burst: u32,
}

impl Config {
    /// Lifetimes close to Cilium's (SYN 60 s, TCP 6 h, close 10 s, non-TCP 60 s) and below
    /// Linux conntrack's (SYN-sent 120 s, established 5 days, UDP 30/120 s, ICMP 30 s,
    /// fragment reassembly 30 s): an idle long-lived TCP flow is forgotten after 6 hours.
    pub const DEFAULT: Config = Config {
        revision: 1,
        tcp_syn_timeout: 60,
        tcp_established_timeout: 21_600,
        tcp_closing_timeout: 10,
        other_timeout: 60,
        icmp_timeout: 30,
        fragment_timeout: 30,
        generation: 0,
        _pad: [0; 3],
        event_interval_ns: 500_000,
        event_burst: 256,
    };

    /// Lifetime in nanoseconds of a flow in `state`, counted from its last packet.
    #[inline(always)]
    pub const fn lifetime_ns(&self, state: u8) -> u64 {
        let seconds = match CtState::from_code(state) {
            Some(CtState::SynSent) => self.tcp_syn_timeout,
            Some(CtState::Established) => self.tcp_established_timeout,
            Some(CtState::Closing) => self.tcp_closing_timeout,
            Some(CtState::Echo) => self.icmp_timeout,
            Some(CtState::Open) | None => self.other_timeout,
        };
        seconds as u64 * 1_000_000_000
    }
}

impl Default for Config {
    fn default() -> Self {
        Config::DEFAULT
    }
}

#[cfg(feature = "user")]
mod pod {
    // SAFETY: each type is `#[repr(C)]`, made of integers and byte arrays only, with no
    // implicit padding (explicit `_pad` fields fill every gap), so every bit pattern is valid.
    unsafe impl aya::Pod for super::CtKey {}
    // SAFETY: as above.
    unsafe impl aya::Pod for super::CtEntry {}
    // SAFETY: as above.
    unsafe impl aya::Pod for super::FragKey {}
    // SAFETY: as above.
    unsafe impl aya::Pod for super::FragEntry {}
    // SAFETY: as above.
    unsafe impl aya::Pod for super::Config {}
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn layouts_have_no_hidden_padding() {
        assert_eq!(size_of::<CtKey>(), 16 + 16 + 2 + 2 + 1 + 1 + 2);
        assert_eq!(size_of::<CtEntry>(), 8 + 8 + 4 * 4 + 2 + 1 + 1 + 4);
        assert_eq!(size_of::<FragKey>(), 16 + 16 + 4 + 1 + 1 + 2);
        assert_eq!(size_of::<FragEntry>(), 8 + 4 * 3 + 1 + 3);
        assert_eq!(size_of::<Config>(), 7 * 4 + 1 + 3 + 4 + 4);
    }

    #[test]
    fn reversing_twice_is_identity() {
        let key = CtKey {
            source: [1; 16],
            destination: [2; 16],
            source_port: 3,
            destination_port: 4,
            family: 6,
            protocol: 17,
            _pad: [0; 2],
        };
        assert_eq!(key.reversed().reversed(), key);
        assert_eq!(key.reversed().source_port, 4);
    }
}
