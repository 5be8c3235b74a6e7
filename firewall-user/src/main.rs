//! The `firewall` command.

use std::{path::PathBuf, process::ExitCode};

use clap::{Args, Parser, Subcommand};
use firewall::{
    capture, conntrack,
    datapath::LoadOptions,
    policy::{self, Policy},
    replay::{Record, ReplayHook, Replayer},
    run::RunOptions,
    testbed::{self, Testbed},
};
use firewall_common::conntrack::{Config, DEFAULT_CONNTRACK_ENTRIES};

#[derive(Parser)]
#[command(
    name = "firewall",
    version,
    about = "Zero Trust identity-based eBPF firewall"
)]
struct Cli {
    /// The daemon's API socket (for the daemon and the commands that talk to it).
    #[arg(long, global = true, default_value = "/run/firewall/firewall.sock")]
    socket: PathBuf,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run each packet of a capture through the real programs and print one JSON verdict per
    /// packet. Nothing is attached; map state carries from one packet to the next.
    Replay {
        /// Policy file (YAML).
        #[arg(long)]
        policy: PathBuf,
        /// Capture file (pcap or pcapng, Ethernet).
        #[arg(long)]
        pcap: PathBuf,
        /// Which program to run.
        #[arg(long, value_enum, default_value = "tc")]
        hook: ReplayHook,
    },
    /// Enforce a policy on interfaces until Ctrl-C or SIGTERM; SIGHUP reloads the policy file.
    Run {
        /// Policy file (YAML).
        #[arg(long)]
        policy: PathBuf,
        /// Interface to attach to (repeatable).
        #[arg(long = "iface", required = true)]
        interfaces: Vec<String>,
        /// Use XDP instead of TC on the receive side.
        #[arg(long)]
        xdp: bool,
        #[command(flatten)]
        conntrack: ConntrackArgs,
    },
    /// Inspect or clear the flows of the running `firewall run`.
    Conntrack {
        #[command(subcommand)]
        action: ConntrackAction,
    },
    /// Build or remove a test topology of network namespaces for a policy's apps.
    Testbed {
        #[command(subcommand)]
        action: TestbedAction,
    },
    /// Measure the datapath's cost per packet with BPF_PROG_TEST_RUN.
    Bench(firewall::bench::BenchArgs),
    /// Run the host daemon: durable store, API on a Unix socket, enforcement that outlives it.
    Daemon(DaemonArgs),
    #[command(flatten)]
    Client(firewall::client::ClientCommand),
}

/// Options of `firewall daemon`.
#[derive(Args)]
struct DaemonArgs {
    /// Directory of the store.
    #[arg(long, default_value = "/var/lib/firewall")]
    state_dir: PathBuf,
    /// Policy file (YAML) imported into the store at start.
    #[arg(long)]
    policy: Option<PathBuf>,
    /// Interface name or glob pattern to enforce on, such as `eth0` or `veth*` (repeatable);
    /// matching interfaces that appear later are attached too.
    #[arg(long = "iface")]
    interfaces: Vec<String>,
    /// Policies one source app may have (cf-networking's default is 150).
    #[arg(long, default_value_t = 150)]
    policy_quota: usize,
    /// Remove the daemon's pinned links (detaching the programs) and maps, then exit.
    #[arg(long)]
    uninstall: bool,
    /// Where the maps and links are pinned (`firewall conntrack` looks in the default).
    #[arg(long, default_value = firewall::daemon::PIN_ROOT)]
    pin_root: PathBuf,
    /// Serve Prometheus metrics on GET /metrics at this address, such as 127.0.0.1:9477
    /// (no authentication: keep it on loopback or a private network). Off unless given.
    #[arg(long, value_name = "ADDR:PORT")]
    metrics_addr: Option<std::net::SocketAddr>,
    #[command(flatten)]
    conntrack: ConntrackArgs,
    #[command(flatten)]
    flows: firewall::flows::FlowArgs,
}

