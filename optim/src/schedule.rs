//! Learning-rate schedules: linear warmup, then constant / linear / cosine / polynomial decay
//! to `min_lr_ratio * base_lr`, over the whole run or only its last `decay_ratio` (warmup-stable-
//! decay). A pure function of the step, so resuming needs only the step.

use pt_sdk::{bail, Result};
use serde::{Deserialize, Serialize};

/// What follows the warmup.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Decay {
    #[default]
    Constant,
    Linear,
    Cosine,
    /// `(1 - progress)^power`.
    Polynomial,
}

/// In TOML, e.g. `[schedule]` `decay = "cosine"`, `warmup_ratio = 0.06`, `min_lr_ratio = 0.1`.
/// The default is a constant learning rate with no warmup.
///
/// Matches Hugging Face's `get_{constant,linear,cosine,polynomial_decay}_schedule_with_warmup`
/// (cosine with `num_cycles = 0.5`; cosine and polynomial with a minimum as
/// `get_cosine_with_min_lr_schedule_with_warmup(min_lr_rate)` and `lr_end = min_lr_ratio * lr`).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ScheduleConfig {
    /// `constant` (default), `linear`, `cosine` or `polynomial`.
    pub decay: Decay,
    /// Steps of linear warmup from 0 to the base learning rate.
    pub warmup_steps: u64,
    /// Warmup as a fraction of the total steps (rounded up); use this or `warmup_steps`.
    pub warmup_ratio: f64,
    /// The decay ends at `min_lr_ratio * base_lr`. Default 0.
    pub min_lr_ratio: f64,
    /// Exponent of the polynomial decay (1 = linear). Default 1.
    pub power: f64,
    /// The decay takes the last `decay_ratio` of the run (rounded up); until then the rate stays
    /// at its peak after the warmup (warmup-stable-decay, Hägele et al. 2024,
    /// <https://arxiv.org/abs/2405.18392>; torchtitan's `decay_ratio`). Default 1: the decay
    /// starts right after the warmup.
    pub decay_ratio: f64,
}

impl Default for ScheduleConfig {
    fn default() -> Self {
        ScheduleConfig {
            decay: Decay::Constant,
            warmup_steps: 0,
            warmup_ratio: 0.0,
            min_lr_ratio: 0.0,
            power: 1.0,
            decay_ratio: 1.0,
        }
    }
}

impl ScheduleConfig {
    /// Rejects values out of range, naming the field.
    pub fn validate(&self) -> Result<()> {
        if !(self.warmup_ratio.is_finite() && (0.0..=1.0).contains(&self.warmup_ratio)) {
            bail!(Config, "warmup_ratio must be in [0, 1], got {}", self.warmup_ratio);
        }
        if self.warmup_steps > 0 && self.warmup_ratio > 0.0 {
            bail!(Config, "set warmup_steps or warmup_ratio, not both");
        }
        if !(self.min_lr_ratio.is_finite() && (0.0..=1.0).contains(&self.min_lr_ratio)) {
            bail!(Config, "min_lr_ratio must be in [0, 1], got {}", self.min_lr_ratio);
        }
        if !(self.power.is_finite() && self.power > 0.0) {
            bail!(Config, "power must be a finite number > 0, got {}", self.power);
        }
        if self.power != 1.0 && self.decay != Decay::Polynomial {
            bail!(Config, "power only applies to decay = \"polynomial\" (decay is {:?})", self.decay);
        }
        if !(self.decay_ratio.is_finite() && self.decay_ratio > 0.0 && self.decay_ratio <= 1.0) {
            bail!(Config, "decay_ratio must be in (0, 1], got {}", self.decay_ratio);
        }
        if self.decay_ratio != 1.0 && self.decay == Decay::Constant {
            bail!(Config, "decay_ratio needs a decay: set decay = \"linear\", \"cosine\" or \"polynomial\"");
        }
        Ok(())
    }

