//! Tests of [`Model::apply`]: validation, idempotency, all-or-nothing batches and quotas.
//! Identity and rule id stability and [`Model::to_policy`] are in `tests/stability.rs`.

use super::*;

mod native;
mod stability;

/// A policy from `source` to `destination` on ports `start`-`end`.
pub(super) fn policy(source: &str, destination: &str, start: u16, end: u16) -> NetworkPolicy {
    NetworkPolicy {
        source: source.into(),
        destination: destination.into(),
        protocol: CfProtocol::Tcp,
        start_port: start,
        end_port: end,
    }
}

/// An app with no metadata.
pub(super) fn app(name: &str, ips: &[&str]) -> AppRecord {
    AppRecord {
        name: name.into(),
        org: None,
        space: None,
        ips: ips.iter().map(|ip| ip.parse().unwrap()).collect(),
    }
}

/// A named network.
pub(super) fn network(name: &str, cidrs: &[&str]) -> NetworkRecord {
    NetworkRecord {
        name: name.into(),
        cidrs: cidrs.iter().map(|cidr| cidr.parse().unwrap()).collect(),
    }
}

/// Applies `changes` in order with default limits, panicking on a refusal.
pub(super) fn build(model: &Model, changes: &[Change]) -> Model {
    changes.iter().fold(model.clone(), |model, change| {
        model
            .apply(change, &Limits::default())
            .unwrap_or_else(|error| panic!("{change:?}: {error}"))
    })
}

/// A model with app `web` at 10.0.0.1, app `api` at 10.0.0.2, network `lan` and network
/// `gw` (a single host), and a policy web -> api.
fn base() -> Model {
    build(
        &Model::new(),
        &[
            Change::RegisterApp(app("web", &["10.0.0.1"])),
            Change::RegisterApp(app("api", &["10.0.0.2"])),
            Change::PutNetwork(network("lan", &["192.168.0.0/16"])),
            Change::PutNetwork(network("gw", &["192.0.2.1/32"])),
            Change::AddPolicies(vec![policy("web", "api", 8080, 8090)]),
        ],
    )
}

#[test]
fn every_invalid_change_is_refused_with_what_and_where() {
    let long = "x".repeat(129);
    let mut web_with_org = app("web", &["10.0.0.1"]);
    web_with_org.org = Some(String::new());
    let mut web_with_space = app("web", &["10.0.0.1"]);
    web_with_space.space = Some("a\tb".into());
    let add = |p: NetworkPolicy| Change::AddPolicies(vec![p]);
    let cases: Vec<(Change, &str)> = vec![
        (
            add(policy("", "api", 80, 80)),
            "policy 0: source id is empty",
        ),
        (
            add(policy("web", "", 80, 80)),
            "policy 0: destination id is empty",
        ),
        (add(policy("world", "api", 80, 80)), "`world` is reserved"),
        (
            add(policy("web", "cidr:10.0.0.0/8", 80, 80)),
            "`cidr:10.0.0.0/8` is reserved",
        ),
        (
            add(policy(&long, "api", 80, 80)),
            "is 129 characters long; at most 128",
        ),
        (
            add(policy("we\nb", "api", 80, 80)),
            "\"we\\nb\" contains a control character",
        ),
        (
            add(policy("web", "api", 0, 80)),
            "policy 0: invalid port: 0 (start_port",
        ),
        (
            add(policy("web", "api", 80, 0)),
            "policy 0: invalid port: 0 (end_port",
        ),
        (
            add(policy("web", "api", 90, 80)),
            "policy 0: invalid port range: 90-80",
        ),
        (
            add(policy("web", "lan", 80, 80)),
            "policy 0: destination id `lan` names a network",
        ),
        (
            Change::AddPolicies(vec![policy("web", "api", 1, 2), policy("web", "api", 3, 0)]),
            "policy 1: invalid port: 0",
        ),
        (
            Change::DeletePolicies(vec![policy("web", "api", 0, 0)]),
            "policy 0: invalid port: 0",
        ),
        (
            Change::RegisterApp(app("db", &["10.0.0.1"])),
            "app `db`: ips[0]: 10.0.0.1 already belongs to app `web`",
        ),
        (
            Change::RegisterApp(app("db", &["10.0.0.9", "10.0.0.9"])),
            "app `db`: ips[1]: 10.0.0.9 is listed twice",
        ),
        (
            Change::RegisterApp(app("db", &["192.0.2.1"])),
            "192.0.2.1 already belongs to network `gw`",
        ),
        (
            Change::RegisterApp(app("lan", &[])),
            "app name `lan` already names a network",
        ),
        (
            Change::RegisterApp(app("world", &[])),
            "app name `world` is reserved",
        ),
        (Change::RegisterApp(web_with_org), "app `web`: org is empty"),
        (
            Change::RegisterApp(web_with_space),
            "app `web`: space \"a\\tb\" contains",
        ),
        (
            Change::PutNetwork(network("dc", &["10.1.2.3/8"])),
            "network `dc`: cidrs[0]: 10.1.2.3/8 has host bits set; did you mean 10.0.0.0/8?",
        ),
        (
            Change::PutNetwork(network("dc", &["10.0.0.0/8", "10.0.0.0/8"])),
            "cidrs[1]: 10.0.0.0/8 is listed twice",
        ),
        (
            Change::PutNetwork(network("dc", &["192.168.0.0/16"])),
            "192.168.0.0/16 already belongs to network `lan`",
        ),
        (
            Change::PutNetwork(network("dc", &["10.0.0.2/32"])),
            "10.0.0.2/32 already belongs to app `api`",
        ),
        (
            Change::PutNetwork(network("web", &[])),
            "network name `web` already names an app",
        ),
        (
            Change::PutNetwork(network("cidr:x", &[])),
            "network name `cidr:x` is reserved",
        ),
        (
            Change::SetEgress {
                app: "lan".into(),
                rules: Vec::new(),
            },
            "egress app `lan` names a network",
        ),
    ];
    let model = base();
    for (change, expected) in cases {
        match model.apply(&change, &Limits::default()) {
            Err(ModelError::Invalid(message)) => {
                assert!(message.contains(expected), "{change:?}: {message}");
            }
            other => panic!("{change:?}: expected Invalid({expected}), got {other:?}"),
        }
    }
}

