//! `jsonl`: one JSON object per line with a text field and, for labelled data, a label field
//! (downstream classification: probes and fine-tuning read `features` and `label`).

use crate::cache::{cache_key, file_fingerprints};
use crate::collate::{collate, single_sequence, text_fields};
use crate::corpus::{tokenize_files, LineRef, PassStats};
use crate::paths;
use crate::records::{Record, RecordIndex, NO_LABEL};
use crate::text_tokenizer::TextTokenizer;
use pt_sdk::prelude::*;
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};
use std::collections::HashMap;
use std::path::PathBuf;

#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, PluginConfig)]
#[serde(default, deny_unknown_fields)]
pub struct JsonlConfig {
    /// JSON-lines files; `{data}/...` is under the data directory, `~` is home
    pub files: Vec<String>,
    /// the field holding the text
    #[config(default = "text")]
    pub text_field: String,
    /// the field holding the class (string or integer); null, or absent from every line: unlabelled
    #[config(default = Some("label".into()))]
    pub label_field: Option<String>,
    /// tokenizer.json (the one the model was pretrained with); empty: the run's
    /// (<run_dir>/assets/tokenizer.json)
    pub tokenizer: String,
    /// tokens per sample at most, [CLS] and [SEP] included
    #[config(default = 128)]
    pub block_size: usize,
    /// the class list (index = label id); null: the sorted distinct labels of the files
    pub labels: Option<Vec<String>>,
    /// skip (and count) lines that are not JSON objects with the fields, instead of failing
    pub skip_bad_lines: bool,
    /// keep the first N lines of each class, in file order (0: all): few-label transfer
    pub max_per_class: u64,
}

pub struct JsonlDataset {
    tokenizer: TextTokenizer,
    text_field: String,
    block_size: usize,
    index: RecordIndex,
    classes: Vec<String>,
    class_counts: Vec<u64>,
    notes: serde_json::Map<String, Value>,
}

impl Component for JsonlDataset {
    const NAME: &'static str = "jsonl";
    const ABOUT: &'static str = "JSON-lines text with optional labels (classification, probes, fine-tuning)";
    const PROVIDES: &'static [&'static str] = &[
        "vocab_size",
        "pad_token_id",
        "cls_token_id",
        "sep_token_id",
        "mask_token_id",
        "special_token_ids",
        "num_classes",
    ];
    type Config = JsonlConfig;

    fn new(config: JsonlConfig, ctx: &CreateCtx) -> Result<Self> {
        if config.files.is_empty() {
            return Err(PtError::config("jsonl: `files` is empty; list the JSON-lines files to read"));
        }
        if config.block_size < 3 {
            return Err(PtError::config(format!("jsonl: block_size {} is too small (at least 3)", config.block_size)));
        }
        if let Some(labels) = &config.labels {
            if labels.is_empty() {
                return Err(PtError::config("jsonl: `labels` is an empty list; list the classes or set it to null"));
            }
        }
        let files = config.files.iter().map(|f| paths::expand(f, ctx)).collect::<Result<Vec<PathBuf>>>()?;
        if let Some(parquet) = files.iter().find(|f| pt_kit::text::is_parquet(f)) {
            return Err(PtError::config(format!(
                "jsonl: {} is a Parquet file; labelled text is read from JSON lines (pyarrow writes them: \
                 pq.read_table(f).to_pandas().to_json(out, orient=\"records\", lines=True))",
                parquet.display()
            )));
        }
        let fingerprints = file_fingerprints(&files)?;
        let tokenizer = TextTokenizer::resolve(&config.tokenizer, ctx, None)?;

        let kind = "jsonl";
        let key = cache_key(
            kind,
            &json!({
                "files": fingerprints,
                "tokenizer": tokenizer.fingerprint,
                "text_field": config.text_field,
                "label_field": config.label_field,
                "labels": config.labels,
                "skip_bad_lines": config.skip_bad_lines,
            }),
        );
        let cache_path = paths::cache_dir(ctx)?.join(format!("{kind}-{}.bin", &key[..16]));
        let mut index =
            RecordIndex::open_or_build(&files, &cache_path, &key, kind, || build(&files, &tokenizer, &config))?;
        if index.is_empty() {
            return Err(PtError::data(format!(
                "jsonl: no samples in {}",
                files.iter().map(|p| p.display().to_string()).collect::<Vec<_>>().join(", ")
            )));
        }

        let classes: Vec<String> = serde_json::from_value(index.meta["classes"].clone())?;
        let mut class_counts: Vec<u64> = serde_json::from_value(index.meta["class_counts"].clone())?;
        if config.max_per_class > 0 {
            class_counts = keep_per_class(&mut index.records, classes.len(), config.max_per_class);
        }
        let stats: PassStats = serde_json::from_value(index.meta["stats"].clone())?;
        let mut notes = serde_json::Map::new();
        tokenizer.notes(&mut notes);
        stats.notes(&mut notes);
        let room = config.block_size as u32 - 2;
        notes.insert("block_size".into(), json!(config.block_size));
        notes.insert("truncated_lines".into(), json!(index.records.iter().filter(|r| r.num_tokens > room).count()));
        notes.insert("num_tokens".into(), json!(index.records.iter().map(|r| r.num_tokens as u64).sum::<u64>()));
        notes.insert("labelled".into(), json!(!classes.is_empty()));
        if config.max_per_class > 0 {
            // The tokenizer pass statistics above are of the whole files.
            notes.insert("max_per_class".into(), json!(config.max_per_class));
        }
        notes.insert("cache".into(), json!(index.cache_path.display().to_string()));
        Ok(JsonlDataset {
            tokenizer,
            text_field: config.text_field,
            block_size: config.block_size,
            index,
            classes,
            class_counts,
            notes,
        })
    }
}

