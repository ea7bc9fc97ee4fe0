// l_step_final_dense.cuh — the final L-step of a one-tile problem (Aq = Fk = 1: MonarchAttention's
// sequences, b1 = N / b candidates per column) on the sm_90a dense kernel.
//
// With one tile, column j's candidates are the b1 rows k of aL[j][k][D] (contiguous), its values the
// rows of y[j][k][D] and its bias cL[j][k]: the L-step of column j is dense attention of the b1
// queries q[i·b2 + j] (i ∈ [b1]) over b1 keys with the additive bias −cL (dense_hopper_biased), the
// columns j as its batch. The strides do the gathers: query and output rows step b2 tokens, a column's
// batch offset is one token. cL = +INF masks a candidate, a non-finite score poisons the row (the rule
// of l_step_config.cuh, which the dense kernel's biased softmax follows).
// Off by default (StepKernel::kLDense: runs only when MONARCH_PREVIEW_KERNELS selects l-dense): on the
// H200 (session 11) it was slower than the ring kernel, seq-16k 0.063 → 0.101 ms and seq-4k 0.018 →
// 0.041 ms (one item of one key tile per column: the persistent CTA's per-item latency dominates). A
// refused tensor map falls through to the ring kernel.
#pragma once

#include "../common/tma_map.h"
#include "../dense/dense_hopper.h"
#include <monarch/monarch_cuda.h>

namespace monarch {
namespace cuda {
namespace {  // this header is included by l_step.cu only

inline bool l_step_final_dense_applies(const MonarchParams& p) {
  return p.Aq == 1 && p.Fk == 1 && p.aL != nullptr && p.y != nullptr && p.cL != nullptr && p.o.data != nullptr &&
         int64_t(p.b2) * p.H * p.b1 <= (int64_t(1) << 31) / 8 &&
         tma::hopper_step_runs(p.dtype, p.D, tma::StepKernel::kLDense, false);
}

inline Status l_step_final_dense(const MonarchParams& p, cudaStream_t s) {
  const size_t es = dtype_size(p.dtype);
  const int64_t perBatchWs = int64_t(p.H) * p.b2 * p.b1;  // aL / y rows (and cL values) of one batch row b
  auto at = [&](const void* base, int64_t elems) {
    return static_cast<void*>(static_cast<char*>(const_cast<void*>(base)) + elems * int64_t(es));
  };
  for (int b = 0; b < p.B; ++b) {
    DenseParams d;
    d.dtype = p.dtype, d.B = p.b2, d.H = p.H, d.D = p.D, d.Nq = p.b1, d.Nk = p.b1, d.scale = p.scale;
    // batch = column j (one token), row = query i (b2 tokens), as monarch.h's [B][S][H][D] activations.
    d.q = {at(p.q.data, b * p.q.sB), p.q.sS, int64_t(p.b2) * p.q.sS, p.q.sH};
    d.o = {at(p.o.data, b * p.o.sB), p.o.sS, int64_t(p.b2) * p.o.sS, p.o.sH};
    // candidates of (b, h, j): aL / y [b][h][j][k][D], cL [b][h][j][k].
    d.k = {at(p.aL, b * perBatchWs * p.D), int64_t(p.b1) * p.D, p.D, int64_t(p.b2) * p.b1 * p.D};
    d.v = {at(p.y, b * perBatchWs * p.D), int64_t(p.b1) * p.D, p.D, int64_t(p.b2) * p.b1 * p.D};
    if (!dense_hopper_applies(d))
      return Status::Error("l_step_final_dense: TMA tensor map: the dense sm_90a kernel does not apply");
    DenseKeyBias kb;
    kb.bias = p.cL + b * perBatchWs;
    kb.sB = p.b1, kb.sH = int64_t(p.b2) * p.b1;
    const Status st = dense_hopper_biased(d, kb, s);
    // A refusal can only come at b = 0 (every batch row has the same strides): nothing launched yet.
    if (!st.ok) return st;
  }
  return Status::Ok();
}

}  // namespace
}  // namespace cuda
}  // namespace monarch
