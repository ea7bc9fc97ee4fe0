// hopper.cuh — sm_90a building blocks shared by the Hopper kernels: mbarriers, bulk tensor copies
// (TMA) completing on an mbarrier, warpgroup MMA (wgmma) fences and shared-memory matrix descriptors,
// and register reallocation between warpgroups.
//
// Everything here compiles to nothing useful outside sm_90a (the kernels that use it guard their body
// with MONARCH_SM90A, and the host dispatch only launches them on a compute-capability 9.0 device
// when the build contains sm_90a code: hopper_build()).
//
// Shared-memory operand layout ("128-byte swizzle", the layout TMA writes with
// CU_TENSOR_MAP_SWIZZLE_128B): a tile of R rows × 64 16-bit elements, rows of 128 bytes, with 16-byte
// chunk c of row r stored at chunk c ^ (r % 8); the tile starts on a 1024-byte boundary. Wider rows
// (head dim 128) are stored as consecutive such tiles, one per 64 columns ("atoms").
//   K-major operand (Q, K in S = Q·Kᵀ): 8-row groups 1024 bytes apart (stride byte offset); the k16
//     step kk inside an atom starts 32·kk bytes into the row (the hardware applies the swizzle to the
//     final address, so advancing the start address is exact).
//   MN-major operand (V in O = P·V, N = head dim contiguous): 8-row (k) groups 1024 bytes apart
//     (stride byte offset), 64-column (n) atoms `atomBytes` apart (leading byte offset).
#pragma once

#include <cuda_runtime.h>

#include <cstdint>

#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ == 900 && defined(__CUDA_ARCH_FEAT_SM90_ALL)
#define MONARCH_SM90A 1
#else
#define MONARCH_SM90A 0
#endif

