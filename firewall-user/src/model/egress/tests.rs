//! Parsing and expansion of Cloud Foundry security group rules.

use super::*;

/// The grants of rules written as a CF JSON array.
fn expand_json(json: &str) -> Result<Vec<(IpNet, Protocol)>, ModelError> {
    let rules: Vec<EgressRule> =
        serde_json::from_str(json).unwrap_or_else(|error| panic!("{json}: {error}"));
    expand(&rules, 65_535)
}

fn net(text: &str) -> IpNet {
    text.parse().unwrap()
}

fn tcp(start: u16, end: u16) -> Protocol {
    Protocol::Tcp(Some(PortRange { start, end }))
}

#[test]
fn the_example_security_group_expands_rule_by_rule() {
    let grants = expand_json(
        r#"[
            {"protocol":"tcp","destination":"198.19.10.0/24","ports":"1521,1522",
             "description":"database"},
            {"protocol":"icmp","destination":"198.19.0.1","type":0,"code":-1},
            {"protocol":"all","destination":"198.19.20.1-198.19.20.40"}
        ]"#,
    )
    .unwrap();
    let echo_reply = Protocol::Icmp(IcmpMatch {
        icmp_type: Some(0),
        code: None,
    });
    let mut expected = vec![
        (net("198.19.10.0/24"), tcp(1521, 1521)),
        (net("198.19.10.0/24"), tcp(1522, 1522)),
        (net("198.19.0.1/32"), echo_reply),
    ];
    let range = [
        "198.19.20.1/32",
        "198.19.20.2/31",
        "198.19.20.4/30",
        "198.19.20.8/29",
        "198.19.20.16/28",
        "198.19.20.32/29",
        "198.19.20.40/32",
    ];
    expected.extend(range.iter().map(|cidr| (net(cidr), Protocol::All)));
    assert_eq!(grants, expected);
}

#[test]
fn every_destination_and_port_form_is_understood() {
    let cases: Vec<(&str, Vec<(IpNet, Protocol)>)> = vec![
        (
            r#"{"protocol":"tcp","destination":"10.0.0.1","ports":"8000-8010"}"#,
            vec![(net("10.0.0.1/32"), tcp(8000, 8010))],
        ),
        (
            r#"{"protocol":"tcp","destination":"10.0.0.1, 10.0.1.0/24","ports":"80, 90-91"}"#,
            vec![
                (net("10.0.0.1/32"), tcp(80, 80)),
                (net("10.0.0.1/32"), tcp(90, 91)),
                (net("10.0.1.0/24"), tcp(80, 80)),
                (net("10.0.1.0/24"), tcp(90, 91)),
            ],
        ),
        (
            r#"{"protocol":"udp","destination":"2001:db8::/32"}"#,
            vec![(net("2001:db8::/32"), Protocol::Udp(None))],
        ),
        (
            r#"{"protocol":"tcp","destination":"2001:db8::-2001:db8::3"}"#,
            vec![(net("2001:db8::/126"), Protocol::Tcp(None))],
        ),
        (
            r#"{"protocol":"icmp","destination":"10.0.0.0/8","type":-1,"code":-1}"#,
            vec![(net("10.0.0.0/8"), Protocol::Icmp(IcmpMatch::default()))],
        ),
        (
            r#"{"protocol":"icmp","destination":"10.0.0.0/8"}"#,
            vec![(net("10.0.0.0/8"), Protocol::Icmp(IcmpMatch::default()))],
        ),
        (
            r#"{"protocol":"icmp","destination":"10.0.0.0/8","type":3,"code":4}"#,
            vec![(
                net("10.0.0.0/8"),
                Protocol::Icmp(IcmpMatch {
                    icmp_type: Some(3),
                    code: Some(4),
                }),
            )],
        ),
        (
            r#"{"protocol":"all","destination":"0.0.0.0-255.255.255.255"}"#,
            vec![(net("0.0.0.0/0"), Protocol::All)],
        ),
    ];
    for (json, expected) in cases {
        assert_eq!(expand_json(&format!("[{json}]")), Ok(expected), "{json}");
    }
}

#[test]
fn repeated_grants_are_kept_once() {
    let grants = expand_json(
        r#"[{"protocol":"tcp","destination":"10.0.0.1,10.0.0.1","ports":"80,80"},
            {"protocol":"tcp","destination":"10.0.0.1/32","ports":"80"}]"#,
    );
    assert_eq!(grants, Ok(vec![(net("10.0.0.1/32"), tcp(80, 80))]));
}

