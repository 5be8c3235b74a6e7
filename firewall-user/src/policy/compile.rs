//! From a [`Policy`] to the entries of the datapath's maps.

use std::collections::HashSet;

use firewall_common::{Identity, PolicyKey, PolicyValue};
use ipnet::{IpNet, Ipv4Net, Ipv6Net};

use super::{IcmpMatch, Policy, Protocol, Rule, port_range_prefixes};

/// A policy as map entries, ready to load.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct CompiledPolicy {
    /// IPv4 ipcache entries: app addresses as /32, network prefixes as written.
    pub ipcache_v4: Vec<(Ipv4Net, Identity)>,
    /// IPv6 ipcache entries: app addresses as /128, network prefixes as written.
    pub ipcache_v6: Vec<(Ipv6Net, Identity)>,
    /// Policy trie entries, no two with the same prefix length and key.
    pub policy: Vec<PolicyEntry>,
    /// Highest rule id, 0 without rules: the rule counters need this many slots plus one.
    pub max_rule_id: u32,
}

/// One entry of the policy trie.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PolicyEntry {
    /// How many leading bits of `key` the entry fixes (64 to 88, see [`PolicyKey`]).
    pub prefix_len: u32,
    /// The key; every bit past `prefix_len` is zero.
    pub key: PolicyKey,
    /// The rule the entry belongs to.
    pub value: PolicyValue,
}

impl Policy {
    /// The ipcache and policy map entries of this policy.
    ///
    /// When two rules produce the same entry (same identities, protocol and port prefix),
    /// the entry is kept once, for the lower rule id. Where entries of different rules
    /// overlap without being equal, the trie's longest match credits a packet to the most
    /// specific rule. A rule all of whose entries were taken this way never counts a packet;
    /// that is logged as a warning.
    pub fn compile(&self) -> CompiledPolicy {
        let mut compiled = CompiledPolicy::default();
        let app_prefixes = self.apps.iter().flat_map(|app| {
            let identity = app.identity;
            app.ips.iter().map(move |ip| (IpNet::from(*ip), identity))
        });
        let network_prefixes = self.networks.iter().flat_map(|network| {
            let identity = network.identity;
            network.cidrs.iter().map(move |cidr| (*cidr, identity))
        });
        for (prefix, identity) in app_prefixes.chain(network_prefixes) {
            match prefix {
                IpNet::V4(prefix) => compiled.ipcache_v4.push((prefix, identity)),
                IpNet::V6(prefix) => compiled.ipcache_v6.push((prefix, identity)),
            }
        }

        let mut rules: Vec<&Rule> = self.rules.iter().collect();
        rules.sort_by_key(|rule| rule.id);
        let mut seen = HashSet::new();
        for rule in rules {
            let before = compiled.policy.len();
            for (prefix_len, key) in rule_keys(rule) {
                if seen.insert((prefix_len, key)) {
                    let value = PolicyValue { rule_id: rule.id };
                    compiled.policy.push(PolicyEntry {
                        prefix_len,
                        key,
                        value,
                    });
                }
            }
            if compiled.policy.len() == before {
                log::warn!(
                    "rule {} ({}) repeats earlier rules and will count no packets",
                    rule.id,
                    self.describe_rule(rule)
                );
            }
            compiled.max_rule_id = compiled.max_rule_id.max(rule.id);
        }
        compiled
    }
}

/// The trie entries, as prefix lengths and keys, that together match what `rule` allows.
fn rule_keys(rule: &Rule) -> Vec<(u32, PolicyKey)> {
    let number = rule.protocol.number().unwrap_or(0);
    let key = |port: u16| PolicyKey::new(rule.source, rule.destination, number, port);
    match rule.protocol {
        Protocol::All => vec![(PolicyKey::PREFIX_ANY_PROTOCOL, key(0))],
        Protocol::Tcp(None) | Protocol::Udp(None) | Protocol::Sctp(None) => {
            vec![(PolicyKey::PREFIX_ANY_PORT, key(0))]
        }
        Protocol::Tcp(Some(ports)) | Protocol::Udp(Some(ports)) | Protocol::Sctp(Some(ports)) => {
            port_range_prefixes(ports.start, ports.end)
                .into_iter()
                .map(|(port, bits)| (PolicyKey::PREFIX_ANY_PORT + bits, key(port)))
                .collect()
        }
        Protocol::Icmp(icmp) | Protocol::Icmpv6(icmp) => vec![icmp_key(icmp, key)],
    }
}

/// The one entry of an ICMP match; the port field holds `type << 8 | code`. A code without
/// a type, which loading refuses, matches every message.
fn icmp_key(icmp: IcmpMatch, key: impl Fn(u16) -> PolicyKey) -> (u32, PolicyKey) {
    match (icmp.icmp_type, icmp.code) {
        (None, _) => (PolicyKey::PREFIX_ANY_PORT, key(0)),
        (Some(icmp_type), None) => (
            PolicyKey::PREFIX_ANY_PORT + 8,
            key(u16::from(icmp_type) << 8),
        ),
        (Some(icmp_type), Some(code)) => (
            PolicyKey::PREFIX_FULL,
            key(u16::from(icmp_type) << 8 | u16::from(code)),
        ),
    }
}

