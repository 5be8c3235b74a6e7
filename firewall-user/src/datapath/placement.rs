//! Writing compiled policies into the maps: full-length keys into the hash maps, shorter
//! prefixes into the tries (see `firewall_common::maps`), capacity checked first.

use aya::maps::{HashMap, MapData, lpm_trie::Key, lpm_trie::LpmTrie};
use firewall_common::{Identity, PolicyKey, PolicyValue, maps};

use super::{Capacities, Datapath, DatapathError, map_error};
use crate::policy::{CompiledPolicy, PolicyEntry};

/// A compiled policy split the way the maps hold it: full-length keys in the hash maps,
/// shorter prefixes in the tries (see `firewall_common::maps`).
struct Placement<'a> {
    hosts_v4: Vec<([u8; 4], Identity)>,
    hosts_v6: Vec<([u8; 16], Identity)>,
    prefixes_v4: Vec<(Key<[u8; 4]>, Identity)>,
    prefixes_v6: Vec<(Key<[u8; 16]>, Identity)>,
    exact: Vec<&'a PolicyEntry>,
    ranges: Vec<&'a PolicyEntry>,
}

impl<'a> Placement<'a> {
    pub(super) fn of(compiled: &'a CompiledPolicy) -> Self {
        let mut p = Placement {
            hosts_v4: Vec::new(),
            hosts_v6: Vec::new(),
            prefixes_v4: Vec::new(),
            prefixes_v6: Vec::new(),
            exact: Vec::new(),
            ranges: Vec::new(),
        };
        for (net, identity) in &compiled.ipcache_v4 {
            let address = net.network().octets();
            match net.prefix_len() {
                32 => p.hosts_v4.push((address, *identity)),
                len => p
                    .prefixes_v4
                    .push((Key::new(u32::from(len), address), *identity)),
            }
        }
        for (net, identity) in &compiled.ipcache_v6 {
            let address = net.network().octets();
            match net.prefix_len() {
                128 => p.hosts_v6.push((address, *identity)),
                len => p
                    .prefixes_v6
                    .push((Key::new(u32::from(len), address), *identity)),
            }
        }
        for entry in &compiled.policy {
            if entry.prefix_len == PolicyKey::PREFIX_FULL {
                p.exact.push(entry);
            } else {
                p.ranges.push(entry);
            }
        }
        p
    }

