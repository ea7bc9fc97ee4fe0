// fp32_rows.cuh — building blocks of the float32 path of the CUDA backend (fp32 inputs run on CUDA
// cores with fp32 FMA, as the CPU backend computes them; fp16/bf16 take the tensor-core kernels).
//
// Shape of every fp32 kernel: one warp per query row, kWarps rows per block sharing key/value tiles of
// kKeys rows staged in shared memory by the whole block. For one tile, lane c computes the logit of
// key c (a sequential dot product over D from shared memory: K rows padded to D + 1 floats, so the 32
// lanes hit 32 distinct banks), the warp updates the row's online softmax with the §C.3 entropy term
// (shifted form, natural log: running max m, ℓ = Σ e^{x−m}, ũ = Σ e^{x−m}(x−m)) and each lane
// accumulates the value columns d = lane + 32·i it owns (NC = ⌈D/32⌉ ≤ 4, so D ≤ 128).
#pragma once

#include <cuda_runtime.h>

#include <cstdint>
#include <string>

#include "launch_utils.cuh"
#include <monarch/monarch.h>
#include <monarch/support.h>

namespace monarch {
namespace cuda {
namespace fp32 {

constexpr int kWarps = 8;                 // query rows per block (one per warp)
constexpr int kThreads = kWarps * 32;
constexpr int kKeys = 32;                 // keys per shared-memory tile (one per lane)
constexpr int kMaxD = kCudaF32HeadDims.max;  // the support table's float32 bound (monarch/support.h)
static_assert(kCudaF32HeadDims.count == 0 && kCudaF32HeadDims.min == 1 && kMaxD <= 4 * 32,
              "fp32 row kernels: D in 1..kMaxD with at most 4 value columns per lane (dispatch_nc)");
constexpr unsigned kFull = 0xffffffffu;

__device__ __forceinline__ float warp_max(float x) {
#pragma unroll
  for (int o = 16; o > 0; o >>= 1) x = fmaxf(x, __shfl_xor_sync(kFull, x, o));
  return x;
}
__device__ __forceinline__ float warp_sum(float x) {
#pragma unroll
  for (int o = 16; o > 0; o >>= 1) x += __shfl_xor_sync(kFull, x, o);
  return x;
}

// Sequential fp32 dot product (shared memory operands).
__device__ __forceinline__ float dot(const float* a, const float* b, int D) {
  float s = 0.f;
  for (int d = 0; d < D; ++d) s = fmaf(a[d], b[d], s);
  return s;
}

// Block-cooperative copy of n ≤ kKeys rows of D floats into dst [kKeys][ld]; rows n.. are zeroed.
// row(c) returns the global address of row c.
template <typename RowPtr>
__device__ __forceinline__ void load_rows(float* dst, int ld, int n, int D, RowPtr row) {
  for (int idx = threadIdx.x; idx < kKeys * D; idx += kThreads) {
    const int c = idx / D, d = idx - c * D;
    dst[c * ld + d] = c < n ? row(c)[d] : 0.f;
  }
}

// Copy one row of D floats from global memory into shared memory (the calling warp).
__device__ __forceinline__ void load_row(float* dst, const float* src, int D, int lane) {
  for (int d = lane; d < D; d += 32) dst[d] = src[d];
}

// One row's streaming-softmax state; a1/a2 hold the value columns d = lane + 32·i of this lane.
template <int NC>
struct RowState {
  float m, l, u;
  float a1[NC], a2[NC];

  __device__ __forceinline__ void init() {
    m = -INFINITY;
    l = 0.f;
    u = 0.f;
#pragma unroll
    for (int i = 0; i < NC; ++i) a1[i] = a2[i] = 0.f;
  }

