//! Header parsing: Ethernet (up to two VLAN tags), ARP, IPv4 (with options), IPv6 (with a
//! bounded extension header walk), and the transport fields policy needs.
//!
//! Every length the packet claims is checked against what is really there: a header that runs
//! past the frame, or past the end its IP header announces, makes the packet malformed.

use firewall_common::Reason;

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

/// What policy needs to know of an IP packet.
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
        }
    }
}

/// A frame the classifier understands.
pub enum Frame {
    Arp,
    Ip(Flow),
}

/// Why a frame could not be turned into a [`Frame`], with what was learnt before it failed
/// (addresses are reported in drop events even when the transport header is bad).
pub struct Rejected {
    pub reason: Reason,
    pub flow: Flow,
}

#[inline(always)]
fn reject(reason: Reason, flow: Flow) -> Rejected {
    Rejected { reason, flow }
}

#[inline(always)]
fn be16(b: [u8; 2]) -> u16 {
    u16::from_be_bytes(b)
}

/// Parses a frame from its Ethernet header on.
#[inline(always)]
pub fn parse<P: Packet>(pkt: &P) -> Result<Frame, Rejected> {
    let len = pkt.len();
    let mut offset = ETH_HEADER;
    let mut ethertype = be16(
        pkt.load(12)
            .map_err(|_| reject(Reason::Malformed, Flow::empty(0)))?,
    );
    let mut tags = 0;
    while ethertype == ETH_P_8021Q || ethertype == ETH_P_8021AD {
        if tags == MAX_VLAN_TAGS {
            return Err(reject(Reason::Malformed, Flow::empty(0)));
        }
        // A tag is 4 bytes: TCI, then the next EtherType.
        ethertype = be16(
            pkt.load(offset + 2)
                .map_err(|_| reject(Reason::Malformed, Flow::empty(0)))?,
        );
        offset += 4;
        tags += 1;
    }
    match ethertype {
        ETH_P_IPV4 => parse_ipv4(pkt, offset, len).map(Frame::Ip),
        ETH_P_IPV6 => parse_ipv6(pkt, offset, len).map(Frame::Ip),
        ETH_P_ARP if offset + ARP_LEN <= len => Ok(Frame::Arp),
        ETH_P_ARP => Err(reject(Reason::Malformed, Flow::empty(0))),
        _ => Err(reject(Reason::UnsupportedEthertype, Flow::empty(0))),
    }
}

#[inline(always)]
fn parse_ipv4<P: Packet>(pkt: &P, l3: u32, len: u32) -> Result<Flow, Rejected> {
    let mut flow = Flow::empty(4);
    let h: [u8; 20] = pkt.load(l3).map_err(|_| reject(Reason::Malformed, flow))?;
    flow.protocol = h[9];
    flow.hop_limit = h[8];
    flow.source[..4].copy_from_slice(&h[12..16]);
    flow.destination[..4].copy_from_slice(&h[16..20]);
    let header_len = ((h[0] & 0x0f) as u32) * 4;
    if h[0] >> 4 != 4 || header_len < 20 {
        return Err(reject(Reason::Malformed, flow));
    }
    // A total length of 0 is how IPv4 BIG TCP marks a GSO packet longer than 64 KiB: the
    // frame's own length is the datagram's then.
    let total_len = be16([h[2], h[3]]) as u32;
    let end = if total_len == 0 { len } else { l3 + total_len };
    if end > len || l3 + header_len > end {
        return Err(reject(Reason::Malformed, flow));
    }
    let fragment = be16([h[6], h[7]]);
    if fragment & 0x1fff != 0 {
        return Err(reject(Reason::Fragment, flow));
    }
    parse_transport(pkt, l3 + header_len, end, flow)
}

