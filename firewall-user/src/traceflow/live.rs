//! Live traces: a filter armed in the datapath, and the real packets it marks, reported at
//! every hook they cross.
//!
//! The datapath reports observations, not packets: one per hook a marked packet crosses.
//! [`PacketGrouper`] numbers the packets. Observations of one packet come in a burst with
//! the same headers and a different hook or interface each; the same headers at a hook and
//! interface already seen begin the next packet. Packets of one flow in flight together
//! can thus be numbered in a different order than they were sent; their count stays right.

use firewall_common::{FlowEvent, Hook, Reason, Verdict};
use serde::{Deserialize, Serialize};

use super::{
    TraceError,
    report::{self, PacketView},
};
use crate::{events, policy::Policy};

/// Packets a live trace reports when the request names no count.
pub const DEFAULT_COUNT: u32 = 1;
/// Most packets one live trace may report.
pub const MAX_COUNT: u32 = 1_000;
/// Seconds a live trace waits when the request names no timeout.
pub const DEFAULT_TIMEOUT_SECONDS: u64 = 30;
/// Longest a live trace may wait.
pub const MAX_TIMEOUT_SECONDS: u64 = 3_600;
/// Observations the datapath may emit per requested packet: a packet crossing this many
/// hooks is reported at each; past this the datapath stops reporting for the trace.
pub const HOOKS_PER_PACKET: i64 = 8;

/// What a live trace waits for.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LiveRequest {
    /// App (or network, or `world`) the packets come from.
    pub source_app: String,
    /// App (or network, or `world`) the packets go to.
    pub destination_app: String,
    /// `tcp`, `udp`, `sctp`, `icmp`, `icmpv6` or a protocol number; any when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub protocol: Option<String>,
    /// Destination port; any when absent. Needs a protocol with ports.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub port: Option<u16>,
    /// Packets to report, 1 to [`MAX_COUNT`]; [`DEFAULT_COUNT`] when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub count: Option<u32>,
    /// Seconds to wait at most, 1 to [`MAX_TIMEOUT_SECONDS`].
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timeout_seconds: Option<u64>,
}

/// The protocol number and port a live request filters on (0 for any).
///
/// # Errors
/// [`TraceError::Invalid`] for an unknown protocol, a port without a protocol that has
/// ports, a count or timeout out of range.
pub fn filter(request: &LiveRequest) -> Result<(u8, u16, u32, u64), TraceError> {
    let protocol = match request.protocol.as_deref() {
        None => 0,
        Some("tcp") => 6,
        Some("udp") => 17,
        Some("sctp") => 132,
        Some("icmp") => 1,
        Some("icmpv6") => 58,
        Some(other) => match other.parse::<u8>() {
            Ok(number) if number != 0 => number,
            _ => {
                return Err(TraceError::invalid(format!(
                    "protocol {other:?}: expected tcp, udp, sctp, icmp, icmpv6 or a number"
                )));
            }
        },
    };
    let port = match request.port {
        None => 0,
        Some(0) => return Err(TraceError::invalid("port: 1-65535")),
        Some(port) if matches!(protocol, 6 | 17 | 132) => port,
        Some(_) => {
            return Err(TraceError::invalid(
                "port: give a protocol with ports (tcp, udp, sctp)",
            ));
        }
    };
    let count = request.count.unwrap_or(DEFAULT_COUNT);
    if !(1..=MAX_COUNT).contains(&count) {
        return Err(TraceError::invalid(format!("count: 1 to {MAX_COUNT}")));
    }
    let timeout = request.timeout_seconds.unwrap_or(DEFAULT_TIMEOUT_SECONDS);
    if !(1..=MAX_TIMEOUT_SECONDS).contains(&timeout) {
        return Err(TraceError::invalid(format!(
            "timeout_seconds: 1 to {MAX_TIMEOUT_SECONDS}"
        )));
    }
    Ok((protocol, port, count, timeout))
}

/// One line of a live trace's stream (NDJSON).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "event", rename_all = "kebab-case")]
pub enum LiveMessage {
    /// The filter is in the datapath; packets from now on are reported.
    Armed {
        /// Host name of the daemon.
        host: String,
        /// The trace's id.
        trace_id: u32,
    },
    /// A marked packet at one hook.
    Observation(Box<LiveObservation>),
    /// The trace ended.
    Done {
        /// Packets reported.
        packets: u32,
        /// `count` (all packets seen) or `timeout`.
        ended: String,
    },
}

/// A marked packet at one hook.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct LiveObservation {
    /// Which packet of the trace, from 1.
    pub packet: u32,
    /// The hook.
    pub hook: String,
    /// The interface.
    pub interface: String,
    /// Its headers.
    pub headers: PacketView,
    /// Source app, network or `world`.
    pub source: String,
    /// Destination app, network or `world`.
    pub destination: String,
    /// What connection tracking knew of it (see the synthetic trace's `conntrack` step).
    pub conntrack: String,
    /// `forwarded` or `dropped`.
    pub verdict: String,
    /// Reason name.
    pub reason: String,
    /// The rule that allowed the packet or its flow.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub rule_id: Option<u32>,
    /// That rule's text.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub rule: Option<String>,
}

