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
Status encode_rows(CUtensorMap* map, const Act& a, DType dtype, int B, int S, int H, int D, int boxRows);

}  // namespace tma
}  // namespace cuda
}  // namespace monarch
