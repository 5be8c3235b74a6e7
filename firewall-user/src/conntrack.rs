//! The conntrack map seen from userspace: listing flows, flushing them, and the pins that let
//! `firewall conntrack` reach the maps of a running `firewall run`.
//!
//! The datapath stamps flows with `bpf_ktime_get_coarse_ns`, which reads
//! `CLOCK_MONOTONIC_COARSE`; [`monotonic_coarse_ns`] reads the same clock, so ages computed
//! here agree with the datapath's to within one tick (a few milliseconds).
//!
//! An expired flow may still sit in the LRU map until a packet of it arrives or the map
//! reclaims its slot; the datapath treats it as absent, and so does [`list`] unless asked.

use std::{
    borrow::{Borrow, BorrowMut},
    collections::HashSet,
    net::{IpAddr, Ipv4Addr, Ipv6Addr},
};

use aya::maps::{HashMap, MapData, MapError, PerCpuArray};
use firewall_common::{
    conntrack::{Config, CtEntry, CtKey, CtState},
    maps::Stat,
};
use serde::Serialize;
use thiserror::Error;

use crate::events::protocol_name;

mod figures;
mod pin;
mod table;

pub use figures::{ConntrackCounter, ConntrackFigures};
pub use pin::{
    CONFIG_PIN, CONNTRACK_PIN, PIN_DIR, PinGuard, PinnedMaps, STATS_PIN, open_pinned, pin,
};
pub use table::format_table;

const NANOS_PER_SECOND: u64 = 1_000_000_000;

/// Errors of reading, flushing and pinning the conntrack map.
#[derive(Debug, Error)]
pub enum ConntrackError {
    /// A map operation failed.
    #[error("map {map}: {source}")]
    Map {
        /// Map name.
        map: &'static str,
        /// What failed.
        source: MapError,
    },
    /// The monotonic clock could not be read.
    #[error("reading CLOCK_MONOTONIC_COARSE: {0}")]
    Clock(std::io::Error),
    /// A pin already exists: another `firewall run` holds it, or one crashed.
    #[error(
        "another firewall run seems active (pin {} exists); if it crashed, remove {}",
        .path.display(),
        .path.display()
    )]
    PinExists {
        /// The pin found.
        path: std::path::PathBuf,
    },
    /// No pin: no `firewall run` is active.
    #[error("no `firewall run` is active (no pinned map at {})", .path.display())]
    NotRunning {
        /// The pin looked for.
        path: std::path::PathBuf,
    },
    /// Pinning a map failed.
    #[error("pinning {} (is bpffs mounted at /sys/fs/bpf?): {source}", .path.display())]
    Pin {
        /// The pin path.
        path: std::path::PathBuf,
        /// What the kernel said.
        source: aya::pin::PinError,
    },
    /// Creating the pin directory or removing a pin failed.
    #[error("{action} {}: {source}", .path.display())]
    Io {
        /// What was being done ("creating", "removing").
        action: &'static str,
        /// The path.
        path: std::path::PathBuf,
        /// What the filesystem said.
        source: std::io::Error,
    },
    /// The kernel would not describe a loaded program (needs 4.15+).
    #[error("asking the kernel which maps the programs use: {0}")]
    ProgramInfo(aya::programs::ProgramError),
    /// A map the datapath should have is not attached to its programs.
    #[error("map {0} is not used by the loaded programs")]
    MissingMap(&'static str),
    /// The datapath could not be asked for its maps.
    #[error(transparent)]
    Datapath(#[from] crate::datapath::DatapathError),
}

/// One tracked flow, ready to show or serialize.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct FlowRecord {
    /// 4 or 6.
    pub family: u8,
    /// Protocol name (`tcp`, `udp`, `icmp`, ... or `proto N`).
    pub protocol: String,
    /// Address of the side that opened the flow.
    pub source: IpAddr,
    /// Its port, for TCP, UDP and SCTP.
    pub source_port: Option<u16>,
    /// Address of the side the flow was opened to.
    pub destination: IpAddr,
    /// Its port, for TCP, UDP and SCTP.
    pub destination_port: Option<u16>,
    /// The echo identifier, for ICMP and ICMPv6 echo.
    pub echo_id: Option<u16>,
    /// [`CtState::name`], or `state N` for a code this build does not know.
    pub state: String,
    /// Whether the other side has answered.
    pub seen_reply: bool,
    /// The rule that allowed the opening packet.
    pub rule_id: u32,
    /// Identity of the source when the flow was opened.
    pub source_identity: u32,
    /// Identity of the destination when the flow was opened.
    pub destination_identity: u32,
    /// Seconds since the flow was opened.
    pub age_seconds: u64,
    /// Seconds since its last packet.
    pub idle_seconds: u64,
    /// Seconds left before it expires (0 once expired).
    pub expires_in_seconds: u64,
    /// Whether it has outlived its state's lifetime: the datapath treats it as absent.
    pub expired: bool,
}

