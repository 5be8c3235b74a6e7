//! Flows as a table for people.

use std::{fmt::Write as _, net::IpAddr};

use super::FlowRecord;
use crate::policy::Policy;

/// One line per flow under a header, names of apps and networks from `policy` when given
/// (identity numbers otherwise); a last line counts the flows.
pub fn format_table(records: &[FlowRecord], policy: Option<&Policy>) -> String {
    let rows: Vec<[String; 8]> = records.iter().map(|r| row(r, policy)).collect();
    let header = [
        "PROTO",
        "SOURCE",
        "DESTINATION",
        "STATE",
        "RULE",
        "IDENTITIES",
        "IDLE",
        "EXPIRES",
    ];
    let mut widths = header.map(str::len);
    for row in &rows {
        for (width, cell) in widths.iter_mut().zip(row) {
            *width = (*width).max(cell.len());
        }
    }
    let mut out = String::new();
    line(&mut out, &header.map(String::from), &widths);
    for row in &rows {
        line(&mut out, row, &widths);
    }
    let flows = if records.len() == 1 { "flow" } else { "flows" };
    let _ = writeln!(out, "{} {flows}", records.len());
    out
}

fn line(out: &mut String, cells: &[String; 8], widths: &[usize; 8]) {
    let mut text = String::new();
    for (cell, width) in cells.iter().zip(widths) {
        let _ = write!(text, "{cell:<width$}  ");
    }
    out.push_str(text.trim_end());
    out.push('\n');
}

fn row(r: &FlowRecord, policy: Option<&Policy>) -> [String; 8] {
    let source = match (r.source_port, r.echo_id) {
        (Some(port), _) => join(r.source, port),
        (None, Some(id)) => format!("{} id {id}", r.source),
        (None, None) => r.source.to_string(),
    };
    let destination = match r.destination_port {
        Some(port) => join(r.destination, port),
        None => r.destination.to_string(),
    };
    let name = |id: u32| {
        policy
            .and_then(|p| p.identity_name(id))
            .map_or_else(|| id.to_string(), str::to_owned)
    };
    let state = if r.seen_reply {
        r.state.clone()
    } else {
        format!("{} (no reply)", r.state)
    };
    let expires = if r.expired {
        "expired".to_owned()
    } else {
        format!("{}s", r.expires_in_seconds)
    };
    [
        r.protocol.clone(),
        source,
        destination,
        state,
        format!("#{}", r.rule_id),
        format!(
            "{} -> {}",
            name(r.source_identity),
            name(r.destination_identity)
        ),
        format!("{}s", r.idle_seconds),
        expires,
    ]
}

fn join(address: IpAddr, port: u16) -> String {
    match address {
        IpAddr::V4(a) => format!("{a}:{port}"),
        IpAddr::V6(a) => format!("[{a}]:{port}"),
    }
}
