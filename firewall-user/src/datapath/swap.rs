//! Replacing a whole policy at once for packets: the new policy is written under the inactive
//! generation, `Config::generation` flips in one write of the `CONFIG` slot, then the old
//! generation's entries are deleted (see `firewall_common::maps`).
//!
//! Between [`Datapath::prepare_swap`] and [`Datapath::finish_swap`] both generations sit in
//! the maps, so the capacity check counts both.

use firewall_common::maps::IPCACHE_GENERATION_BITS;

use super::{Datapath, DatapathError, placement};
use crate::policy::CompiledPolicy;

// The generation is one byte of every key (see `firewall_common::maps`).
const _: () = assert!(IPCACHE_GENERATION_BITS == 8);

impl Datapath {
    /// The policy generation the datapath judges packets by now.
    ///
    /// # Errors
    /// [`DatapathError::Map`] when `CONFIG` cannot be read.
    pub fn generation(&self) -> Result<u8, DatapathError> {
        Ok(self.config()?.generation)
    }

    /// Replaces the enforced policy with `desired` as one change for packets: each packet is
    /// judged wholly by the old policy or wholly by `desired`. Runs [`Datapath::prepare_swap`],
    /// [`Datapath::commit_swap`] and [`Datapath::finish_swap`].
    ///
    /// # Errors
    /// As the three stages. A failure before the commit leaves the old policy enforced; one
    /// after it leaves `desired` enforced with old entries still in the maps (the next swap
    /// removes them).
    pub fn swap_in(&mut self, desired: &CompiledPolicy) -> Result<(), DatapathError> {
        self.prepare_swap(desired)?;
        self.commit_swap()?;
        self.finish_swap()
    }

    /// Writes `desired` under the inactive generation, after removing whatever an earlier,
    /// unfinished swap left there. Packets still see the active policy only.
    ///
    /// # Errors
    /// [`DatapathError::Capacity`] naming the map that could not hold the active policy and
    /// `desired` together, before any write; [`DatapathError::Map`] when a write fails.
    pub fn prepare_swap(&mut self, desired: &CompiledPolicy) -> Result<(), DatapathError> {
        let active = self.generation()?;
        let next = active ^ 1;
        let mut stored = self.stored_entries()?;
        let incoming = placement::Placement::of(desired, next);
        let mut counts = incoming.counts();
        let mut current = stored.clone_counts_of(active);
        for (count, present) in counts.iter_mut().zip(current.iter_mut()) {
            *count += *present;
        }
        placement::check_counts(counts, &self.capacities, desired.max_rule_id)?;
        stored.retain_generations(|g| g != active);
        self.remove(&stored)?;
        self.write(&incoming)?;
        self.prepared = Some(next);
        Ok(())
    }

    /// Makes the prepared generation the active one, then bumps the revision so every tracked
    /// flow is checked against the new policy at its next packet. Two writes, generation
    /// first: a packet that sees the new revision then also sees the new generation, so no
    /// flow is stamped as checked against the old policy.
    ///
    /// # Errors
    /// [`DatapathError::NoSwapPrepared`] without a successful [`Datapath::prepare_swap`]
    /// since the last commit; [`DatapathError::Map`] when `CONFIG` cannot be written.
    pub fn commit_swap(&mut self) -> Result<(), DatapathError> {
        let next = self.prepared.ok_or(DatapathError::NoSwapPrepared)?;
        let mut config = self.config()?;
        config.generation = next;
        self.set_config(&config)?;
        self.prepared = None;
        self.bump_revision()?;
        Ok(())
    }

    /// Deletes every entry that is not of the active generation.
    ///
    /// # Errors
    /// [`DatapathError::Map`] when a map cannot be read or an entry not removed.
    pub fn finish_swap(&mut self) -> Result<(), DatapathError> {
        let active = self.generation()?;
        let mut stored = self.stored_entries()?;
        stored.retain_generations(|g| g != active);
        self.remove(&stored)
    }
}
