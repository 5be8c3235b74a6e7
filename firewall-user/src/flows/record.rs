//! One flow record as the daemon serves and logs it.

use std::{io, net::IpAddr};

use chrono::{DateTime, SecondsFormat};
use firewall_common::{FlowEvent, Hook, Reason, identity::reserved};
use nix::time::ClockId;
use serde::{Deserialize, Serialize};

use super::names::NameTable;
use crate::events;

/// Whether the recorded packet passed.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum FlowVerdict {
    /// The packet opened a flow the policy allows.
    Allow,
    /// The packet was dropped.
    Drop,
}

impl FlowVerdict {
    /// `allow` or `drop`.
    pub fn name(self) -> &'static str {
        match self {
            FlowVerdict::Allow => "allow",
            FlowVerdict::Drop => "drop",
        }
    }
}

/// One side of a recorded packet. Every field is `null` when unknown: no address for a frame
/// that is not IP, no port for protocols without ports, no identity for a packet dropped
/// before its addresses were looked up, no name for an identity the policy does not know.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Endpoint {
    /// IP address.
    pub address: Option<IpAddr>,
    /// TCP, UDP or SCTP port.
    pub port: Option<u16>,
    /// Security identity.
    pub identity: Option<u32>,
    /// App or network name, or `world`.
    pub name: Option<String>,
    /// `app`, `network` or `world`.
    pub kind: Option<String>,
    /// The app's org.
    pub org: Option<String>,
    /// The app's space.
    pub space: Option<String>,
}

/// ICMP or ICMPv6 message type and code.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Icmp {
    /// Message type.
    #[serde(rename = "type")]
    pub icmp_type: u8,
    /// Message code.
    pub code: u8,
}

/// A dropped packet, or the first packet of a flow the policy opened.
///
/// ```json
/// {"time":"2026-12-03T19:19:06.123456789Z","host":"node-7","hook":"tc-ingress",
///  "interface":"veth1","ifindex":7,"verdict":"drop","reason":"denied-by-default",
///  "reason_code":64,"protocol":"udp",
///  "source":{"address":"198.18.1.10","port":40312,"identity":256,"name":"frontend",
///            "kind":"app","org":"bank","space":"prod"},
///  "destination":{"address":"198.18.2.10","port":9999,"identity":257,"name":"backend",
///                 "kind":"app","org":"bank","space":"prod"},
///  "icmp":null,"tcp_flags":null,"length":60,"rule_id":null,"rule":null,"default_deny":true}
/// ```
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct FlowRecord {
    /// When the datapath decided, RFC 3339 in UTC with nanoseconds.
    pub time: String,
    /// The host whose datapath decided, so that logs gathered from many hosts still say
    /// where each packet was dropped.
    pub host: String,
    /// `tc-ingress`, `tc-egress` or `xdp`.
    pub hook: String,
    /// The interface the packet was seen on.
    pub interface: String,
    /// Its index.
    pub ifindex: u32,
    /// Whether it passed.
    pub verdict: FlowVerdict,
    /// Why, as `firewall_common::Reason` names it (`policy`, `denied-by-default`, ...).
    pub reason: String,
    /// The reason's code (see `firewall_common::Reason`).
    pub reason_code: u8,
    /// `tcp`, `udp`, `sctp`, `icmp`, `icmpv6` or `proto N`; `null` for a frame that is not IP.
    pub protocol: Option<String>,
    /// Who sent it.
    pub source: Endpoint,
    /// Who it was for.
    pub destination: Endpoint,
    /// Type and code of an ICMP or ICMPv6 message.
    pub icmp: Option<Icmp>,
    /// TCP flags set, such as `["SYN"]`; `null` for other protocols.
    pub tcp_flags: Option<Vec<String>>,
    /// Frame length in bytes.
    pub length: u32,
    /// The rule that allowed the flow.
    pub rule_id: Option<u32>,
    /// That rule as a policy file would say it; `null` for every drop, and for a rule removed
    /// since.
    pub rule: Option<String>,
    /// Whether the packet was dropped because no rule allows it (zero trust's default).
    pub default_deny: bool,
}

/// TCP flag bits and their names, lowest bit first.
const TCP_FLAGS: [(u8, &str); 8] = [
    (0x01, "FIN"),
    (0x02, "SYN"),
    (0x04, "RST"),
    (0x08, "PSH"),
    (0x10, "ACK"),
    (0x20, "URG"),
    (0x40, "ECE"),
    (0x80, "CWR"),
];

