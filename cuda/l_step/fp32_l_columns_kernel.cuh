// fp32_l_columns_kernel.cuh — the non-final float32 L-step: per (b, h, a, j) every query's LSE (pass 1),
// then one warp per candidate: aR[a,f,k,j] = Σ_i L·q[a,i,j], cR[a,f,k,j] = Σ_i L (pass 2). D in 1..128.
#pragma once

#include "fp32_l_step_config.cuh"

namespace monarch {
namespace cuda {
namespace fp32 {
namespace {  // this header is included by fp32_l_step.cu only

template <int NC>
__global__ void __launch_bounds__(kThreads) l_columns_f32_kernel(MonarchParams p) {
  static_assert(NC >= 1 && NC <= kMaxD / 32, "l_columns_f32_kernel: NC = ceil(D/32) value columns per lane, 1..4 (D <= 128)");
  extern __shared__ float sm[];
  const int D = p.D, ldk = D + 1, b1 = p.b1, b2 = p.b2;
  float* Ts = sm;                  // [kKeys][D + 1]  pass 1: aL candidate tile; pass 2: query tile
  float* Rs = Ts + kKeys * ldk;    // [kWarps][D]     pass 1: query rows; pass 2: candidate rows
  float* cl = Rs + kWarps * D;     // [kKeys]         pass 1: cL candidate tile
  float* lse = cl + kKeys;         // [b1]            per query: LSE, or −INF when it takes no part
  const int warp = threadIdx.x / 32, lane = threadIdx.x % 32;
  int64_t r = blockIdx.x;
  const int j = int(r % b2); r /= b2;
  const int a = int(r % p.Aq); r /= p.Aq;
  const int h = int(r % p.H);
  const int b = int(r / p.H);
  const int64_t pair0 = ((int64_t(b) * p.H + h) * p.Aq + a) * p.Fk;
  const int nC = allowed_key_tiles(p, a) * p.b1;  // candidates: the allowed key tiles × b1 rows
  const float* q = static_cast<const float*>(p.q.data);
  const float* aL = static_cast<const float*>(p.aL);
  const int64_t nTokQ = int64_t(p.Aq) * b1 * b2;
  auto qtok = [&](int i) { return (int64_t(a) * b1 + i) * b2 + j; };

  // Pass 1: lse_i over all candidates, kWarps queries at a time.
  for (int i0 = 0; i0 < b1; i0 += kWarps) {
    const int i = i0 + warp;
    const bool active = i < b1;
    float* row = Rs + warp * D;
    __syncthreads();  // Rs is free
    if (active) load_row(row, q + act_off(p.q, b, qtok(i), h), D, lane);
    float m = -INFINITY, l = 0.f;
    for (int c0 = 0; c0 < nC; c0 += kKeys) {
      const int nc = min(kKeys, nC - c0);
      __syncthreads();
      load_rows(Ts, ldk, nc, D, [&](int c) { return aL + cand_row(p, pair0, j, c0 + c) * D; });
      if (threadIdx.x < kKeys) cl[threadIdx.x] = threadIdx.x < nc ? p.cL[cand_row(p, pair0, j, c0 + threadIdx.x)] : INFINITY;
      __syncthreads();
      if (!active) continue;
      const float c = cl[lane];
      const bool valid = c != INFINITY;  // −∞ is legitimate only for an R row with no valid key (cL = +INF)
      const float x = valid ? p.scale * dot(row, Ts + lane * ldk, D) - c : -INFINITY;
      // a valid candidate's non-finite logit (NaN, ±Inf) poisons the query: ℓ, then its LSE, NaN (as the CPU)
      if (__any_sync(kFull, valid && !(fabsf(x) < INFINITY))) l = __int_as_float(0x7fc00000);
      const float mx = warp_max(x);
      if (mx == -INFINITY) continue;
      const float mNew = fmaxf(m, mx);
      if (m != -INFINITY && mNew != m) l *= expf(m - mNew);
      l += warp_sum(x == -INFINITY ? 0.f : expf(x - mNew));
      m = mNew;
    }
    if (active && lane == 0) {
      const bool valid = !p.queryValid || p.queryValid[int64_t(b) * nTokQ + qtok(i)];
      lse[i] = valid && (l != l || (m != -INFINITY && l > 0.f)) ? m + logf(l) : -INFINITY;  // NaN ℓ stays NaN
    }
  }

  // Pass 2: one candidate per warp, against query tiles of kKeys.
  for (int c0 = 0; c0 < nC; c0 += kWarps) {
    const int c = c0 + warp;
    const bool active = c < nC;
    float* row = Rs + warp * D;
    const int64_t crow = active ? cand_row(p, pair0, j, c) : 0;
    __syncthreads();  // Rs and Ts are free; pass 1's lse is complete
    if (active) load_row(row, aL + crow * D, D, lane);
    const float cv = active ? p.cL[crow] : INFINITY;
    float acc[NC];
#pragma unroll
    for (int t = 0; t < NC; ++t) acc[t] = 0.f;
    float csum = 0.f;
    for (int i0 = 0; i0 < b1; i0 += kKeys) {
      const int ni = min(kKeys, b1 - i0);
      __syncthreads();
      load_rows(Ts, ldk, ni, D, [&](int t) { return q + act_off(p.q, b, qtok(i0 + t), h); });
      __syncthreads();
      if (!active || cv == INFINITY) continue;
      const int i = i0 + lane;
      const float li = i < b1 ? lse[i] : -INFINITY;
      float w = 0.f;
      if (li != -INFINITY) {  // a logit of −∞ weighs 0 even against a poisoned query's NaN LSE (as the CPU)
        const float x = p.scale * dot(Ts + lane * ldk, row, D) - cv;
        if (x != -INFINITY) w = expf(x - li);
      }
      csum += warp_sum(w);
      for (int t = 0; t < kKeys; ++t) {
        const float wt = __shfl_sync(kFull, w, t);
        if (wt == 0.f) continue;
#pragma unroll
        for (int u = 0; u < NC; ++u) {
          const int d = lane + 32 * u;
          if (d < D) acc[u] = fmaf(wt, Ts[t * ldk + d], acc[u]);
        }
      }
    }
    if (!active) continue;
    // aR/cR rows (k, j): [pair][b1][b2]
    const int f = c / b1, k = c - f * b1;
    const int64_t out = ((pair0 + f) * b1 + k) * b2 + j;
    store_row(static_cast<float*>(p.aR) + out * D, acc, 1.f, false, D, lane);
    if (lane == 0) p.cR[out] = csum;
  }
}

template <typename NCt>  // NC<ceil(D/32)> from dispatch_nc
Status launch_l_columns_f32(const MonarchParams& p, cudaStream_t s, NCt) {
  constexpr int NCv = NCt::value;
  auto kernel = l_columns_f32_kernel<NCv>;
  // a tile [kKeys][D + 1], kWarps rows [D], kKeys cL values, b1 query LSEs
  const size_t smem = sizeof(float) * (size_t(kKeys) * (p.D + 1) + size_t(kWarps) * p.D + kKeys + size_t(p.b1));
  Status st = prepare_smem(kernel, smem, "l_columns_f32_kernel");
  if (!st.ok) return st;
  const int64_t blocks = int64_t(p.B) * p.H * p.Aq * p.b2;
  if (blocks > 0x7fffffff) return Status::Error("l_columns_f32_kernel: problem too large for one launch");
  kernel<<<unsigned(blocks), kThreads, smem, s>>>(p);
  return launch_status("l_columns_f32_kernel");
}

}  // namespace
}  // namespace fp32
}  // namespace cuda
}  // namespace monarch
