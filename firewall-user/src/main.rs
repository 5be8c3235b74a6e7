//! The `firewall` command.

use std::{path::PathBuf, process::ExitCode};

use clap::{Parser, Subcommand};
use firewall::{
    capture,
    policy::{self, Policy},
    replay::{Record, ReplayHook, Replayer},
    testbed::{self, Testbed},
};

#[derive(Parser)]
#[command(
    name = "firewall",
    version,
    about = "Zero Trust identity-based eBPF firewall"
)]
struct Cli {
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
    /// Enforce a policy on interfaces until Ctrl-C or SIGTERM.
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
    },
    /// Build or remove a test topology of network namespaces for a policy's apps.
    Testbed {
        #[command(subcommand)]
        action: TestbedAction,
    },
    /// Measure the datapath's cost per packet with BPF_PROG_TEST_RUN.
    Bench(firewall::bench::BenchArgs),
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
    match execute(cli.command) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn execute(command: Command) -> anyhow::Result<ExitCode> {
    match command {
        Command::Replay { policy, pcap, hook } => replay(&policy::load_file(&policy)?, &pcap, hook),
        Command::Run {
            policy,
            interfaces,
            xdp,
        } => {
            let policy = policy::load_file(&policy)?;
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()?;
            runtime.block_on(firewall::run::run(&policy, &interfaces, xdp))?;
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
            for hint in testbed::hints(&testbed, &policy) {
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
