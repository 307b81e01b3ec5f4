//! Printing that survives a closed pipe. `pt train … | head` closes stdout long before a run
//! ends; `println!` would panic there. Long-running commands print with these instead and go on
//! (their log file keeps everything); short commands get the default SIGPIPE and end quietly,
//! as Unix tools do ([`quiet_on_closed_pipe`]).

/// `println!` that ignores a write error.
macro_rules! outln {
    ($($arg:tt)*) => {{
        use std::io::Write as _;
        let _ = writeln!(std::io::stdout(), $($arg)*);
    }};
}

/// `eprintln!` that ignores a write error.
macro_rules! errln {
    ($($arg:tt)*) => {{
        use std::io::Write as _;
        let _ = writeln!(std::io::stderr(), $($arg)*);
    }};
}

/// A command whose only job is its output ends on a closed pipe like `ls | head` does: killed
/// by SIGPIPE, silently (Rust ignores SIGPIPE, which turns the closed pipe into a panic).
pub fn quiet_on_closed_pipe() {
    // SAFETY: restoring a signal's default disposition.
    unsafe { libc::signal(libc::SIGPIPE, libc::SIG_DFL) };
}
