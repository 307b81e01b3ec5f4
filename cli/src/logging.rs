//! The tracing subscriber: stderr at a level set by -v, plus `train.log` in a run directory
//! (info level) once the run directory is known.

use std::io::Write;
use std::sync::{Mutex, OnceLock};
use tracing_subscriber::{fmt, layer::SubscriberExt, util::SubscriberInitExt, EnvFilter, Layer};

/// The run's log file; events before it is set are not written anywhere but stderr.
static LOG_FILE: OnceLock<Mutex<std::fs::File>> = OnceLock::new();

struct RunLog;

impl Write for RunLog {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        match LOG_FILE.get() {
            Some(f) => f.lock().map_err(|_| std::io::Error::other("log file lock poisoned"))?.write(buf),
            None => Ok(buf.len()),
        }
    }
    fn flush(&mut self) -> std::io::Result<()> {
        match LOG_FILE.get() {
            Some(f) => f.lock().map_err(|_| std::io::Error::other("log file lock poisoned"))?.flush(),
            None => Ok(()),
        }
    }
}

/// The SVG parser's notes on parts of a drawing it skips (a rectangle of width 0 in many
/// emoji): not the user's to act on, so only its errors show.
const QUIET: &str = "usvg=error";

pub fn init_stderr(verbose: u8) {
    // Progress lines (events with target `progress`, the host's and plugins') show at every level.
    let level = match verbose {
        0 => format!("warn,progress=info,{QUIET}"),
        1 => format!("info,{QUIET}"),
        _ => "debug".to_string(),
    };
    let filter = EnvFilter::try_from_env("PT_LOG").unwrap_or_else(|_| EnvFilter::new(level));
    tracing_subscriber::registry()
        .with(fmt::layer().with_writer(|| RunLog).with_ansi(false).with_filter(EnvFilter::new(format!("info,{QUIET}"))))
        .with(fmt::layer().with_writer(std::io::stderr).with_target(false).without_time().with_filter(filter))
        .init();
}

/// From now on, also log (info level) to `path`, appending.
pub fn log_to_file(path: &std::path::Path) -> anyhow::Result<()> {
    let file = std::fs::OpenOptions::new().create(true).append(true).open(path)?;
    let _ = LOG_FILE.set(Mutex::new(file));
    Ok(())
}
