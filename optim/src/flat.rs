//! [`FlatParams`]: every trainable parameter (and its gradient) as a view of one contiguous
//! float32 buffer, so optimizers and clipping run a few large kernels instead of one per tensor.

use crate::groups::{Assignment, Grouping, ParamGroup};
use pt_sdk::{bail, PtError, Result};
use std::collections::HashMap;
use std::ops::Range;
use tch::{Device, Kind, Tensor};

/// Every segment starts at a multiple of this many elements (256 bytes), so each parameter
/// view is as aligned as a freshly allocated tensor (cuBLAS/cuDNN pick slower paths otherwise).
/// The padding is zero in the parameters and the gradients and therefore never moves.
pub const SEGMENT_ALIGN: i64 = 64;

/// Where one parameter lives in the flat buffer.
#[derive(Clone, Debug, PartialEq)]
pub struct Segment {
    pub name: String,
    /// First element in the flat buffer.
    pub offset: i64,
    pub numel: i64,
    /// Elements reserved for it: `numel` rounded up to [`SEGMENT_ALIGN`].
    pub span: i64,
    pub shape: Vec<i64>,
    /// Strides of the view: the parameter's own when it was dense (e.g. channels_last),
    /// contiguous otherwise. Elements are stored in memory order.
    pub strides: Vec<i64>,
    /// Index into [`FlatParams::groups`].
    pub group: usize,
}

impl Segment {
    /// Its view has row-major strides.
    pub fn is_contiguous(&self) -> bool {
        let mut expected = 1;
        for (size, stride) in self.shape.iter().zip(&self.strides).rev() {
            if *size != 1 && *stride != expected {
                return false;
            }
            expected *= size;
        }
        true
    }
}

/// One parameter group and the contiguous slice of the buffer it owns.
#[derive(Clone, Debug, PartialEq)]
pub struct GroupSlice {
    pub group: ParamGroup,
    pub offset: i64,
    /// Elements, padding included.
    pub len: i64,
    /// Its parameters: indices into [`FlatParams::segments`].
    pub segments: Range<usize>,
}

/// Trainable parameters re-pointed into one flat float32 buffer, with a matching flat gradient
/// buffer that the parameters' `.grad` tensors are views of.
///
/// Construction copies each parameter into its slice and calls `set_data` on the caller's tensor
/// (the same `TensorImpl` the model holds, even in another shared object), so the model computes
/// with views of the buffer and autograd still treats each parameter as a leaf. Each parameter's
/// `.grad` is likewise re-pointed at a view of the gradient buffer; backward then accumulates
/// into it in place, and [`FlatParams::flat_grad`] is free.
///
/// Flatten after the model has been moved to its final device and dtype: moving it later gives
/// its parameters new storage, which [`FlatParams::flat_grad`] reports as an error.
pub struct FlatParams {
    buffer: Tensor,
    grad: Tensor,
    /// The caller's tensors (shallow clones: same `TensorImpl`), in segment order.
    params: Vec<Tensor>,
    param_views: Vec<Tensor>,
    grad_views: Vec<Tensor>,
    segments: Vec<Segment>,
    groups: Vec<GroupSlice>,
    frozen: Vec<String>,
    aliases: Vec<(String, String)>,
    /// The aliases' tensors and their owners' segments: a tensor that shares an earlier one's
    /// storage, possibly another `TensorImpl` (parameters tied across architectures).
    alias_params: Vec<(Tensor, usize)>,
    fingerprint: i64,
}

struct Pending {
    name: String,
    tensor: Tensor,
    shape: Vec<i64>,
    /// Strides of the view in the buffer.
    strides: Vec<i64>,
    /// Strides the caller's tensor had (to recognise the same tensor passed twice).
    original_strides: Vec<i64>,
    numel: i64,
    group: usize,
}

