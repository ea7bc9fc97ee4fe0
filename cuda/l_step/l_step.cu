// l_step.cu — the Monarch L-step (docs/ALGORITHMS.md §A.2, §A.6, §B.3).
//
// Per (b, h, query tile a, column j) the L-step is attention over the candidates c = (f, k), f in the
// allowed prefix [0, fLim) of key tiles (block-causal allows a prefix), k ∈ [b1]:
//   queries q[a,i,j] (i ∈ [b1], tokens (a·b1+i)·b2+j),  keys aL[a,f,j,k],  additive bias −cL[a,f,j,k]
//   logit u = s·⟨q, aL⟩ − cL   (cL = +INF ⇒ the candidate is masked)
//
// sm_90a, one tile (Aq = Fk = 1): the final step as biased dense attention (l_step_final_dense.cuh), only
// when MONARCH_PREVIEW_KERNELS selects l-dense (slower than the ring kernel at the shapes measured).
// sm_90a, b1 ≤ 32 (the final step: ≤ 64): l_step_final_hopper.cu and l_step_columns_hopper.cu (wgmma + TMA,
// benchmarks/notes/kernel-preview.md): the final one by default where b1 ≥ 16 (its size rule), the
// non-final one (slower than the mma.sync kernel) only when MONARCH_PREVIEW_KERNELS selects it.
// final (l_step_final_ring_kernel): o[a,i,j] = Σ_c softmax_c(u)·y[a,f,j,k]. FlashAttention over Fk·b1
//   candidates with a per-key bias; one CTA of min(ceil(b1/16), 4) warps (8 for D = 64 and b1 in (64, 128])
//   per (b,h,a,j, block of queries i), candidate tiles of 32 streamed through a 4-stage cp.async ring
//   (see the kernel).
// non-final: L = softmax_c(u) zeroed for invalid queries, then the column reductions
//   aR[a,f,k,j] = Σ_i L·q[a,i,j], cR[a,f,k,j] = Σ_i L. One CTA per (b,h,a,j).
//   b1 <= 64 (l_step_columns_cand_kernel): the column's queries resident in shared memory, candidates on
//   the mma rows in both passes (see the kernel); where the longest column's candidates fit in shared
//   memory as well (Wan 480p: 630 rows, 171 KB at D = 128), l_step_columns_resident_kernel reads them once. b1 > 64 (l_step_columns_kernel):
//   pass 1 computes every query's log-partition lse_i (streaming max/sum over the candidates) into
//   shared memory; pass 2 walks candidate blocks of 64 and, for each, query tiles of 64: Sᵀ = aL·qᵀ,
//   Pᵀ = 2^(Sᵀ·s·log2e − cL·log2e − lse2_i), aR += Pᵀ·q and cR += Σ_i Pᵀ (a tensor-core Lᵀ·Q).
//
// This file is the stage's one dispatch place: which kernel runs for which (dtype, D, b1, final); one
// kernel per file (l_step_final_ring_kernel.cuh, l_step_columns_kernel.cuh; float32: fp32_l_step.cu). Unsupported
// head dims fail loudly in dispatch_dtype_dim (cuda/common/mma_utils.cuh).
#include "../common/fp32_stages.h"
#include <monarch/monarch_cuda.h>
#include "../common/tma_map.h"
#include "l_step_columns_cand_kernel.cuh"
#include "l_step_columns_kernel.cuh"
#include "l_step_columns_resident_kernel.cuh"
#include "l_step_final_dense.cuh"
#include "l_step_final_ring_kernel.cuh"
#include "l_step_hopper.h"

