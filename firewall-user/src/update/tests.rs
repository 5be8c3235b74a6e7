use std::net::Ipv4Addr;

use super::*;
use crate::policy::{Policy, parse_str};

fn policy(rules: &str) -> Policy {
    let text = format!(
        "apps:\n  frontend: {{ips: [198.18.1.10, \"2001:db8:1::10\"]}}\n  backend: {{ips: [198.18.2.10]}}\npolicies:\n{rules}"
    );
    parse_str(&text, "test").expect("valid policy")
}

const TO_8081: &str = "  - {source: frontend, destination: backend, protocol: tcp, ports: 8081}\n";
const TO_8082: &str = "  - {source: frontend, destination: backend, protocol: tcp, ports: 8082}\n";
const UDP: &str = "  - {source: frontend, destination: backend, protocol: udp, ports: 53}\n";

fn ports(entries: &[PolicyEntry]) -> Vec<(u16, u32)> {
    entries
        .iter()
        .map(|e| (u16::from_be_bytes(e.key.port), e.value.rule_id))
        .collect()
}

#[test]
fn the_same_policy_changes_nothing() {
    let compiled = policy(TO_8081).compile();
    let diff = PolicyDiff::between(&compiled, &compiled);
    assert!(diff.is_empty(), "{diff:?}");
}

#[test]
fn a_moved_port_adds_the_new_entry_and_drops_the_old_one() {
    let from = policy(TO_8081).compile();
    let to = policy(TO_8082).compile();
    let diff = PolicyDiff::between(&from, &to);
    assert_eq!(ports(&diff.added.policy), [(8082, 1)]);
    assert_eq!(ports(&diff.stale.policy), [(8081, 1)]);
    assert!(diff.added.ipcache_v4.is_empty() && diff.added.ipcache_v6.is_empty());
    assert!(diff.stale.ipcache_v4.is_empty() && diff.stale.ipcache_v6.is_empty());
    assert_eq!(diff.added.max_rule_id, to.max_rule_id);
}

#[test]
fn an_entry_passing_to_another_rule_is_overwritten_not_removed() {
    // Rule 1 becomes rule 2: same key, new value.
    let from = policy(TO_8081).compile();
    let to = policy(&format!("{UDP}{TO_8081}")).compile();
    let diff = PolicyDiff::between(&from, &to);
    assert_eq!(ports(&diff.added.policy), [(53, 1), (8081, 2)]);
    assert!(diff.stale.policy.is_empty(), "{:?}", diff.stale);
}

#[test]
fn an_address_moving_to_another_app_is_overwritten_not_removed() {
    let from = policy(TO_8081).compile();
    let mut to = from.clone();
    let frontend = Ipv4Net::from(Ipv4Addr::new(198, 18, 1, 10));
    let moved = to
        .ipcache_v4
        .iter_mut()
        .find(|(net, _)| *net == frontend)
        .expect("frontend address");
    moved.1 += 100;
    let diff = PolicyDiff::between(&from, &to);
    assert_eq!(
        diff.added.ipcache_v4,
        [(frontend, from.ipcache_v4[0].1 + 100)]
    );
    assert!(diff.stale.ipcache_v4.is_empty());
    assert!(diff.added.policy.is_empty() && diff.stale.policy.is_empty());
}

#[test]
fn a_removed_app_leaves_its_addresses_and_rules_stale() {
    let from = policy(TO_8081).compile();
    let text = "apps:\n  frontend: {ips: [198.18.1.10, \"2001:db8:1::10\"]}\npolicies: []\n";
    let to = parse_str(text, "test").expect("valid policy").compile();
    let diff = PolicyDiff::between(&from, &to);
    assert!(diff.added.ipcache_v4.is_empty() && diff.added.policy.is_empty());
    let backend = Ipv4Net::from(Ipv4Addr::new(198, 18, 2, 10));
    assert_eq!(
        diff.stale
            .ipcache_v4
            .iter()
            .map(|(n, _)| *n)
            .collect::<Vec<_>>(),
        [backend]
    );
    assert_eq!(ports(&diff.stale.policy), [(8081, 1)]);
    assert_eq!(diff.stale.max_rule_id, 0);
}

#[test]
fn applying_the_diff_to_the_old_entries_gives_the_new_ones() {
    let from = policy(&format!("{TO_8081}{UDP}")).compile();
    let to = policy(&format!("{UDP}{TO_8082}")).compile();
    let diff = PolicyDiff::between(&from, &to);
    // Model the maps: insert (upsert) the additions, then remove the stale keys.
    let mut maps = by_key(&from);
    for entry in entries_of(&diff.added) {
        maps.insert(entry.key(), entry);
    }
    for entry in entries_of(&diff.stale) {
        maps.remove(&entry.key());
    }
    assert_eq!(maps, by_key(&to));
}

#[test]
fn a_key_listed_twice_counts_with_its_last_value() {
    let from = policy(TO_8081).compile();
    let mut to = from.clone();
    let (net, identity) = to.ipcache_v4[0];
    to.ipcache_v4.insert(0, (net, identity + 100));
    // `to` lists the key first with a new identity, then with the old one, which wins.
    let diff = PolicyDiff::between(&from, &to);
    assert!(diff.is_empty(), "{diff:?}");
    let mut from_twice = from.clone();
    from_twice.ipcache_v4.push((net, identity));
    let stale = PolicyDiff::between(&from_twice, &CompiledPolicy::default()).stale;
    let removed: Vec<_> = stale.ipcache_v4.iter().filter(|(n, _)| *n == net).collect();
    assert_eq!(removed.len(), 1, "{stale:?}");
}
