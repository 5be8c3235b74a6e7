//! Handing out rule ids and identities.

use std::collections::BTreeSet;
use std::sync::Arc;

use firewall_common::Identity;

use super::{Model, ModelError};

/// Rule ids: every id below `next` is either in use or free; ids start at 1 (0 means no rule).
#[derive(Clone, Debug, PartialEq, Eq)]
pub(super) struct RuleIds {
    /// The lowest id never handed out.
    next: u32,
    /// Ids handed out before and since freed, reused lowest first.
    free: Arc<BTreeSet<u32>>,
}

impl Default for RuleIds {
    fn default() -> Self {
        RuleIds {
            next: 1,
            free: Arc::default(),
        }
    }
}

impl RuleIds {
    /// The ids of a model whose rules use `used` and that never handed out `next` or above.
    ///
    /// # Errors
    ///
    /// A description of the first id of `used` that is 0, not below `next`, or repeated.
    pub(super) fn rebuild(next: u32, used: &[u32]) -> Result<RuleIds, String> {
        let mut seen = BTreeSet::new();
        for &id in used {
            if id == 0 || id >= next {
                return Err(format!("rule id {id} is outside 1..{next}"));
            }
            if !seen.insert(id) {
                return Err(format!("rule id {id} is used twice"));
            }
        }
        let free = (1..next).filter(|id| !seen.contains(id)).collect();
        Ok(RuleIds {
            next,
            free: Arc::new(free),
        })
    }

    /// The lowest id never handed out.
    pub(super) fn next(&self) -> u32 {
        self.next
    }

    /// Whether the two certainly hold the same ids, without comparing the free sets.
    pub(super) fn same_as(&self, other: &RuleIds) -> bool {
        self.next == other.next && Arc::ptr_eq(&self.free, &other.free)
    }

    /// Hands out the lowest free id, or a new one.
    ///
    /// # Errors
    ///
    /// [`ModelError::Full`] when every id up to `max` is in use.
    pub(super) fn allocate(&mut self, max: u32) -> Result<u32, ModelError> {
        if let Some(&id) = self.free.first()
            && id <= max
        {
            Arc::make_mut(&mut self.free).remove(&id);
            return Ok(id);
        }
        if self.next <= max {
            self.next += 1;
            return Ok(self.next - 1);
        }
        Err(ModelError::Full(format!(
            "no rule id left: all {max} rule ids are in use"
        )))
    }

    /// Takes back `id`, which was handed out.
    pub(super) fn release(&mut self, id: u32) {
        Arc::make_mut(&mut self.free).insert(id);
    }
}

impl Model {
    /// The identity of `name`, handing it the next one if it has none yet.
    ///
    /// # Errors
    ///
    /// [`ModelError::Full`] when the identity space is used up.
    pub(super) fn identify(&mut self, name: &str) -> Result<Identity, ModelError> {
        if let Some(identity) = self.identities.get(name) {
            return Ok(*identity);
        }
        let identity = self.next_identity;
        self.next_identity = identity
            .checked_add(1)
            .ok_or_else(|| ModelError::Full(format!("no identity left for `{name}`")))?;
        Arc::make_mut(&mut self.identities).insert(name.to_owned(), identity);
        Ok(identity)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn freed_ids_are_reused_lowest_first_and_max_is_enforced() {
        let mut ids = RuleIds::default();
        let handed: Vec<u32> = (0..3).map(|_| ids.allocate(3).unwrap()).collect();
        assert_eq!(handed, [1, 2, 3]);
        assert!(matches!(ids.allocate(3), Err(ModelError::Full(_))));
        ids.release(3);
        ids.release(2);
        assert_eq!(ids.allocate(3), Ok(2));
        // A free id above a lowered maximum is not handed out.
        assert!(matches!(ids.allocate(2), Err(ModelError::Full(_))));
    }

    #[test]
    fn rebuild_recovers_the_free_ids_and_refuses_bad_ones() {
        let ids = RuleIds::rebuild(6, &[2, 5]).unwrap();
        assert_eq!(*ids.free, BTreeSet::from([1, 3, 4]));
        assert!(RuleIds::rebuild(6, &[6]).is_err());
        assert!(RuleIds::rebuild(6, &[0]).is_err());
        assert!(RuleIds::rebuild(6, &[2, 2]).is_err());
    }
}
