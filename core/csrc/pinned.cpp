// Page-locked copies of host tensors for the loader thread. tch 0.24 can only call
// `Tensor::pin_memory(device)`, whose device argument libtorch 2.11 deprecates with a warning on
// every call (thousands a run); the argument-free overload pins for the current accelerator.
// Catches every C++ exception: one reaching Rust would abort the process.
#include <ATen/ATen.h>

#include <cstddef>

#include "shim_error.h"


// `*out` receives a new owning handle (tch's `at::Tensor*` layout) to a pinned copy of `*src`,
// or `src` itself shared when it is already pinned.
extern "C" int pt_pin_memory(const at::Tensor* src, at::Tensor** out, char* err, size_t err_len) {
  return pt_shim::guarded(err, err_len, [&] { *out = new at::Tensor(src->is_pinned() ? *src : src->pin_memory()); });
}
