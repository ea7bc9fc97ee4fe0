// runtime.cu — device info, memory, streams and async copies for the CUDA backend. Every call returns
// a Status naming the runtime call and cudaGetErrorString; nothing aborts.
#include <cuda_runtime.h>

#include <string>

#include <monarch/monarch_cuda.h>

#ifndef MONARCH_CUDA_ARCHS
#define MONARCH_CUDA_ARCHS "unknown"
#endif

namespace monarch {
namespace cuda {
namespace {

Status check(cudaError_t e, const char* what) {
  if (e == cudaSuccess) return Status::Ok();
  return Status::Error(std::string(what) + ": " + cudaGetErrorString(e));
}

}  // namespace

DeviceInfo device_info() {
  DeviceInfo info;
  cudaError_t e = cudaGetDeviceCount(&info.count);
  info.runtimeStatus = int(e);
  info.message = cudaGetErrorString(e);
  if (e == cudaErrorInsufficientDriver) {
    // cudart reports a missing libcuda.so.1 the same way as an old driver; say both.
    info.message += " (no NVIDIA driver found, or a driver older than this CUDA 13 build needs: R580+)";
  }
  if (e != cudaSuccess) {
    info.count = 0;
    cudaGetLastError();  // a missing driver is not sticky; clear it so later calls start clean
  }
  cudaDriverGetVersion(&info.driverVersion);
  cudaRuntimeGetVersion(&info.runtimeVersion);
  if (info.count > 0) {
    cudaDeviceProp prop;
    if (cudaGetDeviceProperties(&prop, 0) == cudaSuccess) {
      info.name = prop.name;
      info.major = prop.major;
      info.minor = prop.minor;
      info.smCount = prop.multiProcessorCount;
      info.totalMem = prop.totalGlobalMem;
    } else {
      cudaGetLastError();
    }
  }
  return info;
}

const char* compiled_archs() { return MONARCH_CUDA_ARCHS; }

Status device_props(int index, DeviceProps* out) {
  cudaDeviceProp prop;
  cudaError_t e = cudaGetDeviceProperties(&prop, index);
  if (e != cudaSuccess) {
    cudaGetLastError();
    return check(e, "cudaGetDeviceProperties");
  }
  out->name = prop.name;
  out->major = prop.major;
  out->minor = prop.minor;
  out->smCount = prop.multiProcessorCount;
  out->totalMem = prop.totalGlobalMem;
  out->pciBusId = prop.pciBusID;
  return Status::Ok();
}

Status get_device(int* device) { return check(cudaGetDevice(device), "cudaGetDevice"); }

Status set_device(int device) {
  cudaError_t e = cudaSetDevice(device);
  if (e != cudaSuccess) cudaGetLastError();  // an invalid ordinal is not sticky
  return check(e, "cudaSetDevice");
}

int pointer_device(const void* p) {
  cudaPointerAttributes a;
  cudaError_t e = cudaPointerGetAttributes(&a, p);
  if (e != cudaSuccess) {
    cudaGetLastError();
    return -1;
  }
  return a.type == cudaMemoryTypeDevice || a.type == cudaMemoryTypeManaged ? a.device : -1;
}

Status malloc_device(void** ptr, size_t bytes) {
  *ptr = nullptr;
  if (bytes == 0) return Status::Ok();
  cudaError_t e = cudaMalloc(ptr, bytes);
  if (e == cudaSuccess) return Status::Ok();
  cudaGetLastError();  // allocation failures are not sticky; clear the last-error slot
  *ptr = nullptr;
  if (e == cudaErrorMemoryAllocation)
    return Status::Error("cudaMalloc: out of GPU memory allocating " + std::to_string(bytes) + " bytes");
  return Status::Error("cudaMalloc(" + std::to_string(bytes) + " bytes): " + cudaGetErrorString(e));
}

Status free_device(void* ptr) {
  if (!ptr) return Status::Ok();
  return check(cudaFree(ptr), "cudaFree");
}

Status stream_create(Stream* s) {
  cudaStream_t st = nullptr;
  cudaError_t e = cudaStreamCreateWithFlags(&st, cudaStreamNonBlocking);
  *s = e == cudaSuccess ? static_cast<Stream>(st) : nullptr;
  return check(e, "cudaStreamCreate");
}

Status stream_destroy(Stream s) {
  if (!s) return Status::Ok();
  return check(cudaStreamDestroy(static_cast<cudaStream_t>(s)), "cudaStreamDestroy");
}

Status stream_sync(Stream s) {
  return check(cudaStreamSynchronize(static_cast<cudaStream_t>(s)), "cudaStreamSynchronize");
}

Status memcpy_h2d(void* dst, const void* src, size_t bytes, Stream s) {
  if (bytes == 0) return Status::Ok();
  return check(cudaMemcpyAsync(dst, src, bytes, cudaMemcpyHostToDevice, static_cast<cudaStream_t>(s)),
               "cudaMemcpyAsync(host to device)");
}

Status memcpy_d2h(void* dst, const void* src, size_t bytes, Stream s) {
  if (bytes == 0) return Status::Ok();
  return check(cudaMemcpyAsync(dst, src, bytes, cudaMemcpyDeviceToHost, static_cast<cudaStream_t>(s)),
               "cudaMemcpyAsync(device to host)");
}

Status memset_device(void* dst, int byte, size_t bytes, Stream s) {
  if (bytes == 0) return Status::Ok();
  return check(cudaMemsetAsync(dst, byte, bytes, static_cast<cudaStream_t>(s)), "cudaMemsetAsync");
}

}  // namespace cuda
}  // namespace monarch
