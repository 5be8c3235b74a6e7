//! Changing the policy of a running datapath in place, and flows opened under the old policy
//! checked again.
//!
//! A small change writes only the entries that differ, additions before removals, so
//! traffic both policies allow is never denied in between; a packet may meet a mix of both
//! for the moment the writes take. A change of more than [`SWAP_THRESHOLD`] entries (a policy
//! import) is swapped in instead ([`Datapath::swap_in`]): written whole under the inactive
//! generation and enforced by one write, so each packet sees one policy or the other.
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

/// Changes touching more entries than this are swapped in whole rather than written entry by
/// entry. Below it the incremental path writes less (only the difference) and the mix a
/// packet may meet is small; above it the swap's extra writes buy atomicity where it matters.
pub const SWAP_THRESHOLD: usize = 512;

/// What an [`update`] or [`replace`] changed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct UpdateSummary {
    /// Entries written: new keys and keys whose value changed.
    pub added: usize,
    /// Keys removed.
    pub removed: usize,
    /// The policy revision now in force; flows opened under an older one are checked against
    /// the policy again on their next packet.
    pub revision: u32,
    /// Whether the new policy was swapped in whole ([`Datapath::swap_in`]) rather than
    /// written entry by entry.
    pub swapped: bool,
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

/// Moves a datapath that enforces `from` to enforce `to`. When the difference has more than
/// [`SWAP_THRESHOLD`] entries, `to` is swapped in whole (see [`replace`]). Otherwise the
/// added entries are written first, then the stale ones removed (so traffic both allow is
/// never denied in between), then the policy revision is bumped so tracked flows are checked
/// against `to`; while that runs, a packet may meet a mix of both policies. When nothing
/// differs, nothing is written and the revision stays.
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
            swapped: false,
        });
    }
    let (added, removed) = (entries(&diff.added), entries(&diff.stale));
    if added + removed > SWAP_THRESHOLD {
        datapath.swap_in(to)?;
        return Ok(UpdateSummary {
            added,
            removed,
            revision: datapath.config()?.revision,
            swapped: true,
        });
    }
    if let Err(error) = datapath.insert_entries(&diff.added) {
        roll_back(datapath, from, &diff.added);
        return Err(error);
    }
    datapath.remove_entries(&diff.stale)?;
    let revision = datapath.bump_revision()?;
    Ok(UpdateSummary {
        added,
        removed,
        revision,
        swapped: false,
    })
}

/// Moves a datapath that enforces `from` to enforce `to` as one change for packets, whatever
/// its size: `to` is written whole under the inactive generation, then enforced by one write
/// of the generation (the revision bump follows), then `from`'s entries are deleted
/// ([`Datapath::swap_in`]).
/// `from` is only used to count what changed.
///
/// # Errors
/// [`DatapathError::Capacity`] when the maps cannot hold `from` and `to` at once (nothing is
/// written); [`DatapathError::Map`] when the kernel refuses a write. A failure before the
/// flip leaves `from` enforced.
pub fn replace(
    datapath: &mut Datapath,
    from: &CompiledPolicy,
    to: &CompiledPolicy,
) -> Result<UpdateSummary, DatapathError> {
    let diff = PolicyDiff::between(from, to);
    datapath.swap_in(to)?;
    Ok(UpdateSummary {
        added: entries(&diff.added),
        removed: entries(&diff.stale),
        revision: datapath.config()?.revision,
        swapped: true,
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
