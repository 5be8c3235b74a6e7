//! The conntrack map's life in numbers: flows created, deleted, flushed and present, and
//! from those the flows the LRU map dropped without telling anyone.

use std::{borrow::Borrow, os::fd::AsFd as _};

use aya::maps::{HashMap, IterableMap as _, Map, MapData, PerCpuArray};
use firewall_common::{
    conntrack::{CONNTRACK, CtEntry, CtKey},
    maps::{DATAPATH_STATS, Stat},
};
use serde::Serialize;

use super::{ConntrackError, count};
use crate::datapath::Datapath;

/// What the datapath counted and what the conntrack map holds.
///
/// Every flow created was since deleted, flushed, is still present, or was dropped by the
/// LRU map, which tells no one: [`ConntrackFigures::reclaimed`] is that remainder.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
pub struct ConntrackFigures {
    /// Flows the datapath added ([`Stat::ConntrackCreated`]).
    pub created: u64,
    /// Flows the datapath removed, their rule revoked ([`Stat::ConntrackDeleted`]).
    pub deleted: u64,
    /// Flows `firewall conntrack flush` removed ([`Stat::ConntrackFlushed`]).
    pub flushed: u64,
    /// Inserts the kernel refused ([`Stat::ConntrackInsertFailed`]).
    pub insert_failed: u64,
    /// Entries in the map now, expired ones included (a walk of the whole map).
    pub present: u64,
}

impl ConntrackFigures {
    /// Reads the counters and walks the map to count its entries: one system call per
    /// entry, so this costs in proportion to the flows present (1.2 to 1.4 s for a full map
    /// of the default 524,288 on a 2-core VM).
    ///
    /// # Errors
    /// [`ConntrackError::Datapath`] or [`ConntrackError::Map`] when a map cannot be read.
    pub fn read(datapath: &Datapath) -> Result<ConntrackFigures, ConntrackError> {
        figures(&datapath.conntrack()?, &datapath.map(DATAPATH_STATS)?)
    }

    /// Flows the LRU map dropped, expired or evicted to make room: created minus deleted,
    /// flushed and present. The counters and the walk are not one atomic snapshot, so a
    /// flow created or removed during the walk can make this off by that many.
    pub fn reclaimed(&self) -> u64 {
        self.created
            .saturating_sub(self.deleted)
            .saturating_sub(self.flushed)
            .saturating_sub(self.present)
    }
}

/// Handles of its own on a datapath's conntrack and statistics maps, so the figures can be
/// read (and the map walked) without holding on to the [`Datapath`] itself, such as outside
/// the daemon controller's lock.
pub struct ConntrackCounter {
    conntrack: HashMap<MapData, CtKey, CtEntry>,
    stats: PerCpuArray<MapData, u64>,
    capacity: u32,
}

impl ConntrackCounter {
    /// Opens new descriptors on `datapath`'s conntrack and statistics maps.
    ///
    /// # Errors
    /// [`ConntrackError::Map`] when a descriptor cannot be duplicated or the kernel will not
    /// describe the map.
    pub fn open(datapath: &Datapath) -> Result<ConntrackCounter, ConntrackError> {
        let conntrack: HashMap<MapData, CtKey, CtEntry> =
            HashMap::try_from(duplicate(datapath.conntrack()?.map(), CONNTRACK)?)
                .map_err(map_error(CONNTRACK))?;
        let stats: PerCpuArray<&MapData, u64> = datapath.map(DATAPATH_STATS)?;
        let stats = PerCpuArray::try_from(duplicate(stats.map(), DATAPATH_STATS)?)
            .map_err(map_error(DATAPATH_STATS))?;
        let capacity = conntrack
            .map()
            .info()
            .map_err(map_error(CONNTRACK))?
            .max_entries();
        Ok(ConntrackCounter {
            conntrack,
            stats,
            capacity,
        })
    }

    /// Reads the figures (see [`ConntrackFigures::read`] for the cost).
    ///
    /// # Errors
    /// [`ConntrackError::Map`] when a map cannot be read.
    pub fn read(&self) -> Result<ConntrackFigures, ConntrackError> {
        figures(&self.conntrack, &self.stats)
    }

    /// Entries the conntrack map holds at most.
    pub fn capacity(&self) -> u32 {
        self.capacity
    }
}

fn figures<C: Borrow<MapData>, S: Borrow<MapData>>(
    conntrack: &HashMap<C, CtKey, CtEntry>,
    stats: &PerCpuArray<S, u64>,
) -> Result<ConntrackFigures, ConntrackError> {
    let stat = |stat: Stat| -> Result<u64, ConntrackError> {
        let values = stats
            .get(&(stat as u32), 0)
            .map_err(map_error(DATAPATH_STATS))?;
        Ok(values.iter().sum())
    };
    Ok(ConntrackFigures {
        created: stat(Stat::ConntrackCreated)?,
        deleted: stat(Stat::ConntrackDeleted)?,
        flushed: stat(Stat::ConntrackFlushed)?,
        insert_failed: stat(Stat::ConntrackInsertFailed)?,
        present: count(conntrack)?,
    })
}

/// A new descriptor on the same kernel map.
fn duplicate(map: &MapData, name: &'static str) -> Result<Map, ConntrackError> {
    let fd = map
        .fd()
        .as_fd()
        .try_clone_to_owned()
        .map_err(|e| map_error(name)(aya::maps::MapError::IoError(e)))?;
    let data = MapData::from_fd(fd).map_err(map_error(name))?;
    Map::from_map_data(data).map_err(map_error(name))
}

fn map_error(map: &'static str) -> impl Fn(aya::maps::MapError) -> ConntrackError {
    move |source| ConntrackError::Map { map, source }
}
