//! Hand-built frames, malformed ones included. Checksums are left zero: the datapath does
//! not verify them, and the kernel's test run does not either.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

pub const ETH_IPV4: u16 = 0x0800;
pub const ETH_IPV6: u16 = 0x86dd;
pub const ETH_ARP: u16 = 0x0806;
pub const TCP: u8 = 6;
pub const UDP: u8 = 17;
pub const ICMP: u8 = 1;
pub const ICMPV6: u8 = 58;
pub const SCTP: u8 = 132;

/// Ethernet header (fixed MACs) followed by `payload`; `tags` are (TPID, VLAN id) pairs.
pub fn ethernet(ethertype: u16, tags: &[(u16, u16)], payload: &[u8]) -> Vec<u8> {
    let mut f = vec![0x02, 0, 0, 0, 0, 2, 0x02, 0, 0, 0, 0, 1];
    for (tpid, vid) in tags {
        f.extend_from_slice(&tpid.to_be_bytes());
        f.extend_from_slice(&vid.to_be_bytes());
    }
    f.extend_from_slice(&ethertype.to_be_bytes());
    f.extend_from_slice(payload);
    f
}

/// IPv4 header with `options` (a multiple of 4 bytes) and fragment field `fragment`
/// (flags and offset as on the wire), then `payload`.
pub fn ipv4_with(
    src: &str,
    dst: &str,
    protocol: u8,
    options: &[u8],
    fragment: u16,
    payload: &[u8],
) -> Vec<u8> {
    ipv4_full(src, dst, protocol, 0x1234, options, fragment, payload)
}

/// An IPv4 fragment: identification `id`, fragment field `fragment` (flags and offset).
pub fn ipv4_fragment(
    src: &str,
    dst: &str,
    protocol: u8,
    id: u16,
    fragment: u16,
    payload: &[u8],
) -> Vec<u8> {
    ipv4_full(src, dst, protocol, id, &[], fragment, payload)
}

fn ipv4_full(
    src: &str,
    dst: &str,
    protocol: u8,
    id: u16,
    options: &[u8],
    fragment: u16,
    payload: &[u8],
) -> Vec<u8> {
    assert_eq!(options.len() % 4, 0, "options pad to 32-bit words");
    let header_len = 20 + options.len();
    let total = (header_len + payload.len()) as u16;
    let ihl = (header_len / 4) as u8;
    let mut p = vec![0x40 | ihl, 0];
    p.extend_from_slice(&total.to_be_bytes());
    p.extend_from_slice(&id.to_be_bytes());
    p.extend_from_slice(&fragment.to_be_bytes());
    p.extend_from_slice(&[64, protocol, 0, 0]);
    p.extend_from_slice(&v4(src).octets());
    p.extend_from_slice(&v4(dst).octets());
    p.extend_from_slice(options);
    p.extend_from_slice(payload);
    p
}

pub fn ipv4(src: &str, dst: &str, protocol: u8, payload: &[u8]) -> Vec<u8> {
    ipv4_with(src, dst, protocol, &[], 0, payload)
}

/// IPv6 header with hop limit `hop_limit`, then `payload` (extension headers included).
pub fn ipv6_with(src: &str, dst: &str, next: u8, hop_limit: u8, payload: &[u8]) -> Vec<u8> {
    let mut p = vec![0x60, 0, 0, 0];
    p.extend_from_slice(&(payload.len() as u16).to_be_bytes());
    p.extend_from_slice(&[next, hop_limit]);
    p.extend_from_slice(&v6(src).octets());
    p.extend_from_slice(&v6(dst).octets());
    p.extend_from_slice(payload);
    p
}

pub fn ipv6(src: &str, dst: &str, next: u8, payload: &[u8]) -> Vec<u8> {
    ipv6_with(src, dst, next, 64, payload)
}

/// An IPv6 options-style extension header (hop-by-hop, routing, destination options) of
/// 8 bytes, announcing `next`, followed by `rest`.
pub fn ext(next: u8, rest: &[u8]) -> Vec<u8> {
    let mut p = vec![next, 0, 1, 4, 0, 0, 0, 0];
    p.extend_from_slice(rest);
    p
}

/// An IPv6 fragment header announcing `next`, with offset in 8-byte units and the M flag.
pub fn fragment6(next: u8, offset: u16, more: bool, rest: &[u8]) -> Vec<u8> {
    fragment6_id(next, 0xdead_beef, offset, more, rest)
}

/// As [`fragment6`], with identification `id`.
pub fn fragment6_id(next: u8, id: u32, offset: u16, more: bool, rest: &[u8]) -> Vec<u8> {
    let field = (offset << 3) | u16::from(more);
    let mut p = vec![next, 0];
    p.extend_from_slice(&field.to_be_bytes());
    p.extend_from_slice(&id.to_be_bytes());
    p.extend_from_slice(rest);
    p
}

