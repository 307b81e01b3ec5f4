//! Live progress: an indicatif bar on a terminal, plain log lines otherwise (CI, pipes).

use indicatif::{ProgressBar, ProgressStyle};
use pt_core::train::Observer;
use pt_sdk::EvalReport;
use std::collections::BTreeMap;
use std::io::IsTerminal;
use std::path::Path;

pub struct Progress {
    bar: Option<ProgressBar>,
    quiet: bool,
}

impl Progress {
    pub fn new(enabled: bool) -> Self {
        Progress { bar: None, quiet: !enabled }
    }

    fn line(&self, s: &str) {
        match &self.bar {
            Some(b) => b.println(s),
            None => errln!("{s}"),
        }
    }
}

/// Progress through a known number of items: a bar with ETA on a terminal, else the `progress`
/// lines every long work prints (`pt_sdk::log::Progress`).
pub struct Counter {
    what: &'static str,
    bar: Option<ProgressBar>,
    lines: Option<pt_sdk::log::Progress>,
    done: u64,
}

impl Counter {
    pub fn new(what: &'static str) -> Self {
        Counter { what, bar: None, lines: None, done: 0 }
    }

    pub fn set(&mut self, done: u64, all: u64) {
        if std::io::stderr().is_terminal() {
            let what = self.what;
            let bar = self.bar.get_or_insert_with(|| {
                let style =
                    ProgressStyle::with_template("{msg} {bar:30} {pos}/{len} [{elapsed_precise}<{eta_precise}]")
                        .unwrap_or_else(|_| ProgressStyle::default_bar());
                ProgressBar::new(all).with_style(style).with_message(what)
            });
            bar.set_position(done);
        } else {
            let what = self.what;
            let lines = self.lines.get_or_insert_with(|| pt_sdk::log::Progress::new(what, Some(all)));
            lines.add(done.saturating_sub(self.done));
        }
        self.done = done;
    }

    pub fn finish(&mut self) {
        if let Some(bar) = self.bar.take() {
            bar.finish_and_clear();
        }
        if let Some(lines) = self.lines.take() {
            lines.finish();
        }
    }
}

/// An evaluation's metrics as a reader takes them: accuracies in %, per layer in the report's
/// layer order, whole counts without decimals, seconds to a tenth.
pub fn eval_parts(report: &EvalReport) -> Vec<String> {
    let show = |k: &str, v: f64| -> String {
        if k.split('@').next().is_some_and(|m| m.ends_with("accuracy")) {
            format!("{k} {:.1}%", v * 100.0)
        } else if k.ends_with("seconds") {
            format!("{k} {v:.1}")
        } else if v.fract() == 0.0 && v.abs() < 1e9 {
            format!("{k} {v:.0}")
        } else {
            format!("{k} {v:.4}")
        }
    };
    let per_layer = |k: &str| k.contains('@');
    let mut parts: Vec<String> =
        report.metrics.iter().filter(|(k, _)| !per_layer(k)).map(|(k, v)| show(k, *v)).collect();
    for layer in &report.layers {
        let suffix = format!("@{layer}");
        parts.extend(report.metrics.iter().filter(|(k, _)| k.ends_with(&suffix)).map(|(k, v)| show(k, *v)));
    }
    parts
}

fn fmt_metrics(m: &BTreeMap<String, f64>) -> String {
    metric_parts(m).join("  ")
}

/// The metrics that fit in `width` columns, most important first, each whole: a number is
/// never cut (indicatif would cut the message at the terminal's edge).
fn fit_metrics(m: &BTreeMap<String, f64>, width: usize) -> String {
    let mut line = String::new();
    for part in metric_parts(m) {
        let grown =
            if line.is_empty() { part.chars().count() } else { line.chars().count() + 2 + part.chars().count() };
        if grown > width {
            break;
        }
        if !line.is_empty() {
            line.push_str("  ");
        }
        line.push_str(&part);
    }
    line
}

/// Columns of the terminal on stderr (80 when unknown).
fn terminal_width() -> usize {
    console::Term::stderr().size_checked().map_or(80, |(_, cols)| cols as usize)
}

