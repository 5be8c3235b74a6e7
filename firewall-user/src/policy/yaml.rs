//! The YAML document as a loose tree whose nodes remember where they start, and the helpers
//! that read fields out of it.
//!
//! A policy file is parsed into this tree first and checked field by field afterwards,
//! rather than deserialized straight into typed structs, because serde's errors carry a
//! line but not the path of the field (`policies[2].ports`) an operator needs to find.

use std::fmt;

use serde::de::{Deserialize, Deserializer, MapAccess, SeqAccess, Visitor};
use serde_saphyr::{Spanned, UserMessageFormatter};

use super::error::{PolicyError, Position, Problem};

/// A node of the document together with where it starts.
pub(super) type Node = Spanned<Value>;

/// The content of a node.
#[derive(Debug)]
pub(super) enum Value {
    /// `~`, `null` or an empty value.
    Null,
    /// `true` or `false`; no field takes one, so only its kind is kept.
    Bool,
    /// An integer; i128 holds every integer YAML parsers produce.
    Int(i128),
    /// A floating-point number; no field takes one, so only its kind is kept.
    Float,
    /// A string, quoted or not.
    Str(String),
    /// A sequence.
    List(Vec<Node>),
    /// A mapping, in file order.
    Map(Vec<(Node, Node)>),
}

impl Value {
    /// The kind of node, as error messages name it.
    fn kind(&self) -> &'static str {
        match self {
            Value::Null => "nothing",
            Value::Bool => "a boolean",
            Value::Int(_) => "a number",
            Value::Float => "a floating-point number",
            Value::Str(_) => "a string",
            Value::List(_) => "a list",
            Value::Map(_) => "a mapping",
        }
    }
}

impl<'de> Deserialize<'de> for Value {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_any(ValueVisitor)
    }
}

/// Builds a [`Value`] from whatever node the parser meets.
struct ValueVisitor;

impl<'de> Visitor<'de> for ValueVisitor {
    type Value = Value;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("any YAML node")
    }

    fn visit_bool<E>(self, _: bool) -> Result<Value, E> {
        Ok(Value::Bool)
    }

    fn visit_i64<E>(self, v: i64) -> Result<Value, E> {
        Ok(Value::Int(v.into()))
    }

    fn visit_i128<E>(self, v: i128) -> Result<Value, E> {
        Ok(Value::Int(v))
    }

    fn visit_u64<E>(self, v: u64) -> Result<Value, E> {
        Ok(Value::Int(v.into()))
    }

    fn visit_u128<E: serde::de::Error>(self, v: u128) -> Result<Value, E> {
        i128::try_from(v)
            .map(Value::Int)
            .map_err(|_| E::custom("integer too large"))
    }

    fn visit_f64<E>(self, _: f64) -> Result<Value, E> {
        Ok(Value::Float)
    }

    fn visit_str<E>(self, v: &str) -> Result<Value, E> {
        Ok(Value::Str(v.to_owned()))
    }

    fn visit_string<E>(self, v: String) -> Result<Value, E> {
        Ok(Value::Str(v))
    }

    fn visit_unit<E>(self) -> Result<Value, E> {
        Ok(Value::Null)
    }

    fn visit_none<E>(self) -> Result<Value, E> {
        Ok(Value::Null)
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Value, A::Error> {
        let mut items = Vec::new();
        while let Some(item) = seq.next_element()? {
            items.push(item);
        }
        Ok(Value::List(items))
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Value, A::Error> {
        let mut entries = Vec::new();
        while let Some(key) = map.next_key()? {
            entries.push((key, map.next_value()?));
        }
        Ok(Value::Map(entries))
    }
}

/// Where `node` starts.
pub(super) fn position(node: &Node) -> Position {
    to_position(node.referenced)
}

/// A parser location as a [`Position`].
fn to_position(at: serde_saphyr::Location) -> Position {
    Position {
        line: usize::try_from(at.line()).unwrap_or(usize::MAX),
        column: usize::try_from(at.column()).unwrap_or(usize::MAX),
    }
}

/// Parses `text` into a tree.
///
/// Booleans follow YAML 1.2 (`yes` and `on` stay strings) and numbers written with leading
/// zeros stay strings, so the tree holds what the operator wrote. The budget is raised above
/// serde-saphyr's defaults so that a policy filling every map still parses; aliases stay
/// limited, which is what stops a small file from expanding into a huge one.
///
/// # Errors
///
/// [`PolicyError::Syntax`] when the text is not one well-formed YAML document or repeats a
/// key within a mapping.
pub(super) fn parse(text: &str, origin: &str) -> Result<Node, PolicyError> {
    let options = serde_saphyr::options! {
        strict_booleans: true,
        leading_zero_numbers_as_strings: true,
        budget: serde_saphyr::budget! {
            max_events: 16_000_000,
            max_nodes: 8_000_000,
        },
    };
    serde_saphyr::from_str_with_options(text, options).map_err(|error| {
        let at = error.location().map_or(Position::default(), to_position);
        let message = serde_saphyr::MessageFormatter::format_message(
            &UserMessageFormatter,
            error.without_snippet(),
        );
        // The error stays on one line whatever the parser put in its message.
        let message = message
            .chars()
            .map(|c| if c.is_control() { ' ' } else { c })
            .collect();
        PolicyError::Syntax {
            origin: origin.to_owned(),
            at,
            message,
        }
    })
}

/// The path of field `key` inside the field at `path` (the document itself is `""`); an
/// empty key shows as `""`.
pub(super) fn field_path(path: &str, key: &str) -> String {
    let key = if key.is_empty() { "\"\"" } else { key };
    if path.is_empty() {
        key.to_owned()
    } else {
        format!("{path}.{key}")
    }
}

/// Reads nodes of one document, turning what is wrong into errors that name the document.
#[derive(Clone, Copy)]
pub(super) struct Reader<'a> {
    /// Where the document came from, for error messages.
    pub(super) origin: &'a str,
}

