//! The controller: every change to apps, networks and rules goes through
//! [`Controller::apply`], which validates it, stores it and enforces it, all or nothing.
//!
//! Order of work for one change: the model validates it and computes the new state; the new
//! state is compiled and checked against the map capacities; the store commits it in one
//! transaction; the maps receive the difference. If the maps refuse, the store is put back
//! and the error returned, so what is stored is what is enforced. If the process dies after
//! the commit, the next start reconciles the pinned maps with the store: an accepted change
//! is never lost.

use std::{path::Path, sync::Arc};

use thiserror::Error;
use tokio::sync::watch;

use super::enforcer::{Attached, Enforcer};
use crate::{
    datapath::DatapathError,
    model::{Change, Limits, Model, ModelError},
    policy::{CompiledPolicy, Policy},
    store::{Store, StoreError},
    update::UpdateSummary,
};

/// Why a change was refused; each maps to one HTTP status in the API.
#[derive(Debug, Error)]
pub enum ControlError {
    /// The request is invalid (400).
    #[error("{0}")]
    Invalid(String),
    /// The source app has too many policies (403).
    #[error("policy quota exceeded")]
    QuotaExceeded,
    /// What the request names does not exist (404).
    #[error("{0}")]
    NotFound(String),
    /// A map or the rule id space would overflow (409); nothing was stored.
    #[error("{0}")]
    Full(String),
    /// The store failed (500).
    #[error("store: {0}")]
    Store(#[from] StoreError),
    /// The datapath failed (500).
    #[error("datapath: {0}")]
    Datapath(#[from] DatapathError),
}

impl From<ModelError> for ControlError {
    fn from(e: ModelError) -> Self {
        match e {
            ModelError::Invalid(m) => ControlError::Invalid(m),
            ModelError::QuotaExceeded => ControlError::QuotaExceeded,
            ModelError::NotFound(m) => ControlError::NotFound(m),
            ModelError::Full(m) => ControlError::Full(m),
        }
    }
}

/// What an accepted change did to the maps.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Serialize)]
pub struct Applied {
    /// The policy revision in force.
    pub revision: u32,
    /// Map entries written.
    pub added: usize,
    /// Map entries removed.
    pub removed: usize,
}

impl From<UpdateSummary> for Applied {
    fn from(s: UpdateSummary) -> Self {
        Applied {
            revision: s.revision,
            added: s.added,
            removed: s.removed,
        }
    }
}

/// What `GET /v1/status` shows.
#[derive(Clone, Debug, serde::Serialize)]
pub struct Status {
    /// Whether a kernel datapath is attached (false only in tests).
    pub enforcing: bool,
    /// Interface patterns the daemon attaches to.
    pub interface_patterns: Vec<String>,
    /// Interfaces attached now.
    pub interfaces: Vec<Attached>,
    /// Registered apps.
    pub apps: usize,
    /// Networks.
    pub networks: usize,
    /// cf-style network policies.
    pub policies: usize,
    /// Map entries enforced.
    pub map_entries: usize,
}

/// Owns the store, the model and the live datapath.
pub struct Controller {
    store: Store,
    model: Model,
    limits: Limits,
    enforcer: Option<Enforcer>,
    patterns: Vec<String>,
    /// The policy in force, for readers that must not wait for the lock (flow records).
    published: watch::Sender<Arc<Policy>>,
}

impl Controller {
    /// Opens the store in `state_dir` and, with an enforcer, reconciles the maps with it:
    /// entries missing from the maps are added, stale ones removed.
    ///
    /// # Errors
    /// The store cannot be opened or read, or the maps refuse the reconciliation.
    pub fn open(
        state_dir: &Path,
        limits: Limits,
        mut enforcer: Option<Enforcer>,
    ) -> Result<(Controller, Option<Applied>), ControlError> {
        let store = Store::open(state_dir)?;
        let model = store.load()?;
        let policy = model.to_policy();
        let reconciled = match enforcer.as_mut() {
            Some(enforcer) => {
                let desired = policy.compile();
                enforcer.check_capacity(&desired)?;
                Some(enforcer.update(&desired)?.into())
            }
            None => None,
        };
        let controller = Controller {
            store,
            model,
            limits,
            enforcer,
            patterns: Vec::new(),
            published: watch::Sender::new(Arc::new(policy)),
        };
        Ok((controller, reconciled))
    }

    /// A controller over a store only, with no kernel datapath: for tests of the API layer.
    ///
    /// # Errors
    /// The store cannot be opened.
    pub fn for_tests(state_dir: &Path) -> Result<Controller, ControlError> {
        Controller::open(state_dir, Limits::default(), None).map(|(c, _)| c)
    }

    /// Validates, stores and enforces `change`; on any error nothing is stored and the maps
    /// are as they were.
    ///
    /// # Errors
    /// See [`ControlError`].
    pub fn apply(&mut self, change: Change) -> Result<Applied, ControlError> {
        let next = self.model.apply(&change, &self.limits)?;
        let policy = next.to_policy();
        let desired: CompiledPolicy = policy.compile();
        if let Some(enforcer) = &self.enforcer {
            enforcer.check_capacity(&desired).map_err(|e| match e {
                DatapathError::Capacity { .. } => ControlError::Full(e.to_string()),
                other => ControlError::Datapath(other),
            })?;
        }
        self.store.commit(&self.model, &next)?;
        let applied = match self.enforcer.as_mut() {
            Some(enforcer) => match enforcer.update(&desired) {
                Ok(summary) => summary.into(),
                Err(e) => {
                    // Put the store back so that it holds what the maps enforce.
                    if let Err(undo) = self.store.commit(&next, &self.model) {
                        log::error!("store left ahead of the maps after a failed update: {undo}");
                    }
                    return Err(match e {
                        DatapathError::Capacity { .. } => ControlError::Full(e.to_string()),
                        other => ControlError::Datapath(other),
                    });
                }
            },
            None => Applied::default(),
        };
        self.model = next;
        self.published.send_replace(Arc::new(policy));
        Ok(applied)
    }

    /// The policy in force now and after every accepted change, without the lock.
    pub fn policy_updates(&self) -> watch::Receiver<Arc<Policy>> {
        self.published.subscribe()
    }

    /// The current model.
    pub fn model(&self) -> &Model {
        &self.model
    }

    /// The enforcer, when the daemon runs one.
    pub fn enforcer(&mut self) -> Option<&mut Enforcer> {
        self.enforcer.as_mut()
    }

    /// Records the interface patterns, for [`Controller::status`].
    pub fn set_patterns(&mut self, patterns: Vec<String>) {
        self.patterns = patterns;
    }

    /// A summary for `GET /v1/status`.
    pub fn status(&self) -> Status {
        let (interfaces, map_entries) = match &self.enforcer {
            Some(e) => {
                let enforced = e.enforced();
                let entries =
                    enforced.ipcache_v4.len() + enforced.ipcache_v6.len() + enforced.policy.len();
                (e.attached(), entries)
            }
            None => (Vec::new(), 0),
        };
        Status {
            enforcing: self.enforcer.is_some(),
            interface_patterns: self.patterns.clone(),
            interfaces,
            apps: self.model.apps().count(),
            networks: self.model.networks().count(),
            policies: self.model.policies().count(),
            map_entries,
        }
    }
}
