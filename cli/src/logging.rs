//! The tracing subscriber: stderr at a level set by -v, plus `train.log` in a run directory.

use std::sync::{Mutex, OnceLock};
use tracing_subscriber::{fmt, layer::SubscriberExt, reload, util::SubscriberInitExt, EnvFilter, Layer, Registry};

type FileLayer = Box<dyn Layer<Registry> + Send + Sync>;
static FILE_LAYER: OnceLock<reload::Handle<Option<FileLayer>, Registry>> = OnceLock::new();

pub fn init_stderr(verbose: u8) {
    let level = match verbose {
        0 => "warn",
        1 => "info",
        _ => "debug",
    };
    let filter = EnvFilter::try_from_env("PT_LOG").unwrap_or_else(|_| EnvFilter::new(level));
    let (file_layer, handle) = reload::Layer::new(None::<FileLayer>);
    let _ = FILE_LAYER.set(handle);
    tracing_subscriber::registry()
        .with(file_layer)
        .with(fmt::layer().with_writer(std::io::stderr).with_target(false).without_time().with_filter(filter))
        .init();
}

/// Also log (at info level) to `path`, appending.
pub fn log_to_file(path: &std::path::Path) -> anyhow::Result<()> {
    let file = std::fs::OpenOptions::new().create(true).append(true).open(path)?;
    let layer: FileLayer = fmt::layer()
        .with_writer(Mutex::new(file))
        .with_ansi(false)
        .with_filter(EnvFilter::new("info"))
        .boxed();
    if let Some(h) = FILE_LAYER.get() {
        h.modify(|l| *l = Some(layer))?;
    }
    Ok(())
}
