// dense_hopper.h — the sm_90a dense kernel (dense_attention_hopper.cu) as seen by the dense dispatch.
#pragma once

#include <cuda_runtime.h>

#include <monarch/monarch.h>

namespace monarch {
namespace cuda {

// True when the Hopper kernel runs this problem: the build holds sm_90a code, the current device is
// compute capability 9.0, 16-bit dtype, head dim 64 or 128, and MONARCH_DENSE_KERNEL is not "mma".
bool dense_hopper_applies(const DenseParams& p);
// Launch it (the tensor maps may still refuse a layout: then the status says why and the caller
// takes the mma.sync kernel).
Status dense_hopper(const DenseParams& p, cudaStream_t s);

}  // namespace cuda
}  // namespace monarch
