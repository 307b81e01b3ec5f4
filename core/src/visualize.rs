//! `pt visualize`: pictures of what an encoder learned, for a checkpoint next to the same
//! architecture at random initialisation — 2-D PCA and t-SNE maps of its `features` on labelled
//! samples coloured by class, the first convolution's filters as an image grid (ResNets), and the last
//! layer's attention among a sample's tokens (architectures that take `output_attentions`: BERT).

use crate::components::DatasetHandle;
use crate::model::Model;
use crate::train::weights::load_named;
use crate::train::Session;
use crate::{Error, Result};
use pt_report::{plot_image_grid, plot_scatter, RgbImage};
use pt_sdk::{StepCtx, Tensors};
use std::path::{Path, PathBuf};
use tch::{Kind, Tensor};

/// Features of the first `limit` samples of `data` (eval mode, no grad) and their labels
/// (all 0 for unlabelled data).
pub fn features(arch: &mut Model, data: &DatasetHandle, limit: u64, ctx: &StepCtx) -> Result<(Tensor, Vec<usize>)> {
    let n = data.info.num_samples.min(limit);
    let _no_grad = tch::no_grad_guard();
    arch.set_train(false)?;
    let (mut feats, mut labels) = (Vec::new(), Vec::new());
    for start in (0..n).step_by(256) {
        let idx: Vec<u64> = (start..(start + 256).min(n)).collect();
        let batch = data.to_device(data.get_batch(&idx, ctx)?, ctx.device())?;
        let out: Tensors = arch.forward(&batch, ctx)?;
        let f = out.require("features").map_err(Error::Plugin)?;
        feats.push(f.to_kind(Kind::Float).to_device(tch::Device::Cpu));
        labels.extend(match batch.get("label") {
            Some(l) => Vec::<i64>::try_from(&l.to_device(tch::Device::Cpu).to_kind(Kind::Int64).flatten(0, -1))
                .map_err(|e| Error::Training(e.to_string()))?
                .into_iter()
                .map(|v| v.max(0) as usize)
                .collect(),
            None => vec![0; idx.len()],
        });
    }
    let feats = Tensor::f_cat(&feats, 0).map_err(|e| Error::Training(e.to_string()))?;
    Ok((feats, labels))
}

/// The first two principal components of the rows of `x` [N, D] → [N, 2].
pub fn pca2(x: &Tensor) -> Result<Tensor> {
    // libtorch's messages carry a C++ backtrace; PtError keeps the useful head.
    let torch = |e: tch::TchError| Error::Training(format!("PCA: {}", pt_sdk::PtError::from(e).message));
    let centred = x.f_sub(&x.f_mean_dim(0, true, Kind::Float).map_err(torch)?).map_err(torch)?;
    let (_, _, v) = centred.f_svd(true, true).map_err(torch)?; // v: [D, k], columns by singular value
    let top = v.f_narrow(1, 0, 2.min(v.size()[1])).map_err(torch)?; // [D, 2]
    centred.f_matmul(&top).map_err(torch)
}

/// A first-layer convolution's filters [out, in, k, k] as RGB tiles, each scaled to its own range.
pub fn filter_tiles(weight: &Tensor) -> Result<Vec<RgbImage>> {
    let w = weight.to_kind(Kind::Float).to_device(tch::Device::Cpu);
    let size = w.size();
    let (out, cin, kh, kw) = (size[0], size[1], size[2] as usize, size[3] as usize);
    let mut tiles = Vec::new();
    for o in 0..out {
        let f = w.get(o); // [in, k, k]
        let (lo, hi) = (f.min().double_value(&[]), f.max().double_value(&[]));
        let scaled = ((f - lo) / (hi - lo).max(1e-12) * 255.0).clamp(0.0, 255.0);
        let channels: Vec<Vec<f32>> =
            (0..cin.min(3)).map(|c| Vec::<f32>::try_from(scaled.get(c).flatten(0, -1)).unwrap_or_default()).collect();
        let mut pixels = Vec::with_capacity(kh * kw * 3);
        for p in 0..kh * kw {
            for c in 0..3 {
                let ch = &channels[if cin >= 3 { c } else { 0 }];
                pixels.push(ch.get(p).copied().unwrap_or(0.0) as u8);
            }
        }
        tiles.push((kw, kh, pixels));
    }
    Ok(tiles)
}

/// Fewest samples a t-SNE map is drawn for (its perplexity needs a neighbourhood).
pub(crate) const TSNE_MIN_SAMPLES: usize = 10;

