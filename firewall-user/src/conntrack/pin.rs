//! Pinning the running datapath's conntrack, config and stats maps in bpffs, so another
//! process (`firewall conntrack list|flush`) can open them while `firewall run` runs.
//!
//! The pins sit where the daemon pins the same maps (`/sys/fs/bpf/firewall/v<layout>/`, see
//! [`crate::datapath::pinning`]), so `firewall conntrack` reaches whichever is running.

use std::path::{Path, PathBuf};

use aya::maps::{Array, HashMap, Map, MapData, MapError, PerCpuArray};
use firewall_common::{
    Hook,
    conntrack::{self, Config, CtEntry, CtKey},
    maps,
};

use super::ConntrackError;
use crate::datapath::Datapath;

/// Directory of the pins, on the BPF filesystem: the pin root, then the layout version
/// ([`crate::datapath::pinning::LAYOUT_VERSION`], bumped by any change to [`CtKey`],
/// [`CtEntry`], [`Config`] or the `DATAPATH_STATS` indices, so a newer `firewall conntrack`
/// never misreads the maps of an older datapath).
pub const PIN_DIR: &str = "/sys/fs/bpf/firewall/v3";
/// Pin of the conntrack map.
pub const CONNTRACK_PIN: &str = "/sys/fs/bpf/firewall/v3/CONNTRACK";
/// Pin of the one-slot config array.
pub const CONFIG_PIN: &str = "/sys/fs/bpf/firewall/v3/CONFIG";
/// Pin of `DATAPATH_STATS`, so a flush from another process is counted in
/// [`Stat::ConntrackFlushed`](firewall_common::maps::Stat::ConntrackFlushed).
pub const STATS_PIN: &str = "/sys/fs/bpf/firewall/v3/DATAPATH_STATS";

/// The maps to pin, by the name the programs declare them with, and where.
const PINS: [(&str, &str); 3] = [
    (conntrack::CONNTRACK, CONNTRACK_PIN),
    (conntrack::CONFIG, CONFIG_PIN),
    (maps::DATAPATH_STATS, STATS_PIN),
];

/// The pins one `firewall run` made; dropping it removes them (best effort, logged).
#[derive(Debug)]
#[must_use = "dropping the guard removes the pins"]
pub struct PinGuard {
    created: Vec<PathBuf>,
}

impl PinGuard {
    /// Removes the pins now, reporting the first failure. A pin already gone is fine.
    ///
    /// # Errors
    /// [`ConntrackError::Io`] when a pin exists and cannot be removed.
    pub fn unpin(mut self) -> Result<(), ConntrackError> {
        remove_pins(std::mem::take(&mut self.created))
    }
}

impl Drop for PinGuard {
    fn drop(&mut self) {
        if let Err(e) = remove_pins(std::mem::take(&mut self.created)) {
            log::warn!("{e}");
        }
    }
}

/// Pins the datapath's conntrack, config and stats maps at [`CONNTRACK_PIN`], [`CONFIG_PIN`]
/// and [`STATS_PIN`], creating [`PIN_DIR`] if needed. The maps are found among those the
/// loaded programs use (kernel 4.15+ reports them).
///
/// A pin that already exists is never replaced: it belongs to another `firewall run`, or to
/// one that crashed, and the two cannot be told apart from here.
///
/// # Errors
/// [`ConntrackError::PinExists`] when a pin is already there (nothing is pinned then);
/// [`ConntrackError::Pin`] when bpffs is not mounted at `/sys/fs/bpf` or refuses,
/// [`ConntrackError::Io`] when [`PIN_DIR`] cannot be created;
/// [`ConntrackError::MissingMap`] or [`ConntrackError::ProgramInfo`] when the maps cannot be
/// found.
pub fn pin(datapath: &mut Datapath) -> Result<PinGuard, ConntrackError> {
    std::fs::create_dir_all(PIN_DIR).map_err(|source| ConntrackError::Io {
        action: "creating",
        path: PIN_DIR.into(),
        source,
    })?;
    let maps = program_maps(datapath)?;
    let mut guard = PinGuard {
        created: Vec::new(),
    };
    for (name, path) in PINS {
        let map = maps
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, map)| map)
            .ok_or(ConntrackError::MissingMap(name))?;
        match map.pin(path) {
            Ok(()) => guard.created.push(path.into()),
            Err(aya::pin::PinError::SyscallError(e))
                if e.io_error.kind() == std::io::ErrorKind::AlreadyExists =>
            {
                return Err(ConntrackError::PinExists { path: path.into() });
            }
            Err(source) => {
                return Err(ConntrackError::Pin {
                    path: path.into(),
                    source,
                });
            }
        }
    }
    Ok(guard)
}

