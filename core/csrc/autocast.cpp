// pt's autocast shim: what tch 0.24's C API lacks, reached in libtorch itself. tch can neither
// choose the autocast dtype (its autocast uses the device default, fp16 on CUDA) nor enable
// autocast without deprecated calls that warn on every use. Autocast state is per thread.
// Every entry point catches C++ exceptions: one reaching Rust would abort the process.
#include <ATen/autocast_mode.h>

#include <cstddef>

#include "shim_error.h"

namespace {

at::DeviceType device_type(int device) { return device == 1 ? at::kCUDA : at::kCPU; }

}  // namespace

// Enables bf16 autocast on `device` (0 CPU, 1 CUDA) for this thread; `previous` receives whether
// it was enabled before, for pt_autocast_exit.
extern "C" int pt_autocast_enter(int device, int* previous, char* err, size_t err_len) {
  return pt_shim::guarded(err, err_len, [&] {
    const auto type = device_type(device);
    *previous = at::autocast::is_autocast_enabled(type) ? 1 : 0;
    at::autocast::set_autocast_dtype(type, at::kBFloat16);
    at::autocast::set_autocast_enabled(type, true);
    at::autocast::increment_nesting();
  });
}

// Restores the state before the matching pt_autocast_enter; the outermost exit drops the cache
// of bf16 weight copies, as torch.autocast's __exit__ does.
extern "C" int pt_autocast_exit(int device, int previous, char* err, size_t err_len) {
  return pt_shim::guarded(err, err_len, [&] {
    at::autocast::set_autocast_enabled(device_type(device), previous != 0);
    if (at::autocast::decrement_nesting() == 0) {
      at::autocast::clear_cache();
    }
  });
}

// 1 when autocast is enabled on `device` for this thread.
extern "C" int pt_autocast_is_enabled(int device) {
  try {
    return at::autocast::is_autocast_enabled(device_type(device)) ? 1 : 0;
  } catch (...) {
    return 0;
  }
}
