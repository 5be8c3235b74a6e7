//! The daemon's flow records in memory: the last N for `GET /v1/flows`, and a fan-out to
//! every follower of `GET /v1/flows?follow=true`.
//!
//! Publishing never waits for a reader. Followers share a bounded `broadcast` channel: one that
//! falls more than its capacity behind skips ahead to the oldest record still there and is told
//! how many it missed, so a slow client costs the daemon nothing but its own gap.

use std::{
    collections::VecDeque,
    sync::{
        Arc, Mutex, MutexGuard, PoisonError,
        atomic::{AtomicU64, Ordering},
    },
};

use tokio::sync::{broadcast, watch};

use super::{
    filter::FlowFilter,
    record::FlowRecord,
    unreported::{FlowCounts, StreamCounts, Unreported},
};

/// Records kept in memory unless told otherwise.
pub const DEFAULT_CAPACITY: usize = 10_000;
/// Records a follower may fall behind before it misses some.
pub const FOLLOW_CAPACITY: usize = 4_096;
/// Records `GET /v1/flows` answers with when no `limit` is given.
pub const DEFAULT_LIMIT: usize = 100;

/// The last records, their followers, and the counts.
pub struct FlowHub {
    capacity: usize,
    recent: Mutex<VecDeque<Arc<FlowRecord>>>,
    live: broadcast::Sender<Arc<FlowRecord>>,
    received: AtomicU64,
    unreported: Option<Unreported>,
    /// Rate-limited and lost, as last read; followers wake when it changes.
    unreported_now: watch::Sender<(u64, u64)>,
    closing: watch::Sender<bool>,
}

/// What a follower gets next.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum FollowEvent {
    /// A record the filter selects.
    Record(Arc<FlowRecord>),
    /// The counts: first, after records were missed, and when the datapath's counts change.
    Counts(StreamCounts),
}

impl FlowHub {
    /// A hub keeping the last `capacity` records (at least one), letting followers fall
    /// `follow_capacity` records behind (at least one), with the datapath's unreported counts
    /// read through `unreported` (none: always zero).
    pub fn new(capacity: usize, follow_capacity: usize, unreported: Option<Unreported>) -> FlowHub {
        let capacity = capacity.max(1);
        let (live, _) = broadcast::channel(follow_capacity.max(1));
        FlowHub {
            capacity,
            recent: Mutex::new(VecDeque::with_capacity(capacity.min(DEFAULT_CAPACITY))),
            live,
            received: AtomicU64::new(0),
            unreported,
            unreported_now: watch::Sender::new((0, 0)),
            closing: watch::Sender::new(false),
        }
    }

    /// How many records are kept.
    pub fn capacity(&self) -> usize {
        self.capacity
    }

    /// Adds records (oldest first), forgetting the oldest held beyond the capacity, and
    /// hands them to every follower.
    pub fn publish(&self, batch: &[Arc<FlowRecord>]) {
        if batch.is_empty() {
            return;
        }
        let mut recent = self.lock();
        for record in batch {
            if recent.len() == self.capacity {
                recent.pop_front();
            }
            recent.push_back(record.clone());
            // No follower is not an error.
            let _ = self.live.send(record.clone());
        }
        self.received
            .fetch_add(batch.len() as u64, Ordering::Relaxed);
    }

    /// The newest `limit` held records `filter` selects, oldest first.
    pub fn recent(&self, filter: &FlowFilter, limit: usize) -> Vec<Arc<FlowRecord>> {
        newest(&self.lock(), filter, limit)
    }

    /// A follower: it first gets the counts, then the newest `backlog` held records `filter`
    /// selects, then every selected record published after this call, none twice.
    pub fn follow(self: &Arc<Self>, filter: FlowFilter, backlog: usize) -> Follower {
        let recent = self.lock();
        let live = self.live.subscribe();
        let backlog = newest(&recent, &filter, backlog).into();
        drop(recent);
        Follower {
            hub: self.clone(),
            live,
            unreported: self.unreported_now.subscribe(),
            closing: self.closing.subscribe(),
            filter,
            backlog,
            missed: 0,
            started: false,
        }
    }

