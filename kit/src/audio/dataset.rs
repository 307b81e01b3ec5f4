//! `audio`: speech/audio clips from a folder of WAV files or a fairseq-style `.tsv` manifest, for
//! wav2vec2-style pretraining and audio classification. Headers are read (and checked) when the
//! dataset opens; audio is decoded, resampled, cropped and normalised per batch.

use super::clip::{collate, crop_offset, cropped_len, normalize};
use super::manifest::{is_manifest, read_manifest, scan_wavs, ClipSource};
use super::wav::{decode_clip, read_header, Encoded, WavFacts};
use crate::shards::{index_samples, Shard};
use crate::{Component, CreateCtx, Dataset, DatasetInfo, FieldInfo, PtError, Result, StepCtx, Tensors};
use pt_sdk::PluginConfig;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use tch::Tensor;

/// Where class labels come from.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, Default)]
#[serde(rename_all = "lowercase")]
pub enum LabelSource {
    /// A manifest's third column when it has one; a folder is unlabelled.
    #[default]
    Auto,
    /// No labels, even if the manifest has a third column.
    #[serde(rename = "none")]
    Unlabelled,
    /// The name of the sub-folder of the root that holds the clip (`root/<class>/.../clip.wav`).
    Folder,
}

#[derive(Serialize, Deserialize, Clone, Debug, PluginConfig)]
#[serde(default, deny_unknown_fields)]
pub struct AudioConfig {
    /// a folder (searched recursively for .wav/.flac/.ogg/.opus/.mp3 files, sorted by path), or a manifest:
    /// .tsv (fairseq: first line the root directory, relative to the manifest's folder or absolute, then
    /// path<TAB>num_samples[<TAB>label]) or .jsonl (one object per line: audio_filepath or path, optional
    /// num_samples and label; files relative to the manifest's folder)
    pub path: String,
    /// instead of path: WebDataset-style tar shards (key.flac|wav|ogg|opus|mp3, and key.cls for a label) —
    /// directories of .tar files, patterns or files
    pub shards: Vec<String>,
    /// the rate clips are served at (Hz); clips at other rates are resampled, multichannel clips averaged to mono
    #[config(default = 16_000)]
    pub sample_rate: u32,
    /// shortest clip accepted, in samples at sample_rate (400 = 25 ms at 16 kHz, wav2vec2's receptive field)
    #[config(default = 400)]
    pub min_samples: u64,
    /// longer clips are cropped to this length: at a random offset in training, from the start in evaluation
    /// (0: no limit)
    #[config(default = 15.0)]
    pub max_seconds: f64,
    /// scale each clip to zero mean and unit variance (as Wav2Vec2FeatureExtractor's do_normalize)
    #[config(default = true)]
    pub normalize: bool,
    /// auto (a manifest's third column, if any), none, or folder (the root's sub-folder holding the clip)
    #[config(default = LabelSource::Auto)]
    pub labels: LabelSource,
    /// keep the first N clips, in path / manifest order (0: all)
    pub max_samples: u64,
    /// skip (and count) unreadable or unsupported files, bad manifest lines and too-short clips instead of failing
    pub skip_bad: bool,
}

/// One usable clip.
struct Clip {
    /// The file, or `shard.tar/member` for a shard's member.
    path: PathBuf,
    member: Option<(u32, crate::shards::TarMember)>,
    facts: WavFacts,
    /// Samples at the dataset's rate, before cropping.
    len: u64,
    label: Option<String>,
}

pub struct AudioFiles {
    clips: Vec<Clip>,
    shards: Vec<Shard>,
    /// Per clip: index into `classes`.
    labels: Option<Vec<i64>>,
    classes: Vec<String>,
    sample_rate: u32,
    /// Crop length in samples (0: no limit).
    max_len: u64,
    normalize: bool,
    notes: serde_json::Map<String, serde_json::Value>,
}

/// Why a candidate clip was rejected: the short reason (for the skip summary) and the message.
struct Rejection {
    reason: &'static str,
    message: String,
}

