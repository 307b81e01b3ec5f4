//! The transfer report as tables: one row per evaluator accuracy (per layer for evaluators of
//! several feature taps, or per metric of an evaluator without an accuracy), with each arm's
//! spread over seeds and whether the difference exceeds it.

use super::{Comparison, TransferReport};
use pt_sdk::EvalReport;
use std::path::PathBuf;

/// One line of the transfer table: an evaluator's accuracy, or, for an evaluator without one
/// (e.g. `mlm_eval`), each of its metrics. With several seeds the values are means.
#[derive(Debug, Clone, PartialEq)]
pub struct MetricRow {
    pub label: String,
    pub pretrained: Option<f64>,
    pub random: Option<f64>,
    pub pretrained_best: Option<f64>,
    pub random_best: Option<f64>,
    /// An accuracy, shown in %.
    pub percent: bool,
    /// The value of every seed (`pt transfer --seeds N`), the run's seed first.
    pub pretrained_seeds: Vec<f64>,
    pub random_seeds: Vec<f64>,
}

/// Mean, sample standard deviation and range of one arm's values over seeds.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Spread {
    pub mean: f64,
    pub sd: f64,
    pub min: f64,
    pub max: f64,
}

impl Spread {
    pub fn of(values: &[f64]) -> Option<Spread> {
        if values.is_empty() {
            return None;
        }
        let n = values.len() as f64;
        let mean = values.iter().sum::<f64>() / n;
        let var =
            if values.len() > 1 { values.iter().map(|v| (v - mean).powi(2)).sum::<f64>() / (n - 1.0) } else { 0.0 };
        let (min, max) = values.iter().fold((f64::INFINITY, f64::NEG_INFINITY), |(lo, hi), v| (lo.min(*v), hi.max(*v)));
        Some(Spread { mean, sd: var.sqrt(), min, max })
    }
}

impl MetricRow {
    pub fn show(&self, v: Option<f64>) -> String {
        match (v, self.percent) {
            (None, _) => "-".into(),
            (Some(a), true) => format!("{:.1} %", a * 100.0),
            (Some(a), false) => format!("{a:.4}"),
        }
    }

    /// `mean ± sd` over seeds (one seed: the value alone).
    pub fn show_spread(&self, values: &[f64]) -> String {
        match Spread::of(values) {
            None => "-".into(),
            Some(s) if values.len() == 1 => self.show(Some(s.mean)),
            Some(s) if self.percent => format!("{:.1} ± {:.1} %", s.mean * 100.0, s.sd * 100.0),
            Some(s) => format!("{:.4} ± {:.4}", s.mean, s.sd),
        }
    }

    /// `min–max` over seeds.
    pub fn show_range(&self, values: &[f64]) -> String {
        match Spread::of(values) {
            None => "-".into(),
            Some(s) if self.percent => format!("{:.1}–{:.1} %", s.min * 100.0, s.max * 100.0),
            Some(s) => format!("{:.4}–{:.4}", s.min, s.max),
        }
    }

    /// With two or more seeds in both arms: whether pretraining moved the metric beyond the
    /// seeds' spread (every pretrained seed above every random-init seed, or below), else that
    /// the difference is not measurable. A gain inside the spread is no gain.
    pub fn verdict(&self) -> Option<&'static str> {
        if self.pretrained_seeds.len() < 2 || self.random_seeds.len() < 2 {
            return None;
        }
        let (p, r) = (Spread::of(&self.pretrained_seeds)?, Spread::of(&self.random_seeds)?);
        Some(match (p.min > r.max, p.max < r.min, self.percent) {
            (true, _, true) => "gain beyond the seed spread",
            (true, _, false) => "higher beyond the seed spread",
            (_, true, true) => "loss beyond the seed spread",
            (_, true, false) => "lower beyond the seed spread",
            _ if self.percent && p.mean > r.mean => "no measurable gain",
            _ => "no measurable difference",
        })
    }
}

