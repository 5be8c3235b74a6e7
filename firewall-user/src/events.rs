//! Turning flow records from the datapath into lines for people.

use std::{
    io,
    net::{IpAddr, Ipv4Addr, Ipv6Addr},
    os::fd::{AsRawFd, RawFd},
};

use aya::maps::{MapData, RingBuf};
use tokio::io::{Interest, unix::AsyncFd};

use firewall_common::{FlowEvent, Hook, Reason, Verdict};

use crate::policy::Policy;

/// A ring buffer the tokio runtime can wait on.
pub struct RingBufFd(pub RingBuf<MapData>);

impl AsRawFd for RingBufFd {
    fn as_raw_fd(&self) -> RawFd {
        self.0.as_raw_fd()
    }
}

/// Registers `ring` with the current tokio runtime, to wait until it has records.
///
/// # Errors
/// The descriptor cannot be registered (no runtime with I/O, or out of resources).
pub fn poll_ring(ring: RingBuf<MapData>) -> io::Result<AsyncFd<RingBufFd>> {
    // SAFETY: the ring buffer owns its descriptor and lives inside the AsyncFd, so the
    // descriptor stays open, and the same, for as long as it is registered.
    unsafe { AsyncFd::register_with_interest(RingBufFd(ring), Interest::READABLE) }
        .map_err(io::Error::from)
}

/// Reads a [`FlowEvent`] from ring buffer bytes; `None` when the record is too short.
pub fn parse(bytes: &[u8]) -> Option<FlowEvent> {
    if bytes.len() < size_of::<FlowEvent>() {
        return None;
    }
    // SAFETY: the length was checked; `FlowEvent` is plain old data for which every bit
    // pattern is valid, and `read_unaligned` needs no alignment.
    Some(unsafe { bytes.as_ptr().cast::<FlowEvent>().read_unaligned() })
}

/// Whether a record reports a drop (rather than an opened flow).
pub fn is_drop(event: &FlowEvent) -> bool {
    Reason::from_code(event.reason).is_none_or(|r| r.verdict() == Verdict::Drop)
}

/// One line describing a record: verdict, reason, hook, interface, addresses, protocol,
/// identities, and the allowing rule.
pub fn describe(event: &FlowEvent, policy: &Policy) -> String {
    let reason = Reason::from_code(event.reason).map_or("unknown", Reason::name);
    let hook = Hook::from_code(event.hook).map_or("unknown", Hook::name);
    let interface = interface_name(event.ifindex);
    let verdict = if is_drop(event) { "drop" } else { "allow" };
    let mut line = format!("{verdict} {reason} {hook} {interface}");
    if let (Some(src), Some(dst)) = (
        address(event.family, &event.source_address),
        address(event.family, &event.destination_address),
    ) {
        let (sport, dport) = (event.source_port, event.destination_port);
        let protocol = protocol_name(event.protocol);
        match event.protocol {
            1 | 58 => {
                line += &format!(
                    " {src} -> {dst} {protocol} type {} code {}",
                    dport >> 8,
                    dport & 0xff
                )
            }
            6 | 17 | 132 => {
                line += &format!(" {} -> {} {protocol}", join(src, sport), join(dst, dport))
            }
            _ => line += &format!(" {src} -> {dst} {protocol}"),
        }
    }
    if event.source_identity != 0 {
        let name = |id| {
            policy
                .identity_name(id)
                .map_or_else(|| id.to_string(), str::to_string)
        };
        line += &format!(
            " ({} -> {})",
            name(event.source_identity),
            name(event.destination_identity)
        );
    }
    if event.rule_id != 0 {
        line += &format!(" rule #{}", event.rule_id);
    }
    line
}

fn join(address: IpAddr, port: u16) -> String {
    match address {
        IpAddr::V4(a) => format!("{a}:{port}"),
        IpAddr::V6(a) => format!("[{a}]:{port}"),
    }
}

/// The address in a record's bytes, by family.
pub fn address(family: u8, bytes: &[u8; 16]) -> Option<IpAddr> {
    match family {
        4 => Some(IpAddr::V4(Ipv4Addr::new(
            bytes[0], bytes[1], bytes[2], bytes[3],
        ))),
        6 => Some(IpAddr::V6(Ipv6Addr::from(*bytes))),
        _ => None,
    }
}

/// The name of an IP protocol number, or the number.
pub fn protocol_name(protocol: u8) -> String {
    match protocol {
        1 => "icmp".into(),
        6 => "tcp".into(),
        17 => "udp".into(),
        58 => "icmpv6".into(),
        132 => "sctp".into(),
        p => format!("proto {p}"),
    }
}

/// The name of an interface, or `if<index>` when it is gone.
pub fn interface_name(ifindex: u32) -> String {
    // nix 0.31 answers a missing index with an empty name rather than an error (it checks
    // the helper's null return against the wrong sentinel); no interface is named "".
    match nix::net::if_::if_indextoname(ifindex) {
        Ok(name) if !name.is_empty() => name.to_string_lossy().into_owned(),
        _ => format!("if{ifindex}"),
    }
}

/// This host's name, as records and traces report it; `unknown-host` when it cannot be
/// read or is empty.
pub fn host_name() -> String {
    nix::unistd::gethostname()
        .ok()
        .map(|name| name.to_string_lossy().into_owned())
        .filter(|name| !name.is_empty())
        .unwrap_or_else(|| "unknown-host".into())
}
