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

fn fmt_metrics(m: &BTreeMap<String, f64>) -> String {
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
    parts.join("  ")
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
                    b.set_message(fmt_metrics(metrics));
                }
            }
            None if !metrics.is_empty() && !self.quiet => {
                errln!("step {step:>6}  {}", fmt_metrics(metrics))
            }
            None => {}
        }
    }

    fn on_eval(&mut self, step: u64, name: &str, report: &EvalReport) {
        let m: Vec<String> = report.metrics.iter().map(|(k, v)| format!("{k} {v:.4}")).collect();
        self.line(&format!("eval {name} @ step {step}: {}", m.join("  ")));
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