impl FlowRecord {
    /// The record of one map entry at time `now_ns` (coarse monotonic), with lifetimes from
    /// `config`.
    pub fn new(key: &CtKey, entry: &CtEntry, now_ns: u64, config: &Config) -> FlowRecord {
        let state = CtState::from_code(entry.state);
        let idle_ns = now_ns.saturating_sub(entry.last_seen_ns);
        // The datapath's own rule, so the listing expires flows exactly when it does.
        let lifetime_ns = config.lifetime_ns(entry.state);
        let (ports, echo) = match key.protocol {
            1 | 58 => ((None, None), Some(key.source_port)),
            6 | 17 | 132 => ((Some(key.source_port), Some(key.destination_port)), None),
            _ => ((None, None), None),
        };
        FlowRecord {
            family: key.family,
            protocol: protocol_name(key.protocol),
            source: address(key.family, &key.source),
            source_port: ports.0,
            destination: address(key.family, &key.destination),
            destination_port: ports.1,
            echo_id: echo,
            state: state.map_or_else(|| format!("state {}", entry.state), |s| s.name().into()),
            seen_reply: entry.flags & CtEntry::SEEN_REPLY != 0,
            rule_id: entry.rule_id,
            source_identity: entry.source_identity,
            destination_identity: entry.destination_identity,
            age_seconds: now_ns.saturating_sub(entry.created_ns) / NANOS_PER_SECOND,
            idle_seconds: idle_ns / NANOS_PER_SECOND,
            expires_in_seconds: lifetime_ns.saturating_sub(idle_ns) / NANOS_PER_SECOND,
            expired: idle_ns > lifetime_ns,
        }
    }
}

/// The flows of a conntrack map at `now_ns` (from [`monotonic_coarse_ns`]), sorted by
/// address; expired ones only when `include_expired`.
///
/// # Errors
/// [`ConntrackError::Map`] when the kernel refuses a read.
pub fn list<T: Borrow<MapData>>(
    map: &HashMap<T, CtKey, CtEntry>,
    now_ns: u64,
    config: &Config,
    include_expired: bool,
) -> Result<Vec<FlowRecord>, ConntrackError> {
    let mut seen = HashSet::new();
    let mut records = Vec::new();
    for item in map.iter() {
        let (key, entry) = item.map_err(map_error)?;
        // A flow deleted while we walk restarts the kernel's walk at the first key, so a key
        // can come twice; keep the first.
        if seen.insert(key) {
            let record = FlowRecord::new(&key, &entry, now_ns, config);
            if include_expired || !record.expired {
                records.push(record);
            }
        }
    }
    records.sort_by(|a, b| {
        (
            a.source,
            a.source_port,
            a.destination,
            a.destination_port,
            &a.protocol,
        )
            .cmp(&(
                b.source,
                b.source_port,
                b.destination,
                b.destination_port,
                &b.protocol,
            ))
    });
    Ok(records)
}

/// How many entries the map holds now, expired ones included.
///
/// # Errors
/// [`ConntrackError::Map`] when the kernel refuses a read.
pub fn count<T: Borrow<MapData>>(map: &HashMap<T, CtKey, CtEntry>) -> Result<u64, ConntrackError> {
    Ok(keys(map)?.len() as u64)
}

