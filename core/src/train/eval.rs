//! Running evaluators: each gets a copy of the model (so fine-tuning evaluators never disturb
//! training) and the dataset splits it asked for.

use crate::components::{ArchHandle, DatasetHandle, EvaluatorHandle, LentData, LentModel};
use crate::config::EvalSpec;
use crate::plugin::Registry;
use crate::train::session::Session;
use crate::train::weights::load_named;
use crate::{Error, Result};
use pt_sdk::{EvalReport, StepCtx};
use std::cell::RefCell;

pub struct EvalRunner {
    pub spec: EvalSpec,
    pub handle: EvaluatorHandle,
    splits: Vec<(String, DatasetHandle)>,
}

impl EvalRunner {
    pub fn create(reg: &Registry, session: &Session, spec: &EvalSpec, index: usize) -> Result<Self> {
        let section = format!("eval.{index}");
        let cfg = spec.component.config_json(&session.data_dir, &session.run_dir);
        let handle = EvaluatorHandle::create(reg, &spec.component.name, &section, &cfg, &session.ctx)?;
        let mut splits = Vec::new();
        for want in &handle.info.splits {
            let Some(ds) = spec.splits.get(want) else {
                return Err(Error::Config(format!(
                    "evaluator {} needs a '{want}' split: add [eval.splits.{want}] with a dataset name and config to [[eval]] #{index}",
                    handle.origin
                )));
            };
            splits.push((want.clone(), session.dataset(reg, ds, &format!("{section}.splits.{want}"))?));
        }
        for out in &handle.info.needs_outputs {
            if !session.arch.info.outputs.contains(out) {
                return Err(Error::Composition(format!(
                    "evaluator {} needs model output '{out}', but architecture {} outputs only: {}",
                    handle.origin,
                    session.arch.origin,
                    session.arch.info.outputs.join(", ")
                )));
            }
        }
        Ok(EvalRunner { spec: spec.clone(), handle, splits })
    }

    /// The label its metrics are logged under.
    pub fn name(&self) -> &str {
        self.spec.label()
    }

    /// Evaluates a copy of `live` (or, with `random_init`, a freshly initialised model).
    pub fn run(
        &mut self,
        reg: &Registry,
        session: &Session,
        live: &ArchHandle,
        step: u64,
        random_init: bool,
    ) -> Result<EvalReport> {
        let mut copy = session.new_arch(reg)?;
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
        let ctx = StepCtx {
            seed: session.recipe.run.seed,
            epoch: 0,
            step,
            rank: 0,
            world_size: 1,
            device: session.ctx.device,
            train: false,
        };
        let model = LentModel { arch: RefCell::new(&mut copy) };
        self.handle.evaluate(&model, &lent_splits, &ctx)
    }
}
