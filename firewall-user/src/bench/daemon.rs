//! The daemon: time from an API call to its rule being enforced, with 0, 10k and 100k rules
//! present, and the time and peak memory of importing the largest rule set at once.
//!
//! Runs the real controller, store (on a temporary directory) and datapath (pinned under a
//! temporary root), and the real API on a temporary socket. An API call returns after the
//! store has committed and the maps hold the change, so its round trip is the time from the
//! call to the rule enforced. Peak memory is the process's high-water mark (VmHWM) over its
//! resident size just before the import.

use std::{path::PathBuf, process::Command, sync::Arc, time::Instant};

use anyhow::Context as _;
use hyper::Method;
use tokio::sync::{Mutex, oneshot};

use super::BenchArgs;
use crate::{
    daemon::{
        controller::Controller,
        enforcer::{self, Enforcer},
    },
    datapath::{Capacities, LoadOptions},
    model::{CfProtocol, Change, Limits, NetworkPolicy},
};

/// Runs [`run`] in a fresh process, so that the peak memory it reports is the daemon's own.
pub fn run_in_child(args: &BenchArgs) -> anyhow::Result<()> {
    let rules: Vec<String> = args.rules.iter().map(u32::to_string).collect();
    let status = Command::new(std::env::current_exe()?)
        .args(["bench", "--only", "daemon", "--rules", &rules.join(",")])
        .args(["--api-calls", &args.api_calls.to_string()])
        .env("RUST_LOG", "warn")
        .status()
        .context("starting the daemon benchmark")?;
    anyhow::ensure!(status.success(), "the daemon benchmark failed");
    Ok(())
}

/// Removes the temporary store and pins, whatever happens.
struct Scratch {
    dir: PathBuf,
    pin_root: PathBuf,
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = enforcer::uninstall(&self.pin_root);
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

pub fn run(args: &BenchArgs) -> anyhow::Result<()> {
    let pid = std::process::id();
    let scratch = Scratch {
        dir: std::env::temp_dir().join(format!("firewall-bench-{pid}")),
        pin_root: PathBuf::from(format!("/sys/fs/bpf/firewall-bench-{pid}")),
    };
    let largest = args.rules.iter().copied().max().unwrap_or(0);
    let room = (largest + 4096).max(Capacities::default().rules);
    let options = LoadOptions {
        capacities: Capacities {
            rules: room,
            policy_exact: room.max(Capacities::default().policy_exact),
            ..Capacities::default()
        },
        ..LoadOptions::default()
    };
    let limits = Limits {
        max_rule_id: room - 1,
        ..Limits::default()
    };
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    runtime.block_on(async move {
        let enforcer = Enforcer::open(&scratch.pin_root, &options)?;
        let (controller, _) = Controller::open(&scratch.dir.join("state"), limits, Some(enforcer))?;
        let controller = Arc::new(Mutex::new(controller));
        let socket = scratch.dir.join("firewall.sock");
        let (stop, stopped) = oneshot::channel::<()>();
        let server = {
            let (socket, controller) = (socket.clone(), controller.clone());
            tokio::spawn(async move { crate::api::serve(&socket, controller, stopped).await })
        };
        wait_for(&socket).await?;

        println!();
        println!("daemon: {} API calls at each size, store on {}", args.api_calls, scratch.dir.display());
        let baseline = memory("VmRSS")?;
        let started = Instant::now();
        apply(&controller, Change::AddPolicies(policies(0..largest))).await?;
        let took = started.elapsed();
        let peak = memory("VmHWM")?;
        println!(
            "import of {largest} rules as one change: {:.2} s, peak RSS {:.0} MiB over {:.0} MiB before",
            took.as_secs_f64(),
            (peak.saturating_sub(baseline)) as f64 / 1024.0,
            baseline as f64 / 1024.0
        );
        println!("{:>8} {:>10} {:>10} {:>10}", "rules", "p50 ms", "p99 ms", "max ms");
        let mut sizes = args.rules.clone();
        sizes.sort_unstable_by(|a, b| b.cmp(a));
        let mut present = largest;
        for size in sizes {
            if size < present {
                apply(&controller, Change::DeletePolicies(policies(size..present))).await?;
                present = size;
            }
            let mut samples = Vec::with_capacity(args.api_calls as usize);
            for call in 0..args.api_calls {
                let body = probe(call);
                let started = Instant::now();
                let reply = crate::client::request(
                    &socket,
                    Method::POST,
                    "/networking/v1/external/policies",
                    Some(body.clone()),
                )
                .await?;
                samples.push(started.elapsed().as_secs_f64() * 1000.0);
                anyhow::ensure!(reply.status == 200, "API answered {}", reply.status);
                let reply = crate::client::request(
                    &socket,
                    Method::POST,
                    "/networking/v1/external/policies/delete",
                    Some(body),
                )
                .await?;
                anyhow::ensure!(reply.status == 200, "API answered {}", reply.status);
            }
            samples.sort_by(f64::total_cmp);
            let at = |q: f64| samples[((samples.len() - 1) as f64 * q).round() as usize];
            println!("{size:>8} {:>10.2} {:>10.2} {:>10.2}", at(0.5), at(0.99), at(1.0));
        }
        let _ = stop.send(());
        server.await??;
        drop(controller);
        Ok::<_, anyhow::Error>(())
    })?;
    Ok(())
}

/// Policies `range` of the rule set: 100 destinations per source (the quota is 150), one
/// port each, so every policy is one map entry.
fn policies(range: std::ops::Range<u32>) -> Vec<NetworkPolicy> {
    range
        .map(|i| NetworkPolicy {
            source: format!("src{}", i / 100),
            destination: format!("dst{}", i % 100),
            protocol: CfProtocol::Tcp,
            start_port: 8080,
            end_port: 8080,
        })
        .collect()
}

/// The body of the `call`th timed API call: a policy between two apps seen nowhere else.
fn probe(call: u32) -> Vec<u8> {
    format!(
        r#"{{"policies":[{{"source":{{"id":"probe{call}"}},"destination":{{"id":"target{call}","protocol":"tcp","ports":{{"start":9000,"end":9000}}}}}}]}}"#
    )
    .into_bytes()
}

async fn apply(controller: &Arc<Mutex<Controller>>, change: Change) -> anyhow::Result<()> {
    let mut controller = controller.clone().lock_owned().await;
    tokio::task::spawn_blocking(move || controller.apply(change)).await??;
    Ok(())
}

async fn wait_for(socket: &std::path::Path) -> anyhow::Result<()> {
    for _ in 0..100 {
        if socket.exists() {
            return Ok(());
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    anyhow::bail!("the API socket {} did not appear", socket.display())
}

/// A memory figure of this process from /proc/self/status, in KiB.
fn memory(field: &str) -> anyhow::Result<u64> {
    let status = std::fs::read_to_string("/proc/self/status")?;
    status
        .lines()
        .find_map(|l| l.strip_prefix(field)?.strip_prefix(':'))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .with_context(|| format!("{field} in /proc/self/status"))
}