impl FlatParams {
    /// Flattens `params` (name, tensor) — all float32 leaf tensors on one device — assigning
    /// each to a group with `grouping`. Frozen parameters get `requires_grad = false` and stay
    /// where they are; trainable ones get `requires_grad = true`. A tensor passed under two
    /// names (tied weights) is flattened once, under its first name.
    ///
    /// A different tensor that shares storage with an earlier one (same shape and strides) is
    /// tied to it the same way: it is re-pointed at the same slice and its `.grad` at the same
    /// gradient slice, so backward sums both tensors' gradients there.
    ///
    /// Existing gradients are kept (an alias's own is dropped); parameters without one get a
    /// zero gradient.
    pub fn new(params: Vec<(String, Tensor)>, grouping: &dyn Grouping) -> Result<FlatParams> {
        let mut groups: Vec<ParamGroup> = Vec::new();
        let mut group_index: HashMap<String, usize> = HashMap::new();
        let mut pending: Vec<Pending> = Vec::new();
        let mut frozen = Vec::new();
        let mut aliases = Vec::new();
        let mut alias_pending: Vec<(Tensor, usize)> = Vec::new();
        let mut by_ptr: HashMap<usize, usize> = HashMap::new();
        let mut device: Option<Device> = None;

        for (name, tensor) in params {
            if !tensor.defined() {
                bail!(Shape, "parameter `{name}` is an undefined tensor");
            }
            let shape = tensor.size();
            let group = match grouping.assign(&name, &shape) {
                Assignment::Frozen => {
                    let _ = tensor.f_set_requires_grad(false)?;
                    frozen.push(name);
                    continue;
                }
                Assignment::Train(group) => group,
            };
            if tensor.kind() != Kind::Float {
                bail!(
                    Shape,
                    "parameter `{name}` is {:?}, but flat optimizers keep float32 master weights; \
                     convert the model to float32 (use autocast for bf16 compute)",
                    tensor.kind()
                );
            }
            match device {
                None => device = Some(tensor.device()),
                Some(d) if d != tensor.device() => bail!(
                    Shape,
                    "parameter `{name}` is on {:?} but earlier parameters are on {d:?}; \
                     move the whole model to one device before flattening",
                    tensor.device()
                ),
                Some(_) => {}
            }
            if !tensor.is_leaf() {
                bail!(
                    Shape,
                    "parameter `{name}` is not a leaf tensor (it was computed from other tensors); \
                     pass the model's parameters themselves"
                );
            }
            let numel = shape.iter().product::<i64>();
            let strides = tensor.stride();
            if numel > 0 {
                let ptr = tensor.data_ptr() as usize;
                if let Some(&first) = by_ptr.get(&ptr) {
                    let other: &Pending = &pending[first];
                    if other.shape == shape && other.original_strides == strides {
                        tracing::debug!(alias = %name, of = %other.name, "tied parameter flattened once");
                        aliases.push((name, other.name.clone()));
                        alias_pending.push((tensor, first));
                        continue;
                    }
                    bail!(
                        Shape,
                        "parameters `{}` and `{name}` share memory with different shapes; \
                         flattening would break one of them",
                        other.name
                    );
                }
                by_ptr.insert(ptr, pending.len());
            }
            let group = match group_index.get(&group.name) {
                Some(&i) => {
                    if groups[i] != group {
                        bail!(
                            Config,
                            "parameter group `{}` was given different settings for `{name}` \
                             ({group:?}) than before ({:?}); give each setting its own group name",
                            group.name,
                            groups[i]
                        );
                    }
                    i
                }
                None => {
                    group_index.insert(group.name.clone(), groups.len());
                    groups.push(group);
                    groups.len() - 1
                }
            };
            let view_strides = dense_strides(&shape, &strides).unwrap_or_else(|| contiguous_strides(&shape));
            pending.push(Pending {
                name,
                tensor,
                shape,
                strides: view_strides,
                original_strides: strides,
                numel,
                group,
            });
        }
        let Some(device) = device else {
            bail!(Config, "no trainable parameters ({} frozen); check the freeze rules", frozen.len());
        };

        // Group-major order so every group is one contiguous slice.
        let mut order: Vec<usize> = (0..pending.len()).collect();
        order.sort_by_key(|&i| pending[i].group); // stable: parameters keep their order within a group
        let mut segments = Vec::with_capacity(order.len());
        let mut slices: Vec<GroupSlice> =
            groups.iter().map(|g| GroupSlice { group: g.clone(), offset: 0, len: 0, segments: 0..0 }).collect();
        let mut cursor = 0i64;
        for (gi, slice) in slices.iter_mut().enumerate() {
            slice.offset = cursor;
            let first = segments.len();
            for &i in order.iter().filter(|&&i| pending[i].group == gi) {
                let p = &pending[i];
                let span = round_up(p.numel, SEGMENT_ALIGN);
                segments.push(Segment {
                    name: p.name.clone(),
                    offset: cursor,
                    numel: p.numel,
                    span,
                    shape: p.shape.clone(),
                    strides: p.strides.clone(),
                    group: gi,
                });
                cursor += span;
            }
            slice.len = cursor - slice.offset;
            slice.segments = first..segments.len();
        }
        let total = cursor;

        let buffer = Tensor::f_zeros([total], (Kind::Float, device))?;
        let grad = Tensor::f_zeros([total], (Kind::Float, device))?;
        let mut params = Vec::with_capacity(segments.len());
        let mut param_views = Vec::with_capacity(segments.len());
        let mut grad_views = Vec::with_capacity(segments.len());
        let mut pending: Vec<Option<Pending>> = pending.into_iter().map(Some).collect();
        for (seg, &i) in segments.iter().zip(&order) {
            let p = pending[i].take().ok_or_else(|| PtError::config("internal: parameter placed twice"))?;
            params.push(p.tensor);
            param_views.push(buffer.f_as_strided(&seg.shape[..], &seg.strides[..], seg.offset)?);
            grad_views.push(grad.f_as_strided(&seg.shape[..], &seg.strides[..], seg.offset)?);
        }

        {
            let _guard = tch::no_grad_guard();
            for ((param, view), seg) in params.iter_mut().zip(&param_views).zip(&segments) {
                let mut v = view.shallow_clone();
                v.f_copy_(param).map_err(|e| PtError::from(e).context(format!("copying `{}`", seg.name)))?;
                param.f_set_data(view).map_err(|e| PtError::from(e).context(format!("re-pointing `{}`", seg.name)))?;
                let _ = param.f_set_requires_grad(true)?;
            }
        }
        // Aliases: the owner's segment is where `order` put its pending entry.
        let mut segment_of = vec![0usize; order.len()];
        for (seg, &i) in order.iter().enumerate() {
            segment_of[i] = seg;
        }
        let alias_params: Vec<(Tensor, usize)> =
            alias_pending.into_iter().map(|(t, owner)| (t, segment_of[owner])).collect();
        {
            let _guard = tch::no_grad_guard();
            for (alias, seg) in &alias_params {
                let mut alias = alias.shallow_clone();
                alias.f_set_data(&param_views[*seg])?;
                let _ = alias.f_set_requires_grad(true)?;
            }
        }
        let names: Vec<&str> = segments.iter().map(|s| s.name.as_str()).collect();
        attach_grads(&params, &grad_views, &names, true)?;
        let (alias_tensors, alias_grads): (Vec<Tensor>, Vec<Tensor>) =
            alias_params.iter().map(|(t, seg)| (t.shallow_clone(), grad_views[*seg].shallow_clone())).unzip();
        let alias_names: Vec<&str> = alias_params.iter().map(|(_, seg)| names[*seg]).collect();
        attach_grads(&alias_tensors, &alias_grads, &alias_names, false)?;

        let fingerprint = layout_fingerprint(&segments, &slices);
        tracing::info!(
            parameters = segments.len(),
            elements = total,
            megabytes = (total * 4) as f64 / 1e6,
            groups = slices.len(),
            frozen = frozen.len(),
            tied = aliases.len(),
            "flattened trainable parameters"
        );
        for s in &slices {
            tracing::debug!(group = %s.group.name, parameters = s.segments.len(), elements = s.len,
                lr_mult = s.group.lr_mult, weight_decay = s.group.weight_decay, "parameter group");
        }
        Ok(FlatParams {
            buffer,
            grad,
            params,
            param_views,
            grad_views,
            segments,
            groups: slices,
            frozen,
            aliases,
            alias_params,
            fingerprint,
        })
    }

