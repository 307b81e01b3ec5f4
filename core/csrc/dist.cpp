// pt's c10d shim: PyTorch's own distributed engine (TCPStore rendezvous, ProcessGroupGloo, and
// ProcessGroupNCCL through nccl.cpp), which tch 0.24 does not bind. Compiled with
// -DUSE_C10D_GLOO against the libtorch headers plus Debian's libgloo-dev headers; gloo types
// stay opaque here (those headers are older than libtorch's own gloo, which is what links).
// Every entry point catches C++ exceptions and returns their message: one reaching Rust would
// abort the process.
#include "dist.h"
#include "shim_error.h"

#include <torch/csrc/autograd/custom_function.h>
#include <torch/csrc/distributed/c10d/ProcessGroupGloo.hpp>
#include <torch/csrc/distributed/c10d/TCPStore.hpp>

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <string>
#include <vector>

using pt_shim::guarded;

// Rendezvous at host:port (rank 0 serves the store) and a group of `world` ranks whose
// collectives and store reads fail after `timeout_ms`: Gloo when `cuda_device` < 0, else NCCL
// on that CUDA device.
extern "C" int pt_dist_new(const char* host, int port, int rank, int world, int64_t timeout_ms, int cuda_device,
                           PtGroup** out, char* err, size_t err_len) {
  return guarded(err, err_len, [&] {
    const std::chrono::milliseconds timeout(timeout_ms);
    c10d::TCPStoreOptions opts;
    opts.port = static_cast<std::uint16_t>(port);
    // Under torchrun the agent already serves the store at MASTER_PORT: every rank is a client
    // (as torch.distributed's env:// rendezvous does).
    const char* agent_store = std::getenv("TORCHELASTIC_USE_AGENT_STORE");
    opts.isServer = rank == 0 && !(agent_store != nullptr && std::string(agent_store) == "True");
    opts.numWorkers = static_cast<std::size_t>(world);
    opts.waitWorkers = true;
    opts.timeout = timeout;
    c10::intrusive_ptr<c10d::Store> store = c10::make_intrusive<c10d::TCPStore>(std::string(host), opts);
    if (cuda_device >= 0) {
      *out = new PtGroup{store, pt_nccl_backend(store, rank, world, cuda_device, timeout), kNoTimeout};
      return;
    }
    auto options = c10d::ProcessGroupGloo::Options::create(timeout);
    const char* ifname = std::getenv("GLOO_SOCKET_IFNAME");
    options->devices.push_back(ifname != nullptr && *ifname != '\0'
                                   ? c10d::ProcessGroupGloo::createDeviceForInterface(ifname)
                                   : c10d::ProcessGroupGloo::createDefaultDevice());
    auto pg = c10::make_intrusive<c10d::ProcessGroupGloo>(store, rank, world, options);
    *out = new PtGroup{store, pg, timeout};
  });
}

// Ends the group's communicators cleanly (NCCL's watchdog and communicators; libtorch warns at
// exit otherwise). Once; later calls do nothing.
extern "C" void pt_dist_shutdown(PtGroup* g) {
  try {
    if (!g->shut_down) {
      g->shut_down = true;
      g->pg->shutdown();
    }
  } catch (...) {
  }
}

extern "C" void pt_dist_free(PtGroup* g) {
  pt_dist_shutdown(g);
  try {
    delete g;
  } catch (...) {
  }
}

// Sums each of the `n` tensors in place across ranks; all are started before any is awaited,
// so Gloo's threads work on several buckets at once.
extern "C" int pt_dist_allreduce_sum(PtGroup* g, at::Tensor** tensors, size_t n, char* err, size_t err_len) {
  return guarded(err, err_len, [&] {
    std::vector<c10::intrusive_ptr<c10d::Work>> works;
    works.reserve(n);
    for (size_t i = 0; i < n; ++i) {
      std::vector<at::Tensor> one{*tensors[i]};
      works.push_back(g->pg->allreduce(one, c10d::AllreduceOptions{}));
    }
    for (auto& w : works) {
      w->wait(g->wait_timeout);
    }
  });
}

