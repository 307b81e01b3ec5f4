//! Copying named weights into a model: checkpoints, `--init-from`, model copies for evaluators.

use crate::{Error, Result};
use tch::Tensor;

/// What a weight load matched.
#[derive(Debug, Default, Clone, PartialEq)]
pub struct LoadReport {
    pub loaded: usize,
    /// Model tensors the source did not have.
    pub missing: Vec<String>,
    /// Source tensors the model does not have.
    pub unexpected: Vec<String>,
}

/// Copies `source` into `target` by name (under no_grad, into the existing storage, so flat
/// optimizer buffers and plugin-side modules see the new values). A shape mismatch is an error.
pub fn load_named(target: &[(String, Tensor)], source: &[(String, Tensor)], what: &str) -> Result<LoadReport> {
    let mut report = LoadReport::default();
    let _guard = tch::no_grad_guard();
    for (name, dst) in target {
        match source.iter().find(|(n, _)| n == name) {
            None => report.missing.push(name.clone()),
            Some((_, src)) => {
                if src.size() != dst.size() {
                    return Err(Error::Checkpoint(format!(
                        "{what}: '{name}' has shape {:?} but the model expects {:?}: the checkpoint was made with a different model config",
                        src.size(),
                        dst.size()
                    )));
                }
                let mut d = dst.shallow_clone();
                d.f_copy_(&src.to_device(dst.device()).to_kind(dst.kind()))?;
                report.loaded += 1;
            }
        }
    }
    report.unexpected =
        source.iter().filter(|(n, _)| !target.iter().any(|(t, _)| t == n)).map(|(n, _)| n.clone()).collect();
    Ok(report)
}

/// Copies `source` into `target` when their names match exactly (resume: a checkpoint of this
/// run holds every tensor of it and nothing else; tolerance belongs to `--init-from`).
pub fn load_exact(target: &[(String, Tensor)], source: &[(String, Tensor)], what: &str) -> Result<()> {
    let report = load_named(target, source, what)?;
    let few = |names: &[String]| {
        let shown: Vec<&str> = names.iter().take(3).map(String::as_str).collect();
        format!(
            "{}{}",
            shown.join(", "),
            if names.len() > 3 { format!(" and {} more", names.len() - 3) } else { String::new() }
        )
    };
    match (report.missing.is_empty(), report.unexpected.is_empty()) {
        (true, true) => Ok(()),
        (false, _) => Err(Error::Checkpoint(format!(
            "{what}: the checkpoint lacks {} of the run's tensors ({}); resuming would leave them at random initialisation",
            report.missing.len(),
            few(&report.missing)
        ))),
        (true, false) => Err(Error::Checkpoint(format!(
            "{what}: the checkpoint has {} tensors this run does not ({}); it was made with another model or objective",
            report.unexpected.len(),
            few(&report.unexpected)
        ))),
    }
}

/// Reads model weights from a pt checkpoint directory, an HF model directory
/// (`model.safetensors`), or a `.safetensors` file.
pub fn read_weights(path: &std::path::Path) -> Result<Vec<(String, Tensor)>> {
    let file = if path.is_dir() {
        let f = path.join("model.safetensors");
        if !f.exists() {
            return Err(Error::Checkpoint(format!(
                "{}: no model.safetensors here; point --init-from at a pt checkpoint directory, a Hugging Face model directory or a .safetensors file",
                path.display()
            )));
        }
        if path.join(crate::checkpoint::format::MANIFEST).exists() {
            crate::checkpoint::Checkpoint::open_verified(path)?;
        }
        f
    } else {
        path.to_path_buf()
    };
    crate::checkpoint::format::read_tensors(&file)
}
