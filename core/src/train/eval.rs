//! Running evaluators: each gets a copy of the model (so fine-tuning evaluators never disturb
//! training) and the dataset splits it asked for.

use crate::components::{DatasetHandle, EvaluatorHandle, LentData, LentModel};
use crate::config::EvalSpec;
use crate::model::Model;
use crate::plan::{dataset_facts, Provider};
use crate::train::observer::Observer;
use crate::train::session::Session;
use crate::train::trainer::Trainer;
use crate::train::weights::load_named;
use crate::{Error, Result};
use pt_sdk::{EvalReport, StepCtx};
use std::collections::BTreeMap;

pub struct EvalRunner {
    pub spec: EvalSpec,
    pub handle: EvaluatorHandle,
    splits: Vec<(String, DatasetHandle)>,
}

/// The split datasets of `[[eval]]` #`index` of the session's plan, every split's classes
/// numbered as the training split's (by name).
pub fn eval_splits(session: &Session, index: usize) -> Result<Vec<(String, DatasetHandle)>> {
    let spec = &session.plan.recipe.evals[index];
    let mut splits = Vec::new();
    for (name, split_plan) in &session.plan.evals[index].1 {
        let config = session.eval_config(split_plan, &spec.splits[name], BTreeMap::new())?;
        splits.push((name.clone(), DatasetHandle::create(split_plan, &config, &session.ctx)?));
    }
    if let Some(reference) = splits.iter().find(|(n, _)| n == "train").map(|(_, d)| d.info.clone()) {
        for (name, data) in splits.iter_mut().filter(|(n, _)| n != "train") {
            data.align_labels_to(&reference, &format!("[eval.splits.{name}] of [[eval]] #{index}"))?;
        }
    }
    Ok(splits)
}

impl EvalRunner {
    /// Builds `[[eval]]` #`index` of the session's plan: its split datasets, then the
    /// evaluator (its wired inputs filled from them and from the run's components).
    pub fn create(session: &Session, index: usize) -> Result<Self> {
        let plan = &session.plan;
        let spec = &plan.recipe.evals[index];
        let (eval_plan, _) = &plan.evals[index];
        let mut splits = eval_splits(session, index)?;
        let mut facts = BTreeMap::new();
        for (name, data) in &splits {
            facts.insert(Provider::Split(index, name.clone()), dataset_facts(&data.info));
        }
        let config = session.eval_config(eval_plan, &spec.component, facts)?;
        let handle = EvaluatorHandle::create(eval_plan, &config, &session.ctx)?;
        for want in &handle.info.splits {
            if !splits.iter().any(|(n, _)| n == want) {
                return Err(Error::Config(format!(
                    "evaluator {} needs a '{want}' split: add [eval.splits.{want}] with a dataset name and config to [[eval]] #{index}",
                    handle.origin
                )));
            }
        }
        splits.retain(|(n, _)| handle.info.splits.contains(n));
        let outputs = session.eval_outputs();
        for out in &handle.info.needs_outputs {
            if let Some(tap) = out.strip_prefix(pt_sdk::taps::TAP_PREFIX).filter(|_| !outputs.contains(out)) {
                let who = format!("evaluator {} of [[eval]] #{index}", handle.origin);
                pt_sdk::taps::check_taps(&[tap.to_string()], &session.model.info.taps, &who)?;
            }
            if !outputs.contains(out) {
                let hint = match session.model.has_roles() {
                    true => format!(
                        " (the run trained several architectures: evaluate one with --role {})",
                        session.model.roles().join("|")
                    ),
                    false => String::new(),
                };
                return Err(Error::Composition(format!(
                    "evaluator {} needs model output '{out}', but {} outputs only: {}{hint}",
                    handle.origin,
                    session.model.origin,
                    outputs.join(", ")
                )));
            }
        }
        Ok(EvalRunner { spec: spec.clone(), handle, splits })
    }

    /// The label its metrics are logged under.
    pub fn name(&self) -> &str {
        self.spec.label()
    }

    /// Evaluates a copy of `live` (or, with `random_init`, a freshly initialised model and
    /// fresh objective heads) with the run's seed.
    pub fn run(&mut self, session: &Session, live: &Model, step: u64, random_init: bool) -> Result<EvalReport> {
        self.run_seeded(session, live, step, random_init, session.plan.recipe.run.seed)
    }

