//! Identities and rule ids stay put across changes; [`Model::to_policy`] output.

use super::*;
use crate::policy::{App, IcmpMatch, Network, Policy, PortRange, Protocol, Rule};

/// An egress rule from its CF JSON.
fn rule(json: &str) -> EgressRule {
    serde_json::from_str(json).unwrap_or_else(|error| panic!("{json}: {error}"))
}

fn set_egress(app: &str, rules: &[&str]) -> Change {
    Change::SetEgress {
        app: app.into(),
        rules: rules.iter().map(|json| rule(json)).collect(),
    }
}

/// The ids of the rules of `model` from `app` to the `cidr:` network of `cidr`.
fn egress_ids(model: &Model, app: &str, cidr: &str) -> Vec<u32> {
    let source = model.identity(app);
    let destination = model.identity(&format!("cidr:{cidr}"));
    let policy = model.to_policy();
    let rules = policy.rules.iter();
    rules
        .filter(|rule| Some(rule.source) == source && Some(rule.destination) == destination)
        .map(|rule| rule.id)
        .collect()
}

#[test]
fn identities_are_stable_across_unrelated_changes_and_re_registration() {
    let model = build(
        &Model::new(),
        &[
            Change::RegisterApp(app("web", &["10.0.0.1"])),
            Change::PutNetwork(network("lan", &["192.168.0.0/16"])),
            Change::AddPolicies(vec![policy("web", "api", 80, 80)]),
        ],
    );
    let web = model.identity("web").unwrap();
    let lan = model.identity("lan").unwrap();
    let api = model.identity("api").unwrap();
    assert_eq!([web, lan, api], [256, 257, 258]);

    let later = build(
        &model,
        &[
            Change::RegisterApp(app("db", &["10.0.0.3"])),
            Change::UnregisterApp("web".into()),
            Change::DeleteNetwork("lan".into()),
            Change::RegisterApp(app("web", &["10.0.0.7"])),
            Change::PutNetwork(network("lan", &["172.16.0.0/12"])),
            Change::RegisterApp(app("api", &["10.0.0.2"])),
        ],
    );
    assert_eq!(later.identity("web"), Some(web));
    assert_eq!(later.identity("lan"), Some(lan));
    assert_eq!(later.identity("api"), Some(api));
    assert_eq!(later.identity("db"), Some(259));
}