/// Deletes every flow and returns how many were deleted. Keys are collected first and then
/// removed; one the datapath removed or evicted in between is skipped. Flows opened while
/// this runs may survive it.
///
/// # Errors
/// [`ConntrackError::Map`] when the kernel refuses a read or a delete.
pub fn flush<T: BorrowMut<MapData>>(
    map: &mut HashMap<T, CtKey, CtEntry>,
) -> Result<u64, ConntrackError> {
    let mut removed = 0;
    for key in keys(map)? {
        match map.remove(&key) {
            Ok(()) => removed += 1,
            Err(e) if is_not_found(&e) => {}
            Err(e) => return Err(map_error(e)),
        }
    }
    Ok(removed)
}

/// Adds `flushed` to [`Stat::ConntrackFlushed`] in CPU 0's slot of `DATAPATH_STATS`.
///
/// Userspace can only write all CPUs' slots at once, so this reads them, adds to CPU 0's and
/// writes them back: a datapath increment on another CPU between the read and the write is
/// lost. Only the stats of the rare conntrack events are at risk, for microseconds per flush.
///
/// # Errors
/// [`ConntrackError::Map`] when the kernel refuses the read or the write.
pub fn add_flushed<T: BorrowMut<MapData>>(
    stats: &mut PerCpuArray<T, u64>,
    flushed: u64,
) -> Result<(), ConntrackError> {
    let index = Stat::ConntrackFlushed as u32;
    let stats_error = |source| ConntrackError::Map {
        map: firewall_common::maps::DATAPATH_STATS,
        source,
    };
    let mut values: Vec<u64> = stats.get(&index, 0).map_err(stats_error)?.to_vec();
    if let Some(cpu0) = values.first_mut() {
        *cpu0 = cpu0.saturating_add(flushed);
    }
    let values = values
        .try_into()
        .map_err(|e| stats_error(MapError::IoError(e)))?;
    stats.set(index, values, 0).map_err(stats_error)
}

/// Reads `CLOCK_MONOTONIC_COARSE` in nanoseconds, the clock of `bpf_ktime_get_coarse_ns`.
///
/// # Errors
/// [`ConntrackError::Clock`] if the clock cannot be read (it always can on Linux 2.6.32+).
pub fn monotonic_coarse_ns() -> Result<u64, ConntrackError> {
    let now = nix::time::clock_gettime(nix::time::ClockId::CLOCK_MONOTONIC_COARSE)
        .map_err(|errno| ConntrackError::Clock(errno.into()))?;
    // The monotonic clock counts from boot: neither field is negative.
    let seconds = u64::try_from(now.tv_sec()).unwrap_or(0);
    let nanos = u64::try_from(now.tv_nsec()).unwrap_or(0);
    Ok(seconds * NANOS_PER_SECOND + nanos)
}

/// The map's keys, each once.
fn keys<T: Borrow<MapData>>(
    map: &HashMap<T, CtKey, CtEntry>,
) -> Result<Vec<CtKey>, ConntrackError> {
    let mut seen = HashSet::new();
    let mut out = Vec::new();
    for key in map.keys() {
        let key = key.map_err(map_error)?;
        if seen.insert(key) {
            out.push(key);
        }
    }
    Ok(out)
}

fn is_not_found(error: &MapError) -> bool {
    match error {
        MapError::KeyNotFound => true,
        MapError::SyscallError(e) => e.io_error.raw_os_error() == Some(libc::ENOENT),
        _ => false,
    }
}

fn map_error(source: MapError) -> ConntrackError {
    ConntrackError::Map {
        map: firewall_common::conntrack::CONNTRACK,
        source,
    }
}

fn address(family: u8, bytes: &[u8; 16]) -> IpAddr {
    if family == 6 {
        IpAddr::V6(Ipv6Addr::from(*bytes))
    } else {
        IpAddr::V4(Ipv4Addr::new(bytes[0], bytes[1], bytes[2], bytes[3]))
    }
}

#[cfg(test)]
mod tests;
