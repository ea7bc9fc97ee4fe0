// r_step_hopper.h — the sm_90a R-step kernels (r_step_first_hopper.cu, r_step_later_hopper.cu) as seen by
// the R-step dispatch.
#pragma once

#include <cuda_runtime.h>

#include <monarch/monarch.h>

namespace monarch {
namespace cuda {

// True when the Hopper kernel runs this first R-step (`last`: it also writes y): 16-bit dtype, head dim
// 64 or 128, key rows of 33..80 tokens (80-key tiles above 64), a usable sm_90a device (hopper_kernels_usable), and its size
// rule or MONARCH_PREVIEW_KERNELS (tma_map.h): by default from two query tiles on (three consumers).
bool r_step_first_hopper_applies(const MonarchParams& p, bool last);
// Launch it (the tensor maps may still refuse a layout: then nothing ran, the status says why and
// the caller takes the mma.sync kernels).
Status r_step_first_hopper(const MonarchParams& p, bool last, cudaStream_t s);

// The same for the later R-steps (queries aR, temperatures from cR): r_step_later_hopper.cu, key rows
// of 33..64 tokens, and of 65..80 where three consumers with TMA stores serve the shape; by default
// where its size rule says (three consumers with TMA stores), else when MONARCH_PREVIEW_KERNELS selects it.
bool r_step_later_hopper_applies(const MonarchParams& p);
Status r_step_later_hopper(const MonarchParams& p, bool last, cudaStream_t s);

// Whether r_step(p, first, last) runs one of the persistent sm_90a kernels above (they honour
// MonarchParams::maxCtas; r_step.cu).
bool r_step_persistent_hopper(const MonarchParams& p, bool first, bool last);

}  // namespace cuda
}  // namespace monarch
