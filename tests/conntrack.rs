//! Stateful enforcement, pinned by replaying whole conversations through the real programs
//! at both hooks: replies pass without a reverse rule and nothing else does. Needs root.

mod support;

use std::time::Duration;

use firewall::{datapath::LoadOptions, policy::CompiledPolicy};
use firewall_common::{
    Reason,
    conntrack::{Config, CtEntry, CtKey},
    maps::Stat,
};
use support::{packets::*, replay::*, *};

const ESTABLISHED: fn(u32) -> Expected = |rule| (Reason::Established, Some(rule));
const REPLY: fn(u32) -> Expected = |rule| (Reason::Reply, Some(rule));

fn udp4(src: &str, dst: &str, sport: u16, dport: u16) -> Vec<u8> {
    ethernet(
        ETH_IPV4,
        &[],
        &ipv4(src, dst, UDP, &udp(sport, dport, b"q")),
    )
}

#[test]
fn a_tcp_conversation_passes_without_a_reverse_rule() {
    let mut both = Both::new(&policy());
    let f = |flags| tcp4_flags(FRONTEND, BACKEND, 40001, 8081, flags);
    let b = |flags| tcp4_flags(BACKEND, FRONTEND, 8081, 40001, flags);
    check(
        &mut both,
        &[
            ("SYN", f(SYN), allowed(1)),
            ("SYN-ACK", b(SYN | ACK), REPLY(1)),
            ("ACK", f(ACK), ESTABLISHED(1)),
            ("data out", f(PSH | ACK), ESTABLISHED(1)),
            ("data back", b(PSH | ACK), REPLY(1)),
            ("FIN from the client", f(FIN | ACK), ESTABLISHED(1)),
            ("FIN from the server", b(FIN | ACK), REPLY(1)),
            ("last ACK", f(ACK), ESTABLISHED(1)),
        ],
    );
    // The same conversation over IPv6.
    let f6 = |flags| {
        ethernet(
            ETH_IPV6,
            &[],
            &ipv6(FRONTEND6, BACKEND6, TCP, &tcp_flags(40001, 8081, flags)),
        )
    };
    let b6 = |flags| {
        ethernet(
            ETH_IPV6,
            &[],
            &ipv6(BACKEND6, FRONTEND6, TCP, &tcp_flags(8081, 40001, flags)),
        )
    };
    check(
        &mut both,
        &[
            ("v6 SYN", f6(SYN), allowed(1)),
            ("v6 SYN-ACK", b6(SYN | ACK), REPLY(1)),
            ("v6 ACK", f6(ACK), ESTABLISHED(1)),
            ("v6 RST from the server", b6(RST | ACK), REPLY(1)),
        ],
    );
}

#[test]
fn a_udp_request_gets_its_reply_and_only_that() {
    let mut both = Both::new(&policy());
    check(
        &mut both,
        &[
            ("request", udp4(FRONTEND, BACKEND, 5000, 53), allowed(5)),
            ("reply", udp4(BACKEND, FRONTEND, 53, 5000), REPLY(5)),
            (
                "second request",
                udp4(FRONTEND, BACKEND, 5000, 53),
                ESTABLISHED(5),
            ),
            (
                "reply to another port",
                udp4(BACKEND, FRONTEND, 53, 5001),
                DENIED,
            ),
            (
                "reply from another port",
                udp4(BACKEND, FRONTEND, 54, 5000),
                DENIED,
            ),
            (
                "reply from another host",
                udp4("198.18.200.1", FRONTEND, 53, 5000),
                DENIED,
            ),
        ],
    );
}

#[test]
fn icmp_echo_is_tracked_by_identifier() {
    let mut both = Both::new(&policy());
    let v4 = |src, dst, t, id| ethernet(ETH_IPV4, &[], &ipv4(src, dst, ICMP, &echo(t, id)));
    let v6 = |src, dst, t, id| ethernet(ETH_IPV6, &[], &ipv6(src, dst, ICMPV6, &echo(t, id)));
    check(
        &mut both,
        &[
            (
                "reply before any request",
                v4(BACKEND, FRONTEND, 0, 7),
                DENIED,
            ),
            ("request", v4(FRONTEND, BACKEND, 8, 7), allowed(3)),
            ("matching reply", v4(BACKEND, FRONTEND, 0, 7), REPLY(3)),
            (
                "reply with another identifier",
                v4(BACKEND, FRONTEND, 0, 8),
                DENIED,
            ),
            (
                "reply from another host",
                v4("198.18.200.1", FRONTEND, 0, 7),
                DENIED,
            ),
            (
                "a request the other way is not a reply",
                v4(BACKEND, FRONTEND, 8, 7),
                DENIED,
            ),
            ("v6 request", v6(FRONTEND6, BACKEND6, 128, 9), allowed(8)),
            (
                "v6 matching reply",
                v6(BACKEND6, FRONTEND6, 129, 9),
                REPLY(8),
            ),
            (
                "v6 other identifier",
                v6(BACKEND6, FRONTEND6, 129, 10),
                DENIED,
            ),
        ],
    );
}

