//! What the datapath has counted, in one report: packets and bytes per reason and per rule,
//! the identity pairs with the most drops, connection tracking, how full each map is, and the
//! records the datapath could not send.
//!
//! `GET /v1/stats` (and so `firewall stats`) answers with a [`StatsReport`]; the Prometheus
//! endpoint ([`crate::metrics`]) renders the same report, so both always agree on what a
//! figure means. Every figure is read from the maps when the report is made: counters are
//! per-CPU and summed here, nothing is kept in the daemon between reports except the
//! conntrack figures of [`ConntrackCache`], whose count walks the whole conntrack map.

use std::ops::DerefMut;

use firewall_common::{Identity, Reason, maps::Stat};
use serde::{Deserialize, Serialize};
use thiserror::Error;

use crate::{
    conntrack::{ConntrackError, ConntrackFigures},
    daemon::controller::Controller,
    datapath::{Datapath, DatapathError, MapFill},
    policy::Policy,
};

mod cache;

pub use cache::{ConntrackCache, Freshness};

/// How many of the most-dropped identity pairs the table and the metrics show; the JSON
/// report has them all.
pub const TOP_DROPPED_PAIRS: usize = 10;

/// Why a report could not be made.
#[derive(Debug, Error)]
pub enum StatsError {
    /// The daemon has no kernel datapath (a store-only controller), so there is nothing to
    /// count.
    #[error(
        "this daemon runs without a datapath (no eBPF maps are loaded), so it has no counters \
         to report"
    )]
    NoDatapath,
    /// A counter map could not be read.
    #[error("reading the counters: {0}")]
    Datapath(#[from] DatapathError),
    /// The conntrack map could not be read.
    #[error("reading connection tracking: {0}")]
    Conntrack(#[from] ConntrackError),
}

/// Everything the datapath counted, as `GET /v1/stats` answers it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct StatsReport {
    /// Every reason, in code order, zero counts included.
    pub reasons: Vec<ReasonStats>,
    /// Every rule of the policy in force, by id.
    pub rules: Vec<RuleStats>,
    /// Every identity pair with drops the datapath still tracks, most packets first.
    pub dropped_pairs: Vec<DroppedPair>,
    /// The conntrack map's figures.
    pub conntrack: ConntrackStats,
    /// Each map's entries against its capacity.
    pub maps: Vec<MapStats>,
    /// Records the datapath could not send.
    pub losses: Losses,
}

/// Packets and bytes of one reason, summed over CPUs.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReasonStats {
    /// [`Reason::name`], such as `denied-by-default`.
    pub reason: String,
    /// The reason's code.
    pub code: u8,
    /// `allow` or `drop`.
    pub verdict: String,
    /// Packets.
    pub packets: u64,
    /// Bytes (whole frames as the hook saw them).
    pub bytes: u64,
}

/// What one rule allowed. Packets of a tracked flow count under the rule that opened it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct RuleStats {
    /// Rule id.
    pub id: u32,
    /// The rule as text, such as `frontend -> backend tcp 8081`.
    pub rule: String,
    /// Packets allowed.
    pub packets: u64,
    /// Bytes allowed.
    pub bytes: u64,
    /// Flows opened.
    pub flows: u64,
}

/// Drops from one identity to another.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct DroppedPair {
    /// Source app, network, `world`, or `identity N` for one the policy no longer names.
    pub source: String,
    /// Destination, named the same way.
    pub destination: String,
    /// Source identity.
    pub source_identity: Identity,
    /// Destination identity.
    pub destination_identity: Identity,
    /// Packets dropped.
    pub packets: u64,
    /// Bytes dropped.
    pub bytes: u64,
}

/// The conntrack map's figures (see [`ConntrackFigures`]).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ConntrackStats {
    /// Entries in the map, expired ones included.
    pub entries: u64,
    /// Entries the map holds at most.
    pub capacity: u64,
    /// Flows the datapath created.
    pub created: u64,
    /// Flows the datapath deleted (revoked rules).
    pub deleted: u64,
    /// Flows `firewall conntrack flush` removed.
    pub flushed: u64,
    /// Flows the LRU map dropped, expired or evicted for room.
    pub reclaimed: u64,
    /// Inserts the kernel refused.
    pub insert_failed: u64,
}

/// One map's entries against its capacity.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct MapStats {
    /// Short name: `ipcache_hosts_v4`, `ipcache_hosts_v6`, `ipcache_prefixes_v4`,
    /// `ipcache_prefixes_v6`, `policy_exact`, `policy_trie`, `rule_ids` or `conntrack`.
    pub map: String,
    /// The map in the eBPF object.
    pub kernel_map: String,
    /// Entries in use (for `rule_ids`, the highest id in use).
    pub entries: u64,
    /// Capacity (for `rule_ids`, the highest usable id).
    pub capacity: u64,
}

