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

}  // namespace
}  // namespace cuda
}  // namespace monarch