/// Names a candidate in messages: `train.tsv: line 7: ` for manifests, nothing for folders
/// (their messages start with the file's path).
fn where_listed(manifest: Option<&Path>, line: Option<usize>) -> String {
    match (manifest, line) {
        (Some(m), Some(l)) => format!("{}: line {l}: ", m.display()),
        _ => String::new(),
    }
}

/// ` (skipped: 2 shorter than min_samples, 1 bad manifest line)`, or nothing.
fn skip_summary(skipped: &BTreeMap<&'static str, u64>) -> String {
    if skipped.is_empty() {
        return String::new();
    }
    let parts: Vec<String> = skipped.iter().map(|(reason, n)| format!("{n} {reason}")).collect();
    format!(" (skipped: {})", parts.join(", "))
}

/// The `root/<class>/...` folder name of `path`, for `labels = "folder"`.
fn class_folder(root: &Path, path: &Path) -> std::result::Result<String, String> {
    let relative =
        path.strip_prefix(root).map_err(|_| format!("{} is not under {}", path.display(), root.display()))?;
    let mut components = relative.components();
    match (components.next(), components.next()) {
        (Some(class), Some(_)) => Ok(class.as_os_str().to_string_lossy().into_owned()),
        _ => Err(format!(
            "{} is not inside a class sub-folder of {} (labels = \"folder\" expects root/<class>/.../clip.wav)",
            path.display(),
            root.display()
        )),
    }
}

/// The audio files a shard sample holds (the first of these extensions it has).
const AUDIO_MEMBERS: [&str; 5] = ["flac", "wav", "ogg", "opus", "mp3"];

/// The clips of `shards` as candidates (labels from `.cls`; a sample without audio as the
/// message naming it), and the shards held open.
type ShardCandidates = (Vec<std::result::Result<ClipSource, String>>, Vec<Shard>);

fn shard_candidates(shards: &[PathBuf]) -> Result<ShardCandidates> {
    let open = shards.iter().map(|p| Shard::open(p)).collect::<Result<Vec<_>>>()?;
    let mut candidates = Vec::new();
    for sample in index_samples(shards)? {
        let shard = &open[sample.shard as usize];
        let Some(audio) = sample.field(&AUDIO_MEMBERS) else {
            candidates.push(Err(format!(
                "{}: sample {} has no .flac/.wav/.ogg/.opus/.mp3 member (it has: {}); set skip_bad = true to skip such samples",
                shard.path.display(),
                sample.key,
                sample.fields.iter().map(|(e, _)| format!(".{e}")).collect::<Vec<_>>().join(", ")
            )));
            continue;
        };
        let label = match sample.field(&["cls"]) {
            Some(cls) => Some(String::from_utf8_lossy(&shard.read(cls)?).trim().to_string()),
            None => None,
        };
        candidates.push(Ok(ClipSource {
            path: shard.path.join(&audio.name),
            line: None,
            declared_frames: None,
            label,
            member: Some((sample.shard, audio.clone())),
        }));
    }
    Ok((candidates, open))
}

/// Class names in label order: numerically when every name is a whole number (shards' `.cls`),
/// else alphabetically.
fn sort_classes(classes: &mut Vec<String>) {
    if classes.iter().all(|c| c.parse::<i64>().is_ok()) {
        classes.sort_by_key(|c| c.parse::<i64>().unwrap_or(0));
    } else {
        classes.sort();
    }
    classes.dedup();
}

/// The bytes of a clip that lives in a shard (`None`: a file, read by its path).
fn member_bytes(shards: &[Shard], member: &Option<(u32, crate::shards::TarMember)>) -> Result<Option<Vec<u8>>> {
    member.as_ref().map(|(s, m)| shards[*s as usize].read(m)).transpose()
}

/// The clip at `path`: the shard member's `bytes` when there are some, else the file.
fn encoded<'a>(path: &'a Path, bytes: &'a Option<Vec<u8>>) -> Encoded<'a> {
    match bytes {
        Some(data) => Encoded::Bytes { name: path, data },
        None => Encoded::File(path),
    }
}

