//! `pt embed`: a checkpoint's per-sample feature vectors for a dataset, at the layers asked
//! (feature taps, the last `features`, or any per-sample output such as CLIP's
//! `image/embedding`), written as safetensors or NumPy `.npz` with sample indices and labels.

use crate::checkpoint::Checkpoint;
use crate::components::{DatasetHandle, LentModel, SAMPLE_INDEX};
use crate::train::Session;
use crate::{Error, Result};
use pt_sdk::taps::{request_taps, tap_output, TAP_PREFIX};
use pt_sdk::StepCtx;
use serde::Serialize;
use std::path::Path;
use tch::{Kind, Tensor};

/// What to extract.
#[derive(Clone, Debug)]
pub struct EmbedOptions {
    /// Taps (`layer3`), `features`, or model outputs (`image/embedding`); empty: `features`.
    pub layers: Vec<String>,
    pub batch_size: u64,
    /// At most this many samples, from the first (0: all).
    pub limit: u64,
}

/// One array of the output file.
#[derive(Serialize, Debug, Clone)]
pub struct EmbeddedArray {
    /// The name asked for (`layer3`).
    pub layer: String,
    /// Its name in the file and among the model's outputs (`features.layer3`).
    pub key: String,
    pub dim: i64,
}

/// What `pt embed` wrote, also saved beside the file as `OUT.json`.
#[derive(Serialize, Debug, Clone)]
pub struct Embedding {
    pub checkpoint: String,
    pub step: u64,
    pub dataset: String,
    pub samples: u64,
    pub arrays: Vec<EmbeddedArray>,
    /// Class names when the data is labelled (`label` holds their indices).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub classes: Vec<String>,
    pub file: String,
}

/// (name asked, output name) for `layers`, refused with the taps and outputs there are when
/// unknown.
fn resolve_outputs(session: &Session, layers: &[String]) -> Result<Vec<(String, String)>> {
    let have = session.eval_outputs();
    let wanted = if layers.is_empty() { vec!["features".to_string()] } else { layers.to_vec() };
    let mut outputs: Vec<(String, String)> = Vec::new();
    for layer in wanted {
        let key = if have.contains(&layer) { layer.clone() } else { tap_output(&layer) };
        if !have.contains(&key) {
            let taps: Vec<&str> = session.model.info.taps.iter().map(|t| t.name.as_str()).collect();
            let plain: Vec<&str> = have.iter().filter(|o| !o.starts_with(TAP_PREFIX)).map(String::as_str).collect();
            let hint = match session.model.has_roles() {
                true => format!("; evaluate one architecture with --role {}", session.model.roles().join("|")),
                false => String::new(),
            };
            return Err(Error::Config(format!(
                "--layer {layer}: {} has no such tap or output (taps: {}; outputs: {}){hint}",
                session.model.origin,
                if taps.is_empty() { "none".into() } else { taps.join(", ") },
                plain.join(", ")
            )));
        }
        if outputs.iter().any(|(_, k)| *k == key) {
            return Err(Error::Config(format!("--layer {layer} is given twice")));
        }
        outputs.push((layer, key));
    }
    Ok(outputs)
}

/// `safetensors` or `npz`, from `out`'s extension; else an error saying so.
pub fn output_format(out: &Path) -> Result<&'static str> {
    match out.extension().and_then(|e| e.to_str()) {
        Some("safetensors") => Ok("safetensors"),
        Some("npz") => Ok("npz"),
        _ => Err(Error::Config(format!(
            "-o {}: name the file .safetensors or .npz (the format follows the extension)",
            out.display()
        ))),
    }
}