namespace monarch {
namespace cuda {
namespace {

using namespace detail;

template <typename T, int D>
Status launch_l_step(const MonarchParams& p, bool final, cudaStream_t s) {
  const int64_t columns = int64_t(p.B) * p.H * p.Aq * p.b2;
  if (columns > 0x7fffffff)
    return Status::Error("l_step: problem too large for one launch (B·H·Aq·b2 = " + std::to_string(columns) + ")");
  if (final) {
    if (p.b1 <= 16) return launch_l_final_ring<T, D, 1>(p, columns, s);
    if (p.b1 <= 32) return launch_l_final_ring<T, D, 2>(p, columns, s);
    if (p.b1 <= 48) return launch_l_final_ring<T, D, 3>(p, columns, s);
    // D = 64, b1 in (64, 128]: one 8-warp CTA per column instead of two 4-warp CTAs that each stream
    // the column's whole candidate list (half the L2 traffic).
    if constexpr (D == 64)
      if (p.b1 > 64 && p.b1 <= 128) return launch_l_final_ring<T, D, 8>(p, columns, s);
    return launch_l_final_ring<T, D, 4>(p, columns, s);
  }
  // Non-final: candidates on the mma rows with the column's queries resident (b1 <= 64), the candidates
  // too where the longest column's rows fit in shared memory, else 64-row tiles.
  bool launched = false;
  Status rs = Status::Ok();
  if (p.b1 <= 16) rs = launch_l_columns_resident<T, D, 1>(p, columns, s, &launched);
  else if (p.b1 <= 32) rs = launch_l_columns_resident<T, D, 2>(p, columns, s, &launched);
  else if (p.b1 <= 48) rs = launch_l_columns_resident<T, D, 3>(p, columns, s, &launched);
  else if (p.b1 <= 64) {
    if constexpr (D == 64) rs = launch_l_columns_resident<T, D, 4>(p, columns, s, &launched);
  }
  if (!rs.ok || launched) return rs;
  if (p.b1 <= 16) return launch_l_columns_cand<T, D, 1>(p, columns, s);
  if (p.b1 <= 32) return launch_l_columns_cand<T, D, 2>(p, columns, s);
  if (p.b1 <= 48) return launch_l_columns_cand<T, D, 3>(p, columns, s);
  // (D = 128 with b1 in (48, 64] would spill at the 3-CTA register cap; the 64-row kernel wastes
  // little there.)
  if constexpr (D == 64)
    if (p.b1 <= 64) return launch_l_columns_cand<T, D, 4>(p, columns, s);
  return launch_l_columns<T, D>(p, columns, s);
}

}  // namespace

bool l_step_persistent_hopper(const MonarchParams& p, bool final) {
  if (p.dtype == kF32) return false;
  if (final) return !l_step_final_dense_applies(p) && l_step_final_hopper_applies(p);
  return l_step_columns_hopper_applies(p);
}

Status l_step(const MonarchParams& p, bool final, Stream stream) {
  if (p.B <= 0 || p.H <= 0 || p.Aq <= 0 || p.Fk <= 0 || p.b1 <= 0 || p.b2 <= 0) return Status::Ok();
  if (p.dtype == kF32) return fp32::l_step(p, final, static_cast<cudaStream_t>(stream));
  if (!act_rows_aligned16(p.q) || (final && !act_rows_aligned16(p.o)) || !aligned16(p.aR) ||
      !aligned16(p.aL) || !aligned16(p.y))
    return Status::Error(
        "l_step: q, o and the workspace need 16-byte aligned rows (base aligned, strides multiples of 8)");
  cudaStream_t s = static_cast<cudaStream_t>(stream);
  // sm_90a, b1 ≤ 32 (480p MonarchRT): the wgmma/TMA final step and the non-final preview (l_step_hopper.h);
  // a layout their tensor maps refuse falls through to the mma.sync kernels.
  // sm_90a, one tile (MonarchAttention sequences), when selected: the final step on the dense kernel with
  // the bias −cL (l_step_final_dense.cuh); a refused tensor map falls through.
  if (final && l_step_final_dense_applies(p)) {
    Status ds = l_step_final_dense(p, s);
    if (tma::hopper_status_final(ds)) return ds;
  }
  if (final && l_step_final_hopper_applies(p)) {
    Status hs = l_step_final_hopper(p, s);
    if (tma::hopper_status_final(hs)) return hs;
  }
  if (!final && l_step_columns_hopper_applies(p)) {
    Status hs = l_step_columns_hopper(p, s);
    if (tma::hopper_status_final(hs)) return hs;
  }
  return dispatch_dtype_dim(p.dtype, p.D, [&](auto tt, auto dd) -> Status {
    using T = typename decltype(tt)::type;
    constexpr int D = decltype(dd)::value;
    return launch_l_step<T, D>(p, final, s);
  });
}

}  // namespace cuda
}  // namespace monarch
