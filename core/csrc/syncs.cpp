// Counting the host's waits for the GPU inside training steps. c10's sync debug mode (what
// torch.cuda.set_sync_debug_mode("warn") sets) makes every synchronising CUDA call libtorch makes
// -- a blocking copy to or from the device, .item(), nonzero, a stream synchronisation -- raise
// the warning "called a synchronizing CUDA operation". While a count is on, a warning handler on
// the counting thread counts those instead of printing them and passes every other warning on.
// The mode is process-wide but handlers are per thread: a sync on another thread (autograd's
// device thread during backward, for one) is printed as a warning, not counted.
// build.rs defines PT_WITH_CUDA for a CUDA libtorch whose CUDA headers it found; otherwise
// counting is unavailable. No C++ exception leaves these functions.
#include <cstdint>

#ifdef PT_WITH_CUDA
#include <c10/cuda/CUDAFunctions.h>
#include <c10/util/Exception.h>

#include <atomic>
#include <string>

namespace {

std::atomic<uint64_t> g_syncs{0};

class SyncCounter final : public c10::WarningHandler {
 public:
  void process(const c10::Warning& warning) override {
    if (warning.msg().find("called a synchronizing CUDA operation") != std::string::npos) {
      g_syncs.fetch_add(1, std::memory_order_relaxed);
      return;
    }
    if (previous != nullptr) previous->process(warning);
  }
  c10::WarningHandler* previous = nullptr;
};

thread_local SyncCounter t_counter;
// The debug mode before counting began, put back when it ends.
std::atomic<int> g_mode_before{0};

}  // namespace

// Starts counting on this thread; 0 where counting is unavailable.
extern "C" int pt_syncs_begin() {
  try {
    c10::WarningHandler* current = c10::WarningUtils::get_warning_handler();
    if (current != &t_counter) {
      t_counter.previous = current;
      c10::WarningUtils::set_warning_handler(&t_counter);
    }
    auto& state = c10::cuda::warning_state();
    if (state.get_sync_debug_mode() != c10::cuda::SyncDebugMode::L_WARN) {
      g_mode_before.store(static_cast<int>(state.get_sync_debug_mode()));
    }
    state.set_sync_debug_mode(c10::cuda::SyncDebugMode::L_WARN);
    return 1;
  } catch (...) {
    return 0;
  }
}

extern "C" void pt_syncs_end() {
  try {
    c10::cuda::warning_state().set_sync_debug_mode(static_cast<c10::cuda::SyncDebugMode>(g_mode_before.load()));
    if (c10::WarningUtils::get_warning_handler() == &t_counter) {
      c10::WarningUtils::set_warning_handler(t_counter.previous);
    }
  } catch (...) {
  }
}

extern "C" uint64_t pt_syncs_count() { return g_syncs.load(std::memory_order_relaxed); }

#else

extern "C" int pt_syncs_begin() { return 0; }
extern "C" void pt_syncs_end() {}
extern "C" uint64_t pt_syncs_count() { return 0; }

#endif