/// Extracts `opts.layers` of the session's model (evaluation mode, no gradient) for `data` and
/// writes them to `out` (`.safetensors` or `.npz`) with `sample_index` and, for labelled data,
/// `label`. `progress` hears (samples done, samples in all) after each batch.
pub fn embed(
    (session, checkpoint): (&mut Session, &Checkpoint),
    data: &DatasetHandle,
    opts: &EmbedOptions,
    out: &Path,
    progress: &mut dyn FnMut(u64, u64),
) -> Result<Embedding> {
    let format = output_format(out)?;
    let wanted = resolve_outputs(session, &opts.layers)?;
    let outputs: Vec<String> = wanted.iter().map(|(_, key)| key.clone()).collect();
    let n = data.info.num_samples.min(if opts.limit == 0 { u64::MAX } else { opts.limit });
    if n == 0 {
        return Err(Error::Config(format!("{}: the dataset has no samples", data.origin)));
    }
    let ctx =
        StepCtx { seed: session.plan.recipe.run.seed, device: session.ctx.device, train: false, ..Default::default() };
    // The model leaves the session while lent, so the objectives' heads can be lent beside it.
    let mut model = std::mem::replace(&mut session.model, crate::model::Model::from_towers(Vec::new()));
    let shape = (n, opts.batch_size);
    let extracted = extract(&mut model, session.heads(), data, &outputs, shape, (session.device, &ctx), progress);
    session.model = model;
    let (rows, indices, labels) = extracted?;
    let labelled = labels.is_some();
    let mut named: Vec<(String, Tensor)> = Vec::new();
    let mut arrays = Vec::new();
    for ((layer, key), rows) in wanted.into_iter().zip(rows) {
        let all = Tensor::f_cat(&rows, 0)?;
        arrays.push(EmbeddedArray { layer, key: key.clone(), dim: all.size()[1] });
        named.push((key, all));
    }
    named.push((SAMPLE_INDEX.into(), indices));
    if let Some(labels) = labels {
        named.push(("label".into(), labels));
    }
    if let Some(dir) = out.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir).map_err(|e| Error::io(format!("creating {}", dir.display()), e))?;
    }
    let written = match format {
        "npz" => Tensor::write_npz(&named, out),
        _ => Tensor::write_safetensors(&named, out),
    };
    written.map_err(|e| Error::Training(format!("writing {}: {e}", out.display())))?;
    let embedding = Embedding {
        checkpoint: checkpoint.dir.display().to_string(),
        step: checkpoint.manifest.step,
        dataset: data.origin.clone(),
        samples: n,
        arrays,
        classes: if labelled { data.info.classes.clone() } else { Vec::new() },
        file: out.display().to_string(),
    };
    Ok(embedding)
}

type Extracted = (Vec<Vec<Tensor>>, Tensor, Option<Tensor>);

/// Per output, its rows batch by batch (on the CPU); the sample indices; the labels, if any.
fn extract(
    model: &mut crate::model::Model,
    heads: Vec<&crate::components::ObjectiveHandle>,
    data: &DatasetHandle,
    outputs: &[String],
    (n, batch_size): (u64, u64),
    (device, ctx): (tch::Device, &StepCtx),
    progress: &mut dyn FnMut(u64, u64),
) -> Result<Extracted> {
    let _guard = tch::no_grad_guard();
    let labelled = data.info.fields.iter().any(|f| f.name == "label");
    model.set_train(false)?;
    let lent = LentModel::new(model, heads);
    let mut rows: Vec<Vec<Tensor>> = outputs.iter().map(|_| Vec::new()).collect();
    let (mut indices, mut labels) = (Vec::new(), Vec::new());
    let bs = batch_size.max(1);
    for start in (0..n).step_by(bs as usize) {
        crate::train::interrupt::check("pt embed")?;
        let idx: Vec<u64> = (start..(start + bs).min(n)).collect();
        let batch = data.get_batch(&idx, ctx)?;
        indices.push(batch.require(SAMPLE_INDEX)?.to_kind(Kind::Int64));
        if labelled {
            labels.push(batch.require("label")?.to_kind(Kind::Int64));
        }
        let mut batch = data.to_device(batch, device)?;
        request_taps(&mut batch, outputs);
        let got = lent.forward(&batch, ctx)?;
        for (key, rows) in outputs.iter().zip(&mut rows) {
            let t = got.require(key)?;
            if t.dim() != 2 || t.size()[0] != idx.len() as i64 {
                return Err(Error::Config(format!(
                    "--layer {key}: pt embed writes one vector per sample, but this output is {:?} for a batch of {}",
                    t.size(),
                    idx.len()
                )));
            }
            rows.push(t.to_kind(Kind::Float).to_device(tch::Device::Cpu));
        }
        progress(start + idx.len() as u64, n);
    }
    let labels = if labelled { Some(Tensor::f_cat(&labels, 0)?) } else { None };
    Ok((rows, Tensor::f_cat(&indices, 0)?, labels))
}

/// Writes `embedding` as JSON beside its file (`OUT.json`).
pub fn write_summary(embedding: &Embedding, out: &Path) -> Result<std::path::PathBuf> {
    let path = out.with_extension(format!("{}.json", out.extension().and_then(|e| e.to_str()).unwrap_or("")));
    let text = serde_json::to_string_pretty(embedding).map_err(|e| Error::Training(e.to_string()))?;
    std::fs::write(&path, text).map_err(|e| Error::io(format!("writing {}", path.display()), e))?;
    Ok(path)
}
