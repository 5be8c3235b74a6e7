//! The datapath contract, pinned by running crafted frames through the real, verifier-loaded
//! programs (BPF_PROG_TEST_RUN) at both hooks. Needs root.

mod support;

use firewall::{
    datapath::{Capacities, Datapath, DatapathError, LoadOptions},
    events,
    replay::{ReplayHook, Replayer},
};
use firewall_common::{Reason, Verdict};
use support::{packets::*, replay::*, *};

#[test]
fn identity_policy_allows_only_what_a_rule_names() {
    let policy = policy();
    let mut both = Both::new(&policy);
    check(
        &mut both,
        &[
            (
                "tcp to the allowed port",
                tcp4(FRONTEND, BACKEND, 8081),
                allowed(1),
            ),
            (
                "tcp to a port no rule names",
                tcp4(FRONTEND, BACKEND, 8082),
                DENIED,
            ),
            (
                "the reverse direction",
                tcp4(BACKEND, FRONTEND, 8081),
                DENIED,
            ),
            (
                "udp where only tcp is allowed",
                ethernet(
                    ETH_IPV4,
                    &[],
                    &ipv4(FRONTEND, BACKEND, UDP, &udp(1, 8081, b"")),
                ),
                DENIED,
            ),
            (
                "udp rule",
                ethernet(
                    ETH_IPV4,
                    &[],
                    &ipv4(FRONTEND, BACKEND, UDP, &udp(1, 53, b"q")),
                ),
                allowed(5),
            ),
            (
                "sctp rule",
                ethernet(
                    ETH_IPV4,
                    &[],
                    &ipv4(FRONTEND, BACKEND, SCTP, &sctp(1, 3868)),
                ),
                allowed(7),
            ),
            (
                "sctp other port",
                ethernet(
                    ETH_IPV4,
                    &[],
                    &ipv4(FRONTEND, BACKEND, SCTP, &sctp(1, 3869)),
                ),
                DENIED,
            ),
            (
                "app to network prefix",
                tcp4(BACKEND, "198.19.10.77", 1521),
                allowed(4),
            ),
            (
                "address outside every prefix is world",
                tcp4("198.18.200.1", FRONTEND, 443),
                allowed(11),
            ),
            (
                "world to an app no rule opens",
                tcp4("198.18.200.1", BACKEND, 443),
                DENIED,
            ),
            ("protocol all, tcp", tcp4(MONITOR, FRONTEND, 22), allowed(9)),
            (
                "protocol all, udp",
                ethernet(
                    ETH_IPV4,
                    &[],
                    &ipv4(MONITOR, FRONTEND, UDP, &udp(1, 9, b"")),
                ),
                allowed(9),
            ),
            (
                "protocol all, GRE",
                ethernet(ETH_IPV4, &[], &ipv4(MONITOR, FRONTEND, 47, &[0; 4])),
                allowed(9),
            ),
        ],
    );
}

#[test]
fn port_ranges_are_exact_at_both_edges() {
    let policy = policy();
    let mut both = Both::new(&policy);
    check(
        &mut both,
        &[
            ("below the range", tcp4(FRONTEND, BACKEND, 8999), DENIED),
            ("first port", tcp4(FRONTEND, BACKEND, 9000), allowed(2)),
            ("inside", tcp4(FRONTEND, BACKEND, 9005), allowed(2)),
            ("last port", tcp4(FRONTEND, BACKEND, 9010), allowed(2)),
            ("above the range", tcp4(FRONTEND, BACKEND, 9011), DENIED),
            (
                "1-65535 first",
                tcp4(MONITOR, "198.19.10.1", 1),
                allowed(12),
            ),
            (
                "1-65535 middle",
                tcp4(MONITOR, "198.19.10.1", 32768),
                allowed(12),
            ),
            (
                "1-65535 last",
                tcp4(MONITOR, "198.19.10.1", 65535),
                allowed(12),
            ),
            (
                "port 0 is outside 1-65535",
                tcp4(MONITOR, "198.19.10.1", 0),
                DENIED,
            ),
        ],
    );
}

