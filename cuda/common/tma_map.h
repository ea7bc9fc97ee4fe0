// tma_map.h — host side of the bulk tensor copies (TMA): tensor maps for the 4-D activations of
// monarch.h ([B][S][H][D], D contiguous) with 128-byte-swizzled boxes of `boxRows` rows × 64
// elements, the shared-memory layout hopper.cuh describes.
//
// The encoder is the driver's cuTensorMapEncodeTiled, looked up once through the runtime
// (cudaGetDriverEntryPointByVersion), so the addon needs no link-time dependency on libcuda.
#pragma once

#include <cuda.h>  // CUtensorMap and its enums (types only; nothing is linked from libcuda)

#include <cstdint>
#include <string>

#include <monarch/monarch.h>

namespace monarch {
namespace cuda {
namespace tma {

// Rows of `a` (S rows of D 16-bit elements per (b, h)) as a tensor map with boxes of 64 columns ×
// boxRows rows. Fails (ok = false, message says why) when the driver has no encoder or the layout
// breaks a TMA rule (base not 16-byte aligned, a stride not a multiple of 16 bytes, sizes ≥ 2^31).
// Whether the sm_90a kernels can run here: the build holds sm_90a code (the CMake architecture list
// names 90a) and the current device has compute capability 9.0.
bool hopper_kernels_usable();

// Whether the environment variable `name` is set to `value` (each caller reads it once, in a static).
bool env_is(const char* name, const char* value);
// Whether the sm_90a Monarch-step kernels (wgmma + TMA) may run at all: on unless
// MONARCH_HOPPER_KERNELS=0 (read once; an A/B and safety switch: the mma.sync kernels then serve every
// step, as on sm_80/89/120).
bool monarch_hopper_enabled();
// The sm_90a Monarch-step kernels that MONARCH_PREVIEW_KERNELS can select (benchmarks/notes/kernel-preview.md
// says which are on by default, where, and why).
// kRDense / kLDense: the first R-step and the final L-step of a one-tile problem on the dense kernel
// (r_step_frames_dense.cuh, l_step_final_dense.cuh).
enum class StepKernel { kRFirst, kRLater, kLFinal, kLColumns, kRDense, kLDense };
// MONARCH_PREVIEW_KERNELS (read once): unset or empty, each kernel runs where its default rule says so
// (returns −1); "1", every one of them runs wherever it applies (1); "0", none does (0); a comma list of
// the names r-first, r-later, l-final, l-columns, r-dense, l-dense, exactly those run (1 for a listed kernel, 0 otherwise).
// An unknown name in the list turns every selectable kernel off (the safe reading) and is reported once
// on stderr.
int preview_choice(StepKernel k);
// The gate every sm_90a Monarch-step kernel shares: a 16-bit dtype, head dim 64 or 128,
// hopper_kernels_usable(), monarch_hopper_enabled(), and preview_choice(k), where −1 (no choice in the
// environment) takes `byDefault`, the kernel's size rule.
bool hopper_step_runs(DType dtype, int D, StepKernel k, bool byDefault);
// MONARCH_PREVIEW_STRICT=1 (read once; for verification runs): an sm_90a Monarch-step kernel whose
// tensor maps are refused fails the call instead of falling back to a verified kernel, so a check cannot pass on the
// fallback unnoticed.
bool preview_strict();
// Whether an sm_90a step kernel's status is the call's answer: success, an error other than a refused
// tensor map, or any error under MONARCH_PREVIEW_STRICT=1. Otherwise nothing was launched and the
// caller falls through to the next kernel.
bool hopper_status_final(const Status& s);

// The grid of a persistent sm_90a preview kernel: min(items, SMs), or min(items, N) with
// MONARCH_HOPPER_MAX_GRID=N (read once; a test knob: few CTAs make every ring slot be reused often).
int64_t hopper_grid(int64_t items, int sms);

Status encode_rows(CUtensorMap* map, const Act& a, DType dtype, int B, int S, int H, int D, int boxRows);

// The S = rows·b2 tokens of `a` per (b, h) as rows of b2 tokens (Monarch tile rows, monarch.h): a 5-D
// map {D, b2, rows, H, B} with boxes of 64 columns × boxRows tokens of one row; tokens of a box past
// b2 are out of bounds, so TMA fills them with zeros (never the next row's tokens). Same failures.
Status encode_tile_rows(CUtensorMap* map, const Act& a, DType dtype, int B, int rows, int b2, int H, int D,
                        int boxRows);

// A 16-bit tensor of `rank` ≤ 5 dimensions (innermost first; dims[0] contiguous, a multiple of 64
// elements) with byte strides strides[0..rank−2] of dimensions 1..rank−1, and boxes of box[] elements
// (box[0] = 64: 128-byte swizzled rows). Coordinates past a dimension read as zeros. Same failures.
Status encode_box(CUtensorMap* map, const void* base, DType dtype, int rank, const uint64_t* dims,
                  const uint64_t* strides, const uint32_t* box);

}  // namespace tma
}  // namespace cuda
}  // namespace monarch