/// Numbers the packets of a live trace from their observations (see the module docs).
#[derive(Debug, Default)]
pub struct PacketGrouper {
    packets: u32,
    current: Option<Headers>,
    seen_at: Vec<(u8, u32)>,
}

/// What stays the same for one packet from hook to hook.
type Headers = (u8, u8, [u8; 16], [u8; 16], u16, u16, u32);

impl PacketGrouper {
    /// The number of the packet `event` belongs to.
    pub fn place(&mut self, event: &FlowEvent) -> u32 {
        let headers = (
            event.family,
            event.protocol,
            event.source_address,
            event.destination_address,
            event.source_port,
            event.destination_port,
            event.length,
        );
        let at = (event.hook, event.ifindex);
        let same_packet = self.current == Some(headers) && !self.seen_at.contains(&at);
        if !same_packet {
            self.packets += 1;
            self.current = Some(headers);
            self.seen_at.clear();
        }
        self.seen_at.push(at);
        self.packets
    }

    /// Packets numbered so far.
    pub fn packets(&self) -> u32 {
        self.packets
    }
}

/// A live observation of `event`, packet number `packet`, named from `policy`.
pub fn observation(event: &FlowEvent, packet: u32, policy: &Policy) -> LiveObservation {
    let reason = Reason::from_code(event.reason);
    let name = |id| {
        policy
            .identity_name(id)
            .map_or_else(|| format!("identity {id}"), str::to_owned)
    };
    let rule = (event.rule_id != 0)
        .then(|| policy.rule(event.rule_id))
        .flatten()
        .map(|r| policy.describe_rule(r));
    let dropped = reason.is_none_or(|r| r.verdict() == Verdict::Drop);
    LiveObservation {
        packet,
        hook: Hook::from_code(event.hook)
            .map_or("unknown", Hook::name)
            .to_owned(),
        interface: events::interface_name(event.ifindex),
        headers: report::packet_view(event),
        source: name(event.source_identity),
        destination: name(event.destination_identity),
        conntrack: report::conntrack_state(reason, event).0.to_owned(),
        verdict: if dropped { "dropped" } else { "forwarded" }.to_owned(),
        reason: reason.map_or("unknown", Reason::name).to_owned(),
        rule_id: (event.rule_id != 0).then_some(event.rule_id),
        rule,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn event(hook: Hook, ifindex: u32, length: u32) -> FlowEvent {
        FlowEvent {
            timestamp_ns: 0,
            ifindex,
            length,
            source_identity: 256,
            destination_identity: 257,
            rule_id: 1,
            trace_id: 9,
            reason: Reason::Policy as u8,
            hook: hook as u8,
            family: 4,
            protocol: 17,
            source_port: 40_000,
            destination_port: 8081,
            tcp_flags: 0,
            _pad: [0; 7],
            source_address: [198, 18, 1, 10, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0],
            destination_address: [198, 18, 2, 10, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0],
        }
    }

    #[test]
    fn a_packet_is_one_observation_per_hook_and_interface() {
        let mut grouper = PacketGrouper::default();
        assert_eq!(grouper.place(&event(Hook::TcIngress, 5, 60)), 1);
        assert_eq!(grouper.place(&event(Hook::TcEgress, 6, 60)), 1);
        // The same headers at a hook already seen: the next packet.
        assert_eq!(grouper.place(&event(Hook::TcIngress, 5, 60)), 2);
        assert_eq!(grouper.place(&event(Hook::TcEgress, 6, 60)), 2);
        // Other headers: another packet, wherever it is seen.
        assert_eq!(grouper.place(&event(Hook::TcEgress, 6, 61)), 3);
        assert_eq!(grouper.packets(), 3);
    }

    #[test]
    fn requests_out_of_range_are_refused_with_the_field_named() {
        let base = LiveRequest {
            source_app: "frontend".into(),
            destination_app: "backend".into(),
            ..LiveRequest::default()
        };
        assert_eq!(filter(&base), Ok((0, 0, 1, 30)));
        let port_only = LiveRequest {
            port: Some(8081),
            ..base.clone()
        };
        assert!(matches!(filter(&port_only), Err(TraceError::Invalid(m)) if m.starts_with("port")));
        let zero = LiveRequest {
            count: Some(0),
            ..base.clone()
        };
        assert!(matches!(filter(&zero), Err(TraceError::Invalid(m)) if m.starts_with("count")));
        let udp = LiveRequest {
            protocol: Some("udp".into()),
            port: Some(8081),
            count: Some(3),
            timeout_seconds: Some(5),
            ..base
        };
        assert_eq!(filter(&udp), Ok((17, 8081, 3, 5)));
    }
}