#[test]
fn icmp_type_and_code_are_matched() {
    let policy = policy();
    let mut both = Both::new(&policy);
    let icmp4 = |src, t, c| ethernet(ETH_IPV4, &[], &ipv4(src, BACKEND, ICMP, &icmp(t, c)));
    let icmp6 = |t, c| {
        ethernet(
            ETH_IPV6,
            &[],
            &ipv6(FRONTEND6, BACKEND6, ICMPV6, &icmp(t, c)),
        )
    };
    check(
        &mut both,
        &[
            (
                "any icmp from frontend: echo",
                icmp4(FRONTEND, 8, 0),
                allowed(3),
            ),
            (
                "an unreachable error quoting no flow",
                icmp4(FRONTEND, 3, 4),
                (Reason::UntrackedIcmpError, None),
            ),
            (
                "monitor: echo request only",
                icmp4(MONITOR, 8, 0),
                allowed(6),
            ),
            (
                "monitor: echo request, any code (another echo id)",
                {
                    let mut f = icmp4(MONITOR, 8, 7);
                    let id = f.len() - 3;
                    f[id] = 2;
                    f
                },
                allowed(6),
            ),
            (
                "monitor: timestamp is not echo",
                icmp4(MONITOR, 13, 0),
                DENIED,
            ),
            ("icmpv6 echo request code 0", icmp6(128, 0), allowed(8)),
            (
                "icmpv6 echo request code 1 (another echo id)",
                {
                    let mut f = icmp6(128, 1);
                    let id = f.len() - 3;
                    f[id] = 2;
                    f
                },
                DENIED,
            ),
            (
                "icmpv6 echo reply to no request",
                {
                    let mut f = icmp6(129, 0);
                    let id = f.len() - 3;
                    f[id] = 3;
                    f
                },
                DENIED,
            ),
        ],
    );
}

#[test]
fn ipv6_identities_and_prefixes() {
    let policy = policy();
    let mut both = Both::new(&policy);
    check(
        &mut both,
        &[
            ("v6 app to app", tcp6(FRONTEND6, BACKEND6, 8081), allowed(1)),
            ("v6 denied port", tcp6(FRONTEND6, BACKEND6, 8082), DENIED),
            (
                "v6 app to network",
                tcp6(BACKEND6, "2001:db8:99:1::5", 443),
                allowed(10),
            ),
            (
                "v6 outside the network",
                tcp6(BACKEND6, "2001:db8:98::5", 443),
                DENIED,
            ),
        ],
    );
    let outcome = both.run(&tcp6(FRONTEND6, BACKEND6, 8081));
    let name = |id: Option<u32>| id.and_then(|i| policy.identity_name(i).map(str::to_string));
    assert_eq!(name(outcome.source_identity).as_deref(), Some("frontend"));
    assert_eq!(
        name(outcome.destination_identity).as_deref(),
        Some("backend")
    );
}

#[test]
fn infrastructure_traffic_passes_with_its_own_reason() {
    let policy = policy();
    let mut both = Both::new(&policy);
    let nd = |t: u8, hop_limit: u8| {
        ethernet(
            ETH_IPV6,
            &[],
            &ipv6_with(
                "fe80::1",
                "ff02::1:ff00:10",
                ICMPV6,
                hop_limit,
                &[
                    t, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
                ],
            ),
        )
    };
    check(
        &mut both,
        &[
            (
                "arp between apps",
                ethernet(ETH_ARP, &[], &arp(FRONTEND, BACKEND)),
                (Reason::InfraArp, None),
            ),
            (
                "arp cut short",
                ethernet(ETH_ARP, &[], &arp(FRONTEND, BACKEND)[..20]),
                MALFORMED,
            ),
            (
                "router solicitation",
                nd(133, 255),
                (Reason::InfraRouterDiscovery, None),
            ),
            (
                "router advertisement",
                nd(134, 255),
                (Reason::InfraRouterDiscovery, None),
            ),
            (
                "neighbour solicitation",
                nd(135, 255),
                (Reason::InfraNeighbourDiscovery, None),
            ),
            (
                "neighbour advertisement",
                nd(136, 255),
                (Reason::InfraNeighbourDiscovery, None),
            ),
            ("neighbour solicitation not on-link", nd(135, 64), DENIED),
            ("redirect is not infrastructure", nd(137, 255), DENIED),
            (
                "lldp",
                ethernet(0x88cc, &[], &[0; 46]),
                (Reason::UnsupportedEthertype, None),
            ),
        ],
    );
}

