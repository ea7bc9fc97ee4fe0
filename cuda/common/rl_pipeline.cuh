// rl_pipeline.cuh — plain (lambda-free) cp.async helpers for the multi-stage pipelines of the R- and
// L-step kernels (r_step.cu, l_step.cu). Kept apart from mma_utils.cuh, which the dense kernel owns.
#pragma once

#include "mma_utils.cuh"

namespace monarch {
namespace cuda {
namespace detail {

// 4-byte global → shared copy (cp.async.ca: the only variant with 4-byte copies); when !pred the 4
// bytes are zero-filled and nothing is read (gmem must still be a valid address).
__device__ __forceinline__ void cp_async4(void* smem, const void* gmem, bool pred) {
  uint32_t s = static_cast<uint32_t>(__cvta_generic_to_shared(smem));
  int n = pred ? 4 : 0;
  asm volatile("cp.async.ca.shared.global [%0], [%1], 4, %2;\n" ::"r"(s), "l"(gmem), "r"(n));
}

// Load ROWS rows of D elements into shared memory (row stride Smem<D>::kLd) with NTHREADS threads:
// row r < nValid is read from base + r·stride, rows r ≥ nValid are zero-filled (nothing is read; the
// source address given to cp.async is `base`, which must be a valid row — callers pass nValid ≥ 1).
// 16-byte chunks are assigned row-major over the threads; ROWS·D/8 need not divide by NTHREADS.
template <int ROWS, int D, int NTHREADS, typename T>
__device__ __forceinline__ void load_rows_async(T* smem, const T* base, int64_t stride, int nValid) {
  constexpr int kChunksPerRow = D / 8;
  constexpr int kChunks = ROWS * kChunksPerRow;
  constexpr int kIters = (kChunks + NTHREADS - 1) / NTHREADS;
#pragma unroll
  for (int it = 0; it < kIters; ++it) {
    const int c = it * NTHREADS + static_cast<int>(threadIdx.x);
    if (kChunks % NTHREADS != 0 && c >= kChunks) break;
    const int r = c / kChunksPerRow, col = (c % kChunksPerRow) * 8;
    const bool ok = r < nValid;
    const T* src = ok ? base + int64_t(r) * stride + col : base;
    cp_async16(smem + r * Smem<D>::kLd + col, src, ok);
  }
}

// Store this warp's 16 × D fp32 fragment rows (C-fragment layout, scaled per row) as storage dtype,
// through the warp's own 16-row shared-memory area sStage (row stride Smem<D>::kLd; conflict-free
// 4-byte writes), then with 16-byte coalesced global stores (D/8 lanes per row): row r < nRows goes to
// dst0 + r·rowStride. Warp-synchronous; the area is free again on return. Same values as store_rows.
template <int D, typename T>
__device__ __forceinline__ void store_rows_staged(const float (&O)[D / 8][4], const float (&rowScale)[2], int lane,
                                                  T* sStage, T* dst0, int64_t rowStride, int nRows) {
  constexpr int LD = Smem<D>::kLd;
  constexpr int kChunksPerRow = D / 8;
  const int g = lane / 4, q = lane % 4;
  __syncwarp();  // earlier reads of the area by other lanes (ldmatrix, previous staging) are done
#pragma unroll
  for (int h = 0; h < 2; ++h) {
#pragma unroll
    for (int n = 0; n < D / 8; ++n) {
      *reinterpret_cast<uint32_t*>(sStage + (g + 8 * h) * LD + n * 8 + 2 * q) =
          pack2<T>(O[n][2 * h] * rowScale[h], O[n][2 * h + 1] * rowScale[h]);
    }
  }
  __syncwarp();
#pragma unroll
  for (int it = 0; it < 16 * kChunksPerRow / 32; ++it) {
    const int c = it * 32 + lane;
    const int r = c / kChunksPerRow, col = (c % kChunksPerRow) * 8;
    if (r < nRows)
      *reinterpret_cast<uint4*>(dst0 + r * rowStride + col) = *reinterpret_cast<const uint4*>(sStage + r * LD + col);
  }
  __syncwarp();
}

// O1 += P·V1 and O2 += P·V2 (V1, V2: NK × D row-major tiles in shared memory) in one pass over the
// B fragments: the two products' mma chains interleave and each B fragment is live only briefly.
template <int D, int NK, typename T>
__device__ __forceinline__ void warp_gemm_ab2(float (&O1)[D / 8][4], float (&O2)[D / 8][4],
                                              const uint32_t (&pa)[NK / 16][4], const T* sV1, const T* sV2,
                                              int lane) {
  constexpr int LD = Smem<D>::kLd;
#pragma unroll
  for (int kt = 0; kt < NK / 16; ++kt) {
#pragma unroll
    for (int dp = 0; dp < D / 16; ++dp) {
      const int off = (kt * 16 + (lane % 8) + ((lane / 8) % 2) * 8) * LD + dp * 16 + (lane / 16) * 8;
      uint32_t b1[4], b2[4];
      ldmatrix_x4_trans(b1, sV1 + off);
      ldmatrix_x4_trans(b2, sV2 + off);
      mma16816<T>(O1[2 * dp], pa[kt], b1[0], b1[1]);
      mma16816<T>(O1[2 * dp + 1], pa[kt], b1[2], b1[3]);
      mma16816<T>(O2[2 * dp], pa[kt], b2[0], b2[1]);
      mma16816<T>(O2[2 * dp + 1], pa[kt], b2[2], b2[3]);
    }
  }
}

}  // namespace detail
}  // namespace cuda
}  // namespace monarch