namespace monarch {
namespace cuda {
namespace hopper {

__device__ __forceinline__ uint32_t smem_addr(const void* p) {
  return static_cast<uint32_t>(__cvta_generic_to_shared(p));
}

// ---- mbarrier ----------------------------------------------------------------------------------
__device__ __forceinline__ void mbar_init(uint64_t* bar, uint32_t count) {
  asm volatile("mbarrier.init.shared::cta.b64 [%0], %1;\n" ::"r"(smem_addr(bar)), "r"(count) : "memory");
}
// Make the initialised barriers visible to the other threads and to the copy engine.
__device__ __forceinline__ void mbar_fence_init() {
  asm volatile("fence.mbarrier_init.release.cluster;\n" ::: "memory");
  asm volatile("fence.proxy.async.shared::cta;\n" ::: "memory");
}
// Arrive once and announce `bytes` of transaction (bulk copies) that complete this phase.
__device__ __forceinline__ void mbar_arrive_expect_tx(uint64_t* bar, uint32_t bytes) {
  asm volatile("mbarrier.arrive.expect_tx.shared::cta.b64 _, [%0], %1;\n" ::"r"(smem_addr(bar)), "r"(bytes)
               : "memory");
}
__device__ __forceinline__ void mbar_arrive(uint64_t* bar) {
  asm volatile("mbarrier.arrive.shared::cta.b64 _, [%0];\n" ::"r"(smem_addr(bar)) : "memory");
}
// Wait until the phase of parity `parity` has completed. A fresh barrier is in phase 0, so waiting
// for parity 1 returns at once (the producer's first pass over empty slots).
__device__ __forceinline__ void mbar_wait(uint64_t* bar, uint32_t parity) {
  const uint32_t a = smem_addr(bar);
  asm volatile(
      "{\n"
      ".reg .pred done;\n"
      "WAIT_%=:\n"
      "mbarrier.try_wait.parity.shared::cta.b64 done, [%0], %1;\n"
      "@!done bra WAIT_%=;\n"
      "}\n" ::"r"(a),
      "r"(parity)
      : "memory");
}

// ---- bulk tensor copy (TMA) ----------------------------------------------------------------------
// Copy the box at coordinates (c0, c1, c2, c3) (innermost first) of the 4-D tensor map `map` into
// shared memory at dst; completion is counted on `bar` (bytes of the box).
__device__ __forceinline__ void tma_load_4d(void* dst, const void* map, uint64_t* bar, int c0, int c1, int c2,
                                            int c3) {
  asm volatile(
      "cp.async.bulk.tensor.4d.shared::cluster.global.mbarrier::complete_tx::bytes"
      " [%0], [%1, {%2, %3, %4, %5}], [%6];\n" ::"r"(smem_addr(dst)),
      "l"(reinterpret_cast<uint64_t>(map)), "r"(c0), "r"(c1), "r"(c2), "r"(c3), "r"(smem_addr(bar))
      : "memory");
}
// The same for a 5-D tensor map (coordinates innermost first).
__device__ __forceinline__ void tma_load_5d(void* dst, const void* map, uint64_t* bar, int c0, int c1, int c2,
                                            int c3, int c4) {
  asm volatile(
      "cp.async.bulk.tensor.5d.shared::cluster.global.mbarrier::complete_tx::bytes"
      " [%0], [%1, {%2, %3, %4, %5, %6}], [%7];\n" ::"r"(smem_addr(dst)),
      "l"(reinterpret_cast<uint64_t>(map)), "r"(c0), "r"(c1), "r"(c2), "r"(c3), "r"(c4), "r"(smem_addr(bar))
      : "memory");
}
// Where `issue` holds (predicated, no branch): store the box at shared-memory byte address `src` to
// coordinates (c0, c1, c2, c3) of the 4-D tensor map `map` and commit it as one bulk group of this
// thread (boxes past the tensor's extent are clipped: nothing is written there). The writes to `src`
// must be visible to the copy engine first (fence_proxy_async by every writing thread, then a barrier).
__device__ __forceinline__ void tma_store_4d_commit(bool issue, const void* map, uint32_t src, int c0, int c1, int c2,
                                                    int c3) {
  asm volatile(
      "{\n.reg .pred p;\nsetp.ne.b32 p, %0, 0;\n"
      "@p cp.async.bulk.tensor.4d.global.shared::cta.bulk_group [%1, {%3, %4, %5, %6}], [%2];\n"
      "@p cp.async.bulk.commit_group;\n}\n" ::"r"(int(issue)),
      "l"(reinterpret_cast<uint64_t>(map)), "r"(src), "r"(c0), "r"(c1), "r"(c2), "r"(c3)
      : "memory");
}
// Where `pred` holds: wait until at most N of this thread's bulk groups still read shared memory.
template <int N>
__device__ __forceinline__ void bulk_wait_read(bool pred) {
  asm volatile("{\n.reg .pred p;\nsetp.ne.b32 p, %0, 0;\n@p cp.async.bulk.wait_group.read %1;\n}\n" ::"r"(int(pred)),
               "n"(N)
               : "memory");
}
// Wait until at most N of this thread's bulk groups are incomplete (their writes done).
template <int N>
__device__ __forceinline__ void bulk_wait() {
  asm volatile("cp.async.bulk.wait_group %0;\n" ::"n"(N) : "memory");
}
// Order this thread's generic-proxy shared-memory writes before later async-proxy (TMA) reads.
__device__ __forceinline__ void fence_proxy_async() { asm volatile("fence.proxy.async.shared::cta;\n" ::: "memory"); }
// Store four 8 × 8 16-bit matrices: lanes 8i..8i+7 give the row addresses of matrix i, and each lane's
// register r[i] holds its pair of matrix i (the mma C-fragment layout: row lane / 4, columns 2·(lane % 4) + {0, 1}).
__device__ __forceinline__ void stmatrix_x4(uint32_t addr, uint32_t r0, uint32_t r1, uint32_t r2, uint32_t r3) {
  asm volatile("stmatrix.sync.aligned.m8n8.x4.shared.b16 [%0], {%1, %2, %3, %4};\n" ::"r"(addr), "r"(r0), "r"(r1),
               "r"(r2), "r"(r3)
               : "memory");
}
__device__ __forceinline__ void tma_prefetch_map(const void* map) {
  asm volatile("prefetch.tensormap [%0];\n" ::"l"(reinterpret_cast<uint64_t>(map)) : "memory");
}

// ---- warpgroup MMA ordering ----------------------------------------------------------------------
__device__ __forceinline__ void wgmma_fence() { asm volatile("wgmma.fence.sync.aligned;\n" ::: "memory"); }
__device__ __forceinline__ void wgmma_commit() { asm volatile("wgmma.commit_group.sync.aligned;\n" ::: "memory"); }
template <int N>
__device__ __forceinline__ void wgmma_wait() {
  asm volatile("wgmma.wait_group.sync.aligned %0;\n" ::"n"(N) : "memory");
}
// Pin accumulator registers at this point of the program (the compiler must not move their reads
// or writes across an asynchronous MMA).
template <int N>
__device__ __forceinline__ void fence_regs(float (&r)[N][4]) {
#pragma unroll
  for (int i = 0; i < N; ++i)
#pragma unroll
    for (int e = 0; e < 4; ++e) asm volatile("" : "+f"(r[i][e])::"memory");
}

// ---- shared-memory matrix descriptors (128-byte swizzle) -------------------------------------------
__device__ __forceinline__ uint64_t desc_encode(uint32_t addr, uint32_t lbo, uint32_t sbo) {
  return uint64_t((addr & 0x3FFFF) >> 4) | (uint64_t((lbo >> 4) & 0x3FFF) << 16) |
         (uint64_t((sbo >> 4) & 0x3FFF) << 32) | (uint64_t(1) << 62);
}
// K-major operand starting at smem byte address `addr` (inside an atom: row 0, byte 32·kk).
__device__ __forceinline__ uint64_t desc_kmajor(uint32_t addr) { return desc_encode(addr, 16, 1024); }
// MN-major operand: 64-column atoms `atomBytes` apart.
__device__ __forceinline__ uint64_t desc_mnmajor(uint32_t addr, uint32_t atomBytes) {
  return desc_encode(addr, atomBytes, 1024);
}

// The descriptor of the operand `bytes` further on (a multiple of 16) than the one `d` describes: the
// start-address field (bits 0..13, address / 16) plus bytes / 16. Shared-memory addresses stay below
// 256 KB, so the field never carries into the next one; one integer add instead of re-encoding.
__device__ __forceinline__ uint64_t desc_advance(uint64_t d, uint32_t bytes) {
  return (d & 0xFFFFFFFF00000000ull) | uint32_t(uint32_t(d) + (bytes >> 4));
}

// ---- named barriers (ids 1..15; 0 is __syncthreads) ----------------------------------------------
__device__ __forceinline__ void named_sync(int id, int threads) {
  asm volatile("bar.sync %0, %1;\n" ::"r"(id), "r"(threads) : "memory");
}
__device__ __forceinline__ void named_arrive(int id, int threads) {
  asm volatile("bar.arrive %0, %1;\n" ::"r"(id), "r"(threads) : "memory");
}

// ---- register reallocation between warpgroups --------------------------------------------------
template <int R>
__device__ __forceinline__ void regs_dealloc() {
#if MONARCH_SM90A
  asm volatile("setmaxnreg.dec.sync.aligned.u32 %0;\n" ::"n"(R));
#endif
}
template <int R>
__device__ __forceinline__ void regs_alloc() {
#if MONARCH_SM90A
  asm volatile("setmaxnreg.inc.sync.aligned.u32 %0;\n" ::"n"(R));
#endif
}

}  // namespace hopper
}  // namespace cuda
}  // namespace monarch
