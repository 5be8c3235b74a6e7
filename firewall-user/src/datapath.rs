//! Loading the eBPF programs and filling their maps from a compiled policy.
//!
//! A [`Datapath`] owns one loaded copy of the programs and maps. It is not attached anywhere
//! by itself: [`crate::attach`] hooks it to interfaces, [`crate::replay`] runs packets through
//! it with `BPF_PROG_TEST_RUN`.
//!
//! Needs root (CAP_BPF and CAP_NET_ADMIN), a kernel with BTF and LPM tries (4.20+), ring
//! buffers (5.8+) and `bpf_xdp_load_bytes` (5.18+).

use aya::{
    Ebpf, EbpfLoader,
    maps::{Array, HashMap, MapData, PerCpuArray},
    programs::{ProgramError, SchedClassifier, Xdp},
};
use firewall_common::{
    Counter, Decision, Hook, Reason,
    conntrack::{self, Config, CtEntry, CtKey},
    maps::{self, Stat, capacity},
};
use std::path::{Path, PathBuf};

use thiserror::Error;

mod fill;
pub mod pinning;
mod placement;
mod readback;
mod swap;
mod telemetry;

pub use fill::MapFill;
pub use telemetry::{DropPair, TRACE_CTX_LEN};

/// The compiled programs, built by `build.rs` from the `firewall-ebpf` crate.
static PROGRAMS: &[u8] = aya::include_bytes_aligned!(concat!(env!("OUT_DIR"), "/firewall"));

/// Program names in the object, one per hook.
pub const TC_INGRESS: &str = "firewall_tc_ingress";
/// See [`TC_INGRESS`].
pub const TC_EGRESS: &str = "firewall_tc_egress";
/// See [`TC_INGRESS`].
pub const XDP: &str = "firewall_xdp";
/// Empty programs, the baselines of `firewall bench`.
const BASELINE_TC: &str = "bench_empty_tc";
/// See [`BASELINE_TC`].
const BASELINE_XDP: &str = "bench_empty_xdp";

/// Errors of loading and filling the datapath.
#[derive(Debug, Error)]
pub enum DatapathError {
    /// The object could not be loaded (map creation, BTF, relocation).
    #[error("loading the eBPF object failed (are you root, is /sys/fs/bpf mounted?): {0}")]
    Load(#[from] aya::EbpfError),
    /// The kernel rejected a program; the verifier log is in the source.
    #[error("the kernel rejected program {program}: {source}")]
    Program {
        /// Program name.
        program: &'static str,
        /// What the kernel said.
        source: ProgramError,
    },
    /// A map the programs should declare is not in the object.
    #[error("map {0} is missing from the eBPF object")]
    MissingMap(&'static str),
    /// A map operation failed.
    #[error("map {map}: {source}")]
    Map {
        /// Map name.
        map: &'static str,
        /// What failed.
        source: aya::maps::MapError,
    },
    /// A pinned map does not have the layout this build expects.
    #[error(
        "pinned map {path} is {found}, this build expects {expected}; it was left by another \
         version: run `firewall daemon --uninstall` to remove the old pins (enforcement stops \
         until the daemon starts again)"
    )]
    Layout {
        /// The pin.
        path: String,
        /// What is pinned.
        found: String,
        /// What this build needs.
        expected: String,
    },
    /// The policy does not fit: nothing was written.
    #[error("policy needs {needed} entries in map {map}, which holds {limit}; nothing was loaded")]
    Capacity {
        /// Map name.
        map: &'static str,
        /// Entries the policy needs.
        needed: usize,
        /// The map's capacity.
        limit: u32,
    },
    /// [`Datapath::commit_swap`] was called without a prepared generation.
    #[error("no policy generation was prepared to swap in")]
    NoSwapPrepared,
}

