//! How the trainer reports progress to whoever drives it (the CLI's progress bar, tests).

use pt_sdk::EvalReport;
use std::collections::BTreeMap;
use std::path::Path;

pub trait Observer {
    /// Training starts (or resumes) at `step`; `total` is the step it will stop at, if known.
    fn on_start(&mut self, _step: u64, _total: Option<u64>, _description: &str) {}
    /// After every optimizer step; `metrics` is non-empty on logging steps.
    fn on_step(&mut self, _step: u64, _metrics: &BTreeMap<String, f64>) {}
    fn on_eval(&mut self, _step: u64, _name: &str, _report: &EvalReport) {}
    fn on_checkpoint(&mut self, _step: u64, _dir: &Path) {}
    /// A notable event worth a line of output.
    fn on_message(&mut self, _message: &str) {}
}

pub struct NullObserver;
impl Observer for NullObserver {}