#[test]
fn counters_count_every_reason_and_rule() {
    let policy = policy();
    let mut replayer = Replayer::new(&policy.compile(), ReplayHook::Tc).expect("load");
    let allowed = tcp4(FRONTEND, BACKEND, 8081);
    let denied = tcp4(FRONTEND, BACKEND, 8082);
    for _ in 0..3 {
        replayer.run(&allowed).expect("run");
    }
    for _ in 0..2 {
        replayer.run(&denied).expect("run");
    }
    replayer
        .run(&ethernet(ETH_ARP, &[], &arp(FRONTEND, BACKEND)))
        .expect("run");
    let datapath = replayer.datapath();
    let reasons = datapath.reason_counters().expect("reason counters");
    let get = |r| {
        reasons
            .iter()
            .find(|(reason, _)| *reason == r)
            .map(|(_, c)| *c)
    };
    assert_eq!(get(Reason::Policy).map(|c| c.packets), Some(3));
    assert_eq!(
        get(Reason::Policy).map(|c| c.bytes),
        Some(3 * allowed.len() as u64)
    );
    assert_eq!(get(Reason::DeniedByDefault).map(|c| c.packets), Some(2));
    assert_eq!(get(Reason::InfraArp).map(|c| c.packets), Some(1));
    let rule1 = datapath.rule_counter(1).expect("rule counter");
    assert_eq!((rule1.packets, rule1.bytes), (3, 3 * allowed.len() as u64));
    assert_eq!(datapath.rule_counter(2).expect("rule counter").packets, 0);
}

#[test]
fn drops_are_reported_in_the_ring_buffer() {
    let policy = policy();
    let mut replayer = Replayer::new(&policy.compile(), ReplayHook::Xdp).expect("load");
    let outcome = replayer.run(&tcp4(FRONTEND, BACKEND, 8082)).expect("run");
    assert_eq!(outcome.verdict, Verdict::Drop);
    replayer.run(&tcp4(FRONTEND, BACKEND, 8081)).expect("run");
    let mut ring = replayer.datapath().take_flow_events().expect("ring buffer");
    let item = ring.next().expect("one drop record");
    let event = events::parse(&item).expect("a whole record");
    assert!(events::is_drop(&event));
    assert_eq!(event.reason, Reason::DeniedByDefault as u8);
    assert_eq!(event.rule_id, 0);
    assert_eq!((event.family, event.protocol), (4, TCP));
    assert_eq!((event.source_port, event.destination_port), (40000, 8082));
    assert_eq!(&event.source_address[..4], &v4(FRONTEND).octets());
    assert_eq!(
        policy.identity_name(event.source_identity),
        Some("frontend")
    );
    assert_eq!(
        policy.identity_name(event.destination_identity),
        Some("backend")
    );
    let line = events::describe(&event, &policy);
    assert!(
        line.contains("denied-by-default") && line.contains("198.18.2.10:8082"),
        "{line}"
    );
    drop(item);
    let item = ring
        .next()
        .expect("a record of the flow the allowed packet opened");
    let opened = events::parse(&item).expect("a whole record");
    assert!(!events::is_drop(&opened));
    assert_eq!(opened.reason, Reason::Policy as u8);
    assert_eq!(opened.destination_port, 8081);
    assert_eq!(opened.rule_id, 1, "the record names the allowing rule");
    drop(item);
    assert!(ring.next().is_none(), "one record per packet");
}

#[test]
fn a_policy_that_does_not_fit_writes_nothing() {
    let policy = policy();
    let compiled = policy.compile();
    let capacities = Capacities {
        policy: 4,
        ..Capacities::default()
    };
    let mut datapath = Datapath::load(&LoadOptions {
        capacities,
        replay: true,
        ..LoadOptions::default()
    })
    .expect("load");
    match datapath.apply(&compiled) {
        Err(DatapathError::Capacity { map, limit, .. }) => assert_eq!((map, limit), ("POLICY", 4)),
        other => panic!("expected a capacity error, got {other:?}"),
    }
    let mut replayer = Replayer::from_datapath(datapath, ReplayHook::Tc);
    let outcome = replayer.run(&tcp4(FRONTEND, BACKEND, 8081)).expect("run");
    // Neither the ipcache nor the policy was written: the source is unknown, so world.
    assert_eq!(outcome.reason, Reason::DeniedByDefault);
    assert_eq!(
        outcome.source_identity,
        Some(firewall_common::identity::reserved::WORLD)
    );
}

#[test]
fn the_kernel_refuses_frames_shorter_than_ethernet() {
    let policy = policy();
    let mut replayer = Replayer::new(&policy.compile(), ReplayHook::Tc).expect("load");
    assert!(replayer.run(&[0; 10]).is_err());
}
