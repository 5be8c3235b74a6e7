//! The packet a synthetic trace injects, built from a [`TraceRequest`] and the policy's
//! apps, or taken whole from the request.

use std::net::IpAddr;

use etherparse::PacketBuilder;

use super::{TraceError, TraceRequest};
use crate::policy::{App, Policy};

/// Source port of a built TCP, UDP or SCTP packet when the request names none: the first
/// of the IANA dynamic range, where clients' ports come from.
pub const DEFAULT_SOURCE_PORT: u16 = 49_152;

/// Identifier and sequence number of a built ICMP echo.
const ECHO_ID: u16 = 1;

/// Ethernet addresses of built frames; the datapath does not look at them.
const SOURCE_MAC: [u8; 6] = [0x02, 0, 0, 0, 0, 0x01];
const DESTINATION_MAC: [u8; 6] = [0x02, 0, 0, 0, 0, 0x02];

/// Frames shorter than an Ethernet header cannot be run.
const MIN_FRAME: usize = 14;

/// Largest frame a request may carry.
const MAX_FRAME: usize = 9_216;

/// A transport the builder knows.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Transport {
    Tcp,
    Udp,
    Sctp,
    Icmp,
    Icmpv6,
    /// Any other IP protocol, by number: an IP header with no payload.
    Other(u8),
}

impl Transport {
    fn parse(name: Option<&str>) -> Result<Transport, TraceError> {
        match name.unwrap_or("tcp") {
            "tcp" | "6" => Ok(Transport::Tcp),
            "udp" | "17" => Ok(Transport::Udp),
            "sctp" | "132" => Ok(Transport::Sctp),
            "icmp" | "1" => Ok(Transport::Icmp),
            "icmpv6" | "58" => Ok(Transport::Icmpv6),
            other => match other.parse::<u8>() {
                // Extension headers would be parsed as such, not as a transport.
                Ok(number) if !matches!(number, 0 | 43 | 44 | 51 | 60 | 135 | 139 | 140) => {
                    Ok(Transport::Other(number))
                }
                _ => Err(TraceError::invalid(format!(
                    "protocol {other:?}: expected tcp, udp, sctp, icmp, icmpv6 or the number \
                     of another transport protocol"
                ))),
            },
        }
    }

    fn has_ports(self) -> bool {
        matches!(self, Transport::Tcp | Transport::Udp | Transport::Sctp)
    }
}

impl std::fmt::Display for Transport {
    /// The protocol's name as flow records and traces print it: `tcp`, ..., or `proto N`.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let number = match *self {
            Transport::Tcp => 6,
            Transport::Udp => 17,
            Transport::Sctp => 132,
            Transport::Icmp => 1,
            Transport::Icmpv6 => 58,
            Transport::Other(number) => number,
        };
        f.write_str(&crate::events::protocol_name(number))
    }
}

/// The frame to inject for `request`.
///
/// # Errors
/// [`TraceError::Unknown`] for an app that is not registered; [`TraceError::Invalid`] for
/// a request that contradicts itself, misses a port, mixes address families, or carries a
/// frame that is not hex or has the wrong size.
pub fn build(request: &TraceRequest, policy: &Policy) -> Result<Vec<u8>, TraceError> {
    if let Some(hex) = &request.frame {
        return raw_frame(request, hex);
    }
    let transport = Transport::parse(request.protocol.as_deref())?;
    check_fields(request, transport)?;
    let (source, destination) = addresses(request, policy, transport)?;
    let mut frame = Vec::new();
    let base = PacketBuilder::ethernet2(SOURCE_MAC, DESTINATION_MAC);
    let ip = match (source, destination) {
        (IpAddr::V4(s), IpAddr::V4(d)) => base.ipv4(s.octets(), d.octets(), 64),
        (IpAddr::V6(s), IpAddr::V6(d)) => base.ipv6(s.octets(), d.octets(), 64),
        _ => {
            return Err(TraceError::invalid(
                "source and destination families differ",
            ));
        }
    };
    let source_port = request.source_port.unwrap_or(DEFAULT_SOURCE_PORT);
    let port = request.port.unwrap_or(0);
    let written = match transport {
        Transport::Tcp => {
            let flags = request.tcp_flags.as_deref().unwrap_or("S");
            tcp(ip.tcp(source_port, port, 1, 64_240), flags)?.write(&mut frame, &[])
        }
        Transport::Udp => ip.udp(source_port, port).write(&mut frame, &[]),
        Transport::Sctp => {
            // The common header: ports, verification tag, checksum. The datapath reads
            // only the ports.
            let mut header = [0u8; 12];
            header[..2].copy_from_slice(&source_port.to_be_bytes());
            header[2..4].copy_from_slice(&port.to_be_bytes());
            ip.write(&mut frame, etherparse::IpNumber(132), &header)
        }
        Transport::Icmp | Transport::Icmpv6 => icmp(ip, transport, request, &mut frame)?,
        Transport::Other(number) => ip.write(&mut frame, etherparse::IpNumber(number), &[]),
    };
    written.map_err(|e| TraceError::invalid(format!("building the packet: {e}")))?;
    Ok(frame)
}

