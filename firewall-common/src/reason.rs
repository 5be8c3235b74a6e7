//! The one list of verdict reasons, shared by the datapath, the counters, drop events and every
//! tool that prints a verdict.
//!
//! Each reason implies its verdict: codes below [`Reason::FIRST_DROP`] allow the packet, codes
//! from it upward drop it. Numbers are part of the on-disk and on-wire contract (counter indices,
//! drop events, replay output): a retired reason keeps its number reserved and is never reused.

/// Whether a packet passes or not.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u8)]
pub enum Verdict {
    /// The packet continues on its way.
    Allow = 0,
    /// The packet is discarded.
    Drop = 1,
}

/// Why the datapath decided what it did. Reason codes index the per-reason counters, so every
/// code must stay below [`Reason::COUNT`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u8)]
pub enum Reason {
    /// An allow rule matched (source identity, destination identity, protocol, port); the
    /// decision carries that rule's id.
    Policy = 1,
    /// ARP request or reply: address resolution must work for any identity to be reachable.
    InfraArp = 2,
    /// ICMPv6 router solicitation or advertisement (types 133, 134) with hop limit 255.
    InfraRouterDiscovery = 3,
    /// ICMPv6 neighbour solicitation or advertisement (types 135, 136) with hop limit 255: the
    /// IPv6 counterpart of ARP.
    InfraNeighbourDiscovery = 4,
    /// A packet in the opening direction of a tracked flow.
    Established = 5,
    /// A packet in the reverse direction of a tracked flow.
    Reply = 6,
    /// An ICMP or ICMPv6 error (unreachable, packet too big, time exceeded, parameter
    /// problem) quoting a tracked flow.
    Related = 7,
    /// A later fragment of a datagram whose first fragment was allowed.
    FragmentOfAllowed = 8,

    /// No rule allows this (source, destination, protocol, port): zero trust's default.
    DeniedByDefault = 64,
    /// Headers truncated or inconsistent (bad IHL or version, lengths past the frame, TCP data
    /// offset below 5, too many VLAN tags, an IPv6 extension chain longer than the walk allows,
    /// a first fragment too short to hold the ports).
    Malformed = 65,
    /// A non-first IP fragment whose first fragment was never seen (or has expired): it
    /// carries no transport header, so no port can be checked.
    Fragment = 66,
    /// An EtherType that is neither IPv4, IPv6 nor ARP.
    UnsupportedEthertype = 67,
    /// An ICMP or ICMPv6 error quoting no tracked flow.
    UntrackedIcmpError = 68,
    /// A later fragment of a datagram whose first fragment was dropped.
    FragmentOfDenied = 69,
    /// A tracked flow whose rule was revoked: the first packet after the revocation.
    Revoked = 70,
}

impl Reason {
    /// The lowest code of a dropping reason.
    pub const FIRST_DROP: u8 = 64;
    /// Size of the per-reason counter array: every code is below it.
    pub const COUNT: u32 = 128;
    /// Every reason, in code order.
    pub const ALL: [Reason; 15] = [
        Reason::Policy,
        Reason::InfraArp,
        Reason::InfraRouterDiscovery,
        Reason::InfraNeighbourDiscovery,
        Reason::Established,
        Reason::Reply,
        Reason::Related,
        Reason::FragmentOfAllowed,
        Reason::DeniedByDefault,
        Reason::Malformed,
        Reason::Fragment,
        Reason::UnsupportedEthertype,
        Reason::UntrackedIcmpError,
        Reason::FragmentOfDenied,
        Reason::Revoked,
    ];

    /// The verdict this reason stands for.
    #[inline(always)]
    pub const fn verdict(self) -> Verdict {
        if (self as u8) < Self::FIRST_DROP {
            Verdict::Allow
        } else {
            Verdict::Drop
        }
    }

    /// The reason with this code, if there is one.
    pub const fn from_code(code: u8) -> Option<Reason> {
        let mut i = 0;
        while i < Self::ALL.len() {
            if Self::ALL[i] as u8 == code {
                return Some(Self::ALL[i]);
            }
            i += 1;
        }
        None
    }

    /// The stable lower-case name used in replay output, logs and metrics labels.
    pub const fn name(self) -> &'static str {
        match self {
            Reason::Policy => "policy",
            Reason::InfraArp => "infra-arp",
            Reason::InfraRouterDiscovery => "infra-router-discovery",
            Reason::InfraNeighbourDiscovery => "infra-neighbour-discovery",
            Reason::Established => "established",
            Reason::Reply => "reply",
            Reason::Related => "related",
            Reason::FragmentOfAllowed => "fragment-of-allowed",
            Reason::DeniedByDefault => "denied-by-default",
            Reason::Malformed => "malformed",
            Reason::Fragment => "fragment",
            Reason::UnsupportedEthertype => "unsupported-ethertype",
            Reason::UntrackedIcmpError => "untracked-icmp-error",
            Reason::FragmentOfDenied => "fragment-of-denied",
            Reason::Revoked => "revoked",
        }
    }
}

impl Verdict {
    /// The stable lower-case name: "allow" or "drop".
    pub const fn name(self) -> &'static str {
        match self {
            Verdict::Allow => "allow",
            Verdict::Drop => "drop",
        }
    }
}