#[test]
fn bad_rules_are_refused_with_their_index() {
    let good = r#"{"protocol":"all","destination":"10.0.0.1"}"#;
    let cases = [
        (
            r#"{"protocol":"tcp","destination":"nowhere"}"#,
            "\"nowhere\" is not an IP address",
        ),
        (
            r#"{"protocol":"tcp","destination":""}"#,
            "\"\" has an empty element",
        ),
        (
            r#"{"protocol":"tcp","destination":"10.0.0.1,"}"#,
            "has an empty element",
        ),
        (
            r#"{"protocol":"tcp","destination":"10.0.0.1/8"}"#,
            "10.0.0.1/8 has host bits set; did you mean 10.0.0.0/8?",
        ),
        (
            r#"{"protocol":"tcp","destination":"10.0.0.0/33"}"#,
            "10.0.0.0/33 is not a CIDR",
        ),
        (
            r#"{"protocol":"tcp","destination":"10.0.0.9-10.0.0.1"}"#,
            "range 10.0.0.9-10.0.0.1 is reversed; did you mean 10.0.0.1-10.0.0.9?",
        ),
        (
            r#"{"protocol":"tcp","destination":"10.0.0.1-2001:db8::1"}"#,
            "mixes IPv4 and IPv6",
        ),
        (
            r#"{"protocol":"tcp","destination":"10.0.0.1","ports":"0"}"#,
            "invalid port: 0 in ports \"0\" (must be in range 1-65535)",
        ),
        (
            r#"{"protocol":"udp","destination":"10.0.0.1","ports":"80,70000"}"#,
            "invalid port: 70000",
        ),
        (
            r#"{"protocol":"tcp","destination":"10.0.0.1","ports":"http"}"#,
            "invalid ports: \"http\"",
        ),
        (
            r#"{"protocol":"tcp","destination":"10.0.0.1","ports":""}"#,
            "invalid ports: \"\"",
        ),
        (
            r#"{"protocol":"tcp","destination":"10.0.0.1","ports":"90-80"}"#,
            "invalid port range: 90-80",
        ),
        (
            r#"{"protocol":"icmp","destination":"10.0.0.1","ports":"80"}"#,
            "ports do not apply to protocol icmp",
        ),
        (
            r#"{"protocol":"all","destination":"10.0.0.1","ports":"80"}"#,
            "ports do not apply to protocol all",
        ),
        (
            r#"{"protocol":"tcp","destination":"10.0.0.1","type":8}"#,
            "type and code do not apply to protocol tcp",
        ),
        (
            r#"{"protocol":"icmp","destination":"10.0.0.1","type":256}"#,
            "invalid icmp type: 256 (expected -1 for any, or 0-255)",
        ),
        (
            r#"{"protocol":"icmp","destination":"10.0.0.1","type":8,"code":-2}"#,
            "invalid icmp code: -2",
        ),
        (
            r#"{"protocol":"icmp","destination":"10.0.0.1","code":4}"#,
            "icmp code 4 needs a type",
        ),
        (
            r#"{"protocol":"icmp","destination":"2001:db8::/32"}"#,
            "protocol icmp does not apply to IPv6 destination 2001:db8::/32",
        ),
    ];
    for (bad, expected) in cases {
        let json = format!("[{good}, {good}, {bad}]");
        match expand_json(&json) {
            Err(ModelError::Invalid(message)) => {
                assert!(message.starts_with("egress rule 2: "), "{bad}: {message}");
                assert!(message.contains(expected), "{bad}: {message}");
            }
            other => panic!("{bad}: expected Invalid({expected}), got {other:?}"),
        }
    }
}

#[test]
fn the_json_shape_is_exactly_that_of_cloud_foundry() {
    let unknown = serde_json::from_str::<EgressRule>(
        r#"{"protocol":"tcp","destination":"10.0.0.1","log":true}"#,
    );
    assert!(
        unknown
            .unwrap_err()
            .to_string()
            .contains("unknown field `log`")
    );
    let protocol = serde_json::from_str::<EgressRule>(r#"{"protocol":"sctp","destination":"x"}"#);
    let message = protocol.unwrap_err().to_string();
    assert!(message.contains("invalid protocol: sctp"), "{message}");

    let json =
        r#"{"protocol":"icmp","destination":"10.0.0.1","type":0,"code":-1,"description":"ping"}"#;
    let rule: EgressRule = serde_json::from_str(json).unwrap();
    assert_eq!(rule.icmp_type, Some(0));
    assert_eq!(rule.icmp_code, Some(-1));
    assert_eq!(serde_json::to_string(&rule).unwrap(), json);
}

#[test]
fn too_many_grants_are_refused_before_they_are_built() {
    let rules: Vec<EgressRule> =
        serde_json::from_str(r#"[{"protocol":"tcp","destination":"10.0.0.0/8","ports":"1,2,3"}]"#)
            .unwrap();
    assert!(matches!(expand(&rules, 2), Err(ModelError::Full(_))));
    assert_eq!(expand(&rules, 3).map(|grants| grants.len()), Ok(3));
}
