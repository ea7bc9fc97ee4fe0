// launch_utils.cuh — host-side launch helpers shared by every CUDA kernel file: the status of the last
// launch or of a runtime call, and the dynamic shared-memory opt-in checked against the device's limit.
#pragma once

#include <cuda_runtime.h>

#include <map>
#include <mutex>
#include <string>
#include <utility>

#include <monarch/monarch.h>

namespace monarch {
namespace cuda {
namespace detail {

inline Status launch_status(const char* kernel) {
  cudaError_t e = cudaGetLastError();
  if (e == cudaSuccess) return Status::Ok();
  return Status::Error(std::string(kernel) + ": " + cudaGetErrorString(e));
}

// The Status of runtime call `what` that returned e (the error cleared, so later launches start clean).
inline Status call_status(cudaError_t e, const std::string& what) {
  if (e == cudaSuccess) return Status::Ok();
  (void)cudaGetLastError();
  return Status::Error(what + ": " + cudaGetErrorString(e));
}

// The dynamic shared memory each kernel is opted into, per device: one table for the process (inline
// functions' statics), so cudaFuncSetAttribute runs once per kernel, device and larger size instead of
// on every launch (it is a driver call on the enqueue path of every stage and dense call). The
// attribute only ever grows, under one lock with its record, so a kernel launched with several sizes
// is always opted into the largest asked for so far. (The package never resets a device, which would
// clear the attributes the table remembers.)
inline std::mutex& smem_optin_mutex() {
  static std::mutex mu;
  return mu;
}
inline std::map<std::pair<const void*, int>, size_t>& smem_optin_table() {
  static std::map<std::pair<const void*, int>, size_t> t;
  return t;
}

// The current device's opt-in shared memory per block, 0 when it cannot be read (the error is cleared):
// for dispatch places that pick a kernel by whether its shared memory fits.
inline size_t smem_optin_limit() {
  int dev = 0, maxOptin = 0;
  if (cudaGetDevice(&dev) != cudaSuccess ||
      cudaDeviceGetAttribute(&maxOptin, cudaDevAttrMaxSharedMemoryPerBlockOptin, dev) != cudaSuccess) {
    (void)cudaGetLastError();
    return 0;
  }
  return static_cast<size_t>(maxOptin);
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
    std::lock_guard<std::mutex> lock(smem_optin_mutex());
    size_t& have = smem_optin_table()[{reinterpret_cast<const void*>(kernel), dev}];
    if (bytes > have) {
      e = cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, static_cast<int>(bytes));
      if (e != cudaSuccess) return Status::Error(std::string(name) + ": " + cudaGetErrorString(e));
      have = bytes;
    }
  }
  return Status::Ok();
}

}  // namespace detail
}  // namespace cuda
}  // namespace monarch