/// The seeds' reports of one arm: every seed's with `--seeds N`, else the one report.
fn by_seed<'a>(all: &'a [EvalReport], first: Option<&'a EvalReport>) -> Vec<&'a EvalReport> {
    match all.is_empty() {
        true => first.into_iter().collect(),
        false => all.iter().collect(),
    }
}

/// A row for `key` of `c`'s reports; values are means over seeds.
fn row(c: &Comparison, key: &str, label: String, percent: bool, best: Option<&str>) -> MetricRow {
    let values = |reports: &[&EvalReport], k: &str| -> Vec<f64> {
        reports.iter().filter_map(|r| r.metrics.get(k).copied()).collect()
    };
    let mean = |v: &[f64]| Spread::of(v).map(|s| s.mean);
    let pretrained = by_seed(&c.pretrained_by_seed, Some(&c.pretrained));
    let random = by_seed(&c.random_init_by_seed, c.random_init.as_ref());
    let (p, r) = (values(&pretrained, key), values(&random, key));
    MetricRow {
        label,
        pretrained: mean(&p),
        random: mean(&r),
        pretrained_best: best.and_then(|b| mean(&values(&pretrained, b))),
        random_best: best.and_then(|b| mean(&values(&random, b))),
        percent,
        pretrained_seeds: p,
        random_seeds: r,
    }
}

/// The table's rows, in task order; timings and counts are left out.
pub fn metric_rows(report: &TransferReport) -> Vec<MetricRow> {
    let mut rows = Vec::new();
    for c in &report.comparisons {
        let p = &c.pretrained.metrics;
        // Several feature taps (`layer = [...]`): one row per layer, input to output.
        if !c.pretrained.layers.is_empty() {
            for layer in &c.pretrained.layers {
                let key = format!("accuracy@{layer}");
                rows.push(row(c, &key, format!("{} @ {layer}", c.evaluator), true, None));
            }
            continue;
        }
        if p.contains_key("accuracy") {
            rows.push(row(c, "accuracy", c.evaluator.clone(), true, Some("best_accuracy")));
            // Where classes are uneven, the mean per-class accuracy says more than accuracy.
            if p.contains_key("balanced_accuracy") {
                rows.push(row(c, "balanced_accuracy", format!("{} balanced", c.evaluator), true, None));
            }
            continue;
        }
        let bookkeeping = |k: &str| k.ends_with("seconds") || k == "k" || k.starts_with("masked_");
        for key in p.keys().filter(|k| !bookkeeping(k)) {
            rows.push(row(c, key, format!("{} {key}", c.evaluator), key.ends_with("accuracy"), None));
        }
    }
    rows
}