// `*out`: every rank's `src` concatenated along dim 0, in rank order (a new handle).
extern "C" int pt_dist_allgather(PtGroup* g, const at::Tensor* src, at::Tensor** out, char* err, size_t err_len) {
  return guarded(err, err_len, [&] {
    std::vector<at::Tensor> input{src->contiguous()};
    std::vector<std::vector<at::Tensor>> outputs(1);
    for (int r = 0; r < g->pg->getSize(); ++r) {
      outputs[0].push_back(at::empty_like(input[0]));
    }
    g->pg->allgather(outputs, input)->wait(g->wait_timeout);
    *out = new at::Tensor(at::cat(outputs[0], 0));
  });
}

namespace {

void allreduce_now(PtGroup* g, at::Tensor& t) {
  std::vector<at::Tensor> one{t};
  g->pg->allreduce(one, c10d::AllreduceOptions{})->wait(g->wait_timeout);
}

// y = sum over ranks of x, differentiable: every rank's loss depends on y, so the gradient of x
// is the sum over ranks of the gradients of y (as torch.distributed.nn.functional.all_reduce).
struct AllReduceSum : public torch::autograd::Function<AllReduceSum> {
  static at::Tensor forward(torch::autograd::AutogradContext* ctx, const at::Tensor& x, int64_t group) {
    ctx->saved_data["group"] = group;
    at::Tensor out = x.contiguous().clone();
    allreduce_now(reinterpret_cast<PtGroup*>(group), out);
    return out;
  }
  static torch::autograd::variable_list backward(torch::autograd::AutogradContext* ctx,
                                                 torch::autograd::variable_list grads) {
    at::Tensor grad = grads[0].contiguous().clone();
    allreduce_now(reinterpret_cast<PtGroup*>(ctx->saved_data["group"].toInt()), grad);
    return {grad, at::Tensor()};
  }
};

}  // namespace

// `*out`: the sum of `src` over ranks, with a backward that sums the gradient over ranks.
extern "C" int pt_dist_allreduce_autograd(PtGroup* g, const at::Tensor* src, at::Tensor** out, char* err,
                                          size_t err_len) {
  return guarded(err, err_len, [&] {
    *out = new at::Tensor(AllReduceSum::apply(*src, reinterpret_cast<int64_t>(g)));
  });
}

// Overwrites `t` on every rank with rank `root`'s values.
extern "C" int pt_dist_broadcast(PtGroup* g, at::Tensor* t, int root, char* err, size_t err_len) {
  return guarded(err, err_len, [&] {
    std::vector<at::Tensor> one{*t};
    c10d::BroadcastOptions opts;
    opts.rootRank = root;
    g->pg->broadcast(one, opts)->wait(g->wait_timeout);
  });
}

extern "C" int pt_dist_barrier(PtGroup* g, char* err, size_t err_len) {
  return guarded(err, err_len, [&] { g->pg->barrier(c10d::BarrierOptions{})->wait(g->wait_timeout); });
}

extern "C" int pt_dist_store_set(PtGroup* g, const char* key, const uint8_t* data, size_t len, char* err,
                                 size_t err_len) {
  return guarded(err, err_len, [&] { g->store->set(std::string(key), std::vector<uint8_t>(data, data + len)); });
}

// Waits (up to the group's timeout) for `key`; `*data` is malloc'd, freed with pt_dist_free_bytes.
extern "C" int pt_dist_store_get(PtGroup* g, const char* key, uint8_t** data, size_t* len, char* err,
                                 size_t err_len) {
  return guarded(err, err_len, [&] {
    const auto value = g->store->get(std::string(key));
    *len = value.size();
    *data = static_cast<uint8_t*>(std::malloc(value.empty() ? 1 : value.size()));
    if (*data == nullptr) {
      throw std::bad_alloc();
    }
    std::memcpy(*data, value.data(), value.size());
  });
}

// As pt_dist_store_get, waiting at most `timeout_ms` (a diagnosis must not wait a whole group
// timeout on a store that does not answer); the store's own timeout is restored after.
extern "C" int pt_dist_store_get_within(PtGroup* g, const char* key, int64_t timeout_ms, uint8_t** data, size_t* len,
                                        char* err, size_t err_len) {
  const auto previous = g->store->getTimeout();
  g->store->setTimeout(std::chrono::milliseconds(timeout_ms));
  const int rc = pt_dist_store_get(g, key, data, len, err, err_len);
  g->store->setTimeout(previous);
  return rc;
}

extern "C" void pt_dist_free_bytes(uint8_t* data) { std::free(data); }