/// 2-D t-SNE of `x` [N, D] (Barnes-Hut, θ = 0.5, the `bhtsne` crate; perplexity 30, or less for
/// small N; 1000 epochs), started from `init` [N, 2] — the PCA coordinates, scaled to a standard
/// deviation of 1e-4 as openTSNE and scikit-learn's `init="pca"` do: deterministic, and it keeps
/// the global layout that a random start loses. Returns [N, 2].
pub fn tsne2(x: &Tensor, init: &Tensor) -> Result<Tensor> {
    let (n, d) = x.size2().map_err(|e| Error::Training(format!("t-SNE input: {e}")))?;
    let (n, d) = (n as usize, d as usize);
    if n < TSNE_MIN_SAMPLES {
        return Err(Error::Config(format!("t-SNE needs at least {TSNE_MIN_SAMPLES} samples, got {n}")));
    }
    let flat = |t: &Tensor| -> Result<Vec<f32>> {
        Vec::<f32>::try_from(t.to_kind(Kind::Float).contiguous().flatten(0, -1))
            .map_err(|e| Error::Training(e.to_string()))
    };
    let data = flat(x)?;
    let scale = init.select(1, 0).std(true).double_value(&[]).max(1e-12);
    let start = flat(&(init.to_kind(Kind::Float) * (1e-4 / scale)))?;
    let samples: Vec<&[f32]> = data.chunks(d.max(1)).collect();
    let perplexity = 30f32.min((n as f32 - 1.0) / 3.0);
    let fit = std::panic::catch_unwind(|| {
        bhtsne::tSNE::<f32, &[f32], 2>::new(&samples)
            .perplexity(perplexity)
            .epochs(1000)
            .initial_embedding(start.clone())
            .barnes_hut(0.5, |a, b| a.iter().zip(b.iter()).map(|(p, q)| (p - q).powi(2)).sum::<f32>().sqrt())
            .embedding()
    })
    .map_err(|_| Error::Training("t-SNE failed (non-finite features?)".into()))?;
    Ok(Tensor::from_slice(&fit).reshape([n as i64, 2]))
}

/// A scatter of `xy` [N, 2] coloured by `labels`.
pub(crate) fn draw_map(path: &Path, xy: &Tensor, labels: &[usize], classes: &[String], title: &str) -> Result<()> {
    let xs = Vec::<f32>::try_from(xy.select(1, 0)).map_err(|e| Error::Training(e.to_string()))?;
    let ys = Vec::<f32>::try_from(xy.select(1, 1.min(xy.size()[1] - 1))).map_err(|e| Error::Training(e.to_string()))?;
    let points: Vec<(f64, f64, usize)> =
        xs.iter().zip(&ys).zip(labels).map(|((x, y), c)| (*x as f64, *y as f64, *c)).collect();
    plot_scatter(path, &points, classes, title).map_err(|e| Error::Training(format!("{}: {e}", path.display())))
}

/// Writes `pca-` and `tsne-{pretrained,random_init}.png` and, for convolutional stems,
/// `filters-{pretrained,random_init}.png` into `out`. `session.model` holds the checkpoint's
/// weights (see `transfer::open`); each picture gets a fresh copy of the architecture. A run
/// whose objective embeds images and captions in one space gets the joint pictures instead
/// ([`crate::visualize_joint`]).
pub fn run(session: &Session, limit: u64, out: &Path) -> Result<Vec<PathBuf>> {
    std::fs::create_dir_all(out).map_err(|e| Error::io(format!("creating {}", out.display()), e))?;
    if crate::visualize_joint::applies(session) {
        return crate::visualize_joint::run(session, limit, out);
    }
    if session.model.has_roles() {
        return Err(Error::Config(format!(
            "pt visualize draws a run with several architectures ({}) only when its objective embeds images and captions in one space (as clip does)",
            session.model.origin
        )));
    }
    let mut weights = session.model.parameters()?;
    weights.extend(session.model.buffers()?);
    let ctx = StepCtx { seed: session.plan.recipe.run.seed, device: session.ctx.device, ..Default::default() };
    let mut files = Vec::new();
    let classes: Vec<String> = if session.data.info.classes.is_empty() {
        vec!["all samples".into()]
    } else {
        session.data.info.classes.clone()
    };
    for (label, pretrained) in [("pretrained", true), ("random_init", false)] {
        let mut arch = session.new_model()?;
        if pretrained {
            let mut target = arch.parameters()?;
            target.extend(arch.buffers()?);
            load_named(&target, &weights, "visualize")?;
        }
        tracing::info!(target: "progress", "{label}: features of up to {limit} samples …");
        let (feats, labels) = features(&mut arch, &session.data, limit, &ctx)?;
        let xy = pca2(&feats)?;
        let path = out.join(format!("pca-{label}.png"));
        let title = format!("{}: PCA of features ({} samples), {label}", session.model.origin, labels.len());
        draw_map(&path, &xy, &labels, &classes, &title)?;
        files.push(path);
        if labels.len() >= TSNE_MIN_SAMPLES && xy.size()[1] == 2 {
            let path = out.join(format!("tsne-{label}.png"));
            let title = format!("{}: t-SNE of features ({} samples), {label}", session.model.origin, labels.len());
            tracing::info!(target: "progress", "{label}: t-SNE of {} points …", labels.len());
            draw_map(&path, &tsne2(&feats, &xy)?, &labels, &classes, &title)?;
            files.push(path);
        }
        // The first 4-D parameter in creation order is a convolutional stem's filters.
        if let Some((_, w)) = arch.parameters()?.into_iter().find(|(_, t)| t.dim() == 4) {
            let tiles = filter_tiles(&w)?;
            let path = out.join(format!("filters-{label}.png"));
            plot_image_grid(&path, &tiles, 8, 8).map_err(|e| Error::Training(format!("{}: {e}", path.display())))?;
            files.push(path);
        }
        if arch.info.optional_inputs.iter().any(|i| i == "output_attentions") {
            let path = out.join(format!("attention-{label}.png"));
            attention_map(&mut arch, session, &ctx, &path, label)?;
            files.push(path);
        }
    }
    Ok(files)
}

