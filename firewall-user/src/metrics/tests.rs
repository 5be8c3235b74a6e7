//! The text the metrics endpoint serves, read back with an independent parser.

use std::time::Duration;

use prometheus_parse::{Sample, Scrape, Value};

use super::DaemonMetrics;
use crate::stats::{
    ConntrackStats, DroppedPair, Losses, MapStats, ReasonStats, RuleStats, StatsReport,
    TOP_DROPPED_PAIRS,
};

fn report() -> StatsReport {
    let reason = |reason: &str, code, verdict: &str, packets, bytes| ReasonStats {
        reason: reason.into(),
        code,
        verdict: verdict.into(),
        packets,
        bytes,
    };
    StatsReport {
        reasons: vec![
            reason("policy", 1, "allow", 40, 4_000),
            reason("reply", 6, "allow", 0, 0),
            reason("denied-by-default", 64, "drop", 13, 1_300),
        ],
        rules: vec![
            RuleStats {
                id: 1,
                rule: "frontend -> backend udp 5353".into(),
                packets: 40,
                bytes: 4_000,
                flows: 2,
            },
            RuleStats {
                id: 7,
                rule: "world -> frontend tcp 443".into(),
                packets: 0,
                bytes: 0,
                flows: 0,
            },
        ],
        // Most packets first, as the datapath's list is.
        dropped_pairs: (0..TOP_DROPPED_PAIRS as u64 + 3)
            .map(|i| DroppedPair {
                source: format!("app{i}"),
                destination: "backend".into(),
                source_identity: 300 + i as u32,
                destination_identity: 257,
                packets: 1_000 - i,
                bytes: 10 * (1_000 - i),
            })
            .collect(),
        conntrack: ConntrackStats {
            entries: 17,
            capacity: 4_096,
            created: 30,
            deleted: 4,
            flushed: 6,
            reclaimed: 3,
            insert_failed: 1,
        },
        maps: vec![
            MapStats {
                map: "ipcache_hosts_v4".into(),
                kernel_map: "IPCACHE_HOSTS_V4".into(),
                entries: 2,
                capacity: 65_536,
            },
            MapStats {
                map: "conntrack".into(),
                kernel_map: "CONNTRACK".into(),
                entries: 17,
                capacity: 4_096,
            },
        ],
        losses: Losses {
            flow_records_lost: 8,
            flow_records_rate_limited: 9,
            trace_observations_lost: 10,
        },
    }
}

fn parse(text: &str) -> Scrape {
    let lines = text.lines().map(|line| Ok(line.to_owned()));
    Scrape::parse(lines).expect("the encoding parses")
}

/// The samples named `metric` whose labels include every pair of `labels`.
fn find<'a>(scrape: &'a Scrape, metric: &str, labels: &[(&str, &str)]) -> Vec<&'a Sample> {
    scrape
        .samples
        .iter()
        .filter(|s| s.metric == metric)
        .filter(|s| labels.iter().all(|(k, v)| s.labels.get(k) == Some(*v)))
        .collect()
}

/// The one counter named `metric` with `labels`.
fn counter(scrape: &Scrape, metric: &str, labels: &[(&str, &str)]) -> f64 {
    match find(scrape, metric, labels).as_slice() {
        [one] => match one.value {
            Value::Counter(v) => v,
            ref other => panic!("{metric} {labels:?} is not typed a counter: {other:?}"),
        },
        found => panic!("{metric} {labels:?}: {} samples", found.len()),
    }
}

/// The one gauge named `metric` with `labels`.
fn gauge(scrape: &Scrape, metric: &str, labels: &[(&str, &str)]) -> f64 {
    match find(scrape, metric, labels).as_slice() {
        [one] => match one.value {
            Value::Gauge(v) => v,
            ref other => panic!("{metric} {labels:?} is not typed a gauge: {other:?}"),
        },
        found => panic!("{metric} {labels:?}: {} samples", found.len()),
    }
}

