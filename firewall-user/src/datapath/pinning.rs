//! Pinned maps: which maps outlive the process, and the check that a reused pin has the
//! layout this build expects.
//!
//! The daemon pins its maps so that enforcement, connection tracking and counters survive a
//! restart (or `kill -9`): the next daemon loads new programs against the same maps. The
//! layout version is part of the directory name; a build that changes any key, value or
//! map type bumps [`LAYOUT_VERSION`], and [`check`] refuses a pin whose type, key size,
//! value size or capacity differs, so an old map is never silently reused.

use std::path::Path;

use aya::maps::{MapInfo, MapType};
use firewall_common::{
    Counter, Identity, PolicyKey, PolicyValue, Reason, RuleCounter,
    conntrack::{self, Config, CtEntry, CtKey, FragEntry, FragKey},
    maps::{self, IpcacheKeyV4, IpcacheKeyV6, Stat},
};

use super::{DatapathError, LoadOptions};

/// Version of the pinned layout; part of the pin directory's name (and of the paths in
/// `crate::conntrack::pin`, which must move with it).
pub const LAYOUT_VERSION: u32 = 3;

/// Maps pinned by the daemon, by name. Not among them: `DECISION` (replay only), and the
/// trace maps and the record rate limiter, which belong to one daemon's run: a trace left
/// running by a killed daemon ends with it.
pub const PINNED: [&str; 14] = [
    maps::IPCACHE_HOSTS_V4,
    maps::IPCACHE_HOSTS_V6,
    maps::IPCACHE_V4,
    maps::IPCACHE_V6,
    maps::POLICY_EXACT,
    maps::POLICY,
    maps::REASON_COUNTERS,
    maps::RULE_COUNTERS,
    maps::DROP_PAIRS,
    maps::FLOW_EVENTS,
    maps::DATAPATH_STATS,
    conntrack::CONNTRACK,
    conntrack::FRAGMENTS,
    conntrack::CONFIG,
];

/// The pin directory of this layout under `root` (normally `/sys/fs/bpf/firewall`).
pub fn directory(root: &Path) -> std::path::PathBuf {
    root.join(format!("v{LAYOUT_VERSION}"))
}

/// What a map must look like: type, key size, value size, capacity.
#[derive(Clone, Copy, Debug, PartialEq)]
struct Layout {
    map_type: MapType,
    key: u32,
    value: u32,
    entries: u32,
}

impl std::fmt::Display for Layout {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{:?} key {} B value {} B for {} entries",
            self.map_type, self.key, self.value, self.entries
        )
    }
}

fn expected(name: &str, options: &LoadOptions) -> Option<Layout> {
    let caps = &options.capacities;
    let size = |n: usize| n as u32;
    // LPM trie keys carry a 4-byte prefix length in front of the data.
    let (map_type, key, value, entries) = match name {
        maps::IPCACHE_HOSTS_V4 => (
            MapType::Hash,
            size(size_of::<IpcacheKeyV4>()),
            size(size_of::<Identity>()),
            caps.ipcache_hosts_v4,
        ),
        maps::IPCACHE_HOSTS_V6 => (
            MapType::Hash,
            size(size_of::<IpcacheKeyV6>()),
            4,
            caps.ipcache_hosts_v6,
        ),
        maps::IPCACHE_V4 => (
            MapType::LpmTrie,
            4 + size(size_of::<IpcacheKeyV4>()),
            4,
            caps.ipcache_v4,
        ),
        maps::IPCACHE_V6 => (
            MapType::LpmTrie,
            4 + size(size_of::<IpcacheKeyV6>()),
            4,
            caps.ipcache_v6,
        ),
        maps::POLICY_EXACT => (
            MapType::Hash,
            size(size_of::<PolicyKey>()),
            size(size_of::<PolicyValue>()),
            caps.policy_exact,
        ),
        maps::POLICY => (
            MapType::LpmTrie,
            4 + size(size_of::<PolicyKey>()),
            size(size_of::<PolicyValue>()),
            caps.policy,
        ),
        maps::REASON_COUNTERS => (
            MapType::PerCpuArray,
            4,
            size(size_of::<Counter>()),
            Reason::COUNT,
        ),
        maps::RULE_COUNTERS => (
            MapType::PerCpuArray,
            4,
            size(size_of::<RuleCounter>()),
            caps.rules,
        ),
        maps::DROP_PAIRS => (
            MapType::LruPerCpuHash,
            8,
            size(size_of::<Counter>()),
            maps::capacity::DROP_PAIRS,
        ),
        maps::FLOW_EVENTS => (MapType::RingBuf, 0, 0, maps::capacity::FLOW_EVENTS_BYTES),
        maps::DATAPATH_STATS => (MapType::PerCpuArray, 4, 8, Stat::COUNT),
        conntrack::CONNTRACK => (
            MapType::LruHash,
            size(size_of::<CtKey>()),
            size(size_of::<CtEntry>()),
            options.conntrack_entries,
        ),
        conntrack::FRAGMENTS => (
            MapType::LruHash,
            size(size_of::<FragKey>()),
            size(size_of::<FragEntry>()),
            options.fragment_entries,
        ),
        conntrack::CONFIG => (MapType::Array, 4, size(size_of::<Config>()), 1),
        _ => return None,
    };
    Some(Layout {
        map_type,
        key,
        value,
        entries,
    })
}

/// Checks every map already pinned in `dir` against this build's layout and `options`'
/// capacities.
///
/// # Errors
/// [`DatapathError::Layout`] naming the first pin that differs.
pub fn check(options: &LoadOptions, dir: &Path) -> Result<(), DatapathError> {
    for name in PINNED {
        let path = dir.join(name);
        if !path.exists() {
            continue;
        }
        let Some(want) = expected(name, options) else {
            continue;
        };
        let info =
            MapInfo::from_pin(&path).map_err(|source| DatapathError::Map { map: name, source })?;
        let found = Layout {
            map_type: info
                .map_type()
                .map_err(|source| DatapathError::Map { map: name, source })?,
            key: info.key_size(),
            value: info.value_size(),
            entries: info.max_entries(),
        };
        if found != want {
            return Err(DatapathError::Layout {
                path: path.display().to_string(),
                found: found.to_string(),
                expected: want.to_string(),
            });
        }
    }
    Ok(())
}