/// Sends the PNGs among `files` to the run's TensorBoard (IMAGES tab, `visualize/NAME`, at the
/// checkpoint's `step`) as a TensorBoard run of their own, `tb/visualize/` (TensorBoard follows
/// only the newest event file of a directory: one beside the training's would hide its curves
/// from a live TensorBoard), replacing what an earlier `pt visualize` put there; false when the
/// run has no TensorBoard directory.
pub fn to_tensorboard(run_dir: &Path, step: u64, files: &[PathBuf]) -> Result<bool> {
    let tb = run_dir.join(pt_report::TENSORBOARD_DIR);
    if !tb.is_dir() {
        return Ok(false);
    }
    let dir = tb.join("visualize");
    let _ = std::fs::remove_dir_all(&dir);
    let report = |e: pt_report::ReportError| Error::Training(format!("TensorBoard pictures: {e}"));
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0.0, |d| d.as_secs_f64());
    let mut events = pt_report::tensorboard::EventWriter::create(&dir, now).map_err(report)?;
    for png in files.iter().filter(|f| f.extension().is_some_and(|e| e == "png")) {
        let name = png.file_stem().map(|s| s.to_string_lossy().to_string()).unwrap_or_default();
        events.write_png(now, step, &format!("visualize/{name}"), png).map_err(report)?;
    }
    events.flush().map_err(report)?;
    Ok(true)
}

/// Tokens shown in an attention picture at most.
const ATTENTION_TOKENS: i64 = 24;

/// The last layer's attention (mean over heads) among the first tokens of the dataset's first
/// sample, as a heat map labelled with the run's tokenizer (`assets/tokenizer.json`) when it has one.
fn attention_map(arch: &mut Model, session: &Session, ctx: &StepCtx, path: &Path, label: &str) -> Result<()> {
    let _no_grad = tch::no_grad_guard();
    arch.set_train(false)?;
    let torch = |e: tch::TchError| Error::Training(format!("attention map: {}", pt_sdk::PtError::from(e).message));
    let mut batch = session.data.to_device(session.data.get_batch(&[0], ctx)?, ctx.device())?;
    batch.insert("output_attentions", Tensor::from(1i64));
    let out = arch.forward(&batch, ctx)?;
    let maps = out.require("attentions").map_err(Error::Plugin)?; // [layers, 1, heads, L, L]
    let ids = batch.require("input_ids").map_err(Error::Plugin)?.get(0); // [L]
    let real = match batch.get("attention_mask") {
        Some(m) => m.get(0).sum(Kind::Int64).int64_value(&[]),
        None => ids.size()[0],
    };
    let n = real.min(ATTENTION_TOKENS);
    let last = maps.size()[0] - 1;
    let map =
        maps.f_get(last).and_then(|m| m.f_get(0)).and_then(|m| m.f_mean_dim(0, false, Kind::Float)).map_err(torch)?; // [L, L]
    let map = map.f_narrow(0, 0, n).and_then(|m| m.f_narrow(1, 0, n)).map_err(torch)?.to_device(tch::Device::Cpu);
    let rows: Vec<Vec<u64>> = (0..n)
        .map(|r| Vec::<f32>::try_from(map.get(r)).map(|v| v.iter().map(|p| (p * 1000.0).round() as u64).collect()))
        .collect::<std::result::Result<_, _>>()
        .map_err(torch)?;
    let ids = Vec::<i64>::try_from(ids.narrow(0, 0, n).to_device(tch::Device::Cpu)).map_err(torch)?;
    let vocab = token_names(&session.run_dir().join("assets/tokenizer.json"));
    let names: Vec<String> = ids.iter().map(|id| vocab.get(id).cloned().unwrap_or_else(|| id.to_string())).collect();
    let title = format!("last layer's attention, mean over heads (x1000), {label}");
    // One scale (0 to probability 1) for the pretrained and random-init pictures.
    pt_report::plot_heatmap(path, &rows, &names, &title, ("attends to", "token"), Some(1000))
        .map_err(|e| Error::Training(format!("{}: {e}", path.display())))
}

