// binding_cuda.cc — CUDA resource owners for the binding (see binding_cuda.h). Empty without CUDA.
#ifdef MONARCH_WITH_CUDA

#include "binding_cuda.h"

#include <cuda_runtime_api.h>

#include <cstring>

namespace monarch {
namespace binding {

Status DeviceMem::Allocate(size_t bytes) {
  Reset();
  void* p = nullptr;
  Status s = cuda::malloc_device(&p, bytes);
  if (!s.ok) return s;
  ptr_ = p;
  bytes_ = bytes;
  return Status::Ok();
}

void DeviceMem::Reset() {
  if (ptr_) cuda::free_device(ptr_);  // nothing useful to do with a failure while freeing
  ptr_ = nullptr;
  bytes_ = 0;
}

Status StreamHandle::Create() {
  Reset();
  cuda::Stream s = nullptr;
  Status st = cuda::stream_create(&s);
  if (!st.ok) return st;
  s_ = s;
  return Status::Ok();
}

void StreamHandle::Reset() {
  if (s_) {
    cuda::stream_sync(s_);
    cuda::stream_destroy(s_);
  }
  s_ = nullptr;
}

Status UploadSlot::Upload(const void* src, size_t bytes, cuda::Stream s, const void** devicePtr) {
  *devicePtr = nullptr;
  if (bytes == 0) return Status::Ok();
  if (hasData_ && host_.size() == bytes && std::memcmp(host_.data(), src, bytes) == 0) {
    *devicePtr = dev_.get();  // same bytes are on the device already (only this slot writes there)
    return Status::Ok();
  }
  if (hasData_) {
    // The previous copy may still be reading host_ (and kernels reading dev_ come before the new
    // copy on the same stream anyway); wait before overwriting host_.
    Status st = cuda::stream_sync(s);
    if (!st.ok) return st;
  }
  hasData_ = false;
  if (dev_.bytes() < bytes) {
    Status st = dev_.Allocate(bytes);
    if (!st.ok) return st;
  }
  host_.assign(static_cast<const uint8_t*>(src), static_cast<const uint8_t*>(src) + bytes);
  Status st = cuda::memcpy_h2d(dev_.get(), host_.data(), bytes, s);
  if (!st.ok) return st;
  hasData_ = true;
  *devicePtr = dev_.get();
  return Status::Ok();
}

static Status CudaFail(const char* what, cudaError_t e) {
  return Status::Error(std::string(what) + " failed: " + cudaGetErrorString(e));
}

Status DeviceSynchronize() {
  cudaError_t e = cudaDeviceSynchronize();
  return e == cudaSuccess ? Status::Ok() : CudaFail("cudaDeviceSynchronize", e);
}

Status EventPool::Record(cuda::Stream s, int* index) {
  cudaEvent_t ev = nullptr;
  cudaError_t e = cudaEventCreate(&ev);
  if (e != cudaSuccess) return CudaFail("cudaEventCreate", e);
  e = cudaEventRecord(ev, static_cast<cudaStream_t>(s));
  if (e != cudaSuccess) {
    cudaEventDestroy(ev);
    return CudaFail("cudaEventRecord", e);
  }
  events_.push_back(ev);
  *index = int(events_.size() - 1);
  return Status::Ok();
}

Status EventPool::ElapsedMs(int start, int end, float* ms) {
  cudaEvent_t a = static_cast<cudaEvent_t>(events_[size_t(start)]);
  cudaEvent_t b = static_cast<cudaEvent_t>(events_[size_t(end)]);
  cudaError_t e = cudaEventSynchronize(b);
  if (e != cudaSuccess) return CudaFail("cudaEventSynchronize", e);
  e = cudaEventElapsedTime(ms, a, b);
  if (e != cudaSuccess) return CudaFail("cudaEventElapsedTime", e);
  return Status::Ok();
}

void EventPool::Release() {
  for (void* ev : events_) cudaEventDestroy(static_cast<cudaEvent_t>(ev));
  events_.clear();
}

}  // namespace binding
}  // namespace monarch

#endif  // MONARCH_WITH_CUDA
