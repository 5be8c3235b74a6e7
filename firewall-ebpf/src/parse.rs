//! Header parsing: Ethernet (up to two VLAN tags), ARP, IPv4 (with options), IPv6 (with a
//! bounded extension header walk), and the transport fields policy needs.
//!
//! Every length the packet claims is checked against what is really there: a header that runs
//! past the frame, or past the end its IP header announces, makes the packet malformed.

use firewall_common::{Reason, conntrack::CtKey};

use crate::packet::Packet;

const ETH_HEADER: u32 = 14;
const ETH_P_IPV4: u16 = 0x0800;
const ETH_P_IPV6: u16 = 0x86dd;
const ETH_P_ARP: u16 = 0x0806;
const ETH_P_8021Q: u16 = 0x8100;
const ETH_P_8021AD: u16 = 0x88a8;
/// VLAN tags accepted in front of the payload (802.1ad outer plus 802.1Q inner).
const MAX_VLAN_TAGS: u32 = 2;
/// Fixed part of an ARP packet for Ethernet/IPv4.
const ARP_LEN: u32 = 28;

const IPV6_HEADER: u32 = 40;
/// IPv6 extension headers walked before giving up on the packet as malformed. Real traffic
/// carries at most three or four; anything longer is an evasion attempt or garbage.
pub const MAX_IPV6_EXTENSIONS: u32 = 6;

const NEXTHDR_HOP: u8 = 0;
const NEXTHDR_ROUTING: u8 = 43;
const NEXTHDR_FRAGMENT: u8 = 44;
const NEXTHDR_AUTH: u8 = 51;
const NEXTHDR_DEST: u8 = 60;

pub const IPPROTO_ICMP: u8 = 1;
pub const IPPROTO_TCP: u8 = 6;
pub const IPPROTO_UDP: u8 = 17;
pub const IPPROTO_ICMPV6: u8 = 58;
pub const IPPROTO_SCTP: u8 = 132;

/// Not a fragment, or an atomic one (offset 0, no more fragments).
pub const FRAGMENT_NONE: u8 = 0;
/// The first fragment of a datagram: it carries the transport header.
pub const FRAGMENT_FIRST: u8 = 1;
/// A later fragment: no transport header.
pub const FRAGMENT_LATER: u8 = 2;

/// ICMP echo role, for tracking by identifier.
pub const ECHO_NONE: u8 = 0;
/// Echo request (ICMP 8, ICMPv6 128).
pub const ECHO_REQUEST: u8 = 1;
/// Echo reply (ICMP 0, ICMPv6 129).
pub const ECHO_REPLY: u8 = 2;

pub const TCP_FIN: u8 = 0x01;
pub const TCP_SYN: u8 = 0x02;
pub const TCP_RST: u8 = 0x04;
pub const TCP_ACK: u8 = 0x10;

/// What policy and connection tracking need to know of an IP packet.
#[derive(Clone, Copy)]
pub struct Flow {
    /// 4 or 6.
    pub family: u8,
    /// Transport protocol (after the IPv6 extension headers).
    pub protocol: u8,
    /// IPv4 TTL or IPv6 hop limit.
    pub hop_limit: u8,
    pub source: [u8; 16],
    pub destination: [u8; 16],
    /// Host order; 0 for protocols without ports.
    pub source_port: u16,
    /// Host order; ICMP and ICMPv6 put `type << 8 | code` here.
    pub destination_port: u16,
    /// TCP flags (FIN, SYN, RST, PSH, ACK, ...), 0 for other protocols.
    pub tcp_flags: u8,
    /// One of the `FRAGMENT_*` constants.
    pub fragment: u8,
    /// One of the `ECHO_*` constants.
    pub echo: u8,
    /// ICMP echo identifier.
    pub echo_id: u16,
    /// IPv4 identification or IPv6 fragment identification, for fragments.
    pub fragment_id: u32,
    /// Offset of the transport header.
    pub l4: u32,
    /// End of the IP datagram (the frame may carry padding after it).
    pub end: u32,
}

impl Flow {
    const fn empty(family: u8) -> Flow {
        Flow {
            family,
            protocol: 0,
            hop_limit: 0,
            source: [0; 16],
            destination: [0; 16],
            source_port: 0,
            destination_port: 0,
            tcp_flags: 0,
            fragment: FRAGMENT_NONE,
            echo: ECHO_NONE,
            echo_id: 0,
            fragment_id: 0,
            l4: 0,
            end: 0,
        }
    }

