//! `firewall flows`: the daemon's flow records, listed or followed, as a table or JSON.

use std::{fmt::Write as _, io::Write, net::IpAddr, path::Path};

use clap::{Args, ValueEnum};
use hyper::Method;

use super::{
    ClientError,
    commands::{call, decode, encode, pretty, refusal},
    table::render,
    transport,
};
use crate::flows::{Endpoint, FlowCounts, FlowList, FlowRecord, StreamCounts, StreamLine};

/// Options of `firewall flows`.
#[derive(Debug, Clone, Args)]
pub struct FlowsArgs {
    /// Print records as they arrive, until interrupted.
    #[arg(long)]
    pub follow: bool,
    /// Only drops, or only opened flows.
    #[arg(long, value_enum)]
    pub verdict: Option<VerdictArg>,
    /// Only records with this app or network at either end.
    #[arg(long, value_name = "NAME")]
    pub app: Option<String>,
    /// The newest N records [default: 100]; with --follow, N held records before new ones
    /// [default: none].
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u32).range(1..))]
    pub limit: Option<u32>,
    /// Print the daemon's JSON answer (with --follow: one JSON object a line).
    #[arg(long)]
    pub json: bool,
}

/// The verdicts `--verdict` selects.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum VerdictArg {
    /// Dropped packets.
    Drop,
    /// Flows the policy opened.
    Allow,
}

/// Column heads of the table.
const HEADER: [&str; 8] = [
    "Time",
    "Hook",
    "Interface",
    "Verdict",
    "Reason",
    "Flow",
    "Protocol",
    "Rule",
];

/// Column widths when following, where rows are printed before the widest is known.
const FOLLOW_WIDTHS: [usize; 7] = [23, 10, 10, 7, 17, 60, 10];

/// The request path for `args`.
fn path(args: &FlowsArgs) -> String {
    let mut query = Vec::new();
    if let Some(verdict) = args.verdict {
        query.push(format!(
            "verdict={}",
            match verdict {
                VerdictArg::Drop => "drop",
                VerdictArg::Allow => "allow",
            }
        ));
    }
    if let Some(app) = &args.app {
        query.push(format!("app={}", encode(app)));
    }
    if let Some(limit) = args.limit {
        query.push(format!("limit={limit}"));
    }
    if args.follow {
        query.push("follow=true".into());
    }
    if query.is_empty() {
        "/v1/flows".into()
    } else {
        format!("/v1/flows?{}", query.join("&"))
    }
}

/// Lists the newest records.
pub(super) async fn list(socket: &Path, args: &FlowsArgs) -> Result<String, ClientError> {
    let reply = call(socket, Method::GET, &path(args), None).await?;
    if args.json {
        return pretty(&reply);
    }
    let list: FlowList = decode(&reply)?;
    Ok(table(&list))
}

/// Prints records as the daemon sends them, until the daemon ends the stream.
///
/// # Errors
/// The daemon refuses or cannot be reached, the stream breaks, or `out` cannot be written.
/// A stream the daemon ends (it stopped) is an error too: following never ends by itself.
pub(super) async fn follow(
    socket: &Path,
    args: &FlowsArgs,
    out: &mut dyn Write,
) -> Result<(), ClientError> {
    let mut stream = transport::stream(socket, Method::GET, &path(args), None).await?;
    if !(200..300).contains(&stream.status) {
        return Err(refusal(&stream.rest().await?));
    }
    if !args.json {
        write(out, &fixed(&HEADER.map(str::to_owned)))?;
    }
    while let Some(line) = stream.next_line().await? {
        let line = String::from_utf8_lossy(&line);
        if args.json {
            write(out, &format!("{line}\n"))?;
            continue;
        }
        let parsed: StreamLine = serde_json::from_str(&line)
            .map_err(|e| ClientError::Unexpected(format!("{e}: {line}")))?;
        let text = match parsed {
            StreamLine::Flow(record) => fixed(&cells(&record)),
            StreamLine::Counts { counts } => stream_counts(&counts),
        };
        write(out, &text)?;
    }
    Err(ClientError::Transport {
        path: socket.to_path_buf(),
        message: "the daemon ended the stream (it is stopping)".into(),
    })
}

