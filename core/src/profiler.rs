//! `[run] profile_steps = [first, last]`: PyTorch's profiler (Kineto) over those training steps,
//! through the C++ shim `csrc/profiler.cpp`, written as a Chrome trace into the run directory
//! (`profile/steps-F-L.trace.json`; open in https://ui.perfetto.dev, chrome://tracing or
//! TensorBoard). CPU ops with their input shapes and FLOPs, CUDA kernels on a GPU; each step is
//! a range named `pt::step N`.

use crate::{Error, Result};
use std::ffi::{c_char, c_int, c_void, CString};
use std::path::{Path, PathBuf};
use tch::Device;

extern "C" {
    fn pt_profiler_start(cuda: c_int, err: *mut c_char, err_len: usize) -> c_int;
    fn pt_profiler_stop(path: *const c_char, err: *mut c_char, err_len: usize) -> c_int;
    fn pt_range_begin(name: *const c_char, out: *mut *mut c_void, err: *mut c_char, err_len: usize) -> c_int;
    fn pt_range_end(range: *mut c_void);
}

fn call(what: &str, f: impl FnOnce(*mut c_char, usize) -> c_int) -> Result<()> {
    crate::shim::call(f).map_err(|msg| Error::Training(format!("{what} (libtorch profiler): {msg}")))
}

/// A running profile; [`Profile::finish`] writes its trace.
pub struct Profile {
    path: PathBuf,
    device: Device,
    running: bool,
}

impl Profile {
    /// Starts profiling this thread's work (and the GPU's on CUDA); the trace will go to `path`.
    pub fn start(device: Device, path: &Path) -> Result<Profile> {
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir).map_err(|e| Error::io(format!("creating {}", dir.display()), e))?;
        }
        let cuda = matches!(device, Device::Cuda(_)) as c_int;
        // SAFETY: the shim writes at most `len` NUL-terminated bytes to `err`.
        call("starting the profiler", |err, len| unsafe { pt_profiler_start(cuda, err, len) })?;
        Ok(Profile { path: path.to_path_buf(), device, running: true })
    }

    /// Stops profiling and writes the trace; returns its path.
    pub fn finish(mut self) -> Result<PathBuf> {
        if let Device::Cuda(index) = self.device {
            // The step queues kernels without waiting: let the profiled ones finish first.
            tch::Cuda::synchronize(index as i64);
        }
        let path = CString::new(self.path.to_string_lossy().as_bytes())
            .map_err(|_| Error::Training(format!("{}: a path with a NUL byte", self.path.display())));
        self.running = false; // stopped below, whatever happens
        let path = match path {
            Ok(p) => p,
            Err(e) => {
                stop_without_trace();
                return Err(e);
            }
        };
        // SAFETY: `path` is a live NUL-terminated string for the call.
        call(&format!("writing {}", self.path.display()), |err, len| unsafe {
            pt_profiler_stop(path.as_ptr(), err, len)
        })?;
        Ok(self.path.clone())
    }
}

/// Stops the profiler, writing nothing.
fn stop_without_trace() {
    let mut err = [0 as c_char; 256];
    // SAFETY: an empty path writes nothing; the buffer outlives the call.
    unsafe { pt_profiler_stop(c"".as_ptr(), err.as_mut_ptr(), err.len()) };
}

impl Drop for Profile {
    /// A profile dropped unfinished (the run failed) is stopped without a trace.
    fn drop(&mut self) {
        if self.running {
            stop_without_trace();
        }
    }
}

/// A named range in the profile (nothing is recorded while no profile runs); ends when dropped.
pub struct Range(*mut c_void);

impl Range {
    pub fn begin(name: &str) -> Result<Range> {
        let name = CString::new(name).map_err(|_| Error::Training("a range name with a NUL byte".into()))?;
        let mut out = std::ptr::null_mut();
        // SAFETY: `name` lives through the call; the shim writes one owned pointer to `out`.
        call("opening a profiler range", |err, len| unsafe { pt_range_begin(name.as_ptr(), &mut out, err, len) })?;
        Ok(Range(out))
    }
}

impl Drop for Range {
    fn drop(&mut self) {
        if !self.0.is_null() {
            // SAFETY: created by pt_range_begin, freed once.
            unsafe { pt_range_end(self.0) };
        }
    }
}
