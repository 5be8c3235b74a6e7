//! Checks of single values: names, metadata, policy ports.

use crate::policy::WORLD;

use super::{ModelError, NetworkPolicy};

/// Longest name or metadata value accepted, in characters.
pub(super) const MAX_NAME_CHARS: usize = 128;

/// Prefix of the names of egress destination networks, such as `cidr:10.0.0.0/8`.
pub(super) const CIDR_PREFIX: &str = "cidr:";

/// Checks the name of an app or network; `what` says which field it is, such as
/// `policy 2: source`.
///
/// # Errors
///
/// [`ModelError::Invalid`] for an empty name, one with a control character, one longer than
/// [`MAX_NAME_CHARS`], `world`, or one starting with [`CIDR_PREFIX`].
pub(super) fn name(what: &str, name: &str) -> Result<(), ModelError> {
    text(what, name)?;
    if name == WORLD {
        return Err(invalid(format!(
            "{what} `world` is reserved for addresses outside every app and network"
        )));
    }
    if name.starts_with(CIDR_PREFIX) {
        return Err(invalid(format!(
            "{what} `{name}` is reserved: names starting with `{CIDR_PREFIX}` belong to egress \
             destinations"
        )));
    }
    Ok(())
}

/// Checks an optional metadata value (an app's org or space) as [`text`] does.
///
/// # Errors
///
/// As [`text`].
pub(super) fn metadata(what: &str, value: Option<&str>) -> Result<(), ModelError> {
    value.map_or(Ok(()), |value| text(what, value))
}

/// Checks that `value` is non-empty, printable and at most [`MAX_NAME_CHARS`] long.
///
/// # Errors
///
/// [`ModelError::Invalid`] naming `what` and the problem.
fn text(what: &str, value: &str) -> Result<(), ModelError> {
    if value.is_empty() {
        return Err(invalid(format!("{what} is empty")));
    }
    if let Some(position) = value.chars().position(char::is_control) {
        return Err(invalid(format!(
            "{what} {value:?} contains a control character at position {position}"
        )));
    }
    let length = value.chars().count();
    if length > MAX_NAME_CHARS {
        let start: String = value.chars().take(16).collect();
        return Err(invalid(format!(
            "{what} `{start}...` is {length} characters long; at most {MAX_NAME_CHARS} are \
             allowed"
        )));
    }
    Ok(())
}

/// Checks the names and ports of the policy at `index` of a request.
///
/// # Errors
///
/// [`ModelError::Invalid`], prefixed with `policy INDEX: `.
pub(super) fn policy(index: usize, policy: &NetworkPolicy) -> Result<(), ModelError> {
    let prefix = format!("policy {index}:");
    name(&format!("{prefix} source id"), &policy.source)?;
    name(&format!("{prefix} destination id"), &policy.destination)?;
    let (start, end) = (policy.start_port, policy.end_port);
    if start == 0 {
        return Err(invalid(format!(
            "{prefix} invalid port: 0 (start_port must be in range 1-65535)"
        )));
    }
    if end == 0 {
        return Err(invalid(format!(
            "{prefix} invalid port: 0 (end_port must be in range 1-65535)"
        )));
    }
    if start > end {
        return Err(invalid(format!(
            "{prefix} invalid port range: {start}-{end} (start_port must not exceed end_port)"
        )));
    }
    Ok(())
}

/// A [`ModelError::Invalid`] with `message`.
pub(super) fn invalid(message: String) -> ModelError {
    ModelError::Invalid(message)
}
