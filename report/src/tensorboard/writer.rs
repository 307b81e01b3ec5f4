//! Writes a TensorBoard event file natively: TFRecord-framed `Event` protos.

use super::proto::{
    encode_file_version_event, encode_histogram_event, encode_hparams_event, encode_image_event, encode_scalar_event,
    HParam, Histogram,
};
use super::record::write_record;
use crate::error::{IoContext, ReportError, Result};
use std::fs::{File, OpenOptions};
use std::io::{BufWriter, ErrorKind, Write};
use std::path::{Path, PathBuf};

/// An open event file. Scalars are buffered; `flush` makes them visible to TensorBoard.
pub struct EventWriter {
    path: PathBuf,
    out: BufWriter<File>,
}

impl EventWriter {
    /// Creates `<dir>/events.out.tfevents.<unix-time>.<hostname>.pt` and writes its header event.
    /// Never overwrites: if a file of that name exists (a run resumed within the same second),
    /// the time in the name is bumped, which keeps names in creation order.
    pub fn create(dir: &Path, wall_time: f64) -> Result<Self> {
        std::fs::create_dir_all(dir).at(dir, "create TensorBoard directory")?;
        let host = hostname();
        let mut secs = wall_time.max(0.0) as u64;
        let (path, file) = loop {
            let path = dir.join(format!("events.out.tfevents.{secs}.{host}.pt"));
            match OpenOptions::new().write(true).create_new(true).open(&path) {
                Ok(file) => break (path, file),
                Err(e) if e.kind() == ErrorKind::AlreadyExists => secs += 1,
                Err(e) => return Err(ReportError::io(&path, "create TensorBoard event file", e)),
            }
        };
        let mut writer = EventWriter { path, out: BufWriter::new(file) };
        writer.write_event(&encode_file_version_event(wall_time))?;
        writer.flush()?;
        tracing::debug!("TensorBoard events: {}", writer.path.display());
        Ok(writer)
    }

    /// Opens an existing event file (one this crate created) to append to it.
    pub(crate) fn append_to(path: &Path) -> Result<Self> {
        let file = OpenOptions::new().append(true).open(path).at(path, "open TensorBoard event file for appending")?;
        Ok(EventWriter { path: path.to_path_buf(), out: BufWriter::new(file) })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Records `Event{wall_time, step, summary{value{tag, simple_value}}}`.
    pub fn write_scalar(&mut self, wall_time: f64, step: u64, tag: &str, value: f64) -> Result<()> {
        let step = i64::try_from(step)
            .map_err(|_| ReportError::InvalidInput(format!("step {step} exceeds TensorBoard's int64 range")))?;
        // TensorBoard stores scalars as f32; finite values beyond its range become ±inf.
        self.write_event(&encode_scalar_event(wall_time, step, tag, value as f32))
    }

    /// Records the PNG file `png` as an image summary (TensorBoard's IMAGES tab) under `tag`.
    pub fn write_png(&mut self, wall_time: f64, step: u64, tag: &str, png: &Path) -> Result<()> {
        let bytes = std::fs::read(png).at(png, "read picture for TensorBoard")?;
        let header = png_header(&bytes)
            .ok_or_else(|| ReportError::InvalidInput(format!("{}: not a PNG file", png.display())))?;
        let step = i64::try_from(step).unwrap_or(i64::MAX);
        self.write_event(&encode_image_event(wall_time, step, tag, &bytes, header))
    }

    /// Records a distribution (TensorBoard's HISTOGRAMS tab) under `tag`.
    pub fn write_histogram(&mut self, wall_time: f64, step: u64, tag: &str, h: &Histogram) -> Result<()> {
        let step = i64::try_from(step).unwrap_or(i64::MAX);
        self.write_event(&encode_histogram_event(wall_time, step, tag, h))
    }

    /// Records the run's hyperparameters for TensorBoard's HPARAMS tab (once per run).
    pub fn write_hparams(&mut self, wall_time: f64, hparams: &[(String, HParam)]) -> Result<()> {
        self.write_event(&encode_hparams_event(wall_time, hparams))
    }

    pub fn flush(&mut self) -> Result<()> {
        self.out.flush().at(&self.path, "write TensorBoard event file")
    }

    fn write_event(&mut self, event: &[u8]) -> Result<()> {
        write_record(&mut self.out, event).at(&self.path, "write TensorBoard event file")
    }
}

/// Width, height and colour space (3: RGB, 4: RGBA) from a PNG's IHDR chunk.
fn png_header(bytes: &[u8]) -> Option<(u32, u32, u32)> {
    if bytes.len() < 26 || &bytes[..8] != b"\x89PNG\r\n\x1a\n" || &bytes[12..16] != b"IHDR" {
        return None;
    }
    let be = |at: usize| u32::from_be_bytes([bytes[at], bytes[at + 1], bytes[at + 2], bytes[at + 3]]);
    let colorspace = match bytes[25] {
        6 => 4, // RGBA
        4 => 2, // grey + alpha
        0 => 1, // grey
        _ => 3, // RGB, palette
    };
    Some((be(16), be(20), colorspace))
}

/// The machine's name as TensorBoard file names carry it, reduced to file-name-safe characters.
fn hostname() -> String {
    let raw = std::fs::read_to_string("/proc/sys/kernel/hostname")
        .or_else(|_| std::fs::read_to_string("/etc/hostname"))
        .ok()
        .or_else(|| std::env::var("HOSTNAME").ok())
        .unwrap_or_default();
    let clean: String =
        raw.trim().chars().map(|c| if c.is_ascii_alphanumeric() || c == '-' || c == '_' { c } else { '_' }).collect();
    if clean.is_empty() {
        "localhost".to_string()
    } else {
        clean
    }
}