#[test]
fn fragments_follow_their_first_fragment() {
    let mut both = Both::new(&policy());
    let more = 0x2000;
    // A 40-byte UDP datagram to port 53 in three fragments: 16 + 16 + 8 bytes.
    let datagram = udp(5000, 53, &[7; 32]);
    let frag = |src, id, field, range: std::ops::Range<usize>| {
        ethernet(
            ETH_IPV4,
            &[],
            &ipv4_fragment(src, BACKEND, UDP, id, field, &datagram[range]),
        )
    };
    let denied_first = udp(5000, 54, &[7; 8]);
    check(
        &mut both,
        &[
            (
                "a later fragment before its first",
                frag(FRONTEND, 77, more | 2, 16..32),
                FRAGMENT,
            ),
            (
                "first fragment",
                frag(FRONTEND, 77, more, 0..16),
                allowed(5),
            ),
            (
                "middle fragment",
                frag(FRONTEND, 77, more | 2, 16..32),
                (Reason::FragmentOfAllowed, Some(5)),
            ),
            (
                "last fragment",
                frag(FRONTEND, 77, 4, 32..40),
                (Reason::FragmentOfAllowed, Some(5)),
            ),
            (
                "same id from another source",
                frag(MONITOR, 77, 4, 32..40),
                FRAGMENT,
            ),
            (
                "same id, other protocol",
                {
                    ethernet(
                        ETH_IPV4,
                        &[],
                        &ipv4_fragment(FRONTEND, BACKEND, TCP, 77, 4, &[0; 8]),
                    )
                },
                FRAGMENT,
            ),
            ("the reply", udp4(BACKEND, FRONTEND, 53, 5000), REPLY(5)),
            (
                "a first fragment to a denied port",
                {
                    ethernet(
                        ETH_IPV4,
                        &[],
                        &ipv4_fragment(FRONTEND, BACKEND, UDP, 78, more, &denied_first),
                    )
                },
                DENIED,
            ),
            (
                "its later fragment",
                frag(FRONTEND, 78, 2, 16..24),
                (Reason::FragmentOfDenied, None),
            ),
            (
                "an overlapping first fragment re-using an allowed datagram's id",
                ethernet(
                    ETH_IPV4,
                    &[],
                    &ipv4_fragment(FRONTEND, BACKEND, UDP, 77, more, &denied_first),
                ),
                DENIED,
            ),
            (
                "the allowed datagram's fragments no longer pass",
                frag(FRONTEND, 77, 4, 32..40),
                (Reason::FragmentOfDenied, None),
            ),
        ],
    );
    // IPv6: the fragment header carries the identification.
    let v6 = |id, offset, more, payload: &[u8]| {
        ethernet(
            ETH_IPV6,
            &[],
            &ipv6(
                FRONTEND6,
                BACKEND6,
                44,
                &fragment6_id(UDP, id, offset, more, payload),
            ),
        )
    };
    check(
        &mut both,
        &[
            (
                "v6 first fragment",
                v6(5, 0, true, &datagram[..16]),
                allowed(5),
            ),
            (
                "v6 later fragment",
                v6(5, 2, false, &datagram[16..]),
                (Reason::FragmentOfAllowed, Some(5)),
            ),
            (
                "v6 fragment of an unseen datagram",
                v6(6, 2, false, &datagram[16..]),
                FRAGMENT,
            ),
        ],
    );
}

