// r_step_hopper.h — the sm_90a R-step kernels (r_step_first_hopper.cu, r_step_later_hopper.cu) as seen by
// the R-step dispatch.
#pragma once

#include <cuda_runtime.h>

#include <monarch/monarch.h>

namespace monarch {
namespace cuda {

// True when the Hopper kernel runs this first R-step: 16-bit dtype, head dim 64 or 128, key rows of
// 33..64 tokens, a usable sm_90a device (hopper_kernels_usable) and, while the kernel awaits its first
// hardware verification, MONARCH_PREVIEW_KERNELS=1.
bool r_step_first_hopper_applies(const MonarchParams& p);
// Launch it (the tensor maps may still refuse a layout: then nothing ran, the status says why and
// the caller takes the mma.sync kernels).
Status r_step_first_hopper(const MonarchParams& p, bool last, cudaStream_t s);

// The same for the later R-steps (queries aR, temperatures from cR): r_step_later_hopper.cu.
bool r_step_later_hopper_applies(const MonarchParams& p);
Status r_step_later_hopper(const MonarchParams& p, bool last, cudaStream_t s);

}  // namespace cuda
}  // namespace monarch
