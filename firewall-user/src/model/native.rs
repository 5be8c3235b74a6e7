//! Native rules: allow rules as a policy file writes them, between any apps, networks and
//! `world`, for any protocol. Importing a policy file turns the rules that are not
//! cf-networking policies (app to app, tcp or udp) into these.

use std::cmp::Ordering;
use std::sync::Arc;

use crate::policy::{IcmpMatch, PortRange, Protocol, WORLD};

use super::check::{self, invalid};
use super::{Limits, Model, ModelError};

/// An allow rule from `source` to `destination`: each an app, a named network or `world`.
///
/// A name that is neither a registered app nor a network gets an identity and no addresses,
/// as names in policies do. Ordered by source, destination, then protocol.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct NativeRule {
    /// Who may send.
    pub source: String,
    /// Who may receive.
    pub destination: String,
    /// What traffic.
    pub protocol: Protocol,
}

impl Ord for NativeRule {
    fn cmp(&self, other: &Self) -> Ordering {
        sort_key(self).cmp(&sort_key(other))
    }
}

impl PartialOrd for NativeRule {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

/// What rules are ordered by.
fn sort_key(rule: &NativeRule) -> (&str, &str, [u32; 4]) {
    let protocol = protocol_key(&rule.protocol);
    (&rule.source, &rule.destination, protocol)
}

/// A key that orders protocols and tells every two different ones apart.
fn protocol_key(protocol: &Protocol) -> [u32; 4] {
    let ports = |kind: u32, ports: &Option<PortRange>| match ports {
        None => [kind, 0, 0, 0],
        Some(range) => [kind, 1, u32::from(range.start), u32::from(range.end)],
    };
    let icmp = |kind: u32, icmp: &IcmpMatch| {
        let flags = u32::from(icmp.icmp_type.is_some()) | u32::from(icmp.code.is_some()) << 1;
        let icmp_type = icmp.icmp_type.map_or(0, u32::from);
        [kind, flags, icmp_type, icmp.code.map_or(0, u32::from)]
    };
    match protocol {
        Protocol::Tcp(range) => ports(0, range),
        Protocol::Udp(range) => ports(1, range),
        Protocol::Sctp(range) => ports(2, range),
        Protocol::Icmp(matched) => icmp(3, matched),
        Protocol::Icmpv6(matched) => icmp(4, matched),
        Protocol::All => [5, 0, 0, 0],
    }
}

/// Checks the rule at `index` of a request.
///
/// # Errors
///
/// [`ModelError::Invalid`], prefixed with `rule INDEX: `, for a bad name, a port 0, a
/// reversed port range, or an ICMP code without a type.
fn check(index: usize, rule: &NativeRule) -> Result<(), ModelError> {
    for (role, name) in [("source", &rule.source), ("destination", &rule.destination)] {
        if name != WORLD {
            check::name(&format!("rule {index}: {role}"), name)?;
        }
    }
    match rule.protocol {
        Protocol::Tcp(Some(ports)) | Protocol::Udp(Some(ports)) | Protocol::Sctp(Some(ports))
            if ports.start == 0 || ports.start > ports.end =>
        {
            Err(invalid(format!(
                "rule {index}: invalid port range: {}-{} (ports run 1-65535, start first)",
                ports.start, ports.end
            )))
        }
        Protocol::Icmp(icmp) | Protocol::Icmpv6(icmp)
            if icmp.icmp_type.is_none() && icmp.code.is_some() =>
        {
            Err(invalid(format!(
                "rule {index}: an ICMP code needs a type beside it"
            )))
        }
        _ => Ok(()),
    }
}

impl Model {
    /// Adds native rules; ones that exist are kept as they are. All or none.
    pub(super) fn add_native_rules(
        &mut self,
        rules: &[NativeRule],
        limits: &Limits,
    ) -> Result<(), ModelError> {
        for (index, rule) in rules.iter().enumerate() {
            check(index, rule)?;
        }
        for rule in rules {
            if self.native_rules.contains_key(rule) {
                continue;
            }
            let rule_id = self.rule_ids.allocate(limits.max_rule_id)?;
            for name in [&rule.source, &rule.destination] {
                if name != WORLD {
                    self.identify(name)?;
                }
            }
            Arc::make_mut(&mut self.native_rules).insert(rule.clone(), rule_id);
        }
        Ok(())
    }

    /// Deletes native rules; ones that do not exist are skipped.
    pub(super) fn delete_native_rules(&mut self, rules: &[NativeRule]) -> Result<(), ModelError> {
        for (index, rule) in rules.iter().enumerate() {
            check(index, rule)?;
        }
        for rule in rules {
            if self.native_rules.contains_key(rule)
                && let Some(rule_id) = Arc::make_mut(&mut self.native_rules).remove(rule)
            {
                self.rule_ids.release(rule_id);
            }
        }
        Ok(())
    }
}