#[test]
fn no_packet_gets_through_by_looking_like_a_reply() {
    let mut both = Both::new(&policy());
    check(
        &mut both,
        &[
            (
                "SYN-ACK with no flow",
                tcp4_flags(BACKEND, FRONTEND, 8081, 40002, SYN | ACK),
                DENIED,
            ),
            (
                "ACK with no flow to a denied port",
                tcp4_flags(FRONTEND, BACKEND, 40003, 8082, ACK),
                DENIED,
            ),
            (
                "RST with no flow",
                tcp4_flags(BACKEND, FRONTEND, 8081, 40003, RST),
                DENIED,
            ),
            (
                "open a flow",
                tcp4_flags(FRONTEND, BACKEND, 40004, 8081, SYN),
                allowed(1),
            ),
            (
                "a reply from the wrong port",
                tcp4_flags(BACKEND, FRONTEND, 8082, 40004, ACK),
                DENIED,
            ),
            (
                "a reply to the wrong port",
                tcp4_flags(BACKEND, FRONTEND, 8081, 40005, ACK),
                DENIED,
            ),
            (
                "a SYN in the reply direction",
                tcp4_flags(BACKEND, FRONTEND, 8081, 40004, SYN),
                DENIED,
            ),
            (
                "the real reply",
                tcp4_flags(BACKEND, FRONTEND, 8081, 40004, SYN | ACK),
                REPLY(1),
            ),
            (
                "a tiny first fragment",
                {
                    ethernet(
                        ETH_IPV4,
                        &[],
                        &ipv4_fragment(FRONTEND, BACKEND, TCP, 90, 0x2000, &tcp(40004, 8081)[..8]),
                    )
                },
                MALFORMED,
            ),
            (
                "a TCP fragment overlapping the first one's flags",
                {
                    ethernet(
                        ETH_IPV4,
                        &[],
                        &ipv4_fragment(FRONTEND, BACKEND, TCP, 91, 1, &[0; 16]),
                    )
                },
                MALFORMED,
            ),
            (
                "TCP data offset below 5 on a tracked flow",
                {
                    ethernet(
                        ETH_IPV4,
                        &[],
                        &ipv4(FRONTEND, BACKEND, TCP, &tcp_with(40004, 8081, 4)),
                    )
                },
                MALFORMED,
            ),
        ],
    );
}

#[test]
fn icmp_errors_pass_only_when_they_quote_a_tracked_flow() {
    let mut both = Both::new(&policy());
    let syn = ipv4(FRONTEND, BACKEND, TCP, &tcp_flags(40010, 8081, SYN));
    let untracked = ipv4(FRONTEND, BACKEND, TCP, &tcp_flags(40011, 8081, SYN));
    let reply = ipv4(BACKEND, FRONTEND, TCP, &tcp_flags(8081, 40010, SYN | ACK));
    let router = "198.18.200.1";
    let error4 = |dst, t, c, quoted: &[u8]| {
        ethernet(
            ETH_IPV4,
            &[],
            &ipv4(router, dst, ICMP, &icmp_error(t, c, quoted)),
        )
    };
    check(
        &mut both,
        &[
            ("open a flow", ethernet(ETH_IPV4, &[], &syn), allowed(1)),
            (
                "unreachable quoting it",
                error4(FRONTEND, 3, 1, &syn),
                (Reason::Related, Some(1)),
            ),
            (
                "fragmentation needed quoting it",
                error4(FRONTEND, 3, 4, &syn),
                (Reason::Related, Some(1)),
            ),
            (
                "time exceeded quoting its reply",
                error4(BACKEND, 11, 0, &reply),
                (Reason::Related, Some(1)),
            ),
            (
                "unreachable quoting no flow",
                error4(FRONTEND, 3, 1, &untracked),
                (Reason::UntrackedIcmpError, None),
            ),
            (
                "unreachable quoting nothing",
                error4(FRONTEND, 3, 1, &[]),
                (Reason::UntrackedIcmpError, None),
            ),
        ],
    );
    let syn6 = ipv6(FRONTEND6, BACKEND6, TCP, &tcp_flags(40012, 8081, SYN));
    let other6 = ipv6(FRONTEND6, BACKEND6, TCP, &tcp_flags(40013, 8081, SYN));
    let error6 = |t, quoted: &[u8]| {
        ethernet(
            ETH_IPV6,
            &[],
            &ipv6(
                "2001:db8:ff::1",
                FRONTEND6,
                ICMPV6,
                &icmp_error(t, 0, quoted),
            ),
        )
    };
    check(
        &mut both,
        &[
            ("open a v6 flow", ethernet(ETH_IPV6, &[], &syn6), allowed(1)),
            (
                "packet too big quoting it",
                error6(2, &syn6),
                (Reason::Related, Some(1)),
            ),
            (
                "packet too big quoting no flow",
                error6(2, &other6),
                (Reason::UntrackedIcmpError, None),
            ),
        ],
    );
}

/// The entries rule `id` put in the maps, as a policy of their own.
fn entries_of_rule(id: u32) -> CompiledPolicy {
    let compiled = policy().compile();
    CompiledPolicy {
        ipcache_v4: Vec::new(),
        ipcache_v6: Vec::new(),
        policy: compiled
            .policy
            .into_iter()
            .filter(|e| e.value.rule_id == id)
            .collect(),
        max_rule_id: compiled.max_rule_id,
    }
}

