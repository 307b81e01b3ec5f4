// PyTorch's profiler (Kineto) for a few training steps: CPU ops, and CUDA kernels where there
// is a GPU, written as a Chrome trace (what torch.profiler's export_chrome_trace writes; opens in
// Perfetto, chrome://tracing or TensorBoard). Each step is a named range in the trace. Every C++
// exception is caught: one reaching Rust would abort the process.
#include <ATen/ATen.h>
#include <ATen/record_function.h>
#include <torch/csrc/autograd/profiler_kineto.h>

#include <cstddef>
#include <set>
#include <string>

#include "shim_error.h"

namespace prof = torch::autograd::profiler;
using torch::profiler::impl::ActivityType;
using torch::profiler::impl::ProfilerConfig;
using torch::profiler::impl::ProfilerState;

namespace {

std::set<ActivityType> activities(int cuda) {
  std::set<ActivityType> a{ActivityType::CPU};
  if (cuda != 0) a.insert(ActivityType::CUDA);
  return a;
}

ProfilerConfig config() {
  return ProfilerConfig(ProfilerState::KINETO, /*report_input_shapes=*/true, /*profile_memory=*/false,
                        /*with_stack=*/false, /*with_flops=*/true);
}

}  // namespace

extern "C" int pt_profiler_start(int cuda, char* err, size_t err_len) {
  return pt_shim::guarded(err, err_len, [&] {
    prof::prepareProfiler(config(), activities(cuda));
    prof::enableProfiler(config(), activities(cuda));
  });
}

// Stops the profiler and writes its trace to `path`.
extern "C" int pt_profiler_stop(const char* path, char* err, size_t err_len) {
  return pt_shim::guarded(err, err_len, [&] {
    auto result = prof::disableProfiler();
    if (result && path[0] != '\0') result->save(path);
  });
}

// A named range (e.g. `pt::step 10`) from `pt_range_begin` to `pt_range_end`; recorded only
// while the profiler runs.
extern "C" int pt_range_begin(const char* name, at::RecordFunction** out, char* err, size_t err_len) {
  return pt_shim::guarded(err, err_len, [&] {
    auto* range = new at::RecordFunction(at::RecordScope::USER_SCOPE);
    if (range->isActive()) range->before(std::string(name));
    *out = range;
  });
}

extern "C" void pt_range_end(at::RecordFunction* range) {
  try {
    delete range;  // its destructor ends the range
  } catch (...) {
  }
}
