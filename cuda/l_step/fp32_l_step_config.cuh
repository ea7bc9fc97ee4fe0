// fp32_l_step_config.cuh — what the two float32 L-step kernels share: the row of a candidate in the
// aL / cL / y buffers (fp32_l_step.cu describes the stage; fp32_rows.cuh the kernel shape).
#pragma once

#include "../common/fp32_rows.cuh"

namespace monarch {
namespace cuda {
namespace fp32 {
namespace {  // this header is included by fp32_l_step.cu only

// Row of candidate c in the aL / cL / y buffers ([pair][b2 (j)][b1 (k)]); pair0 = pair (b, h, a, 0).
__device__ __forceinline__ int64_t cand_row(const MonarchParams& p, int64_t pair0, int j, int c) {
  const int f = c / p.b1, k = c - f * p.b1;
  return ((pair0 + f) * p.b2 + j) * p.b1 + k;
}

}  // namespace
}  // namespace fp32
}  // namespace cuda
}  // namespace monarch
