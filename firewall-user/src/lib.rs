//! Userspace side of the firewall.
