//! Writing compiled policies into the maps: full-length keys into the hash maps, shorter
//! prefixes into the tries (see `firewall_common::maps`), capacity checked first, every key
//! stamped with the policy generation it belongs to.

use aya::maps::{HashMap, MapData, lpm_trie::Key, lpm_trie::LpmTrie};
use firewall_common::{
    Identity, PolicyKey, PolicyValue,
    maps::{self, IPCACHE_GENERATION_BITS, IpcacheKeyV4, IpcacheKeyV6},
};

use super::{Capacities, Datapath, DatapathError, map_error};
use crate::policy::CompiledPolicy;

/// A compiled policy split the way the maps hold it: full-length keys in the hash maps,
/// shorter prefixes in the tries (see `firewall_common::maps`).
pub(super) struct Placement {
    pub(super) hosts_v4: Vec<(IpcacheKeyV4, Identity)>,
    pub(super) hosts_v6: Vec<(IpcacheKeyV6, Identity)>,
    pub(super) prefixes_v4: Vec<(Key<IpcacheKeyV4>, Identity)>,
    pub(super) prefixes_v6: Vec<(Key<IpcacheKeyV6>, Identity)>,
    pub(super) exact: Vec<(PolicyKey, PolicyValue)>,
    pub(super) ranges: Vec<(Key<PolicyKey>, PolicyValue)>,
}

impl Placement {
    /// `compiled` split by map, its keys stamped with `generation`.
    pub(super) fn of(compiled: &CompiledPolicy, generation: u8) -> Self {
        let mut p = Placement {
            hosts_v4: Vec::new(),
            hosts_v6: Vec::new(),
            prefixes_v4: Vec::new(),
            prefixes_v6: Vec::new(),
            exact: Vec::new(),
            ranges: Vec::new(),
        };
        for (net, identity) in &compiled.ipcache_v4 {
            let key = maps::ipcache_key_v4(generation, net.network().octets());
            match net.prefix_len() {
                32 => p.hosts_v4.push((key, *identity)),
                len => p.prefixes_v4.push((
                    Key::new(IPCACHE_GENERATION_BITS + u32::from(len), key),
                    *identity,
                )),
            }
        }
        for (net, identity) in &compiled.ipcache_v6 {
            let key = maps::ipcache_key_v6(generation, &net.network().octets());
            match net.prefix_len() {
                128 => p.hosts_v6.push((key, *identity)),
                len => p.prefixes_v6.push((
                    Key::new(IPCACHE_GENERATION_BITS + u32::from(len), key),
                    *identity,
                )),
            }
        }
        for entry in &compiled.policy {
            let key = entry.key.with_generation(generation);
            if entry.prefix_len == PolicyKey::PREFIX_FULL {
                p.exact.push((key, entry.value));
            } else {
                p.ranges
                    .push((Key::new(entry.prefix_len, key), entry.value));
            }
        }
        p
    }

    /// Entries per map, in the order of [`Placement::check`].
    pub(super) fn counts(&self) -> [usize; 6] {
        [
            self.hosts_v4.len(),
            self.hosts_v6.len(),
            self.prefixes_v4.len(),
            self.prefixes_v6.len(),
            self.exact.len(),
            self.ranges.len(),
        ]
    }

    /// Entries per map of `generation` alone, in [`Placement::counts`] order.
    pub(super) fn clone_counts_of(&self, generation: u8) -> [usize; 6] {
        [
            self.hosts_v4
                .iter()
                .filter(|(k, _)| k[0] == generation)
                .count(),
            self.hosts_v6
                .iter()
                .filter(|(k, _)| k[0] == generation)
                .count(),
            self.prefixes_v4
                .iter()
                .filter(|(k, _)| k.data()[0] == generation)
                .count(),
            self.prefixes_v6
                .iter()
                .filter(|(k, _)| k.data()[0] == generation)
                .count(),
            self.exact
                .iter()
                .filter(|(k, _)| k.generation == generation)
                .count(),
            self.ranges
                .iter()
                .filter(|(k, _)| k.data().generation == generation)
                .count(),
        ]
    }