    /// Checks every map's share against its capacity, naming the first that overflows.
    pub(super) fn check(&self, caps: &Capacities, max_rule_id: u32) -> Result<(), DatapathError> {
        let checks = [
            (
                maps::IPCACHE_HOSTS_V4,
                self.hosts_v4.len(),
                caps.ipcache_hosts_v4,
            ),
            (
                maps::IPCACHE_HOSTS_V6,
                self.hosts_v6.len(),
                caps.ipcache_hosts_v6,
            ),
            (maps::IPCACHE_V4, self.prefixes_v4.len(), caps.ipcache_v4),
            (maps::IPCACHE_V6, self.prefixes_v6.len(), caps.ipcache_v6),
            (maps::POLICY_EXACT, self.exact.len(), caps.policy_exact),
            (maps::POLICY, self.ranges.len(), caps.policy),
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
        let placement = Placement::of(compiled);
        placement.check(&self.capacities, compiled.max_rule_id)?;
        self.write(&placement)
    }

    /// Checks that `compiled` would fit the maps, naming the first that would overflow.
    ///
    /// # Errors
    /// [`DatapathError::Capacity`].
    pub fn check_capacity(&self, compiled: &CompiledPolicy) -> Result<(), DatapathError> {
        Placement::of(compiled).check(&self.capacities, compiled.max_rule_id)
    }

    /// Writes (or overwrites) every entry of `compiled`, without a capacity check: for
    /// adding to a policy already in place.
    ///
    /// # Errors
    /// [`DatapathError::Map`] when the kernel refuses an entry (a full map); the entries
    /// written before it stay.
    pub fn insert_entries(&mut self, compiled: &CompiledPolicy) -> Result<(), DatapathError> {
        self.write(&Placement::of(compiled))
    }

    /// Removes exactly the entries of `stale`; entries already absent are skipped.
    ///
    /// # Errors
    /// [`DatapathError::Map`] when a removal fails for another reason than absence.
    pub fn remove_entries(&mut self, stale: &CompiledPolicy) -> Result<(), DatapathError> {
        let p = Placement::of(stale);
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
        let mut hosts_v4: HashMap<&mut MapData, [u8; 4], Identity> =
            self.map_mut(maps::IPCACHE_HOSTS_V4)?;
        for (address, _) in &p.hosts_v4 {
            hosts_v4
                .remove(address)
                .or_else(absent_is_fine(maps::IPCACHE_HOSTS_V4))?;
        }
        let mut hosts_v6: HashMap<&mut MapData, [u8; 16], Identity> =
            self.map_mut(maps::IPCACHE_HOSTS_V6)?;
        for (address, _) in &p.hosts_v6 {
            hosts_v6
                .remove(address)
                .or_else(absent_is_fine(maps::IPCACHE_HOSTS_V6))?;
        }
        let mut v4: LpmTrie<&mut MapData, [u8; 4], Identity> = self.map_mut(maps::IPCACHE_V4)?;
        for (key, _) in &p.prefixes_v4 {
            v4.remove(key).or_else(absent_is_fine(maps::IPCACHE_V4))?;
        }
        let mut v6: LpmTrie<&mut MapData, [u8; 16], Identity> = self.map_mut(maps::IPCACHE_V6)?;
        for (key, _) in &p.prefixes_v6 {
            v6.remove(key).or_else(absent_is_fine(maps::IPCACHE_V6))?;
        }
        let mut exact: HashMap<&mut MapData, PolicyKey, PolicyValue> =
            self.map_mut(maps::POLICY_EXACT)?;
        for entry in &p.exact {
            exact
                .remove(&entry.key)
                .or_else(absent_is_fine(maps::POLICY_EXACT))?;
        }
        let mut ranges: LpmTrie<&mut MapData, PolicyKey, PolicyValue> =
            self.map_mut(maps::POLICY)?;
        for entry in &p.ranges {
            let key = Key::new(entry.prefix_len, entry.key);
            ranges.remove(&key).or_else(absent_is_fine(maps::POLICY))?;
        }
        Ok(())
    }

    fn write(&mut self, placement: &Placement<'_>) -> Result<(), DatapathError> {
        let mut hosts_v4: HashMap<&mut MapData, [u8; 4], Identity> =
            self.map_mut(maps::IPCACHE_HOSTS_V4)?;
        for (address, identity) in &placement.hosts_v4 {
            hosts_v4
                .insert(address, identity, 0)
                .map_err(map_error(maps::IPCACHE_HOSTS_V4))?;
        }
        let mut hosts_v6: HashMap<&mut MapData, [u8; 16], Identity> =
            self.map_mut(maps::IPCACHE_HOSTS_V6)?;
        for (address, identity) in &placement.hosts_v6 {
            hosts_v6
                .insert(address, identity, 0)
                .map_err(map_error(maps::IPCACHE_HOSTS_V6))?;
        }
        let mut v4: LpmTrie<&mut MapData, [u8; 4], Identity> = self.map_mut(maps::IPCACHE_V4)?;
        for (key, identity) in &placement.prefixes_v4 {
            v4.insert(key, identity, 0)
                .map_err(map_error(maps::IPCACHE_V4))?;
        }
        let mut v6: LpmTrie<&mut MapData, [u8; 16], Identity> = self.map_mut(maps::IPCACHE_V6)?;
        for (key, identity) in &placement.prefixes_v6 {
            v6.insert(key, identity, 0)
                .map_err(map_error(maps::IPCACHE_V6))?;
        }
        let mut exact: HashMap<&mut MapData, PolicyKey, PolicyValue> =
            self.map_mut(maps::POLICY_EXACT)?;
        for entry in &placement.exact {
            exact
                .insert(entry.key, entry.value, 0)
                .map_err(map_error(maps::POLICY_EXACT))?;
        }
        let mut ranges: LpmTrie<&mut MapData, PolicyKey, PolicyValue> =
            self.map_mut(maps::POLICY)?;
        for entry in &placement.ranges {
            let key = Key::new(entry.prefix_len, entry.key);
            ranges
                .insert(&key, entry.value, 0)
                .map_err(map_error(maps::POLICY))?;
        }
        Ok(())
    }
}