/// Connection tracking sizes and lifetimes of `firewall run` (lifetimes in seconds).
#[derive(Args)]
struct ConntrackArgs {
    /// Flows tracked at once; beyond that the least recently used is forgotten.
    #[arg(long, default_value_t = DEFAULT_CONNTRACK_ENTRIES, value_parser = at_least_one())]
    conntrack_entries: u32,
    /// Lifetime of a TCP flow whose SYN was not answered.
    #[arg(long, default_value_t = Config::default().tcp_syn_timeout, value_parser = at_least_one())]
    ct_tcp_syn: u32,
    /// Lifetime of an established TCP flow after its last packet.
    #[arg(long, default_value_t = Config::default().tcp_established_timeout, value_parser = at_least_one())]
    ct_tcp_established: u32,
    /// Lifetime of a TCP flow after a FIN or RST.
    #[arg(long, default_value_t = Config::default().tcp_closing_timeout, value_parser = at_least_one())]
    ct_tcp_closing: u32,
    /// Lifetime of a UDP, SCTP or other flow after its last packet.
    #[arg(long, default_value_t = Config::default().other_timeout, value_parser = at_least_one())]
    ct_other: u32,
    /// Lifetime of an ICMP echo flow.
    #[arg(long, default_value_t = Config::default().icmp_timeout, value_parser = at_least_one())]
    ct_icmp: u32,
    /// How long the verdict of a datagram's first fragment holds for the rest.
    #[arg(long, default_value_t = Config::default().fragment_timeout, value_parser = at_least_one())]
    fragment_timeout: u32,
}

impl ConntrackArgs {
    fn load_options(&self) -> LoadOptions {
        LoadOptions {
            conntrack_entries: self.conntrack_entries,
            config: Config {
                tcp_syn_timeout: self.ct_tcp_syn,
                tcp_established_timeout: self.ct_tcp_established,
                tcp_closing_timeout: self.ct_tcp_closing,
                other_timeout: self.ct_other,
                icmp_timeout: self.ct_icmp,
                fragment_timeout: self.fragment_timeout,
                ..Config::default()
            },
            ..LoadOptions::default()
        }
    }
}

fn at_least_one() -> clap::builder::RangedI64ValueParser<u32> {
    clap::value_parser!(u32).range(1..)
}

#[derive(Subcommand)]
enum ConntrackAction {
    /// List the tracked flows (expired ones only with --all).
    List {
        /// One JSON array of flows instead of a table.
        #[arg(long)]
        json: bool,
        /// Include expired flows still in the map (the datapath ignores them).
        #[arg(long)]
        all: bool,
        /// Policy file to name apps and networks by (the table shows numbers otherwise).
        #[arg(long)]
        policy: Option<PathBuf>,
    },
    /// Forget every tracked flow: the next packet of each is checked against the policy as
    /// a new flow.
    Flush,
}

#[derive(Subcommand)]
enum TestbedAction {
    /// Create one namespace per app and network, bridged in the root namespace. Prints
    /// `iface NAME` per root-side interface and `hint COMMAND` lines to try traffic.
    Up {
        /// Policy file whose apps and networks become hosts.
        #[arg(long)]
        policy: PathBuf,
        /// Testbed name, 1 to 6 lowercase letters or digits.
        #[arg(long, default_value = "demo")]
        name: String,
    },
    /// Remove a testbed's namespaces and links.
    Down {
        /// Testbed name.
        #[arg(long, default_value = "demo")]
        name: String,
    },
}

