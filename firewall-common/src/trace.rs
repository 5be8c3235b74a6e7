//! Traces: packets the datapath reports step by step.
//!
//! Two kinds share one control slot (`TRACE`, an array of one [`TraceControl`]) and one ring
//! buffer (`TRACE_EVENTS`, of [`FlowEvent`](crate::FlowEvent) with `trace_id` set):
//!
//! - A synthetic trace is a packet userspace builds and runs through the loaded TC program
//!   with `BPF_PROG_TEST_RUN`, carrying [`TraceControl::synthetic_token`] and its trace id in
//!   the context's control buffer (`__sk_buff.cb`, see [`CB_TOKEN_LOW`]). Such a packet gets
//!   the verdict live traffic would, but reads conntrack without writing it and touches no
//!   counter; its only effect is one observation.
//! - A live trace is a filter in the control slot. Every packet checks the slot (one array
//!   lookup, the whole cost while no trace runs); a packet that matches gets its normal
//!   verdict and effects, plus one observation per hook it crosses, while
//!   [`TraceControl::live_remaining`] lasts.

/// Name of the trace control slot (array of one [`TraceControl`]).
pub const TRACE: &str = "TRACE";
/// Name of the trace observation ring buffer.
pub const TRACE_EVENTS: &str = "TRACE_EVENTS";

/// Index in `__sk_buff.cb` of the low 32 bits of a synthetic packet's token.
pub const CB_TOKEN_LOW: usize = 0;
/// Index in `__sk_buff.cb` of the high 32 bits of a synthetic packet's token.
pub const CB_TOKEN_HIGH: usize = 1;
/// Index in `__sk_buff.cb` of a synthetic packet's trace id.
pub const CB_TRACE_ID: usize = 2;

/// The trace control slot. Userspace writes it whole; the datapath only decrements
/// `live_remaining`.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct TraceControl {
    /// Token that marks a synthetic trace packet; 0 turns synthetic traces off. The daemon
    /// draws it at random when it starts, so no live packet carries it by chance.
    pub synthetic_token: u64,
    /// Observations the live trace may still emit; the datapath counts it down. The count is
    /// a cap, not exact: packets on several CPUs at once may each take the same last one.
    pub live_remaining: i64,
    /// Id of the running live trace; 0 when none runs.
    pub live_id: u32,
    /// Source identity a packet must have; 0 for any.
    pub source_identity: u32,
    /// Destination identity a packet must have; 0 for any.
    pub destination_identity: u32,
    /// IP protocol a packet must have; 0 for any.
    pub protocol: u8,
    /// Always zero.
    pub _pad: u8,
    /// Destination port (or ICMP `type << 8 | code`) a packet must have; 0 for any.
    pub port: u16,
}

impl TraceControl {
    /// Whether a packet with these facts matches the live filter. Says nothing of
    /// `live_id` or `live_remaining`.
    #[inline(always)]
    pub const fn matches(&self, source: u32, destination: u32, protocol: u8, port: u16) -> bool {
        (self.source_identity == 0 || self.source_identity == source)
            && (self.destination_identity == 0 || self.destination_identity == destination)
            && (self.protocol == 0 || self.protocol == protocol)
            && (self.port == 0 || self.port == port)
    }
}

#[cfg(feature = "user")]
mod pod {
    // SAFETY: `#[repr(C)]`, integers only, explicit padding fields fill every gap, so every
    // bit pattern is valid.
    unsafe impl aya::Pod for super::TraceControl {}
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn control_is_32_bytes_and_zero_fields_match_anything() {
        assert_eq!(size_of::<TraceControl>(), 32);
        let any = TraceControl::default();
        assert!(any.matches(300, 301, 6, 8080));
        let narrow = TraceControl {
            source_identity: 300,
            protocol: 6,
            port: 8080,
            ..TraceControl::default()
        };
        assert!(narrow.matches(300, 999, 6, 8080));
        assert!(!narrow.matches(301, 999, 6, 8080));
        assert!(!narrow.matches(300, 999, 17, 8080));
        assert!(!narrow.matches(300, 999, 6, 8081));
    }
}