#[test]
fn revoking_a_rule_stops_its_established_flows_at_the_next_packet() {
    let mut both = Both::new(&policy());
    let f = |flags| tcp4_flags(FRONTEND, BACKEND, 40020, 8081, flags);
    let b = |flags| tcp4_flags(BACKEND, FRONTEND, 8081, 40020, flags);
    check(
        &mut both,
        &[
            ("SYN", f(SYN), allowed(1)),
            ("SYN-ACK", b(SYN | ACK), REPLY(1)),
            ("ACK", f(ACK), ESTABLISHED(1)),
            (
                "an unrelated flow",
                udp4(FRONTEND, BACKEND, 5000, 53),
                allowed(5),
            ),
        ],
    );
    for replayer in [&mut both.tc, &mut both.xdp] {
        let datapath = replayer.datapath();
        datapath
            .remove_entries(&entries_of_rule(1))
            .expect("remove rule 1");
        datapath.bump_revision().expect("bump revision");
    }
    let revoked = both.run(&f(PSH | ACK));
    assert_eq!(revoked.reason, Reason::Revoked, "{revoked:?}");
    check(
        &mut both,
        &[
            ("the next packet out", f(ACK), DENIED),
            ("the server's data", b(PSH | ACK), DENIED),
            ("a new SYN", f(SYN), DENIED),
            (
                "the flow of a rule still in place",
                udp4(FRONTEND, BACKEND, 5000, 53),
                ESTABLISHED(5),
            ),
        ],
    );
    for replayer in [&mut both.tc, &mut both.xdp] {
        assert_eq!(
            replayer
                .datapath()
                .stat(Stat::ConntrackDeleted)
                .expect("stat"),
            1
        );
    }
}

#[test]
fn an_expired_flow_is_treated_as_absent() {
    let config = Config {
        other_timeout: 1,
        ..Config::DEFAULT
    };
    let mut both = Both::with_options(
        &policy(),
        LoadOptions {
            config,
            ..LoadOptions::default()
        },
    );
    both.expect(
        "request",
        &udp4(FRONTEND, BACKEND, 5000, 53),
        Reason::Policy,
        Some(5),
    );
    both.expect(
        "reply in time",
        &udp4(BACKEND, FRONTEND, 53, 5000),
        Reason::Reply,
        Some(5),
    );
    // The coarse clock ticks every few milliseconds and a refresh is written at most once a
    // second: 2.5 s is past the 1 s lifetime whatever the rounding.
    std::thread::sleep(Duration::from_millis(2500));
    let (reason, rule) = DENIED;
    both.expect(
        "reply after the lifetime",
        &udp4(BACKEND, FRONTEND, 53, 5000),
        reason,
        rule,
    );
}

#[test]
fn lru_eviction_is_counted_not_silent() {
    const CAPACITY: u32 = 64;
    const FLOWS: u16 = 600;
    let options = LoadOptions {
        conntrack_entries: CAPACITY,
        ..LoadOptions::default()
    };
    let mut both = Both::with_options(&policy(), options);
    for port in 0..FLOWS {
        both.expect(
            "new flow",
            &udp4(FRONTEND, BACKEND, 10_000 + port, 53),
            Reason::Policy,
            Some(5),
        );
    }
    for replayer in [&mut both.tc, &mut both.xdp] {
        let datapath = replayer.datapath();
        let created = datapath.stat(Stat::ConntrackCreated).expect("stat");
        let present = datapath.conntrack().expect("map").keys().count() as u64;
        assert_eq!(created, u64::from(FLOWS));
        assert!(
            present <= u64::from(CAPACITY),
            "{present} flows in a map of {CAPACITY}"
        );
        let reclaimed = created - present;
        assert!(
            reclaimed >= u64::from(FLOWS) - u64::from(CAPACITY),
            "reclaimed {reclaimed}"
        );
    }
}

#[test]
fn conntrack_layouts_match_the_kernel_maps() {
    // The map's key and value sizes are checked by aya when the map is opened typed.
    let mut both = Both::new(&policy());
    both.expect(
        "open",
        &udp4(FRONTEND, BACKEND, 5000, 53),
        Reason::Policy,
        Some(5),
    );
    let map = both.tc.datapath().conntrack().expect("typed conntrack map");
    let flows: Vec<(CtKey, CtEntry)> = map.iter().map(|r| r.expect("entry")).collect();
    assert_eq!(flows.len(), 1);
    let (key, entry) = flows[0];
    assert_eq!(
        (key.source_port, key.destination_port, key.protocol),
        (5000, 53, UDP)
    );
    assert_eq!(entry.rule_id, 5);
    assert_eq!(entry.policy_port, 53);
}