#[test]
fn unregistering_keeps_policies_egress_and_identity() {
    let model = build(
        &Model::new(),
        &[
            Change::RegisterApp(app("web", &["10.0.0.1"])),
            Change::AddPolicies(vec![policy("web", "api", 80, 80)]),
            set_egress(
                "web",
                &[r#"{"protocol":"all","destination":"198.19.0.0/16"}"#],
            ),
            Change::UnregisterApp("web".into()),
        ],
    );
    assert_eq!(model.apps().count(), 0);
    assert_eq!(model.policies().count(), 1);
    assert_eq!(model.egress("web").len(), 1);
    let policy = model.to_policy();
    let web = policy.apps.iter().find(|app| app.name == "web").unwrap();
    assert_eq!((web.identity, web.ips.len()), (256, 0));
    // The address is free for another app.
    build(&model, &[Change::RegisterApp(app("db", &["10.0.0.1"]))]);
}

#[test]
fn policy_rule_ids_stay_while_the_policy_exists_and_freed_ids_are_reused() {
    let p = |port| policy("web", "api", port, port);
    let model = build(
        &Model::new(),
        &[Change::AddPolicies(vec![p(1), p(2), p(3)])],
    );
    let ids: Vec<_> = [1, 2, 3]
        .map(|port| model.policy_rule_id(&p(port)))
        .to_vec();
    assert_eq!(ids, [Some(1), Some(2), Some(3)]);
    let model = build(
        &model,
        &[
            Change::DeletePolicies(vec![p(2)]),
            Change::RegisterApp(app("web", &["10.0.0.1"])),
            set_egress(
                "web",
                &[r#"{"protocol":"all","destination":"10.1.0.0/16"}"#],
            ),
        ],
    );
    // The egress grant took the freed id 2; the other policies kept theirs.
    assert_eq!(model.policy_rule_id(&p(1)), Some(1));
    assert_eq!(model.policy_rule_id(&p(3)), Some(3));
    assert_eq!(egress_ids(&model, "web", "10.1.0.0/16"), [2]);
    let model = build(&model, &[Change::AddPolicies(vec![p(4)])]);
    assert_eq!(model.policy_rule_id(&p(4)), Some(4));
}

#[test]
fn egress_grants_that_stay_keep_their_rule_ids() {
    let a = r#"{"protocol":"tcp","destination":"198.19.1.0/24","ports":"443"}"#;
    let b = r#"{"protocol":"udp","destination":"198.19.2.0/24","ports":"53"}"#;
    let c = r#"{"protocol":"all","destination":"198.19.3.0/24"}"#;
    let model = build(&Model::new(), &[set_egress("web", &[a, b])]);
    assert_eq!(egress_ids(&model, "web", "198.19.1.0/24"), [1]);
    assert_eq!(egress_ids(&model, "web", "198.19.2.0/24"), [2]);
    let model = build(&model, &[set_egress("web", &[b, c])]);
    assert_eq!(
        egress_ids(&model, "web", "198.19.1.0/24"),
        Vec::<u32>::new()
    );
    assert_eq!(egress_ids(&model, "web", "198.19.2.0/24"), [2]);
    // The new grant does not take id 1, freed by the same change.
    assert_eq!(egress_ids(&model, "web", "198.19.3.0/24"), [3]);
    let cleared = build(&model, &[set_egress("web", &[])]);
    assert_eq!(cleared.egress("web"), &[] as &[EgressRule]);
    assert!(cleared.to_policy().rules.is_empty());
    // Setting the same rules again changes nothing.
    assert_eq!(build(&model, &[set_egress("web", &[b, c])]), model);
}

#[test]
fn revision_counts_effective_changes_only() {
    let model = build(
        &Model::new(),
        &[Change::RegisterApp(app("web", &["10.0.0.1"]))],
    );
    assert_eq!(model.revision(), 1);
    let same = build(&model, &[Change::RegisterApp(app("web", &["10.0.0.1"]))]);
    assert_eq!(same.revision(), 1);
    let moved = build(&model, &[Change::RegisterApp(app("web", &["10.0.0.9"]))]);
    assert_eq!(moved.revision(), 2);
}

#[test]
fn to_policy_of_a_small_model() {
    let mut web = app("web", &["10.0.0.1", "2001:db8::1"]);
    web.org = Some("acme".into());
    web.space = Some("prod".into());
    let model = build(
        &Model::new(),
        &[
            Change::RegisterApp(web),
            Change::RegisterApp(app("api", &["10.0.0.2"])),
            Change::PutNetwork(network("lan", &["192.168.0.0/16"])),
            Change::AddPolicies(vec![NetworkPolicy {
                protocol: CfProtocol::Udp,
                ..policy("web", "api", 53, 54)
            }]),
            Change::AddPolicies(vec![policy("web", "ghost", 8080, 8080)]),
            set_egress(
                "web",
                &[
                    r#"{"protocol":"tcp","destination":"198.19.10.0/24","ports":"1521,1522"}"#,
                    r#"{"protocol":"icmp","destination":"198.19.0.1","type":0,"code":-1}"#,
                    r#"{"protocol":"all","destination":"10.0.0.2"}"#,
                ],
            ),
            set_egress(
                "api",
                &[r#"{"protocol":"udp","destination":"198.19.10.0/24"}"#],
            ),
        ],
    );
    let ports = |start, end| Some(PortRange { start, end });
    let rule = |id, source, destination, protocol| Rule {
        id,
        source,
        destination,
        protocol,
        line: 0,
    };
    let icmp_0 = IcmpMatch {
        icmp_type: Some(0),
        code: None,
    };
    // Identities in order of first use: web, api, lan, ghost, then the egress networks
    // of web (198.19.10.0/24, 198.19.0.1/32, 10.0.0.2/32).
    let expected = Policy {
        apps: vec![
            App {
                name: "api".into(),
                org: None,
                space: None,
                identity: 257,
                ips: vec!["10.0.0.2".parse().unwrap()],
            },
            App {
                name: "ghost".into(),
                org: None,
                space: None,
                identity: 259,
                ips: vec![],
            },
            App {
                name: "web".into(),
                org: Some("acme".into()),
                space: Some("prod".into()),
                identity: 256,
                ips: vec!["10.0.0.1".parse().unwrap(), "2001:db8::1".parse().unwrap()],
            },
        ],
        networks: vec![
            Network {
                name: "lan".into(),
                identity: 258,
                cidrs: vec!["192.168.0.0/16".parse().unwrap()],
            },
            // 10.0.0.2 is app api's address: api keeps it in the ipcache.
            Network {
                name: "cidr:10.0.0.2/32".into(),
                identity: 262,
                cidrs: vec![],
            },
            Network {
                name: "cidr:198.19.0.1/32".into(),
                identity: 261,
                cidrs: vec!["198.19.0.1/32".parse().unwrap()],
            },
            Network {
                name: "cidr:198.19.10.0/24".into(),
                identity: 260,
                cidrs: vec!["198.19.10.0/24".parse().unwrap()],
            },
        ],
        rules: vec![
            rule(1, 256, 257, Protocol::Udp(ports(53, 54))),
            rule(2, 256, 259, Protocol::Tcp(ports(8080, 8080))),
            rule(3, 256, 260, Protocol::Tcp(ports(1521, 1521))),
            rule(4, 256, 260, Protocol::Tcp(ports(1522, 1522))),
            rule(5, 256, 261, Protocol::Icmp(icmp_0)),
            rule(6, 256, 262, Protocol::All),
            rule(7, 257, 260, Protocol::Udp(None)),
        ],
    };
    let policy = model.to_policy();
    assert_eq!(policy, expected);
    // It compiles, and the shared destination is one ipcache entry.
    let compiled = policy.compile();
    let shared = "198.19.10.0/24".parse().unwrap();
    let entries = compiled
        .ipcache_v4
        .iter()
        .filter(|(prefix, _)| *prefix == shared);
    assert_eq!(entries.count(), 1);
}
