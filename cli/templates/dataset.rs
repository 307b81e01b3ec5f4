//! `__name__`: rows of numbers from a CSV file, each row a sample: its values as `x` (float32)
//! and, optionally, its last column as the class `label`. The host asks for batches by sample
//! index (it owns order, shuffling, sharding and resume), so `get_batch` only gathers rows.
//! `pt plugin new NAME --kind dataset` wrote this file; replace the reader with yours.

use pt_sdk::prelude::*;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// The `[data]` keys (`pt plugin info __name__`).
#[derive(Serialize, Deserialize, Clone, Debug, PluginConfig)]
#[serde(default, deny_unknown_fields)]
pub struct __Name__Config {
    /// The CSV file: one sample per line, comma-separated numbers (`{data}` is pt's data folder).
    #[config(non_empty)]
    pub path: String,
    /// The last column is an integer class label.
    #[config(default = true)]
    pub labelled: bool,
}

pub struct __Name__ {
    /// Row-major values, `width` per sample.
    values: Vec<f32>,
    width: usize,
    /// Class ids in `classes`' order (empty without labels).
    labels: Vec<i64>,
    classes: Vec<String>,
    class_counts: Vec<u64>,
}

impl Component for __Name__ {
    const NAME: &'static str = "__name__";
    const ABOUT: &'static str = "rows of numbers from a CSV file";
    type Config = __Name__Config;

    fn new(config: __Name__Config, ctx: &CreateCtx) -> Result<Self> {
        let path = ctx.expand(&config.path);
        let text = std::fs::read_to_string(&path).map_err(|e| PtError::data(format!("{path}: {e}")))?;
        let (mut values, mut raw_labels, mut width) = (Vec::new(), Vec::new(), None);
        for (n, line) in text.lines().enumerate().filter(|(_, l)| !l.trim().is_empty()) {
            let mut row = line
                .split(',')
                .map(|v| v.trim().parse::<f32>())
                .collect::<std::result::Result<Vec<f32>, _>>()
                .map_err(|e| PtError::data(format!("{path}:{}: not a number ({e})", n + 1)))?;
            if config.labelled {
                raw_labels.push(row.pop().ok_or_else(|| PtError::data(format!("{path}:{}: empty row", n + 1)))? as i64);
            }
            match width {
                None => width = Some(row.len()),
                Some(w) if w != row.len() => {
                    bail!(Data, "{path}:{}: {} values, the first row has {w}", n + 1, row.len())
                }
                Some(_) => {}
            }
            values.extend(row);
        }
        let Some(width) = width.filter(|w| *w > 0) else { bail!(Data, "{path}: no values") };
        // Classes by value, ids in sorted order; every split of a task maps names the same way.
        let mut counts: BTreeMap<i64, u64> = BTreeMap::new();
        raw_labels.iter().for_each(|l| *counts.entry(*l).or_default() += 1);
        let ids: BTreeMap<i64, i64> = counts.keys().enumerate().map(|(i, l)| (*l, i as i64)).collect();
        Ok(__Name__ {
            values,
            width,
            labels: raw_labels.iter().map(|l| ids[l]).collect(),
            classes: counts.keys().map(|l| l.to_string()).collect(),
            class_counts: counts.values().copied().collect(),
        })
    }
}

impl Dataset for __Name__ {
    fn info(&self) -> DatasetInfo {
        let mut fields = vec![FieldInfo::new("x", "float32", &[self.width as i64], "the row's values")];
        if !self.labels.is_empty() {
            fields.push(FieldInfo::new("label", "int64", &[], "class id (index into classes)"));
        }
        DatasetInfo {
            num_samples: (self.values.len() / self.width) as u64,
            fields,
            classes: self.classes.clone(),
            class_counts: self.class_counts.clone(),
            ..Default::default()
        }
    }

    /// `x` [B, width] and `label` [B], on the CPU (the host moves batches to the device).
    fn get_batch(&self, indices: &[u64], _ctx: &StepCtx) -> Result<Tensors> {
        let mut x = Vec::with_capacity(indices.len() * self.width);
        for &i in indices {
            let start = i as usize * self.width;
            x.extend_from_slice(&self.values[start..start + self.width]);
        }
        let mut batch = Tensors::new().with("x", Tensor::from_slice(&x).view([indices.len() as i64, self.width as i64]));
        if !self.labels.is_empty() {
            let labels: Vec<i64> = indices.iter().map(|&i| self.labels[i as usize]).collect();
            batch.insert("label", Tensor::from_slice(&labels));
        }
        Ok(batch)
    }
}

pt_sdk::export_plugin! {
    name: "__name__",
    datasets: [__Name__],
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rows_become_samples_and_labels_class_ids() {
        let path = std::env::temp_dir().join(format!("__name__-unit-{}.csv", std::process::id()));
        std::fs::write(&path, "1,2,7\n3,4,5\n5,6,7\n").unwrap();
        let config = __Name__Config::from_json(&format!(r#"{{"path": {:?}}}"#, path.display().to_string())).unwrap();
        let data = __Name__::new(config, &CreateCtx::default()).unwrap();
        assert_eq!((data.info().num_samples, data.info().classes.clone()), (3, vec!["5".to_string(), "7".into()]));
        let batch = data.get_batch(&[2, 1], &StepCtx::default()).unwrap();
        assert_eq!(Vec::<f32>::try_from(batch.require("x").unwrap().flatten(0, -1)).unwrap(), [5.0, 6.0, 3.0, 4.0]);
        assert_eq!(Vec::<i64>::try_from(batch.require("label").unwrap()).unwrap(), [1, 0]);
        std::fs::write(&path, "1,2,7\n3,x,5\n").unwrap();
        let config = __Name__Config::from_json(&format!(r#"{{"path": {:?}}}"#, path.display().to_string())).unwrap();
        let e = __Name__::new(config, &CreateCtx::default()).err().unwrap().to_string();
        assert!(e.contains(":2: not a number"), "{e}");
        std::fs::remove_file(&path).ok();
    }
}
