//! The daemon task that drains the datapath's flow record ring into the hub and the log.
//!
//! It wakes when the ring becomes readable (epoll through tokio's `AsyncFd`) and once a
//! second regardless: the kernel signals a ring only when its reader has caught up, so a
//! wake-up that raced the previous drain would otherwise leave records waiting for the next
//! packet. The tick also refreshes the datapath's rate-limited and lost counts.

use std::{sync::Arc, time::Duration};

use aya::maps::{MapData, RingBuf};
use tokio::{io::unix::AsyncFd, sync::watch, task::JoinHandle, time::MissedTickBehavior};

use super::{
    FlowError,
    hub::{FOLLOW_CAPACITY, FlowHub},
    logfile::{FlowLog, FlowLogSummary},
    names::{InterfaceNames, NameTable},
    record::{FlowRecord, WallClock},
    unreported::Unreported,
};
use crate::{
    events::{self, RingBufFd},
    policy::Policy,
};

/// Records handed to the hub and the log at once.
const BATCH: usize = 1024;
/// Records drained in one go before other tasks get a turn.
const DRAIN_LIMIT: usize = 16 * 1024;
/// How often the ring is drained and the counts read without a wake-up.
const TICK: Duration = Duration::from_secs(1);
/// How long interface names are remembered.
const INTERFACE_NAMES: Duration = Duration::from_secs(10);

/// The running collector: its hub, for the API, and its task.
pub struct Collecting {
    hub: Arc<FlowHub>,
    task: JoinHandle<Option<FlowLogSummary>>,
}

impl Collecting {
    /// The records, for `GET /v1/flows`.
    pub fn hub(&self) -> &Arc<FlowHub> {
        &self.hub
    }

    /// Ends the followers' streams, drains the ring one last time, writes what the log has
    /// queued, and reports the log's figures.
    pub async fn stop(self) {
        self.hub.close();
        match self.task.await {
            Ok(Some(summary)) => log::info!(
                "flow log: {} records written, {} failed, {} dropped while the writer was behind",
                summary.written,
                summary.failed,
                summary.dropped
            ),
            Ok(None) => {}
            Err(e) => log::error!("flow records: the collector failed: {e}"),
        }
    }
}

/// Starts collecting `ring` (taken with `Datapath::take_flow_events`): records are named by
/// the policies `policies` publishes, `buffer` of them kept in memory and served with the
/// counts `unreported` reads, and every one handed to `log` when there is one. Must run
/// inside a tokio runtime.
///
/// # Errors
/// [`FlowError::Poll`] when the ring cannot be polled, [`FlowError::Clock`] when the clocks
/// cannot be read.
pub fn start(
    ring: RingBuf<MapData>,
    unreported: Unreported,
    policies: watch::Receiver<Arc<Policy>>,
    buffer: usize,
    log: Option<FlowLog>,
) -> Result<Collecting, FlowError> {
    let hub = Arc::new(FlowHub::new(buffer, FOLLOW_CAPACITY, Some(unreported)));
    match &log {
        Some(log) => log::info!(
            "flow records: the last {buffer} kept in memory, every one logged to {}",
            log.path().display()
        ),
        None => log::info!("flow records: the last {buffer} kept in memory"),
    }
    let collector = Collector::new(ring, policies, hub.clone(), log)?;
    Ok(Collecting {
        hub,
        task: tokio::spawn(collector.run()),
    })
}

/// Drains the ring; see the module documentation.
pub struct Collector {
    ring: AsyncFd<RingBufFd>,
    policies: watch::Receiver<Arc<Policy>>,
    namer: Namer,
}

/// Everything a record needs besides the ring.
struct Namer {
    hub: Arc<FlowHub>,
    log: Option<FlowLog>,
    names: NameTable,
    /// This host's name, read once at start.
    host: String,
    interfaces: InterfaceNames,
    clock: WallClock,
    batch: Vec<Arc<FlowRecord>>,
}