    /// The flat gradient: the buffer that every parameter's `.grad` is a view of (so in-place
    /// changes, e.g. clipping or an all-reduce, change the parameters' gradients too).
    ///
    /// Repairs what the in-place accumulation cannot see: a gradient that was replaced by a
    /// new tensor (e.g. by a `create_graph` backward) is copied in and re-pointed; an undefined
    /// one reads as zeros. Errors if a parameter no longer views the parameter buffer.
    pub fn flat_grad(&self) -> Result<Tensor> {
        let _guard = tch::no_grad_guard();
        for i in 0..self.params.len() {
            self.check_param(i)?;
            let mut g = self.params[i].f_grad()?;
            let mut view = self.grad_views[i].shallow_clone();
            if !g.defined() {
                let _ = view.f_zero_()?;
            } else if !g.f_is_set_to(&view)? {
                view.f_copy_(&g)?;
                g.f_set_data(&view)?;
            }
        }
        Ok(self.grad.shallow_clone())
    }

    /// Zeroes every gradient in place, with one kernel over the flat gradient buffer.
    /// Gradients are never set to undefined: they stay views of the buffer, which backward
    /// accumulates into in place.
    pub fn zero_grad(&self) -> Result<()> {
        let _guard = tch::no_grad_guard();
        let _ = self.grad.shallow_clone().f_zero_()?;
        let aliases = self.alias_params.iter().map(|(t, seg)| (t, &self.grad_views[*seg]));
        for (param, view) in self.params.iter().zip(&self.grad_views).chain(aliases) {
            let mut g = param.f_grad()?;
            if g.defined() && !g.f_is_set_to(view)? {
                g.f_set_data(view)?;
            }
        }
        Ok(())
    }

