//! Changing the policy of a running datapath in place: only the entries that differ are
//! written, and flows opened under the old policy are checked again.
//!
//! Maps are keyed by address prefix (ipcache) or by policy key, so an entry whose key stays
//! but whose value changes (an address moving to another app, a key passing to another rule)
//! is overwritten by the insert, never removed: removing it by key would delete the new value.

use std::collections::HashMap;

use firewall_common::{Identity, PolicyKey};
use ipnet::{Ipv4Net, Ipv6Net};

use crate::{
    datapath::{Datapath, DatapathError},
    policy::{CompiledPolicy, PolicyEntry},
};

/// What an [`update`] changed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct UpdateSummary {
    /// Entries written: new keys and keys whose value changed.
    pub added: usize,
    /// Keys removed.
    pub removed: usize,
    /// The policy revision now in force; flows opened under an older one are checked against
    /// the policy again on their next packet.
    pub revision: u32,
}

/// The change from one compiled policy to another.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct PolicyDiff {
    /// Entries of the new policy the maps do not hold yet, with their new values.
    pub added: CompiledPolicy,
    /// Entries of the old policy whose keys the new one does not have.
    pub stale: CompiledPolicy,
}

impl PolicyDiff {
    /// Compares two compiled policies. `added` gets `to`'s highest rule id, `stale` none.
    pub fn between(from: &CompiledPolicy, to: &CompiledPolicy) -> PolicyDiff {
        let old = by_key(from);
        let new = by_key(to);
        let added = entries_of(to)
            .into_iter()
            .filter(|e| old.get(&e.key()) != Some(e));
        let stale = entries_of(from)
            .into_iter()
            .filter(|e| !new.contains_key(&e.key()));
        PolicyDiff {
            added: compiled(added, to.max_rule_id),
            stale: compiled(stale, 0),
        }
    }

    /// Whether the two policies put the same entries in the maps.
    pub fn is_empty(&self) -> bool {
        entries(&self.added) == 0 && entries(&self.stale) == 0
    }
}

/// Moves a datapath that enforces `from` to enforce `to`: writes the added entries first,
/// then removes the stale ones (so traffic both allow is never denied in between), then
/// bumps the policy revision so tracked flows are checked against `to`. When nothing
/// differs, nothing is written and the revision stays.
///
/// While it runs, a packet may meet a mix of both policies: additions in place, removals
/// not yet done.
///
/// Map capacities are not checked (the datapath does not expose them): a `to` that does not
/// fit fails at the first full map. The additions written until then are taken back, so the
/// datapath keeps enforcing `from`.
///
/// # Errors
/// [`DatapathError::Map`] when the kernel refuses a write; after a failed insert the maps
/// hold `from` again (unless taking back fails too, which is logged).
pub fn update(
    datapath: &mut Datapath,
    from: &CompiledPolicy,
    to: &CompiledPolicy,
) -> Result<UpdateSummary, DatapathError> {
    let diff = PolicyDiff::between(from, to);
    if diff.is_empty() {
        return Ok(UpdateSummary {
            added: 0,
            removed: 0,
            revision: datapath.config()?.revision,
        });
    }
    if let Err(error) = datapath.insert_entries(&diff.added) {
        roll_back(datapath, from, &diff.added);
        return Err(error);
    }
    datapath.remove_entries(&diff.stale)?;
    let revision = datapath.bump_revision()?;
    Ok(UpdateSummary {
        added: entries(&diff.added),
        removed: entries(&diff.stale),
        revision,
    })
}

/// Takes back a partial insert of `added` into a datapath that enforced `from`: keys `from`
/// had get their old values again, keys new to `from` are removed.
fn roll_back(datapath: &mut Datapath, from: &CompiledPolicy, added: &CompiledPolicy) {
    let old = by_key(from);
    let (mut restore, mut new) = (Vec::new(), Vec::new());
    for entry in entries_of(added) {
        match old.get(&entry.key()) {
            Some(before) => restore.push(*before),
            None => new.push(entry),
        }
    }
    let restored = datapath
        .insert_entries(&compiled(restore, from.max_rule_id))
        .and_then(|()| datapath.remove_entries(&compiled(new, 0)));
    if let Err(e) = restored {
        log::error!("taking back a failed policy update failed too, the maps mix both: {e}");
    }
}

/// How many map entries a compiled policy has.
fn entries(compiled: &CompiledPolicy) -> usize {
    compiled.ipcache_v4.len() + compiled.ipcache_v6.len() + compiled.policy.len()
}

/// One map entry of a compiled policy.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Entry {
    V4(Ipv4Net, Identity),
    V6(Ipv6Net, Identity),
    Policy(PolicyEntry),
}

/// What a map entry is found by.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
enum Key {
    V4(Ipv4Net),
    V6(Ipv6Net),
    Policy(u32, PolicyKey),
}

impl Entry {
    fn key(&self) -> Key {
        match *self {
            Entry::V4(net, _) => Key::V4(net),
            Entry::V6(net, _) => Key::V6(net),
            Entry::Policy(e) => Key::Policy(e.prefix_len, e.key),
        }
    }
}

/// Every entry of a compiled policy, in its order. A key listed twice (validated policies
/// have none) is kept once, with its last value: the one the maps end up holding.
fn entries_of(c: &CompiledPolicy) -> Vec<Entry> {
    let v4 = c.ipcache_v4.iter().map(|(net, id)| Entry::V4(*net, *id));
    let v6 = c.ipcache_v6.iter().map(|(net, id)| Entry::V6(*net, *id));
    let policy = c.policy.iter().map(|e| Entry::Policy(*e));
    let mut out: Vec<Entry> = Vec::new();
    let mut index = HashMap::new();
    for entry in v4.chain(v6).chain(policy) {
        match index.get(&entry.key()) {
            Some(&at) => out[at] = entry,
            None => {
                index.insert(entry.key(), out.len());
                out.push(entry);
            }
        }
    }
    out
}

fn by_key(c: &CompiledPolicy) -> HashMap<Key, Entry> {
    entries_of(c).into_iter().map(|e| (e.key(), e)).collect()
}

/// The compiled policy made of `entries`.
fn compiled(entries: impl IntoIterator<Item = Entry>, max_rule_id: u32) -> CompiledPolicy {
    let mut out = CompiledPolicy {
        max_rule_id,
        ..CompiledPolicy::default()
    };
    for entry in entries {
        match entry {
            Entry::V4(net, id) => out.ipcache_v4.push((net, id)),
            Entry::V6(net, id) => out.ipcache_v6.push((net, id)),
            Entry::Policy(e) => out.policy.push(e),
        }
    }
    out
}

#[cfg(test)]
mod tests;
