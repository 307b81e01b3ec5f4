//! Which optimizer settings each parameter gets: parameter groups and the rules that assign them.

use serde::{Deserialize, Serialize};

/// Settings shared by a set of parameters. Parameters of one group occupy one contiguous slice
/// of the flat buffer, so the optimizers update a group with a few large kernels.
#[derive(Clone, Debug, PartialEq)]
pub struct ParamGroup {
    /// Identifies the group in logs and errors; two parameters with the same group name must
    /// get identical settings.
    pub name: String,
    /// Multiplies the scheduled learning rate for this group (1.0 = unchanged).
    pub lr_mult: f64,
    /// Weight decay for this group (decoupled for AdamW, added to the gradient for SGD/LARS).
    pub weight_decay: f64,
    /// LARS: no trust-ratio adaptation for this group (biases and norm weights).
    pub lars_exclude: bool,
}

/// Where one parameter goes.
#[derive(Clone, Debug, PartialEq)]
pub enum Assignment {
    /// Trained, with the settings of this group.
    Train(ParamGroup),
    /// Not trained: `requires_grad` is switched off and it stays out of the flat buffer.
    Frozen,
}

/// Assigns parameters to groups. Implemented by [`GroupRules`] (the usual decay/no-decay split
/// with learning-rate multipliers and frozen prefixes) and by any
/// `Fn(&str, &[i64]) -> Assignment` taking the parameter name and shape.
pub trait Grouping {
    fn assign(&self, name: &str, shape: &[i64]) -> Assignment;
}

impl<F: Fn(&str, &[i64]) -> Assignment> Grouping for F {
    fn assign(&self, name: &str, shape: &[i64]) -> Assignment {
        self(name, shape)
    }
}

/// Multiply the learning rate of every parameter whose name starts with `prefix`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LrMultRule {
    pub prefix: String,
    pub lr_mult: f64,
}

/// The standard grouping (as in HF Trainer, timm, SimCLR): weight decay for matrices and
/// convolution kernels (ndim >= 2); none, and no LARS adaptation, for biases and norm weights
/// (ndim <= 1). On top of that, name-prefix learning-rate multipliers (the first matching rule
/// wins) and frozen name prefixes.
///
/// Group names are `decay` / `no_decay`, suffixed with `@<prefix>` when an lr rule matched.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct GroupRules {
    pub weight_decay: f64,
    pub lr_mult: Vec<LrMultRule>,
    /// Parameters whose name starts with any of these are frozen.
    pub freeze: Vec<String>,
}

impl Default for GroupRules {
    fn default() -> Self {
        default_groups(0.0)
    }
}

/// [`GroupRules`] with the given weight decay for ndim >= 2 parameters, no lr rules, nothing frozen.
pub fn default_groups(weight_decay: f64) -> GroupRules {
    GroupRules { weight_decay, lr_mult: Vec::new(), freeze: Vec::new() }
}

impl GroupRules {
    /// Adds a rule: parameters named `prefix…` train with `lr_mult` times the learning rate.
    pub fn with_lr_mult(mut self, prefix: impl Into<String>, lr_mult: f64) -> Self {
        self.lr_mult.push(LrMultRule { prefix: prefix.into(), lr_mult });
        self
    }

    /// Freezes parameters named `prefix…`.
    pub fn with_frozen(mut self, prefix: impl Into<String>) -> Self {
        self.freeze.push(prefix.into());
        self
    }

    /// Rejects negative or non-finite values, naming the offending field.
    pub fn validate(&self) -> pt_sdk::Result<()> {
        if !(self.weight_decay.is_finite() && self.weight_decay >= 0.0) {
            pt_sdk::bail!(Config, "weight_decay must be a finite number >= 0, got {}", self.weight_decay);
        }
        for rule in &self.lr_mult {
            if !(rule.lr_mult.is_finite() && rule.lr_mult >= 0.0) {
                pt_sdk::bail!(
                    Config,
                    "lr_mult for prefix `{}` must be a finite number >= 0, got {}",
                    rule.prefix,
                    rule.lr_mult
                );
            }
        }
        Ok(())
    }
}

impl Grouping for GroupRules {
    fn assign(&self, name: &str, shape: &[i64]) -> Assignment {
        if self.freeze.iter().any(|p| name.starts_with(p.as_str())) {
            return Assignment::Frozen;
        }
        let matrix = shape.len() >= 2;
        let base = if matrix { "decay" } else { "no_decay" };
        let rule = self.lr_mult.iter().find(|r| name.starts_with(r.prefix.as_str()));
        Assignment::Train(ParamGroup {
            name: match rule {
                Some(r) => format!("{base}@{}", r.prefix),
                None => base.to_string(),
            },
            lr_mult: rule.map_or(1.0, |r| r.lr_mult),
            weight_decay: if matrix { self.weight_decay } else { 0.0 },
            lars_exclude: !matrix,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_rules_split_by_ndim_and_apply_prefixes() {
        let rules = default_groups(0.05).with_lr_mult("encoder.", 0.1).with_frozen("embeddings.");
        assert_eq!(rules.assign("embeddings.word", &[10, 4]), Assignment::Frozen);
        let Assignment::Train(g) = rules.assign("encoder.layer0.weight", &[4, 4]) else { panic!() };
        assert_eq!((g.name.as_str(), g.lr_mult, g.weight_decay, g.lars_exclude), ("decay@encoder.", 0.1, 0.05, false));
        let Assignment::Train(g) = rules.assign("head.bias", &[4]) else { panic!() };
        assert_eq!((g.name.as_str(), g.lr_mult, g.weight_decay, g.lars_exclude), ("no_decay", 1.0, 0.0, true));
        let Assignment::Train(g) = rules.assign("scale", &[]) else { panic!() };
        assert!(g.lars_exclude && g.weight_decay == 0.0);
    }

    #[test]
    fn rules_parse_from_toml_and_reject_bad_values() {
        let rules: GroupRules =
            toml::from_str("weight_decay = 0.01\nfreeze = [\"a.\"]\n[[lr_mult]]\nprefix = \"enc.\"\nlr_mult = 0.5\n")
                .unwrap();
        assert_eq!(rules, default_groups(0.01).with_lr_mult("enc.", 0.5).with_frozen("a."));
        assert!(default_groups(-1.0).validate().unwrap_err().message.contains("weight_decay"));
        assert!(toml::from_str::<GroupRules>("weight_decai = 0.1").is_err());
    }
}