    /// As [`Self::run`] with `seed` for everything random in the evaluation: the evaluator's
    /// head, data order and dropout, and with `random_init` the model's initialisation.
    pub fn run_seeded(
        &mut self,
        session: &Session,
        live: &Model,
        step: u64,
        random_init: bool,
        seed: u64,
    ) -> Result<EvalReport> {
        let mut copy = session.new_model_seeded(seed)?;
        let fresh = if random_init { session.fresh_heads(seed)? } else { Vec::new() };
        let heads = if random_init { fresh.iter().collect() } else { session.heads() };
        if !random_init {
            let mut target = copy.parameters()?;
            target.extend(copy.buffers()?);
            let mut source = live.parameters()?;
            source.extend(live.buffers()?);
            load_named(&target, &source, "model copy for evaluation")?;
        }
        copy.set_train(false)?;
        let lent_splits: Vec<(String, LentData<'_>)> =
            self.splits.iter().map(|(n, d)| (n.clone(), LentData { dataset: d, device: session.device })).collect();
        let ctx = StepCtx { seed, epoch: 0, step, rank: 0, world_size: 1, device: session.ctx.device, train: false };
        let model = LentModel::new(&mut copy, heads);
        self.handle.evaluate(&model, &lent_splits, &ctx)
    }
}

impl Trainer<'_> {
    /// Whether `[[eval]]` #`i` runs at this step: every `every` steps (its own, else `[run]
    /// eval_every`; 0: only at the end). From the plan, so every rank agrees (only rank 0
    /// holds evaluators; the others wait for it at the barrier).
    fn eval_due(&self, i: usize) -> bool {
        let every = self.session.plan.recipe.evals[i].every.unwrap_or(self.settings().eval_every);
        every > 0 && self.step.is_multiple_of(every)
    }

    /// Whether any evaluator runs at this step.
    pub(super) fn any_eval_due(&self) -> bool {
        (0..self.session.plan.recipe.evals.len()).any(|i| self.eval_due(i))
    }

    /// Runs every evaluator due now (all of them when `at_end`). An interrupt stops them: the
    /// labels of those not run (or cut short) are returned.
    pub fn evaluate(&mut self, obs: &mut dyn Observer, at_end: bool) -> Result<Vec<String>> {
        self.average_buffers()?;
        let mut row = BTreeMap::new();
        let mut cut = Vec::new();
        for i in 0..self.evals.len() {
            if !at_end && !self.eval_due(i) {
                continue;
            }
            let name = self.evals[i].name().to_string();
            let mut variants = vec![(name.clone(), false)];
            if at_end && self.evals[i].spec.compare_random_init {
                variants.push((format!("{name}/random_init"), true));
            }
            for (label, random) in variants {
                if super::interrupt::requested() {
                    cut.push(label);
                    continue;
                }
                if at_end {
                    obs.on_message(&format!("evaluating {label} …")); // end-of-run evaluations can take minutes
                }
                let report = match self.evals[i].run(&self.session, &self.session.model, self.step, random) {
                    Err(_) if super::interrupt::requested() => {
                        cut.push(label);
                        continue;
                    }
                    r => r?,
                };
                for (k, v) in &report.metrics {
                    row.insert(format!("{label}/{k}"), *v);
                    self.eval_curves.entry(format!("{label}/{k}")).or_default().push((self.step as f64, *v));
                }
                if let Some(confusion) = &report.confusion {
                    self.plot_confusion(&label, confusion);
                }
                obs.on_eval(self.step, &label, &report);
                self.eval_reports.insert(label, report);
            }
        }
        if !row.is_empty() {
            self.log_row(row.clone())?;
            self.latest_metrics.extend(row);
            if !at_end {
                self.plot_monitors(); // redrawn as the run goes, not only at its end
            }
        }
        if let Some(group) = &self.dist {
            group.barrier()?;
        }
        Ok(cut)
    }

    /// `eval/<label>-step<N>-confusion.png` (label `classification/random_init` → `classification-random_init`).
    fn plot_confusion(&mut self, label: &str, confusion: &pt_sdk::ConfusionMatrix) {
        let path = self.session.run_dir().join("eval").join(format!(
            "{}-step{}-confusion.png",
            label.replace('/', "-"),
            self.step
        ));
        let title = format!("{label}, step {}", self.step);
        match pt_report::plot_confusion(&path, &confusion.counts, &confusion.classes, &title) {
            Ok(()) => self.send_picture(&format!("confusion/{label}"), &path),
            Err(e) => tracing::warn!("could not draw {}: {e}", path.display()),
        }
    }
}