/// A line's text and its label as written (strings as they are, integers in decimal).
fn parse_line(
    line: &str,
    text_field: &str,
    label_field: Option<&str>,
) -> std::result::Result<(String, Option<String>), String> {
    let value: Value = serde_json::from_str(line).map_err(|e| format!("not valid JSON: {e}"))?;
    let Value::Object(mut obj) = value else {
        return Err("not a JSON object".into());
    };
    let text = match obj.remove(text_field) {
        Some(Value::String(s)) => s,
        Some(other) => return Err(format!("field '{text_field}' is not a string but {other}")),
        None => return Err(format!("no field '{text_field}'")),
    };
    let label = match label_field.and_then(|f| obj.remove(f)) {
        None | Some(Value::Null) => None,
        Some(Value::String(s)) => Some(s),
        Some(Value::Number(n)) if n.is_i64() || n.is_u64() => Some(n.to_string()),
        Some(Value::Bool(b)) => Some(b.to_string()),
        Some(other) => return Err(format!("label {other} is not a string or integer")),
    };
    Ok((text, label))
}

/// The class list: explicit, or the distinct labels sorted (numerically when all are integers).
fn class_list(explicit: Option<&Vec<String>>, seen: &HashMap<String, u32>) -> Vec<String> {
    if let Some(labels) = explicit {
        return labels.clone();
    }
    let mut classes: Vec<String> = seen.keys().cloned().collect();
    if classes.iter().all(|c| c.parse::<i64>().is_ok()) {
        classes.sort_by_key(|c| c.parse::<i64>().unwrap_or_default());
    } else {
        classes.sort();
    }
    classes
}

struct Pending {
    line: LineRef,
    number: u64,
    num_tokens: u32,
    /// Index into the labels seen, in order of first appearance.
    label: Option<u32>,
}

fn build(files: &[PathBuf], tokenizer: &TextTokenizer, config: &JsonlConfig) -> Result<(Vec<Record>, Value)> {
    let label_field = config.label_field.as_deref();
    let mut seen: HashMap<String, u32> = HashMap::new();
    let mut pending: Vec<Pending> = Vec::new();
    let mut stats = tokenize_files(
        files,
        None,
        tokenizer,
        config.skip_bad_lines,
        |line, number| {
            let (text, label) = parse_line(line, &config.text_field, label_field)?;
            let label = label.map(|l| {
                let next = seen.len() as u32;
                *seen.entry(l).or_insert(next)
            });
            Ok((text, (number, label)))
        },
        |lines, ids| {
            pending.extend(lines.into_iter().zip(ids).map(|((line, (number, label)), ids)| Pending {
                line,
                number,
                num_tokens: ids.len() as u32,
                label,
            }));
            Ok(())
        },
    )?;

    let file_of = |p: &Pending| files[p.line.file as usize].display().to_string();
    let labelled = !seen.is_empty();
    let classes = if labelled { class_list(config.labels.as_ref(), &seen) } else { Vec::new() };
    // Seen-order label index → class id (None: not in an explicit `labels`).
    let mut by_name: HashMap<&str, i32> = HashMap::new();
    for (i, c) in classes.iter().enumerate() {
        by_name.insert(c.as_str(), i as i32);
    }
    let mut seen_names = vec![String::new(); seen.len()];
    for (name, &i) in &seen {
        seen_names[i as usize] = name.clone();
    }
    let remap: Vec<Option<i32>> = seen_names.iter().map(|n| by_name.get(n.as_str()).copied()).collect();

    let mut records = Vec::with_capacity(pending.len());
    let mut class_counts = vec![0u64; classes.len()];
    for p in pending {
        let label = match (labelled, p.label) {
            (false, _) => NO_LABEL,
            (true, Some(seen_index)) => match remap[seen_index as usize] {
                Some(id) => id,
                None => {
                    let why = format!(
                        "label '{}' is not one of `labels` ({})",
                        seen_names[seen_index as usize],
                        classes.join(", ")
                    );
                    skip_or_fail(config.skip_bad_lines, &mut stats, &file_of(&p), p.number, &why)?;
                    continue;
                }
            },
            (true, None) => {
                let why = format!("no '{}' field, while other lines are labelled", label_field.unwrap_or_default());
                skip_or_fail(config.skip_bad_lines, &mut stats, &file_of(&p), p.number, &why)?;
                continue;
            }
        };
        if label >= 0 {
            class_counts[label as usize] += 1;
        }
        records.push(Record { line: p.line, num_tokens: p.num_tokens, label });
    }
    if labelled {
        if let Some(empty) = classes.iter().zip(&class_counts).find(|(_, &n)| n == 0) {
            tracing::warn!(class = %empty.0, "a class in `labels` has no samples");
        }
    }
    Ok((records, json!({"stats": stats, "classes": classes, "class_counts": class_counts})))
}

