//! Reading the enforced policy back out of the maps, to reconcile pinned maps with the store
//! after a restart.

use std::net::{Ipv4Addr, Ipv6Addr};

use aya::maps::{HashMap, MapData, lpm_trie::LpmTrie};
use firewall_common::{Identity, PolicyKey, PolicyValue, maps};
use ipnet::{Ipv4Net, Ipv6Net};

use super::{Datapath, DatapathError, map_error};
use crate::policy::{CompiledPolicy, PolicyEntry};

impl Datapath {
    /// Every ipcache and policy entry in the maps now, as a compiled policy (`max_rule_id`
    /// is the largest rule id found).
    ///
    /// # Errors
    /// [`DatapathError::Map`] when a map cannot be read.
    pub fn current_entries(&self) -> Result<CompiledPolicy, DatapathError> {
        let mut out = CompiledPolicy::default();
        let hosts_v4: HashMap<&MapData, [u8; 4], Identity> = self.map(maps::IPCACHE_HOSTS_V4)?;
        for item in hosts_v4.iter() {
            let (address, identity) = item.map_err(map_error(maps::IPCACHE_HOSTS_V4))?;
            out.ipcache_v4
                .push((Ipv4Net::from(Ipv4Addr::from(address)), identity));
        }
        let prefixes_v4: LpmTrie<&MapData, [u8; 4], Identity> = self.map(maps::IPCACHE_V4)?;
        for item in prefixes_v4.iter() {
            let (key, identity) = item.map_err(map_error(maps::IPCACHE_V4))?;
            let net = Ipv4Net::new(Ipv4Addr::from(key.data()), key.prefix_len() as u8)
                .map_err(|_| invalid(maps::IPCACHE_V4))?;
            out.ipcache_v4.push((net, identity));
        }
        let hosts_v6: HashMap<&MapData, [u8; 16], Identity> = self.map(maps::IPCACHE_HOSTS_V6)?;
        for item in hosts_v6.iter() {
            let (address, identity) = item.map_err(map_error(maps::IPCACHE_HOSTS_V6))?;
            out.ipcache_v6
                .push((Ipv6Net::from(Ipv6Addr::from(address)), identity));
        }
        let prefixes_v6: LpmTrie<&MapData, [u8; 16], Identity> = self.map(maps::IPCACHE_V6)?;
        for item in prefixes_v6.iter() {
            let (key, identity) = item.map_err(map_error(maps::IPCACHE_V6))?;
            let net = Ipv6Net::new(Ipv6Addr::from(key.data()), key.prefix_len() as u8)
                .map_err(|_| invalid(maps::IPCACHE_V6))?;
            out.ipcache_v6.push((net, identity));
        }
        let exact: HashMap<&MapData, PolicyKey, PolicyValue> = self.map(maps::POLICY_EXACT)?;
        for item in exact.iter() {
            let (key, value) = item.map_err(map_error(maps::POLICY_EXACT))?;
            out.policy.push(PolicyEntry {
                prefix_len: PolicyKey::PREFIX_FULL,
                key,
                value,
            });
        }
        let ranges: LpmTrie<&MapData, PolicyKey, PolicyValue> = self.map(maps::POLICY)?;
        for item in ranges.iter() {
            let (key, value) = item.map_err(map_error(maps::POLICY))?;
            out.policy.push(PolicyEntry {
                prefix_len: key.prefix_len(),
                key: key.data(),
                value,
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
}

fn invalid(map: &'static str) -> DatapathError {
    DatapathError::Map {
        map,
        source: aya::maps::MapError::InvalidName { name: map.into() },
    }
}