/// Candidates' headers, read in parallel a chunk at a time as the (sequential, order-keeping)
/// pass over the candidates reaches them: opening a large corpus reads its headers on every
/// core, and `max_samples` still reads little more than it keeps.
#[derive(Default)]
struct HeaderChunks {
    start: usize,
    read: Vec<Option<Result<WavFacts>>>,
}

/// Headers read in parallel at most this many at a time.
const HEADER_CHUNK: u64 = 256;

impl HeaderChunks {
    fn take(&mut self, i: usize, candidates: &[ClipSource], shards: &[Shard], wanted: u64) -> Result<WavFacts> {
        use rayon::prelude::*;
        if i < self.start || i >= self.start + self.read.len() {
            let end = (i as u64 + wanted.clamp(16, HEADER_CHUNK)).min(candidates.len() as u64) as usize;
            self.start = i;
            self.read = candidates[i..end]
                .par_iter()
                .map(|c| Some(member_bytes(shards, &c.member).and_then(|b| read_header(encoded(&c.path, &b)))))
                .collect();
        }
        self.read[i - self.start].take().unwrap_or_else(|| Err(PtError::data("header read twice")))
    }
}

impl AudioFiles {
    pub fn open(cfg: &AudioConfig) -> Result<Self> {
        match (cfg.path.is_empty(), cfg.shards.is_empty()) {
            (true, true) => {
                return Err(PtError::config(
                    "audio: set path to a folder of audio files or a .tsv/.jsonl manifest, or shards",
                ))
            }
            (false, false) => return Err(PtError::config("audio: set path or shards, not both")),
            _ => {}
        }
        if cfg.sample_rate == 0 {
            return Err(PtError::config("audio: sample_rate must be positive"));
        }
        if !cfg.max_seconds.is_finite() || cfg.max_seconds < 0.0 {
            return Err(PtError::config(format!(
                "audio: max_seconds must be ≥ 0 (0: no limit), got {}",
                cfg.max_seconds
            )));
        }
        let max_len = (cfg.max_seconds * cfg.sample_rate as f64).round() as u64;
        if cfg.max_seconds > 0.0 && max_len < cfg.min_samples.max(1) {
            return Err(PtError::config(format!(
                "audio: max_seconds = {} is {max_len} samples at {} Hz, below min_samples = {}",
                cfg.max_seconds, cfg.sample_rate, cfg.min_samples
            )));
        }
        let source = Path::new(&cfg.path);
        let shown = if cfg.path.is_empty() { format!("shards {}", cfg.shards.join(", ")) } else { cfg.path.clone() };
        let mut skipped: BTreeMap<&'static str, u64> = BTreeMap::new();
        let mut reject = |r: Rejection| -> Result<()> {
            if !cfg.skip_bad {
                return Err(PtError::data(r.message));
            }
            let count = skipped.entry(r.reason).or_default();
            *count += 1;
            if *count <= 5 {
                tracing::warn!(reason = r.reason, "skipping: {}", r.message);
            }
            Ok(())
        };

        // Candidates in order, with the root their class folders are under.
        let mut shards = Vec::new();
        let (candidates, root, manifest) = if !cfg.shards.is_empty() {
            if cfg.labels == LabelSource::Folder {
                return Err(PtError::config(
                    "audio: labels = \"folder\" reads class folders; shards carry labels in .cls",
                ));
            }
            let paths: Vec<PathBuf> = cfg.shards.iter().map(PathBuf::from).collect();
            let (listed, open) = shard_candidates(&crate::files::expand_sources(&paths, &["tar"], "audio: shards")?)?;
            shards = open;
            let mut candidates = Vec::new();
            for candidate in listed {
                match candidate {
                    Ok(c) => candidates.push(c),
                    Err(message) => reject(Rejection { reason: "shard sample without audio", message })?,
                }
            }
            (candidates, PathBuf::new(), None)
        } else if is_manifest(source) {
            let manifest = read_manifest(source)?;
            let mut candidates = Vec::new();
            for line in manifest.lines {
                match line {
                    Ok(clip) => candidates.push(clip),
                    Err(bad) => reject(Rejection {
                        reason: "bad manifest line",
                        message: format!(
                            "{}: line {}: {}; fix the line or set skip_bad = true to skip bad lines",
                            source.display(),
                            bad.line,
                            bad.why
                        ),
                    })?,
                }
            }
            (candidates, manifest.root, Some(source))
        } else {
            let files = scan_wavs(source)?;
            let candidates = files
                .into_iter()
                .map(|path| ClipSource { path, line: None, declared_frames: None, label: None, member: None })
                .collect();
            (candidates, source.to_path_buf(), None)
        };
        if candidates.is_empty() {
            return Err(PtError::data(match manifest {
                Some(m) => format!("{}: the manifest lists no usable clips{}", m.display(), skip_summary(&skipped)),
                None => format!("{shown}: no .wav/.flac/.ogg/.opus/.mp3 audio found (searched recursively)"),
            }));
        }
        // With labels = auto, the first listed clip decides whether the manifest is labelled.
        let first_labelled = candidates.first().map(|c| (c.line, c.label.is_some()));

        let mut clips = Vec::new();
        let mut headers = HeaderChunks::default();
        for (i, candidate) in candidates.iter().enumerate() {
            if cfg.max_samples > 0 && clips.len() as u64 >= cfg.max_samples {
                break;
            }
            let still_wanted = if cfg.max_samples > 0 { cfg.max_samples - clips.len() as u64 } else { u64::MAX };
            let at = where_listed(manifest, candidate.line);
            let label = match cfg.labels {
                LabelSource::Unlabelled => None,
                LabelSource::Folder => match class_folder(&root, &candidate.path) {
                    Ok(class) => Some(class),
                    Err(why) => {
                        reject(Rejection {
                            reason: "not in a class folder",
                            message: format!("{at}{why}; move it or set skip_bad = true to skip such clips"),
                        })?;
                        continue;
                    }
                },
                LabelSource::Auto => {
                    if let Some((first_line, labelled)) = first_labelled {
                        if candidate.label.is_some() != labelled {
                            let (this, first) = if labelled { ("no", "one") } else { ("a", "none") };
                            reject(Rejection {
                                reason: "label column missing or unexpected",
                                message: format!(
                                    "{at}has {this} label column but line {} has {first}; every line needs the same \
                                     columns (or set labels = \"none\" to ignore labels, or skip_bad = true)",
                                    first_line.unwrap_or(0)
                                ),
                            })?;
                            continue;
                        }
                    }
                    candidate.label.clone()
                }
            };
            let facts = match headers.take(i, &candidates, &shards, still_wanted) {
                Ok(facts) => facts,
                Err(e) => {
                    reject(Rejection {
                        reason: "unreadable or unsupported audio",
                        message: format!("{at}{}; fix or remove it, or set skip_bad = true", e.message),
                    })?;
                    continue;
                }
            };
            if let Some(declared) = candidate.declared_frames {
                if declared != facts.frames {
                    reject(Rejection {
                        reason: "num_samples does not match the file",
                        message: format!(
                            "{at}num_samples is {declared} but {} has {} frames at {} Hz; regenerate the manifest or \
                             set skip_bad = true",
                            candidate.path.display(),
                            facts.frames,
                            facts.sample_rate
                        ),
                    })?;
                    continue;
                }
            }
            let len = facts.len_at(cfg.sample_rate);
            if len < cfg.min_samples {
                reject(Rejection {
                    reason: "shorter than min_samples",
                    message: format!(
                        "{at}{}: {len} samples at {} Hz ({:.3} s) is shorter than min_samples = {}; remove it, lower \
                         min_samples, or set skip_bad = true to skip such clips",
                        candidate.path.display(),
                        cfg.sample_rate,
                        len as f64 / cfg.sample_rate as f64,
                        cfg.min_samples
                    ),
                })?;
                continue;
            }
            clips.push(Clip { path: candidate.path.clone(), member: candidate.member.clone(), facts, len, label });
        }
        if clips.is_empty() {
            return Err(PtError::data(format!("{shown}: no usable clips{}", skip_summary(&skipped))));
        }

        let mut classes: Vec<String> = clips.iter().filter_map(|c| c.label.clone()).collect();
        sort_classes(&mut classes);
        let index: std::collections::HashMap<&str, i64> =
            classes.iter().enumerate().map(|(i, c)| (c.as_str(), i as i64)).collect();
        let labels = if classes.is_empty() {
            None
        } else {
            // Every kept clip has a label here: auto mode rejects mixed manifests, folder mode
            // labels all clips.
            Some(
                clips
                    .iter()
                    .map(|c| c.label.as_ref().and_then(|l| index.get(l.as_str()).copied()).unwrap_or(-1))
                    .collect(),
            )
        };

        let mut notes = serde_json::Map::new();
        let rate = cfg.sample_rate;
        let total: u64 = clips.iter().map(|c| c.len).sum();
        notes.insert(
            "source".into(),
            if shards.is_empty() { cfg.path.clone().into() } else { cfg.shards.clone().into() },
        );
        if !shards.is_empty() {
            notes.insert("shards".into(), shards.len().into());
        }
        if manifest.is_some() {
            notes.insert("manifest_root".into(), root.display().to_string().into());
        }
        notes.insert("sample_rate".into(), rate.into());
        notes.insert("total_seconds".into(), ((total as f64 / rate as f64 * 100.0).round() / 100.0).into());
        notes.insert("resampled".into(), clips.iter().filter(|c| c.facts.sample_rate != rate).count().into());
        notes.insert("downmixed".into(), clips.iter().filter(|c| c.facts.channels > 1).count().into());
        notes.insert("max_seconds".into(), cfg.max_seconds.into());
        notes.insert("cropped".into(), clips.iter().filter(|c| max_len > 0 && c.len > max_len).count().into());
        notes.insert("min_samples".into(), cfg.min_samples.into());
        notes.insert("normalize".into(), cfg.normalize.into());
        let skipped_total: u64 = skipped.values().sum();
        notes.insert("skipped".into(), skipped_total.into());
        if skipped_total > 0 {
            tracing::warn!(skipped = skipped_total, source = %shown, "skipped bad audio clips: {skipped:?}");
            notes.insert("skipped_reasons".into(), serde_json::json!(skipped));
        }
        Ok(AudioFiles { clips, shards, labels, classes, sample_rate: rate, max_len, normalize: cfg.normalize, notes })
    }