/// The maps of a running `firewall run`, opened from their pins.
pub struct PinnedMaps {
    /// The flows.
    pub conntrack: HashMap<MapData, CtKey, CtEntry>,
    /// The datapath's statistics.
    pub stats: PerCpuArray<MapData, u64>,
    /// Lifetimes and policy revision, as read at opening.
    pub config: Config,
}

/// Opens the pins of a running `firewall run`. Key and value sizes are checked against this
/// build's layout.
///
/// # Errors
/// [`ConntrackError::NotRunning`] when there is no pin; [`ConntrackError::Map`] when a pin
/// cannot be opened or does not have the expected layout.
pub fn open_pinned() -> Result<PinnedMaps, ConntrackError> {
    let conntrack = open(CONNTRACK_PIN, conntrack::CONNTRACK)?;
    let config = open(CONFIG_PIN, conntrack::CONFIG)?;
    let stats = open(STATS_PIN, maps::DATAPATH_STATS)?;
    let config: Array<MapData, Config> = typed(config, conntrack::CONFIG)?;
    Ok(PinnedMaps {
        conntrack: typed(conntrack, conntrack::CONNTRACK)?,
        stats: typed(stats, maps::DATAPATH_STATS)?,
        config: config.get(&0, 0).map_err(map_error(conntrack::CONFIG))?,
    })
}

fn open(path: &'static str, name: &'static str) -> Result<Map, ConntrackError> {
    let data = MapData::from_pin(path).map_err(|e| match e {
        MapError::SyscallError(ref s) if s.io_error.kind() == std::io::ErrorKind::NotFound => {
            ConntrackError::NotRunning { path: path.into() }
        }
        source => ConntrackError::Map { map: name, source },
    })?;
    Map::from_map_data(data).map_err(map_error(name))
}

fn typed<M: TryFrom<Map, Error = MapError>>(
    map: Map,
    name: &'static str,
) -> Result<M, ConntrackError> {
    M::try_from(map).map_err(map_error(name))
}

/// Every map the datapath's live programs use, with its kernel name.
fn program_maps(datapath: &mut Datapath) -> Result<Vec<(String, MapData)>, ConntrackError> {
    let mut ids = Vec::new();
    for hook in [Hook::TcIngress, Hook::TcEgress, Hook::Xdp] {
        let info = match hook {
            Hook::Xdp => datapath.xdp()?.info(),
            hook => datapath.tc(hook)?.info(),
        };
        let map_ids = info
            .and_then(|info| info.map_ids())
            .map_err(ConntrackError::ProgramInfo)?;
        ids.extend(map_ids.unwrap_or_default());
    }
    ids.sort_unstable();
    ids.dedup();
    let mut out = Vec::new();
    for id in ids {
        let map = MapData::from_id(id).map_err(map_error("(by id)"))?;
        let info = map.info().map_err(map_error("(by id)"))?;
        let name = info.name_as_str().unwrap_or_default().to_owned();
        out.push((name, map));
    }
    Ok(out)
}

fn remove_pins(paths: Vec<PathBuf>) -> Result<(), ConntrackError> {
    let mut first_error = None;
    for path in paths {
        match std::fs::remove_file(&path) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(source) => {
                first_error.get_or_insert(ConntrackError::Io {
                    action: "removing",
                    path,
                    source,
                });
            }
        }
    }
    // Left in place while other pins (the daemon's, another layout's) are in them.
    let dir = Path::new(PIN_DIR);
    let _ = std::fs::remove_dir(dir);
    if let Some(root) = dir.parent() {
        let _ = std::fs::remove_dir(root);
    }
    first_error.map_or(Ok(()), Err)
}

fn map_error(map: &'static str) -> impl Fn(MapError) -> ConntrackError {
    move |source| ConntrackError::Map { map, source }
}
