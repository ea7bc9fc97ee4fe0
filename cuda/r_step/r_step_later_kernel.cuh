// r_step_later_kernel.cuh — the R-step of the later steps t >= 2 (queries aR[a,f,k,j] with temperature
// 1/cR, both depending on f). One CTA of 4 warps per (problem (b,h,a,f,k), block of kBM = 64 query
// columns j); keys in tiles of kBN through double-buffered shared memory, online softmax with entropy.
// Any b2.
#pragma once

#include "r_step_config.cuh"

namespace monarch {
namespace cuda {
namespace {  // this header is included by r_step.cu only

template <int D, typename T, bool kLast>
constexpr size_t r_step_smem_bytes() {
  return size_t(kBM + 4 * r_step_bn<D, kLast>()) * Smem<D>::kLd * sizeof(T);
}

template <typename T, int D, bool kLast>
__global__ void __launch_bounds__(kThreads, 2) r_step_later_kernel(MonarchParams p) {
  static_assert(D == 64 || D == 128, "r_step_later_kernel: head dim 64 or 128 (mma fragments of 16, 16-byte rows)");
  static_assert(r_step_bn<D, kLast>() % 16 == 0, "r_step_later_kernel: key tiles are whole m16n8k16 blocks");
  constexpr int LD = Smem<D>::kLd;
  constexpr int kBN = r_step_bn<D, kLast>();
  extern __shared__ __align__(16) unsigned char smem_raw[];
  T* sQ = reinterpret_cast<T*>(smem_raw);  // [kBM][LD]  queries aR (j)
  T* sK = sQ + kBM * LD;                   // [2][kBN][LD]  keys k (l), also values for aL
  T* sV = sK + 2 * kBN * LD;               // [2][kBN][LD]  values v (l), last step only

  int64_t pid = blockIdx.x;
  const int kr = int(pid % p.b1);  pid /= p.b1;
  const int f = int(pid % p.Fk);   pid /= p.Fk;
  const int a = int(pid % p.Aq);   pid /= p.Aq;
  const int h = int(pid % p.H);
  const int b = int(pid / p.H);
  if (!pair_allowed(p, a, f)) return;

  const int warp = threadIdx.x / 32, lane = threadIdx.x % 32;
  const int g = lane / 4, qd = lane % 4;
  const int j0 = blockIdx.y * kBM;
  const int b2 = p.b2;
  const int64_t pair = ((int64_t(b) * p.H + h) * p.Aq + a) * p.Fk + f;  // (b, h, a, f)
  const int64_t rowJ0 = (pair * p.b1 + kr) * b2;                        // aR / cR row (k, j = 0)
  const int64_t colK0 = pair * b2 * p.b1 + kr;                          // aL / cL / y row (j = 0, k)

  const T* qrow0 = static_cast<const T*>(p.aR) + rowJ0 * D;  // queries aR[a,f,k,j], rows of D
  const int64_t qStride = D;
  const int64_t keyTok0 = (int64_t(f) * p.b1 + kr) * b2;  // token of key l = 0
  const T* kg = static_cast<const T*>(p.k.data) + b * p.k.sB + h * p.k.sH + keyTok0 * p.k.sS;
  const T* vg = static_cast<const T*>(p.v.data) + b * p.v.sB + h * p.v.sH + keyTok0 * p.v.sS;
  const uint8_t* kv = p.keyValid ? p.keyValid + int64_t(b) * p.Fk * p.b1 * b2 + keyTok0 : nullptr;

  const int nTiles = (b2 + kBN - 1) / kBN;
  auto load_kv = [&](int t, int buf) {
    const int base = t * kBN;
    load_tile_async<kBN, D, kThreads>(sK + buf * kBN * LD, kg, [&](int r) -> const T* {
      return base + r < b2 ? kg + int64_t(base + r) * p.k.sS : nullptr;
    });
    if constexpr (kLast)
      load_tile_async<kBN, D, kThreads>(sV + buf * kBN * LD, vg, [&](int r) -> const T* {
        return base + r < b2 ? vg + int64_t(base + r) * p.v.sS : nullptr;
      });
  };
  load_tile_async<kBM, D, kThreads>(sQ, qrow0, [&](int r) -> const T* {
    return j0 + r < b2 ? qrow0 + int64_t(j0 + r) * qStride : nullptr;
  });
  load_kv(0, 0);
  cp_async_commit();

  // Per-row logit scale in base 2: s·invT·log2(e).
  float scale2[2];
#pragma unroll
  for (int hh = 0; hh < 2; ++hh) {
    float invT = 1.f;
    const int j = j0 + warp * 16 + g + 8 * hh;
    if (j < b2) invT = r_inv_temp(p.cR[rowJ0 + j], p.maxInvTemp);
    scale2[hh] = p.scale * invT * kLog2e;
  }

  float accK[D / 8][4];
  float accV[D / 8][4];  // dead (eliminated) unless kLast
  zero_acc<D>(accK);
  if constexpr (kLast) zero_acc<D>(accV);
  OnlineSoftmax<kBN, true> sm;
  sm.init();

  for (int t = 0; t < nTiles; ++t) {
    const int buf = t & 1;
    if (t + 1 < nTiles) {
      load_kv(t + 1, buf ^ 1);
      cp_async_commit();
      cp_async_wait<1>();
    } else {
      cp_async_wait<0>();
    }
    __syncthreads();

    float S[kBN / 8][4];
    warp_gemm_abt_smem<D, kBN, T>(S, sQ + warp * 16 * LD, sK + buf * kBN * LD, lane);
    scale_mask_logits<kBN>(S, t * kBN, b2, kv, scale2, qd);
    float alpha[2];
    sm.update(S, alpha);
    rescale_rows<D>(accK, alpha);
    uint32_t pa[kBN / 16][4];
    c_to_a_frags<kBN, T>(pa, S);
    warp_gemm_ab<D, kBN, T>(accK, pa, sK + buf * kBN * LD, lane);
    if constexpr (kLast) {
      rescale_rows<D>(accV, alpha);
      warp_gemm_ab<D, kBN, T>(accV, pa, sV + buf * kBN * LD, lane);
    }
    __syncthreads();
  }

  sm.finalize();
  float inv[2];
#pragma unroll
  for (int hh = 0; hh < 2; ++hh) inv[hh] = sm.l[hh] > 0.f ? 1.f / sm.l[hh] : 0.f;
  const int wj0 = j0 + warp * 16;
  auto out_row = [&](void* base, int r) -> T* {
    return wj0 + r < b2 ? static_cast<T*>(base) + (colK0 + int64_t(wj0 + r) * p.b1) * D : nullptr;
  };
  store_rows<D, T>(accK, inv, lane, [&](int r) { return out_row(p.aL, r); });
  if constexpr (kLast) store_rows<D, T>(accV, inv, lane, [&](int r) { return out_row(p.y, r); });
  if (qd == 0) {
#pragma unroll
    for (int hh = 0; hh < 2; ++hh) {
      const int j = wj0 + g + 8 * hh;
      if (j < b2) p.cL[colK0 + int64_t(j) * p.b1] = sm.l[hh] <= 0.f ? INFINITY : sm.neg_entropy(hh);
    }
  }
}

template <typename T, int D, bool kLast>
Status launch_r_step_later(const MonarchParams& p, cudaStream_t s) {
  auto kernel = r_step_later_kernel<T, D, kLast>;
  const size_t smem = r_step_smem_bytes<D, T, kLast>();
  Status st = prepare_smem(kernel, smem, "r_step_later_kernel");
  if (!st.ok) return st;
  const int64_t problems = int64_t(p.B) * p.H * p.Aq * p.Fk * p.b1;
  const int64_t qBlocks = (p.b2 + kBM - 1) / kBM;
  if (problems > 0x7fffffff || qBlocks > 65535)
    return Status::Error("r_step_later_kernel: problem too large for one launch (B·H·Aq·Fk·b1 = " +
                         std::to_string(problems) + ")");
  dim3 grid(static_cast<unsigned>(problems), static_cast<unsigned>(qBlocks));
  kernel<<<grid, kThreads, smem, s>>>(p);
  return launch_status("r_step_later_kernel");
}

}  // namespace
}  // namespace cuda
}  // namespace monarch