/// Keeps the first `n` records of each of `classes` classes (unlabelled records stay); returns
/// the counts left per class.
fn keep_per_class(records: &mut Vec<Record>, classes: usize, n: u64) -> Vec<u64> {
    let mut counts = vec![0u64; classes];
    records.retain(|r| {
        let Some(count) = usize::try_from(r.label).ok().and_then(|c| counts.get_mut(c)) else {
            return true;
        };
        *count += 1;
        *count <= n
    });
    counts.iter().map(|&c| c.min(n)).collect()
}

fn skip_or_fail(skip: bool, stats: &mut PassStats, file: &str, number: u64, why: &str) -> Result<()> {
    if !skip {
        return Err(PtError::data(format!("{file}:{number}: {why} (set skip_bad_lines = true to skip such lines)")));
    }
    stats.bad_lines += 1;
    tracing::warn!("skipping {file}:{number}: {why}");
    Ok(())
}

impl Dataset for JsonlDataset {
    fn info(&self) -> DatasetInfo {
        let mut fields = text_fields(-1);
        if !self.classes.is_empty() {
            fields.push(FieldInfo::new("label", "int64", &[], "class id (index into classes)"));
        }
        DatasetInfo {
            num_samples: self.index.len() as u64,
            fields,
            classes: self.classes.clone(),
            class_counts: self.class_counts.clone(),
            notes: self.notes.clone(),
            ..Default::default()
        }
    }

    fn get_batch(&self, indices: &[u64], _ctx: &StepCtx) -> Result<Tensors> {
        let mut texts = Vec::with_capacity(indices.len());
        for &i in indices {
            let line = self.index.line_text(i as usize)?;
            let (text, _) = parse_line(&line, &self.text_field, None).map_err(|why| {
                PtError::data(format!("jsonl sample {i}: {why} (has the file changed since it was indexed?)"))
            })?;
            texts.push(text);
        }
        let ids = self.tokenizer.encode_many(texts.iter().map(String::as_str).collect())?;
        let rows: Vec<Vec<i64>> =
            ids.iter().map(|ids| single_sequence(ids, self.block_size, &self.tokenizer.special).0).collect();
        let mut batch = collate(&rows, 0, self.tokenizer.special.pad)?;
        if !self.classes.is_empty() {
            let labels: Vec<i64> = indices.iter().map(|&i| self.index.records[i as usize].label as i64).collect();
            batch.insert("label", Tensor::from_slice(&labels));
        }
        Ok(batch)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(label: i32) -> Record {
        Record { line: LineRef { offset: 0, file: 0, len: 0 }, num_tokens: 1, label }
    }

    #[test]
    fn keep_per_class_keeps_the_first_lines_of_each_class_and_every_unlabelled_one() {
        let labels = [0, 1, 0, NO_LABEL, 0, 1, 2, 0];
        let mut records: Vec<Record> = labels.iter().map(|&l| record(l)).collect();
        let counts = keep_per_class(&mut records, 4, 2);
        assert_eq!(records.iter().map(|r| r.label).collect::<Vec<_>>(), [0, 1, 0, NO_LABEL, 1, 2]);
        assert_eq!(counts, [2, 2, 1, 0]);
    }
}