#[test]
fn a_name_only_a_policy_uses_is_an_app_and_cannot_become_a_network() {
    let model = build(
        &base(),
        &[Change::AddPolicies(vec![policy("web", "future", 80, 80)])],
    );
    let refused = model.apply(
        &Change::PutNetwork(network("future", &[])),
        &Limits::default(),
    );
    assert!(matches!(refused, Err(ModelError::Invalid(m)) if m.contains("already names an app")));
}

#[test]
fn removing_what_does_not_exist_is_not_found() {
    let model = base();
    let limits = Limits::default();
    let missing_app = model.apply(&Change::UnregisterApp("db".into()), &limits);
    assert_eq!(
        missing_app,
        Err(ModelError::NotFound("no app is registered as `db`".into()))
    );
    let missing_network = model.apply(&Change::DeleteNetwork("dc".into()), &limits);
    assert_eq!(
        missing_network,
        Err(ModelError::NotFound("no network is named `dc`".into()))
    );
}

#[test]
fn protocols_other_than_tcp_and_udp_are_refused_when_parsed() {
    assert_eq!(
        "icmp".parse::<CfProtocol>(),
        Err(ModelError::Invalid(
            "invalid protocol: icmp; specify either tcp or udp".into()
        ))
    );
    let json = r#"{"source":"a","destination":"b","protocol":"icmp","start_port":1,"end_port":1}"#;
    let error = serde_json::from_str::<NetworkPolicy>(json).unwrap_err();
    assert!(
        error.to_string().contains("invalid protocol: icmp"),
        "{error}"
    );
    let udp = r#"{"source":"a","destination":"b","protocol":"udp","start_port":1,"end_port":2}"#;
    let parsed: NetworkPolicy = serde_json::from_str(udp).unwrap();
    assert_eq!(parsed.protocol, CfProtocol::Udp);
    assert_eq!(serde_json::to_string(&parsed).unwrap(), udp);
}

#[test]
fn adding_an_existing_policy_changes_nothing() {
    let model = base();
    let again = build(
        &model,
        &[Change::AddPolicies(vec![
            policy("web", "api", 8080, 8090),
            policy("web", "api", 8080, 8090),
        ])],
    );
    assert_eq!(again, model);
    assert_eq!(again.revision(), model.revision());
    // A batch that repeats a policy adds it once.
    let twice = build(
        &model,
        &[Change::AddPolicies(vec![
            policy("api", "web", 1, 1),
            policy("api", "web", 1, 1),
        ])],
    );
    assert_eq!(twice.policies().count(), 2);
    assert_eq!(twice.revision(), model.revision() + 1);
}

