//! Captions as token ids: the run's one tokenizer (configured, the run's, or trained on the
//! captions), encoding with [CLS] … [SEP] cut to a length, and padding a batch.

use super::sources::Pair;
use super::ImageTextConfig;
use crate::text::{self, Tokenizer};
use crate::{CreateCtx, PtError, Result};
use std::path::{Path, PathBuf};
use tch::Tensor;

/// The configured tokenizer, else the run's, else one trained on these captions (saved as the
/// run's, or in the data cache outside a run). A configured one becomes the run's too, so the
/// evaluation splits, exports and pictures tokenize as training did.
pub(super) fn tokenizer_for(
    cfg: &ImageTextConfig,
    ctx: &CreateCtx,
    data_dir: &Path,
    source: &Path,
    pairs: &[Pair],
) -> Result<(Tokenizer, PathBuf)> {
    let run_tok = (!ctx.run_dir.is_empty()).then(|| PathBuf::from(&ctx.run_dir).join("assets/tokenizer.json"));
    let path = match (&cfg.tokenizer, &run_tok) {
        (Some(t), _) => PathBuf::from(pt_sdk::expand_setting(t, &data_dir.display().to_string(), &ctx.run_dir)),
        (None, Some(r)) => r.clone(),
        (None, None) => {
            data_dir.join("cache").join(format!("caption-tokenizer-{}-{}.json", cfg.vocab_size, fingerprint(source)))
        }
    };
    if !path.exists() && cfg.tokenizer.is_none() {
        let staging = std::env::temp_dir().join(format!("pt-captions-{}", std::process::id()));
        std::fs::create_dir_all(&staging).map_err(|e| PtError::io(&staging, e))?;
        let corpus = staging.join("captions.txt");
        let all: Vec<&str> = pairs.iter().flat_map(|l| l.captions.iter().map(String::as_str)).collect();
        std::fs::write(&corpus, all.join("\n")).map_err(|e| PtError::io(&corpus, e))?;
        tracing::info!(path = %path.display(), vocab_size = cfg.vocab_size, "training a WordPiece tokenizer on the captions");
        let trained = text::train_wordpiece(&[corpus], cfg.vocab_size as usize, 1, true, &path);
        let _ = std::fs::remove_dir_all(&staging);
        trained?;
    }
    let tok = load_plain(&path)?;
    if let (Some(_), Some(dest)) = (&cfg.tokenizer, &run_tok) {
        adopt(&path, dest)?;
    }
    Ok((tok, path))
}

/// `path`'s tokenizer without the padding or truncation a tokenizer.json may carry: pt pads and
/// cuts captions itself (keeping [SEP] last).
pub fn load_plain(path: &Path) -> Result<Tokenizer> {
    let mut tok = text::load_tokenizer(path)?;
    tok.with_padding(None);
    tok.with_truncation(None).map_err(|e| PtError::data(format!("{}: {e}", path.display())))?;
    Ok(tok)
}

/// Copies the configured tokenizer to the run's `assets/tokenizer.json`; a different one already
/// there is an error (a run has one tokenizer).
fn adopt(path: &Path, dest: &Path) -> Result<()> {
    let bytes = std::fs::read(path).map_err(|e| PtError::io(path, e))?;
    match std::fs::read(dest) {
        Ok(existing) if existing == bytes => Ok(()),
        Ok(_) => Err(PtError::config(format!(
            "{} holds another tokenizer than {}: a run keeps one tokenizer (set every split's `tokenizer` to the same file, or start a new run directory)",
            dest.display(),
            path.display()
        ))),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            std::fs::create_dir_all(dest.parent().unwrap_or(Path::new("."))).map_err(|e| PtError::io(dest, e))?;
            text::write_atomically(dest, &bytes)
        }
        Err(e) => Err(PtError::io(dest, e)),
    }
}

/// A short hash of the pairs file's path, size and modification time (names the tokenizer
/// trained on it outside a run).
fn fingerprint(path: &Path) -> String {
    use std::hash::{Hash, Hasher};
    let mut h = std::collections::hash_map::DefaultHasher::new();
    path.hash(&mut h);
    if let Ok(m) = std::fs::metadata(path) {
        m.len().hash(&mut h);
        m.modified().ok().hash(&mut h);
    }
    format!("{:016x}", h.finish())
}

/// Every caption as [CLS] … [SEP] ids, cut to `max_len` (keeping [SEP] last).
pub(super) fn encode_captions(
    tok: &Tokenizer,
    pairs: &[Pair],
    max_len: i64,
    path: &Path,
) -> Result<Vec<Vec<Vec<i64>>>> {
    let flat: Vec<&str> = pairs.iter().flat_map(|l| l.captions.iter().map(String::as_str)).collect();
    let encoded = encode(tok, flat, max_len as usize).map_err(|e| e.context(path.display()))?;
    let mut ids = encoded.into_iter();
    Ok(pairs.iter().map(|l| (0..l.captions.len()).filter_map(|_| ids.next()).collect()).collect())
}

/// `texts` as [CLS] … [SEP] ids, each cut to `max_len` tokens keeping [SEP] last.
pub fn encode(tok: &Tokenizer, texts: Vec<&str>, max_len: usize) -> Result<Vec<Vec<i64>>> {
    let encoded = tok.encode_batch_fast(texts, true).map_err(|e| PtError::data(format!("tokenizing captions: {e}")))?;
    Ok(encoded
        .into_iter()
        .map(|e| {
            let mut v: Vec<i64> = e.get_ids().iter().map(|&i| i as i64).collect();
            if v.len() > max_len {
                let last = *v.last().unwrap_or(&0);
                v.truncate(max_len - 1);
                v.push(last);
            }
            v
        })
        .collect())
}

/// Rows of ids padded to the longest with `pad`: `input_ids` and `attention_mask`, [rows, L].
pub fn padded(rows: &[&[i64]], pad: i64) -> Result<(Tensor, Tensor)> {
    let width = rows.iter().map(|r| r.len()).max().unwrap_or(1);
    let mut ids = vec![pad; rows.len() * width];
    let mut mask = vec![0i64; rows.len() * width];
    for (r, v) in rows.iter().enumerate() {
        ids[r * width..r * width + v.len()].copy_from_slice(v);
        mask[r * width..r * width + v.len()].fill(1);
    }
    let shape = [rows.len() as i64, width as i64];
    Ok((Tensor::f_from_slice(&ids)?.f_view(shape)?, Tensor::f_from_slice(&mask)?.f_view(shape)?))
}
