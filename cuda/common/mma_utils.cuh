// mma_utils.cuh — tensor-core building blocks shared by the attention-shaped kernels (dense, R-step,
// L-step): warp-level mma.sync m16n8k16 (fp16/bf16 operands, fp32 accumulation), ldmatrix fragment
// loads, cp.async tile loads into padded shared memory, and the one dispatch place (dtype × head dim).
//
// Warp tile conventions (PTX ISA "mma.m16n8k16" fragment layouts), lane = 4·g + q:
//   C/D 16×8 fp32: c[0], c[1] at (row g,   cols 2q, 2q+1);  c[2], c[3] at (row g+8, cols 2q, 2q+1)
//   A   16×16    : a[0] (g, 2q..2q+1)  a[1] (g+8, 2q..)  a[2] (g, 2q+8..)  a[3] (g+8, 2q+8..)
//   B   16×8     : b[0] (k 2q..2q+1, n g)  b[1] (k 2q+8.., n g)
// so the C fragments of two adjacent n-tiles of S = Q·Kᵀ are, packed to 16 bits, exactly the A
// fragment of P for the next product P·V (the FlashAttention-2 register trick).
#pragma once

#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <cuda_runtime.h>

#include <cstdint>
#include <string>

#include "launch_utils.cuh"
#include <monarch/monarch.h>
#include <monarch/support.h>