    pub fn len(&self) -> usize {
        self.clips.len()
    }

    pub fn is_empty(&self) -> bool {
        self.clips.is_empty()
    }

    /// The file behind sample `index`.
    pub fn path(&self, index: usize) -> Option<&Path> {
        self.clips.get(index).map(|c| c.path.as_path())
    }

    /// Sample `index` as served in a batch: decoded, resampled, mono, cropped (per `ctx`), and
    /// normalised if configured — without padding.
    pub fn clip(&self, index: u64, ctx: &crate::StepCtx) -> Result<Vec<f32>> {
        let Some(clip) = self.clips.get(index as usize) else {
            return Err(PtError::data(format!(
                "audio: sample index {index} is out of range (dataset has {})",
                self.clips.len()
            )));
        };
        let bytes = member_bytes(&self.shards, &clip.member)?;
        let (mut samples, facts) = decode_clip(encoded(&clip.path, &bytes), self.sample_rate)?;
        if samples.len() as u64 != clip.len || facts != clip.facts {
            return Err(PtError::data(format!(
                "{}: the file changed since the dataset was opened ({} → {}, {} → {} samples)",
                clip.path.display(),
                clip.facts.encoding(),
                facts.encoding(),
                clip.len,
                samples.len()
            )));
        }
        let offset = crop_offset(clip.len, self.max_len, ctx.train, ctx.seed, ctx.epoch, index) as usize;
        let keep = cropped_len(clip.len, self.max_len) as usize;
        if offset > 0 || keep < samples.len() {
            samples.drain(..offset);
            samples.truncate(keep);
        }
        if self.normalize {
            normalize(&mut samples);
        }
        Ok(samples)
    }
}