impl Collector {
    /// A collector of `ring` into `hub` and `log`, naming records by the latest policy of
    /// `policies`.
    ///
    /// # Errors
    /// [`FlowError::Poll`] when the ring cannot be registered with the runtime,
    /// [`FlowError::Clock`] when the clocks cannot be read.
    pub fn new(
        ring: RingBuf<MapData>,
        mut policies: watch::Receiver<Arc<Policy>>,
        hub: Arc<FlowHub>,
        log: Option<FlowLog>,
    ) -> Result<Collector, FlowError> {
        let ring = events::poll_ring(ring).map_err(FlowError::Poll)?;
        let names = NameTable::new(policies.borrow_and_update().clone());
        Ok(Collector {
            ring,
            policies,
            namer: Namer {
                hub,
                log,
                names,
                host: events::host_name(),
                interfaces: InterfaceNames::new(INTERFACE_NAMES),
                clock: WallClock::now().map_err(FlowError::Clock)?,
                batch: Vec::with_capacity(BATCH),
            },
        })
    }

    /// Collects until the hub closes; returns the log's figures, if there is a log.
    pub async fn run(mut self) -> Option<FlowLogSummary> {
        let mut closing = self.namer.hub.closing();
        let mut tick = tokio::time::interval(TICK);
        tick.set_missed_tick_behavior(MissedTickBehavior::Delay);
        let mut policies_open = true;
        let mut polling = true;
        while !*closing.borrow_and_update() {
            tokio::select! {
                _ = closing.changed() => break,
                changed = self.policies.changed(), if policies_open => match changed {
                    Ok(()) => {
                        let policy = self.policies.borrow_and_update().clone();
                        self.namer.names = NameTable::new(policy);
                    }
                    // The controller is gone: keep the last names.
                    Err(_) => policies_open = false,
                },
                ready = self.ring.readable_mut(), if polling => match ready {
                    Ok(mut guard) => {
                        if self.namer.drain(&mut guard.get_inner_mut().0) {
                            guard.clear_ready();
                            // Records that arrived between the drain and the clearing rang
                            // no bell of their own.
                            self.namer.drain(&mut guard.get_inner_mut().0);
                        }
                    }
                    Err(e) => {
                        log::error!("flow records: polling the ring failed ({e}); reading it \
                                     once a second instead");
                        polling = false;
                    }
                },
                _ = tick.tick() => {
                    self.namer.drain(&mut self.ring.get_mut().0);
                    self.namer.hub.refresh();
                }
            }
        }
        self.namer.drain(&mut self.ring.get_mut().0);
        self.namer.hub.refresh();
        let log = self.namer.log.take()?;
        match tokio::task::spawn_blocking(move || log.finish()).await {
            Ok(summary) => Some(summary),
            Err(e) => {
                log::error!("flow log: the writer did not finish: {e}");
                None
            }
        }
    }
}

impl Namer {
    /// Takes up to [`DRAIN_LIMIT`] records out of the ring; true when it is empty.
    fn drain(&mut self, ring: &mut RingBuf<MapData>) -> bool {
        match WallClock::now() {
            Ok(clock) => self.clock = clock,
            Err(e) => log::warn!("flow records: reading the clocks: {e}; times may be off"),
        }
        let mut taken = 0;
        let emptied = loop {
            if taken == DRAIN_LIMIT {
                break false;
            }
            let Some(item) = ring.next() else {
                break true;
            };
            taken += 1;
            let Some(event) = events::parse(&item) else {
                log::warn!(
                    "flow records: a record of {} bytes is too short",
                    item.len()
                );
                continue;
            };
            drop(item);
            let interface = self.interfaces.name(event.ifindex);
            let record = FlowRecord::new(&event, &self.names, &self.clock, &self.host, interface);
            self.batch.push(Arc::new(record));
            if self.batch.len() == BATCH {
                self.flush();
            }
        };
        self.flush();
        emptied
    }

    fn flush(&mut self) {
        if self.batch.is_empty() {
            return;
        }
        self.hub.publish(&self.batch);
        match &mut self.log {
            Some(log) => log.submit(std::mem::replace(
                &mut self.batch,
                Vec::with_capacity(BATCH),
            )),
            None => self.batch.clear(),
        }
    }
}
