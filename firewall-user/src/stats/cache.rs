//! The conntrack figures, shared between readers so a frequent reader does not walk the
//! conntrack map every time.
//!
//! Counting the entries walks the whole map, one system call per entry: 1.2 to 1.4 s for a
//! full map of the default 524,288 flows on a 2-core VM, about 2.5 µs a flow. A Prometheus
//! scrape therefore takes the last reading ([`Freshness::Cached`]) and, when it is older
//! than the cache's age limit, starts a new walk on a thread of its own that the next scrape
//! will see: a scrape never waits for a walk except the very first. `firewall stats` asks
//! for [`Freshness::Now`] and walks while the user waits, refreshing the shared reading too.

use std::{
    sync::{
        Arc, Mutex, OnceLock,
        atomic::{AtomicBool, Ordering},
    },
    time::{Duration, Instant},
};

use crate::{
    conntrack::{ConntrackCounter, ConntrackError, ConntrackFigures},
    datapath::Datapath,
};

/// How fresh the conntrack figures must be.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Freshness {
    /// Walk the map now.
    Now,
    /// The last reading will do; one older than the age limit is refreshed in the background
    /// for the next reader. Only the first reading ever is made while the caller waits.
    Cached,
}

/// Conntrack figures shared by the daemon's readers; cheap to clone (one shared state).
#[derive(Clone)]
pub struct ConntrackCache {
    shared: Arc<Shared>,
}

struct Shared {
    max_age: Duration,
    /// Handles of the cache's own on the maps, opened on first use.
    counter: OnceLock<ConntrackCounter>,
    last: Mutex<Option<(Instant, ConntrackFigures)>>,
    refreshing: AtomicBool,
}

impl ConntrackCache {
    /// A cache whose readings count as fresh for `max_age`.
    pub fn new(max_age: Duration) -> ConntrackCache {
        ConntrackCache {
            shared: Arc::new(Shared {
                max_age,
                counter: OnceLock::new(),
                last: Mutex::new(None),
                refreshing: AtomicBool::new(false),
            }),
        }
    }

    /// Opens the cache's own handles on `datapath`'s maps, the first time only; the later
    /// readings need no datapath.
    ///
    /// # Errors
    /// [`ConntrackError`] when the maps cannot be opened.
    pub fn prepare(&self, datapath: &Datapath) -> Result<(), ConntrackError> {
        if self.shared.counter.get().is_none() {
            // Two first callers may both open; one set wins and the other's handles close.
            let _ = self.shared.counter.set(ConntrackCounter::open(datapath)?);
        }
        Ok(())
    }

    /// Entries the conntrack map holds at most; 0 before [`ConntrackCache::prepare`].
    pub fn capacity(&self) -> u64 {
        self.shared
            .counter
            .get()
            .map_or(0, |counter| u64::from(counter.capacity()))
    }

    /// The figures, as fresh as `freshness` asks.
    ///
    /// # Errors
    /// [`ConntrackError::MissingMap`] before [`ConntrackCache::prepare`]; otherwise a walk
    /// made now that failed (a failed background walk is logged and leaves the last
    /// reading in place).
    pub fn read(&self, freshness: Freshness) -> Result<ConntrackFigures, ConntrackError> {
        let last = *self.shared.lock();
        match (freshness, last) {
            (Freshness::Cached, Some((at, figures))) => {
                if at.elapsed() >= self.shared.max_age {
                    self.refresh_in_background();
                }
                Ok(figures)
            }
            _ => self.shared.read_now(),
        }
    }

    fn refresh_in_background(&self) {
        if self.shared.refreshing.swap(true, Ordering::AcqRel) {
            return;
        }
        let shared = self.shared.clone();
        let spawned = std::thread::Builder::new()
            .name("conntrack-count".into())
            .spawn(move || {
                if let Err(e) = shared.read_now() {
                    log::warn!("counting conntrack entries: {e}");
                }
                shared.refreshing.store(false, Ordering::Release);
            });
        if let Err(e) = spawned {
            log::warn!("counting conntrack entries: cannot start a thread: {e}");
            self.shared.refreshing.store(false, Ordering::Release);
        }
    }
}

impl std::fmt::Debug for ConntrackCache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ConntrackCache")
            .field("max_age", &self.shared.max_age)
            .field("last", &*self.shared.lock())
            .finish_non_exhaustive()
    }
}

impl Shared {
    fn read_now(&self) -> Result<ConntrackFigures, ConntrackError> {
        let counter = self.counter.get().ok_or(ConntrackError::MissingMap(
            firewall_common::conntrack::CONNTRACK,
        ))?;
        let figures = counter.read()?;
        *self.lock() = Some((Instant::now(), figures));
        Ok(figures)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Option<(Instant, ConntrackFigures)>> {
        // The slot is only ever replaced whole, so a panic elsewhere cannot leave it torn.
        self.last.lock().unwrap_or_else(|e| e.into_inner())
    }
}
