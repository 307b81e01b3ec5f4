//! `pt visualize` for runs whose objective embeds images and captions in one space (CLIP): the
//! first samples' image and caption embeddings in one PCA and t-SNE map, and the cosine
//! similarities of a batch's images with its captions; for the checkpoint and at random
//! initialisation.

use crate::components::{LentModel, ObjectiveHandle};
use crate::train::weights::load_named;
use crate::train::Session;
use crate::visualize::{draw_map, pca2, token_names, tsne2, TSNE_MIN_SAMPLES};
use crate::{Error, Result};
use pt_sdk::{StepCtx, Tensors};
use std::path::{Path, PathBuf};
use tch::{Kind, Tensor};

const IMAGE: &str = "image/embedding";
const TEXT: &str = "text/embedding";
/// Pairs in the similarity picture.
const MATRIX_PAIRS: i64 = 16;

/// Whether `session`'s objectives give image and caption embeddings.
pub fn applies(session: &Session) -> bool {
    session.heads().iter().any(|h| h.info.embeds.iter().any(|e| e == IMAGE) && h.info.embeds.iter().any(|e| e == TEXT))
}

/// Writes `joint-pca-`, `joint-tsne-` and `similarity-{pretrained,random_init}.png` into `out`.
pub fn run(session: &Session, limit: u64, out: &Path) -> Result<Vec<PathBuf>> {
    let mut weights = session.model.parameters()?;
    weights.extend(session.model.buffers()?);
    let ctx = StepCtx { seed: session.plan.recipe.run.seed, device: session.ctx.device, ..Default::default() };
    let mut files = Vec::new();
    for (label, pretrained) in [("pretrained", true), ("random_init", false)] {
        let mut model = session.new_model()?;
        let fresh = if pretrained { Vec::new() } else { session.fresh_heads(session.ctx.seed)? };
        let heads: Vec<&ObjectiveHandle> = if pretrained { session.heads() } else { fresh.iter().collect() };
        if pretrained {
            let mut target = model.parameters()?;
            target.extend(model.buffers()?);
            load_named(&target, &weights, "visualize")?;
        }
        model.set_train(false)?;
        let prepare = heads[0];
        let lent = LentModel::new(&mut model, heads.clone());
        let (images, texts) = embed(session, &lent, prepare, limit, &ctx)?;
        let n = images.size()[0] as usize;
        let both = Tensor::f_cat(&[&images, &texts], 0).map_err(torch)?; // [2N, D]
        let kinds: Vec<usize> = (0..2 * n).map(|i| i / n).collect();
        let classes = ["images".to_string(), "captions".to_string()];
        let xy = pca2(&both)?;
        let path = out.join(format!("joint-pca-{label}.png"));
        draw_map(&path, &xy, &kinds, &classes, &format!("PCA of {n} images and their captions, {label}"))?;
        files.push(path);
        if 2 * n >= TSNE_MIN_SAMPLES {
            let path = out.join(format!("joint-tsne-{label}.png"));
            let title = format!("t-SNE of {n} images and their captions, {label}");
            draw_map(&path, &tsne2(&both, &xy)?, &kinds, &classes, &title)?;
            files.push(path);
        }
        let path = out.join(format!("similarity-{label}.png"));
        similarity(session, &images, &texts, &ctx, &path, label)?;
        files.push(path);
    }
    Ok(files)
}

fn torch(e: tch::TchError) -> Error {
    Error::Training(format!("joint embedding: {}", pt_sdk::PtError::from(e).message))
}

/// Image and caption embeddings [N, D] of the dataset's first `limit` samples (evaluation:
/// each image's first caption).
fn embed(
    session: &Session,
    model: &LentModel<'_>,
    prepare: &ObjectiveHandle,
    limit: u64,
    ctx: &StepCtx,
) -> Result<(Tensor, Tensor)> {
    let _no_grad = tch::no_grad_guard();
    let data = &session.data;
    let n = data.info.num_samples.min(limit);
    let (mut images, mut texts) = (Vec::new(), Vec::new());
    for start in (0..n).step_by(256) {
        let idx: Vec<u64> = (start..(start + 256).min(n)).collect();
        let mut batch = data.to_device(data.get_batch(&idx, ctx)?, ctx.device())?;
        let index: Vec<i64> = idx.iter().map(|&i| i as i64).collect();
        batch.insert(crate::components::SAMPLE_INDEX, Tensor::from_slice(&index)); // on the host, as in training
        let out: Tensors = model.forward(&prepare.prepare(batch, ctx)?, ctx)?;
        images.push(out.require(IMAGE).map_err(Error::Plugin)?.to_kind(Kind::Float).to_device(tch::Device::Cpu));
        texts.push(out.require(TEXT).map_err(Error::Plugin)?.to_kind(Kind::Float).to_device(tch::Device::Cpu));
    }
    Ok((Tensor::f_cat(&images, 0).map_err(torch)?, Tensor::f_cat(&texts, 0).map_err(torch)?))
}

/// The image × caption cosine similarities of pairs spread over the embedded ones, as a heat
/// map (rows: images; columns: their captions, by their words), on one fixed scale:
/// -1 → 0, 1 → 1000.
fn similarity(
    session: &Session,
    images: &Tensor,
    texts: &Tensor,
    ctx: &StepCtx,
    path: &Path,
    label: &str,
) -> Result<()> {
    let n = images.size()[0];
    let k = MATRIX_PAIRS.min(n);
    let picked: Vec<i64> = (0..k).map(|j| j * n / k).collect();
    let at = Tensor::from_slice(&picked);
    let sim = images.index_select(0, &at).matmul(&texts.index_select(0, &at).transpose(0, 1)); // [k, k]
    let indices: Vec<u64> = picked.iter().map(|&i| i as u64).collect();
    let batch = session.data.get_batch(&indices, ctx)?;
    let rows: Vec<Vec<u64>> = (0..k)
        .map(|r| {
            Vec::<f32>::try_from(sim.get(r)).map(|v| v.iter().map(|s| ((s + 1.0) * 500.0).round() as u64).collect())
        })
        .collect::<std::result::Result<_, _>>()
        .map_err(torch)?;
    let vocab = token_names(&session.run_dir().join("assets/tokenizer.json"));
    let names: Vec<String> = (0..k)
        .map(|r| batch.get("input_ids").and_then(|ids| caption_words(ids, r, &vocab)))
        .map(|w| w.unwrap_or_default())
        .collect();
    let title = format!("image-caption cosine similarity, (s + 1) x 500, {label}");
    // One scale (cosine -1 to 1) for the pretrained and random-init pictures.
    pt_report::plot_heatmap(path, &rows, &names, &title, ("caption", "image"), Some(1000))
        .map_err(|e| Error::Training(format!("{}: {e}", path.display())))
}

/// Row `r`'s caption as words (WordPiece `##` pieces joined, special tokens dropped).
fn caption_words(ids: &Tensor, r: i64, vocab: &std::collections::HashMap<i64, String>) -> Option<String> {
    if vocab.is_empty() || ids.dim() != 2 || r >= ids.size()[0] {
        return None;
    }
    let row = Vec::<i64>::try_from(ids.get(r).to_device(tch::Device::Cpu)).ok()?;
    let mut text = String::new();
    for tok in row.iter().filter_map(|id| vocab.get(id)).filter(|t| !t.starts_with('[')) {
        match tok.strip_prefix("##") {
            Some(rest) => text.push_str(rest),
            None if text.is_empty() => text.push_str(tok),
            None => {
                text.push(' ');
                text.push_str(tok);
            }
        }
    }
    Some(text)
}
