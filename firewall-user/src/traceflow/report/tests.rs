use super::*;

const POLICY: &str = r#"
apps:
  frontend: {org: bank, space: prod, ips: [198.18.1.10]}
  backend:  {ips: [198.18.2.10]}
  other:    {ips: [198.18.3.10]}
networks:
  partners: {cidrs: [198.18.200.0/24, 198.18.200.128/25]}
policies:
  - {source: other, destination: partners, protocol: udp, ports: 53}      # 1
  - {source: other, destination: backend, protocol: tcp, ports: 8082}     # 2
  - {source: frontend, destination: backend, protocol: udp, ports: 53}    # 3
  - {source: frontend, destination: partners, protocol: tcp, ports: 443}  # 4
"#;

fn event(reason: Reason, source: Identity, destination: Identity, rule_id: u32) -> FlowEvent {
    FlowEvent {
        timestamp_ns: 0,
        ifindex: 0,
        length: 54,
        source_identity: source,
        destination_identity: destination,
        rule_id,
        trace_id: 1,
        reason: reason as u8,
        hook: Hook::TcIngress as u8,
        family: 4,
        protocol: 6,
        source_port: 49_152,
        destination_port: 8082,
        tcp_flags: 0x02,
        _pad: [0; 7],
        source_address: [198, 18, 1, 10, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0],
        destination_address: [198, 18, 200, 200, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0],
    }
}

fn setup() -> (NameTable, CompiledPolicy) {
    let policy = crate::policy::parse_str(POLICY, "test").expect("policy");
    let compiled = policy.compile();
    (NameTable::new(std::sync::Arc::new(policy)), compiled)
}

fn identity(names: &NameTable, name: &str) -> Identity {
    let policy = names.policy();
    let app = policy
        .apps
        .iter()
        .find(|a| a.name == name)
        .map(|a| a.identity);
    app.or_else(|| {
        policy
            .networks
            .iter()
            .find(|n| n.name == name)
            .map(|n| n.identity)
    })
    .expect("known name")
}

#[test]
fn a_default_deny_lists_the_nearest_rules_nearest_first() {
    let (names, compiled) = setup();
    let (frontend, backend) = (identity(&names, "frontend"), identity(&names, "backend"));
    let observed = observations(
        &event(Reason::DeniedByDefault, frontend, backend, 0),
        Hook::TcIngress,
        &names,
        &compiled,
    );
    let Observation::Policy(view) = &observed[4] else {
        panic!("policy step expected: {observed:?}");
    };
    assert!(view.default_deny);
    assert_eq!(
        view.detail,
        "default deny: no rule allows frontend -> backend tcp 8082"
    );
    // Same two apps first (3), then other sources to backend over TCP (2), then frontend
    // to others over TCP (4); rule 1 shares nothing.
    let ids: Vec<u32> = view.nearest_rules.iter().map(|r| r.rule_id).collect();
    assert_eq!(ids, [3, 2, 4]);
}

#[test]
fn identities_name_the_longest_prefix_that_matched() {
    let (names, compiled) = setup();
    let partners = identity(&names, "partners");
    let view = identity_view(
        partners,
        Some("198.18.200.200".parse().expect("ip")),
        &names,
        &compiled,
    );
    assert_eq!(view.prefix.as_deref(), Some("198.18.200.128/25"));
    assert_eq!(view.kind.as_deref(), Some("network"));
    let frontend = identity(&names, "frontend");
    let view = identity_view(
        frontend,
        Some("198.18.1.10".parse().expect("ip")),
        &names,
        &compiled,
    );
    assert_eq!(
        (view.org.as_deref(), view.space.as_deref()),
        (Some("bank"), Some("prod"))
    );
    let world = identity_view(
        reserved::WORLD,
        Some("203.0.113.1".parse().expect("ip")),
        &names,
        &compiled,
    );
    assert_eq!((world.name.as_deref(), world.prefix), (Some("world"), None));
}

#[test]
fn each_reason_gives_its_conntrack_step_and_verdict() {
    let (names, compiled) = setup();
    let cases = [
        (Reason::Policy, "new", "forwarded"),
        (Reason::Established, "established", "forwarded"),
        (Reason::Reply, "reply", "forwarded"),
        (Reason::Revoked, "revoked", "dropped"),
        (Reason::Malformed, "not-looked-up", "dropped"),
    ];
    for (reason, state, verdict) in cases {
        let observed = observations(
            &event(reason, 256, 257, 3),
            Hook::TcIngress,
            &names,
            &compiled,
        );
        assert!(
            matches!(&observed[3], Observation::Conntrack { state: s, .. } if s == state),
            "{reason:?}: {observed:?}"
        );
        assert!(
            matches!(&observed[5], Observation::Verdict { verdict: v, .. } if v == verdict),
            "{reason:?}: {observed:?}"
        );
    }
    let mut rst = event(Reason::Policy, 256, 257, 3);
    rst.tcp_flags = 0x04;
    assert_eq!(conntrack_state(Some(Reason::Policy), &rst).0, "untracked");
    assert_eq!(tcp_flags(0x12), "SA");
    assert_eq!(tcp_flags(0), "-");
}
