//! The `metrics.csv` view of the metrics log: `step,wall_time,<metric>...`, one column per metric
//! name ever logged (in first-seen order), empty cells where a row lacks that metric.
//!
//! `metrics.jsonl` is the source of truth. Rows are appended to the CSV as they are logged while
//! the set of names is unchanged; when a new name appears, the CSV is regenerated from the JSONL
//! with the wider header (rare: names mostly appear in the first rows and at the first eval).

use super::jsonl::{MetricsRow, STEP_KEY, WALL_TIME_KEY};
use std::collections::HashMap;

/// The metric columns of the CSV, in first-seen order.
#[derive(Default, Debug)]
pub(crate) struct Columns {
    names: Vec<String>,
    index: HashMap<String, usize>,
}

impl Columns {
    pub fn from_rows(rows: &[MetricsRow]) -> Self {
        let mut columns = Columns::default();
        for row in rows {
            columns.add_missing(row);
        }
        columns
    }

    /// Adds the row's names not seen before; returns whether any were new.
    pub fn add_missing(&mut self, row: &MetricsRow) -> bool {
        let mut added = false;
        for (name, _) in &row.values {
            if !self.index.contains_key(name) {
                self.index.insert(name.clone(), self.names.len());
                self.names.push(name.clone());
                added = true;
            }
        }
        added
    }

    pub fn contains_all(&self, row: &MetricsRow) -> bool {
        row.values.iter().all(|(name, _)| self.index.contains_key(name))
    }

    pub fn header(&self) -> String {
        let mut line = format!("{STEP_KEY},{WALL_TIME_KEY}");
        for name in &self.names {
            line.push(',');
            line.push_str(&escape(name));
        }
        line.push('\n');
        line
    }

    /// One CSV line for `row`, whose names must all be columns already.
    pub fn line(&self, row: &MetricsRow) -> String {
        let mut cells = vec![String::new(); self.names.len()];
        for (name, value) in &row.values {
            if let Some(&i) = self.index.get(name) {
                cells[i] = number(*value);
            }
        }
        let mut line = format!("{},{}", row.step, number(row.wall_time));
        for cell in cells {
            line.push(',');
            line.push_str(&cell);
        }
        line.push('\n');
        line
    }

    pub fn render(&self, rows: &[MetricsRow]) -> String {
        let mut text = self.header();
        for row in rows {
            text.push_str(&self.line(row));
        }
        text
    }
}

/// Shortest round-trip form for finite values; `NaN` otherwise, matching the JSONL (whose
/// `null` cannot tell NaN from infinity), and readable by pandas and spreadsheets.
fn number(v: f64) -> String {
    match serde_json::Number::from_f64(v) {
        Some(n) => n.to_string(),
        None => "NaN".to_string(),
    }
}

/// RFC 4180 quoting for names containing separators, quotes or line breaks.
fn escape(field: &str) -> String {
    if field.contains([',', '"', '\n', '\r']) {
        format!("\"{}\"", field.replace('"', "\"\""))
    } else {
        field.to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn missing_cells_are_empty_and_names_are_quoted() {
        let rows = vec![
            MetricsRow { step: 1, wall_time: 10.5, values: vec![("loss".into(), 2.0)] },
            MetricsRow {
                step: 2,
                wall_time: 11.0,
                values: vec![("acc, top-1".into(), 0.5), ("loss".into(), f64::INFINITY)],
            },
        ];
        let text = Columns::from_rows(&rows).render(&rows);
        assert_eq!(text, "step,wall_time,loss,\"acc, top-1\"\n1,10.5,2.0,\n2,11.0,NaN,0.5\n");
    }
}
