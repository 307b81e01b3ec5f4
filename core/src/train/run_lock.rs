//! One process trains in a run directory at a time: an exclusive advisory lock
//! (`flock`) on `RUN_DIR/.pt-lock`, held for the run's life. The file names the holder's PID;
//! the kernel releases the lock when the holder exits, however it exits, so a lock left by a
//! killed process is simply taken over.

use crate::{Error, Result};
use std::fs::File;
use std::io::{Read, Seek, Write};
use std::os::fd::AsRawFd;
use std::path::Path;

pub const LOCK_FILE: &str = ".pt-lock";

/// Held while it lives.
#[derive(Debug)]
pub struct RunLock {
    _file: File,
}

impl RunLock {
    /// Takes the run directory's lock, or says who holds it.
    pub fn acquire(run_dir: &Path) -> Result<RunLock> {
        let path = run_dir.join(LOCK_FILE);
        let mut file = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(&path)
            .map_err(|e| Error::io(format!("opening the run's lock {}", path.display()), e))?;
        // SAFETY: flock on a descriptor this function owns; no memory is shared.
        if unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) } != 0 {
            let mut holder = String::new();
            let _ = file.read_to_string(&mut holder);
            let holder = holder.trim();
            return Err(Error::Config(format!(
                "run directory {} is in use by another pt process ({}): wait for it to end or stop it, or train into another --run-dir",
                run_dir.display(),
                if holder.is_empty() { "PID unknown".to_string() } else { format!("PID {holder}") }
            )));
        }
        let write = |file: &mut File| -> std::io::Result<()> {
            file.set_len(0)?;
            file.rewind()?;
            writeln!(file, "{}", std::process::id())?;
            file.sync_all()
        };
        write(&mut file).map_err(|e| Error::io(format!("writing {}", path.display()), e))?;
        Ok(RunLock { _file: file })
    }
}

/// Who holds the run directory's lock now: `Some(PID as written)` while a pt process trains in
/// it, `None` when nobody does (a lock file left by a killed process is not held).
pub fn holder(run_dir: &Path) -> Option<String> {
    let mut file = File::open(run_dir.join(LOCK_FILE)).ok()?;
    // SAFETY: as in `acquire`; a shared lock only tests for the exclusive one.
    if unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_SH | libc::LOCK_NB) } == 0 {
        return None;
    }
    let mut pid = String::new();
    let _ = file.read_to_string(&mut pid);
    Some(pid.trim().to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_second_holder_is_refused_until_the_first_lets_go() {
        let dir = tempfile::tempdir().unwrap();
        let first = RunLock::acquire(dir.path()).unwrap();
        let e = RunLock::acquire(dir.path()).unwrap_err().to_string();
        assert!(e.contains(&format!("PID {}", std::process::id())) && e.contains("is in use"), "{e}");
        assert_eq!(holder(dir.path()), Some(std::process::id().to_string()));
        drop(first);
        assert_eq!(holder(dir.path()), None, "the file stays; the lock does not");
        RunLock::acquire(dir.path()).expect("free again once released");
    }
}
