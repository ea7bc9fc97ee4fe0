// fp32_l_step.cu — the L-step for float32 inputs on CUDA cores (semantics: monarch.h, cpu_l_step.cc;
// shape: fp32_rows.cuh). Per (b, h, query tile a, column j) the candidates are c = f·b1 + k over the
// allowed prefix of key tiles f (block-causal allows a prefix), logits u = s·⟨q[a,i,j], aL[a,f,j,k]⟩
// − cL[a,f,j,k] (cL = +INF ⇒ masked).
//   final    (l_final_f32_kernel): one warp per query i, kWarps queries per block, candidate tiles of
//            aL and y shared through shared memory; o = Σ softmax(u)·y.
//   non-final (l_columns_f32_kernel): one block per (b, h, a, j). Pass 1: every query's LSE over all
//            candidates (warp per query) into shared memory. Pass 2: one warp per candidate, query
//            tiles of kKeys through shared memory: L = e^{u − lse_i} (0 for masked queries),
//            aR[a,f,k,j] = Σ_i L·q[a,i,j], cR[a,f,k,j] = Σ_i L.
//
// This file is the float32 L-step's dispatch place (one kernel per file: fp32_l_final_kernel.cuh,
// fp32_l_columns_kernel.cuh); head dims outside 1..128 fail loudly in dispatch_nc (fp32_rows.cuh).
#include "../common/fp32_stages.h"
#include "fp32_l_columns_kernel.cuh"
#include "fp32_l_final_kernel.cuh"

namespace monarch {
namespace cuda {
namespace fp32 {

Status l_step(const MonarchParams& p, bool final, cudaStream_t s) {
  if (!p.aL || !p.cL || (final && (!p.y || !p.o.data)) || (!final && (!p.aR || !p.cR)))
    return Status::Error("l_step_f32: a workspace buffer or the output is null");
  return dispatch_nc(p.D, final ? "l_final_f32_kernel" : "l_columns_f32_kernel", [&](auto nc) -> Status {
    return final ? launch_l_final_f32(p, s, nc) : launch_l_columns_f32(p, s, nc);
  });
}

}  // namespace fp32
}  // namespace cuda
}  // namespace monarch
