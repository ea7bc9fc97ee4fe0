// launch_utils.cuh — host-side launch helpers shared by every CUDA kernel file: the status of the last
// launch, and the dynamic shared-memory opt-in checked against the device's limit.
#pragma once

#include <cuda_runtime.h>

#include <string>

#include <monarch/monarch.h>

namespace monarch {
namespace cuda {
namespace detail {

inline Status launch_status(const char* kernel) {
  cudaError_t e = cudaGetLastError();
  if (e == cudaSuccess) return Status::Ok();
  return Status::Error(std::string(kernel) + ": " + cudaGetErrorString(e));
}

// Opt a kernel into `bytes` of dynamic shared memory, checking the device limit first.
template <typename K>
Status prepare_smem(K kernel, size_t bytes, const char* name) {
  int dev = 0, maxOptin = 0;
  cudaError_t e = cudaGetDevice(&dev);
  if (e == cudaSuccess) e = cudaDeviceGetAttribute(&maxOptin, cudaDevAttrMaxSharedMemoryPerBlockOptin, dev);
  if (e != cudaSuccess) return Status::Error(std::string(name) + ": " + cudaGetErrorString(e));
  if (bytes > static_cast<size_t>(maxOptin))
    return Status::Error(std::string(name) + ": needs " + std::to_string(bytes) +
                         " bytes of shared memory, the device allows " + std::to_string(maxOptin));
  if (bytes > 48 * 1024) {
    e = cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, static_cast<int>(bytes));
    if (e != cudaSuccess) return Status::Error(std::string(name) + ": " + cudaGetErrorString(e));
  }
  return Status::Ok();
}

}  // namespace detail
}  // namespace cuda
}  // namespace monarch
