//! `firewall` client commands: talk to the daemon's API socket, in the cf CLI's words.
//!
//! Each command makes one HTTP/1.1 request on the socket and prints a table for people or,
//! with `--json`, the daemon's JSON answer. Exit codes: 0 done, 1 the daemon refused (its
//! message is printed), 2 bad usage or local input, 3 the daemon cannot be reached.

use std::{
    fmt,
    io::{self, Write},
    net::IpAddr,
    path::{Path, PathBuf},
    process::ExitCode,
    str::FromStr,
};

use clap::{Subcommand, ValueEnum};
use ipnet::IpNet;
use thiserror::Error;

mod commands;
mod flows;
mod stats;
mod table;
mod traceflow;
mod transport;

pub use flows::{FlowsArgs, VerdictArg};
pub use traceflow::TraceflowArgs;
pub use transport::{Reply, request};

/// The daemon's API commands, to be flattened into the `firewall` command line.
#[derive(Debug, Clone, Subcommand)]
pub enum ClientCommand {
    /// Allow an app to reach another app on a protocol and ports.
    AddNetworkPolicy {
        /// App that opens the connections.
        source: String,
        /// App that accepts them.
        #[arg(long = "destination-app", value_name = "DEST")]
        destination: String,
        /// Transport protocol.
        #[arg(long, value_enum, default_value_t = Protocol::Tcp)]
        protocol: Protocol,
        /// Port or inclusive range, such as 8080 or 8080-8090.
        #[arg(long, default_value = "8080", value_name = "PORTS")]
        port: PortRange,
        /// Print the daemon's JSON answer.
        #[arg(long)]
        json: bool,
    },
    /// Remove a policy added with add-network-policy.
    RemoveNetworkPolicy {
        /// App that opens the connections.
        source: String,
        /// App that accepts them.
        #[arg(long = "destination-app", value_name = "DEST")]
        destination: String,
        /// Transport protocol.
        #[arg(long, value_enum)]
        protocol: Protocol,
        /// Port or inclusive range, exactly as the policy has it.
        #[arg(long, value_name = "PORTS")]
        port: PortRange,
        /// Print the daemon's JSON answer.
        #[arg(long)]
        json: bool,
    },
    /// List app-to-app policies.
    NetworkPolicies {
        /// Only policies whose source is this app.
        #[arg(long = "source-app", value_name = "APP")]
        source: Option<String>,
        /// Print the daemon's JSON answer.
        #[arg(long)]
        json: bool,
    },
    /// List registered apps.
    Apps {
        /// Print the daemon's JSON answer.
        #[arg(long)]
        json: bool,
    },
    /// Register an app with its instances' addresses, or replace them.
    RegisterApp {
        /// App name.
        name: String,
        /// Cloud Foundry org.
        #[arg(long)]
        org: Option<String>,
        /// Cloud Foundry space.
        #[arg(long)]
        space: Option<String>,
        /// Instance address (repeatable, or comma-separated).
        #[arg(
            long = "ip",
            value_name = "ADDR",
            required = true,
            value_delimiter = ','
        )]
        ips: Vec<IpAddr>,
        /// Print the daemon's JSON answer.
        #[arg(long)]
        json: bool,
    },
    /// Forget an app.
    UnregisterApp {
        /// App name.
        name: String,
        /// Print the daemon's JSON answer.
        #[arg(long)]
        json: bool,
    },
    /// List named networks.
    Networks {
        /// Print the daemon's JSON answer.
        #[arg(long)]
        json: bool,
    },
    /// Define a named network, or replace its address blocks.
    AddNetwork {
        /// Network name.
        name: String,
        /// Address block (repeatable, or comma-separated), such as 198.19.10.0/24.
        #[arg(
            long = "cidr",
            value_name = "CIDR",
            required = true,
            value_delimiter = ','
        )]
        cidrs: Vec<IpNet>,
        /// Print the daemon's JSON answer.
        #[arg(long)]
        json: bool,
    },
    /// Forget a named network.
    RemoveNetwork {
        /// Network name.
        name: String,
        /// Print the daemon's JSON answer.
        #[arg(long)]
        json: bool,
    },
    /// Show an app's egress rules.
    EgressRules {
        /// App name.
        app: String,
        /// Print the daemon's JSON answer.
        #[arg(long)]
        json: bool,
    },
    /// Replace an app's egress rules with a Cloud Foundry security group rule array.
    SetEgressRules {
        /// App name.
        app: String,
        /// JSON file with the rule array; `-` reads standard input.
        #[arg(long, value_name = "FILE")]
        file: PathBuf,
        /// Print the daemon's JSON answer.
        #[arg(long)]
        json: bool,
    },
    /// Show flow records: dropped packets and opened flows, with apps, addresses and rules.
    Flows(FlowsArgs),
    /// Show the daemon's status.
    Status {
        /// Print the daemon's JSON answer.
        #[arg(long)]
        json: bool,
    },
    /// Trace a packet through the datapath enforcing on this host, step by step (built from
    /// the options, or taken from a capture); with --live, the next real packets between
    /// two apps at every hook they cross.
    Traceflow(TraceflowArgs),
    /// Show the datapath's counters: per reason, per rule, the most-dropped app pairs,
    /// connection tracking, map fill levels and lost records.
    Stats {
        /// Print the daemon's JSON answer (every dropped pair, not only the top ones).
        #[arg(long)]
        json: bool,
    },
}

/// Transport protocol of an app-to-app policy.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Protocol {
    /// TCP.
    Tcp,
    /// UDP.
    Udp,
}