#[test]
fn reasons_rules_and_losses_are_counters_with_their_labels() {
    let text = DaemonMetrics::new().render(&report()).expect("rendered");
    let scrape = parse(&text);
    let policy = [("reason", "policy"), ("verdict", "allow")];
    assert_eq!(counter(&scrape, "firewall_packets_total", &policy), 40.0);
    assert_eq!(counter(&scrape, "firewall_bytes_total", &policy), 4_000.0);
    let denied = [("reason", "denied-by-default"), ("verdict", "drop")];
    assert_eq!(counter(&scrape, "firewall_packets_total", &denied), 13.0);
    let reply = [("reason", "reply"), ("verdict", "allow")];
    assert_eq!(
        counter(&scrape, "firewall_packets_total", &reply),
        0.0,
        "zero reasons are there, so rates start from zero"
    );

    let rule = [("rule_id", "1"), ("rule", "frontend -> backend udp 5353")];
    assert_eq!(counter(&scrape, "firewall_rule_packets_total", &rule), 40.0);
    assert_eq!(
        counter(&scrape, "firewall_rule_bytes_total", &rule),
        4_000.0
    );
    assert_eq!(counter(&scrape, "firewall_rule_flows_total", &rule), 2.0);
    let idle = [("rule_id", "7"), ("rule", "world -> frontend tcp 443")];
    assert_eq!(counter(&scrape, "firewall_rule_packets_total", &idle), 0.0);

    assert_eq!(
        counter(&scrape, "firewall_flow_records_lost_total", &[]),
        8.0
    );
    assert_eq!(
        counter(&scrape, "firewall_flow_records_rate_limited_total", &[]),
        9.0
    );
    assert_eq!(
        counter(&scrape, "firewall_trace_observations_lost_total", &[]),
        10.0
    );
    assert!(
        scrape.docs.contains_key("firewall_packets_total"),
        "{:?}",
        scrape.docs.keys()
    );
}

#[test]
fn dropped_pairs_are_bounded_to_the_top_ones() {
    let scrape = parse(&DaemonMetrics::new().render(&report()).expect("rendered"));
    let pairs = find(&scrape, "firewall_dropped_pair_packets_total", &[]);
    assert_eq!(pairs.len(), TOP_DROPPED_PAIRS);
    let first = [("source", "app0"), ("destination", "backend")];
    let packets = counter(&scrape, "firewall_dropped_pair_packets_total", &first);
    assert_eq!(packets, 1_000.0);
    let bytes = counter(&scrape, "firewall_dropped_pair_bytes_total", &first);
    assert_eq!(bytes, 10_000.0);
    let beyond = format!("app{TOP_DROPPED_PAIRS}");
    let beyond = [("source", beyond.as_str())];
    assert!(find(&scrape, "firewall_dropped_pair_packets_total", &beyond).is_empty());
}

#[test]
fn conntrack_and_maps_are_gauges_and_evictions_never_go_back() {
    let metrics = DaemonMetrics::new();
    let mut report = report();
    let scrape = parse(&metrics.render(&report).expect("rendered"));
    assert_eq!(gauge(&scrape, "firewall_conntrack_entries", &[]), 17.0);
    assert_eq!(
        counter(&scrape, "firewall_conntrack_created_total", &[]),
        30.0
    );
    assert_eq!(
        counter(&scrape, "firewall_conntrack_deleted_total", &[]),
        4.0
    );
    assert_eq!(
        counter(&scrape, "firewall_conntrack_flushed_total", &[]),
        6.0
    );
    assert_eq!(
        counter(&scrape, "firewall_conntrack_insert_failures_total", &[]),
        1.0
    );
    assert_eq!(
        counter(&scrape, "firewall_conntrack_evictions_total", &[]),
        3.0
    );
    let hosts = [("map", "ipcache_hosts_v4")];
    assert_eq!(gauge(&scrape, "firewall_map_entries", &hosts), 2.0);
    assert_eq!(gauge(&scrape, "firewall_map_capacity", &hosts), 65_536.0);
    let conntrack = [("map", "conntrack")];
    assert_eq!(gauge(&scrape, "firewall_map_capacity", &conntrack), 4_096.0);

    // An estimate that dips (a count racing the datapath) does not turn the counter back.
    report.conntrack.reclaimed = 1;
    let scrape = parse(&metrics.render(&report).expect("rendered"));
    let evictions = counter(&scrape, "firewall_conntrack_evictions_total", &[]);
    assert_eq!(evictions, 3.0);
    report.conntrack.reclaimed = 5;
    let scrape = parse(&metrics.render(&report).expect("rendered"));
    let evictions = counter(&scrape, "firewall_conntrack_evictions_total", &[]);
    assert_eq!(evictions, 5.0);
}

