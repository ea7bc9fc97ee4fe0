// binding_cuda.cc — CUDA resource owners for the binding (see binding_cuda.h). Empty without CUDA.
#ifdef MONARCH_WITH_CUDA

#include "binding_cuda.h"

#include <cuda_runtime_api.h>

#include <cstring>

#include "binding_host_memory.h"

namespace monarch {
namespace binding {

Status DeviceMem::Allocate(size_t bytes) {
  Reset();
  void* p = nullptr;
  Status s = cuda::malloc_device(&p, bytes);
  if (!s.ok) return s;
  ptr_ = p;
  bytes_ = bytes;
  CountDeviceAlloc(bytes);
  return Status::Ok();
}

void DeviceMem::Reset() {
  if (ptr_) {
    cuda::free_device(ptr_);  // nothing useful to do with a failure while freeing
    CountDeviceFree(bytes_);
  }
  ptr_ = nullptr;
  bytes_ = 0;
}

Status StreamHandle::Create() {
  Reset();
  cuda::Stream s = nullptr;
  Status st = cuda::stream_create(&s);
  if (!st.ok) return st;
  s_ = s;
  borrowed_ = false;
  return Status::Ok();
}

void StreamHandle::Borrow(cuda::Stream s) {
  Reset();
  s_ = s;
  borrowed_ = true;
}

void StreamHandle::Reset() {
  if (s_) {
    cuda::stream_sync(s_);
    if (!borrowed_) cuda::stream_destroy(s_);
  }
  s_ = nullptr;
  borrowed_ = false;
}

Status UploadSlot::Upload(const void* src, size_t bytes, cuda::Stream s, const void** devicePtr) {
  *devicePtr = nullptr;
  if (bytes == 0) return Status::Ok();
  ++clock_;
  Entry* pick = nullptr;
  for (Entry& e : entries_) {
    if (e.hasData && e.host.size() == bytes && std::memcmp(e.host.data(), src, bytes) == 0) {
      e.lastUse = clock_;
      *devicePtr = e.dev.get();  // these bytes are on the device already (only this entry writes there)
      return Status::Ok();
    }
    // A free entry if there is one, else the least recently used.
    if (!pick || (pick->hasData && (!e.hasData || e.lastUse < pick->lastUse))) pick = &e;
  }
  if (pick->hasData) {
    // Enqueued kernels may still read pick->dev and the copy into it may still read pick->host.
    Status st = cuda::stream_sync(s);
    if (!st.ok) return st;
  }
  pick->hasData = false;
  if (pick->dev.bytes() < bytes) {
    Status st = pick->dev.Allocate(bytes);
    if (!st.ok) return st;
  }
  pick->host.assign(static_cast<const uint8_t*>(src), static_cast<const uint8_t*>(src) + bytes);
  Status st = cuda::memcpy_h2d(pick->dev.get(), pick->host.data(), bytes, s);
  if (!st.ok) return st;
  pick->hasData = true;
  pick->lastUse = clock_;
  *devicePtr = pick->dev.get();
  return Status::Ok();
}

void UploadSlot::Reset() {
  for (Entry& e : entries_) {
    e.dev.Reset();
    e.host.clear();
    e.hasData = false;
  }
}

static Status CudaFail(const char* what, cudaError_t e) {
  return Status::Error(std::string(what) + " failed: " + cudaGetErrorString(e));
}

Status AllocPinnedHost(void** p, size_t bytes) {
  cudaError_t e = cudaHostAlloc(p, bytes, cudaHostAllocPortable);
  return e == cudaSuccess ? Status::Ok() : CudaFail("cudaHostAlloc", e);
}

void FreePinnedHost(void* p) { cudaFreeHost(p); }

Status DeviceSynchronize() {
  cudaError_t e = cudaDeviceSynchronize();
  return e == cudaSuccess ? Status::Ok() : CudaFail("cudaDeviceSynchronize", e);
}

Status EventCreate(void** ev) {
  cudaEvent_t e = nullptr;
  cudaError_t st = cudaEventCreateWithFlags(&e, cudaEventDisableTiming);
  *ev = st == cudaSuccess ? static_cast<void*>(e) : nullptr;
  return st == cudaSuccess ? Status::Ok() : CudaFail("cudaEventCreate", st);
}

void EventDestroy(void* ev) {
  if (ev) cudaEventDestroy(static_cast<cudaEvent_t>(ev));
}

Status EventRecord(void* ev, cuda::Stream s) {
  cudaError_t e = cudaEventRecord(static_cast<cudaEvent_t>(ev), static_cast<cudaStream_t>(s));
  return e == cudaSuccess ? Status::Ok() : CudaFail("cudaEventRecord", e);
}

Status StreamWaitEvent(cuda::Stream s, void* ev) {
  cudaError_t e = cudaStreamWaitEvent(static_cast<cudaStream_t>(s), static_cast<cudaEvent_t>(ev), 0);
  return e == cudaSuccess ? Status::Ok() : CudaFail("cudaStreamWaitEvent", e);
}

Status EventSynchronize(void* ev) {
  cudaError_t e = cudaEventSynchronize(static_cast<cudaEvent_t>(ev));
  return e == cudaSuccess ? Status::Ok() : CudaFail("cudaEventSynchronize", e);
}

Status EventQuery(void* ev, bool* done) {
  cudaError_t e = cudaEventQuery(static_cast<cudaEvent_t>(ev));
  *done = e == cudaSuccess;
  if (e == cudaSuccess || e == cudaErrorNotReady) {
    if (e == cudaErrorNotReady) cudaGetLastError();  // not sticky; keep the last-error slot clean
    return Status::Ok();
  }
  return CudaFail("cudaEventQuery", e);
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