/// Records the datapath counted instead of sending.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Losses {
    /// Flow records that did not fit in the ring buffer.
    pub flow_records_lost: u64,
    /// Flow records held back because their CPU was over the per-CPU record rate.
    pub flow_records_rate_limited: u64,
    /// Trace observations that did not fit in their ring buffer.
    pub trace_observations_lost: u64,
}

impl StatsReport {
    /// The report of the daemon behind `controller` (its lock guard, or the controller
    /// itself): rules and identities named by the policy in force, conntrack figures through
    /// `conntrack` as `freshness` asks.
    ///
    /// Everything but the conntrack figures is read with `controller`, which is then dropped
    /// (releasing a lock guard) before the conntrack map is walked, so a walk of a large map
    /// never holds up a policy change. Nothing is written.
    ///
    /// # Errors
    /// [`StatsError::NoDatapath`] for a controller without a datapath; otherwise a map that
    /// cannot be read.
    pub fn gather<C: DerefMut<Target = Controller>>(
        mut controller: C,
        conntrack: &ConntrackCache,
        freshness: Freshness,
    ) -> Result<StatsReport, StatsError> {
        let policy = controller.model().to_policy();
        let enforcer = controller.enforcer().ok_or(StatsError::NoDatapath)?;
        let fill = enforcer.policy_fill();
        let datapath = enforcer.datapath();
        conntrack.prepare(datapath)?;
        let mut report = StatsReport::read_counters(&policy, datapath, &fill)?;
        drop(controller);
        report.add_conntrack(conntrack.read(freshness)?, conntrack.capacity());
        Ok(report)
    }

    /// Everything but the conntrack figures, which are left at zero and out of `maps`.
    fn read_counters(
        policy: &Policy,
        datapath: &Datapath,
        policy_fill: &[MapFill],
    ) -> Result<StatsReport, StatsError> {
        let counted = datapath.reason_counters()?;
        let reasons = Reason::ALL
            .iter()
            .map(|reason| {
                let counter = counted
                    .iter()
                    .find(|(r, _)| r == reason)
                    .map(|(_, c)| *c)
                    .unwrap_or_default();
                ReasonStats {
                    reason: reason.name().into(),
                    code: *reason as u8,
                    verdict: reason.verdict().name().into(),
                    packets: counter.packets,
                    bytes: counter.bytes,
                }
            })
            .collect();
        let mut rules = Vec::with_capacity(policy.rules.len());
        for rule in &policy.rules {
            let counter = datapath.rule_counter(rule.id)?;
            rules.push(RuleStats {
                id: rule.id,
                rule: policy.describe_rule(rule),
                packets: counter.packets,
                bytes: counter.bytes,
                flows: counter.flows,
            });
        }
        rules.sort_by_key(|rule| rule.id);
        let name = |id: Identity| match policy.identity_name(id) {
            Some(name) => name.to_owned(),
            None => format!("identity {id}"),
        };
        let dropped_pairs = datapath
            .drop_pairs()?
            .into_iter()
            .map(|pair| DroppedPair {
                source: name(pair.source),
                destination: name(pair.destination),
                source_identity: pair.source,
                destination_identity: pair.destination,
                packets: pair.dropped.packets,
                bytes: pair.dropped.bytes,
            })
            .collect();
        let maps = policy_fill
            .iter()
            .map(|fill| MapStats {
                map: fill.name.into(),
                kernel_map: fill.kernel_map.into(),
                entries: fill.entries,
                capacity: fill.capacity,
            })
            .collect();
        let losses = Losses {
            flow_records_lost: datapath.stat(Stat::FlowEventsLost)?,
            flow_records_rate_limited: datapath.stat(Stat::FlowEventsRateLimited)?,
            trace_observations_lost: datapath.stat(Stat::TraceEventsLost)?,
        };
        Ok(StatsReport {
            reasons,
            rules,
            dropped_pairs,
            conntrack: ConntrackStats::default(),
            maps,
            losses,
        })
    }

    /// Fills in the conntrack figures, and the conntrack map's line of `maps`.
    fn add_conntrack(&mut self, figures: ConntrackFigures, capacity: u64) {
        self.conntrack = ConntrackStats {
            entries: figures.present,
            capacity,
            created: figures.created,
            deleted: figures.deleted,
            flushed: figures.flushed,
            reclaimed: figures.reclaimed(),
            insert_failed: figures.insert_failed,
        };
        self.maps.push(MapStats {
            map: "conntrack".into(),
            kernel_map: firewall_common::conntrack::CONNTRACK.into(),
            entries: figures.present,
            capacity,
        });
    }
}
