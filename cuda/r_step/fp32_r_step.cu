// fp32_r_step.cu — the R-step for float32 inputs on CUDA cores (semantics: monarch.h, cpu_r_step.cc;
// shape: fp32_rows.cuh). One block per (b, h, a, f, key row k, block of kWarps columns j): each warp
// is one R row j, i.e. a small attention of the query aR[a,f,k,j] (q[a,k,j] on the first step; logits
// scaled by invT = min(1/cR, maxInvTemp)) over the b2 keys of row k of key tile f, with keys = values
// (→ aL) and V on the last step (→ y), and the fused online entropy (→ cL = Σ R log R).
#include "../common/fp32_rows.cuh"
#include "../common/fp32_stages.h"

namespace monarch {
namespace cuda {
namespace fp32 {
namespace {

template <int NC, bool kFirst, bool kLast>
__global__ void __launch_bounds__(kThreads) r_step_f32_kernel(MonarchParams p, int nJB) {
  extern __shared__ float sm[];
  const int D = p.D, ldk = D + 1, b1 = p.b1, b2 = p.b2;
  float* Ks = sm;                  // [kKeys][D + 1]  keys (also the values for aL)
  float* Vs = Ks + kKeys * ldk;    // [kKeys][D]      values (last step)
  float* Qs = Vs + kKeys * D;      // [kWarps][D]     R-row queries
  float* ok = Qs + kWarps * D;     // [kKeys]
  const int warp = threadIdx.x / 32, lane = threadIdx.x % 32;
  int64_t r = blockIdx.x;
  const int jb = int(r % nJB); r /= nJB;
  const int k = int(r % b1); r /= b1;
  const int f = int(r % p.Fk); r /= p.Fk;
  const int a = int(r % p.Aq); r /= p.Aq;
  const int h = int(r % p.H);
  const int b = int(r / p.H);
  if (!pair_allowed(p, a, f)) return;  // block-uniform

  const int j = jb * kWarps + warp;
  const bool active = j < b2;
  const int64_t pr = ((int64_t(b) * p.H + h) * p.Aq + a) * p.Fk + f;
  float* qrow = Qs + warp * D;
  float sx = p.scale;
  if (active) {
    if (kFirst) {  // L = I: the query at row k, column j of query tile a
      const int64_t tok = (int64_t(a) * b1 + k) * b2 + j;
      load_row(qrow, static_cast<const float*>(p.q.data) + act_off(p.q, b, tok, h), D, lane);
    } else {
      const int64_t row = (pr * b1 + k) * b2 + j;
      load_row(qrow, static_cast<const float*>(p.aR) + row * D, D, lane);
      const float c = p.cR[row];
      sx = p.scale * (c != c ? c : c > 0.f ? fminf(1.f / c, p.maxInvTemp) : p.maxInvTemp);  // NaN cR: NaN row
    }
  }
  const float* kp = static_cast<const float*>(p.k.data);
  const float* vp = static_cast<const float*>(p.v.data);
  const int64_t keyRow0 = (int64_t(f) * b1 + k) * b2;  // token of key (f, k, 0)
  const int64_t nTok = int64_t(p.Fk) * b1 * b2;

  RowState<NC> st;
  st.init();
  for (int l0 = 0; l0 < b2; l0 += kKeys) {
    const int nl = min(kKeys, b2 - l0);
    __syncthreads();
    load_rows(Ks, ldk, nl, D, [&](int c) { return kp + act_off(p.k, b, keyRow0 + l0 + c, h); });
    if (kLast) load_rows(Vs, D, nl, D, [&](int c) { return vp + act_off(p.v, b, keyRow0 + l0 + c, h); });
    if (threadIdx.x < kKeys) {
      const int c = threadIdx.x;
      ok[c] = c < nl && (!p.keyValid || p.keyValid[int64_t(b) * nTok + keyRow0 + l0 + c]) ? 1.f : 0.f;
    }
    __syncthreads();
    if (!active) continue;
    const bool valid = ok[lane] != 0.f;
    const float x = valid ? sx * dot(qrow, Ks + lane * ldk, D) : -INFINITY;
    st.template update<kLast>(x, valid, Ks, ldk, Vs, D, D, lane);
  }
  if (!active) return;
  // aL/cL/y rows (j, k): [pr][b2][b1]. No valid key: aL = 0, y = 0, cL = +INF; a non-finite logit of a
  // valid key: NaN, NaN, NaN (ℓ is NaN; the L-step then poisons every query that sees this row).
  const int64_t row = (pr * b2 + j) * b1 + k;
  const bool empty = st.empty();
  const float inv = empty ? 0.f : 1.f / st.l;
  store_row(static_cast<float*>(p.aL) + row * D, st.a1, inv, empty, D, lane);
  if (kLast) store_row(static_cast<float*>(p.y) + row * D, st.a2, inv, empty, D, lane);
  if (lane == 0) p.cL[row] = empty ? INFINITY : st.u * inv - logf(st.l);
}

template <int NC, bool kFirst, bool kLast>
Status launch(const MonarchParams& p, cudaStream_t s) {
  auto kernel = r_step_f32_kernel<NC, kFirst, kLast>;
  const size_t smem = row_kernel_smem_bytes(p.D);
  Status st = prepare_smem(kernel, smem, "r_step_f32_kernel");
  if (!st.ok) return st;
  const int nJB = (p.b2 + kWarps - 1) / kWarps;
  const int64_t blocks = int64_t(p.B) * p.H * p.Aq * p.Fk * p.b1 * nJB;
  if (blocks > 0x7fffffff)
    return Status::Error("r_step_f32_kernel: problem too large for one launch (B·H·Aq·Fk·b1·b2/8 blocks)");
  kernel<<<unsigned(blocks), kThreads, smem, s>>>(p, nJB);
  return launch_status("r_step_f32_kernel");
}

}  // namespace

Status r_step(const MonarchParams& p, bool first, bool last, cudaStream_t s) {
  if (!p.aL || !p.cL || (last && !p.y) || (!first && (!p.aR || !p.cR)))
    return Status::Error("r_step_f32_kernel: a workspace buffer is null");
  return dispatch_nc(p.D, "r_step_f32_kernel", [&](auto nc) -> Status {
    constexpr int NCv = decltype(nc)::value;
    if (first) return last ? launch<NCv, true, true>(p, s) : launch<NCv, true, false>(p, s);
    return last ? launch<NCv, false, true>(p, s) : launch<NCv, false, false>(p, s);
  });
}

}  // namespace fp32
}  // namespace cuda
}  // namespace monarch