    /// A flow with nothing known but the family, for drop reports.
    pub const fn unknown() -> Flow {
        Flow::empty(0)
    }
}

/// A frame the classifier understands.
pub enum Frame {
    /// ARP; the flow stays empty.
    Arp,
    /// IPv4 or IPv6; the flow holds what was parsed.
    Ip,
}

#[inline(always)]
fn be16(b: [u8; 2]) -> u16 {
    u16::from_be_bytes(b)
}

/// Parses a frame from its Ethernet header on, filling `flow` as far as it gets (addresses
/// are reported in drop events even when a later header is bad). The flow is written in
/// place rather than returned: moving it through results costs stack the verifier's 512
/// bytes cannot spare.
#[inline(always)]
pub fn parse<P: Packet>(pkt: &P, flow: &mut Flow) -> Result<Frame, Reason> {
    let len = pkt.len();
    let mut offset = ETH_HEADER;
    let mut ethertype = be16(pkt.load(12).map_err(|_| Reason::Malformed)?);
    let mut tags = 0;
    while ethertype == ETH_P_8021Q || ethertype == ETH_P_8021AD {
        if tags == MAX_VLAN_TAGS {
            return Err(Reason::Malformed);
        }
        // A tag is 4 bytes: TCI, then the next EtherType.
        ethertype = be16(pkt.load(offset + 2).map_err(|_| Reason::Malformed)?);
        offset += 4;
        tags += 1;
    }
    match ethertype {
        ETH_P_IPV4 => parse_ipv4(pkt, offset, len, flow).map(|()| Frame::Ip),
        ETH_P_IPV6 => parse_ipv6(pkt, offset, len, flow).map(|()| Frame::Ip),
        ETH_P_ARP if offset + ARP_LEN <= len => Ok(Frame::Arp),
        ETH_P_ARP => Err(Reason::Malformed),
        _ => Err(Reason::UnsupportedEthertype),
    }
}

#[inline(always)]
fn parse_ipv4<P: Packet>(pkt: &P, l3: u32, len: u32, flow: &mut Flow) -> Result<(), Reason> {
    flow.family = 4;
    let h: [u8; 20] = pkt.load(l3).map_err(|_| Reason::Malformed)?;
    flow.protocol = h[9];
    flow.hop_limit = h[8];
    flow.source[..4].copy_from_slice(&h[12..16]);
    flow.destination[..4].copy_from_slice(&h[16..20]);
    let header_len = ((h[0] & 0x0f) as u32) * 4;
    if h[0] >> 4 != 4 || header_len < 20 {
        return Err(Reason::Malformed);
    }
    // A total length of 0 is how IPv4 BIG TCP marks a GSO packet longer than 64 KiB: the
    // frame's own length is the datagram's then.
    let total_len = be16([h[2], h[3]]) as u32;
    let end = if total_len == 0 { len } else { l3 + total_len };
    if end > len || l3 + header_len > end {
        return Err(Reason::Malformed);
    }
    let fragment = be16([h[6], h[7]]);
    flow.fragment_id = be16([h[4], h[5]]) as u32;
    flow.l4 = l3 + header_len;
    flow.end = end;
    fragment_kind(flow, fragment & 0x1fff, fragment & 0x2000 != 0)?;
    if flow.fragment == FRAGMENT_LATER {
        return Ok(());
    }
    parse_transport(pkt, l3 + header_len, end, flow)
}