    /// Received, rate-limited and lost records since the start, the last two read now.
    pub fn counts(&self) -> FlowCounts {
        self.refresh();
        let (rate_limited, lost) = *self.unreported_now.borrow();
        FlowCounts {
            received: self.received.load(Ordering::Relaxed),
            rate_limited,
            lost,
        }
    }

    /// Reads the datapath's counts again; followers hear of a change. A failed read is
    /// logged and the last counts stay.
    pub fn refresh(&self) {
        let Some(unreported) = &self.unreported else {
            return;
        };
        match unreported.read() {
            Ok(now) => {
                self.unreported_now.send_if_modified(|held| {
                    let changed = *held != now;
                    *held = now;
                    changed
                });
            }
            Err(e) => log::warn!("flow records: reading the datapath's counts: {e}"),
        }
    }

    /// Ends every follower's stream; called once at shutdown.
    pub fn close(&self) {
        self.closing.send_replace(true);
    }

    /// A receiver that turns `true` when [`FlowHub::close`] is called.
    pub fn closing(&self) -> watch::Receiver<bool> {
        self.closing.subscribe()
    }

    /// Whether [`FlowHub::close`] was called.
    pub fn is_closed(&self) -> bool {
        *self.closing.borrow()
    }

    fn lock(&self) -> MutexGuard<'_, VecDeque<Arc<FlowRecord>>> {
        // A panic while holding the lock leaves a valid queue: nothing to repair.
        self.recent.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

fn newest(
    recent: &VecDeque<Arc<FlowRecord>>,
    filter: &FlowFilter,
    limit: usize,
) -> Vec<Arc<FlowRecord>> {
    let mut selected: Vec<Arc<FlowRecord>> = recent
        .iter()
        .rev()
        .filter(|record| filter.matches(record))
        .take(limit)
        .cloned()
        .collect();
    selected.reverse();
    selected
}

/// One client following the records; see [`FlowHub::follow`].
pub struct Follower {
    hub: Arc<FlowHub>,
    live: broadcast::Receiver<Arc<FlowRecord>>,
    unreported: watch::Receiver<(u64, u64)>,
    closing: watch::Receiver<bool>,
    filter: FlowFilter,
    backlog: VecDeque<Arc<FlowRecord>>,
    missed: u64,
    started: bool,
}

impl Follower {
    /// The next event; `None` once the hub closes.
    pub async fn next(&mut self) -> Option<FollowEvent> {
        if !self.started {
            self.started = true;
            return Some(FollowEvent::Counts(self.counts()));
        }
        if let Some(record) = self.backlog.pop_front() {
            return Some(FollowEvent::Record(record));
        }
        loop {
            if *self.closing.borrow() {
                return None;
            }
            tokio::select! {
                biased;
                // Closed, or the hub is gone: either way the stream ends.
                _ = self.closing.changed() => return None,
                received = self.live.recv() => match received {
                    Ok(record) if self.filter.matches(&record) => {
                        return Some(FollowEvent::Record(record));
                    }
                    Ok(_) => continue,
                    Err(broadcast::error::RecvError::Lagged(skipped)) => {
                        self.missed += skipped;
                        return Some(FollowEvent::Counts(self.counts()));
                    }
                    Err(broadcast::error::RecvError::Closed) => return None,
                },
                changed = self.unreported.changed() => match changed {
                    Ok(()) => return Some(FollowEvent::Counts(self.counts())),
                    Err(_) => return None,
                },
            }
        }
    }

    /// Records this follower missed so far.
    pub fn missed(&self) -> u64 {
        self.missed
    }

    fn counts(&mut self) -> StreamCounts {
        let (rate_limited, lost) = *self.unreported.borrow_and_update();
        StreamCounts {
            counts: FlowCounts {
                received: self.hub.received.load(Ordering::Relaxed),
                rate_limited,
                lost,
            },
            missed: self.missed,
        }
    }
}

#[cfg(test)]
mod tests;