    /// The key that needs the run's length in steps, if any: a decay, or a warmup given as a
    /// ratio. A run that stops only on a time budget cannot resolve either.
    pub fn length_dependent_key(&self) -> Option<&'static str> {
        if self.decay != Decay::Constant {
            Some("decay")
        } else if self.warmup_ratio > 0.0 {
            Some("warmup_ratio")
        } else {
            None
        }
    }

    /// Warmup length for a run of `total_steps`.
    pub fn warmup_steps(&self, total_steps: u64) -> u64 {
        if self.warmup_steps > 0 {
            self.warmup_steps
        } else {
            (self.warmup_ratio * total_steps as f64).ceil() as u64
        }
    }

    /// The step where the decay begins: the last `decay_ratio` of the run, or the warmup's end
    /// when that window would reach into the warmup.
    pub fn decay_start(&self, total_steps: u64) -> u64 {
        let window = (self.decay_ratio * total_steps as f64).ceil() as u64;
        self.warmup_steps(total_steps).max(total_steps.saturating_sub(window))
    }

    /// The multiplier of the base learning rate for the optimizer step with 0-based index
    /// `step` (the number of steps already taken), as LambdaLR's `lr_lambda(step)`: warmup
    /// starts at 0, and from `total_steps` on the decays stay at `min_lr_ratio`.
    pub fn factor_at(&self, step: u64, total_steps: u64) -> f64 {
        let warmup = self.warmup_steps(total_steps);
        if step < warmup {
            return step as f64 / warmup.max(1) as f64;
        }
        let decay_start = self.decay_start(total_steps);
        if step < decay_start {
            return 1.0;
        }
        let progress = ((step - decay_start) as f64 / total_steps.saturating_sub(decay_start).max(1) as f64).min(1.0);
        let remaining = match self.decay {
            Decay::Constant => return 1.0,
            Decay::Linear => 1.0 - progress,
            Decay::Cosine => 0.5 * (1.0 + (std::f64::consts::PI * progress).cos()),
            Decay::Polynomial => (1.0 - progress).powf(self.power),
        };
        self.min_lr_ratio + (1.0 - self.min_lr_ratio) * remaining
    }

    /// The learning rate for step `step` (0-based) of `total_steps`.
    pub fn lr_at(&self, step: u64, total_steps: u64, base_lr: f64) -> f64 {
        base_lr * self.factor_at(step, total_steps)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn warmup_then_decays_hit_their_end_points() {
        let cfg = |decay, min| ScheduleConfig { decay, warmup_steps: 10, min_lr_ratio: min, ..Default::default() };
        for decay in [Decay::Linear, Decay::Cosine, Decay::Polynomial] {
            let c = cfg(decay, 0.1);
            assert_eq!(c.lr_at(0, 110, 2.0), 0.0);
            assert_eq!(c.lr_at(5, 110, 2.0), 1.0);
            assert_eq!(c.lr_at(10, 110, 2.0), 2.0);
            assert!((c.lr_at(110, 110, 2.0) - 0.2).abs() < 1e-12, "{decay:?}");
            assert!((c.lr_at(500, 110, 2.0) - 0.2).abs() < 1e-12, "{decay:?}");
            assert!((c.lr_at(60, 110, 2.0) - 2.0 * (0.1 + 0.9 * 0.5)).abs() < 1e-12, "{decay:?} midpoint");
        }
        assert_eq!(ScheduleConfig::default().lr_at(7, 0, 3.0), 3.0);
        assert_eq!(cfg(Decay::Constant, 0.0).lr_at(1000, 10, 3.0), 3.0);
    }

    #[test]
    fn warmup_ratio_rounds_up_and_configs_validate() {
        let c: ScheduleConfig = toml::from_str("decay = \"cosine\"\nwarmup_ratio = 0.06").unwrap();
        assert_eq!(c.warmup_steps(1000), 60);
        assert_eq!(c.warmup_steps(10), 1);
        c.validate().unwrap();
        let both = ScheduleConfig { warmup_steps: 5, warmup_ratio: 0.1, ..Default::default() };
        assert!(both.validate().unwrap_err().message.contains("warmup_steps"));
        let bad: ScheduleConfig = toml::from_str("min_lr_ratio = 2.0").unwrap();
        assert!(bad.validate().unwrap_err().message.contains("min_lr_ratio"));
        assert!(toml::from_str::<ScheduleConfig>("decay = \"exponential\"").is_err());
        assert!(toml::from_str::<ScheduleConfig>("warmup = 3").is_err());
    }

    #[test]
    fn warmup_stable_decay_holds_the_peak_until_the_last_decay_ratio() {
        let c: ScheduleConfig = toml::from_str("decay = \"linear\"\nwarmup_steps = 10\ndecay_ratio = 0.2").unwrap();
        c.validate().unwrap();
        assert_eq!(c.lr_at(5, 100, 2.0), 1.0);
        assert_eq!(c.lr_at(10, 100, 2.0), 2.0);
        assert_eq!(c.lr_at(79, 100, 2.0), 2.0);
        assert_eq!(c.lr_at(80, 100, 2.0), 2.0);
        assert!((c.lr_at(90, 100, 2.0) - 1.0).abs() < 1e-12);
        assert_eq!(c.lr_at(100, 100, 2.0), 0.0);
        // A window reaching into the warmup decays from the warmup's end, as decay_ratio = 1.
        let long = ScheduleConfig { decay_ratio: 0.95, ..c.clone() };
        let whole = ScheduleConfig { decay_ratio: 1.0, ..c.clone() };
        for step in [10, 40, 99] {
            assert_eq!(long.lr_at(step, 100, 2.0), whole.lr_at(step, 100, 2.0));
        }
        assert!(ScheduleConfig { decay_ratio: 0.0, ..c.clone() }
            .validate()
            .unwrap_err()
            .message
            .contains("decay_ratio"));
        let constant = ScheduleConfig { decay: Decay::Constant, ..c };
        assert!(constant.validate().unwrap_err().message.contains("needs a decay"));
    }
}