pub const FIN: u8 = 0x01;
pub const SYN: u8 = 0x02;
pub const RST: u8 = 0x04;
pub const PSH: u8 = 0x08;
pub const ACK: u8 = 0x10;

/// TCP header with the given flags.
pub fn tcp_flags(sport: u16, dport: u16, flags: u8) -> Vec<u8> {
    let mut p = tcp(sport, dport);
    p[13] = flags;
    p
}

/// Ethernet + IPv4 + TCP with flags.
pub fn tcp4_flags(src: &str, dst: &str, sport: u16, dport: u16, flags: u8) -> Vec<u8> {
    ethernet(
        ETH_IPV4,
        &[],
        &ipv4(src, dst, TCP, &tcp_flags(sport, dport, flags)),
    )
}

/// ICMP or ICMPv6 echo (request or reply, by `icmp_type`) with identifier `id`.
pub fn echo(icmp_type: u8, id: u16) -> Vec<u8> {
    let mut p = vec![icmp_type, 0, 0, 0];
    p.extend_from_slice(&id.to_be_bytes());
    p.extend_from_slice(&[0, 1]);
    p
}

/// An ICMP or ICMPv6 error of `icmp_type`/`code` quoting `quoted` (an IP packet).
pub fn icmp_error(icmp_type: u8, code: u8, quoted: &[u8]) -> Vec<u8> {
    let mut p = vec![icmp_type, code, 0, 0, 0, 0, 0, 0];
    p.extend_from_slice(quoted);
    p
}

/// TCP header, 20 bytes with data offset 5 unless changed, SYN set.
pub fn tcp(sport: u16, dport: u16) -> Vec<u8> {
    tcp_with(sport, dport, 5)
}

pub fn tcp_with(sport: u16, dport: u16, data_offset: u8) -> Vec<u8> {
    let mut p = Vec::new();
    p.extend_from_slice(&sport.to_be_bytes());
    p.extend_from_slice(&dport.to_be_bytes());
    p.extend_from_slice(&[
        0,
        0,
        0,
        1,
        0,
        0,
        0,
        0,
        data_offset << 4,
        0x02,
        0xff,
        0xff,
        0,
        0,
        0,
        0,
    ]);
    p
}

pub fn udp(sport: u16, dport: u16, data: &[u8]) -> Vec<u8> {
    let mut p = Vec::new();
    p.extend_from_slice(&sport.to_be_bytes());
    p.extend_from_slice(&dport.to_be_bytes());
    p.extend_from_slice(&((8 + data.len()) as u16).to_be_bytes());
    p.extend_from_slice(&[0, 0]);
    p.extend_from_slice(data);
    p
}

pub fn sctp(sport: u16, dport: u16) -> Vec<u8> {
    let mut p = Vec::new();
    p.extend_from_slice(&sport.to_be_bytes());
    p.extend_from_slice(&dport.to_be_bytes());
    p.extend_from_slice(&[0; 8]);
    p
}

/// ICMP or ICMPv6 message: type, code, checksum, 4 more bytes.
pub fn icmp(icmp_type: u8, code: u8) -> Vec<u8> {
    vec![icmp_type, code, 0, 0, 0, 1, 0, 1]
}

/// ARP request from `sender` for `target`.
pub fn arp(sender: &str, target: &str) -> Vec<u8> {
    let mut p = vec![0, 1, 8, 0, 6, 4, 0, 1, 0x02, 0, 0, 0, 0, 1];
    p.extend_from_slice(&v4(sender).octets());
    p.extend_from_slice(&[0; 6]);
    p.extend_from_slice(&v4(target).octets());
    p
}

/// Shorthand: Ethernet + IPv4 + TCP SYN.
pub fn tcp4(src: &str, dst: &str, dport: u16) -> Vec<u8> {
    ethernet(ETH_IPV4, &[], &ipv4(src, dst, TCP, &tcp(40000, dport)))
}

/// Shorthand: Ethernet + IPv6 + TCP SYN.
pub fn tcp6(src: &str, dst: &str, dport: u16) -> Vec<u8> {
    ethernet(ETH_IPV6, &[], &ipv6(src, dst, TCP, &tcp(40000, dport)))
}

pub fn v4(s: &str) -> Ipv4Addr {
    s.parse().expect("test IPv4 address")
}

pub fn v6(s: &str) -> Ipv6Addr {
    s.parse().expect("test IPv6 address")
}

pub fn ip(s: &str) -> IpAddr {
    s.parse().expect("test address")
}