#[inline(always)]
fn parse_ipv6<P: Packet>(pkt: &P, l3: u32, len: u32, flow: &mut Flow) -> Result<(), Reason> {
    flow.family = 6;
    let h: [u8; 40] = pkt.load(l3).map_err(|_| Reason::Malformed)?;
    flow.hop_limit = h[7];
    flow.source.copy_from_slice(&h[8..24]);
    flow.destination.copy_from_slice(&h[24..40]);
    if h[0] >> 4 != 6 {
        return Err(Reason::Malformed);
    }
    // A payload length of 0 is a jumbogram (or IPv6 BIG TCP): the frame gives the length.
    let payload_len = be16([h[4], h[5]]) as u32;
    let end = if payload_len == 0 {
        len
    } else {
        l3 + IPV6_HEADER + payload_len
    };
    if end > len {
        return Err(Reason::Malformed);
    }
    let mut next = h[6];
    let mut offset = l3 + IPV6_HEADER;
    let mut walked = 0;
    while walked < MAX_IPV6_EXTENSIONS {
        let header_len = match next {
            NEXTHDR_HOP | NEXTHDR_ROUTING | NEXTHDR_DEST | NEXTHDR_AUTH => {
                // Hop-by-hop options may only come first.
                if next == NEXTHDR_HOP && walked != 0 {
                    flow.protocol = next;
                    return Err(Reason::Malformed);
                }
                let e: [u8; 2] = pkt.load(offset).map_err(|_| Reason::Malformed)?;
                let len = if next == NEXTHDR_AUTH {
                    (e[1] as u32 + 2) * 4
                } else {
                    (e[1] as u32 + 1) * 8
                };
                next = e[0];
                len
            }
            NEXTHDR_FRAGMENT => {
                let f: [u8; 8] = pkt.load(offset).map_err(|_| Reason::Malformed)?;
                next = f[0];
                flow.protocol = next;
                flow.fragment_id = u32::from_be_bytes([f[4], f[5], f[6], f[7]]);
                let field = be16([f[2], f[3]]);
                fragment_kind(flow, field >> 3, field & 1 != 0)?;
                if flow.fragment == FRAGMENT_LATER {
                    flow.l4 = offset + 8;
                    flow.end = end;
                    return Ok(());
                }
                8
            }
            _ => break,
        };
        offset += header_len;
        if offset > end {
            return Err(Reason::Malformed);
        }
        walked += 1;
    }
    flow.protocol = next;
    if is_extension(next) {
        // Still inside the chain after the walk's bound.
        return Err(Reason::Malformed);
    }
    flow.l4 = offset;
    flow.end = end;
    parse_transport(pkt, offset, end, flow)
}

/// Sets `flow.fragment` from a fragment offset (in 8-byte units) and the more-fragments flag.
/// A TCP fragment at offset 1 could overwrite the TCP flags of the first one (RFC 1858): it
/// is refused as malformed.
#[inline(always)]
fn fragment_kind(flow: &mut Flow, offset: u16, more: bool) -> Result<(), Reason> {
    flow.fragment = if offset != 0 {
        FRAGMENT_LATER
    } else if more {
        FRAGMENT_FIRST
    } else {
        FRAGMENT_NONE
    };
    if offset == 1 && flow.protocol == IPPROTO_TCP {
        return Err(Reason::Malformed);
    }
    Ok(())
}

#[inline(always)]
fn is_extension(next: u8) -> bool {
    matches!(
        next,
        NEXTHDR_HOP | NEXTHDR_ROUTING | NEXTHDR_FRAGMENT | NEXTHDR_AUTH | NEXTHDR_DEST
    )
}

