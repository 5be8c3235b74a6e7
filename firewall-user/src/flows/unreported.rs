//! What the datapath did not report, and the shapes that carry those counts to clients.
//!
//! Counts are since the daemon started: the datapath's counters live in pinned maps that
//! outlive daemons, so [`Unreported`] takes their values at start as its baseline.

use std::os::fd::{AsFd as _, OwnedFd};

use aya::{
    maps::{Map, MapData, MapError, PerCpuArray},
    sys::SyscallError,
};
use firewall_common::maps::{DATAPATH_STATS, Stat};
use serde::{Deserialize, Serialize};

use super::record::FlowRecord;
use crate::datapath::{Datapath, DatapathError, map_error};

/// Flow records since the daemon started: those it received and those the datapath did not
/// send.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct FlowCounts {
    /// Records the daemon took from the ring buffer.
    pub received: u64,
    /// Records not sent because a CPU was over its record rate (`--flow-record-rate`).
    pub rate_limited: u64,
    /// Records that found the ring buffer full: the daemon did not drain it fast enough.
    pub lost: u64,
}

/// Answer of `GET /v1/flows`: the selected records, oldest first, and the counts.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct FlowList<R = FlowRecord> {
    /// The records.
    pub flows: Vec<R>,
    /// Received, rate-limited and lost since the daemon started.
    #[serde(flatten)]
    pub counts: FlowCounts,
}

/// The counts as a follower of `GET /v1/flows?follow=true` sees them.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct StreamCounts {
    /// Received, rate-limited and lost since the daemon started.
    #[serde(flatten)]
    pub counts: FlowCounts,
    /// Records this follower did not get because it read too slowly.
    pub missed: u64,
}

/// One line of a followed stream: a record, or `{"counts": {...}}` first and whenever the
/// counts change.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum StreamLine {
    /// The counts, now.
    Counts {
        /// Received, rate-limited, lost, missed.
        counts: StreamCounts,
    },
    /// A record.
    Flow(Box<FlowRecord>),
}

/// The datapath's rate-limited and lost record counts, since this reader was opened.
pub struct Unreported {
    stats: PerCpuArray<MapData, u64>,
    baseline: (u64, u64),
}

impl Unreported {
    /// A reader on `datapath`'s statistics map, with its own descriptor, so that counts can
    /// be read without the datapath (which the controller owns behind its lock).
    ///
    /// # Errors
    /// When the map is missing or cannot be duplicated or read.
    pub fn open(datapath: &Datapath) -> Result<Unreported, DatapathError> {
        let StatsFd(fd) = datapath.map(DATAPATH_STATS)?;
        let data = MapData::from_fd(fd).map_err(map_error(DATAPATH_STATS))?;
        let map = Map::from_map_data(data).map_err(map_error(DATAPATH_STATS))?;
        let stats = PerCpuArray::try_from(map).map_err(map_error(DATAPATH_STATS))?;
        let mut reader = Unreported {
            stats,
            baseline: (0, 0),
        };
        reader.baseline = reader.totals()?;
        Ok(reader)
    }

    /// Rate-limited and lost records since [`Unreported::open`].
    ///
    /// # Errors
    /// When the map cannot be read.
    pub fn read(&self) -> Result<(u64, u64), DatapathError> {
        let (limited, lost) = self.totals()?;
        Ok((
            limited.saturating_sub(self.baseline.0),
            lost.saturating_sub(self.baseline.1),
        ))
    }

    fn totals(&self) -> Result<(u64, u64), DatapathError> {
        let sum = |stat: Stat| -> Result<u64, DatapathError> {
            let values = self
                .stats
                .get(&(stat as u32), 0)
                .map_err(map_error(DATAPATH_STATS))?;
            Ok(values.iter().sum())
        };
        Ok((
            sum(Stat::FlowEventsRateLimited)?,
            sum(Stat::FlowEventsLost)?,
        ))
    }
}

/// A duplicate of a per-CPU array's descriptor, taken through `Datapath::map`.
struct StatsFd(OwnedFd);

impl TryFrom<&Map> for StatsFd {
    type Error = MapError;

    fn try_from(map: &Map) -> Result<StatsFd, MapError> {
        let Map::PerCpuArray(data) = map else {
            // The typed conversion's error names the type the map has.
            return Err(PerCpuArray::<&MapData, u64>::try_from(map)
                .err()
                .unwrap_or(MapError::InvalidMapType { map_type: 0 }));
        };
        let fd = data.fd().as_fd().try_clone_to_owned().map_err(|io_error| {
            MapError::SyscallError(SyscallError {
                call: "dup",
                io_error,
            })
        })?;
        Ok(StatsFd(fd))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::flows::{FlowVerdict, sample};

    #[test]
    fn stream_lines_read_back_as_counts_or_records() {
        let counts = StreamLine::Counts {
            counts: StreamCounts {
                counts: FlowCounts {
                    received: 3,
                    rate_limited: 2,
                    lost: 1,
                },
                missed: 4,
            },
        };
        let text = serde_json::to_string(&counts).expect("JSON");
        assert_eq!(
            text,
            r#"{"counts":{"received":3,"rate_limited":2,"lost":1,"missed":4}}"#
        );
        assert_eq!(
            serde_json::from_str::<StreamLine>(&text).expect("reads"),
            counts
        );
        let record = sample(FlowVerdict::Drop, "frontend", "backend");
        let text = serde_json::to_string(&record).expect("JSON");
        assert_eq!(
            serde_json::from_str::<StreamLine>(&text).expect("reads"),
            StreamLine::Flow(Box::new(record))
        );
    }

    #[test]
    fn a_list_carries_its_counts_beside_the_records() {
        let list = FlowList::<FlowRecord> {
            flows: Vec::new(),
            counts: FlowCounts {
                received: 1,
                rate_limited: 0,
                lost: 0,
            },
        };
        assert_eq!(
            serde_json::to_string(&list).expect("JSON"),
            r#"{"flows":[],"received":1,"rate_limited":0,"lost":0}"#
        );
    }
}