impl Component for AudioFiles {
    const NAME: &'static str = "audio";
    const ABOUT: &'static str =
        "audio clips (WAV, FLAC, Ogg Vorbis, Opus, MP3) from a folder, a .tsv/.jsonl manifest or tar shards, mono at a fixed rate";
    const PROVIDES: &'static [&'static str] = &["sample_rate"];
    type Config = AudioConfig;
    fn new(mut cfg: AudioConfig, ctx: &CreateCtx) -> Result<Self> {
        cfg.path = ctx.expand(&cfg.path);
        cfg.shards = cfg.shards.iter().map(|s| ctx.expand(s)).collect();
        Self::open(&cfg)
    }
}

impl Dataset for AudioFiles {
    fn info(&self) -> DatasetInfo {
        let mut fields = vec![
            FieldInfo::new(
                "input_values",
                "float32",
                &[-1],
                "mono waveform at notes.sample_rate, cropped to max_seconds, normalised if configured, zero-padded \
                 on the right to the batch's longest clip",
            ),
            FieldInfo::new("attention_mask", "int64", &[-1], "1 for real samples, 0 for padding"),
        ];
        let mut class_counts = Vec::new();
        if let Some(labels) = &self.labels {
            fields.push(FieldInfo::new("label", "int64", &[], "class index (into classes)"));
            class_counts = vec![0u64; self.classes.len()];
            for &l in labels {
                class_counts[l as usize] += 1;
            }
        }
        DatasetInfo {
            num_samples: self.clips.len() as u64,
            fields,
            classes: self.classes.clone(),
            class_counts,
            notes: self.notes.clone(),
            lengths: self.clips.iter().map(|c| cropped_len(c.len, self.max_len)).collect(),
            ..Default::default()
        }
    }

