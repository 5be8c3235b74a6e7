//! Native rules and batches of changes.

use super::*;
use crate::policy::{IcmpMatch, PortRange, Protocol};

fn native(source: &str, destination: &str, protocol: Protocol) -> NativeRule {
    NativeRule {
        source: source.into(),
        destination: destination.into(),
        protocol,
    }
}

fn sctp(start: u16, end: u16) -> Protocol {
    Protocol::Sctp(Some(PortRange { start, end }))
}

#[test]
fn native_rules_join_apps_networks_and_world_with_any_protocol() {
    let ping = Protocol::Icmp(IcmpMatch {
        icmp_type: Some(8),
        code: None,
    });
    let rules = vec![
        native("web", "world", Protocol::All),
        native("world", "web", sctp(9000, 9010)),
        native("web", "lan", ping),
        native("web", "unknown", Protocol::Icmpv6(IcmpMatch::default())),
    ];
    let model = build(
        &Model::new(),
        &[
            Change::RegisterApp(app("web", &["10.0.0.1"])),
            Change::PutNetwork(network("lan", &["192.168.0.0/16"])),
            Change::AddRules(rules.clone()),
        ],
    );
    let ids: Vec<_> = rules
        .iter()
        .map(|rule| model.native_rule_id(rule))
        .collect();
    assert_eq!(ids, [Some(1), Some(2), Some(3), Some(4)]);
    assert_eq!(model.identity("world"), Some(1));
    let policy = model.to_policy();
    let names: Vec<_> = policy.apps.iter().map(|app| app.name.as_str()).collect();
    assert_eq!(names, ["unknown", "web"]);
    let described: Vec<_> = policy
        .rules
        .iter()
        .map(|rule| policy.describe_rule(rule))
        .collect();
    let expected = [
        "web -> world all",
        "world -> web sctp 9000-9010",
        "web -> lan icmp type 8",
        "web -> unknown icmpv6",
    ];
    assert_eq!(described, expected);

    // Idempotent both ways; a deleted network can come back while a rule names it.
    assert_eq!(build(&model, &[Change::AddRules(rules.clone())]), model);
    let without = build(
        &model,
        &[
            Change::DeleteRules(vec![rules[0].clone(), native("a", "b", Protocol::All)]),
            Change::DeleteNetwork("lan".into()),
            Change::PutNetwork(network("lan", &["192.168.0.0/24"])),
        ],
    );
    assert_eq!(without.native_rules().count(), 3);
    assert_eq!(without.identity("lan"), model.identity("lan"));
}

#[test]
fn bad_native_rules_are_refused_with_their_index() {
    let cases = [
        (
            native("web", "", Protocol::All),
            "rule 1: destination is empty",
        ),
        (
            native("cidr:x", "web", Protocol::All),
            "rule 1: source `cidr:x` is reserved",
        ),
        (
            native("web", "api", sctp(0, 10)),
            "rule 1: invalid port range: 0-10",
        ),
        (
            native(
                "web",
                "api",
                Protocol::Tcp(Some(PortRange { start: 9, end: 8 })),
            ),
            "rule 1: invalid port range: 9-8",
        ),
        (
            native(
                "web",
                "api",
                Protocol::Icmp(IcmpMatch {
                    icmp_type: None,
                    code: Some(1),
                }),
            ),
            "rule 1: an ICMP code needs a type",
        ),
    ];
    for (bad, expected) in cases {
        let change = Change::AddRules(vec![native("web", "api", Protocol::All), bad]);
        match Model::new().apply(&change, &Limits::default()) {
            Err(ModelError::Invalid(message)) => assert!(message.contains(expected), "{message}"),
            other => panic!("expected Invalid({expected}), got {other:?}"),
        }
    }
}

#[test]
fn a_batch_applies_whole_or_not_at_all_and_counts_once() {
    let good = vec![
        Change::RegisterApp(app("web", &["10.0.0.1"])),
        Change::PutNetwork(network("lan", &["192.168.0.0/16"])),
        Change::AddRules(vec![native("web", "lan", Protocol::All)]),
        Change::AddPolicies(vec![policy("web", "api", 80, 80)]),
    ];
    let model = build(&Model::new(), &[Change::Batch(good.clone())]);
    assert_eq!(model.revision(), 1);
    assert_eq!(model, {
        let one_by_one = build(&Model::new(), &good);
        Model::from_parts(ModelParts {
            revision: 1,
            ..parts_of(&one_by_one)
        })
        .unwrap()
    });

    let mut bad = good.clone();
    bad.push(Change::DeleteNetwork("nowhere".into()));
    let refused = Model::new().apply(&Change::Batch(bad), &Limits::default());
    assert_eq!(
        refused,
        Err(ModelError::NotFound("no network is named `nowhere`".into()))
    );
    // Later changes of a batch see the earlier ones.
    let moved = Change::Batch(vec![
        Change::UnregisterApp("web".into()),
        Change::RegisterApp(app("db", &["10.0.0.1"])),
    ]);
    assert!(model.apply(&moved, &Limits::default()).is_ok());
}

/// The stored parts of `model`.
fn parts_of(model: &Model) -> ModelParts {
    let tables = model.tables();
    ModelParts {
        apps: (**tables.apps).clone(),
        networks: (**tables.networks).clone(),
        policies: (**tables.policies).clone(),
        native_rules: (**tables.native_rules).clone(),
        egress: (**tables.egress).clone(),
        identities: (**tables.identities).clone(),
        next_identity: tables.next_identity,
        next_rule_id: tables.next_rule_id,
        revision: tables.revision,
    }
}
