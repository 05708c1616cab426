// A fused Adam step as an XLA custom call (jax.ffi), for the benchmark only: one pass over each
// parameter that reads p, g, m, v and writes p, m, v in place (28 B/param in float32), as torch's
// fused CPU Adam does. gradtx does not ship it (see BENCHMARKS.md and docs/performance.md).
//
// One call per leaf (one call with every leaf's buffers made XLA's alias analysis take seconds to
// compile on 500 leaves). Arguments: scalars f32[2] = (lr / (1 - b1^t), sqrt(1 - b2^t)), p, g, m,
// v. Results: p, m, v, aliased to their arguments by the caller. Attributes: b1, b2, eps.
#include <cmath>
#include <cstddef>
#include <cstdint>

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

ffi::Error FusedAdamImpl(ffi::Buffer<ffi::F32> scalars, ffi::Buffer<ffi::F32> p,
                         ffi::Buffer<ffi::F32> g, ffi::Buffer<ffi::F32> m,
                         ffi::Buffer<ffi::F32> v, ffi::ResultBuffer<ffi::F32> p_out,
                         ffi::ResultBuffer<ffi::F32> m_out, ffi::ResultBuffer<ffi::F32> v_out,
                         float b1, float b2, float eps) {
  if (scalars.element_count() != 2) {
    return ffi::Error::InvalidArgument("fused_adam: scalars must hold 2 values");
  }
  const std::size_t size = p.element_count();
  if (g.element_count() != size || m.element_count() != size || v.element_count() != size) {
    return ffi::Error::InvalidArgument("fused_adam: the buffers differ in size");
  }
  AdamLeaf(size, scalars.typed_data()[0], scalars.typed_data()[1], b1, b2, eps, p.typed_data(),
           g.typed_data(), m.typed_data(), v.typed_data(), p_out->typed_data(),
           m_out->typed_data(), v_out->typed_data());
  return ffi::Error::Success();
}

}  // namespace

XLA_FFI_DEFINE_HANDLER_SYMBOL(GradtxBenchFusedAdam, FusedAdamImpl,
                              ffi::Ffi::Bind()
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
                                  .Attr<float>("eps"));
