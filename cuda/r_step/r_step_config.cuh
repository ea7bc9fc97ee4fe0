// r_step_config.cuh — what the three tensor-core R-step kernels share: the query block kBM, the key
// tile kBN, the CTA size and the logit scaling/masking of a key tile (r_step.cu describes the stage).
#pragma once

#include "../common/online_softmax.cuh"
#include "../common/rl_pipeline.cuh"

namespace monarch {
namespace cuda {
namespace {  // this header is included by r_step.cu only

using namespace detail;

constexpr int kBM = 64;  // query columns j per CTA: 4 warps × 16
// Keys l per tile: 64, or 32 when two D = 128 accumulators (aL and y: 128 fp32 registers) are live,
// where a 64-key tile's S and P fragments push the kernel past 255 registers into spills.
template <int D, bool kLast>
constexpr int r_step_bn() {
  return (D == 128 && kLast) ? 32 : 64;
}
constexpr int kThreads = 128;

// The R temperature of a later step (docs/ALGORITHMS.md §A.5) from the query's cR: min(1/cR, maxInvTemp),
// maxInvTemp for cR ≤ 0; a NaN cR (a poisoned L-step row) gives NaN, so the R row is NaN as on the CPU.
__device__ __forceinline__ float r_inv_temp(float c, float maxInvTemp) {
  return c != c ? c : c > 0.f ? fminf(1.f / c, maxInvTemp) : maxInvTemp;
}

// S (this warp's 16 query rows × NK keys l0 + [0, NK) of one key row, C-fragment layout) becomes
// base-2 logits: row half h = e / 2 scaled by scale2[h] (s·log2(e)·invT); keys l >= b2 or masked out by
// kv (that key row's keyValid, or null) get −INF; a visible key's non-finite logit (NaN, ±Inf, an
// overflowing product) becomes NaN, which makes its R row NaN as on the CPU (visible_logit).
template <int NK>
__device__ __forceinline__ void scale_mask_logits(float (&S)[NK / 8][4], int l0, int b2, const uint8_t* kv,
                                                  const float (&scale2)[2], int qd) {
#pragma unroll
  for (int n = 0; n < NK / 8; ++n) {
#pragma unroll
    for (int e = 0; e < 4; ++e) {
      const int l = l0 + n * 8 + 2 * qd + (e & 1);
      const bool ok = l < b2 && (kv == nullptr || kv[l] != 0);
      S[n][e] = ok ? visible_logit(S[n][e] * scale2[e >> 1]) : -INFINITY;
    }
  }
}

}  // namespace
}  // namespace cuda
}  // namespace monarch
