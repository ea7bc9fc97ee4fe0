// r_step_frames_dense.cuh — the first R-step of a single-tile problem with long key rows (VMonarch's
// frames as blocks: Aq = Fk = 1, b2 = h·w > 128) on the dense attention kernel.
//
// With one tile and L = I, the R-step of key row k is the b2 × b2 attention of row k's tokens with
// themselves, R = softmax_l(s·q[k,j]·k[k,l]): dense attention with the b1 rows as its batch. So it runs as
// dense(q, k, k) → aL with the entropy output (Σ R log R = −entropy gives cL, transposed into the cL layout
// by r_step_entropy_to_cl_kernel), then, on the last step, dense(q, k, v) → y. The outputs go straight
// into the workspace layout [j][k][D] through the dense output's strides. The entropy of batch b is
// staged in the y buffer (free until y is written, which happens after every transposition).
// On sm_90a the last step can take one pass instead (dense_hopper_keys_out: y = R·V, aL = R·K and cL
// written in its layout from one softmax); where that kernel does not apply, the two passes above.
// That pass is on by default (verified on the H200; MONARCH_HOPPER_KERNELS=0 turns it off, tma_map.h).
// Short key rows (b2 ≤ 128: MonarchAttention's one-tile sequences, b = √N) take only that one pass
// (StepKernel::kRDense, "r-dense" in MONARCH_PREVIEW_KERNELS; by default at b2 = 128): there the row-wise
// mma.sync kernel beats the two-pass fallback, so a refused tensor map falls through to it.
#pragma once

#include <algorithm>
#include <string>

#include "../common/launch_utils.cuh"
#include "../common/mma_utils.cuh"
#include "../common/tma_map.h"
#include "../dense/dense_hopper.h"
#include <monarch/monarch_cuda.h>

