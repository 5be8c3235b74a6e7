//! Serialising a list of prefixes as strings, such as `["10.0.0.0/8", "2001:db8::/32"]`.

use ipnet::IpNet;
use serde::de::Error as _;
use serde::{Deserialize, Deserializer, Serializer};

/// Writes each prefix as written by [`IpNet`]'s `Display`.
///
/// # Errors
///
/// Whatever `serializer` reports.
pub(super) fn serialize<S: Serializer>(cidrs: &[IpNet], serializer: S) -> Result<S::Ok, S::Error> {
    serializer.collect_seq(cidrs.iter().map(ToString::to_string))
}

/// Reads a list of prefix strings; host bits are kept as written, for `apply` to refuse.
///
/// # Errors
///
/// When the value is not a list of strings, or a string is not a prefix.
pub(super) fn deserialize<'de, D: Deserializer<'de>>(
    deserializer: D,
) -> Result<Vec<IpNet>, D::Error> {
    let texts = Vec::<String>::deserialize(deserializer)?;
    texts
        .iter()
        .map(|text| {
            text.parse().map_err(|_| {
                D::Error::custom(format!(
                    "invalid CIDR {text:?}: expected such as 10.0.0.0/8"
                ))
            })
        })
        .collect()
}
