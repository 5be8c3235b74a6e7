//! Records the datapath sends to userspace.

/// Where a program runs.
#[repr(u8)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Hook {
    /// TC classifier on the receive side of an interface.
    TcIngress = 1,
    /// TC classifier on the transmit side of an interface.
    TcEgress = 2,
    /// XDP, receive side only.
    Xdp = 3,
}

impl Hook {
    /// The hook with this code.
    pub const fn from_code(code: u8) -> Option<Hook> {
        match code {
            1 => Some(Hook::TcIngress),
            2 => Some(Hook::TcEgress),
            3 => Some(Hook::Xdp),
            _ => None,
        }
    }

    /// Stable lower-case name.
    pub const fn name(self) -> &'static str {
        match self {
            Hook::TcIngress => "tc-ingress",
            Hook::TcEgress => "tc-egress",
            Hook::Xdp => "xdp",
        }
    }
}

/// One dropped packet, as sent through the `DROP_EVENTS` ring buffer. 64 bytes.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct DropEvent {
    /// `bpf_ktime_get_ns()` at the decision (monotonic, since boot).
    pub timestamp_ns: u64,
    /// Interface the packet was seen on.
    pub ifindex: u32,
    /// Frame length in bytes.
    pub length: u32,
    /// Source identity, 0 when the packet was not looked up.
    pub source_identity: u32,
    /// Destination identity, 0 when the packet was not looked up.
    pub destination_identity: u32,
    /// Reason code (see [`Reason`](crate::Reason)).
    pub reason: u8,
    /// [`Hook`] code.
    pub hook: u8,
    /// 4, 6, or 0 when the packet was not IP or its header could not be read.
    pub family: u8,
    /// IP protocol number, 0 when unknown.
    pub protocol: u8,
    /// Source port, host order; 0 when the protocol has none.
    pub source_port: u16,
    /// Destination port or ICMP `type << 8 | code`, host order.
    pub destination_port: u16,
    /// Source address; IPv4 in the first four bytes.
    pub source_address: [u8; 16],
    /// Destination address; IPv4 in the first four bytes.
    pub destination_address: [u8; 16],
}
