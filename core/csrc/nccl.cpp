// pt's NCCL backend: c10d's ProcessGroupNCCL (in libtorch_cuda). build.rs defines PT_WITH_NCCL
// when it finds a CUDA libtorch and the CUDA runtime, crt, cccl and NCCL headers (the nvidia-*
// wheels scripts/setup.sh installs next to torch); otherwise the entry point says why NCCL is
// missing.
#include "dist.h"

#include <stdexcept>

#ifdef PT_WITH_NCCL
#define USE_C10D_NCCL  // what ProcessGroupNCCL.hpp is guarded by (this file only)

#include <c10/cuda/CUDAFunctions.h>
#include <torch/csrc/distributed/c10d/ProcessGroupNCCL.hpp>

c10::intrusive_ptr<c10d::Backend> pt_nccl_backend(const c10::intrusive_ptr<c10d::Store>& store, int rank, int world,
                                                   int device, std::chrono::milliseconds timeout) {
  c10::cuda::set_device(static_cast<c10::DeviceIndex>(device));
  auto options = c10d::ProcessGroupNCCL::Options::create();
  // The watchdog aborts a collective (and this process) that runs past it.
  options->timeout = timeout;
  auto pg = c10::make_intrusive<c10d::ProcessGroupNCCL>(store, rank, world, options);
  const at::Device cuda(at::kCUDA, static_cast<c10::DeviceIndex>(device));
  pg->setBoundDeviceId(cuda);
  pg->eagerConnectSingleDevice(cuda);
  return pg;
}

extern "C" int pt_dist_has_nccl() { return 1; }

#else

c10::intrusive_ptr<c10d::Backend> pt_nccl_backend(const c10::intrusive_ptr<c10d::Store>&, int, int, int,
                                                   std::chrono::milliseconds) {
  throw std::runtime_error(
      "this pt was built without NCCL (its libtorch has no libtorch_cuda.so, or NCCL's or CUDA's headers were "
      "missing at build time; scripts/setup.sh installs them): set [run] dist_backend = \"gloo\"");
}

extern "C" int pt_dist_has_nccl() { return 0; }

#endif
