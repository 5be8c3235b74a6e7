//! The daemon's Prometheus metrics: the [`StatsReport`] in the Prometheus text format, plus
//! how long policy changes take, served on `GET /metrics` when `firewall daemon
//! --metrics-addr` is given (see [`server`]).
//!
//! Counters are read from the maps at every scrape, never kept here, so they stay exact
//! across daemon restarts (the maps are pinned). Only two things live in the daemon: the
//! histogram of `Controller::apply` durations, and the conntrack figures: counting the
//! entries walks the whole map (over a second for a full default map), so a scrape takes the
//! last reading and, when it is older than [`CONNTRACK_MAX_AGE`], has a new one made in the
//! background for the next scrape (see [`ConntrackCache`]).
//!
//! The metrics, all prefixed `firewall_`:
//!
//! | name | type | labels |
//! |---|---|---|
//! | `packets_total`, `bytes_total` | counter | `reason`, `verdict` |
//! | `rule_packets_total`, `rule_bytes_total`, `rule_flows_total` | counter | `rule_id`, `rule` |
//! | `dropped_pair_packets_total`, `dropped_pair_bytes_total` | counter | `source`, `destination` |
//! | `conntrack_entries` | gauge | |
//! | `conntrack_created_total`, `conntrack_deleted_total`, `conntrack_flushed_total`, `conntrack_evictions_total`, `conntrack_insert_failures_total` | counter | |
//! | `map_entries`, `map_capacity` | gauge | `map` |
//! | `flow_records_lost_total`, `flow_records_rate_limited_total`, `trace_observations_lost_total` | counter | |
//! | `policy_apply_duration_seconds` | histogram | |
//!
//! Dropped pairs are the [`TOP_DROPPED_PAIRS`] with the most packets at the scrape, so a pair
//! may come and go between scrapes. Every rule of the policy has its series: a policy of tens
//! of thousands of rules makes scrapes of that many lines per rule metric.

use std::{
    fmt,
    sync::atomic::{AtomicU64, Ordering},
    time::Duration,
};

use prometheus_client::{
    encoding::{EncodeLabelSet, prometheus_text},
    metrics::{
        counter::Counter,
        family::Family,
        gauge::Gauge,
        histogram::{Histogram, exponential_buckets},
    },
    registry::{Registry, Unit},
};

use crate::stats::{ConntrackCache, StatsReport, TOP_DROPPED_PAIRS};

pub mod server;

pub use prometheus_text::CONTENT_TYPE;

/// How long one conntrack reading serves scrapes before a scrape has it refreshed: the
/// conntrack map is walked for scrapes at most this often, and a scrape's conntrack figures
/// are this old plus one scrape interval at most.
pub const CONNTRACK_MAX_AGE: Duration = Duration::from_secs(5);

/// What the daemon keeps for its metrics, shared by the API (which times policy changes)
/// and the metrics endpoint.
#[derive(Debug)]
pub struct DaemonMetrics {
    apply_duration: Histogram,
    conntrack: ConntrackCache,
    /// The highest eviction count shown so far: see [`DaemonMetrics::render`].
    evictions_shown: AtomicU64,
}

impl Default for DaemonMetrics {
    fn default() -> Self {
        DaemonMetrics::new()
    }
}

impl DaemonMetrics {
    /// Empty metrics: no change timed yet, no conntrack reading.
    pub fn new() -> DaemonMetrics {
        DaemonMetrics {
            // 0.5 ms to about 16 s: the daemon bench measures a one-policy change at 4 ms
            // over no rules and half a second over 100,000.
            apply_duration: Histogram::new(exponential_buckets(0.0005, 2.0, 16)),
            conntrack: ConntrackCache::new(CONNTRACK_MAX_AGE),
            evictions_shown: AtomicU64::new(0),
        }
    }

    /// Records how long one `Controller::apply` took.
    pub fn observe_apply(&self, took: Duration) {
        self.apply_duration.observe(took.as_secs_f64());
    }

    /// The conntrack readings the API and the scrapes share.
    pub fn conntrack_cache(&self) -> &ConntrackCache {
        &self.conntrack
    }

