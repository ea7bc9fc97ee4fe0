// r_step.cu — the Monarch R-step (docs/ALGORITHMS.md §A.2, §B.3) with the online entropy of §C.3.
//
// For every (b, h, allowed pair (a, f), key row k) the R-step is one small attention:
//   queries  aR[a,f,k,j], j ∈ [b2]   (first step: q[a,k,j] with cR = 1, i.e. L = I)
//   keys     k[f,k,l],    l ∈ [b2]   (masked by keyValid), per-query temperature invT = min(1/cR, max)
//   values   [k[f,k,l] | v[f,k,l]]   (v only on the last step, for y)
//   outputs  aL[a,f,j,k] = Σ_l R·k  (unscaled),  y[a,f,j,k] = Σ_l R·v,  cL[a,f,j,k] = Σ_l R log R
// A row with no valid key writes aL = y = 0 and cL = +INF (L logit −∞, the §A.4 fix).
//
// Kernels (the key tile is also the first value matrix, aL = P·K, so a tile costs one K and one V load
// and three mma products S, aL, y):
//   first step of one tile with b2 > 128 (VMonarch's frames as blocks): dense attention per key row on the
//     dense kernel (r_step_frames_dense.cuh);
//   first step on sm_90a with b2 in 33..80 (480p and 720p MonarchRT): wgmma + TMA, r_step_first_hopper.cu
//     (by default from two query tiles on, three consumers; MONARCH_PREVIEW_KERNELS selects it
//     anywhere, benchmarks/notes/kernel-preview.md);
//   first step otherwise (q does not depend on f, so a CTA loops over the key tiles f with its queries loaded once):
//     r_step_rowwise_kernel  b2 <= 128 (<= 80 for D = 128 with y): whole key row per f, see below;
//     r_step_persist_kernel  otherwise: key subtiles streamed through a 4-stage ring, online softmax.
//   later steps on sm_90a with b2 in 33..80: wgmma + TMA, r_step_later_hopper.cu (by default with three
//     consumers where at most a quarter of their slots idle, Aq >= 3 but 4; MONARCH_PREVIEW_KERNELS
//     selects it anywhere, but b2 in 65..80 only where three consumers with TMA stores serve it);
//   later steps (aR, cR depend on f): one CTA per (b, h, a, f, k, column block):
//     r_step_rowwise_kernel<kFirst = false> where the key row fits (as above): one f-block, queries aR;
//     r_step_later_kernel otherwise: 4 warps × 16 query columns j, keys in tiles of kBN through
//     double-buffered shared memory with an online softmax.
//
// This file is the stage's one dispatch place: which kernel runs for which (dtype, D, b2, step); one
// kernel per file (r_step_later_kernel.cuh, r_step_persist_kernel.cuh, r_step_rowwise_kernel.cuh; float32:
// fp32_r_step.cu). Unsupported head dims fail loudly in dispatch_dtype_dim (cuda/common/mma_utils.cuh).
#include "../common/fp32_stages.h"
#include <monarch/monarch_cuda.h>
#include "../common/tma_map.h"
#include "r_step_later_kernel.cuh"
#include "r_step_persist_kernel.cuh"
#include "r_step_frames_dense.cuh"
#include "r_step_rowwise_kernel.cuh"
#include "r_step_hopper.h"

namespace monarch {
namespace cuda {
namespace {

using namespace detail;

// Every R-step: the row-wise kernel where the key row fits (b2 <= 128, or <= 80 for D = 128 with y,
// whose f-blocks of K and V must leave room for two CTAs per SM); else the first step takes the
// persistent ring kernel and later steps r_step_later_kernel.
template <typename T, int D, bool kFirst, bool kLast>
Status launch_r_step_any(const MonarchParams& p, cudaStream_t s) {
  const int nk = (p.b2 + 15) / 16;
  switch (nk) {
    case 1: return launch_r_step_rowwise<T, D, kFirst, kLast, 1>(p, s);
    case 2: return launch_r_step_rowwise<T, D, kFirst, kLast, 2>(p, s);
    case 3: return launch_r_step_rowwise<T, D, kFirst, kLast, 3>(p, s);
    case 4: return launch_r_step_rowwise<T, D, kFirst, kLast, 4>(p, s);
    case 5: return launch_r_step_rowwise<T, D, kFirst, kLast, 5>(p, s);
    default: break;
  }
  if constexpr (!(D == 128 && kLast)) {
    if (nk == 6) return launch_r_step_rowwise<T, D, kFirst, kLast, 6>(p, s);
    if (nk <= 8) return launch_r_step_rowwise<T, D, kFirst, kLast, 8>(p, s);
  }
  if constexpr (kFirst) return launch_r_step_persist<T, D, kLast>(p, s);
  else return launch_r_step_later<T, D, kLast>(p, s);
}

}  // namespace

bool r_step_persistent_hopper(const MonarchParams& p, bool first, bool last) {
  if (p.dtype == kF32 || (first && r_step_frames_dense_applies(p, last))) return false;
  return first ? r_step_first_hopper_applies(p, last) : r_step_later_hopper_applies(p);
}

Status r_step(const MonarchParams& p, bool first, bool last, Stream stream) {
  if (p.B <= 0 || p.H <= 0 || p.Aq <= 0 || p.Fk <= 0 || p.b1 <= 0 || p.b2 <= 0) return Status::Ok();
  if (p.dtype == kF32) return fp32::r_step(p, first, last, static_cast<cudaStream_t>(stream));
  if (!act_rows_aligned16(p.q) || !act_rows_aligned16(p.k) || !act_rows_aligned16(p.v) ||
      !aligned16(p.aR) || !aligned16(p.aL) || !aligned16(p.y))
    return Status::Error(
        "r_step: q, k, v and the workspace need 16-byte aligned rows (strides multiples of 8)");
  // One tile with long key rows (VMonarch's frames as blocks): the first step is dense attention per row.
  // Shorter rows (one-tile sequences) take its one-pass sm_90a form by default, else fall through.
  if (first && r_step_frames_dense_applies(p, last)) {
    Status ds = r_step_frames_dense(p, last, stream);
    if (!r_step_dense_short_rows(p) || tma::hopper_status_final(ds)) return ds;
  }
  cudaStream_t s = static_cast<cudaStream_t>(stream);
  // sm_90a, key rows of 33..80 tokens (480p and 720p MonarchRT): the wgmma/TMA first and later steps; a
  // layout their tensor maps refuse falls through to the mma.sync kernels.
  if (first && r_step_first_hopper_applies(p, last)) {
    Status hs = r_step_first_hopper(p, last, s);
    if (tma::hopper_status_final(hs)) return hs;
  }
  if (!first && r_step_later_hopper_applies(p)) {
    Status hs = r_step_later_hopper(p, last, s);
    if (tma::hopper_status_final(hs)) return hs;
  }
  return dispatch_dtype_dim(p.dtype, p.D, [&](auto tt, auto dd) -> Status {
    using T = typename decltype(tt)::type;
    constexpr int D = decltype(dd)::value;
    if (first) return last ? launch_r_step_any<T, D, true, true>(p, s) : launch_r_step_any<T, D, true, false>(p, s);
    return last ? launch_r_step_any<T, D, false, true>(p, s) : launch_r_step_any<T, D, false, false>(p, s);
  });
}

}  // namespace cuda
}  // namespace monarch