impl FlowRecord {
    /// The record of `event`, named by `names`, timed by `clock`, seen on `interface` of
    /// `host`.
    pub fn new(
        event: &FlowEvent,
        names: &NameTable,
        clock: &WallClock,
        host: &str,
        interface: String,
    ) -> FlowRecord {
        let reason = Reason::from_code(event.reason);
        let verdict = if events::is_drop(event) {
            FlowVerdict::Drop
        } else {
            FlowVerdict::Allow
        };
        let ip = event.family == 4 || event.family == 6;
        let (has_ports, is_icmp) = match event.protocol {
            6 | 17 | 132 => (true, false),
            1 | 58 => (false, true),
            _ => (false, false),
        };
        let port = |port: u16| (ip && has_ports).then_some(port);
        let endpoint = |address: &[u8; 16], port: Option<u16>, identity: u32| {
            let named = names.endpoint(identity);
            Endpoint {
                address: events::address(event.family, address),
                port,
                identity: (identity != reserved::UNSET).then_some(identity),
                name: named.map(|n| n.name.to_owned()),
                kind: named.map(|n| n.kind.name().to_owned()),
                org: named.and_then(|n| n.org.map(str::to_owned)),
                space: named.and_then(|n| n.space.map(str::to_owned)),
            }
        };
        let rule_id = (event.rule_id != 0).then_some(event.rule_id);
        FlowRecord {
            time: clock.format(event.timestamp_ns),
            host: host.to_owned(),
            hook: Hook::from_code(event.hook)
                .map_or_else(|| format!("unknown ({})", event.hook), |h| h.name().into()),
            interface,
            ifindex: event.ifindex,
            verdict,
            reason: reason.map_or_else(
                || format!("unknown ({})", event.reason),
                |r| r.name().into(),
            ),
            reason_code: event.reason,
            protocol: ip.then(|| events::protocol_name(event.protocol)),
            source: endpoint(
                &event.source_address,
                port(event.source_port),
                event.source_identity,
            ),
            destination: endpoint(
                &event.destination_address,
                port(event.destination_port),
                event.destination_identity,
            ),
            icmp: (ip && is_icmp).then_some(Icmp {
                icmp_type: (event.destination_port >> 8) as u8,
                code: (event.destination_port & 0xff) as u8,
            }),
            tcp_flags: (ip && event.protocol == 6).then(|| tcp_flag_names(event.tcp_flags)),
            length: event.length,
            rule_id,
            rule: rule_id.and_then(|id| names.rule_text(id)),
            default_deny: reason == Some(Reason::DeniedByDefault),
        }
    }

    /// Whether `name` is the app or network at either end.
    pub fn involves(&self, name: &str) -> bool {
        self.source.name.as_deref() == Some(name) || self.destination.name.as_deref() == Some(name)
    }
}

fn tcp_flag_names(flags: u8) -> Vec<String> {
    TCP_FLAGS
        .iter()
        .filter(|(bit, _)| flags & bit != 0)
        .map(|(_, name)| (*name).to_owned())
        .collect()
}

/// Turns the datapath's timestamps (`bpf_ktime_get_ns`, `CLOCK_MONOTONIC`) into wall-clock
/// time, by the offset between the two clocks when it was read. Read it again for each batch
/// of records, so that a step of the wall clock (NTP) shows from the next batch on.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct WallClock {
    /// `CLOCK_REALTIME - CLOCK_MONOTONIC`, in nanoseconds.
    offset_ns: i128,
}

impl WallClock {
    /// The offset between the clocks now.
    ///
    /// # Errors
    /// When a clock cannot be read (never on Linux with a valid clock id).
    pub fn now() -> io::Result<WallClock> {
        let monotonic = clock_ns(ClockId::CLOCK_MONOTONIC)?;
        let realtime = clock_ns(ClockId::CLOCK_REALTIME)?;
        Ok(WallClock {
            offset_ns: realtime - monotonic,
        })
    }

    /// A clock `offset_ns` ahead of the monotonic clock (for tests and replays).
    pub const fn with_offset(offset_ns: i128) -> WallClock {
        WallClock { offset_ns }
    }

    /// Nanoseconds since the Unix epoch of a monotonic timestamp.
    pub fn unix_ns(&self, monotonic_ns: u64) -> i128 {
        i128::from(monotonic_ns) + self.offset_ns
    }

    /// RFC 3339 in UTC with nanoseconds, such as `2026-12-03T19:19:06.123456789Z`.
    pub fn format(&self, monotonic_ns: u64) -> String {
        let unix_ns = self.unix_ns(monotonic_ns);
        let seconds = unix_ns.div_euclid(1_000_000_000);
        let nanos = unix_ns.rem_euclid(1_000_000_000);
        i64::try_from(seconds)
            .ok()
            .and_then(|s| DateTime::from_timestamp(s, nanos as u32))
            .map_or_else(
                || format!("@{unix_ns}ns"),
                |t| t.to_rfc3339_opts(SecondsFormat::Nanos, true),
            )
    }
}

fn clock_ns(clock: ClockId) -> io::Result<i128> {
    let now = nix::time::clock_gettime(clock)?;
    Ok(i128::from(now.tv_sec()) * 1_000_000_000 + i128::from(now.tv_nsec()))
}

#[cfg(test)]
mod tests;