/// The step line's metrics in order of importance: loss, lr, gradient norm, throughput, a
/// data wait worth knowing, then the objective's own.
fn metric_parts(m: &BTreeMap<String, f64>) -> Vec<String> {
    let mut parts = Vec::new();
    for (k, label) in [
        ("loss", "loss"),
        ("lr", "lr"),
        ("grad_norm", "gnorm"),
        ("tokens_per_s", "tok/s"),
        ("samples_per_s", "samples/s"),
        ("rows_per_s", "rows/s"),
    ] {
        if let Some(v) = m.get(k) {
            parts.push(if k == "lr" {
                format!("{label} {v:.2e}")
            } else if v.abs() >= 100.0 {
                format!("{label} {v:.0}")
            } else {
                format!("{label} {v:.4}")
            });
        }
    }
    // Only when the device waits for data noticeably: then it is the line's most useful number.
    if let Some(wait) = m.get("loader_wait_share").filter(|w| **w >= 0.05) {
        parts.push(format!("data-wait {:.0}%", wait * 100.0));
    }
    for (k, v) in m {
        if ![
            "loss",
            "lr",
            "grad_norm",
            "tokens_per_s",
            "samples_per_s",
            "rows_per_s",
            "step_time_s",
            "epoch",
            "skipped_steps",
            "loader_wait_share",
            "loader_samples_per_s",
        ]
        .contains(&k.as_str())
            && !k.contains('/')
        {
            parts.push(format!("{k} {v:.4}"));
        }
    }
    parts
}

impl Observer for Progress {
    fn on_start(&mut self, step: u64, total: Option<u64>, description: &str) {
        errln!("training {description}");
        if step > 0 {
            errln!("resuming at step {step}");
        }
        if self.quiet || !std::io::stderr().is_terminal() {
            return;
        }
        let bar = ProgressBar::new(total.unwrap_or(0));
        bar.set_style(
            ProgressStyle::with_template("{spinner} step {pos}/{len} [{elapsed_precise}<{eta_precise}] {wide_msg}")
                .unwrap_or_else(|_| ProgressStyle::default_bar()),
        );
        bar.set_position(step);
        self.bar = Some(bar);
    }

    fn on_step(&mut self, step: u64, metrics: &BTreeMap<String, f64>) {
        match &self.bar {
            Some(b) => {
                b.set_position(step);
                if !metrics.is_empty() {
                    // What the bar's prefix ("⠁ step 1000/1000 [00:01:23<00:00:09] ") leaves.
                    let prefix = 2 + format!("step {step}/{}", b.length().unwrap_or(0)).len() + 21;
                    b.set_message(fit_metrics(metrics, terminal_width().saturating_sub(prefix)));
                }
            }
            None if !metrics.is_empty() && !self.quiet => {
                errln!("step {step:>6}  {}", fmt_metrics(metrics))
            }
            None => {}
        }
    }

    fn on_eval(&mut self, step: u64, name: &str, report: &EvalReport) {
        self.line(&format!("eval {name} @ step {step}: {}", eval_parts(report).join("  ")));
    }

    fn on_checkpoint(&mut self, step: u64, dir: &Path) {
        if !self.quiet {
            self.line(&format!("checkpoint @ step {step}: {}", dir.display()));
        }
    }

    fn on_message(&mut self, message: &str) {
        self.line(message);
    }
}

impl Drop for Progress {
    fn drop(&mut self) {
        if let Some(b) = self.bar.take() {
            b.finish_and_clear();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_step_line_keeps_whole_numbers_and_the_most_important_first() {
        let m: BTreeMap<String, f64> = [
            ("loss", 5.8014),
            ("lr", 2e-3),
            ("grad_norm", 0.4312),
            ("tokens_per_s", 7466.2),
            ("samples_per_s", 116.6),
            ("mlm_accuracy", 0.1329),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v))
        .collect();
        let full = fmt_metrics(&m);
        assert_eq!(full, "loss 5.8014  lr 2.00e-3  gnorm 0.4312  tok/s 7466  samples/s 117  mlm_accuracy 0.1329");
        // 80 columns less the bar's prefix: whole parts only, the least important dropped.
        let fitted = fit_metrics(&m, 44);
        assert_eq!(fitted, "loss 5.8014  lr 2.00e-3  gnorm 0.4312");
        assert!(fit_metrics(&m, 58).ends_with("tok/s 7466"), "{}", fit_metrics(&m, 58));
        assert_eq!(fit_metrics(&m, 200), full);
    }

    #[test]
    fn an_evaluation_reads_in_percent_and_layer_order() {
        let mut report = EvalReport::default();
        for (k, v) in [
            ("accuracy", 0.687),
            ("accuracy@layer3", 0.687),
            ("accuracy@layer10", 0.48),
            ("best_layer", 1.0),
            ("k", 20.0),
            ("seconds", 0.8197),
        ] {
            report.metrics.insert(k.into(), v);
        }
        report.layers = vec!["layer3".into(), "layer10".into()];
        assert_eq!(
            eval_parts(&report).join("  "),
            "accuracy 68.7%  best_layer 1  k 20  seconds 0.8  accuracy@layer3 68.7%  accuracy@layer10 48.0%"
        );
    }
}
