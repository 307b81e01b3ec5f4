//! Drops events beyond a step from existing event files, for a run resumed from an earlier
//! checkpoint (otherwise TensorBoard would show the abandoned steps alongside the new ones).

use super::proto::decode_event;
use super::reader::event_files;
use super::record::{read_records, write_record, OnCorrupt};
use crate::error::{IoContext, Result};
use crate::fs_util::replace_file;
use std::path::Path;

/// Rewrites every event file in `dir` without the events whose step is greater than `step`.
/// Header events (file version) are kept. Damaged tails are dropped with a warning rather than
/// failing the resume. Files with nothing to drop are left untouched.
pub(crate) fn truncate_event_files(dir: &Path, step: u64) -> Result<()> {
    if !dir.is_dir() {
        return Ok(());
    }
    let limit = i64::try_from(step).unwrap_or(i64::MAX);
    for file in event_files(dir)? {
        let records = read_records(&file, OnCorrupt::StopReading)?;
        let total_len = std::fs::metadata(&file).at(&file, "read TensorBoard event file")?.len();
        let kept: Vec<_> = records
            .iter()
            .filter(|record| match decode_event(&record.data) {
                Ok(event) => event.file_version.is_some() || event.step <= limit,
                Err(message) => {
                    tracing::warn!(
                        "{}: dropping undecodable event at byte {}: {message}",
                        file.display(),
                        record.offset
                    );
                    false
                }
            })
            .collect();
        let kept_len: u64 = kept.iter().map(|r| r.data.len() as u64 + 16).sum();
        if kept_len == total_len {
            continue;
        }
        let mut bytes = Vec::with_capacity(kept_len as usize);
        for record in &kept {
            write_record(&mut bytes, &record.data).at(&file, "rewrite TensorBoard event file")?;
        }
        replace_file(&file, &bytes)?;
        tracing::info!("{}: dropped {} events after step {step}", file.display(), records.len() - kept.len());
    }
    Ok(())
}
