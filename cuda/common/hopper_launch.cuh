// hopper_launch.cuh — the host side of launching a persistent sm_90a kernel: the shared-memory opt-in,
// the grid (tma::hopper_grid: one CTA per SM, at most one per work item, MONARCH_HOPPER_MAX_GRID; at most
// maxCtas when that is > 0, MonarchParams::maxCtas) and the launch status, under the kernel's name.
#pragma once

#include <cuda_runtime.h>

#include <cstdint>

#include "launch_utils.cuh"
#include "tma_map.h"

namespace monarch {
namespace cuda {
namespace detail {

template <typename Kernel, typename... Args>
Status launch_persistent(Kernel kernel, const char* name, size_t smem, int threads, int64_t items, int maxCtas,
                         cudaStream_t s, const Args&... args) {
  Status st = prepare_smem(kernel, smem, name);
  if (!st.ok) return st;
  int dev = 0, sms = 0;
  if (cudaGetDevice(&dev) != cudaSuccess || cudaDeviceGetAttribute(&sms, cudaDevAttrMultiProcessorCount, dev) != cudaSuccess)
    return launch_status(name);
  if (maxCtas > 0 && maxCtas < sms) sms = maxCtas;
  kernel<<<unsigned(tma::hopper_grid(items, sms)), threads, smem, s>>>(args...);
  return launch_status(name);
}

}  // namespace detail
}  // namespace cuda
}  // namespace monarch
