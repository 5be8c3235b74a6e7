//! Header parsing, pinned through the real, verifier-loaded programs at both hooks: VLAN
//! tags, IPv4 header length and options, transport headers, fragments and the IPv6
//! extension header walk; whatever is truncated or inconsistent is malformed. Needs root.

mod support;

use firewall_common::Reason;
use support::{packets::*, replay::*, *};

#[test]
fn vlan_tags_are_looked_through() {
    let policy = policy();
    let mut both = Both::new(&policy);
    let payload = ipv4(FRONTEND, BACKEND, TCP, &tcp(40000, 8081));
    let denied = ipv4(FRONTEND, BACKEND, TCP, &tcp(40000, 8082));
    check(
        &mut both,
        &[
            (
                "802.1Q",
                ethernet(ETH_IPV4, &[(0x8100, 10)], &payload),
                allowed(1),
            ),
            (
                "802.1Q denied",
                ethernet(ETH_IPV4, &[(0x8100, 10)], &denied),
                DENIED,
            ),
            (
                "802.1ad + 802.1Q",
                ethernet(ETH_IPV4, &[(0x88a8, 100), (0x8100, 10)], &payload),
                allowed(1),
            ),
            (
                "double tag denied",
                ethernet(ETH_IPV4, &[(0x88a8, 100), (0x8100, 10)], &denied),
                DENIED,
            ),
            (
                "three tags",
                ethernet(ETH_IPV4, &[(0x88a8, 1), (0x8100, 2), (0x8100, 3)], &payload),
                MALFORMED,
            ),
            (
                "tagged ipv6",
                ethernet(
                    ETH_IPV6,
                    &[(0x8100, 10)],
                    &ipv6(FRONTEND6, BACKEND6, TCP, &tcp(1, 8081)),
                ),
                allowed(1),
            ),
        ],
    );
}

#[test]
fn ipv4_header_length_and_options_are_honoured() {
    let policy = policy();
    let mut both = Both::new(&policy);
    let options = [
        0x01, 0x01, 0x01, 0x00, 0x94, 0x04, 0, 0, 0x01, 0x01, 0x01, 0x01,
    ];
    let with_options = ipv4_with(FRONTEND, BACKEND, TCP, &options, 0, &tcp(40000, 8081));
    let denied_with_options = ipv4_with(FRONTEND, BACKEND, TCP, &options, 0, &tcp(40000, 8082));
    let mut ihl_small = ipv4(FRONTEND, BACKEND, TCP, &tcp(40000, 8081));
    ihl_small[0] = 0x44;
    let mut ihl_zero = ipv4(FRONTEND, BACKEND, TCP, &tcp(40000, 8081));
    ihl_zero[0] = 0x40;
    let mut ihl_huge = ipv4(FRONTEND, BACKEND, TCP, &tcp(40000, 8081));
    ihl_huge[0] = 0x4f;
    ihl_huge[2..4].copy_from_slice(&40u16.to_be_bytes());
    let mut wrong_version = ipv4(FRONTEND, BACKEND, TCP, &tcp(40000, 8081));
    wrong_version[0] = 0x65;
    let mut too_long = ipv4(FRONTEND, BACKEND, TCP, &tcp(40000, 8081));
    too_long[2..4].copy_from_slice(&200u16.to_be_bytes());
    let mut shorter_than_header = ipv4(FRONTEND, BACKEND, TCP, &tcp(40000, 8081));
    shorter_than_header[2..4].copy_from_slice(&16u16.to_be_bytes());
    let mut padded = tcp4(FRONTEND, BACKEND, 8081);
    padded.resize(60, 0);
    check(
        &mut both,
        &[
            (
                "ports read after 12 bytes of options",
                ethernet(ETH_IPV4, &[], &with_options),
                allowed(1),
            ),
            (
                "options do not hide a denied port",
                ethernet(ETH_IPV4, &[], &denied_with_options),
                DENIED,
            ),
            ("ihl 4", ethernet(ETH_IPV4, &[], &ihl_small), MALFORMED),
            ("ihl 0", ethernet(ETH_IPV4, &[], &ihl_zero), MALFORMED),
            (
                "ihl 15 past the datagram",
                ethernet(ETH_IPV4, &[], &ihl_huge),
                MALFORMED,
            ),
            (
                "version 6 in an IPv4 frame",
                ethernet(ETH_IPV4, &[], &wrong_version),
                MALFORMED,
            ),
            (
                "total length past the frame",
                ethernet(ETH_IPV4, &[], &too_long),
                MALFORMED,
            ),
            (
                "total length below the header",
                ethernet(ETH_IPV4, &[], &shorter_than_header),
                MALFORMED,
            ),
            ("ethernet padding after the datagram", padded, allowed(1)),
        ],
    );
    // The kernel's TC test run refuses an IPv4 frame shorter than an IP header before the
    // program runs, so a cut IP header can only be replayed through XDP.
    let cut = ethernet(ETH_IPV4, &[], &ipv4(FRONTEND, BACKEND, TCP, &[])[..12]);
    assert!(
        both.tc.run(&cut).is_err(),
        "the TC test run now accepts short IPv4 frames"
    );
    let outcome = both.xdp.run(&cut).expect("XDP test run");
    assert_eq!(outcome.reason, Reason::Malformed, "ip header cut short");
}