namespace monarch {
namespace cuda {
namespace {  // this header is included by r_step.cu only

// cL[((b·H + h)·b2 + j)·b1 + k] = −entropy[(k·H + h)·b2 + j] for one batch row b.
__global__ void r_step_entropy_to_cl_kernel(const float* __restrict__ entropy, float* __restrict__ cL, int H,
                                            int b1, int b2, int64_t cl0) {
  const int64_t n = int64_t(b1) * H * b2;
  for (int64_t t = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; t < n; t += int64_t(gridDim.x) * blockDim.x) {
    const int j = int(t % b2);
    const int64_t kh = t / b2;
    const int h = int(kh % H), k = int(kh / H);
    const float e = entropy[t];
    cL[cl0 + (int64_t(h) * b2 + j) * b1 + k] = -e;  // NaN stays NaN
  }
}

// Key rows short enough for the row-wise kernel. The one-pass dense R-step replaces it by default at
// b2 = 128 (size rule, H200 session 11: seq-16k R-step 0.086 → 0.068 ms); at b2 = 64 it was slower
// (seq-4k 0.020 → 0.044 ms: one CTA per SM and a 128-row q-block for 64 queries), so there it runs only
// when MONARCH_PREVIEW_KERNELS selects r-dense.
inline bool r_step_dense_short_rows(const MonarchParams& p) { return p.b2 <= 128; }

// Whether the frames-as-dense path serves this first R-step.
inline bool r_step_frames_dense_applies(const MonarchParams& p, bool last) {
  const bool shape = p.Aq == 1 && p.Fk == 1 && p.keyValid == nullptr && p.y != nullptr && p.aL != nullptr &&
                     p.cL != nullptr && (p.dtype == kBF16 || p.dtype == kF16) && (p.D == 64 || p.D == 128) &&
                     int64_t(p.b1) * p.H * p.b2 <= (int64_t(1) << 31) / 8;
  if (!shape) return false;
  if (!r_step_dense_short_rows(p)) return true;
  return last && tma::hopper_step_runs(p.dtype, p.D, tma::StepKernel::kRDense, p.b2 >= 128);
}

// Returns a "TMA tensor map" error without launching anything when the short-row case's one pass is
// refused (the caller then takes the row-wise kernel).
inline Status r_step_frames_dense(const MonarchParams& p, bool last, Stream stream) {
  const size_t es = dtype_size(p.dtype);
  const int64_t perBatchWs = int64_t(p.H) * p.b2 * p.b1 * p.D;  // aL / y elements of one batch row b
  auto at = [&](const void* base, int64_t elems) {
    return static_cast<void*>(static_cast<char*>(const_cast<void*>(base)) + elems * int64_t(es));
  };
  auto dense_for = [&](int b, const Act& values, void* out) {
    DenseParams d;
    d.dtype = p.dtype, d.B = p.b1, d.H = p.H, d.D = p.D, d.Nq = p.b2, d.Nk = p.b2, d.scale = p.scale;
    d.q = {at(p.q.data, b * p.q.sB), p.b2 * p.q.sS, p.q.sS, p.q.sH};      // batch = key row k
    d.k = {at(p.k.data, b * p.k.sB), p.b2 * p.k.sS, p.k.sS, p.k.sH};
    d.v = {at(values.data, b * values.sB), p.b2 * values.sS, values.sS, values.sH};
    d.o = {at(out, b * perBatchWs), p.D, int64_t(p.b1) * p.D, int64_t(p.b2) * p.b1 * p.D};  // [h][j][k][D]
    return d;
  };
  cudaStream_t s = static_cast<cudaStream_t>(stream);
  // (On by default since its hardware verification; MONARCH_HOPPER_KERNELS=0 turns it off, tma_map.h.)
  const bool shortRows = r_step_dense_short_rows(p), hopper = dense_hopper_applies(dense_for(0, p.v, p.y));
  if (shortRows && !hopper)
    return Status::Error("r_step_frames_dense: TMA tensor map: the dense sm_90a kernel does not apply");
  if (last && tma::monarch_hopper_enabled() && hopper) {
    bool launched = true;
    for (int b = 0; b < p.B && launched; ++b) {
      DenseKeysOut ko;
      ko.o = dense_for(b, p.k, p.aL).o;
      // cL[((b·H + h)·b2 + j)·b1 + k]: dense batch k, head h, query row j.
      ko.negEntropy = p.cL + int64_t(b) * p.H * p.b2 * p.b1;
      ko.sB = 1, ko.sH = int64_t(p.b2) * p.b1, ko.sRow = p.b1;
      const Status st = dense_hopper_keys_out(dense_for(b, p.v, p.y), ko, s);
      if (st.ok) continue;
      // TMA refused the layout: the two passes below recompute every batch (all batches share strides,
      // so in practice only batch 0 can be refused).
      if (tma::hopper_status_final(st)) return st;
      if (shortRows) return st;  // only batch 0 can be refused (shared strides): nothing was launched
      launched = false;
    }
    if (launched) return Status::Ok();
  }
  float* entropy = static_cast<float*>(p.y);  // staging, see above
  for (int b = 0; b < p.B; ++b) {
    DenseParams d = dense_for(b, p.k, p.aL);
    d.entropy = entropy;
    Status st = dense(d, stream);
    if (!st.ok) return st;
    const int64_t n = int64_t(p.b1) * p.H * p.b2;
    const int blocks = int(std::min<int64_t>((n + 255) / 256, 65535));
    r_step_entropy_to_cl_kernel<<<blocks, 256, 0, s>>>(entropy, p.cL, p.H, p.b1, p.b2, int64_t(b) * p.H * p.b2 * p.b1);
    st = detail::launch_status("r_step_entropy_to_cl_kernel");
    if (!st.ok) return st;
  }
  if (last) {
    for (int b = 0; b < p.B; ++b) {
      Status st = dense(dense_for(b, p.v, p.y), stream);
      if (!st.ok) return st;
    }
  }
  return Status::Ok();
}

}  // namespace
}  // namespace cuda
}  // namespace monarch
