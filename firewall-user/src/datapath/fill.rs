//! How full the maps are: entries against each map's capacity.
//!
//! The policy maps' entries are counted from the compiled policy the maps hold (what
//! `Enforcer::enforced` keeps), not by walking the maps, so reading them costs nothing. Left
//! out: entries of the other generation that a swap which failed after its commit left behind
//! until the next swap; they matter only after such a failure.

use firewall_common::maps;

use super::{Datapath, placement::Placement};
use crate::policy::CompiledPolicy;

/// One map's fill level.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct MapFill {
    /// Short lower-case name, for labels and tables (`ipcache_hosts_v4`, `policy_trie`, ...).
    pub name: &'static str,
    /// The map's name in the eBPF object (`IPCACHE_HOSTS_V4`, `POLICY`, ...).
    pub kernel_map: &'static str,
    /// Entries in use. For `rule_ids`, the highest rule id in use (the rule counters are an
    /// array indexed by id).
    pub entries: u64,
    /// Entries the map holds at most. For `rule_ids`, the highest usable id.
    pub capacity: u64,
}

impl Datapath {
    /// The map sizes this datapath was loaded with.
    pub fn capacities(&self) -> super::Capacities {
        self.capacities
    }

    /// Fill levels of the six ipcache and policy maps and of the rule id space, for the
    /// policy `enforced` (the one the maps hold), in that order.
    pub fn policy_fill(&self, enforced: &CompiledPolicy) -> [MapFill; 7] {
        let caps = self.capacities;
        let [hosts_v4, hosts_v6, prefixes_v4, prefixes_v6, exact, ranges] =
            Placement::of(enforced, 0).counts().map(|n| n as u64);
        let fill = |name, kernel_map, entries, capacity: u32| MapFill {
            name,
            kernel_map,
            entries,
            capacity: u64::from(capacity),
        };
        [
            fill(
                "ipcache_hosts_v4",
                maps::IPCACHE_HOSTS_V4,
                hosts_v4,
                caps.ipcache_hosts_v4,
            ),
            fill(
                "ipcache_hosts_v6",
                maps::IPCACHE_HOSTS_V6,
                hosts_v6,
                caps.ipcache_hosts_v6,
            ),
            fill(
                "ipcache_prefixes_v4",
                maps::IPCACHE_V4,
                prefixes_v4,
                caps.ipcache_v4,
            ),
            fill(
                "ipcache_prefixes_v6",
                maps::IPCACHE_V6,
                prefixes_v6,
                caps.ipcache_v6,
            ),
            fill("policy_exact", maps::POLICY_EXACT, exact, caps.policy_exact),
            fill("policy_trie", maps::POLICY, ranges, caps.policy),
            // Ids run from 1 to capacity - 1: slot 0 of the counters is never a rule's.
            fill(
                "rule_ids",
                maps::RULE_COUNTERS,
                u64::from(enforced.max_rule_id),
                caps.rules.saturating_sub(1),
            ),
        ]
    }
}