impl Protocol {
    /// The name the API uses.
    pub fn as_str(self) -> &'static str {
        match self {
            Protocol::Tcp => "tcp",
            Protocol::Udp => "udp",
        }
    }
}

/// A port or inclusive port range as typed on the command line: `8080` or `8080-8090`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PortRange {
    /// First port, at least 1.
    pub start: u16,
    /// Last port, at least `start`.
    pub end: u16,
}

impl FromStr for PortRange {
    type Err = String;

    fn from_str(text: &str) -> Result<PortRange, String> {
        let port = |part: &str| -> Result<u16, String> {
            match part.trim().parse::<u16>() {
                Ok(port) if port > 0 => Ok(port),
                _ => Err(format!("{part:?} is not a port between 1 and 65535")),
            }
        };
        let (start, end) = match text.split_once('-') {
            Some((start, end)) => (port(start)?, port(end)?),
            None => (port(text)?, port(text)?),
        };
        if start > end {
            return Err(format!("port range {text} ends before it starts"));
        }
        Ok(PortRange { start, end })
    }
}

impl fmt::Display for PortRange {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.start == self.end {
            write!(f, "{}", self.start)
        } else {
            write!(f, "{}-{}", self.start, self.end)
        }
    }
}

/// Why a client command failed; [`ClientError::exit_code`] says how to exit.
#[derive(Debug, Error)]
pub enum ClientError {
    /// Nothing listens on the socket.
    #[error(
        "cannot reach the firewall daemon at {}: start it with `firewall daemon` (or \
         `systemctl start firewall`); connecting said: {source}",
        .path.display()
    )]
    Unreachable {
        /// The socket path.
        path: PathBuf,
        /// What connecting said.
        source: io::Error,
    },
    /// The socket exists but this user may not open it.
    #[error(
        "permission denied on the firewall daemon socket {}: it serves root only; run this \
         command as root",
        .path.display()
    )]
    Forbidden {
        /// The socket path.
        path: PathBuf,
    },
    /// The daemon closed the connection without answering: it refused this user's uid.
    #[error(
        "the firewall daemon at {} closed the connection without answering: it serves only \
         root and its own user",
        .path.display()
    )]
    HungUp {
        /// The socket path.
        path: PathBuf,
    },
    /// The daemon did not answer in time.
    #[error("the firewall daemon at {} did not answer within {seconds} s", .path.display())]
    Timeout {
        /// The socket path.
        path: PathBuf,
        /// How long the client waited.
        seconds: u64,
    },
    /// The HTTP exchange failed in some other way.
    #[error("talking to the firewall daemon at {}: {message}", .path.display())]
    Transport {
        /// The socket path.
        path: PathBuf,
        /// What failed.
        message: String,
    },
    /// The daemon answered with an error.
    #[error("{message}")]
    Refused {
        /// HTTP status of the answer.
        status: u16,
        /// The daemon's `error` message.
        message: String,
    },
    /// The daemon answered something this client does not understand.
    #[error("unexpected answer from the firewall daemon: {0}")]
    Unexpected(String),
    /// Local input is unusable, such as an unreadable rules file.
    #[error("{0}")]
    Input(String),
    /// Writing the output failed, or the client's runtime could not start.
    #[error("{0}")]
    Local(io::Error),
}

impl ClientError {
    /// The process exit code for this failure: 1 refused, 2 bad local input, 3 unreachable.
    pub fn exit_code(&self) -> u8 {
        match self {
            ClientError::Unreachable { .. }
            | ClientError::Forbidden { .. }
            | ClientError::Timeout { .. }
            | ClientError::Transport { .. } => 3,
            ClientError::Input(_) => 2,
            ClientError::HungUp { .. }
            | ClientError::Refused { .. }
            | ClientError::Unexpected(_)
            | ClientError::Local(_) => 1,
        }
    }
}

/// Runs a client command against the daemon at `socket`, printing to stdout and errors to
/// stderr; for `main`.
///
/// Builds its own single-threaded tokio runtime, so it must not be called from inside one.
///
/// # Errors
/// None in practice: failures are printed and turned into the exit code (1 refused, 2 bad
/// local input, 3 daemon unreachable). The `Result` leaves room for `main`'s conventions.
pub fn execute(socket: &Path, command: ClientCommand) -> anyhow::Result<ExitCode> {
    let stdout = io::stdout();
    match run(socket, command, &mut stdout.lock()) {
        Ok(()) => Ok(ExitCode::SUCCESS),
        Err(e) => {
            eprintln!("error: {e}");
            Ok(ExitCode::from(e.exit_code()))
        }
    }
}

/// Runs a client command against the daemon at `socket`, writing its output to `out`.
///
/// Builds its own single-threaded tokio runtime, so it must not be called from inside one.
///
/// # Errors
/// [`ClientError`] when the daemon cannot be reached, refuses the request or answers
/// something unexpected, when local input is bad, or when `out` cannot be written.
pub fn run(socket: &Path, command: ClientCommand, out: &mut dyn Write) -> Result<(), ClientError> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(ClientError::Local)?;
    // A live trace and a followed flow list print as they go; every other command prints
    // once, at the end.
    match &command {
        ClientCommand::Traceflow(args) if args.live => {
            return runtime.block_on(traceflow::live(socket, args.clone(), out));
        }
        ClientCommand::Flows(args) if args.follow => {
            return runtime.block_on(flows::follow(socket, args, out));
        }
        _ => {}
    }
    let text = runtime.block_on(commands::run(socket, command))?;
    out.write_all(text.as_bytes()).map_err(ClientError::Local)
}

#[cfg(test)]
mod tests;