#[test]
fn apply_durations_land_in_the_histogram() {
    let metrics = DaemonMetrics::new();
    metrics.observe_apply(Duration::from_millis(3));
    metrics.observe_apply(Duration::from_millis(3));
    metrics.observe_apply(Duration::from_secs(2));
    let text = metrics.render(&report()).expect("rendered");
    assert!(
        text.contains("# TYPE firewall_policy_apply_duration_seconds histogram\n"),
        "{text}"
    );
    let scrape = parse(&text);
    let histogram = find(&scrape, "firewall_policy_apply_duration_seconds", &[]);
    let [histogram] = histogram.as_slice() else {
        panic!("one histogram: {histogram:?}");
    };
    let Value::Histogram(buckets) = &histogram.value else {
        panic!("not a histogram: {:?}", histogram.value);
    };
    let at_most = |bound: f64| {
        buckets
            .iter()
            .find(|b| b.less_than == bound)
            .unwrap_or_else(|| panic!("no bucket le={bound}: {buckets:?}"))
            .count
    };
    assert_eq!(at_most(0.002), 0.0);
    assert_eq!(at_most(0.004), 2.0);
    assert_eq!(at_most(2.048), 3.0);
    assert_eq!(at_most(f64::INFINITY), 3.0);
    let count = find(&scrape, "firewall_policy_apply_duration_seconds_count", &[]);
    assert!(matches!(count.as_slice(), [one] if one.value == Value::Untyped(3.0)));
    let sum = find(&scrape, "firewall_policy_apply_duration_seconds_sum", &[]);
    let [sum] = sum.as_slice() else {
        panic!("one sum: {sum:?}")
    };
    let Value::Untyped(sum) = sum.value else {
        panic!("{sum:?}")
    };
    assert!((sum - 2.006).abs() < 1e-9, "{sum}");
}

/// Every `expr` string anywhere in a Grafana dashboard.
fn expressions(value: &serde_json::Value, out: &mut Vec<String>) {
    match value {
        serde_json::Value::Object(map) => {
            for (key, inner) in map {
                match (key.as_str(), inner) {
                    ("expr", serde_json::Value::String(expr)) => out.push(expr.clone()),
                    _ => expressions(inner, out),
                }
            }
        }
        serde_json::Value::Array(items) => items.iter().for_each(|i| expressions(i, out)),
        _ => {}
    }
}

#[test]
fn the_sample_dashboard_asks_only_for_metrics_the_daemon_serves() {
    let dashboard = include_str!("../../../deploy/grafana-dashboard.json");
    let dashboard: serde_json::Value = serde_json::from_str(dashboard).expect("dashboard JSON");
    let text = DaemonMetrics::new().render(&report()).expect("rendered");
    let served: std::collections::BTreeSet<&str> = text
        .lines()
        .filter(|line| !line.starts_with('#'))
        .filter_map(|line| line.split(['{', ' ']).next())
        .collect();
    let mut exprs = Vec::new();
    expressions(&dashboard, &mut exprs);
    assert!(exprs.len() >= 10, "{} queries", exprs.len());
    let mut asked = std::collections::BTreeSet::new();
    for expr in &exprs {
        let mut rest = expr.as_str();
        while let Some(at) = rest.find("firewall_") {
            let name: String = rest[at..]
                .chars()
                .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
                .collect();
            rest = &rest[at + name.len()..];
            asked.insert(name);
        }
    }
    let unknown: Vec<_> = asked
        .iter()
        .filter(|n| !served.contains(n.as_str()))
        .collect();
    assert!(
        unknown.is_empty(),
        "the dashboard asks for {unknown:?}; served: {served:?}"
    );
    for needed in [
        "firewall_packets_total",
        "firewall_rule_packets_total",
        "firewall_dropped_pair_packets_total",
        "firewall_conntrack_entries",
        "firewall_map_entries",
        "firewall_flow_records_lost_total",
        "firewall_policy_apply_duration_seconds_bucket",
    ] {
        assert!(
            asked.contains(needed),
            "the dashboard has no panel on {needed}"
        );
    }
}
