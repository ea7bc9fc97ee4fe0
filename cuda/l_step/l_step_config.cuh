// l_step_config.cuh — what the two tensor-core L-step kernels share: tile sizes, the CTA size and the
// geometry of one (b, h, a, j) column problem (l_step.cu describes the stage).
#pragma once

#include "../common/online_softmax.cuh"
#include "../common/rl_pipeline.cuh"

namespace monarch {
namespace cuda {
namespace {  // this header is included by l_step.cu only

using namespace detail;

constexpr int kBM = 64;  // rows per CTA (queries i in the final step, candidates c in pass 2): 4 warps × 16
constexpr int kBN = 64;  // columns per streamed tile (candidates, or queries in pass 2)
constexpr int kThreads = 128;

// Non-finite logits (the CPU's rule, cpu/softmax.h): u = s·⟨q, aL⟩ − cL is −INF for a masked candidate
// (cL = +INF: an R row with no valid key; padding past nCand gets a +INF bias too), which stays a weight
// of 0; a visible candidate's NaN or ±Inf logit poisons the query's row (o, or lse and so aR, cR). NaN and
// +Inf do so through the softmax by themselves; a −Inf one is caught by the smallest raw score s·⟨q, aL⟩
// of the row (OnlineSoftmax::poison_neg_inf, one FMNMX per score), or, where candidates are the mma rows
// (l_step_columns_cand_kernel), by visible_logit under the candidate's mask. The raw score tells them apart
// because a masked candidate's is never −Inf: its aL row is the R-step's empty row, 0 (NaN when a masked
// key held a NaN), and padding rows are zero-filled, so its score is 0 or NaN.

// Geometry of one (b, h, a, j) column problem.
struct Column {
  int b, h, a, j;
  int nCand;          // fLim · b1 allowed candidates
  int64_t candBase;   // index of (a, f = 0, j, k = 0) in the aL / cL / y layout
  int64_t qTok0;      // token of query i = 0: (a·b1)·b2 + j  (query i: + i·b2)
};

__device__ __forceinline__ Column column_of(const MonarchParams& p, int64_t pid) {
  Column c;
  c.j = int(pid % p.b2);  pid /= p.b2;
  c.a = int(pid % p.Aq);  pid /= p.Aq;
  c.h = int(pid % p.H);
  c.b = int(pid / p.H);
  c.nCand = allowed_key_tiles(p, c.a) * p.b1;
  c.candBase = ((int64_t(c.b) * p.H + c.h) * p.Aq + c.a) * p.Fk * p.b2 * p.b1 + int64_t(c.j) * p.b1;
  c.qTok0 = int64_t(c.a) * p.b1 * p.b2 + c.j;
  return c;
}
// aL / cL / y index of candidate cand = f·b1 + k.
__device__ __forceinline__ int64_t cand_index(const MonarchParams& p, const Column& c, int cand) {
  const int f = cand / p.b1, k = cand - f * p.b1;
  return c.candBase + int64_t(f) * p.b2 * p.b1 + k;
}

// aR / cR index of candidate cand = f·b1 + k of a column: ((pair(a, f))·b1 + k)·b2 + j.
__device__ __forceinline__ int64_t ar_index(const MonarchParams& p, const Column& c, int cand) {
  const int f = cand / p.b1, k = cand - f * p.b1;
  const int64_t pair = ((int64_t(c.b) * p.H + c.h) * p.Aq + c.a) * p.Fk + f;
  return (pair * p.b1 + k) * p.b2 + c.j;
}

// The non-final L-step's epilogue for this warp's 16 candidate rows wc0 + [0, 16): aR rows from the fp32
// accumulators (unscaled) and cR = the quad's sum of the per-thread partial column sums csum.
template <int D, typename T>
__device__ __forceinline__ void store_ar_cr(const MonarchParams& p, const Column& col, const float (&acc)[D / 8][4],
                                            const float (&csum)[2], int wc0, int lane) {
  const int g = lane / 4, qd = lane % 4;
  const float one[2] = {1.f, 1.f};
  store_rows<D, T>(acc, one, lane, [&](int r) -> T* {
    return wc0 + r < col.nCand ? static_cast<T*>(p.aR) + ar_index(p, col, wc0 + r) * D : nullptr;
  });
#pragma unroll
  for (int hh = 0; hh < 2; ++hh) {
    const float cs = quad_sum(csum[hh]);
    const int c = wc0 + g + 8 * hh;
    if (qd == 0 && c < col.nCand) p.cR[ar_index(p, col, c)] = cs;
  }
}

}  // namespace
}  // namespace cuda
}  // namespace monarch
