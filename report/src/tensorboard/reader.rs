//! Reads scalars back from TensorBoard event files, checking every record's CRCs.

use super::proto::decode_event;
use super::record::{read_records, OnCorrupt};
use crate::error::{IoContext, ReportError, Result};
use std::path::{Path, PathBuf};

/// One scalar data point of an event file.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct Scalar {
    pub step: i64,
    pub tag: String,
    pub value: f32,
    pub wall_time: f64,
}

/// Reads every scalar (`simple_value`) of an event file, in file order; given a directory, reads
/// all its event files in name order (their names start with the creation time). Fails on a CRC
/// mismatch or an undecodable event; a record cut short at the end of a file is ignored.
pub fn read_scalars(path: &Path) -> Result<Vec<Scalar>> {
    let files = if path.is_dir() { event_files(path)? } else { vec![path.to_path_buf()] };
    let mut scalars = Vec::new();
    for file in &files {
        for record in read_records(file, OnCorrupt::Fail)? {
            let event = decode_event(&record.data).map_err(|message| ReportError::CorruptRecord {
                path: file.clone(),
                offset: record.offset,
                message: format!("undecodable event: {message}"),
            })?;
            scalars.extend(event.scalars.into_iter().map(|(tag, value)| Scalar {
                step: event.step,
                tag,
                value,
                wall_time: event.wall_time,
            }));
        }
    }
    Ok(scalars)
}

/// The event files (names containing `tfevents`, as TensorBoard looks for) in `dir`, by name.
pub fn event_files(dir: &Path) -> Result<Vec<PathBuf>> {
    let mut files = Vec::new();
    for entry in std::fs::read_dir(dir).at(dir, "list TensorBoard directory")? {
        let entry = entry.at(dir, "list TensorBoard directory")?;
        let is_event_file = entry.file_name().to_string_lossy().contains("tfevents");
        if is_event_file && entry.path().is_file() {
            files.push(entry.path());
        }
    }
    files.sort();
    Ok(files)
}
