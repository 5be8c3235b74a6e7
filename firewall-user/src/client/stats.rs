//! `firewall stats` as tables: one section per kind of figure.

use std::fmt::Write;

use super::table::render;
use crate::stats::{StatsReport, TOP_DROPPED_PAIRS};

/// The report as people read it: reasons with packets, every rule, the
/// [`TOP_DROPPED_PAIRS`] most-dropped pairs, conntrack, map fill levels and lost records.
pub(super) fn stats_table(report: &StatsReport) -> String {
    let mut out = String::new();
    let counted: Vec<Vec<String>> = report
        .reasons
        .iter()
        .filter(|reason| reason.packets != 0)
        .map(|reason| {
            vec![
                reason.reason.clone(),
                reason.verdict.clone(),
                reason.packets.to_string(),
                reason.bytes.to_string(),
            ]
        })
        .collect();
    out.push_str("Packets by reason:\n");
    if counted.is_empty() {
        out.push_str("No packets counted yet.\n");
    } else {
        out.push_str(&render(
            &["Reason", "Verdict", "Packets", "Bytes"],
            &counted,
        ));
    }

    out.push_str("\nRules:\n");
    if report.rules.is_empty() {
        out.push_str("No rules.\n");
    } else {
        let rows: Vec<Vec<String>> = report
            .rules
            .iter()
            .map(|rule| {
                vec![
                    rule.id.to_string(),
                    rule.rule.clone(),
                    rule.packets.to_string(),
                    rule.bytes.to_string(),
                    rule.flows.to_string(),
                ]
            })
            .collect();
        let header = ["Id", "Rule", "Packets", "Bytes", "Flows"];
        out.push_str(&render(&header, &rows));
    }

    let pairs = &report.dropped_pairs;
    if pairs.len() > TOP_DROPPED_PAIRS {
        let _ = writeln!(
            out,
            "\nTop {TOP_DROPPED_PAIRS} dropped pairs (of {}; --json lists all):",
            pairs.len()
        );
    } else {
        out.push_str("\nDropped pairs:\n");
    }
    if pairs.is_empty() {
        out.push_str("No drops between identities.\n");
    } else {
        let rows: Vec<Vec<String>> = pairs
            .iter()
            .take(TOP_DROPPED_PAIRS)
            .map(|pair| {
                vec![
                    pair.source.clone(),
                    pair.destination.clone(),
                    pair.packets.to_string(),
                    pair.bytes.to_string(),
                ]
            })
            .collect();
        let header = ["Source", "Destination", "Packets", "Bytes"];
        out.push_str(&render(&header, &rows));
    }

    let c = &report.conntrack;
    out.push_str("\nConnection tracking:\n");
    let conntrack = [
        ("entries", format!("{} of {}", c.entries, c.capacity)),
        ("created", c.created.to_string()),
        ("deleted (rule revoked)", c.deleted.to_string()),
        ("flushed", c.flushed.to_string()),
        (
            "reclaimed by LRU (expired or evicted)",
            c.reclaimed.to_string(),
        ),
        ("insert failures", c.insert_failed.to_string()),
    ];
    fields(&mut out, &conntrack);

    out.push_str("\nMaps:\n");
    let rows: Vec<Vec<String>> = report
        .maps
        .iter()
        .map(|map| {
            vec![
                map.map.clone(),
                map.entries.to_string(),
                map.capacity.to_string(),
                percent(map.entries, map.capacity),
            ]
        })
        .collect();
    out.push_str(&render(&["Map", "Entries", "Capacity", "Fill"], &rows));

    let l = &report.losses;
    out.push_str("\nRecords not sent:\n");
    let losses = [
        (
            "flow records lost (ring buffer full)",
            l.flow_records_lost.to_string(),
        ),
        (
            "flow records held back (per-CPU rate limit)",
            l.flow_records_rate_limited.to_string(),
        ),
        (
            "trace observations lost",
            l.trace_observations_lost.to_string(),
        ),
    ];
    fields(&mut out, &losses);
    out
}

