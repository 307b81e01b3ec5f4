//! The `metrics.jsonl` row format: one JSON object per line,
//! `{"step": 100, "wall_time": 1700000000.25, "train/loss": 2.31, ...}`, metrics in the order the
//! caller logged them. Non-finite values are written as `null` (JSON has no NaN) and read back
//! as NaN.

use crate::error::{ReportError, Result};
use serde::de::{Deserializer, MapAccess, Visitor};
use std::fmt;
use std::path::Path;

pub const STEP_KEY: &str = "step";
pub const WALL_TIME_KEY: &str = "wall_time";

/// One logged row.
#[derive(Debug, Clone, PartialEq)]
pub struct MetricsRow {
    pub step: u64,
    /// Seconds since the Unix epoch when the row was logged.
    pub wall_time: f64,
    /// `(name, value)` in logging order.
    pub values: Vec<(String, f64)>,
}

impl MetricsRow {
    pub fn get(&self, name: &str) -> Option<f64> {
        self.values.iter().find(|(n, _)| n == name).map(|&(_, v)| v)
    }

    /// The row as one JSONL line, newline included.
    pub(crate) fn to_json_line(&self) -> String {
        let mut line = format!("{{\"{STEP_KEY}\":{},\"{WALL_TIME_KEY}\":{}", self.step, json_number(self.wall_time));
        for (name, value) in &self.values {
            line.push(',');
            line.push_str(&json_string(name));
            line.push(':');
            line.push_str(&json_number(*value));
        }
        line.push_str("}\n");
        line
    }
}

fn json_string(s: &str) -> String {
    // Serialising a &str cannot fail.
    serde_json::to_string(s).unwrap_or_default()
}

fn json_number(v: f64) -> String {
    match serde_json::Number::from_f64(v) {
        Some(n) => n.to_string(),
        None => "null".to_string(),
    }
}

/// The rows of a metrics file and whether its end needs repairing before appending to it.
pub(crate) struct LoadedRows {
    pub rows: Vec<MetricsRow>,
    /// Each row's line as it is in the file (newline included): a rewrite keeps rows byte for
    /// byte instead of re-serialising what was parsed.
    pub lines: Vec<String>,
    /// The file ends in a torn line or lacks its final newline: rewrite it before appending.
    pub needs_rewrite: bool,
}

/// Reads all rows of a `metrics.jsonl` file. A missing file has no rows.
pub fn read_metrics(path: &Path) -> Result<Vec<MetricsRow>> {
    load_rows(path).map(|loaded| loaded.rows)
}

pub(crate) fn load_rows(path: &Path) -> Result<LoadedRows> {
    let text = match std::fs::read_to_string(path) {
        Ok(text) => text,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            return Ok(LoadedRows { rows: Vec::new(), lines: Vec::new(), needs_rewrite: false })
        }
        Err(e) => return Err(ReportError::io(path, "read metrics file", e)),
    };
    let (mut rows, mut lines) = (Vec::new(), Vec::new());
    let mut needs_rewrite = !text.is_empty() && !text.ends_with('\n');
    let line_count = text.lines().count();
    for (index, line) in text.lines().enumerate() {
        if line.trim().is_empty() {
            continue;
        }
        match parse_row(line) {
            Ok(row) => {
                rows.push(row);
                lines.push(format!("{line}\n"));
            }
            // A process killed mid-write leaves a partial last line: drop it, keep the rest.
            Err(message) if index + 1 == line_count && !text.ends_with('\n') => {
                tracing::warn!("{}:{}: dropping incomplete last row ({message})", path.display(), index + 1);
                needs_rewrite = true;
            }
            Err(message) => {
                return Err(ReportError::Malformed {
                    path: path.to_path_buf(),
                    line: index + 1,
                    message: format!(
                        "{message}; expected {{\"step\": <int>, \"wall_time\": <seconds>, \"<name>\": <number>, ...}}"
                    ),
                })
            }
        }
    }
    Ok(LoadedRows { rows, lines, needs_rewrite })
}

