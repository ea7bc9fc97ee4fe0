// fp32_l_final_kernel.cuh — the final float32 L-step o = Σ softmax(u)·y: one warp per query i, kWarps
// queries per block, candidate tiles of aL and y shared through shared memory. D in 1..128.
#pragma once

#include "fp32_l_step_config.cuh"

namespace monarch {
namespace cuda {
namespace fp32 {
namespace {  // this header is included by fp32_l_step.cu only

template <int NC>
__global__ void __launch_bounds__(kThreads) l_final_f32_kernel(MonarchParams p, int nIB) {
  static_assert(NC >= 1 && NC <= kMaxD / 32, "l_final_f32_kernel: NC = ceil(D/32) value columns per lane, 1..4 (D <= 128)");
  extern __shared__ float sm[];
  const int D = p.D, ldk = D + 1, b1 = p.b1, b2 = p.b2;
  float* As = sm;                  // [kKeys][D + 1]  aL candidate tile
  float* Ys = As + kKeys * ldk;    // [kKeys][D]      y candidate tile
  float* Qs = Ys + kKeys * D;      // [kWarps][D]     queries
  float* cl = Qs + kWarps * D;     // [kKeys]         cL candidate tile
  const int warp = threadIdx.x / 32, lane = threadIdx.x % 32;
  int64_t r = blockIdx.x;
  const int ib = int(r % nIB); r /= nIB;
  const int j = int(r % b2); r /= b2;
  const int a = int(r % p.Aq); r /= p.Aq;
  const int h = int(r % p.H);
  const int b = int(r / p.H);
  const int i = ib * kWarps + warp;
  const bool active = i < b1;
  const int64_t tok = (int64_t(a) * b1 + i) * b2 + j;
  float* qrow = Qs + warp * D;
  if (active) load_row(qrow, static_cast<const float*>(p.q.data) + act_off(p.q, b, tok, h), D, lane);
  const int64_t pair0 = ((int64_t(b) * p.H + h) * p.Aq + a) * p.Fk;
  const int nC = allowed_key_tiles(p, a) * p.b1;  // candidates: the allowed key tiles × b1 rows
  const float* aL = static_cast<const float*>(p.aL);
  const float* y = static_cast<const float*>(p.y);

  RowState<NC> st;
  st.init();
  for (int c0 = 0; c0 < nC; c0 += kKeys) {
    const int nc = min(kKeys, nC - c0);
    __syncthreads();
    load_rows(As, ldk, nc, D, [&](int c) { return aL + cand_row(p, pair0, j, c0 + c) * D; });
    load_rows(Ys, D, nc, D, [&](int c) { return y + cand_row(p, pair0, j, c0 + c) * D; });
    if (threadIdx.x < kKeys) cl[threadIdx.x] = threadIdx.x < nc ? p.cL[cand_row(p, pair0, j, c0 + threadIdx.x)] : INFINITY;
    __syncthreads();
    if (!active) continue;
    const float c = cl[lane];
    const bool valid = c != INFINITY;  // −∞ is legitimate only for an R row with no valid key (cL = +INF)
    const float x = valid ? p.scale * dot(qrow, As + lane * ldk, D) - c : -INFINITY;
    st.template update<false>(x, valid, Ys, D, nullptr, 0, D, lane);
  }
  if (!active) return;
  const bool empty = st.empty();
  store_row(static_cast<float*>(p.o.data) + act_off(p.o, b, tok, h), st.a1, empty ? 0.f : 1.f / st.l, empty, D,
            lane);
}

template <typename NCt>  // NC<ceil(D/32)> from dispatch_nc
Status launch_l_final_f32(const MonarchParams& p, cudaStream_t s, NCt) {
  constexpr int NCv = NCt::value;
  auto kernel = l_final_f32_kernel<NCv>;
  const size_t smem = row_kernel_smem_bytes(p.D);
  Status st = prepare_smem(kernel, smem, "l_final_f32_kernel");
  if (!st.ok) return st;
  const int nIB = (p.b1 + kWarps - 1) / kWarps;
  const int64_t blocks = int64_t(p.B) * p.H * p.Aq * p.b2 * nIB;
  if (blocks > 0x7fffffff) return Status::Error("l_final_f32_kernel: problem too large for one launch");
  kernel<<<unsigned(blocks), kThreads, smem, s>>>(p, nIB);
  return launch_status("l_final_f32_kernel");
}

}  // namespace
}  // namespace fp32
}  // namespace cuda
}  // namespace monarch