/// Reads ports (or ICMP type and code) from the transport header at `l4`, which must end
/// at or before `end`, the end of the IP datagram.
#[inline(always)]
fn parse_transport<P: Packet>(pkt: &P, l4: u32, end: u32, flow: &mut Flow) -> Result<(), Reason> {
    let available = end - l4;
    let icmp = if flow.family == 4 {
        IPPROTO_ICMP
    } else {
        IPPROTO_ICMPV6
    };
    match flow.protocol {
        IPPROTO_TCP => {
            if available < 20 {
                return Err(Reason::Malformed);
            }
            let t: [u8; 14] = pkt.load(l4).map_err(|_| Reason::Malformed)?;
            flow.source_port = be16([t[0], t[1]]);
            flow.destination_port = be16([t[2], t[3]]);
            flow.tcp_flags = t[13];
            let data_offset = ((t[12] >> 4) as u32) * 4;
            if data_offset < 20 || data_offset > available {
                return Err(Reason::Malformed);
            }
        }
        IPPROTO_UDP => {
            if available < 8 {
                return Err(Reason::Malformed);
            }
            let u: [u8; 6] = pkt.load(l4).map_err(|_| Reason::Malformed)?;
            flow.source_port = be16([u[0], u[1]]);
            flow.destination_port = be16([u[2], u[3]]);
            let udp_len = be16([u[4], u[5]]) as u32;
            // Length 0 is legal only for IPv6 jumbograms; otherwise it must cover the header
            // and stay inside the datagram (which a first fragment only begins).
            let past_end = udp_len > available && flow.fragment == FRAGMENT_NONE;
            if (udp_len != 0 || flow.family != 6) && (udp_len < 8 || past_end) {
                return Err(Reason::Malformed);
            }
        }
        IPPROTO_SCTP => {
            if available < 12 {
                return Err(Reason::Malformed);
            }
            let s: [u8; 4] = pkt.load(l4).map_err(|_| Reason::Malformed)?;
            flow.source_port = be16([s[0], s[1]]);
            flow.destination_port = be16([s[2], s[3]]);
        }
        p if p == icmp => {
            // Every ICMP and ICMPv6 message has at least type, code, checksum and 4 more bytes.
            if available < 8 {
                return Err(Reason::Malformed);
            }
            let i: [u8; 6] = pkt.load(l4).map_err(|_| Reason::Malformed)?;
            flow.destination_port = be16([i[0], i[1]]);
            flow.echo_id = be16([i[4], i[5]]);
            flow.echo = echo_role(p, i[0]);
        }
        _ => {}
    }
    Ok(())
}

#[inline(always)]
fn echo_role(protocol: u8, icmp_type: u8) -> u8 {
    match (protocol, icmp_type) {
        (IPPROTO_ICMP, 8) | (IPPROTO_ICMPV6, 128) => ECHO_REQUEST,
        (IPPROTO_ICMP, 0) | (IPPROTO_ICMPV6, 129) => ECHO_REPLY,
        _ => ECHO_NONE,
    }
}

/// Whether an ICMP or ICMPv6 message is an error that quotes the packet it is about:
/// destination unreachable, time exceeded, parameter problem, and (ICMPv6) packet too big.
#[inline(always)]
pub fn is_icmp_error(flow: &Flow) -> bool {
    let icmp_type = (flow.destination_port >> 8) as u8;
    match flow.protocol {
        IPPROTO_ICMP if flow.family == 4 => matches!(icmp_type, 3 | 11 | 12),
        IPPROTO_ICMPV6 if flow.family == 6 => matches!(icmp_type, 1..=4),
        _ => false,
    }
}

/// The tuple of the packet an ICMP error quotes (after the error's 8-byte header), as that
/// packet travelled. `None` when the quote is cut short or carries what cannot be tracked.
#[inline(always)]
pub fn quoted_flow<P: Packet>(pkt: &P, flow: &Flow) -> Option<CtKey> {
    let inner = flow.l4 + 8;
    let mut key = CtKey::default();
    let (protocol, l4) = if flow.family == 4 {
        let h: [u8; 20] = pkt.load(inner).ok()?;
        let header_len = ((h[0] & 0x0f) as u32) * 4;
        if h[0] >> 4 != 4 || header_len < 20 {
            return None;
        }
        key.source[..4].copy_from_slice(&h[12..16]);
        key.destination[..4].copy_from_slice(&h[16..20]);
        (h[9], inner + header_len)
    } else {
        let h: [u8; 40] = pkt.load(inner).ok()?;
        if h[0] >> 4 != 6 {
            return None;
        }
        key.source.copy_from_slice(&h[8..24]);
        key.destination.copy_from_slice(&h[24..40]);
        // A quoted extension chain is not walked: such an error is treated as untracked.
        (h[6], inner + IPV6_HEADER)
    };
    key.family = flow.family;
    key.protocol = protocol;
    let t: [u8; 8] = pkt.load(l4).ok()?;
    match protocol {
        IPPROTO_TCP | IPPROTO_UDP | IPPROTO_SCTP => {
            key.source_port = be16([t[0], t[1]]);
            key.destination_port = be16([t[2], t[3]]);
        }
        p if p == IPPROTO_ICMP || p == IPPROTO_ICMPV6 => {
            let id = be16([t[4], t[5]]);
            match echo_role(p, t[0]) {
                ECHO_REQUEST => key.source_port = id,
                ECHO_REPLY => key.destination_port = id,
                _ => return None,
            }
        }
        _ => return None,
    }
    Some(key)
}