fn parse_row(line: &str) -> std::result::Result<MetricsRow, String> {
    let OrderedObject(fields) = serde_json::from_str(line).map_err(|e| format!("not a JSON object: {e}"))?;
    let mut step = None;
    let mut wall_time = None;
    let mut values = Vec::with_capacity(fields.len());
    for (key, value) in fields {
        match key.as_str() {
            STEP_KEY => {
                step = Some(
                    value
                        .as_u64()
                        .ok_or_else(|| format!("\"{STEP_KEY}\" must be a non-negative integer, got {value}"))?,
                )
            }
            WALL_TIME_KEY => wall_time = Some(number(&key, &value)?),
            _ => {
                let v = number(&key, &value)?;
                values.push((key, v));
            }
        }
    }
    Ok(MetricsRow {
        step: step.ok_or_else(|| format!("missing \"{STEP_KEY}\""))?,
        wall_time: wall_time.unwrap_or(f64::NAN),
        values,
    })
}

fn number(key: &str, value: &serde_json::Value) -> std::result::Result<f64, String> {
    match value {
        serde_json::Value::Null => Ok(f64::NAN),
        serde_json::Value::Number(n) => n.as_f64().ok_or_else(|| format!("\"{key}\" is not representable as f64")),
        other => Err(format!("\"{key}\" must be a number or null, got {other}")),
    }
}

/// A JSON object with its keys in file order (serde_json's `Map` sorts them unless a
/// crate-wide feature is switched on, which would change every other crate's maps too).
struct OrderedObject(Vec<(String, serde_json::Value)>);

impl<'de> serde::Deserialize<'de> for OrderedObject {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> std::result::Result<Self, D::Error> {
        struct ObjectVisitor;
        impl<'de> Visitor<'de> for ObjectVisitor {
            type Value = OrderedObject;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a JSON object")
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> std::result::Result<OrderedObject, A::Error> {
                let mut fields = Vec::with_capacity(map.size_hint().unwrap_or(8));
                while let Some(entry) = map.next_entry::<String, serde_json::Value>()? {
                    fields.push(entry);
                }
                Ok(OrderedObject(fields))
            }
        }
        deserializer.deserialize_map(ObjectVisitor)
    }
}

/// Writes `rows` as the whole contents of a JSONL file, atomically.
impl LoadedRows {
    /// Keeps the rows up to `step` (all of them with None) and replaces the file with their
    /// original lines, when that changes it.
    pub(crate) fn keep_up_to(&mut self, path: &Path, step: Option<u64>) -> Result<()> {
        let before = self.rows.len();
        if let Some(step) = step {
            let (rows, lines) = (std::mem::take(&mut self.rows), std::mem::take(&mut self.lines));
            (self.rows, self.lines) = rows.into_iter().zip(lines).filter(|(row, _)| row.step <= step).unzip();
        }
        if self.needs_rewrite || self.rows.len() != before {
            crate::fs_util::replace_file(path, self.lines.concat().as_bytes())?;
            self.needs_rewrite = false;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn row_round_trips_with_order_and_nan() {
        let row = MetricsRow {
            step: 7,
            wall_time: 1.7e9,
            values: vec![("z/loss".into(), 0.5), ("a,b \"q\"".into(), f64::NAN), ("lr".into(), 1e-7)],
        };
        let line = row.to_json_line();
        let back = parse_row(line.trim_end()).unwrap();
        assert_eq!(back.step, 7);
        assert_eq!(back.wall_time, 1.7e9);
        let names: Vec<_> = back.values.iter().map(|(n, _)| n.as_str()).collect();
        assert_eq!(names, ["z/loss", "a,b \"q\"", "lr"]);
        assert!(back.values[1].1.is_nan());
        assert_eq!(back.get("lr"), Some(1e-7));
    }

    #[test]
    fn dropping_rows_keeps_the_others_byte_for_byte() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("metrics.jsonl");
        // Written by another serialiser: digits beyond the shortest round-trip form, spaces.
        let text = "{\"step\":1,\"wall_time\":1.5,\"loss\":2.1465566158294678}\n{\"step\": 2, \"wall_time\": 2.0, \"loss\": 1.0}\n{\"step\":3,\"wall_time\":3.0,\"loss\":0.5}\n";
        std::fs::write(&path, text).unwrap();
        let mut loaded = load_rows(&path).unwrap();
        loaded.keep_up_to(&path, Some(2)).unwrap();
        let kept = std::fs::read_to_string(&path).unwrap();
        assert_eq!(kept, text.lines().take(2).map(|l| format!("{l}\n")).collect::<String>());
    }
}