    fn get_batch(&self, indices: &[u64], ctx: &StepCtx) -> Result<Tensors> {
        let clips = indices.iter().map(|&i| self.clip(i, ctx)).collect::<Result<Vec<_>>>()?;
        let (values, mask, longest) = collate(&clips);
        let shape = [clips.len() as i64, longest as i64];
        let mut batch = Tensors::new()
            .with("input_values", Tensor::f_from_slice(&values)?.f_view(shape)?)
            .with("attention_mask", Tensor::f_from_slice(&mask)?.f_view(shape)?);
        if let Some(labels) = &self.labels {
            let picked: Vec<i64> = indices.iter().map(|&i| labels[i as usize]).collect();
            batch.insert("label", Tensor::f_from_slice(&picked)?);
        }
        Ok(batch)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Config;

    #[test]
    fn class_folder_is_the_first_sub_folder() {
        let root = Path::new("/data/digits");
        assert_eq!(class_folder(root, Path::new("/data/digits/seven/a.wav")).unwrap(), "seven");
        assert_eq!(class_folder(root, Path::new("/data/digits/seven/spk1/a.wav")).unwrap(), "seven");
        assert!(class_folder(root, Path::new("/data/digits/a.wav")).unwrap_err().contains("class sub-folder"));
        assert!(class_folder(root, Path::new("/elsewhere/x/a.wav")).unwrap_err().contains("not under"));
    }

    #[test]
    fn labels_setting_parses_and_rejects_unknown_values() {
        let cfg = AudioConfig::from_json(r#"{"path": "x", "labels": "none"}"#).unwrap();
        assert_eq!(cfg.labels, LabelSource::Unlabelled);
        assert_eq!(AudioConfig::from_json(r#"{"labels": "folder"}"#).unwrap().labels, LabelSource::Folder);
        let err = AudioConfig::from_json(r#"{"labels": "dirs"}"#).unwrap_err();
        assert!(err.message.contains("auto"), "{}", err.message);
        let defaults = serde_json::to_value(AudioConfig::default()).unwrap();
        assert_eq!(defaults["labels"], "auto");
    }
}