#[test]
fn transport_headers_are_checked() {
    let policy = policy();
    let mut both = Both::new(&policy);
    let v4 =
        |payload: &[u8], proto| ethernet(ETH_IPV4, &[], &ipv4(FRONTEND, BACKEND, proto, payload));
    let mut udp_bad_len = udp(1, 53, b"abcd");
    udp_bad_len[4..6].copy_from_slice(&4u16.to_be_bytes());
    let mut udp_past_end = udp(1, 53, b"abcd");
    udp_past_end[4..6].copy_from_slice(&64u16.to_be_bytes());
    check(
        &mut both,
        &[
            (
                "tcp data offset 4",
                v4(&tcp_with(1, 8081, 4), TCP),
                MALFORMED,
            ),
            (
                "tcp data offset 0",
                v4(&tcp_with(1, 8081, 0), TCP),
                MALFORMED,
            ),
            (
                "tcp data offset past the datagram",
                v4(&tcp_with(1, 8081, 15), TCP),
                MALFORMED,
            ),
            (
                "tcp header cut to 10 bytes",
                v4(&tcp(1, 8081)[..10], TCP),
                MALFORMED,
            ),
            (
                "udp length below its header",
                v4(&udp_bad_len, UDP),
                MALFORMED,
            ),
            (
                "udp length past the datagram",
                v4(&udp_past_end, UDP),
                MALFORMED,
            ),
            (
                "udp header cut short",
                v4(&udp(1, 53, b"")[..6], UDP),
                MALFORMED,
            ),
            (
                "sctp header cut short",
                v4(&sctp(1, 3868)[..8], SCTP),
                MALFORMED,
            ),
            (
                "icmp header cut short",
                v4(&icmp(8, 0)[..4], ICMP),
                MALFORMED,
            ),
        ],
    );
}

#[test]
fn ipv4_fragments() {
    let policy = policy();
    let mut both = Both::new(&policy);
    let more_fragments = 0x2000;
    // Distinct identifications: these are unrelated datagrams (tests/conntrack.rs pins how
    // fragments of one datagram follow its first).
    let first = ipv4_fragment(FRONTEND, BACKEND, TCP, 1, more_fragments, &tcp(1, 8081));
    let first_denied = ipv4_fragment(FRONTEND, BACKEND, TCP, 2, more_fragments, &tcp(1, 8082));
    let later = ipv4_fragment(FRONTEND, BACKEND, TCP, 3, more_fragments | 3, &[0; 24]);
    let last = ipv4_fragment(FRONTEND, BACKEND, TCP, 4, 6, &[0; 24]);
    let tiny_first = ipv4_with(
        FRONTEND,
        BACKEND,
        TCP,
        &[],
        more_fragments,
        &tcp(1, 8081)[..8],
    );
    check(
        &mut both,
        &[
            (
                "first fragment carries the ports",
                ethernet(ETH_IPV4, &[], &first),
                allowed(1),
            ),
            (
                "first fragment to a denied port",
                ethernet(ETH_IPV4, &[], &first_denied),
                DENIED,
            ),
            (
                "middle fragment of an unseen datagram",
                ethernet(ETH_IPV4, &[], &later),
                FRAGMENT,
            ),
            (
                "last fragment of an unseen datagram",
                ethernet(ETH_IPV4, &[], &last),
                FRAGMENT,
            ),
            (
                "first fragment too short for the tcp header",
                ethernet(ETH_IPV4, &[], &tiny_first),
                MALFORMED,
            ),
        ],
    );
}

#[test]
fn ipv6_extension_headers_are_walked_within_a_bound() {
    let policy = policy();
    let mut both = Both::new(&policy);
    let v6 =
        |next, payload: &[u8]| ethernet(ETH_IPV6, &[], &ipv6(FRONTEND6, BACKEND6, next, payload));
    let hop = 0;
    let routing = 43;
    let frag = 44;
    let dest = 60;
    let chain = ext(dest, &ext(routing, &ext(TCP, &tcp(1, 8081))));
    let chain_denied = ext(dest, &ext(routing, &ext(TCP, &tcp(1, 8082))));
    // `n` extension headers, the last announcing TCP; the IPv6 header announces `dest`.
    let chain_of = |n: usize| {
        let mut chain = ext(TCP, &tcp(1, 8081));
        for _ in 1..n {
            chain = ext(dest, &chain);
        }
        chain
    };
    let mut overrun = ext(TCP, &tcp(1, 8081));
    overrun[1] = 200;
    check(
        &mut both,
        &[
            (
                "hop-by-hop, destination, routing",
                v6(hop, &chain),
                allowed(1),
            ),
            (
                "the chain does not hide a denied port",
                v6(hop, &chain_denied),
                DENIED,
            ),
            (
                "first fragment",
                v6(frag, &fragment6(TCP, 0, true, &tcp(1, 8081))),
                allowed(1),
            ),
            (
                "later fragment of an unseen datagram",
                v6(frag, &fragment6_id(TCP, 0x1111, 10, true, &[0; 16])),
                FRAGMENT,
            ),
            (
                "fragment in the chain",
                v6(
                    dest,
                    &ext(frag, &fragment6_id(TCP, 0x2222, 2, false, &[0; 16])),
                ),
                FRAGMENT,
            ),
            (
                "six extension headers, the bound",
                v6(dest, &chain_of(6)),
                allowed(1),
            ),
            ("seven extension headers", v6(dest, &chain_of(7)), MALFORMED),
            (
                "hop-by-hop after another header",
                v6(dest, &ext(hop, &ext(TCP, &tcp(1, 8081)))),
                MALFORMED,
            ),
            (
                "extension length past the packet",
                v6(dest, &overrun),
                MALFORMED,
            ),
            (
                "tiny first fragment",
                v6(frag, &fragment6(TCP, 0, true, &tcp(1, 8081)[..8])),
                MALFORMED,
            ),
            (
                "payload length past the frame",
                {
                    let mut f = v6(TCP, &tcp(1, 8081));
                    f[18..20].copy_from_slice(&400u16.to_be_bytes());
                    f
                },
                MALFORMED,
            ),
        ],
    );
}
