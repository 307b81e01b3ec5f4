// pt's c10d shim: PyTorch's own distributed engine (TCPStore rendezvous, ProcessGroupGloo), which
// tch 0.24 does not bind. Compiled with -DUSE_C10D_GLOO against the libtorch headers plus
// Debian's libgloo-dev headers; gloo types stay opaque here (those headers are older than
// libtorch's own gloo, which is what links). Every entry point catches C++ exceptions and
// returns their message: one reaching Rust would abort the process.
#include <torch/csrc/distributed/c10d/ProcessGroupGloo.hpp>
#include <torch/csrc/distributed/c10d/TCPStore.hpp>

#include "shim_error.h"

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <string>
#include <vector>

using pt_shim::guarded;

struct PtGroup {
  c10::intrusive_ptr<c10d::Store> store;
  c10::intrusive_ptr<c10d::ProcessGroupGloo> pg;
  std::chrono::milliseconds timeout;
};

// Rendezvous at host:port (rank 0 serves the store) and a Gloo group of `world` ranks whose
// collectives and store reads fail after `timeout_ms`.
extern "C" int pt_dist_new(const char* host, int port, int rank, int world, int64_t timeout_ms, PtGroup** out,
                           char* err, size_t err_len) {
  return guarded(err, err_len, [&] {
    const std::chrono::milliseconds timeout(timeout_ms);
    c10d::TCPStoreOptions opts;
    opts.port = static_cast<std::uint16_t>(port);
    opts.isServer = rank == 0;
    opts.numWorkers = static_cast<std::size_t>(world);
    opts.waitWorkers = true;
    opts.timeout = timeout;
    auto store = c10::make_intrusive<c10d::TCPStore>(std::string(host), opts);
    auto options = c10d::ProcessGroupGloo::Options::create(timeout);
    const char* ifname = std::getenv("GLOO_SOCKET_IFNAME");
    options->devices.push_back(ifname != nullptr && *ifname != '\0'
                                   ? c10d::ProcessGroupGloo::createDeviceForInterface(ifname)
                                   : c10d::ProcessGroupGloo::createDefaultDevice());
    auto pg = c10::make_intrusive<c10d::ProcessGroupGloo>(store, rank, world, options);
    *out = new PtGroup{store, pg, timeout};
  });
}

extern "C" void pt_dist_free(PtGroup* g) {
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
      w->wait(g->timeout);
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
    g->pg->allgather(outputs, input)->wait(g->timeout);
    *out = new at::Tensor(at::cat(outputs[0], 0));
  });
}

// Overwrites `t` on every rank with rank `root`'s values.
extern "C" int pt_dist_broadcast(PtGroup* g, at::Tensor* t, int root, char* err, size_t err_len) {
  return guarded(err, err_len, [&] {
    std::vector<at::Tensor> one{*t};
    c10d::BroadcastOptions opts;
    opts.rootRank = root;
    g->pg->broadcast(one, opts)->wait(g->timeout);
  });
}

extern "C" int pt_dist_barrier(PtGroup* g, char* err, size_t err_len) {
  return guarded(err, err_len, [&] { g->pg->barrier(c10d::BarrierOptions{})->wait(g->timeout); });
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

extern "C" void pt_dist_free_bytes(uint8_t* data) { std::free(data); }