fn write(out: &mut dyn Write, text: &str) -> Result<(), ClientError> {
    out.write_all(text.as_bytes())
        .and_then(|()| out.flush())
        .map_err(ClientError::Local)
}

/// The records as a table, with the counts under it.
pub(super) fn table(list: &FlowList) -> String {
    let mut text = if list.flows.is_empty() {
        "No flow records.\n".to_owned()
    } else {
        let rows: Vec<Vec<String>> = list.flows.iter().map(|r| cells(r).to_vec()).collect();
        render(&HEADER, &rows)
    };
    let _ = writeln!(text, "{}", counts_line(&list.counts));
    text
}

/// One row: time, hook, interface, verdict, reason, flow, protocol, rule.
pub(super) fn cells(record: &FlowRecord) -> [String; 8] {
    let flow = format!(
        "{} -> {}",
        endpoint(&record.source),
        endpoint(&record.destination)
    );
    let mut protocol = record.protocol.clone().unwrap_or_else(|| "-".into());
    if let Some(icmp) = record.icmp {
        let _ = write!(protocol, " {}/{}", icmp.icmp_type, icmp.code);
    }
    if let Some(flags) = record.tcp_flags.as_ref().filter(|f| !f.is_empty()) {
        let _ = write!(protocol, " {}", flags.join(","));
    }
    let rule = match (record.rule_id, &record.rule) {
        (Some(id), Some(text)) => format!("#{id} {text}"),
        (Some(id), None) => format!("#{id}"),
        (None, _) if record.default_deny => "default deny".into(),
        (None, _) => String::new(),
    };
    [
        short_time(&record.time),
        record.hook.clone(),
        record.interface.clone(),
        record.verdict.name().into(),
        record.reason.clone(),
        flow,
        protocol,
        rule,
    ]
}

/// `app/address:port`, or as much of it as is known; `-` for a frame that is not IP.
fn endpoint(end: &Endpoint) -> String {
    let address = match (end.address, end.port) {
        (Some(IpAddr::V6(address)), Some(port)) => format!("[{address}]:{port}"),
        (Some(address), Some(port)) => format!("{address}:{port}"),
        (Some(address), None) => address.to_string(),
        (None, _) => "-".into(),
    };
    match &end.name {
        Some(name) => format!("{name}/{address}"),
        None => address,
    }
}

/// `2026-12-03T19:19:06.123456789Z` as `2026-12-03 19:19:06.123`; other text as it is.
fn short_time(time: &str) -> String {
    match (time.get(..10), time.get(11..23)) {
        (Some(date), Some(clock)) if time.as_bytes().get(10) == Some(&b'T') => {
            format!("{date} {clock}")
        }
        _ => time.to_owned(),
    }
}

/// A row in the fixed columns of a followed stream.
fn fixed(cells: &[String; 8]) -> String {
    let mut line = String::new();
    for (cell, width) in cells.iter().zip(FOLLOW_WIDTHS) {
        let _ = write!(line, "{cell:<width$}  ");
    }
    line.push_str(&cells[7]);
    format!("{}\n", line.trim_end())
}

fn counts_line(counts: &FlowCounts) -> String {
    format!(
        "Since the daemon started: {} records received, {} rate-limited (over the per-CPU \
         record rate, not sent), {} lost (ring buffer full).",
        counts.received, counts.rate_limited, counts.lost
    )
}

fn stream_counts(counts: &StreamCounts) -> String {
    let mut line = format!("-- {}", counts_line(&counts.counts));
    if counts.missed > 0 {
        let _ = write!(
            line,
            " {} records missed by this client (it read too slowly).",
            counts.missed
        );
    }
    line + "\n"
}

#[cfg(test)]
mod tests;
