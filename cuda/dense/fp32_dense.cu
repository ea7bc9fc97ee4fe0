// fp32_dense.cu — dense attention for float32 inputs on CUDA cores (see fp32_rows.cuh for the shape):
// softmax(s·q·kᵀ, masked)·v with the per-row LSE and entropy of cpu_dense.cc (§C.3). One warp per
// query row, kWarps rows per block; key/value tiles of kKeys rows shared through shared memory.
// Masks: keyValid [B][Nk]; block-causal: the query at p = q0 + n sees keys [0, (p / C + 1)·C).
// A row with no visible key outputs 0, lse = −INF, entropy = 0; a row with a non-finite logit of a
// visible key (NaN or ±Inf inputs, a q·k overflowing float32) outputs NaN (o, lse, entropy), as the CPU.
#include "../common/fp32_rows.cuh"
#include "../common/fp32_stages.h"

namespace monarch {
namespace cuda {
namespace fp32 {
namespace {

__device__ __forceinline__ int64_t visible_keys(const DenseParams& p, int64_t n) {
  const int64_t pos = int64_t(p.q0) + n, C = p.causalChunk;
  return C > 0 ? min(int64_t(p.Nk), (pos / C + 1) * C) : int64_t(p.Nk);
}

template <int NC>
__global__ void __launch_bounds__(kThreads) dense_f32_kernel(DenseParams p, int nQB) {
  extern __shared__ float sm[];
  const int D = p.D, ldk = D + 1;
  float* Ks = sm;                  // [kKeys][D + 1]
  float* Vs = Ks + kKeys * ldk;    // [kKeys][D]
  float* Qs = Vs + kKeys * D;      // [kWarps][D]
  float* ok = Qs + kWarps * D;     // [kKeys] 1 = valid key
  const int warp = threadIdx.x / 32, lane = threadIdx.x % 32;
  const int64_t blk = blockIdx.x;
  const int qb = int(blk % nQB);
  const int h = int((blk / nQB) % p.H);
  const int b = int(blk / nQB / p.H);
  const int64_t n = int64_t(qb) * kWarps + warp;
  const bool active = n < p.Nq;
  const float* q = static_cast<const float*>(p.q.data);
  const float* k = static_cast<const float*>(p.k.data);
  const float* v = static_cast<const float*>(p.v.data);
  float* qrow = Qs + warp * D;
  if (active) load_row(qrow, q + act_off(p.q, b, n, h), D, lane);
  const int64_t lim = active ? visible_keys(p, n) : 0;
  const int64_t limBlock = visible_keys(p, min(int64_t(p.Nq) - 1, int64_t(qb) * kWarps + kWarps - 1));

  RowState<NC> st;
  st.init();
  for (int64_t c0 = 0; c0 < limBlock; c0 += kKeys) {
    const int nk = int(min(int64_t(kKeys), limBlock - c0));
    __syncthreads();  // the previous tile is consumed
    load_rows(Ks, ldk, nk, D, [&](int c) { return k + act_off(p.k, b, c0 + c, h); });
    load_rows(Vs, D, nk, D, [&](int c) { return v + act_off(p.v, b, c0 + c, h); });
    if (threadIdx.x < kKeys) {
      const int c = threadIdx.x;
      ok[c] = c < nk && (!p.keyValid || p.keyValid[int64_t(b) * p.Nk + c0 + c]) ? 1.f : 0.f;
    }
    __syncthreads();
    if (!active) continue;
    const bool valid = ok[lane] != 0.f && c0 + lane < lim;
    const float x = valid ? p.scale * dot(qrow, Ks + lane * ldk, D) : -INFINITY;
    st.template update<false>(x, valid, Vs, D, nullptr, 0, D, lane);
  }
  if (!active) return;
  const bool empty = st.empty();
  float* o = static_cast<float*>(p.o.data) + act_off(p.o, b, n, h);
  store_row(o, st.a1, empty ? 0.f : 1.f / st.l, empty, D, lane);
  if (lane == 0) {
    const int64_t row = (int64_t(b) * p.H + h) * p.Nq + n;  // lse / entropy [B][H][Nq]
    if (p.lse) p.lse[row] = empty ? -INFINITY : st.m + logf(st.l);
    // (fmaxf would turn a poisoned row's NaN into 0: keep the NaN explicitly, as the CPU does)
    if (p.entropy) p.entropy[row] = empty ? 0.f : st.l != st.l ? st.l : fmaxf(0.f, logf(st.l) - st.u / st.l);
  }
}

}  // namespace

Status dense(const DenseParams& p, cudaStream_t s) {
  return dispatch_nc(p.D, "dense_f32_kernel", [&](auto nc) -> Status {
    constexpr int NCv = decltype(nc)::value;
    auto kernel = dense_f32_kernel<NCv>;
    const size_t smem = row_kernel_smem_bytes(p.D);
    Status st = prepare_smem(kernel, smem, "dense_f32_kernel");
    if (!st.ok) return st;
    const int nQB = (p.Nq + kWarps - 1) / kWarps;
    const int64_t blocks = int64_t(p.B) * p.H * nQB;
    if (blocks > 0x7fffffff) return Status::Error("dense_f32_kernel: problem too large for one launch (B·H·Nq/8 blocks)");
    kernel<<<unsigned(blocks), kThreads, smem, s>>>(p, nQB);
    return launch_status("dense_f32_kernel");
  });
}

}  // namespace fp32
}  // namespace cuda
}  // namespace monarch