    /// Keeps only the entries whose generation `keep` accepts.
    pub(super) fn retain_generations(&mut self, keep: impl Fn(u8) -> bool) {
        self.hosts_v4.retain(|(k, _)| keep(k[0]));
        self.hosts_v6.retain(|(k, _)| keep(k[0]));
        self.prefixes_v4.retain(|(k, _)| keep(k.data()[0]));
        self.prefixes_v6.retain(|(k, _)| keep(k.data()[0]));
        self.exact.retain(|(k, _)| keep(k.generation));
        self.ranges.retain(|(k, _)| keep(k.data().generation));
    }

    /// Checks every map's share against its capacity, naming the first that overflows.
    pub(super) fn check(&self, caps: &Capacities, max_rule_id: u32) -> Result<(), DatapathError> {
        check_counts(self.counts(), caps, max_rule_id)
    }
}

/// Checks per-map entry counts (in [`Placement::counts`] order) against the capacities.
pub(super) fn check_counts(
    counts: [usize; 6],
    caps: &Capacities,
    max_rule_id: u32,
) -> Result<(), DatapathError> {
    {
        let [hosts_v4, hosts_v6, prefixes_v4, prefixes_v6, exact, ranges] = counts;
        let checks = [
            (maps::IPCACHE_HOSTS_V4, hosts_v4, caps.ipcache_hosts_v4),
            (maps::IPCACHE_HOSTS_V6, hosts_v6, caps.ipcache_hosts_v6),
            (maps::IPCACHE_V4, prefixes_v4, caps.ipcache_v4),
            (maps::IPCACHE_V6, prefixes_v6, caps.ipcache_v6),
            (maps::POLICY_EXACT, exact, caps.policy_exact),
            (maps::POLICY, ranges, caps.policy),
            (maps::RULE_COUNTERS, max_rule_id as usize + 1, caps.rules),
        ];
        for (map, needed, limit) in checks {
            if needed > limit as usize {
                return Err(DatapathError::Capacity { map, needed, limit });
            }
        }
        Ok(())
    }
}

impl Datapath {
    /// Writes a compiled policy into empty maps. The whole policy is checked against the map
    /// capacities first, so a policy that does not fit writes nothing.
    ///
    /// # Errors
    /// [`DatapathError::Capacity`] before any write; [`DatapathError::Map`] if the kernel
    /// refuses an entry (it should not once the capacity check passed).
    pub fn apply(&mut self, compiled: &CompiledPolicy) -> Result<(), DatapathError> {
        let placement = Placement::of(compiled, self.generation()?);
        placement.check(&self.capacities, compiled.max_rule_id)?;
        self.write(&placement)
    }

    /// Checks that `compiled` would fit the maps, naming the first that would overflow.
    ///
    /// # Errors
    /// [`DatapathError::Capacity`].
    pub fn check_capacity(&self, compiled: &CompiledPolicy) -> Result<(), DatapathError> {
        Placement::of(compiled, 0).check(&self.capacities, compiled.max_rule_id)
    }

    /// Writes (or overwrites) every entry of `compiled` in the active generation, without a
    /// capacity check: for adding to a policy already in place.
    ///
    /// # Errors
    /// [`DatapathError::Map`] when the kernel refuses an entry (a full map); the entries
    /// written before it stay.
    pub fn insert_entries(&mut self, compiled: &CompiledPolicy) -> Result<(), DatapathError> {
        let placement = Placement::of(compiled, self.generation()?);
        self.write(&placement)
    }

    /// Removes exactly the entries of `stale` from the active generation; entries already
    /// absent are skipped.
    ///
    /// # Errors
    /// [`DatapathError::Map`] when a removal fails for another reason than absence.
    pub fn remove_entries(&mut self, stale: &CompiledPolicy) -> Result<(), DatapathError> {
        let placement = Placement::of(stale, self.generation()?);
        self.remove(&placement)
    }