impl Reader<'_> {
    /// An error about the node `at`, which sits at field `field`.
    pub(super) fn invalid(&self, at: &Node, field: &str, problem: Problem) -> PolicyError {
        PolicyError::Invalid {
            origin: self.origin.to_owned(),
            at: position(at),
            field: field.to_owned(),
            problem,
        }
    }

    /// An error saying `node` should have been `expected`.
    pub(super) fn wrong_kind(
        &self,
        node: &Node,
        field: &str,
        expected: &'static str,
    ) -> PolicyError {
        let found = node.value.kind();
        self.invalid(node, field, Problem::WrongKind { expected, found })
    }

    /// The string held by `node`.
    ///
    /// # Errors
    ///
    /// [`Problem::WrongKind`] naming `expected` when `node` is not a string.
    pub(super) fn string<'n>(
        &self,
        node: &'n Node,
        field: &str,
        expected: &'static str,
    ) -> Result<&'n str, PolicyError> {
        match &node.value {
            Value::Str(text) => Ok(text),
            _ => Err(self.wrong_kind(node, field, expected)),
        }
    }

    /// The items of a list; an empty value reads as an empty list.
    ///
    /// # Errors
    ///
    /// [`Problem::WrongKind`] when `node` is neither a list nor empty.
    pub(super) fn list<'n>(&self, node: &'n Node, field: &str) -> Result<&'n [Node], PolicyError> {
        match &node.value {
            Value::List(items) => Ok(items),
            Value::Null => Ok(&[]),
            _ => Err(self.wrong_kind(node, field, "a list")),
        }
    }

    /// The entries of a mapping from names to declarations, each name checked to be a string;
    /// an empty value reads as no entries.
    ///
    /// # Errors
    ///
    /// [`Problem::WrongKind`] when `node` is neither a mapping nor empty, or a key is not a
    /// string.
    pub(super) fn named<'n>(
        &self,
        node: &'n Node,
        field: &str,
    ) -> Result<Vec<(&'n Node, &'n str, &'n Node)>, PolicyError> {
        let entries = match &node.value {
            Value::Map(entries) => entries.as_slice(),
            Value::Null => &[],
            _ => return Err(self.wrong_kind(node, field, "a mapping of names")),
        };
        entries
            .iter()
            .map(|(key, value)| Ok((key, self.string(key, field, "a name")?, value)))
            .collect()
    }

    /// The fields of the mapping `node`, checked against `allowed`.
    ///
    /// # Errors
    ///
    /// [`Problem::WrongKind`] when `node` is not a mapping or a key is not a string,
    /// [`Problem::UnknownField`] for a key outside `allowed`.
    pub(super) fn fields<'n>(
        &self,
        node: &'n Node,
        path: &str,
        allowed: &'static [&'static str],
    ) -> Result<Fields<'n>, PolicyError> {
        let Value::Map(entries) = &node.value else {
            return Err(self.wrong_kind(node, path, "a mapping"));
        };
        let mut known = Vec::with_capacity(entries.len());
        for (key, value) in entries {
            let name = self.string(key, path, "a field name")?;
            let Some(field) = allowed.iter().copied().find(|field| *field == name) else {
                let problem = Problem::UnknownField {
                    field: name.to_owned(),
                    expected: allowed,
                };
                return Err(self.invalid(key, &field_path(path, name), problem));
            };
            known.push((field, value));
        }
        Ok(Fields {
            node,
            entries: known,
        })
    }
}

/// The fields of one mapping, all of them known.
pub(super) struct Fields<'n> {
    /// The mapping itself.
    pub(super) node: &'n Node,
    entries: Vec<(&'static str, &'n Node)>,
}

impl<'n> Fields<'n> {
    /// The value of field `name`, if present.
    pub(super) fn get(&self, name: &str) -> Option<&'n Node> {
        self.entries
            .iter()
            .find(|(field, _)| *field == name)
            .map(|(_, value)| *value)
    }

    /// The value of field `name`.
    ///
    /// # Errors
    ///
    /// [`Problem::MissingField`], pointing at the mapping, when the field is absent.
    pub(super) fn require(
        &self,
        reader: Reader<'_>,
        path: &str,
        name: &'static str,
    ) -> Result<&'n Node, PolicyError> {
        self.get(name)
            .ok_or_else(|| reader.invalid(self.node, path, Problem::MissingField { field: name }))
    }
}
