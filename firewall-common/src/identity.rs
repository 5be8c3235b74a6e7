//! Numeric security identities.
//!
//! Policy is written in identities, never in addresses: an app or a named network gets one
//! identity, and the ipcache maps each of its addresses to it, so an instance that moves only
//! changes the ipcache.

/// A security identity. Values below [`reserved::FIRST_ALLOCATED`] are reserved.
pub type Identity = u32;

/// Reserved identities.
pub mod reserved {
    use super::Identity;
    /// Not an identity: never stored in a map.
    pub const UNSET: Identity = 0;
    /// Any address that matches no prefix in the ipcache.
    pub const WORLD: Identity = 1;
    /// The first identity handed to apps and networks.
    pub const FIRST_ALLOCATED: Identity = 256;
}