    /// Removes exactly the entries of `p`; entries already absent are skipped.
    pub(super) fn remove(&mut self, p: &Placement) -> Result<(), DatapathError> {
        let absent_is_fine = |map: &'static str| {
            move |e: aya::maps::MapError| match e {
                aya::maps::MapError::KeyNotFound => Ok(()),
                // aya reports a missing key on removal as the syscall's ENOENT.
                aya::maps::MapError::SyscallError(ref err)
                    if err.io_error.raw_os_error() == Some(libc::ENOENT) =>
                {
                    Ok(())
                }
                source => Err(DatapathError::Map { map, source }),
            }
        };
        let mut hosts_v4: HashMap<&mut MapData, IpcacheKeyV4, Identity> =
            self.map_mut(maps::IPCACHE_HOSTS_V4)?;
        for (address, _) in &p.hosts_v4 {
            hosts_v4
                .remove(address)
                .or_else(absent_is_fine(maps::IPCACHE_HOSTS_V4))?;
        }
        let mut hosts_v6: HashMap<&mut MapData, IpcacheKeyV6, Identity> =
            self.map_mut(maps::IPCACHE_HOSTS_V6)?;
        for (address, _) in &p.hosts_v6 {
            hosts_v6
                .remove(address)
                .or_else(absent_is_fine(maps::IPCACHE_HOSTS_V6))?;
        }
        let mut v4: LpmTrie<&mut MapData, IpcacheKeyV4, Identity> =
            self.map_mut(maps::IPCACHE_V4)?;
        for (key, _) in &p.prefixes_v4 {
            v4.remove(key).or_else(absent_is_fine(maps::IPCACHE_V4))?;
        }
        let mut v6: LpmTrie<&mut MapData, IpcacheKeyV6, Identity> =
            self.map_mut(maps::IPCACHE_V6)?;
        for (key, _) in &p.prefixes_v6 {
            v6.remove(key).or_else(absent_is_fine(maps::IPCACHE_V6))?;
        }
        let mut exact: HashMap<&mut MapData, PolicyKey, PolicyValue> =
            self.map_mut(maps::POLICY_EXACT)?;
        for (key, _) in &p.exact {
            exact
                .remove(key)
                .or_else(absent_is_fine(maps::POLICY_EXACT))?;
        }
        let mut ranges: LpmTrie<&mut MapData, PolicyKey, PolicyValue> =
            self.map_mut(maps::POLICY)?;
        for (key, _) in &p.ranges {
            ranges.remove(key).or_else(absent_is_fine(maps::POLICY))?;
        }
        Ok(())
    }

    pub(super) fn write(&mut self, placement: &Placement) -> Result<(), DatapathError> {
        let mut hosts_v4: HashMap<&mut MapData, IpcacheKeyV4, Identity> =
            self.map_mut(maps::IPCACHE_HOSTS_V4)?;
        for (address, identity) in &placement.hosts_v4 {
            hosts_v4
                .insert(address, identity, 0)
                .map_err(map_error(maps::IPCACHE_HOSTS_V4))?;
        }
        let mut hosts_v6: HashMap<&mut MapData, IpcacheKeyV6, Identity> =
            self.map_mut(maps::IPCACHE_HOSTS_V6)?;
        for (address, identity) in &placement.hosts_v6 {
            hosts_v6
                .insert(address, identity, 0)
                .map_err(map_error(maps::IPCACHE_HOSTS_V6))?;
        }
        let mut v4: LpmTrie<&mut MapData, IpcacheKeyV4, Identity> =
            self.map_mut(maps::IPCACHE_V4)?;
        for (key, identity) in &placement.prefixes_v4 {
            v4.insert(key, identity, 0)
                .map_err(map_error(maps::IPCACHE_V4))?;
        }
        let mut v6: LpmTrie<&mut MapData, IpcacheKeyV6, Identity> =
            self.map_mut(maps::IPCACHE_V6)?;
        for (key, identity) in &placement.prefixes_v6 {
            v6.insert(key, identity, 0)
                .map_err(map_error(maps::IPCACHE_V6))?;
        }
        let mut exact: HashMap<&mut MapData, PolicyKey, PolicyValue> =
            self.map_mut(maps::POLICY_EXACT)?;
        for (key, value) in &placement.exact {
            exact
                .insert(key, value, 0)
                .map_err(map_error(maps::POLICY_EXACT))?;
        }
        let mut ranges: LpmTrie<&mut MapData, PolicyKey, PolicyValue> =
            self.map_mut(maps::POLICY)?;
        for (key, value) in &placement.ranges {
            ranges
                .insert(key, value, 0)
                .map_err(map_error(maps::POLICY))?;
        }
        Ok(())
    }
}
