//! Plugin logging that reaches the host. A plugin is its own binary with its own copy of
//! `tracing`'s global dispatcher, so its `tracing::warn!` events would go nowhere; the host
//! installs a sink (through the root module, after loading) and this module forwards every
//! event at info level or above to it, with its fields. The host prints them as its own (a
//! warning on stderr, everything in the run's `train.log`).
//!
//! Progress of long work (building a cache, decoding images) is an info event with target
//! `progress`: `tracing::info!(target: "progress", "tokenized {n} of {total} lines")`; pt shows
//! those on stderr too.

use crate::ffi::LogSink;
use abi_stable::std_types::RStr;
use std::fmt::Write;
use tracing::field::{Field, Visit};
use tracing::span::{Attributes, Id, Record};
use tracing::{Event, Level, Metadata, Subscriber};

/// Levels as they cross: 1 error, 2 warn, 3 info.
pub fn level_code(level: &Level) -> u8 {
    match *level {
        Level::ERROR => 1,
        Level::WARN => 2,
        _ => 3,
    }
}

/// Called by the host (through the plugin's root module) once after loading.
pub extern "C" fn install(sink: LogSink) {
    // Fails only when the plugin installed its own subscriber: then its choice stands.
    let _ = tracing::subscriber::set_global_default(Forward { sink });
}

struct Forward {
    sink: LogSink,
}

/// The event's message followed by its other fields (`key=value`).
#[derive(Default)]
struct Line {
    message: String,
    fields: String,
}

impl Visit for Line {
    fn record_debug(&mut self, field: &Field, value: &dyn std::fmt::Debug) {
        match field.name() {
            "message" => {
                let _ = write!(self.message, "{value:?}");
            }
            name => {
                let _ = write!(self.fields, " {name}={value:?}");
            }
        }
    }
    fn record_str(&mut self, field: &Field, value: &str) {
        match field.name() {
            "message" => self.message.push_str(value),
            name => {
                let _ = write!(self.fields, " {name}={value}");
            }
        }
    }
}

impl Subscriber for Forward {
    fn enabled(&self, metadata: &Metadata<'_>) -> bool {
        *metadata.level() <= Level::INFO
    }
    fn new_span(&self, _span: &Attributes<'_>) -> Id {
        Id::from_u64(1)
    }
    fn record(&self, _span: &Id, _values: &Record<'_>) {}
    fn record_follows_from(&self, _span: &Id, _follows: &Id) {}
    fn event(&self, event: &Event<'_>) {
        let mut line = Line::default();
        event.record(&mut line);
        let text = format!("{}{}", line.message, line.fields);
        let target = event.metadata().target();
        (self.sink.log)(level_code(event.metadata().level()), RStr::from(target), RStr::from(text.as_str()));
    }
    fn enter(&self, _span: &Id) {}
    fn exit(&self, _span: &Id) {}
}

/// Progress of long work as `progress` events (shown on pt's stderr): at most one line every
/// two seconds, with the rate and, when the total is known, the time left; a work that ends
/// within two seconds prints nothing. Safe to share between threads.
pub struct Progress {
    what: String,
    total: Option<u64>,
    started: std::time::Instant,
    done: std::sync::atomic::AtomicU64,
    last_line_ms: std::sync::atomic::AtomicU64,
}

impl Progress {
    /// `what` names the work and its unit ("decoding images", "tokenizing MB").
    pub fn new(what: impl Into<String>, total: Option<u64>) -> Self {
        Progress {
            what: what.into(),
            total,
            started: std::time::Instant::now(),
            done: Default::default(),
            last_line_ms: Default::default(),
        }
    }

    /// Counts `n` more items done; emits a line when two seconds passed since the last.
    pub fn add(&self, n: u64) {
        use std::sync::atomic::Ordering::Relaxed;
        let done = self.done.fetch_add(n, Relaxed) + n;
        let ms = self.started.elapsed().as_millis() as u64;
        let last = self.last_line_ms.load(Relaxed);
        if ms >= last + 2000 && self.last_line_ms.compare_exchange(last, ms, Relaxed, Relaxed).is_ok() {
            tracing::info!(target: "progress", "{}", self.line(done, ms as f64 / 1e3));
        }
    }

    /// The closing line, when the work took long enough to have shown progress.
    pub fn finish(&self) {
        let secs = self.started.elapsed().as_secs_f64();
        if secs >= 2.0 {
            let done = self.done.load(std::sync::atomic::Ordering::Relaxed);
            tracing::info!(target: "progress", "{}: {done} done in {secs:.1} s", self.what);
        }
    }

    fn line(&self, done: u64, secs: f64) -> String {
        let rate = done as f64 / secs.max(1e-9);
        match self.total {
            Some(total) => {
                let left = total.saturating_sub(done) as f64 / rate.max(1e-9);
                format!(
                    "{}: {done}/{total} ({:.0} %), {secs:.0} s, ~{left:.0} s left",
                    self.what,
                    100.0 * done as f64 / total.max(1) as f64
                )
            }
            None => format!("{}: {done} ({rate:.0}/s), {secs:.0} s", self.what),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::Progress;

    #[test]
    fn progress_lines_give_the_share_and_the_time_left() {
        let p = Progress::new("decoding images", Some(400));
        assert_eq!(p.line(100, 5.0), "decoding images: 100/400 (25 %), 5 s, ~15 s left");
        let open = Progress::new("building cache (bytes)", None);
        assert_eq!(open.line(3000, 2.0), "building cache (bytes): 3000 (1500/s), 2 s");
    }
}