/// id → token from a Hugging Face `tokenizer.json` (its `model.vocab`); empty when there is none.
pub(crate) fn token_names(path: &Path) -> std::collections::HashMap<i64, String> {
    let Ok(text) = std::fs::read_to_string(path) else {
        return Default::default();
    };
    let json: serde_json::Value = serde_json::from_str(&text).unwrap_or_default();
    json["model"]["vocab"]
        .as_object()
        .map(|v| v.iter().filter_map(|(tok, id)| Some((id.as_i64()?, tok.clone()))).collect())
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pca_finds_the_direction_of_largest_variance() {
        // Points spread along (1, 1, 0) with a little noise in the other directions.
        let t = Tensor::arange(50, (Kind::Float, tch::Device::Cpu)).unsqueeze(1);
        let x = Tensor::cat(&[&t, &t, &(t.sin() * 0.01)], 1);
        let xy = pca2(&x).unwrap();
        assert_eq!(xy.size(), [50, 2]);
        let spread0 = xy.select(1, 0).std(false).double_value(&[]);
        let spread1 = xy.select(1, 1).std(false).double_value(&[]);
        assert!(spread0 > 100.0 * spread1, "{spread0} {spread1}");
    }

    #[test]
    fn tsne_keeps_two_separated_clusters_apart() {
        // 30 points around each of two centres 10 apart in 16-D.
        let centres = Tensor::zeros([2, 16], (Kind::Float, tch::Device::Cpu));
        let _ = centres.get(1).fill_(10.0 / 4.0); // |c1 - c0| = 2.5 × √16 = 10
        let labels: Vec<i64> = (0..60).map(|i| i % 2).collect();
        let x = centres.index_select(0, &Tensor::from_slice(&labels))
            + Tensor::randn([60, 16], (Kind::Float, tch::Device::Cpu)) * 0.5;
        let xy = tsne2(&x, &pca2(&x).unwrap()).unwrap();
        assert_eq!(xy.size(), [60, 2]);
        // Every point is nearer its own cluster's centroid in the map.
        let mask = Tensor::from_slice(&labels).to_kind(Kind::Bool);
        let (c1, c0) = (
            xy.index_select(0, &mask.nonzero().squeeze_dim(1)).mean_dim(0, false, Kind::Float),
            xy.index_select(0, &mask.logical_not().nonzero().squeeze_dim(1)).mean_dim(0, false, Kind::Float),
        );
        let nearer_1 = (&xy - &c1)
            .square()
            .sum_dim_intlist(1, false, Kind::Float)
            .lt_tensor(&(&xy - &c0).square().sum_dim_intlist(1, false, Kind::Float));
        assert!(nearer_1.equal(&mask), "t-SNE mixed the clusters");
        assert!(tsne2(&x.narrow(0, 0, 5), &pca2(&x.narrow(0, 0, 5)).unwrap()).is_err(), "too few samples");
    }

    #[test]
    fn filters_become_one_tile_each_scaled_to_bytes() {
        let w = Tensor::randn([4, 3, 5, 5], (Kind::Float, tch::Device::Cpu));
        let tiles = filter_tiles(&w).unwrap();
        assert_eq!(tiles.len(), 4);
        assert_eq!((tiles[0].0, tiles[0].1, tiles[0].2.len()), (5, 5, 75));
        assert!(tiles[0].2.contains(&255) && tiles[0].2.contains(&0), "each filter spans the full range");
    }
}
