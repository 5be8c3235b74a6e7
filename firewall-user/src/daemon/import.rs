//! `firewall daemon --policy FILE`: a native policy file imported into the store at start,
//! as one change.

use std::path::Path;

use anyhow::Context as _;

use super::controller::{Applied, Controller};
use crate::{
    model::{AppRecord, CfProtocol, Change, NetworkPolicy, NetworkRecord},
    policy::{self, Policy, PortRange, Protocol},
};

/// Reads, validates and applies a policy file: its apps and networks are registered (an app
/// or network already in the store is replaced), its rules added (rules already there are
/// kept).
///
/// # Errors
/// The file's own errors (file, line, field), a rule the store cannot hold, or a refused
/// change; nothing is applied then.
pub fn import(controller: &mut Controller, path: &Path) -> anyhow::Result<Applied> {
    let policy = policy::load_file(path)?;
    let changes = changes(&policy).with_context(|| format!("importing {}", path.display()))?;
    Ok(controller.apply(Change::Batch(changes))?)
}

/// The changes that bring a policy file into the store.
fn changes(policy: &Policy) -> anyhow::Result<Vec<Change>> {
    let mut changes = Vec::new();
    for app in &policy.apps {
        changes.push(Change::RegisterApp(AppRecord {
            name: app.name.clone(),
            org: app.org.clone(),
            space: app.space.clone(),
            ips: app.ips.clone(),
        }));
    }
    for network in &policy.networks {
        changes.push(Change::PutNetwork(NetworkRecord {
            name: network.name.clone(),
            cidrs: network.cidrs.clone(),
        }));
    }
    let mut policies = Vec::new();
    let mut rules = Vec::new();
    for rule in &policy.rules {
        let name = |id| policy.identity_name(id).map(str::to_string);
        let (Some(source), Some(destination)) = (name(rule.source), name(rule.destination)) else {
            anyhow::bail!(
                "rule {} (line {}) names an unknown identity",
                rule.id,
                rule.line
            );
        };
        let is_app = |n: &str| policy.apps.iter().any(|a| a.name == n);
        let cf = match rule.protocol {
            Protocol::Tcp(ports) => Some((CfProtocol::Tcp, ports)),
            Protocol::Udp(ports) => Some((CfProtocol::Udp, ports)),
            _ => None,
        };
        match cf {
            Some((protocol, ports)) if is_app(&source) && is_app(&destination) => {
                let PortRange { start, end } = ports.unwrap_or(PortRange {
                    start: 1,
                    end: 65535,
                });
                policies.push(NetworkPolicy {
                    source,
                    destination,
                    protocol,
                    start_port: start,
                    end_port: end,
                });
            }
            _ => rules.push(crate::model::NativeRule {
                source,
                destination,
                protocol: rule.protocol,
            }),
        }
    }
    if !policies.is_empty() {
        changes.push(Change::AddPolicies(policies));
    }
    if !rules.is_empty() {
        changes.push(Change::AddRules(rules));
    }
    Ok(changes)
}