namespace monarch {
namespace cuda {
namespace detail {

constexpr float kLog2e = 1.4426950408889634f;
constexpr float kLn2 = 0.6931471805599453f;

// Shared-memory tile row stride in elements: D plus 8 elements (16 bytes) of padding, so the 8 row
// addresses of one ldmatrix 8×8 matrix fall in 8 distinct 4-bank groups (conflict-free) and every row
// start stays 16-byte aligned for cp.async.
template <int D>
struct Smem {
  static constexpr int kLd = D + 8;
};

// ---- 16-bit packing --------------------------------------------------------------------------
template <typename T>
__device__ __forceinline__ uint32_t pack2(float lo, float hi);
template <>
__device__ __forceinline__ uint32_t pack2<__half>(float lo, float hi) {
  __half2 h = __floats2half2_rn(lo, hi);
  return *reinterpret_cast<uint32_t*>(&h);
}
template <>
__device__ __forceinline__ uint32_t pack2<__nv_bfloat16>(float lo, float hi) {
  __nv_bfloat162 h = __floats2bfloat162_rn(lo, hi);
  return *reinterpret_cast<uint32_t*>(&h);
}

template <typename T>
__device__ __forceinline__ T from_float(float x);
template <>
__device__ __forceinline__ __half from_float<__half>(float x) { return __float2half_rn(x); }
template <>
__device__ __forceinline__ __nv_bfloat16 from_float<__nv_bfloat16>(float x) {
  return __float2bfloat16_rn(x);
}

// ---- mma.sync m16n8k16, fp32 accumulate ------------------------------------------------------
template <typename T>
__device__ __forceinline__ void mma16816(float (&c)[4], const uint32_t (&a)[4], uint32_t b0, uint32_t b1);
template <>
__device__ __forceinline__ void mma16816<__half>(float (&c)[4], const uint32_t (&a)[4], uint32_t b0,
                                                 uint32_t b1) {
  asm volatile(
      "mma.sync.aligned.m16n8k16.row.col.f32.f16.f16.f32 {%0,%1,%2,%3}, {%4,%5,%6,%7}, {%8,%9}, "
      "{%0,%1,%2,%3};\n"
      : "+f"(c[0]), "+f"(c[1]), "+f"(c[2]), "+f"(c[3])
      : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b0), "r"(b1));
}
template <>
__device__ __forceinline__ void mma16816<__nv_bfloat16>(float (&c)[4], const uint32_t (&a)[4], uint32_t b0,
                                                        uint32_t b1) {
  asm volatile(
      "mma.sync.aligned.m16n8k16.row.col.f32.bf16.bf16.f32 {%0,%1,%2,%3}, {%4,%5,%6,%7}, {%8,%9}, "
      "{%0,%1,%2,%3};\n"
      : "+f"(c[0]), "+f"(c[1]), "+f"(c[2]), "+f"(c[3])
      : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b0), "r"(b1));
}

// ---- ldmatrix ---------------------------------------------------------------------------------
__device__ __forceinline__ void ldmatrix_x4(uint32_t (&r)[4], const void* smem) {
  uint32_t s = static_cast<uint32_t>(__cvta_generic_to_shared(smem));
  asm volatile("ldmatrix.sync.aligned.m8n8.x4.shared.b16 {%0,%1,%2,%3}, [%4];\n"
               : "=r"(r[0]), "=r"(r[1]), "=r"(r[2]), "=r"(r[3])
               : "r"(s));
}
__device__ __forceinline__ void ldmatrix_x4_trans(uint32_t (&r)[4], const void* smem) {
  uint32_t s = static_cast<uint32_t>(__cvta_generic_to_shared(smem));
  asm volatile("ldmatrix.sync.aligned.m8n8.x4.trans.shared.b16 {%0,%1,%2,%3}, [%4];\n"
               : "=r"(r[0]), "=r"(r[1]), "=r"(r[2]), "=r"(r[3])
               : "r"(s));
}

// ---- cp.async ---------------------------------------------------------------------------------
// 16-byte global → shared copy; when !pred the 16 bytes are zero-filled and nothing is read
// (gmem must still be a valid address, pass any in-bounds pointer).
__device__ __forceinline__ void cp_async16(void* smem, const void* gmem, bool pred) {
  uint32_t s = static_cast<uint32_t>(__cvta_generic_to_shared(smem));
  int n = pred ? 16 : 0;
  asm volatile("cp.async.cg.shared.global [%0], [%1], 16, %2;\n" ::"r"(s), "l"(gmem), "r"(n));
}
__device__ __forceinline__ void cp_async_commit() { asm volatile("cp.async.commit_group;\n" ::); }
template <int N>
__device__ __forceinline__ void cp_async_wait() {
  asm volatile("cp.async.wait_group %0;\n" ::"n"(N));
}

// Load a ROWS × D tile into shared memory (row stride Smem<D>::kLd) with cp.async, NTHREADS threads.
// rowptr(r) returns the global address of row r, or nullptr for a row to zero-fill. 16-byte chunks
// are assigned row-major over the threads, so consecutive threads read consecutive bytes of a row.
template <int ROWS, int D, int NTHREADS, typename T, typename RowPtr>
__device__ __forceinline__ void load_tile_async(T* smem, const T* fallback, RowPtr rowptr) {
  constexpr int kChunksPerRow = D / 8;
  constexpr int kChunks = ROWS * kChunksPerRow;
  static_assert(kChunks % NTHREADS == 0, "tile chunks must divide over the threads");
#pragma unroll
  for (int it = 0; it < kChunks / NTHREADS; ++it) {
    const int c = it * NTHREADS + static_cast<int>(threadIdx.x);
    const int r = c / kChunksPerRow, col = (c % kChunksPerRow) * 8;
    const T* src = rowptr(r);
    cp_async16(smem + r * Smem<D>::kLd + col, src ? src + col : fallback, src != nullptr);
  }
}

// ---- warp products ----------------------------------------------------------------------------
// A fragments of a 16 × D row-major tile (this warp's 16 query rows) held in registers.
template <int D, typename T>
__device__ __forceinline__ void load_a_frags(uint32_t (&a)[D / 16][4], const T* sTile, int lane) {
  constexpr int LD = Smem<D>::kLd;
#pragma unroll
  for (int kk = 0; kk < D / 16; ++kk)
    ldmatrix_x4(a[kk], sTile + (lane % 16) * LD + kk * 16 + (lane / 16) * 8);
}

// S[16 × NK] = A(16 × D, fragments) · Bᵀ with B an NK × D row-major tile in shared memory.
template <int D, int NK, typename T>
__device__ __forceinline__ void warp_gemm_abt(float (&S)[NK / 8][4], const uint32_t (&a)[D / 16][4],
                                              const T* sB, int lane) {
  constexpr int LD = Smem<D>::kLd;
#pragma unroll
  for (int n = 0; n < NK / 8; ++n) S[n][0] = S[n][1] = S[n][2] = S[n][3] = 0.f;
#pragma unroll
  for (int kk = 0; kk < D / 16; ++kk) {
#pragma unroll
    for (int np = 0; np < NK / 16; ++np) {
      uint32_t b[4];
      ldmatrix_x4(b, sB + (np * 16 + (lane % 8) + (lane / 16) * 8) * LD + kk * 16 + ((lane / 8) % 2) * 8);
      mma16816<T>(S[2 * np], a[kk], b[0], b[1]);
      mma16816<T>(S[2 * np + 1], a[kk], b[2], b[3]);
    }
  }
}

// Same product with A read from shared memory (16 × D row-major tile) at each k-step: 32 fewer live
// registers than keeping A's fragments, for kernels that carry two output accumulators.
template <int D, int NK, typename T>
__device__ __forceinline__ void warp_gemm_abt_smem(float (&S)[NK / 8][4], const T* sA, const T* sB, int lane) {
  constexpr int LD = Smem<D>::kLd;
#pragma unroll
  for (int n = 0; n < NK / 8; ++n) S[n][0] = S[n][1] = S[n][2] = S[n][3] = 0.f;
#pragma unroll
  for (int kk = 0; kk < D / 16; ++kk) {
    uint32_t a[4];
    ldmatrix_x4(a, sA + (lane % 16) * LD + kk * 16 + (lane / 16) * 8);
#pragma unroll
    for (int np = 0; np < NK / 16; ++np) {
      uint32_t b[4];
      ldmatrix_x4(b, sB + (np * 16 + (lane % 8) + (lane / 16) * 8) * LD + kk * 16 + ((lane / 8) % 2) * 8);
      mma16816<T>(S[2 * np], a, b[0], b[1]);
      mma16816<T>(S[2 * np + 1], a, b[2], b[3]);
    }
  }
}

// Convert fp32 C fragments (16 × NK, probabilities) into A fragments for a product over NK.
template <int NK, typename T>
__device__ __forceinline__ void c_to_a_frags(uint32_t (&pa)[NK / 16][4], const float (&P)[NK / 8][4]) {
#pragma unroll
  for (int kt = 0; kt < NK / 16; ++kt) {
    pa[kt][0] = pack2<T>(P[2 * kt][0], P[2 * kt][1]);
    pa[kt][1] = pack2<T>(P[2 * kt][2], P[2 * kt][3]);
    pa[kt][2] = pack2<T>(P[2 * kt + 1][0], P[2 * kt + 1][1]);
    pa[kt][3] = pack2<T>(P[2 * kt + 1][2], P[2 * kt + 1][3]);
  }
}

// O[16 × D] += P(16 × NK, A fragments) · V with V an NK × D row-major tile in shared memory.
template <int D, int NK, typename T>
__device__ __forceinline__ void warp_gemm_ab(float (&O)[D / 8][4], const uint32_t (&pa)[NK / 16][4],
                                             const T* sV, int lane) {
  constexpr int LD = Smem<D>::kLd;
#pragma unroll
  for (int kt = 0; kt < NK / 16; ++kt) {
#pragma unroll
    for (int dp = 0; dp < D / 16; ++dp) {
      uint32_t b[4];
      ldmatrix_x4_trans(b, sV + (kt * 16 + (lane % 8) + ((lane / 8) % 2) * 8) * LD + dp * 16 + (lane / 16) * 8);
      mma16816<T>(O[2 * dp], pa[kt], b[0], b[1]);
      mma16816<T>(O[2 * dp + 1], pa[kt], b[2], b[3]);
    }
  }
}

// Multi-m-tile variants: a warp owns MT tiles of 16 rows (rows mt·16 + [0,16) of sA) and every B
// fragment loaded from shared memory feeds MT mma instructions, so shared-memory traffic per mma drops
// by MT (ldmatrix bandwidth, not the tensor cores, bounds the single-tile loop on sm_80/sm_90).
template <int D, int NK, int MT, typename T>
__device__ __forceinline__ void warp_gemm_abt_mt(float (&S)[MT][NK / 8][4], const T* sA, const T* sB, int lane) {
  constexpr int LD = Smem<D>::kLd;
#pragma unroll
  for (int mt = 0; mt < MT; ++mt)
#pragma unroll
    for (int n = 0; n < NK / 8; ++n) S[mt][n][0] = S[mt][n][1] = S[mt][n][2] = S[mt][n][3] = 0.f;
#pragma unroll
  for (int kk = 0; kk < D / 16; ++kk) {
    uint32_t a[MT][4];
#pragma unroll
    for (int mt = 0; mt < MT; ++mt)
      ldmatrix_x4(a[mt], sA + (mt * 16 + lane % 16) * LD + kk * 16 + (lane / 16) * 8);
#pragma unroll
    for (int np = 0; np < NK / 16; ++np) {
      uint32_t b[4];
      ldmatrix_x4(b, sB + (np * 16 + (lane % 8) + (lane / 16) * 8) * LD + kk * 16 + ((lane / 8) % 2) * 8);
#pragma unroll
      for (int mt = 0; mt < MT; ++mt) {
        mma16816<T>(S[mt][2 * np], a[mt], b[0], b[1]);
        mma16816<T>(S[mt][2 * np + 1], a[mt], b[2], b[3]);
      }
    }
  }
}

template <int D, int NK, int MT, typename T>
__device__ __forceinline__ void warp_gemm_ab_mt(float (&O)[MT][D / 8][4], const uint32_t (&pa)[MT][NK / 16][4],
                                                const T* sV, int lane) {
  constexpr int LD = Smem<D>::kLd;
#pragma unroll
  for (int kt = 0; kt < NK / 16; ++kt) {
#pragma unroll
    for (int dp = 0; dp < D / 16; ++dp) {
      uint32_t b[4];
      ldmatrix_x4_trans(b, sV + (kt * 16 + (lane % 8) + ((lane / 8) % 2) * 8) * LD + dp * 16 + (lane / 16) * 8);
#pragma unroll
      for (int mt = 0; mt < MT; ++mt) {
        mma16816<T>(O[mt][2 * dp], pa[mt][kt], b[0], b[1]);
        mma16816<T>(O[mt][2 * dp + 1], pa[mt][kt], b[2], b[3]);
      }
    }
  }
}

// 2^x on the special-function unit (ex2.approx.ftz: ~2 ulp, 2^-INF = +0), as FlashAttention uses.
__device__ __forceinline__ float fast_exp2(float x) {
  float y;
  asm("ex2.approx.ftz.f32 %0, %1;\n" : "=f"(y) : "f"(x));
  return y;
}

// Quad (4 lanes sharing a row) reductions.
__device__ __forceinline__ float quad_max(float x) {
  x = fmaxf(x, __shfl_xor_sync(0xffffffffu, x, 1));
  return fmaxf(x, __shfl_xor_sync(0xffffffffu, x, 2));
}
__device__ __forceinline__ float quad_sum(float x) {
  x += __shfl_xor_sync(0xffffffffu, x, 1);
  return x + __shfl_xor_sync(0xffffffffu, x, 2);
}

// Store this warp's 16 × D fp32 fragment rows (scaled per row) as storage dtype; rowptr(r) for
// r ∈ [0,16) returns the destination row or nullptr to skip.
template <int D, typename T, typename RowPtr>
__device__ __forceinline__ void store_rows(const float (&O)[D / 8][4], const float (&rowScale)[2], int lane,
                                           RowPtr rowptr) {
  const int g = lane / 4, q = lane % 4;
#pragma unroll
  for (int h = 0; h < 2; ++h) {
    T* dst = rowptr(g + 8 * h);
    if (!dst) continue;
#pragma unroll
    for (int n = 0; n < D / 8; ++n) {
      *reinterpret_cast<uint32_t*>(dst + n * 8 + 2 * q) =
          pack2<T>(O[n][2 * h] * rowScale[h], O[n][2 * h + 1] * rowScale[h]);
    }
  }
}

// ---- host side --------------------------------------------------------------------------------
inline bool aligned16(const void* p) { return (reinterpret_cast<uintptr_t>(p) & 15u) == 0; }
// An activation whose rows can be read with 16-byte copies: base aligned, strides multiples of 8.
inline bool act_rows_aligned16(const Act& a) {
  return aligned16(a.data) && a.sB % 8 == 0 && a.sS % 8 == 0 && a.sH % 8 == 0;
}

template <typename T>
struct TypeTag {
  using type = T;
};
template <int D>
struct DimTag {
  static constexpr int value = D;
};

// The one tensor-core dispatch place: (dtype, head dim) → fn(TypeTag<T>, DimTag<D>). Other head dims
// return an error naming the value and the supported set. Float32 never gets here: the stage entry
// points route it to the CUDA-core kernels (fp32_stages.h).
template <typename Fn>
Status dispatch_dtype_dim(DType dt, int D, Fn&& fn) {
  if (dt == kF32)
    return Status::Error("float32 takes the CUDA-core kernels (fp32_stages.h), not the tensor-core dispatch");
  if (dt != kF16 && dt != kBF16) return Status::Error("Unsupported dtype " + std::to_string(int(dt)));
  // The instantiations below are the tensor-core head dims of the support table (monarch/support.h).
  static_assert(kTensorCoreHeadDims.count == 2 && kTensorCoreHeadDims.dims[0] == 64 &&
                    kTensorCoreHeadDims.dims[1] == 128,
                "dispatch_dtype_dim instantiates D = 64 and 128: keep it in step with kTensorCoreHeadDims");
  if (!supports(BackendId::kCuda, dt, D))
    return Status::Error("Unsupported head dim D=" + std::to_string(D) + "; the CUDA backend supports " +
                         find_support(BackendId::kCuda, dt)->headDims.text());
  if (dt == kF16) {
    return D == 64 ? fn(TypeTag<__half>{}, DimTag<64>{}) : fn(TypeTag<__half>{}, DimTag<128>{});
  }
  return D == 64 ? fn(TypeTag<__nv_bfloat16>{}, DimTag<64>{}) : fn(TypeTag<__nv_bfloat16>{}, DimTag<128>{});
}

}  // namespace detail
}  // namespace cuda
}  // namespace monarch