/// Aligned `label:  value` lines.
fn fields(out: &mut String, fields: &[(&str, String)]) {
    let width = fields.iter().map(|(k, _)| k.len()).max().unwrap_or(0) + 1;
    for (label, value) in fields {
        let label = format!("{label}:");
        let _ = writeln!(out, "{label:<width$}  {value}");
    }
}

/// `part` of `whole` as a percentage with one decimal; `-` for an empty whole.
fn percent(part: u64, whole: u64) -> String {
    if whole == 0 {
        return "-".into();
    }
    // Exact integer arithmetic, rounded half up, so 1 of 65,536 shows 0.0% and a full map 100.0%.
    let tenths = (u128::from(part) * 1000 + u128::from(whole) / 2) / u128::from(whole);
    format!("{}.{}%", tenths / 10, tenths % 10)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::stats::{
        ConntrackStats, DroppedPair, Losses, MapStats, ReasonStats, RuleStats, StatsReport,
    };

    fn report(pairs: usize) -> StatsReport {
        StatsReport {
            reasons: vec![
                ReasonStats {
                    reason: "policy".into(),
                    code: 1,
                    verdict: "allow".into(),
                    packets: 5,
                    bytes: 500,
                },
                ReasonStats {
                    reason: "revoked".into(),
                    code: 70,
                    verdict: "drop".into(),
                    packets: 0,
                    bytes: 0,
                },
            ],
            rules: vec![RuleStats {
                id: 1,
                rule: "frontend -> backend udp 5353".into(),
                packets: 5,
                bytes: 500,
                flows: 1,
            }],
            dropped_pairs: (0..pairs)
                .map(|i| DroppedPair {
                    source: format!("app{i}"),
                    destination: "backend".into(),
                    source_identity: 300 + i as u32,
                    destination_identity: 257,
                    packets: 100 - i as u64,
                    bytes: 1000,
                })
                .collect(),
            conntrack: ConntrackStats {
                entries: 1,
                capacity: 524_288,
                created: 3,
                deleted: 1,
                flushed: 0,
                reclaimed: 1,
                insert_failed: 0,
            },
            maps: vec![MapStats {
                map: "policy_exact".into(),
                kernel_map: "POLICY_EXACT".into(),
                entries: 65_536,
                capacity: 131_072,
            }],
            losses: Losses {
                flow_records_lost: 2,
                flow_records_rate_limited: 7,
                trace_observations_lost: 0,
            },
        }
    }

    #[test]
    fn the_table_shows_counted_reasons_rules_and_at_most_the_top_pairs() {
        let text = stats_table(&report(12));
        assert!(text.contains("policy  allow    5        500"), "{text}");
        assert!(
            !text.contains("revoked  drop"),
            "zero reasons are left out:\n{text}"
        );
        assert!(
            text.contains("1   frontend -> backend udp 5353  5        500    1"),
            "{text}"
        );
        assert!(
            text.contains("Top 10 dropped pairs (of 12; --json lists all):"),
            "{text}"
        );
        assert!(text.contains("app9 ") && !text.contains("app10"), "{text}");
        assert!(text.contains("entries:  "), "{text}");
        assert!(text.contains("1 of 524288"), "{text}");
        assert!(
            text.contains("policy_exact  65536    131072    50.0%"),
            "{text}"
        );
        assert!(
            text.contains("held back (per-CPU rate limit):  7"),
            "{text}"
        );
    }

    #[test]
    fn few_pairs_are_all_shown_without_a_top_heading() {
        let text = stats_table(&report(0));
        assert!(text.contains("Dropped pairs:\nNo drops between identities.\n"));
        assert!(!text.contains("Top "));
    }

    #[test]
    fn percentages_round_and_handle_an_empty_whole() {
        assert_eq!(percent(1, 65_536), "0.0%");
        assert_eq!(percent(1, 3), "33.3%");
        assert_eq!(percent(2, 3), "66.7%");
        assert_eq!(percent(7, 7), "100.0%");
        assert_eq!(percent(0, 0), "-");
    }
}
