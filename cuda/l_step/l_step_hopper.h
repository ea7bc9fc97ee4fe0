// l_step_hopper.h — the sm_90a L-step kernels (l_step_final_hopper.cu, l_step_columns_hopper.cu) as seen
// by the L-step dispatch.
#pragma once

#include <cuda_runtime.h>

#include <monarch/monarch.h>

namespace monarch {
namespace cuda {

// True when the Hopper kernel runs this final L-step: 16-bit dtype, head dim 64 or 128, b1 ≤ 32, a
// usable sm_90a device, and its size rule (b1 ≥ 16) or MONARCH_PREVIEW_KERNELS (tma_map.h).
bool l_step_final_hopper_applies(const MonarchParams& p);
// Launch it (a refused tensor map: nothing ran, the status says why, the caller takes the ring kernel).
Status l_step_final_hopper(const MonarchParams& p, cudaStream_t s);

// The same for the non-final L-step (aR, cR): l_step_columns_hopper.cu; off unless
// MONARCH_PREVIEW_KERNELS selects it (slower than the mma.sync kernel).
bool l_step_columns_hopper_applies(const MonarchParams& p);
Status l_step_columns_hopper(const MonarchParams& p, cudaStream_t s);

// Whether l_step(p, final) runs one of the persistent sm_90a kernels above (they honour
// MonarchParams::maxCtas; l_step.cu).
bool l_step_persistent_hopper(const MonarchParams& p, bool final);

}  // namespace cuda
}  // namespace monarch
