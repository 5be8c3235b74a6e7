//! Plain-text tables for people: left-aligned columns two spaces apart, as the cf CLI prints.

use std::fmt::Write;

use serde_json::Value;

/// Renders `rows` under `header`, each column as wide as its widest cell; no trailing spaces.
pub(crate) fn render(header: &[&str], rows: &[Vec<String>]) -> String {
    let mut widths: Vec<usize> = header.iter().map(|h| h.chars().count()).collect();
    for row in rows {
        for (width, cell) in widths.iter_mut().zip(row) {
            *width = (*width).max(cell.chars().count());
        }
    }
    let mut out = String::new();
    let header: Vec<String> = header.iter().map(|h| (*h).to_owned()).collect();
    line(&mut out, &header, &widths);
    for row in rows {
        line(&mut out, row, &widths);
    }
    out
}

fn line(out: &mut String, cells: &[String], widths: &[usize]) {
    let mut text = String::new();
    for (cell, width) in cells.iter().zip(widths) {
        let _ = write!(text, "{cell:<width$}  ");
    }
    out.push_str(text.trim_end());
    out.push('\n');
}

/// Renders any JSON object as aligned `key:  value` lines, nested keys joined with dots and
/// array items numbered; for answers whose shape this client does not fix, such as status.
pub(crate) fn render_fields(value: &Value) -> String {
    let mut fields = Vec::new();
    flatten("", value, &mut fields);
    let width = fields
        .iter()
        .map(|(k, _)| k.chars().count())
        .max()
        .unwrap_or(0)
        + 1;
    let mut out = String::new();
    for (key, value) in fields {
        let key = format!("{key}:");
        let _ = writeln!(out, "{}", format!("{key:<width$}  {value}").trim_end());
    }
    out
}

fn flatten(prefix: &str, value: &Value, fields: &mut Vec<(String, String)>) {
    let join = |key: &str| {
        if prefix.is_empty() {
            key.to_owned()
        } else {
            format!("{prefix}.{key}")
        }
    };
    match value {
        Value::Object(map) if !map.is_empty() => {
            for (key, inner) in map {
                flatten(&join(key), inner, fields);
            }
        }
        Value::Array(items) if items.iter().all(is_scalar) => {
            let items: Vec<String> = items.iter().map(scalar).collect();
            fields.push((prefix.to_owned(), items.join(", ")));
        }
        Value::Array(items) => {
            for (index, inner) in items.iter().enumerate() {
                flatten(&join(&index.to_string()), inner, fields);
            }
        }
        other => fields.push((prefix.to_owned(), scalar(other))),
    }
}

fn is_scalar(value: &Value) -> bool {
    !matches!(value, Value::Array(_) | Value::Object(_))
}

/// A JSON value as a cell: strings bare, null empty, anything else as JSON.
pub(crate) fn scalar(value: &Value) -> String {
    match value {
        Value::String(text) => text.clone(),
        Value::Null => String::new(),
        other => other.to_string(),
    }
}
