//! The daemon's traces: it owns the trace control slot and the observation ring, hands out
//! trace ids, routes each observation to the trace that asked for it, and arms and disarms
//! the one live trace the datapath's filter allows at a time.

use std::{
    collections::HashMap,
    io,
    sync::{
        Arc, Mutex, PoisonError,
        atomic::{AtomicU32, Ordering},
    },
};

use aya::maps::{Array, MapData, RingBuf};
use firewall_common::{FlowEvent, Identity, trace::TraceControl};
use thiserror::Error;
use tokio::sync::mpsc;

use crate::{
    datapath::{Datapath, DatapathError},
    events,
    traceflow::live::HOOKS_PER_PACKET,
};

/// Errors of traces.
#[derive(Debug, Error)]
pub enum TracerError {
    /// Reading or writing the trace maps failed.
    #[error(transparent)]
    Datapath(#[from] DatapathError),
    /// Writing the control slot failed.
    #[error("writing the trace control slot: {0}")]
    Control(aya::maps::MapError),
    /// The random token could not be drawn.
    #[error("drawing the synthetic trace token: {0}")]
    Random(io::Error),
    /// Another live trace holds the datapath's filter.
    #[error("live trace {0} is running; one live trace runs at a time")]
    Busy(u32),
}

/// The filter of a live trace; zero fields match anything.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct LiveFilter {
    /// Source identity.
    pub source: Identity,
    /// Destination identity.
    pub destination: Identity,
    /// IP protocol.
    pub protocol: u8,
    /// Destination port.
    pub port: u16,
    /// Packets wanted.
    pub count: u32,
}

/// Observations of one trace, in the order the datapath sent them. Dropping it stops the
/// routing of the trace's observations.
pub struct Subscription {
    /// The trace's id.
    pub id: u32,
    events: mpsc::UnboundedReceiver<FlowEvent>,
    tracer: Arc<Tracer>,
}

impl Subscription {
    /// The next observation; `None` once the daemon stops routing.
    pub async fn next(&mut self) -> Option<FlowEvent> {
        self.events.recv().await
    }
}

impl Drop for Subscription {
    fn drop(&mut self) {
        self.tracer.routes().remove(&self.id);
    }
}

/// See the module docs.
pub struct Tracer {
    token: u64,
    next_id: AtomicU32,
    control: Mutex<Control>,
    routes: Mutex<HashMap<u32, mpsc::UnboundedSender<FlowEvent>>>,
}

struct Control {
    slot: Array<MapData, TraceControl>,
    live: Option<u32>,
}

impl Tracer {
    /// Takes the trace maps out of `datapath`, draws the synthetic token and writes it, with
    /// no live trace, into the control slot. Returns the tracer and the ring for [`drain`].
    ///
    /// # Errors
    /// [`TracerError`] when a map is missing or cannot be written, or no random token can be
    /// drawn.
    pub fn start(datapath: &mut Datapath) -> Result<(Arc<Tracer>, RingBuf<MapData>), TracerError> {
        let (slot, ring) = datapath.take_trace()?;
        let tracer = Tracer {
            token: random_token()?,
            next_id: AtomicU32::new(1),
            control: Mutex::new(Control { slot, live: None }),
            routes: Mutex::new(HashMap::new()),
        };
        tracer.write(&TraceControl {
            synthetic_token: tracer.token,
            ..TraceControl::default()
        })?;
        Ok((Arc::new(tracer), ring))
    }

    /// The token synthetic packets carry.
    pub fn token(&self) -> u64 {
        self.token
    }

    /// A new trace id, with its observations routed to the returned subscription.
    pub fn subscribe(self: &Arc<Self>) -> Subscription {
        let id = loop {
            let id = self.next_id.fetch_add(1, Ordering::Relaxed);
            if id != 0 {
                break id;
            }
        };
        let (sender, events) = mpsc::unbounded_channel();
        self.routes().insert(id, sender);
        Subscription {
            id,
            events,
            tracer: self.clone(),
        }
    }

    /// Arms the datapath's filter for the live trace `id`.
    ///
    /// # Errors
    /// [`TracerError::Busy`] while another live trace runs; [`TracerError::Control`] when
    /// the slot cannot be written.
    pub fn arm(&self, id: u32, filter: LiveFilter) -> Result<(), TracerError> {
        let mut control = self.control.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(running) = control.live {
            return Err(TracerError::Busy(running));
        }
        let slot = TraceControl {
            synthetic_token: self.token,
            live_remaining: i64::from(filter.count) * HOOKS_PER_PACKET,
            live_id: id,
            source_identity: filter.source,
            destination_identity: filter.destination,
            protocol: filter.protocol,
            _pad: 0,
            port: filter.port,
        };
        control.slot.set(0, slot, 0).map_err(TracerError::Control)?;
        control.live = Some(id);
        Ok(())
    }

    /// Disarms whatever live trace is armed: for shutdown, since the programs (and the
    /// slot they read) stay attached after the daemon exits.
    pub fn disarm_all(&self) {
        let running = self
            .control
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .live;
        if let Some(id) = running {
            self.disarm(id);
        }
    }

    /// Disarms the live trace `id`, if it is the one armed.
    pub fn disarm(&self, id: u32) {
        let mut control = self.control.lock().unwrap_or_else(PoisonError::into_inner);
        if control.live != Some(id) {
            return;
        }
        let idle = TraceControl {
            synthetic_token: self.token,
            ..TraceControl::default()
        };
        match control.slot.set(0, idle, 0) {
            Ok(()) => control.live = None,
            // The filter stays armed with its remaining budget; the next arm reports busy.
            Err(e) => log::error!("disarming live trace {id}: {e}"),
        }
    }

    fn write(&self, slot: &TraceControl) -> Result<(), TracerError> {
        let mut control = self.control.lock().unwrap_or_else(PoisonError::into_inner);
        control.slot.set(0, slot, 0).map_err(TracerError::Control)
    }

    fn routes(&self) -> std::sync::MutexGuard<'_, HashMap<u32, mpsc::UnboundedSender<FlowEvent>>> {
        self.routes.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn route(&self, event: FlowEvent) {
        let routes = self.routes();
        match routes.get(&event.trace_id) {
            Some(sender) => {
                let _ = sender.send(event);
            }
            None => log::debug!("trace observation for finished trace {}", event.trace_id),
        }
    }
}

/// Reads the observation ring until the runtime stops, routing each observation to its
/// trace.
///
/// # Errors
/// The ring's descriptor cannot be polled.
pub async fn drain(tracer: Arc<Tracer>, ring: RingBuf<MapData>) -> io::Result<()> {
    let mut ring = events::poll_ring(ring)?;
    loop {
        let mut guard = ring.readable_mut().await?;
        // Readiness is cleared before the drain, not after: the kernel wakes the reader only
        // when it had caught up, so an observation that lands just after a drain brings a
        // wake-up that clearing afterwards would lose, leaving it unread.
        guard.clear_ready();
        while let Some(item) = guard.get_inner_mut().0.next() {
            if let Some(event) = events::parse(&item) {
                tracer.route(event);
            }
        }
    }
}

/// A random non-zero 64-bit token from the kernel's generator.
fn random_token() -> Result<u64, TracerError> {
    loop {
        let token = getrandom::u64().map_err(|e| TracerError::Random(e.into()))?;
        if token != 0 {
            return Ok(token);
        }
    }
}