/// Map sizes. Kernel maps cannot grow after creation, so these are fixed at load.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Capacities {
    /// IPv4 app instance addresses.
    pub ipcache_hosts_v4: u32,
    /// IPv6 app instance addresses.
    pub ipcache_hosts_v6: u32,
    /// IPv4 network prefixes.
    pub ipcache_v4: u32,
    /// IPv6 network prefixes.
    pub ipcache_v6: u32,
    /// Single-port policy entries.
    pub policy_exact: u32,
    /// Shorter policy entries.
    pub policy: u32,
    /// Rule ids (the largest usable id is one less).
    pub rules: u32,
}

impl Default for Capacities {
    fn default() -> Self {
        Capacities {
            ipcache_hosts_v4: capacity::IPCACHE_HOSTS_V4,
            ipcache_hosts_v6: capacity::IPCACHE_HOSTS_V6,
            ipcache_v4: capacity::IPCACHE_V4,
            ipcache_v6: capacity::IPCACHE_V6,
            policy_exact: capacity::POLICY_EXACT,
            policy: capacity::POLICY,
            rules: capacity::RULES,
        }
    }
}

/// How to load the programs.
#[derive(Clone, Copy, Debug)]
pub struct LoadOptions {
    /// Map sizes.
    pub capacities: Capacities,
    /// Flows the conntrack map holds; the least recently used is evicted beyond that.
    pub conntrack_entries: u32,
    /// Datagrams whose fragments are tracked at once.
    pub fragment_entries: u32,
    /// Lifetimes (the revision and generation are managed by [`Datapath`]).
    pub config: Config,
    /// Keep the last decision in the `DECISION` map (replay and benchmarks). Off for live
    /// enforcement, where the verifier then removes that code.
    pub replay: bool,
    /// Look up the trace slot on every packet, so traces work. Only the benchmark's
    /// baseline turns it off.
    pub traces: bool,
}

impl Default for LoadOptions {
    fn default() -> Self {
        LoadOptions {
            capacities: Capacities::default(),
            conntrack_entries: conntrack::DEFAULT_CONNTRACK_ENTRIES,
            fragment_entries: conntrack::DEFAULT_FRAGMENT_ENTRIES,
            config: Config::default(),
            replay: false,
            traces: true,
        }
    }
}

/// One loaded copy of the programs and their maps.
pub struct Datapath {
    ebpf: Ebpf,
    capacities: Capacities,
    /// The generation [`Datapath::prepare_swap`] filled, until it is committed.
    prepared: Option<u8>,
}

impl Datapath {
    /// Loads the object and every program into the kernel (the verifier runs here).
    ///
    /// # Errors
    /// [`DatapathError::Load`] or [`DatapathError::Program`] when the kernel refuses.
    pub fn load(options: &LoadOptions) -> Result<Self, DatapathError> {
        Self::load_with(options, None)
    }

    /// As [`Datapath::load`], with the maps pinned in `dir` (see [`pinning`]): maps already
    /// pinned there are reused, contents and all, after their layout is checked; the others
    /// are created and pinned.
    ///
    /// # Errors
    /// [`DatapathError::Layout`] when a pinned map differs from what this build expects.
    pub fn load_pinned(options: &LoadOptions, dir: &Path) -> Result<Self, DatapathError> {
        pinning::check(options, dir)?;
        Self::load_with(options, Some(dir))
    }