#[inline(always)]
fn parse_ipv6<P: Packet>(pkt: &P, l3: u32, len: u32) -> Result<Flow, Rejected> {
    let mut flow = Flow::empty(6);
    let h: [u8; 40] = pkt.load(l3).map_err(|_| reject(Reason::Malformed, flow))?;
    flow.hop_limit = h[7];
    flow.source.copy_from_slice(&h[8..24]);
    flow.destination.copy_from_slice(&h[24..40]);
    if h[0] >> 4 != 6 {
        return Err(reject(Reason::Malformed, flow));
    }
    // A payload length of 0 is a jumbogram (or IPv6 BIG TCP): the frame gives the length.
    let payload_len = be16([h[4], h[5]]) as u32;
    let end = if payload_len == 0 {
        len
    } else {
        l3 + IPV6_HEADER + payload_len
    };
    if end > len {
        return Err(reject(Reason::Malformed, flow));
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
                    return Err(reject(Reason::Malformed, flow));
                }
                let e: [u8; 2] = pkt
                    .load(offset)
                    .map_err(|_| reject(Reason::Malformed, flow))?;
                let len = if next == NEXTHDR_AUTH {
                    (e[1] as u32 + 2) * 4
                } else {
                    (e[1] as u32 + 1) * 8
                };
                next = e[0];
                len
            }
            NEXTHDR_FRAGMENT => {
                let f: [u8; 4] = pkt
                    .load(offset)
                    .map_err(|_| reject(Reason::Malformed, flow))?;
                next = f[0];
                if be16([f[2], f[3]]) >> 3 != 0 {
                    flow.protocol = next;
                    return Err(reject(Reason::Fragment, flow));
                }
                8
            }
            _ => break,
        };
        offset += header_len;
        if offset > end {
            return Err(reject(Reason::Malformed, flow));
        }
        walked += 1;
    }
    flow.protocol = next;
    if is_extension(next) {
        // Still inside the chain after the walk's bound.
        return Err(reject(Reason::Malformed, flow));
    }
    parse_transport(pkt, offset, end, flow)
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
fn parse_transport<P: Packet>(
    pkt: &P,
    l4: u32,
    end: u32,
    mut flow: Flow,
) -> Result<Flow, Rejected> {
    let available = end - l4;
    let icmp = if flow.family == 4 {
        IPPROTO_ICMP
    } else {
        IPPROTO_ICMPV6
    };
    match flow.protocol {
        IPPROTO_TCP => {
            if available < 20 {
                return Err(reject(Reason::Malformed, flow));
            }
            let t: [u8; 14] = pkt.load(l4).map_err(|_| reject(Reason::Malformed, flow))?;
            flow.source_port = be16([t[0], t[1]]);
            flow.destination_port = be16([t[2], t[3]]);
            let data_offset = ((t[12] >> 4) as u32) * 4;
            if data_offset < 20 || data_offset > available {
                return Err(reject(Reason::Malformed, flow));
            }
        }
        IPPROTO_UDP => {
            if available < 8 {
                return Err(reject(Reason::Malformed, flow));
            }
            let u: [u8; 6] = pkt.load(l4).map_err(|_| reject(Reason::Malformed, flow))?;
            flow.source_port = be16([u[0], u[1]]);
            flow.destination_port = be16([u[2], u[3]]);
            let udp_len = be16([u[4], u[5]]) as u32;
            // Length 0 is legal only for IPv6 jumbograms; otherwise it must cover the header
            // and stay inside the datagram.
            if (udp_len != 0 || flow.family != 6) && (udp_len < 8 || udp_len > available) {
                return Err(reject(Reason::Malformed, flow));
            }
        }
        IPPROTO_SCTP => {
            if available < 12 {
                return Err(reject(Reason::Malformed, flow));
            }
            let s: [u8; 4] = pkt.load(l4).map_err(|_| reject(Reason::Malformed, flow))?;
            flow.source_port = be16([s[0], s[1]]);
            flow.destination_port = be16([s[2], s[3]]);
        }
        p if p == icmp => {
            // Every ICMP and ICMPv6 message has at least type, code, checksum and 4 more bytes.
            if available < 8 {
                return Err(reject(Reason::Malformed, flow));
            }
            let i: [u8; 2] = pkt.load(l4).map_err(|_| reject(Reason::Malformed, flow))?;
            flow.destination_port = be16(i);
        }
        _ => {}
    }
    Ok(flow)
}
