//! `firewall daemon`: the host service. It keeps apps, networks and rules in a durable
//! store, serves the API on a Unix socket, enforces through pinned maps and links that
//! outlive it, and attaches to matching interfaces as they come and go.
//!
//! Stopping the daemon (SIGTERM, SIGINT, or SIGKILL) leaves enforcement in place: the
//! programs stay attached through their pinned links and keep the last policy. The next
//! start takes them over without a gap. `firewall daemon --uninstall` removes everything.

pub mod controller;
pub mod enforcer;
pub mod import;
pub mod interfaces;
pub mod tracer;

use std::{net::SocketAddr, path::PathBuf, sync::Arc, time::Duration};

use anyhow::Context as _;
use tokio::{
    signal::unix::{SignalKind, signal},
    sync::{Mutex, mpsc},
};

use self::{controller::Controller, enforcer::Enforcer, interfaces::Patterns, tracer::Tracer};
use crate::{
    api::ApiState,
    datapath::LoadOptions,
    flows::{self, FlowLog, FlowOptions, Unreported},
    metrics::{DaemonMetrics, server::MetricsServer},
    model::Limits,
};

/// Where pins live; the layout version is a directory below.
pub const PIN_ROOT: &str = "/sys/fs/bpf/firewall";

/// How the daemon runs.
#[derive(Clone, Debug)]
pub struct DaemonOptions {
    /// Store directory.
    pub state_dir: PathBuf,
    /// API socket.
    pub socket: PathBuf,
    /// A policy file imported into the store at start.
    pub policy: Option<PathBuf>,
    /// Interface names or glob patterns.
    pub interfaces: Vec<String>,
    /// Pin root (normally [`PIN_ROOT`]).
    pub pin_root: PathBuf,
    /// Map sizes and lifetimes.
    pub load: LoadOptions,
    /// Quotas and limits.
    pub limits: Limits,
    /// Where to serve Prometheus metrics (`GET /metrics`); none when not given.
    pub metrics_addr: Option<SocketAddr>,
    /// Flow records kept in memory and logged.
    pub flows: FlowOptions,
}

/// Runs the daemon until SIGTERM or SIGINT.
///
/// # Errors
/// Start-up failures: the store, the pinned layout, the socket.
pub fn run(options: DaemonOptions) -> anyhow::Result<()> {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    runtime.block_on(serve(options))
}

async fn serve(options: DaemonOptions) -> anyhow::Result<()> {
    let patterns = Patterns::new(&options.interfaces).map_err(anyhow::Error::msg)?;
    // Before the datapath, so that a log that cannot be written stops nothing half done.
    let flow_log = options.flows.log.clone().map(FlowLog::start).transpose()?;
    let mut enforcer =
        Enforcer::open(&options.pin_root, &options.load).context("loading the datapath")?;
    // Taken before the controller, and the datapath with it, go behind the lock.
    let flow_ring = enforcer.datapath().take_flow_events()?;
    let flow_stats = Unreported::open(enforcer.datapath())?;
    let (tracer, trace_ring) = Tracer::start(enforcer.datapath()).context("setting up traces")?;
    let trace_drain = tokio::spawn(tracer::drain(tracer.clone(), trace_ring));
    let (mut controller, reconciled) =
        Controller::open(&options.state_dir, options.limits, Some(enforcer))
            .context("opening the store")?;
    if let Some(applied) = reconciled {
        log::info!(
            "reconciled pinned maps with the store: {} entries added, {} removed",
            applied.added,
            applied.removed
        );
    }
    if let Some(path) = &options.policy {
        let applied = import::import(&mut controller, path)?;
        log::info!("imported {}: revision {}", path.display(), applied.revision);
    }
    controller.set_patterns(patterns.as_strings());
    let collecting = flows::start(
        flow_ring,
        flow_stats,
        controller.policy_updates(),
        options.flows.buffer,
        flow_log,
    )
    .context("starting flow records")?;
    let controller = Arc::new(Mutex::new(controller));

    let (changed, mut rescans) = mpsc::channel(1);
    interfaces::watch(changed).context("watching interfaces over netlink")?;
    let watcher = {
        let controller = controller.clone();
        tokio::spawn(async move {
            loop {
                sync(&controller, &patterns).await;
                // A netlink event, or a periodic rescan as a safety net.
                let _ = tokio::time::timeout(Duration::from_secs(5), rescans.recv()).await;
            }
        })
    };

    let mut terminate = signal(SignalKind::terminate())?;
    let mut interrupt = signal(SignalKind::interrupt())?;
    let hub = collecting.hub().clone();
    let shutdown = async move {
        tokio::select! {
            _ = terminate.recv() => {}
            _ = interrupt.recv() => {}
        }
        // Followers' streams end now, so that open connections can finish.
        hub.close();
    };
    let metrics = Arc::new(DaemonMetrics::new());
    let metrics_server = match options.metrics_addr {
        Some(address) => {
            let server = MetricsServer::start(address, controller.clone(), metrics.clone()).await?;
            log::info!("serving metrics on http://{}/metrics", server.address());
            Some(server)
        }
        None => None,
    };
    log::info!("serving the API on {}", options.socket.display());
    let state = ApiState::new(controller.clone())
        .with_metrics(metrics)
        .with_tracer(tracer.clone());
    let app = crate::api::router(state).merge(crate::api::flows::router(collecting.hub().clone()));
    crate::api::serve_router(&options.socket, app, shutdown).await?;
    if let Some(server) = metrics_server
        && let Err(e) = server.stop().await
    {
        log::warn!("{e}");
    }
    watcher.abort();
    tracer.disarm_all();
    trace_drain.abort();
    collecting.stop().await;
    log::info!("stopped; enforcement stays in place through the pinned links");
    Ok(())
}

async fn sync(controller: &Arc<Mutex<Controller>>, patterns: &Patterns) {
    let host = interfaces::host_interfaces();
    let mut controller = controller.lock().await;
    if let Some(enforcer) = controller.enforcer() {
        for change in enforcer.sync_interfaces(&host, |name| patterns.matches(name)) {
            log::info!("{change}");
        }
    }
}

/// Removes the daemon's pins: links (detaching the programs), then maps.
///
/// # Errors
/// A pin that cannot be removed.
pub fn uninstall(pin_root: &std::path::Path) -> anyhow::Result<Vec<String>> {
    Ok(enforcer::uninstall(pin_root)?)
}