    fn load_with(options: &LoadOptions, pin_dir: Option<&Path>) -> Result<Self, DatapathError> {
        let caps = options.capacities;
        let replay = u8::from(options.replay);
        let traces = u8::from(options.traces);
        let mut loader = EbpfLoader::new();
        let pin_paths: Vec<(&'static str, PathBuf)> = match pin_dir {
            Some(dir) => pinning::PINNED
                .iter()
                .map(|name| (*name, dir.join(name)))
                .collect(),
            None => Vec::new(),
        };
        for (name, path) in &pin_paths {
            loader.map_pin_path(name, path.as_path());
        }
        let mut ebpf = loader
            .map_max_entries(maps::IPCACHE_HOSTS_V4, caps.ipcache_hosts_v4)
            .map_max_entries(maps::IPCACHE_HOSTS_V6, caps.ipcache_hosts_v6)
            .map_max_entries(maps::IPCACHE_V4, caps.ipcache_v4)
            .map_max_entries(maps::IPCACHE_V6, caps.ipcache_v6)
            .map_max_entries(maps::POLICY_EXACT, caps.policy_exact)
            .map_max_entries(maps::POLICY, caps.policy)
            .map_max_entries(maps::RULE_COUNTERS, caps.rules)
            .map_max_entries(conntrack::CONNTRACK, options.conntrack_entries)
            .map_max_entries(conntrack::FRAGMENTS, options.fragment_entries)
            .override_global(maps::REPLAY_GLOBAL, &replay, true)
            .override_global(maps::TRACES_GLOBAL, &traces, true)
            .load(PROGRAMS)?;
        for name in [TC_INGRESS, TC_EGRESS] {
            let program: &mut SchedClassifier = program_mut(&mut ebpf, name)?;
            program.load().map_err(|source| DatapathError::Program {
                program: name,
                source,
            })?;
        }
        let xdp: &mut Xdp = program_mut(&mut ebpf, XDP)?;
        xdp.load().map_err(|source| DatapathError::Program {
            program: XDP,
            source,
        })?;
        let mut datapath = Datapath {
            ebpf,
            capacities: caps,
            prepared: None,
        };
        // A reused (pinned) slot names the generation the reused maps' entries are in.
        let config = Config {
            generation: datapath.config()?.generation,
            ..options.config
        };
        datapath.set_config(&config)?;
        Ok(datapath)
    }

    /// The runtime configuration the datapath reads.
    pub fn config(&self) -> Result<Config, DatapathError> {
        let array: Array<&MapData, Config> = self.map(conntrack::CONFIG)?;
        array.get(&0, 0).map_err(map_error(conntrack::CONFIG))
    }

    /// Replaces the runtime configuration, `generation` included (see
    /// [`Datapath::swap_in`] for changing it safely).
    pub fn set_config(&mut self, config: &Config) -> Result<(), DatapathError> {
        let mut array: Array<&mut MapData, Config> = self.map_mut(conntrack::CONFIG)?;
        array
            .set(0, config, 0)
            .map_err(map_error(conntrack::CONFIG))
    }

    /// Tells the datapath the policy changed: every tracked flow is checked against the
    /// policy again before its next packet passes, so a revoked rule stops its flows at
    /// their next packet.
    pub fn bump_revision(&mut self) -> Result<u32, DatapathError> {
        let mut config = self.config()?;
        config.revision = config.revision.wrapping_add(1).max(1);
        self.set_config(&config)?;
        Ok(config.revision)
    }

    /// The conntrack map, for listing.
    pub fn conntrack(&self) -> Result<HashMap<&MapData, CtKey, CtEntry>, DatapathError> {
        self.map(conntrack::CONNTRACK)
    }

    /// The conntrack map, writable (flushing).
    pub fn conntrack_mut(
        &mut self,
    ) -> Result<HashMap<&mut MapData, CtKey, CtEntry>, DatapathError> {
        self.map_mut(conntrack::CONNTRACK)
    }

    /// A datapath statistic summed over CPUs.
    pub fn stat(&self, stat: Stat) -> Result<u64, DatapathError> {
        let array: PerCpuArray<&MapData, u64> = self.map(maps::DATAPATH_STATS)?;
        let values = array
            .get(&(stat as u32), 0)
            .map_err(map_error(maps::DATAPATH_STATS))?;
        Ok(values.iter().sum())
    }

    /// The TC program of a hook.
    pub fn tc(&mut self, hook: Hook) -> Result<&mut SchedClassifier, DatapathError> {
        let name = if hook == Hook::TcEgress {
            TC_EGRESS
        } else {
            TC_INGRESS
        };
        program_mut(&mut self.ebpf, name)
    }

