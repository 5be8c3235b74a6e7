//! Traces as text for people, in the order the observation points were met.

use std::fmt::Write as _;

use super::{
    live::LiveObservation,
    report::{IdentityView, Observation, PacketView, TraceReport},
};

/// Width of the step name column.
const STEP_WIDTH: usize = 22;

/// A synthetic trace as numbered observation points.
pub fn report(report: &TraceReport) -> String {
    let mut out = String::new();
    let headline = report.observations.iter().find_map(|o| match o {
        Observation::Injected { packet, .. } => Some(packet_line(packet)),
        _ => None,
    });
    let _ = writeln!(
        out,
        "Traceflow on host {}: {}",
        report.host,
        headline.unwrap_or_default()
    );
    for (n, observation) in report.observations.iter().enumerate() {
        let (step, text, more) = step(observation);
        let _ = writeln!(out, "  {}. {step:<STEP_WIDTH$}{text}", n + 1);
        for line in more {
            let _ = writeln!(out, "     {:<STEP_WIDTH$}{line}", "");
        }
    }
    out
}

fn step(observation: &Observation) -> (&'static str, String, Vec<String>) {
    match observation {
        Observation::Injected { hook, packet } => (
            "injected",
            format!("at {hook}: {}", packet_line(packet)),
            vec![],
        ),
        Observation::SourceIdentity(view) => ("source identity", identity(view), vec![]),
        Observation::DestinationIdentity(view) => ("destination identity", identity(view), vec![]),
        Observation::Conntrack { state, detail } => {
            ("conntrack", format!("{state}: {detail}"), vec![])
        }
        Observation::Policy(view) => {
            let mut more = Vec::new();
            if view.default_deny {
                if view.nearest_rules.is_empty() {
                    more.push("no rule mentions either end".to_owned());
                } else {
                    more.push("nearest rules:".to_owned());
                    more.extend(
                        view.nearest_rules
                            .iter()
                            .map(|r| format!("  #{} {}", r.rule_id, r.rule)),
                    );
                }
            }
            ("policy", view.detail.clone(), more)
        }
        Observation::Verdict {
            verdict,
            reason,
            code,
        } => (
            "verdict",
            format!("{verdict} ({reason}, reason {code})"),
            vec![],
        ),
    }
}

/// `tcp 198.18.1.10:49152 -> 198.18.2.10:8081 flags S, 54 bytes`.
pub fn packet_line(packet: &PacketView) -> String {
    let (Some(source), Some(destination)) = (packet.source, packet.destination) else {
        return format!("could not be parsed, {} bytes", packet.length);
    };
    let protocol = packet.protocol.as_deref().unwrap_or("?");
    let end = |address: std::net::IpAddr, port: Option<u16>| match (address, port) {
        (std::net::IpAddr::V6(a), Some(p)) => format!("[{a}]:{p}"),
        (a, Some(p)) => format!("{a}:{p}"),
        (a, None) => a.to_string(),
    };
    let mut line = format!(
        "{protocol} {} -> {}",
        end(source, packet.source_port),
        end(destination, packet.destination_port)
    );
    if let Some(icmp_type) = packet.icmp_type {
        let _ = write!(
            line,
            " type {icmp_type} code {}",
            packet.icmp_code.unwrap_or(0)
        );
    }
    if let Some(flags) = &packet.tcp_flags {
        let _ = write!(line, " flags {flags}");
    }
    let _ = write!(line, ", {} bytes", packet.length);
    line
}

fn identity(view: &IdentityView) -> String {
    let Some(id) = view.identity else {
        return "not looked up".into();
    };
    let name = view
        .name
        .clone()
        .unwrap_or_else(|| format!("identity {id}"));
    let mut about = match view.kind.as_deref() {
        Some("unknown") | None => format!("identity {id}, not in the policy"),
        Some("world") => format!("identity {id}"),
        Some(kind) => format!("{kind}, identity {id}"),
    };
    if let Some(org) = &view.org {
        let _ = write!(about, ", org {org}");
    }
    if let Some(space) = &view.space {
        let _ = write!(about, ", space {space}");
    }
    let prefix = match &view.prefix {
        Some(prefix) => format!("matched {prefix}"),
        None => "no prefix matched".into(),
    };
    format!("{name} ({about}), {prefix}")
}

/// One line per live observation: packet number, hook, interface, headers, ends,
/// conntrack, verdict and rule.
pub fn live_line(observation: &LiveObservation) -> String {
    let rule = match (&observation.rule_id, &observation.rule) {
        (Some(id), Some(text)) => format!(", rule #{id} {text}"),
        (Some(id), None) => format!(", rule #{id}"),
        _ => String::new(),
    };
    format!(
        "packet {} {} {}: {} ({} -> {}) {}, {} ({}{rule})",
        observation.packet,
        observation.hook,
        observation.interface,
        packet_line(&observation.headers),
        observation.source,
        observation.destination,
        observation.conntrack,
        observation.verdict,
        observation.reason,
    )
}
