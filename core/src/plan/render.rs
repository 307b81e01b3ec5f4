//! The plan as TOML: a recipe with every default filled in, headed by where each wired input
//! comes from. Fed back as a recipe, it plans the same run.

use super::RunPlan;
use crate::config::{Archs, ComponentSpec, Recipe};
use serde_json::{Map, Value};
use std::collections::BTreeMap;

/// Values the build gave wired inputs, by section (`arch` → `vocab_size = 2000`).
pub type Bindings = BTreeMap<String, Map<String, Value>>;

/// The component spec of `section` in `recipe` (`data`, `arch.text`, `objective.mix.1`,
/// `eval.0`, `eval.0.splits.test`).
fn spec_mut<'r>(recipe: &'r mut Recipe, section: &str) -> Option<&'r mut ComponentSpec> {
    let parts: Vec<&str> = section.split('.').collect();
    match parts.as_slice() {
        ["data"] => Some(&mut recipe.data),
        ["arch"] => match &mut recipe.arch {
            Archs::One(s) => Some(s),
            Archs::Roles(_) => None,
        },
        ["arch", role] => match &mut recipe.arch {
            Archs::Roles(m) => m.get_mut(*role),
            Archs::One(_) => None,
        },
        ["objective"] => Some(&mut recipe.objective),
        ["objective", "mix", i] => recipe.mix.get_mut(i.parse::<usize>().ok()?).map(|m| &mut m.component),
        ["eval", i] => recipe.evals.get_mut(i.parse::<usize>().ok()?).map(|e| &mut e.component),
        ["eval", i, "splits", s] => recipe.evals.get_mut(i.parse::<usize>().ok()?)?.splits.get_mut(*s),
        _ => None,
    }
}

impl RunPlan {
    fn wires(&self) -> Vec<(&str, &super::Wire)> {
        let mut plans: Vec<&super::ComponentPlan> = vec![&self.data];
        plans.extend(self.archs.iter().map(|(_, a)| a));
        plans.extend(&self.objectives);
        for (e, splits) in &self.evals {
            plans.push(e);
            plans.extend(splits.iter().map(|(_, s)| s));
        }
        plans.into_iter().flat_map(|p| p.wires.iter().map(move |w| (p.section.as_str(), w))).collect()
    }

    /// The plan as TOML. Without `bound`, wired inputs stay unset and the header says where
    /// they will come from (`--print-config`); with the build's values, they are written in
    /// (the run's `config.toml`: every value the run used).
    pub fn to_toml(&self, bound: Option<&Bindings>) -> String {
        let mut recipe = self.recipe.clone();
        let mut header =
            vec!["# pt run plan: every default filled in. Train it with `pt train --recipe THIS_FILE`.".to_string()];
        let wires = self.wires();
        if !wires.is_empty() {
            header.push(match bound {
                None => "# Filled when the run is built, each from the one component that provides it:".into(),
                Some(_) => "# Filled when the run was built, each from the one component that provides it:".into(),
            });
        }
        for (section, w) in wires {
            let value = bound.and_then(|b| b.get(section)).and_then(|m| m.get(&w.key));
            let source = format!("[{}] {} ({})", w.provider.section(), w.provider_origin, w.fact);
            match value {
                Some(v) => {
                    header.push(format!("#   [{section}] {} = {v}  <- {source}", w.key));
                    if let (Some(spec), Ok(t)) = (spec_mut(&mut recipe, section), toml::Value::try_from(v)) {
                        spec.config.insert(w.key.clone(), t);
                    }
                }
                None if bound.is_some() => {
                    header.push(format!("#   [{section}] {} unset: {source} had no value", w.key))
                }
                None => header.push(format!("#   [{section}] {}  <- {source}", w.key)),
            }
        }
        format!("{}\n\n{}", header.join("\n"), recipe.to_toml())
    }
}
