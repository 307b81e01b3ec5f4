// Error reporting shared by pt's C++ shims (pt-optim's and pt-core's): an entry point returns 0,
// or 1 with the exception's message in the caller's buffer. A C++ exception reaching Rust would
// abort the process.
#pragma once

#include <cstddef>
#include <cstring>
#include <exception>

namespace pt_shim {

inline int fail(char* err, size_t len, const char* what) {
  if (err != nullptr && len > 0) {
    std::strncpy(err, what, len - 1);
    err[len - 1] = '\0';
  }
  return 1;
}

// Runs `body`, turning any exception into `fail`.
template <typename F>
int guarded(char* err, size_t len, F&& body) {
  try {
    body();
    return 0;
  } catch (const std::exception& e) {
    return fail(err, len, e.what());
  } catch (...) {
    return fail(err, len, "unknown C++ exception");
  }
}

}  // namespace pt_shim