fn raw_frame(request: &TraceRequest, hex: &str) -> Result<Vec<u8>, TraceError> {
    let other_fields = TraceRequest {
        frame: None,
        ..request.clone()
    };
    if other_fields != TraceRequest::default() {
        return Err(TraceError::invalid(
            "frame: a whole frame is traced as it is; drop the other fields",
        ));
    }
    let bytes = decode_hex(hex)?;
    if !(MIN_FRAME..=MAX_FRAME).contains(&bytes.len()) {
        return Err(TraceError::invalid(format!(
            "frame: {} bytes; a frame has {MIN_FRAME} to {MAX_FRAME}",
            bytes.len()
        )));
    }
    Ok(bytes)
}

fn decode_hex(hex: &str) -> Result<Vec<u8>, TraceError> {
    let digits: Vec<u8> = hex.bytes().filter(|b| !b.is_ascii_whitespace()).collect();
    if !digits.len().is_multiple_of(2) {
        return Err(TraceError::invalid("frame: an odd number of hex digits"));
    }
    digits
        .chunks(2)
        .enumerate()
        .map(|(i, pair)| {
            std::str::from_utf8(pair)
                .ok()
                .and_then(|s| u8::from_str_radix(s, 16).ok())
                .ok_or_else(|| TraceError::invalid(format!("frame: byte {i} is not hex")))
        })
        .collect()
}

fn check_fields(request: &TraceRequest, transport: Transport) -> Result<(), TraceError> {
    if request.source_app.is_none() && request.source_ip.is_none() {
        return Err(TraceError::invalid(
            "name a source: source_app or source_ip",
        ));
    }
    if request.destination_app.is_some() == request.destination_ip.is_some() {
        return Err(TraceError::invalid(
            "name one destination: destination_app or destination_ip",
        ));
    }
    let icmp = matches!(transport, Transport::Icmp | Transport::Icmpv6);
    if transport.has_ports() {
        if matches!(request.port, None | Some(0)) {
            return Err(TraceError::invalid(format!(
                "{transport} needs a destination port (1-65535)"
            )));
        }
    } else if request.port.is_some() || request.source_port.is_some() {
        return Err(TraceError::invalid(if icmp {
            "ICMP has no ports: give icmp_type and icmp_code instead".to_owned()
        } else {
            format!("{transport} has no ports")
        }));
    }
    if !icmp && (request.icmp_type.is_some() || request.icmp_code.is_some()) {
        return Err(TraceError::invalid("icmp_type and icmp_code are for ICMP"));
    }
    if request.tcp_flags.is_some() && transport != Transport::Tcp {
        return Err(TraceError::invalid("tcp_flags are for TCP"));
    }
    Ok(())
}

