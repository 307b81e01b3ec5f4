//! The formats `pt export --format` can write: an architecture's own (`ArchitectureInfo::exports`,
//! or one Hugging Face directory for a plugin that lists none) and those an objective adds with
//! its own weights (`ObjectiveInfo::export`, e.g. wav2vec2's `hf-pretraining`).

use anyhow::Context;
use pt_core::components::ArchHandle;
use pt_sdk::{ExportFormat, ObjectiveInfo};
use std::path::Path;

/// A format and, for one an objective adds, its tensor names (empty: as they are named).
pub struct Format {
    pub spec: ExportFormat,
    pub objective_names: Option<Vec<(String, String)>>,
}

/// Every format the run's model can be exported in, the architecture's first.
pub fn available(arch: &ArchHandle, objectives: &[ObjectiveInfo]) -> anyhow::Result<Vec<Format>> {
    let own = match arch.info.exports.is_empty() {
        true => vec![ExportFormat {
            name: "hf".into(),
            loads_with: "transformers from_pretrained(DIR)".into(),
            config: arch.info.config.clone(),
            names: Vec::new(),
        }],
        false => arch.info.exports.clone(),
    };
    let mut formats: Vec<Format> = own.iter().cloned().map(|spec| Format { spec, objective_names: None }).collect();
    for export in objectives.iter().filter_map(|o| o.export.as_ref()) {
        let Some(base) = own.iter().find(|f| f.name == export.extends) else {
            continue;
        };
        let names: Vec<(String, String)> = match base.names.is_empty() {
            true => {
                let mut all: Vec<String> = arch.parameters()?.into_iter().map(|(n, _)| n).collect();
                all.extend(arch.buffers()?.into_iter().map(|(n, _)| n));
                all.into_iter().map(|n| (n.clone(), n)).collect()
            }
            false => base.names.clone(),
        };
        let mut config = base.config.clone();
        if let (Some(c), Some(extra)) = (config.as_object_mut(), export.config.as_object()) {
            c.extend(extra.clone());
        }
        formats.push(Format {
            spec: ExportFormat {
                name: export.name.clone(),
                loads_with: export.loads_with.clone(),
                config,
                names: names
                    .into_iter()
                    .map(|(ours, theirs)| (ours, format!("{}{theirs}", export.model_prefix)))
                    .collect(),
            },
            objective_names: Some(export.names.clone()),
        });
    }
    Ok(formats)
}

/// The format asked for (None: the first), or an error listing them.
pub fn pick(formats: Vec<Format>, asked: Option<&str>, origin: &str) -> anyhow::Result<Format> {
    let listed = formats.iter().map(|f| f.spec.name.as_str()).collect::<Vec<_>>().join(", ");
    let mut formats = formats.into_iter();
    match asked {
        None => formats.next().context("no export format"),
        Some(name) => formats
            .find(|f| f.spec.name == name)
            .with_context(|| format!("--format {name}: {origin} exports as {listed}")),
    }
}

/// The checkpoint's tensors for `role` (None: all) under the format's names, with the
/// objective's when the format carries them.
pub fn tensors(ckpt: &Path, role: Option<&str>, format: &Format) -> anyhow::Result<Vec<(String, tch::Tensor)>> {
    let weights = ckpt.join("model.safetensors");
    let mut tensors = pt_core::checkpoint::format::read_tensors(&weights)?;
    if let Some(role) = role {
        // The role's tensors under the architecture's own names (`image.conv1.weight` → `conv1.weight`).
        let prefix = format!("{role}.");
        tensors =
            tensors.into_iter().filter_map(|(n, t)| n.strip_prefix(&prefix).map(|n| (n.to_string(), t))).collect();
        if tensors.is_empty() {
            anyhow::bail!("{}: no tensor under '{prefix}' in the checkpoint", weights.display());
        }
    }
    let mut out = renamed(tensors, &format.spec.names, &weights)?;
    if let Some(names) = &format.objective_names {
        let file = ckpt.join("objective.safetensors");
        out.extend(renamed(pt_core::checkpoint::format::read_tensors(&file)?, names, &file)?);
    }
    Ok(out)
}

/// `tensors` under `names` (ours → theirs; empty: as they are), every listed one required.
fn renamed(
    tensors: Vec<(String, tch::Tensor)>,
    names: &[(String, String)],
    file: &Path,
) -> anyhow::Result<Vec<(String, tch::Tensor)>> {
    if names.is_empty() {
        return Ok(tensors);
    }
    let mut by_name: std::collections::HashMap<String, tch::Tensor> = tensors.into_iter().collect();
    names
        .iter()
        .map(|(ours, theirs)| {
            let t = by_name.remove(ours).with_context(|| format!("{}: no tensor '{ours}'", file.display()))?;
            Ok((theirs.clone(), t))
        })
        .collect()
}