    /// The XDP program.
    pub fn xdp(&mut self) -> Result<&mut Xdp, DatapathError> {
        program_mut(&mut self.ebpf, XDP)
    }

    /// The empty TC program benchmarks compare against, loaded on first use.
    pub fn baseline_tc(&mut self) -> Result<&mut SchedClassifier, DatapathError> {
        let program: &mut SchedClassifier = program_mut(&mut self.ebpf, BASELINE_TC)?;
        if program.fd().is_err() {
            program.load().map_err(|source| DatapathError::Program {
                program: BASELINE_TC,
                source,
            })?;
        }
        Ok(program)
    }

    /// The empty XDP program benchmarks compare against, loaded on first use.
    pub fn baseline_xdp(&mut self) -> Result<&mut Xdp, DatapathError> {
        let program: &mut Xdp = program_mut(&mut self.ebpf, BASELINE_XDP)?;
        if program.fd().is_err() {
            program.load().map_err(|source| DatapathError::Program {
                program: BASELINE_XDP,
                source,
            })?;
        }
        Ok(program)
    }

    /// Packets and bytes per reason, summed over CPUs, for every reason with a count.
    pub fn reason_counters(&self) -> Result<Vec<(Reason, Counter)>, DatapathError> {
        let array: PerCpuArray<&MapData, Counter> = self.map(maps::REASON_COUNTERS)?;
        let mut out = Vec::new();
        for reason in Reason::ALL {
            let counter = sum(&array, u32::from(reason as u8), maps::REASON_COUNTERS)?;
            if counter.packets != 0 {
                out.push((reason, counter));
            }
        }
        Ok(out)
    }

    /// The last decision of a program loaded with [`LoadOptions::replay`].
    pub fn decision(&self) -> Result<Decision, DatapathError> {
        let array: Array<&MapData, Decision> = self.map(maps::DECISION)?;
        array.get(&0, 0).map_err(map_error(maps::DECISION))
    }

    pub(crate) fn map<'a, M>(&'a self, name: &'static str) -> Result<M, DatapathError>
    where
        M: TryFrom<&'a aya::maps::Map, Error = aya::maps::MapError>,
    {
        let map = self.ebpf.map(name).ok_or(DatapathError::MissingMap(name))?;
        M::try_from(map).map_err(map_error(name))
    }

    pub(crate) fn map_mut<'a, M>(&'a mut self, name: &'static str) -> Result<M, DatapathError>
    where
        M: TryFrom<&'a mut aya::maps::Map, Error = aya::maps::MapError>,
    {
        let map = self
            .ebpf
            .map_mut(name)
            .ok_or(DatapathError::MissingMap(name))?;
        M::try_from(map).map_err(map_error(name))
    }
}

fn program_mut<'a, P>(ebpf: &'a mut Ebpf, name: &'static str) -> Result<&'a mut P, DatapathError>
where
    &'a mut P: TryFrom<&'a mut aya::programs::Program, Error = ProgramError>,
{
    let program = ebpf.program_mut(name).ok_or(DatapathError::Program {
        program: name,
        source: ProgramError::NotLoaded,
    })?;
    program.try_into().map_err(|source| DatapathError::Program {
        program: name,
        source,
    })
}

pub(crate) fn sum(
    array: &PerCpuArray<&MapData, Counter>,
    index: u32,
    name: &'static str,
) -> Result<Counter, DatapathError> {
    let values = array.get(&index, 0).map_err(map_error(name))?;
    Ok(values.iter().fold(Counter::default(), |acc, c| Counter {
        packets: acc.packets + c.packets,
        bytes: acc.bytes + c.bytes,
    }))
}

pub(crate) fn map_error(map: &'static str) -> impl Fn(aya::maps::MapError) -> DatapathError {
    move |source| DatapathError::Map { map, source }
}
