// Gradient all-reduce overlapped with backward, as DDP's Reducer does it. Every trainable
// parameter gets a post-accumulate-grad hook; once armed (for the step's last backward), a
// hook marks its parameter's gradient final, and when every parameter of a bucket (a contiguous
// range of the flat gradient buffer) is final, that bucket's all-reduce starts (on Gloo's
// threads, or NCCL's stream) while backward goes on with earlier layers. Buckets start in one
// fixed order on every rank, last bucket first (backward reaches the last layers first),
// because c10d matches collectives by the order they are issued: a bucket that is ready early
// waits for the ones before it.
// `finish` starts what the hooks did not (parameters the last backward did not reach, or all of
// them when the step had no backward) and waits for every bucket.
#include "dist.h"
#include "shim_error.h"

#include <torch/csrc/autograd/function_hook.h>
#include <torch/csrc/autograd/variable.h>

#include <cstddef>
#include <cstdint>
#include <memory>
#include <mutex>
#include <vector>

using pt_shim::guarded;

struct PtOverlap {
  PtGroup* group;
  at::Tensor flat;                    // the flat gradient buffer
  std::vector<at::Tensor> params;     // the trainable parameters (their hooks are ours)
  std::vector<at::Tensor> views;      // each parameter's gradient view of `flat`
  std::vector<int> param_bucket;      // bucket of each parameter
  std::vector<int64_t> bucket_start;  // elements of `flat`
  std::vector<int64_t> bucket_len;
  std::vector<int> bucket_params;     // parameters per bucket
  // Per step:
  std::vector<int> waiting;           // parameters of each bucket not final yet
  std::vector<char> final_;           // parameter marked final
  std::vector<c10::intrusive_ptr<c10d::Work>> works;
  int next = -1;                      // next bucket to start (counting down), -1: all started
  bool armed = false;
  std::mutex mu;

  void reset() {
    waiting = bucket_params;
    final_.assign(params.size(), 0);
    works.assign(bucket_start.size(), {});
    next = static_cast<int>(bucket_start.size()) - 1;
    armed = false;
  }

  at::Tensor bucket(int b) { return flat.narrow(0, bucket_start[b], bucket_len[b]); }

  void start(int b) {
    std::vector<at::Tensor> one{bucket(b)};
    works[b] = group->pg->allreduce(one, c10d::AllreduceOptions{});
  }

  // Called by autograd once parameter `i`'s gradient has been accumulated.
  void on_accumulated(size_t i) {
    std::lock_guard<std::mutex> lock(mu);
    if (!armed || final_[i]) {
      return;
    }
    final_[i] = 1;
    // A gradient replaced by a new tensor (not accumulated in place) is copied into the
    // buffer and re-pointed, as FlatParams::flat_grad does, before its bucket is reduced.
    at::NoGradGuard no_grad;
    at::Tensor grad = params[i].grad();
    if (grad.defined() && !grad.is_set_to(views[i])) {
      views[i].copy_(grad);
      grad.set_data(views[i]);
    }
    waiting[param_bucket[i]] -= 1;
    while (next >= 0 && waiting[next] == 0) {
      start(next);
      next -= 1;
    }
  }
};

namespace {

struct ReadyHook : torch::autograd::PostAccumulateGradHook {
  PtOverlap* owner;
  size_t index;
  ReadyHook(PtOverlap* o, size_t i) : owner(o), index(i) {}
  void operator()(const torch::autograd::Variable& /*tensor*/) override { owner->on_accumulated(index); }
};

}  // namespace

// `params[i]`'s gradient is `views[i]`, inside bucket `param_bucket[i]`; bucket b covers
// `bucket_len[b]` elements of `flat` from `bucket_start[b]`.
extern "C" int pt_overlap_new(PtGroup* g, const at::Tensor* flat, at::Tensor** params, at::Tensor** views,
                              const int* param_bucket, size_t n_params, const int64_t* bucket_start,
                              const int64_t* bucket_len, size_t n_buckets, PtOverlap** out, char* err,
                              size_t err_len) {
  return guarded(err, err_len, [&] {
    auto o = std::make_unique<PtOverlap>();
    o->group = g;
    o->flat = *flat;
    o->bucket_start.assign(bucket_start, bucket_start + n_buckets);
    o->bucket_len.assign(bucket_len, bucket_len + n_buckets);
    o->bucket_params.assign(n_buckets, 0);
    for (size_t i = 0; i < n_params; ++i) {
      TORCH_CHECK(param_bucket[i] >= 0 && static_cast<size_t>(param_bucket[i]) < n_buckets,
                  "parameter ", i, " has no bucket");
      o->params.push_back(*params[i]);
      o->views.push_back(*views[i]);
      o->param_bucket.push_back(param_bucket[i]);
      o->bucket_params[param_bucket[i]] += 1;
    }
    o->reset();
    for (size_t i = 0; i < n_params; ++i) {
      torch::autograd::impl::set_post_acc_grad_hooks(o->params[i], std::make_unique<ReadyHook>(o.get(), i));
    }
    *out = o.release();
  });
}

// From now until `finish`, gradients accumulated by backward are final: call it before the
// step's last backward.
extern "C" void pt_overlap_arm(PtOverlap* o) {
  std::lock_guard<std::mutex> lock(o->mu);
  o->armed = true;
}

// Starts the buckets the hooks did not (in the same order) and waits for all of them.
extern "C" int pt_overlap_finish(PtOverlap* o, char* err, size_t err_len) {
  return guarded(err, err_len, [&] {
    std::lock_guard<std::mutex> lock(o->mu);
    o->armed = false;
    struct Reset {
      PtOverlap* o;
      ~Reset() { o->reset(); }
    } reset{o};
    at::NoGradGuard no_grad;
    for (; o->next >= 0; o->next -= 1) {
      o->start(o->next);
    }
    for (auto& w : o->works) {
      w->wait(o->group->wait_timeout);
    }
  });
}

extern "C" void pt_overlap_free(PtOverlap* o) {
  try {
    for (auto& p : o->params) {
      torch::autograd::impl::set_post_acc_grad_hooks(p, nullptr);
    }
    delete o;
  } catch (...) {
  }
}