#[test]
fn one_bad_policy_refuses_the_whole_batch() {
    let model = base();
    let batch = Change::AddPolicies(vec![
        policy("web", "new-1", 80, 80),
        policy("web", "new-2", 80, 80),
        policy("web", "new-3", 0, 80),
    ]);
    assert!(model.apply(&batch, &Limits::default()).is_err());
    assert_eq!(model, base());
    assert_eq!(model.identity("new-1"), None);
    // Nothing was taken by the refused batch: the next policy gets rule id 2.
    let next = build(
        &model,
        &[Change::AddPolicies(vec![policy("web", "new-1", 80, 80)])],
    );
    assert_eq!(
        next.policy_rule_id(&policy("web", "new-1", 80, 80)),
        Some(2)
    );
}

#[test]
fn the_quota_counts_each_source_over_the_resulting_set() {
    let many = |source: &str, count: u16| -> Vec<NetworkPolicy> {
        (1..=count)
            .map(|port| policy(source, "api", port, port))
            .collect()
    };
    let limits = Limits::default();
    let at_quota = Model::new()
        .apply(&Change::AddPolicies(many("web", 150)), &limits)
        .unwrap();
    assert_eq!(at_quota.policies().count(), 150);
    let over = at_quota.apply(
        &Change::AddPolicies(vec![policy("web", "api", 9999, 9999)]),
        &limits,
    );
    assert_eq!(over, Err(ModelError::QuotaExceeded));
    assert_eq!(over.unwrap_err().to_string(), "policy quota exceeded");
    let too_many = Model::new().apply(&Change::AddPolicies(many("web", 151)), &limits);
    assert_eq!(too_many, Err(ModelError::QuotaExceeded));
    // Re-adding existing policies at the quota is fine; other sources have their own.
    let again = at_quota.apply(&Change::AddPolicies(many("web", 150)), &limits);
    assert_eq!(again.as_ref(), Ok(&at_quota));
    let other = at_quota.apply(&Change::AddPolicies(many("api", 150)), &limits);
    assert!(other.is_ok());

    let small = Limits {
        policy_quota_per_source: 3,
        ..Limits::default()
    };
    let three = Model::new()
        .apply(&Change::AddPolicies(many("web", 3)), &small)
        .unwrap();
    let fourth = three.apply(&Change::AddPolicies(vec![policy("web", "x", 1, 1)]), &small);
    assert_eq!(fourth, Err(ModelError::QuotaExceeded));
    // Deleting makes room again.
    let two = build(&three, &[Change::DeletePolicies(many("web", 1))]);
    assert!(
        two.apply(&Change::AddPolicies(vec![policy("web", "x", 1, 1)]), &small)
            .is_ok()
    );
}

#[test]
fn deleting_is_idempotent() {
    let model = base();
    let absent = build(
        &model,
        &[Change::DeletePolicies(vec![policy("api", "web", 1, 1)])],
    );
    assert_eq!(absent, model);
    let gone = build(
        &model,
        &[Change::DeletePolicies(vec![policy(
            "web", "api", 8080, 8090,
        )])],
    );
    assert_eq!(gone.policies().count(), 0);
    assert_eq!(gone.revision(), model.revision() + 1);
    let again = build(
        &gone,
        &[Change::DeletePolicies(vec![policy(
            "web", "api", 8080, 8090,
        )])],
    );
    assert_eq!(again, gone);
}

#[test]
fn rule_ids_run_out_at_the_limit() {
    let limits = Limits {
        max_rule_id: 2,
        ..Limits::default()
    };
    let two = Change::AddPolicies(vec![policy("a", "b", 1, 1), policy("a", "b", 2, 2)]);
    let model = Model::new().apply(&two, &limits).unwrap();
    let third = model.apply(&Change::AddPolicies(vec![policy("a", "b", 3, 3)]), &limits);
    assert_eq!(
        third,
        Err(ModelError::Full(
            "no rule id left: all 2 rule ids are in use".into()
        ))
    );
    let egress = Change::SetEgress {
        app: "a".into(),
        rules: vec![
            serde_json::from_str(r#"{"protocol":"all","destination":"10.0.0.0/8"}"#).unwrap(),
        ],
    };
    assert!(matches!(
        model.apply(&egress, &limits),
        Err(ModelError::Full(_))
    ));
}
