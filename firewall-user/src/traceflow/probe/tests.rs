use super::*;

const POLICY: &str = r#"
apps:
  frontend: {ips: [198.18.1.10, "2001:db8:1::10"]}
  backend:  {ips: [198.18.2.10, "2001:db8:2::10"]}
  v6only:   {ips: ["2001:db8:3::10"]}
"#;

fn policy() -> Policy {
    crate::policy::parse_str(POLICY, "test").expect("policy")
}

fn request(source: &str, destination: &str) -> TraceRequest {
    TraceRequest {
        source_app: Some(source.into()),
        destination_app: Some(destination.into()),
        port: Some(8081),
        ..TraceRequest::default()
    }
}

#[test]
fn a_tcp_syn_between_two_apps_uses_their_ipv4_addresses() {
    let frame = build(&request("frontend", "backend"), &policy()).expect("frame");
    let packet = etherparse::SlicedPacket::from_ethernet(&frame).expect("parses");
    let Some(etherparse::NetSlice::Ipv4(ip)) = packet.net else {
        panic!("IPv4 expected");
    };
    assert_eq!(ip.header().source(), [198, 18, 1, 10]);
    assert_eq!(ip.header().destination(), [198, 18, 2, 10]);
    let Some(etherparse::TransportSlice::Tcp(tcp)) = packet.transport else {
        panic!("TCP expected");
    };
    assert_eq!(
        (tcp.source_port(), tcp.destination_port()),
        (DEFAULT_SOURCE_PORT, 8081)
    );
    assert!(tcp.syn() && !tcp.ack());
}

#[test]
fn the_family_follows_what_both_ends_have() {
    let frame = build(&request("frontend", "v6only"), &policy()).expect("frame");
    let packet = etherparse::SlicedPacket::from_ethernet(&frame).expect("parses");
    assert!(matches!(packet.net, Some(etherparse::NetSlice::Ipv6(_))));
}

#[test]
fn flags_icmp_and_sctp_are_built_as_asked() {
    let mut flags = request("frontend", "backend");
    flags.tcp_flags = Some("SA".into());
    let frame = build(&flags, &policy()).expect("frame");
    let packet = etherparse::SlicedPacket::from_ethernet(&frame).expect("parses");
    let Some(etherparse::TransportSlice::Tcp(tcp)) = packet.transport else {
        panic!("TCP expected");
    };
    assert!(tcp.syn() && tcp.ack());

    let icmp = TraceRequest {
        protocol: Some("icmp".into()),
        port: None,
        icmp_type: Some(3),
        icmp_code: Some(4),
        ..request("frontend", "backend")
    };
    let frame = build(&icmp, &policy()).expect("frame");
    // Ethernet 14 + IPv4 20: the ICMP type and code follow.
    assert_eq!((frame[34], frame[35]), (3, 4));

    let sctp = TraceRequest {
        protocol: Some("sctp".into()),
        ..request("frontend", "backend")
    };
    let frame = build(&sctp, &policy()).expect("frame");
    assert_eq!(frame[23], 132, "IP protocol");
    assert_eq!(u16::from_be_bytes([frame[36], frame[37]]), 8081);

    let gre = TraceRequest {
        protocol: Some("47".into()),
        port: None,
        ..request("frontend", "backend")
    };
    let frame = build(&gre, &policy()).expect("frame");
    assert_eq!((frame.len(), frame[23]), (34, 47));
}

#[test]
fn a_whole_frame_is_taken_as_it_is_and_only_alone() {
    let hex = "02000000000202000000000108004500";
    let frame = TraceRequest {
        frame: Some(hex.into()),
        ..TraceRequest::default()
    };
    assert_eq!(build(&frame, &policy()).expect("frame").len(), 16);
    let mixed = TraceRequest {
        frame: Some(hex.into()),
        port: Some(1),
        ..TraceRequest::default()
    };
    assert!(
        matches!(build(&mixed, &policy()), Err(TraceError::Invalid(m)) if m.contains("drop the other fields"))
    );
    let odd = TraceRequest {
        frame: Some("abc".into()),
        ..TraceRequest::default()
    };
    assert!(matches!(build(&odd, &policy()), Err(TraceError::Invalid(m)) if m.contains("odd")));
}

#[test]
fn bad_requests_name_what_is_wrong() {
    let policy = policy();
    let cases: Vec<(TraceRequest, &str)> = vec![
        (request("ghost", "backend"), "app ghost is not registered"),
        (
            TraceRequest {
                port: None,
                ..request("frontend", "backend")
            },
            "tcp needs a destination port",
        ),
        (
            TraceRequest {
                protocol: Some("udp".into()),
                port: Some(0),
                ..request("frontend", "backend")
            },
            "udp needs a destination port (1-65535)",
        ),
        (
            TraceRequest {
                protocol: Some("47".into()),
                ..request("frontend", "backend")
            },
            "proto 47 has no ports",
        ),
        (
            TraceRequest {
                destination_ip: Some("198.18.9.9".parse().expect("ip")),
                ..request("frontend", "backend")
            },
            "name one destination",
        ),
        (
            TraceRequest {
                protocol: Some("gre".into()),
                ..request("frontend", "backend")
            },
            "protocol \"gre\"",
        ),
        (
            TraceRequest {
                protocol: Some("icmp".into()),
                ..request("frontend", "backend")
            },
            "ICMP has no ports",
        ),
        (
            TraceRequest {
                protocol: Some("icmp".into()),
                port: None,
                ..request("frontend", "v6only")
            },
            "has no IPv4 address",
        ),
    ];
    for (request, expected) in cases {
        let error = build(&request, &policy).expect_err("refused").to_string();
        assert!(error.contains(expected), "{request:?}: {error}");
    }
}