/// Source and destination addresses, of one family. A named app gives its first address of
/// the family the other end (or the protocol) needs.
fn addresses(
    request: &TraceRequest,
    policy: &Policy,
    transport: Transport,
) -> Result<(IpAddr, IpAddr), TraceError> {
    let app = |name: &String| {
        policy
            .apps
            .iter()
            .find(|app| &app.name == name)
            .ok_or_else(|| TraceError::Unknown {
                kind: "app",
                name: name.clone(),
            })
    };
    let source_app = request.source_app.as_ref().map(app).transpose()?;
    let destination_app = request.destination_app.as_ref().map(app).transpose()?;
    if let (Some(app), Some(ip)) = (source_app, request.source_ip)
        && !app.ips.contains(&ip)
    {
        return Err(TraceError::invalid(format!(
            "source_ip {ip} is not an address of app {} ({})",
            app.name,
            list(&app.ips)
        )));
    }
    // The family: fixed by a given address or by the ICMP version, else IPv4 when both
    // ends have one.
    let family = request
        .source_ip
        .or(request.destination_ip)
        .map(|ip| ip.is_ipv6())
        .or(match transport {
            Transport::Icmp => Some(false),
            Transport::Icmpv6 => Some(true),
            _ => None,
        });
    let family = family.unwrap_or_else(|| {
        let has_v4 = |app: Option<&App>| app.is_none_or(|a| a.ips.iter().any(IpAddr::is_ipv4));
        !(has_v4(source_app) && has_v4(destination_app))
    });
    let pick = |app: &App| {
        app.ips
            .iter()
            .copied()
            .find(|ip| ip.is_ipv6() == family)
            .ok_or_else(|| {
                TraceError::invalid(format!(
                    "app {} has no IPv{} address ({})",
                    app.name,
                    if family { 6 } else { 4 },
                    list(&app.ips)
                ))
            })
    };
    let source = match (request.source_ip, source_app) {
        (Some(ip), _) => ip,
        (None, Some(app)) => pick(app)?,
        (None, None) => unreachable!("checked by check_fields"),
    };
    let destination = match (request.destination_ip, destination_app) {
        (Some(ip), _) => ip,
        (None, Some(app)) => pick(app)?,
        (None, None) => unreachable!("checked by check_fields"),
    };
    if source.is_ipv6() != destination.is_ipv6() {
        return Err(TraceError::invalid(format!(
            "source {source} and destination {destination} are of different families"
        )));
    }
    let icmp_family_ok = match transport {
        Transport::Icmp => !family,
        Transport::Icmpv6 => family,
        _ => true,
    };
    if !icmp_family_ok {
        return Err(TraceError::invalid(
            "icmp is for IPv4 and icmpv6 for IPv6 addresses",
        ));
    }
    Ok((source, destination))
}

fn list(ips: &[IpAddr]) -> String {
    let all: Vec<String> = ips.iter().map(IpAddr::to_string).collect();
    all.join(", ")
}

fn tcp(
    mut step: etherparse::PacketBuilderStep<etherparse::TcpHeader>,
    flags: &str,
) -> Result<etherparse::PacketBuilderStep<etherparse::TcpHeader>, TraceError> {
    if flags.is_empty() {
        return Err(TraceError::invalid("tcp_flags: give at least one flag"));
    }
    for letter in flags.chars() {
        step = match letter.to_ascii_uppercase() {
            'S' => step.syn(),
            'A' => step.ack(1),
            'F' => step.fin(),
            'R' => step.rst(),
            'P' => step.psh(),
            'U' => step.urg(0),
            other => {
                return Err(TraceError::invalid(format!(
                    "tcp_flags: {other:?} is not one of S, A, F, R, P, U"
                )));
            }
        };
    }
    Ok(step)
}

fn icmp(
    ip: etherparse::PacketBuilderStep<etherparse::IpHeaders>,
    transport: Transport,
    request: &TraceRequest,
    frame: &mut Vec<u8>,
) -> Result<Result<(), etherparse::err::packet::BuildWriteError>, TraceError> {
    let code = request.icmp_code.unwrap_or(0);
    let v6 = transport == Transport::Icmpv6;
    let (request_type, reply_type) = if v6 { (128, 129) } else { (8, 0) };
    let icmp_type = request.icmp_type.unwrap_or(request_type);
    if request.icmp_type.is_none() && request.icmp_code.is_some() {
        return Err(TraceError::invalid("icmp_code needs an icmp_type"));
    }
    let echo = code == 0 && (icmp_type == request_type || icmp_type == reply_type);
    let written = match (v6, echo, icmp_type == request_type) {
        (false, true, true) => ip.icmpv4_echo_request(ECHO_ID, ECHO_ID).write(frame, &[]),
        (false, true, false) => ip.icmpv4_echo_reply(ECHO_ID, ECHO_ID).write(frame, &[]),
        (true, true, true) => ip.icmpv6_echo_request(ECHO_ID, ECHO_ID).write(frame, &[]),
        (true, true, false) => ip.icmpv6_echo_reply(ECHO_ID, ECHO_ID).write(frame, &[]),
        (false, false, _) => ip.icmpv4_raw(icmp_type, code, [0; 4]).write(frame, &[]),
        (true, false, _) => ip.icmpv6_raw(icmp_type, code, [0; 4]).write(frame, &[]),
    };
    Ok(written)
}

#[cfg(test)]
mod tests;
