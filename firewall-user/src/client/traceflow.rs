//! `firewall traceflow`: a synthetic packet through the datapath enforcing on the host, or
//! (`--live`) the next real packets between two apps, printed as they are seen.

use std::{io::Write, net::IpAddr, path::Path, path::PathBuf};

use clap::Args;
use hyper::Method;

use super::{ClientError, commands, transport};
use crate::{
    capture,
    traceflow::{
        TraceRequest,
        live::{LiveMessage, LiveRequest},
        render,
        report::TraceReport,
    },
};

/// Arguments of `firewall traceflow`.
#[derive(Debug, Clone, Args)]
pub struct TraceflowArgs {
    /// App sending the packet (with --live: an app, a network or `world`).
    #[arg(long = "source-app", value_name = "APP")]
    pub source_app: Option<String>,
    /// Source address (default: the source app's first address).
    #[arg(long = "source-ip", value_name = "ADDR")]
    pub source_ip: Option<IpAddr>,
    /// Source port of a TCP, UDP or SCTP packet (default 49152).
    #[arg(long = "source-port", value_name = "PORT")]
    pub source_port: Option<u16>,
    /// App the packet is for (with --live: an app, a network or `world`).
    #[arg(long = "destination-app", value_name = "APP")]
    pub destination_app: Option<String>,
    /// Destination address: an app's, one in a network, or anywhere.
    #[arg(long = "destination-ip", value_name = "ADDR", conflicts_with = "live")]
    pub destination_ip: Option<IpAddr>,
    /// tcp (default), udp, sctp, icmp, icmpv6 or a protocol number; with --live, any when
    /// not given.
    #[arg(long)]
    pub protocol: Option<String>,
    /// Destination port (TCP, UDP, SCTP).
    #[arg(long)]
    pub port: Option<u16>,
    /// ICMP type (default: echo request).
    #[arg(long = "icmp-type", value_name = "TYPE", conflicts_with = "live")]
    pub icmp_type: Option<u8>,
    /// ICMP code.
    #[arg(long = "icmp-code", value_name = "CODE", conflicts_with = "live")]
    pub icmp_code: Option<u8>,
    /// TCP flags as letters: S, SA, A, F, R, P, U (default S).
    #[arg(long = "tcp-flags", value_name = "FLAGS", conflicts_with = "live")]
    pub tcp_flags: Option<String>,
    /// Trace a packet of a capture file (pcap or pcapng) as it is.
    #[arg(long, value_name = "FILE", conflicts_with = "live")]
    pub pcap: Option<PathBuf>,
    /// Which packet of --pcap, from 1.
    #[arg(long, value_name = "N", requires = "pcap", default_value_t = 1)]
    pub packet: usize,
    /// Trace the next real packets from the source app to the destination app.
    #[arg(long)]
    pub live: bool,
    /// With --live: packets to report (default 1).
    #[arg(long, requires = "live")]
    pub count: Option<u32>,
    /// With --live: seconds to wait at most (default 30).
    #[arg(long, value_name = "SECONDS", requires = "live")]
    pub timeout: Option<u64>,
    /// Print JSON (with --live: one JSON document per line).
    #[arg(long)]
    pub json: bool,
}

/// Runs a synthetic trace and returns what to print.
pub(super) async fn synthetic(socket: &Path, args: TraceflowArgs) -> Result<String, ClientError> {
    let request = match &args.pcap {
        Some(path) => TraceRequest {
            frame: Some(frame_from(path, args.packet)?),
            ..TraceRequest::default()
        },
        None => TraceRequest {
            source_app: args.source_app,
            source_ip: args.source_ip,
            source_port: args.source_port,
            destination_app: args.destination_app,
            destination_ip: args.destination_ip,
            protocol: args.protocol,
            port: args.port,
            icmp_type: args.icmp_type,
            icmp_code: args.icmp_code,
            tcp_flags: args.tcp_flags,
            frame: None,
        },
    };
    let body = commands::to_json(&request)?;
    let reply = commands::call(socket, Method::POST, "/v1/traceflow", Some(body)).await?;
    if args.json {
        return commands::pretty(&reply);
    }
    Ok(render::report(&commands::decode::<TraceReport>(&reply)?))
}

fn frame_from(path: &Path, packet: usize) -> Result<String, ClientError> {
    let frames = capture::read(path).map_err(|e| ClientError::Input(e.to_string()))?;
    let frame = packet
        .checked_sub(1)
        .and_then(|index| frames.get(index))
        .ok_or_else(|| {
            ClientError::Input(format!(
                "{}: no packet {packet}; it holds {} (counted from 1)",
                path.display(),
                frames.len()
            ))
        })?;
    Ok(frame.data.iter().map(|b| format!("{b:02x}")).collect())
}

/// Runs a live trace, writing each line to `out` as it comes.
pub(super) async fn live(
    socket: &Path,
    args: TraceflowArgs,
    out: &mut dyn Write,
) -> Result<(), ClientError> {
    let missing = |what: &str| ClientError::Input(format!("--live needs --{what}"));
    let request = LiveRequest {
        source_app: args.source_app.ok_or_else(|| missing("source-app"))?,
        destination_app: args
            .destination_app
            .ok_or_else(|| missing("destination-app"))?,
        protocol: args.protocol,
        port: args.port,
        count: args.count,
        timeout_seconds: args.timeout,
    };
    let body = commands::to_json(&request)?;
    let mut stream =
        transport::stream(socket, Method::POST, "/v1/traceflow/live", Some(body)).await?;
    if !(200..300).contains(&stream.status) {
        return Err(commands::refusal(&stream.rest().await?));
    }
    while let Some(line) = stream.next_line().await? {
        let message: LiveMessage = serde_json::from_slice(&line)
            .map_err(|e| ClientError::Unexpected(format!("a live trace line: {e}")))?;
        let text = if args.json {
            String::from_utf8_lossy(&line).into_owned()
        } else {
            match message {
                LiveMessage::Armed { host, trace_id } => {
                    format!("Live trace {trace_id} on host {host}: waiting for packets")
                }
                LiveMessage::Observation(observation) => render::live_line(&observation),
                LiveMessage::Done { packets, ended } => {
                    format!("Done: {packets} packets ({ended})")
                }
            }
        };
        writeln!(out, "{text}")
            .and_then(|()| out.flush())
            .map_err(ClientError::Local)?;
    }
    Ok(())
}