  // One tile: x = this lane's logit, valid = false for a masked key (key tail, keyValid, causal, an R
  // row with no valid key: cL = +INF), whose x must be −INF. Accumulates Σ p·V1[c] (and Σ p·V2[c] when
  // kTwo), V1/V2 in shared memory [kKeys][ld]. Warp-uniform control flow throughout.
  // The CPU's non-finite rule (cpu/softmax.h): a valid key's logit that is not finite (NaN, ±Inf: an
  // Inf input, or a q·k that overflows float32 to ±Inf) poisons the row — ℓ becomes NaN for good, so
  // the row is never empty() and every output derived from ℓ (o, aL, y, cL, lse, entropy) is NaN. Only
  // `valid` tells a masked key from a −Inf logit; the finite path pays one compare per lane and tile.
  template <bool kTwo>
  __device__ __forceinline__ void update(float x, bool valid, const float* V1, int ld1, const float* V2, int ld2,
                                         int D, int lane) {
    if (__any_sync(kFull, valid && !(fabsf(x) < INFINITY))) l = __int_as_float(0x7fc00000);
    const float mx = warp_max(x);
    if (mx == -INFINITY) return;
    const float mNew = fmaxf(m, mx);
    if (m != -INFINITY && mNew != m) {
      const float alpha = expf(m - mNew);
      u = alpha * (u + (m - mNew) * l);
      l *= alpha;
#pragma unroll
      for (int i = 0; i < NC; ++i) {
        a1[i] *= alpha;
        if (kTwo) a2[i] *= alpha;
      }
    }
    const bool live = x != -INFINITY;
    const float xm = x - mNew;
    const float p = live ? expf(xm) : 0.f;
    l += warp_sum(p);
    u += warp_sum(live ? p * xm : 0.f);
    for (int c = 0; c < kKeys; ++c) {
      const float w = __shfl_sync(kFull, p, c);
      if (w == 0.f) continue;
#pragma unroll
      for (int i = 0; i < NC; ++i) {
        const int d = lane + 32 * i;
        if (d < D) {
          a1[i] = fmaf(w, V1[c * ld1 + d], a1[i]);
          if (kTwo) a2[i] = fmaf(w, V2[c * ld2 + d], a2[i]);
        }
      }
    }
    m = mNew;
  }

  __device__ __forceinline__ bool empty() const { return l == l && (m == -INFINITY || !(l > 0.f)); }
};

// Writes acc · scale (or zeros) to a row of D floats in global memory.
template <int NC>
__device__ __forceinline__ void store_row(float* dst, const float (&acc)[NC], float scale, bool zero, int D,
                                          int lane) {
#pragma unroll
  for (int i = 0; i < NC; ++i) {
    const int d = lane + 32 * i;
    if (d < D) dst[d] = zero ? 0.f : acc[i] * scale;
  }
}

// Element offset of token s, head h of batch row b in an activation (strides in elements).
__device__ __forceinline__ int64_t act_off(const Act& a, int64_t b, int64_t s, int64_t h) {
  return b * a.sB + s * a.sS + h * a.sH;
}

// Shared memory of the row kernels (dense, R-step, final L-step): a key tile [kKeys][D + 1], a value
// tile [kKeys][D], kWarps query rows [D] and kKeys per-key floats (valid flags or cL biases).
inline size_t row_kernel_smem_bytes(int D) {
  return sizeof(float) * (size_t(kKeys) * (D + 1) + size_t(kKeys) * D + size_t(kWarps) * D + kKeys);
}

using detail::launch_status;
using detail::prepare_smem;

// ⌈D/32⌉ → fn(std::integral_constant-like tag); D outside [1, kMaxD] is an error naming it.
template <int N>
struct NC {
  static constexpr int value = N;
};
template <typename Fn>
Status dispatch_nc(int D, const char* kernel, Fn&& fn) {
  if (!supports(BackendId::kCuda, kF32, D))
    return Status::Error(std::string(kernel) + ": unsupported head dim D=" + std::to_string(D) +
                         "; the CUDA float32 path supports " + kCudaF32HeadDims.text());
  switch ((D + 31) / 32) {
    case 1: return fn(NC<1>{});
    case 2: return fn(NC<2>{});
    case 3: return fn(NC<3>{});
    default: return fn(NC<4>{});
  }
}

}  // namespace fp32
}  // namespace cuda
}  // namespace monarch
