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

/// One flow record or trace observation. 80 bytes.
///
/// The datapath sends a flow record through `FLOW_EVENTS` for every dropped packet and for
/// the first packet of every flow it opens (once, at the first hook that tracks it), within a per-CPU rate (see `Config::event_interval_ns`);
/// and a trace observation through `TRACE_EVENTS` for every packet a trace marks (see
/// [`TraceControl`](crate::trace::TraceControl)), with `trace_id` set.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FlowEvent {
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
    /// The rule that allowed the packet or its flow; 0 when no rule did (every drop, and
    /// infrastructure traffic).
    pub rule_id: u32,
    /// The trace that marked the packet; 0 for a flow record.
    pub trace_id: u32,
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
    /// TCP flags byte (FIN 0x01, SYN 0x02, RST 0x04, PSH 0x08, ACK 0x10); 0 for others.
    pub tcp_flags: u8,
    /// Always zero.
    pub _pad: [u8; 7],
    /// Source address; IPv4 in the first four bytes.
    pub source_address: [u8; 16],
    /// Destination address; IPv4 in the first four bytes.
    pub destination_address: [u8; 16],
}

#[cfg(test)]
mod tests {
    #[test]
    fn flow_event_is_80_bytes_without_hidden_padding() {
        assert_eq!(size_of::<super::FlowEvent>(), 8 + 6 * 4 + 4 + 4 + 8 + 32);
    }
}