    fn check_param(&self, i: usize) -> Result<()> {
        if !self.params[i].f_is_set_to(&self.param_views[i])? {
            bail!(
                Shape,
                "parameter `{}` no longer views the flat parameter buffer (was the model moved to \
                 another device or dtype, or its weights replaced, after flattening?); flatten \
                 after the model is final",
                self.segments[i].name
            );
        }
        Ok(())
    }

    /// The parameters, one segment each, in buffer order.
    pub fn segments(&self) -> &[Segment] {
        &self.segments
    }

    /// The trainable parameters (the model's own tensors) and their gradients' views of the
    /// flat gradient buffer, in segment order (e.g. to hook gradient accumulation).
    pub fn params_and_grad_views(&self) -> (&[Tensor], &[Tensor]) {
        (&self.params, &self.grad_views)
    }

    /// The groups, in buffer order.
    pub fn groups(&self) -> &[GroupSlice] {
        &self.groups
    }

    /// The flat float32 parameter buffer, shape `[len]`.
    pub fn buffer(&self) -> &Tensor {
        &self.buffer
    }

    /// Elements in the buffer, padding included.
    pub fn len(&self) -> i64 {
        self.buffer.size()[0]
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Elements in the trainable parameters, padding excluded.
    pub fn num_params(&self) -> i64 {
        self.segments.iter().map(|s| s.numel).sum()
    }

    pub fn device(&self) -> Device {
        self.buffer.device()
    }

    /// Names of the frozen parameters.
    pub fn frozen(&self) -> &[String] {
        &self.frozen
    }

    /// `(alias, flattened name)` for tensors that were passed under more than one name.
    pub fn aliases(&self) -> &[(String, String)] {
        &self.aliases
    }

    /// A hash of names, shapes, offsets and groups: optimizer state saved for one layout is
    /// refused by another.
    pub fn fingerprint(&self) -> i64 {
        self.fingerprint
    }

    /// The fingerprint optimizer state saved by pt-optim 0.1.0 before channels_last carries for
    /// this same layout (its state is row-major, as [`FlatParams::to_canonical`] writes it).
    pub fn legacy_fingerprint(&self) -> i64 {
        fingerprint_of(&self.segments, &self.groups, true)
    }

    /// Copies a flat tensor (shape `[len]`, float32, any device) into the parameter buffer,
    /// e.g. weights restored from a checkpoint.
    pub fn load_flat(&self, flat: &Tensor) -> Result<()> {
        self.check_flat(flat, "load_flat")?;
        let _guard = tch::no_grad_guard();
        self.buffer.shallow_clone().f_copy_(flat)?;
        Ok(())
    }

    /// Per-parameter views `(name, tensor)` of a flat tensor laid out like the buffer — the
    /// parameters themselves for [`FlatParams::buffer`], or per-parameter optimizer moments.
    pub fn unflatten(&self, flat: &Tensor) -> Result<Vec<(String, Tensor)>> {
        self.check_flat(flat, "unflatten")?;
        let flat = flat.f_contiguous()?;
        self.segments
            .iter()
            .map(|s| Ok((s.name.clone(), flat.f_as_strided(&s.shape[..], &s.strides[..], s.offset)?)))
            .collect()
    }

    /// The inverse of [`FlatParams::unflatten`]: a new flat float32 tensor on the buffer's
    /// device from one tensor per parameter (by name; padding is zero).
    pub fn flatten(&self, named: &[(String, Tensor)]) -> Result<Tensor> {
        let by_name: HashMap<&str, &Tensor> = named.iter().map(|(n, t)| (n.as_str(), t)).collect();
        let flat = Tensor::f_zeros([self.len()], (Kind::Float, self.device()))?;
        let _guard = tch::no_grad_guard();
        for s in &self.segments {
            let Some(t) = by_name.get(s.name.as_str()) else {
                bail!(Shape, "flatten: no tensor for parameter `{}`", s.name);
            };
            if t.size() != s.shape {
                bail!(Shape, "flatten: `{}` has shape {:?}, expected {:?}", s.name, t.size(), s.shape);
            }
            flat.f_as_strided(&s.shape[..], &s.strides[..], s.offset)?.f_copy_(t)?;
        }
        Ok(flat)
    }

    /// `flat` (laid out like the buffer) with each parameter's elements in row-major order, as
    /// a contiguous tensor of its shape holds them: the same whatever the parameters' memory
    /// format, so optimizer state saved from a channels_last run restores into a contiguous one
    /// and back. Contiguous parameters are left as they are.
    pub fn to_canonical(&self, flat: &Tensor) -> Result<Tensor> {
        self.check_flat(flat, "to_canonical")?;
        if self.segments.iter().all(Segment::is_contiguous) {
            return Ok(flat.shallow_clone());
        }
        let _guard = tch::no_grad_guard();
        let out = flat.f_detach_copy()?;
        for s in self.segments.iter().filter(|s| !s.is_contiguous()) {
            let live = out.f_as_strided(&s.shape[..], &s.strides[..], s.offset)?.f_contiguous()?;
            out.f_narrow(0, s.offset, s.numel)?.f_copy_(&live.f_reshape([s.numel])?)?;
        }
        Ok(out)
    }

    /// The inverse of [`FlatParams::to_canonical`].
    pub fn from_canonical(&self, canonical: &Tensor) -> Result<Tensor> {
        self.check_flat(canonical, "from_canonical")?;
        if self.segments.iter().all(Segment::is_contiguous) {
            return Ok(canonical.shallow_clone());
        }
        let _guard = tch::no_grad_guard();
        let out = canonical.f_detach_copy()?;
        for s in self.segments.iter().filter(|s| !s.is_contiguous()) {
            let rows = canonical.f_narrow(0, s.offset, s.numel)?.f_reshape(&s.shape[..])?;
            out.f_as_strided(&s.shape[..], &s.strides[..], s.offset)?.f_copy_(&rows)?;
        }
        Ok(out)
    }

    fn check_flat(&self, flat: &Tensor, what: &str) -> Result<()> {
        if flat.size() != [self.len()] || flat.kind() != Kind::Float {
            bail!(
                Shape,
                "{what}: expected a float32 tensor of shape [{}], got {:?} {:?}",
                self.len(),
                flat.kind(),
                flat.size()
            );
        }
        Ok(())
    }
}

/// Makes every parameter's `.grad` a view of the gradient buffer. tch cannot assign `.grad`,
/// so parameters without one first get one from a throwaway backward; `set_data` on the grad
/// tensor (shared with autograd) then re-points it.
/// With `keep_existing`, a gradient a parameter already had is copied into its view.
fn attach_grads(params: &[Tensor], grad_views: &[Tensor], names: &[&str], keep_existing: bool) -> Result<()> {
    let mut had_grad = Vec::with_capacity(params.len());
    let mut missing: Vec<&Tensor> = Vec::new();
    for p in params {
        let has = p.f_grad()?.defined();
        had_grad.push(has);
        if !has {
            missing.push(p);
        }
    }
    if !missing.is_empty() {
        tch::with_grad(|| -> Result<()> {
            let mut total: Option<Tensor> = None;
            for p in &missing {
                let s = p.f_sum(None::<Kind>)?;
                total = Some(match total {
                    None => s,
                    Some(t) => t.f_add(&s)?,
                });
            }
            if let Some(t) = total {
                t.f_backward()?;
            }
            Ok(())
        })?;
    }
    let _guard = tch::no_grad_guard();
    for (((p, view), had), name) in params.iter().zip(grad_views).zip(had_grad).zip(names) {
        let mut g = p.f_grad()?;
        if !g.defined() {
            bail!(Torch, "parameter `{name}` got no gradient from the set-up backward pass");
        }
        if had && keep_existing {
            view.shallow_clone().f_copy_(&g)?;
        }
        g.f_set_data(view)?;
    }
    Ok(())
}

fn round_up(n: i64, to: i64) -> i64 {
    (n + to - 1) / to * to
}

fn contiguous_strides(shape: &[i64]) -> Vec<i64> {
    let mut strides = vec![1i64; shape.len()];
    for d in (0..shape.len().saturating_sub(1)).rev() {
        strides[d] = strides[d + 1] * shape[d + 1].max(1);
    }
    strides
}

/// `strides` if they describe a non-overlapping, gap-free layout (contiguous, channels_last,
/// any permutation), so the view keeps the parameter's memory format.
fn dense_strides(shape: &[i64], strides: &[i64]) -> Option<Vec<i64>> {
    if shape.contains(&0) {
        return None;
    }
    let mut dims: Vec<(i64, i64)> =
        shape.iter().zip(strides).filter(|(&size, _)| size > 1).map(|(&size, &stride)| (stride, size)).collect();
    dims.sort_unstable();
    let mut expected = 1i64;
    for (stride, size) in dims {
        if stride != expected {
            return None;
        }
        expected *= size;
    }
    Some(strides.to_vec())
}

/// FNV-1a over the layout; stable across runs and platforms.
fn layout_fingerprint(segments: &[Segment], groups: &[GroupSlice]) -> i64 {
    fingerprint_of(segments, groups, false)
}

/// Hashes names, shapes, offsets and groups. Not the strides: state is saved in row-major order
/// (`to_canonical`), so a change of memory format keeps the layout. `with_row_major_strides`
/// gives the hash of pt-optim before that (it hashed the strides, always row-major then), which
/// state saved by it carries.
fn fingerprint_of(segments: &[Segment], groups: &[GroupSlice], with_row_major_strides: bool) -> i64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    let mut eat = |bytes: &[u8]| {
        for &b in bytes {
            h ^= u64::from(b);
            h = h.wrapping_mul(0x0000_0100_0000_01b3);
        }
    };
    for s in segments {
        eat(s.name.as_bytes());
        eat(&[0]);
        let strides = if with_row_major_strides { row_major_strides(&s.shape) } else { Vec::new() };
        for d in s.shape.iter().chain(&strides).chain([&s.offset]) {
            eat(&d.to_le_bytes());
        }
        eat(groups[s.group].group.name.as_bytes());
        eat(&[0]);
    }
    h as i64
}

fn row_major_strides(shape: &[i64]) -> Vec<i64> {
    let mut strides = vec![1; shape.len()];
    for i in (0..shape.len().saturating_sub(1)).rev() {
        strides[i] = strides[i + 1] * shape[i + 1].max(1);
    }
    strides
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dense_strides_accepts_permutations_only() {
        assert_eq!(dense_strides(&[2, 3], &[3, 1]), Some(vec![3, 1]));
        // channels_last [N, C, H, W]
        assert_eq!(dense_strides(&[4, 3, 2, 2], &[12, 1, 6, 3]), Some(vec![12, 1, 6, 3]));
        assert_eq!(dense_strides(&[2, 3], &[1, 2]), Some(vec![1, 2]));
        assert_eq!(dense_strides(&[2, 3], &[6, 1]), None); // gaps
        assert_eq!(dense_strides(&[2, 3], &[0, 1]), None); // expanded
        assert_eq!(contiguous_strides(&[4, 3, 2]), vec![6, 2, 1]);
        assert_eq!(contiguous_strides(&[]), Vec::<i64>::new());
        assert_eq!(round_up(65, 64), 128);
        assert_eq!(round_up(0, 64), 0);
    }
}
