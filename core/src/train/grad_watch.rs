//! Parameters that never get a gradient: the silent traps of a new plugin. An objective whose
//! `parameters()` returns copies (or detached tensors) of what its loss computes with trains
//! nothing, though its loss may still fall; an architecture's head that no objective reads
//! stays as initialised. Both show as a gradient that is exactly zero in every one of the first
//! few steps (a few, not one: a zero-initialised layer, such as a residual branch's last
//! BatchNorm scale, blocks the gradient upstream of it until its first update).

use pt_optim::FlatParams;
use tch::Tensor;

/// Steps (with a learning rate above zero) over which a parameter must get some gradient.
const WATCHED_STEPS: u32 = 3;

pub(super) struct GradWatch {
    /// Per parameter segment: a non-zero gradient seen so far (on the device: no sync per step).
    seen: Option<Tensor>,
    steps_left: u32,
}

impl GradWatch {
    pub(super) fn new() -> Self {
        GradWatch { seen: None, steps_left: WATCHED_STEPS }
    }

    /// Watches no more.
    pub(super) fn stop(&mut self) {
        self.steps_left = 0;
        self.seen = None;
    }

    /// Called after a finite step's gradients are complete (before they are zeroed). Returns,
    /// once, the names of the parameters whose gradient was zero in every watched step.
    pub(super) fn observe(&mut self, flat: &FlatParams) -> Result<Option<Vec<String>>, tch::TchError> {
        if self.steps_left == 0 || flat.segments().is_empty() {
            return Ok(None);
        }
        let (_, grads) = flat.params_and_grad_views();
        let nonzero: Vec<Tensor> = grads.iter().map(|g| g.f_ne(0.0)?.f_any()).collect::<Result<_, _>>()?;
        let now = Tensor::f_stack(&nonzero, 0)?;
        let seen = match self.seen.take() {
            Some(before) => before.f_logical_or(&now)?,
            None => now,
        };
        self.steps_left -= 1;
        if self.steps_left > 0 {
            self.seen = Some(seen);
            return Ok(None);
        }
        let seen: Vec<bool> = Vec::try_from(seen.f_to_device(tch::Device::Cpu)?)?;
        let idle = flat.segments().iter().zip(seen).filter(|(_, s)| !s).map(|(seg, _)| seg.name.clone()).collect();
        Ok(Some(idle))
    }
}

/// `names` for one line: up to four, then how many in all.
pub(super) fn shortlist(names: &[String]) -> String {
    let shown: Vec<&str> = names.iter().take(4).map(String::as_str).collect();
    match names.len() {
        n if n > 4 => format!("{} … ({n} in all)", shown.join(", ")),
        _ => shown.join(", "),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_parameter_without_gradient_in_every_watched_step_is_named() {
        let used = Tensor::ones([2], (tch::Kind::Float, tch::Device::Cpu));
        let idle = Tensor::ones([3], (tch::Kind::Float, tch::Device::Cpu));
        let flat = FlatParams::new(
            vec![("used".into(), used.shallow_clone()), ("idle".into(), idle.shallow_clone())],
            &pt_optim::default_groups(0.0),
        )
        .unwrap();
        let mut watch = GradWatch::new();
        for step in 0..WATCHED_STEPS {
            // `used` gets a gradient only in the last step (as behind a zero-initialised layer).
            let scale = if step + 1 == WATCHED_STEPS { 1.0 } else { 0.0 };
            (used.sum(tch::Kind::Float) * scale).backward();
            let found = watch.observe(&flat).unwrap();
            assert_eq!(found.is_some(), step + 1 == WATCHED_STEPS);
            if let Some(idle_names) = found {
                assert_eq!(idle_names, ["idle"]);
            }
            flat.zero_grad().unwrap();
        }
        assert_eq!(watch.observe(&flat).unwrap(), None, "reported once");
        assert_eq!(shortlist(&(0..6).map(|i| format!("p{i}")).collect::<Vec<_>>()), "p0, p1, p2, p3 … (6 in all)");
    }
}