    /// `report` and the apply histogram in the Prometheus text format (version 0.0.4).
    ///
    /// Conntrack evictions are an estimate (created minus deleted, flushed and present, see
    /// [`ConntrackFigures::reclaimed`](crate::conntrack::ConntrackFigures::reclaimed)) that
    /// can dip when a count races with the datapath; the counter shows the highest value seen
    /// so it never goes backwards.
    ///
    /// # Errors
    /// Only if formatting fails, which writing to a `String` does not.
    pub fn render(&self, report: &StatsReport) -> Result<String, fmt::Error> {
        let mut registry = Registry::with_prefix("firewall");
        register_reasons(&mut registry, report);
        register_rules(&mut registry, report);
        register_dropped_pairs(&mut registry, report);
        let evictions = self
            .evictions_shown
            .fetch_max(report.conntrack.reclaimed, Ordering::Relaxed)
            .max(report.conntrack.reclaimed);
        register_conntrack(&mut registry, report, evictions);
        register_maps(&mut registry, report);
        let losses = [
            (
                "flow_records_lost",
                "Flow records that did not fit in the ring buffer",
                report.losses.flow_records_lost,
            ),
            (
                "flow_records_rate_limited",
                "Flow records held back by the datapath's per-CPU rate limit",
                report.losses.flow_records_rate_limited,
            ),
            (
                "trace_observations_lost",
                "Trace observations that did not fit in their ring buffer",
                report.losses.trace_observations_lost,
            ),
        ];
        for (name, help, value) in losses {
            registry.register(name, help, counter(value));
        }
        registry.register_with_unit(
            "policy_apply_duration",
            "Time to validate, store and enforce one policy change made through the API",
            Unit::Seconds,
            self.apply_duration.clone(),
        );
        let mut text = String::new();
        prometheus_text::encode(&mut text, &registry)?;
        Ok(text)
    }
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ReasonLabels {
    reason: String,
    verdict: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RuleLabels {
    rule_id: String,
    rule: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct PairLabels {
    source: String,
    destination: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct MapLabels {
    map: String,
}

fn counter(value: u64) -> Counter {
    let counter = Counter::default();
    counter.inc_by(value);
    counter
}

fn gauge(value: u64) -> Gauge {
    let gauge = Gauge::default();
    gauge.set(i64::try_from(value).unwrap_or(i64::MAX));
    gauge
}

fn register_reasons(registry: &mut Registry, report: &StatsReport) {
    let packets = Family::<ReasonLabels, Counter>::default();
    let bytes = Family::<ReasonLabels, Counter>::default();
    for reason in &report.reasons {
        let labels = ReasonLabels {
            reason: reason.reason.clone(),
            verdict: reason.verdict.clone(),
        };
        packets.get_or_create(&labels).inc_by(reason.packets);
        bytes.get_or_create(&labels).inc_by(reason.bytes);
    }
    registry.register("packets", "Packets judged, by reason and verdict", packets);
    registry.register("bytes", "Bytes judged, by reason and verdict", bytes);
}

fn register_rules(registry: &mut Registry, report: &StatsReport) {
    let packets = Family::<RuleLabels, Counter>::default();
    let bytes = Family::<RuleLabels, Counter>::default();
    let flows = Family::<RuleLabels, Counter>::default();
    for rule in &report.rules {
        let labels = RuleLabels {
            rule_id: rule.id.to_string(),
            rule: rule.rule.clone(),
        };
        packets.get_or_create(&labels).inc_by(rule.packets);
        bytes.get_or_create(&labels).inc_by(rule.bytes);
        flows.get_or_create(&labels).inc_by(rule.flows);
    }
    let help = "Packets a rule allowed, its flows' later packets included";
    registry.register("rule_packets", help, packets);
    registry.register("rule_bytes", "Bytes a rule allowed", bytes);
    registry.register("rule_flows", "Flows a rule opened", flows);
}

fn register_dropped_pairs(registry: &mut Registry, report: &StatsReport) {
    let packets = Family::<PairLabels, Counter>::default();
    let bytes = Family::<PairLabels, Counter>::default();
    for pair in report.dropped_pairs.iter().take(TOP_DROPPED_PAIRS) {
        let labels = PairLabels {
            source: pair.source.clone(),
            destination: pair.destination.clone(),
        };
        packets.get_or_create(&labels).inc_by(pair.packets);
        bytes.get_or_create(&labels).inc_by(pair.bytes);
    }
    let help = "Packets dropped from one app, network or world to another, for the pairs \
                with the most drops";
    registry.register("dropped_pair_packets", help, packets);
    let help = "Bytes dropped between the pairs of firewall_dropped_pair_packets_total";
    registry.register("dropped_pair_bytes", help, bytes);
}

fn register_conntrack(registry: &mut Registry, report: &StatsReport, evictions: u64) {
    let c = &report.conntrack;
    registry.register(
        "conntrack_entries",
        "Entries in the conntrack map, expired ones included",
        gauge(c.entries),
    );
    let counters = [
        ("conntrack_created", "Flows the datapath created", c.created),
        (
            "conntrack_deleted",
            "Flows the datapath deleted when their rule was revoked",
            c.deleted,
        ),
        (
            "conntrack_flushed",
            "Flows removed by firewall conntrack flush",
            c.flushed,
        ),
        (
            "conntrack_evictions",
            "Flows the LRU conntrack map dropped, expired or evicted to make room",
            evictions,
        ),
        (
            "conntrack_insert_failures",
            "Conntrack inserts the kernel refused",
            c.insert_failed,
        ),
    ];
    for (name, help, value) in counters {
        registry.register(name, help, counter(value));
    }
}

fn register_maps(registry: &mut Registry, report: &StatsReport) {
    let entries = Family::<MapLabels, Gauge>::default();
    let capacity = Family::<MapLabels, Gauge>::default();
    for map in &report.maps {
        let labels = MapLabels {
            map: map.map.clone(),
        };
        entries
            .get_or_create(&labels)
            .set(i64::try_from(map.entries).unwrap_or(i64::MAX));
        capacity
            .get_or_create(&labels)
            .set(i64::try_from(map.capacity).unwrap_or(i64::MAX));
    }
    let help = "Entries in a datapath map (rule_ids: the highest rule id in use)";
    registry.register("map_entries", help, entries);
    let help = "Entries a datapath map holds at most (rule_ids: the highest usable id)";
    registry.register("map_capacity", help, capacity);
}

#[cfg(test)]
mod tests;
