// A fused Adam step as an XLA custom call (jax.ffi), for the benchmark only: one pass over each
// parameter that reads p, g, m, v and writes p, m, v in place (28 B/param in float32), as torch's
// fused CPU Adam does. gradtx does not ship it (see BENCHMARKS.md and docs/performance.md).
//
// One call per leaf (one call with every leaf's buffers made XLA's alias analysis take seconds to
// compile on 500 leaves). Arguments: scalars f32[2] = (lr / (1 - b1^t), sqrt(1 - b2^t)), p, g, m,
// v. Results: p, m, v, aliased to their arguments by the caller. Attributes: b1, b2, eps, and
// parallel_min_size: smaller leaves run on the calling thread (a task costs microseconds).
#include <algorithm>
#include <atomic>
#include <cmath>
#include <condition_variable>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <mutex>
#include <utility>

#include "xla/ffi/api/ffi.h"

namespace ffi = xla::ffi;

namespace {

void AdamLeaf(std::size_t size, float step_size, float bc2_sqrt, float b1, float b2, float eps,
              const float* __restrict p, const float* __restrict g, const float* __restrict m,
              const float* __restrict v, float* p_out, float* m_out, float* v_out) {
  const float one_minus_b1 = 1.0f - b1;
  const float one_minus_b2 = 1.0f - b2;
  for (std::size_t i = 0; i < size; ++i) {
    const float gi = g[i];
    const float mi = b1 * m[i] + one_minus_b1 * gi;
    const float vi = b2 * v[i] + one_minus_b2 * gi * gi;
    const float denom = std::sqrt(vi) / bc2_sqrt + eps;
    m_out[i] = mi;
    v_out[i] = vi;
    p_out[i] = p[i] - step_size * (mi / denom);
  }
}

ffi::Error FusedAdamImpl(ffi::ThreadPool pool, ffi::Buffer<ffi::F32> scalars,
                         ffi::Buffer<ffi::F32> p, ffi::Buffer<ffi::F32> g,
                         ffi::Buffer<ffi::F32> m, ffi::Buffer<ffi::F32> v,
                         ffi::ResultBuffer<ffi::F32> p_out, ffi::ResultBuffer<ffi::F32> m_out,
                         ffi::ResultBuffer<ffi::F32> v_out, float b1, float b2, float eps,
                         int64_t parallel_min_size) {
  if (scalars.element_count() != 2) {
    return ffi::Error::InvalidArgument("fused_adam: scalars must hold 2 values");
  }
  const std::size_t size = p.element_count();
  if (g.element_count() != size || m.element_count() != size || v.element_count() != size) {
    return ffi::Error::InvalidArgument("fused_adam: the buffers differ in size");
  }
  const float step_size = scalars.typed_data()[0];
  const float bc2_sqrt = scalars.typed_data()[1];
  const float* pi = p.typed_data();
  const float* gi = g.typed_data();
  const float* mi = m.typed_data();
  const float* vi = v.typed_data();
  float* po = p_out->typed_data();
  float* mo = m_out->typed_data();
  float* vo = v_out->typed_data();
  auto run = [=](std::size_t begin, std::size_t end) {
    AdamLeaf(end - begin, step_size, bc2_sqrt, b1, b2, eps, pi + begin, gi + begin, mi + begin,
             vi + begin, po + begin, mo + begin, vo + begin);
  };
  // Large leaves are split over XLA's intra-op threads, as torch's fused step splits over its
  // own. Chunks are claimed from a shared counter by this thread and by the pool's tasks alike,
  // so the step finishes even if no pool thread is free (this thread then does every chunk);
  // a task that starts late finds nothing left and touches only the shared counters.
  const int64_t threads = pool.num_threads();
  if (size < static_cast<std::size_t>(parallel_min_size) || threads <= 0) {
    run(0, size);
    return ffi::Error::Success();
  }
  struct Shared {
    std::atomic<std::size_t> next{0};
    std::size_t finished = 0;
    std::mutex mutex;
    std::condition_variable all_done;
  };
  const std::size_t chunks = static_cast<std::size_t>(threads) + 1;
  const std::size_t chunk = (size + chunks - 1) / chunks;
  auto shared = std::make_shared<Shared>();
  auto work = [shared, run, chunks, chunk, size] {
    for (std::size_t c; (c = shared->next.fetch_add(1)) < chunks;) {
      run(std::min(size, c * chunk), std::min(size, (c + 1) * chunk));
      std::lock_guard<std::mutex> lock(shared->mutex);
      if (++shared->finished == chunks) shared->all_done.notify_all();
    }
  };
  for (int64_t t = 0; t < threads; ++t) {
    auto task = work;  // Schedule takes its task by value (an rvalue)
    pool.Schedule(std::move(task));
  }
  work();
  std::unique_lock<std::mutex> lock(shared->mutex);
  shared->all_done.wait(lock, [&] { return shared->finished == chunks; });
  return ffi::Error::Success();
}

}  // namespace

XLA_FFI_DEFINE_HANDLER_SYMBOL(GradtxBenchFusedAdam, FusedAdamImpl,
                              ffi::Ffi::Bind()
                                  .Ctx<ffi::ThreadPool>()
                                  .Arg<ffi::Buffer<ffi::F32>>()  // scalars
                                  .Arg<ffi::Buffer<ffi::F32>>()  // p
                                  .Arg<ffi::Buffer<ffi::F32>>()  // g
                                  .Arg<ffi::Buffer<ffi::F32>>()  // m
                                  .Arg<ffi::Buffer<ffi::F32>>()  // v
                                  .Ret<ffi::Buffer<ffi::F32>>()  // p
                                  .Ret<ffi::Buffer<ffi::F32>>()  // m
                                  .Ret<ffi::Buffer<ffi::F32>>()  // v
                                  .Attr<float>("b1")
                                  .Attr<float>("b2")
                                  .Attr<float>("eps")
                                  .Attr<int64_t>("parallel_min_size"));
