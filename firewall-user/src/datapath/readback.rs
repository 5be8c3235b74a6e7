//! Reading the enforced policy back out of the maps, to reconcile pinned maps with the store
//! after a restart, and to find a generation's entries for removal.

use std::net::{Ipv4Addr, Ipv6Addr};

use aya::maps::{HashMap, MapData, lpm_trie::LpmTrie};
use firewall_common::{
    Identity, PolicyKey, PolicyValue,
    maps::{self, IPCACHE_GENERATION_BITS, IpcacheKeyV4, IpcacheKeyV6},
};
use ipnet::{Ipv4Net, Ipv6Net};

use super::{Datapath, DatapathError, map_error, placement::Placement};
use crate::policy::{CompiledPolicy, PolicyEntry};

impl Datapath {
    /// Every ipcache and policy entry of the active generation, as a compiled policy (keys of
    /// generation 0, as the compiler makes them; `max_rule_id` is the largest rule id found).
    ///
    /// # Errors
    /// [`DatapathError::Map`] when a map cannot be read.
    pub fn current_entries(&self) -> Result<CompiledPolicy, DatapathError> {
        let active = self.generation()?;
        let mut stored = self.stored_entries()?;
        stored.retain_generations(|g| g == active);
        compiled_of(&stored)
    }

    /// Every ipcache and policy entry in the maps, of every generation, as the maps hold them.
    pub(super) fn stored_entries(&self) -> Result<Placement, DatapathError> {
        let mut out = Placement {
            hosts_v4: Vec::new(),
            hosts_v6: Vec::new(),
            prefixes_v4: Vec::new(),
            prefixes_v6: Vec::new(),
            exact: Vec::new(),
            ranges: Vec::new(),
        };
        let hosts_v4: HashMap<&MapData, IpcacheKeyV4, Identity> =
            self.map(maps::IPCACHE_HOSTS_V4)?;
        for item in hosts_v4.iter() {
            out.hosts_v4
                .push(item.map_err(map_error(maps::IPCACHE_HOSTS_V4))?);
        }
        let prefixes_v4: LpmTrie<&MapData, IpcacheKeyV4, Identity> = self.map(maps::IPCACHE_V4)?;
        for item in prefixes_v4.iter() {
            out.prefixes_v4
                .push(item.map_err(map_error(maps::IPCACHE_V4))?);
        }
        let hosts_v6: HashMap<&MapData, IpcacheKeyV6, Identity> =
            self.map(maps::IPCACHE_HOSTS_V6)?;
        for item in hosts_v6.iter() {
            out.hosts_v6
                .push(item.map_err(map_error(maps::IPCACHE_HOSTS_V6))?);
        }
        let prefixes_v6: LpmTrie<&MapData, IpcacheKeyV6, Identity> = self.map(maps::IPCACHE_V6)?;
        for item in prefixes_v6.iter() {
            out.prefixes_v6
                .push(item.map_err(map_error(maps::IPCACHE_V6))?);
        }
        let exact: HashMap<&MapData, PolicyKey, PolicyValue> = self.map(maps::POLICY_EXACT)?;
        for item in exact.iter() {
            out.exact.push(item.map_err(map_error(maps::POLICY_EXACT))?);
        }
        let ranges: LpmTrie<&MapData, PolicyKey, PolicyValue> = self.map(maps::POLICY)?;
        for item in ranges.iter() {
            out.ranges.push(item.map_err(map_error(maps::POLICY))?);
        }
        Ok(out)
    }
}

/// The map entries `stored` as a compiled policy, generation bytes dropped.
fn compiled_of(stored: &Placement) -> Result<CompiledPolicy, DatapathError> {
    let mut out = CompiledPolicy::default();
    let address_bits = |prefix_len: u32, map| {
        prefix_len
            .checked_sub(IPCACHE_GENERATION_BITS)
            .and_then(|bits| u8::try_from(bits).ok())
            .ok_or_else(|| invalid(map))
    };
    for (key, identity) in &stored.hosts_v4 {
        let address = Ipv4Addr::new(key[1], key[2], key[3], key[4]);
        out.ipcache_v4.push((Ipv4Net::from(address), *identity));
    }
    for (key, identity) in &stored.prefixes_v4 {
        let data = key.data();
        let address = Ipv4Addr::new(data[1], data[2], data[3], data[4]);
        let bits = address_bits(key.prefix_len(), maps::IPCACHE_V4)?;
        let net = Ipv4Net::new(address, bits).map_err(|_| invalid(maps::IPCACHE_V4))?;
        out.ipcache_v4.push((net, *identity));
    }
    for (key, identity) in &stored.hosts_v6 {
        out.ipcache_v6
            .push((Ipv6Net::from(Ipv6Addr::from(v6_address(key))), *identity));
    }
    for (key, identity) in &stored.prefixes_v6 {
        let address = Ipv6Addr::from(v6_address(&key.data()));
        let bits = address_bits(key.prefix_len(), maps::IPCACHE_V6)?;
        let net = Ipv6Net::new(address, bits).map_err(|_| invalid(maps::IPCACHE_V6))?;
        out.ipcache_v6.push((net, *identity));
    }
    for (key, value) in &stored.exact {
        out.policy.push(PolicyEntry {
            prefix_len: PolicyKey::PREFIX_FULL,
            key: key.with_generation(0),
            value: *value,
        });
    }
    for (key, value) in &stored.ranges {
        out.policy.push(PolicyEntry {
            prefix_len: key.prefix_len(),
            key: key.data().with_generation(0),
            value: *value,
        });
    }
    out.max_rule_id = out
        .policy
        .iter()
        .map(|e| e.value.rule_id)
        .max()
        .unwrap_or(0);
    Ok(out)
}

fn v6_address(key: &IpcacheKeyV6) -> [u8; 16] {
    let mut address = [0; 16];
    address.copy_from_slice(&key[1..]);
    address
}

fn invalid(map: &'static str) -> DatapathError {
    DatapathError::Map {
        map,
        source: aya::maps::MapError::InvalidName { name: map.into() },
    }
}