fn main() -> ExitCode {
    env_logger::Builder::from_env(env_logger::Env::default().default_filter_or("info")).init();
    let cli = Cli::parse();
    match execute(cli.command, &cli.socket) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn execute(command: Command, socket: &std::path::Path) -> anyhow::Result<ExitCode> {
    match command {
        Command::Client(command) => firewall::client::execute(socket, command),
        Command::Daemon(args) if args.uninstall => {
            let removed = firewall::daemon::uninstall(&args.pin_root)?;
            eprintln!("removed {} pins; enforcement stopped", removed.len());
            Ok(ExitCode::SUCCESS)
        }
        Command::Daemon(args) => {
            let mut load = args.conntrack.load_options();
            args.flows.apply_rate(&mut load.config)?;
            firewall::daemon::run(firewall::daemon::DaemonOptions {
                state_dir: args.state_dir,
                socket: socket.to_path_buf(),
                policy: args.policy,
                interfaces: args.interfaces,
                pin_root: args.pin_root,
                load,
                limits: firewall::model::Limits {
                    policy_quota_per_source: args.policy_quota,
                    ..firewall::model::Limits::default()
                },
                metrics_addr: args.metrics_addr,
                flows: args.flows.options(),
            })?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Replay { policy, pcap, hook } => replay(&policy::load_file(&policy)?, &pcap, hook),
        Command::Run {
            policy,
            interfaces,
            xdp,
            conntrack,
        } => {
            let options = RunOptions {
                policy_path: policy,
                interfaces,
                xdp,
                load: conntrack.load_options(),
            };
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()?;
            runtime.block_on(firewall::run::run(&options))?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Conntrack { action } => {
            conntrack_command(action)?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Testbed {
            action: TestbedAction::Up { policy, name },
        } => {
            let policy = policy::load_file(&policy)?;
            let testbed = Testbed::up(&name, &testbed::hosts_of(&policy))?;
            for host in testbed.hosts() {
                println!("iface {}", host.interface);
            }
            let cli = format!("{} --socket {}", firewall_binary(), socket.display());
            for hint in testbed::hints(testbed.hosts(), &policy, &cli) {
                println!("hint {hint}");
            }
            testbed.keep();
            Ok(ExitCode::SUCCESS)
        }
        Command::Testbed {
            action: TestbedAction::Down { name },
        } => {
            Testbed::remove(&name);
            Ok(ExitCode::SUCCESS)
        }
        Command::Bench(args) => {
            firewall::bench::run(&args)?;
            Ok(ExitCode::SUCCESS)
        }
    }
}

/// This binary's path, for commands printed to be pasted; `firewall` when it is unknown.
fn firewall_binary() -> String {
    std::env::current_exe().map_or_else(|_| "firewall".into(), |path| path.display().to_string())
}

/// `firewall conntrack list|flush`, on the maps pinned by the running `firewall run`.
fn conntrack_command(action: ConntrackAction) -> anyhow::Result<()> {
    let mut maps = conntrack::open_pinned()?;
    match action {
        ConntrackAction::List { json, all, policy } => {
            let policy = policy.map(|path| policy::load_file(&path)).transpose()?;
            let now = conntrack::monotonic_coarse_ns()?;
            let flows = conntrack::list(&maps.conntrack, now, &maps.config, all)?;
            if json {
                println!("{}", serde_json::to_string(&flows)?);
            } else {
                print!("{}", conntrack::format_table(&flows, policy.as_ref()));
            }
        }
        ConntrackAction::Flush => {
            let removed = conntrack::flush(&mut maps.conntrack)?;
            conntrack::add_flushed(&mut maps.stats, removed)?;
            let flows = if removed == 1 { "flow" } else { "flows" };
            println!("removed {removed} {flows}");
        }
    }
    Ok(())
}

/// Replays a capture; exits non-zero when any packet could not be run.
fn replay(policy: &Policy, pcap: &std::path::Path, hook: ReplayHook) -> anyhow::Result<ExitCode> {
    let frames = capture::read(pcap)?;
    let mut replayer = Replayer::new(&policy.compile(), hook)?;
    let mut failed = false;
    for (index, frame) in frames.iter().enumerate() {
        let record = match replayer.run(&frame.data) {
            Ok(outcome) => Record::decided(index, &outcome, policy),
            Err(e) => {
                failed = true;
                Record::failed(index, &e)
            }
        };
        println!("{}", serde_json::to_string(&record)?);
    }
    Ok(if failed {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    })
}
