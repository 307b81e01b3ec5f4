//! Refusing model sizes that cannot fit before anything is allocated. An absurd `hidden_size`
//! or `num_classes` would otherwise end the process in an allocation abort ("memory allocation
//! of N bytes failed") instead of an error naming the key.

use crate::{PtError, Result};

/// This machine's memory (MemTotal of /proc/meminfo), when it can be read.
pub fn machine_memory_bytes() -> Option<u64> {
    let text = std::fs::read_to_string("/proc/meminfo").ok()?;
    let kib: u64 = text.lines().find(|l| l.starts_with("MemTotal:"))?.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib * 1024)
}

/// `bytes` in a unit a person reads at a glance.
pub fn human_bytes(bytes: f64) -> String {
    let units = ["B", "KiB", "MiB", "GiB", "TiB", "PiB"];
    let mut v = bytes;
    let mut unit = 0;
    while v >= 1024.0 && unit + 1 < units.len() {
        v /= 1024.0;
        unit += 1;
    }
    format!("{v:.1} {}", units[unit])
}

/// Refuses `parameters` f32 values (the weights alone, before gradients and optimizer state)
/// that exceed this machine's memory. `what` names the component, `keys` the config keys that
/// set the size.
pub fn check_parameters(what: &str, parameters: f64, keys: &str) -> Result<()> {
    let bytes = parameters * 4.0;
    match machine_memory_bytes() {
        Some(total) if bytes > total as f64 || !bytes.is_finite() => Err(PtError::config(format!(
            "{what}: these sizes make {parameters:.3e} parameters ({} as f32, before gradients and optimizer state), more than this machine's {} of memory: lower {keys}",
            human_bytes(bytes),
            human_bytes(total as f64)
        ))),
        _ => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn absurd_sizes_are_refused_naming_the_keys() {
        assert!(machine_memory_bytes().is_some_and(|b| b > 1 << 20));
        check_parameters("bert", 110e6, "hidden_size").unwrap();
        let e = check_parameters("bert", 2e12, "hidden_size or num_hidden_layers").unwrap_err().to_string();
        assert!(e.contains("2.000e12 parameters") && e.contains("7.3 TiB") && e.contains("lower hidden_size"), "{e}");
        assert_eq!(human_bytes(1536.0), "1.5 KiB");
    }
}
