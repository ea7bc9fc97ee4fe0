// binding_fence.cc — see binding_fence.h. Empty without CUDA.
#ifdef MONARCH_WITH_CUDA

#include "binding_fence.h"

#include <cuda_runtime_api.h>

#include <cstdlib>
#include <cstring>
#include <string>

#include "binding_device_scope.h"

namespace monarch {
namespace binding {

namespace {

unsigned EventFlags() {
  static const unsigned flags = [] {
    const char* spin = std::getenv("MONARCH_FENCE_SPIN");
    const bool spinning = spin && std::strcmp(spin, "1") == 0;
    return unsigned(cudaEventDisableTiming) | (spinning ? 0u : unsigned(cudaEventBlockingSync));
  }();
  return flags;
}

Status Fail(const char* what, cudaError_t e) { return Status::Error(std::string(what) + " failed: " + cudaGetErrorString(e)); }

}  // namespace

FencePool::~FencePool() { Close(); }

Status FencePool::Record(cuda::Stream s, std::shared_ptr<Lease>* lease) {
  lease->reset();
  cudaEvent_t ev = nullptr;
  if (!idle_.empty()) {
    ev = static_cast<cudaEvent_t>(idle_.back());
    idle_.pop_back();
  } else {
    cudaError_t e = cudaEventCreateWithFlags(&ev, EventFlags());
    if (e != cudaSuccess) return Fail("cudaEventCreateWithFlags", e);
  }
  cudaError_t e = cudaEventRecord(ev, static_cast<cudaStream_t>(s));
  if (e != cudaSuccess) {
    idle_.push_back(ev);  // never recorded: still free (a failed record leaves the event as it was)
    return Fail("cudaEventRecord", e);
  }
  *lease = std::make_shared<Lease>(shared_from_this(), ev);
  return Status::Ok();
}

void FencePool::Return(void* ev) {
  if (!closed_) {
    idle_.push_back(ev);
    return;
  }
  DeviceScope dev(device_);
  cudaEventDestroy(static_cast<cudaEvent_t>(ev));
}

void FencePool::Close() {
  closed_ = true;
  if (idle_.empty()) return;
  DeviceScope dev(device_);
  for (void* ev : idle_) cudaEventDestroy(static_cast<cudaEvent_t>(ev));
  idle_.clear();
}

FencePool::Lease::~Lease() {
  if (pool_ && ev_) pool_->Return(ev_);
}

Status FenceWait(const FencePool::Lease& lease, int device) {
  DeviceScope dev(device);  // a libuv thread: make the plan's device current there too
  if (!dev.status().ok) return dev.status();
  cudaError_t e = cudaEventSynchronize(static_cast<cudaEvent_t>(lease.event()));
  return e == cudaSuccess ? Status::Ok() : Fail("cudaEventSynchronize", e);
}

}  // namespace binding
}  // namespace monarch

#endif  // MONARCH_WITH_CUDA
