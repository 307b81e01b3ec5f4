// PyTorch's fused optimizer kernels (`torch.optim.AdamW(fused=True)`, `SGD(fused=True)`), which
// tch 0.24 does not bind: one pass over parameters, gradients and state per call, on the CPU and
// on CUDA. `grad_scale` divides the gradients first (pt folds global-norm clipping into it);
// `found_inf` = 1 leaves everything untouched (a skipped step decided on the device, read by no
// one on the host). Every C++ exception is caught: one reaching Rust would abort the process.
#include <ATen/ATen.h>

#include <cstddef>
#include <optional>

#include "shim_error.h"

namespace {

std::optional<at::Tensor> maybe(const at::Tensor* t) {
  return t == nullptr ? std::nullopt : std::optional<at::Tensor>(*t);
}

}  // namespace

// `step` is a 0-dim float32 tensor on the parameters' device, already counting this step (the
// kernel reads it for bias correction and does not advance it).
extern "C" int pt_fused_adamw(const at::Tensor* param, const at::Tensor* grad, const at::Tensor* exp_avg,
                              const at::Tensor* exp_avg_sq, const at::Tensor* step, double lr, double beta1,
                              double beta2, double weight_decay, double eps, const at::Tensor* grad_scale,
                              const at::Tensor* found_inf, char* err, size_t err_len) {
  return pt_shim::guarded(err, err_len, [&] {
    at::_fused_adamw_({*param}, {*grad}, {*exp_avg}, {*exp_avg_sq}, {}, {*step}, lr, beta1, beta2, weight_decay, eps,
                      /*amsgrad=*/false, /*maximize=*/false, maybe(grad_scale), maybe(found_inf));
  });
}

// `momentum_buffer` is null without momentum. The buffer starts at zero and is always updated as
// `momentum * buf + grad`, which equals PyTorch's first-step copy of the gradient (dampening 0).
extern "C" int pt_fused_sgd(const at::Tensor* param, const at::Tensor* grad, const at::Tensor* momentum_buffer,
                            double weight_decay, double momentum, double lr, int nesterov,
                            const at::Tensor* grad_scale, const at::Tensor* found_inf, char* err, size_t err_len) {
  return pt_shim::guarded(err, err_len, [&] {
    std::vector<at::Tensor> buffers;
    if (momentum_buffer != nullptr) buffers.push_back(*momentum_buffer);
    at::_fused_sgd_({*param}, {*grad}, buffers, weight_decay, momentum, lr, /*dampening=*/0.0, nesterov != 0,
                    /*maximize=*/false, /*is_first_step=*/false, maybe(grad_scale), maybe(found_inf));
  });
}