/// The summary as Markdown: a table of accuracies (with seeds: mean ± sd, range and verdict)
/// and the fine-tuning speed-up.
pub fn markdown(report: &TransferReport, files: &[PathBuf]) -> String {
    let baseline = report.comparisons.iter().any(|c| c.random_init.is_some());
    let seeds = report.seeds.len();
    let against = match baseline {
        true => "against the same architecture at random initialisation",
        false => "alone (no random-initialisation baseline)",
    };
    let role = report.role.as_ref().map(|r| format!(", its {r} architecture,")).unwrap_or_default();
    let changed = match report.baseline_overrides.is_empty() {
        true => String::new(),
        false => format!(" (with `{}`)", report.baseline_overrides.join("`, `")),
    };
    let mut s = format!(
        "# Transfer: {}\n\nCheckpoint `{}` (step {}){role} {against}{changed}",
        report.task,
        report.checkpoint.display(),
        report.checkpoint_step
    );
    let rows = metric_rows(report);
    if seeds > 1 {
        s.push_str(&format!(
            ", {seeds} seeds each ({}: the evaluator's head, data order and dropout, and the random \
             initialisation). Mean ± standard deviation over seeds, then the range; a difference \
             counts only when every pretrained seed is above (or below) every random-init seed.\n\n",
            report.seeds.iter().map(u64::to_string).collect::<Vec<_>>().join(", ")
        ));
        s.push_str(match baseline {
            true => "| evaluator | pretrained | range | random init | range | verdict |\n|---|---|---|---|---|---|\n",
            false => "| evaluator | pretrained | range |\n|---|---|---|\n",
        });
        for r in &rows {
            let (p, pr) = (r.show_spread(&r.pretrained_seeds), r.show_range(&r.pretrained_seeds));
            s.push_str(&match baseline {
                true => format!(
                    "| {} | {p} | {pr} | {} | {} | {} |\n",
                    r.label,
                    r.show_spread(&r.random_seeds),
                    r.show_range(&r.random_seeds),
                    r.verdict().unwrap_or("-")
                ),
                false => format!("| {} | {p} | {pr} |\n", r.label),
            });
        }
    } else {
        s.push_str(".\n\n");
        s.push_str(match baseline {
            true => "| evaluator | pretrained | random init | best (pretrained / random) |\n|---|---|---|---|\n",
            false => "| evaluator | pretrained | best |\n|---|---|---|\n",
        });
        for r in &rows {
            let (p, best) = (r.show(r.pretrained), r.show(r.pretrained_best));
            s.push_str(&match baseline {
                true => format!("| {} | {p} | {} | {best} / {} |\n", r.label, r.show(r.random), r.show(r.random_best)),
                false => format!("| {} | {p} | {best} |\n", r.label),
            });
        }
    }
    for c in &report.comparisons {
        if let Some(sp) = &c.speedup {
            let seed = if seeds > 1 { format!(" (seed {})", report.seeds[0]) } else { String::new() };
            s.push_str(&format!(
                "\n**{}**{seed}: from scratch the best test accuracy is {:.1} % (step {}, {:.1} s). ",
                c.evaluator,
                sp.random_best_accuracy * 100.0,
                sp.random_best_step,
                sp.random_best_seconds
            ));
            match (sp.pretrained_step, sp.pretrained_seconds, sp.step_speedup, sp.time_speedup) {
                (Some(st), Some(se), Some(x), Some(y)) => s.push_str(&format!(
                    "The pretrained encoder reaches it at step {st} ({se:.1} s): {x:.1}× fewer steps, {y:.1}× less time.\n"
                )),
                _ => s.push_str("The pretrained encoder does not reach it within the run.\n"),
            }
        }
    }
    let pngs: Vec<String> = files
        .iter()
        .filter(|f| f.extension().is_some_and(|e| e == "png"))
        .filter_map(|f| f.file_name().map(|n| format!("![{0}]({0})", n.to_string_lossy())))
        .collect();
    if !pngs.is_empty() {
        s.push_str(&format!("\n{}\n", pngs.join("\n")));
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(p: &[f64], r: &[f64]) -> MetricRow {
        MetricRow {
            label: "finetune".into(),
            pretrained: None,
            random: None,
            pretrained_best: None,
            random_best: None,
            percent: true,
            pretrained_seeds: p.to_vec(),
            random_seeds: r.to_vec(),
        }
    }

    #[test]
    fn a_gain_counts_only_beyond_the_seed_spread() {
        assert_eq!(row(&[0.50, 0.52, 0.51], &[0.40, 0.45, 0.49]).verdict(), Some("gain beyond the seed spread"));
        assert_eq!(row(&[0.50, 0.52, 0.47], &[0.40, 0.45, 0.49]).verdict(), Some("no measurable gain"));
        assert_eq!(row(&[0.40, 0.41], &[0.42, 0.45]).verdict(), Some("loss beyond the seed spread"));
        assert_eq!(row(&[0.43, 0.41], &[0.42, 0.45]).verdict(), Some("no measurable difference"));
        assert_eq!(row(&[0.5], &[0.4]).verdict(), None, "one seed: no verdict");
        let s = Spread::of(&[0.40, 0.45, 0.50]).unwrap();
        assert!((s.mean - 0.45).abs() < 1e-12 && (s.sd - 0.05).abs() < 1e-12 && s.min == 0.40 && s.max == 0.50);
        let r = row(&[0.40, 0.45, 0.50], &[]);
        assert_eq!(r.show_spread(&r.pretrained_seeds), "45.0 ± 5.0 %");
        assert_eq!(r.show_range(&r.pretrained_seeds), "40.0–50.0 %");
    }
}