#[cfg(test)]
mod tests {
    use firewall_common::identity::reserved;

    use super::*;
    use crate::policy::PortRange;

    fn rule(id: u32, protocol: Protocol) -> Rule {
        Rule {
            id,
            source: 256,
            destination: reserved::WORLD,
            protocol,
            line: 1,
        }
    }

    fn compile_rules(rules: Vec<Rule>) -> Vec<(u32, PolicyKey, u32)> {
        let policy = Policy {
            rules,
            ..Policy::default()
        };
        let entries = policy.compile().policy;
        entries
            .iter()
            .map(|entry| (entry.prefix_len, entry.key, entry.value.rule_id))
            .collect()
    }

    #[test]
    fn each_protocol_gets_its_prefix_length() {
        let icmp = |icmp_type, code| IcmpMatch { icmp_type, code };
        let cases = [
            (Protocol::All, PolicyKey::PREFIX_ANY_PROTOCOL, 0, 0),
            (Protocol::Tcp(None), PolicyKey::PREFIX_ANY_PORT, 6, 0),
            (Protocol::Udp(None), PolicyKey::PREFIX_ANY_PORT, 17, 0),
            (Protocol::Sctp(None), PolicyKey::PREFIX_ANY_PORT, 132, 0),
            (
                Protocol::Icmp(icmp(None, None)),
                PolicyKey::PREFIX_ANY_PORT,
                1,
                0,
            ),
            (
                Protocol::Icmp(icmp(Some(8), None)),
                PolicyKey::PREFIX_ANY_PORT + 8,
                1,
                0x0800,
            ),
            (
                Protocol::Icmpv6(icmp(Some(1), Some(4))),
                PolicyKey::PREFIX_FULL,
                58,
                0x0104,
            ),
            (
                Protocol::Icmpv6(icmp(None, Some(4))),
                PolicyKey::PREFIX_ANY_PORT,
                58,
                0,
            ),
        ];
        for (protocol, prefix_len, number, port) in cases {
            let key = PolicyKey::new(256, reserved::WORLD, number, port);
            assert_eq!(
                compile_rules(vec![rule(1, protocol)]),
                vec![(prefix_len, key, 1)],
                "{protocol}"
            );
        }
    }

    #[test]
    fn port_range_becomes_one_entry_per_block() {
        let ports = PortRange {
            start: 1023,
            end: 1025,
        };
        let entries = compile_rules(vec![rule(3, Protocol::Udp(Some(ports)))]);
        let expected = vec![
            (
                PolicyKey::PREFIX_FULL,
                PolicyKey::new(256, reserved::WORLD, 17, 1023),
                3,
            ),
            (
                PolicyKey::PREFIX_FULL - 1,
                PolicyKey::new(256, reserved::WORLD, 17, 1024),
                3,
            ),
        ];
        assert_eq!(entries, expected);
    }

    #[test]
    fn a_repeated_entry_keeps_the_lower_rule_id() {
        let web = Some(PortRange { start: 80, end: 80 });
        let web_and_next = Some(PortRange { start: 80, end: 81 });
        let rules = vec![
            rule(2, Protocol::Tcp(web)),
            rule(1, Protocol::Tcp(web)),
            rule(3, Protocol::Tcp(web_and_next)),
        ];
        let key = PolicyKey::new(256, reserved::WORLD, 6, 80);
        // Rule 3's block 80-81 is a different entry from port 80 alone, so it stays.
        assert_eq!(
            compile_rules(rules),
            vec![
                (PolicyKey::PREFIX_FULL, key, 1),
                (PolicyKey::PREFIX_FULL - 1, key, 3)
            ]
        );
    }

    #[test]
    fn addresses_go_to_the_ipcache_of_their_family() {
        let policy = Policy {
            apps: vec![crate::policy::App {
                name: "web".into(),
                org: None,
                space: None,
                identity: 256,
                ips: vec!["10.0.0.1".parse().unwrap(), "2001:db8::1".parse().unwrap()],
            }],
            networks: vec![crate::policy::Network {
                name: "lan".into(),
                identity: 257,
                cidrs: vec!["10.0.0.0/8".parse().unwrap()],
            }],
            rules: vec![rule(7, Protocol::All)],
        };
        let compiled = policy.compile();
        let v4 = vec![
            ("10.0.0.1/32".parse().unwrap(), 256),
            ("10.0.0.0/8".parse().unwrap(), 257),
        ];
        assert_eq!(compiled.ipcache_v4, v4);
        assert_eq!(
            compiled.ipcache_v6,
            vec![("2001:db8::1/128".parse().unwrap(), 256)]
        );
        assert_eq!(compiled.max_rule_id, 7);
    }
}
