// The process group shared by pt's c10d shims (dist.cpp: rendezvous and collectives;
// overlap.cpp: gradient all-reduce overlapped with backward; nccl.cpp: the NCCL backend).
#pragma once

#include <torch/csrc/distributed/c10d/Backend.hpp>
#include <torch/csrc/distributed/c10d/Store.hpp>

#include <chrono>
#include <cstddef>
#include <cstdint>

struct PtGroup {
  c10::intrusive_ptr<c10d::Store> store;
  c10::intrusive_ptr<c10d::Backend> pg;  // ProcessGroupGloo or ProcessGroupNCCL
  // What Work::wait is given: Gloo's waits fail after the group's timeout; NCCL's must not take
  // one (a timeout makes them block the CPU until the GPU is done), its watchdog enforces it.
  std::chrono::milliseconds wait_timeout;
  bool shut_down = false;
};

// A ProcessGroupNCCL of `world` ranks on CUDA device `device`, connected now (so a failure to
// initialise NCCL is an error at start, not at the first collective). nccl.cpp; when pt was
// built against a libtorch without CUDA or without NCCL's headers it throws, saying so.
c10::intrusive_ptr<c10d::Backend> pt_nccl_backend(const c10::intrusive_ptr<c10d::Store>& store, int rank, int world,
                                                   int device, std::chrono::milliseconds timeout);
