// binding_bounce_copy.cc — CopyDeviceToPageable (see binding_bounce_copy.h).
#include "binding_bounce_copy.h"

#ifdef MONARCH_WITH_CUDA
#include <cuda_runtime_api.h>

#include <algorithm>
#include <cstdint>
#include <mutex>
#include <string>
#include <vector>

#include "binding_host_memory.h"  // ParallelCopy

namespace monarch {
namespace binding {
namespace {

constexpr size_t kSlotBytes = size_t(8) << 20;
constexpr size_t kMinBytes = size_t(1) << 20;  // below this one cudaMemcpy is as fast

// Two page-locked slots, a non-blocking stream and an event per slot, on one device.
struct Bounce {
  int device = -1;
  void* slot[2] = {nullptr, nullptr};
  cudaStream_t stream = nullptr;
  cudaEvent_t done[2] = {nullptr, nullptr};
};

std::mutex g_mu;
std::vector<Bounce*>* g_free = new std::vector<Bounce*>();  // never destroyed: slots live for the process

void Destroy(Bounce* b) {
  for (int i = 0; i < 2; ++i) {
    if (b->done[i]) cudaEventDestroy(b->done[i]);
    if (b->slot[i]) cudaFreeHost(b->slot[i]);
  }
  if (b->stream) cudaStreamDestroy(b->stream);
  delete b;
}

Bounce* Acquire(int device) {
  {
    std::lock_guard<std::mutex> g(g_mu);
    for (size_t i = 0; i < g_free->size(); ++i) {
      if ((*g_free)[i]->device == device) {
        Bounce* b = (*g_free)[i];
        g_free->erase(g_free->begin() + long(i));
        return b;
      }
    }
  }
  Bounce* b = new Bounce();
  b->device = device;
  bool ok = cudaStreamCreateWithFlags(&b->stream, cudaStreamNonBlocking) == cudaSuccess;
  for (int i = 0; ok && i < 2; ++i) {
    ok = cudaHostAlloc(&b->slot[i], kSlotBytes, cudaHostAllocPortable) == cudaSuccess &&
         cudaEventCreateWithFlags(&b->done[i], cudaEventDisableTiming) == cudaSuccess;
  }
  if (!ok) {
    cudaGetLastError();  // the refusal is answered by the fallback, not left pending
    Destroy(b);
    return nullptr;
  }
  return b;
}

// Idle slots kept per device (more concurrent downloads allocate more and free the extra ones after).
constexpr int kKeepPerDevice = 4;

void Release(Bounce* b) {
  {
    std::lock_guard<std::mutex> g(g_mu);
    int kept = 0;
    for (Bounce* x : *g_free) kept += x->device == b->device;
    if (kept < kKeepPerDevice) {
      g_free->push_back(b);
      return;
    }
  }
  Destroy(b);
}

Status Fail(const char* what, cudaError_t e) {
  return Status::Error(std::string(what) + " failed: " + cudaGetErrorString(e));
}

}  // namespace

Status CopyDeviceToPageable(void* dst, const void* src, size_t bytes) {
  int device = 0;
  cudaError_t e = cudaGetDevice(&device);
  if (e != cudaSuccess) return Fail("cudaGetDevice", e);
  Bounce* b = bytes >= kMinBytes ? Acquire(device) : nullptr;
  if (b == nullptr) {
    e = cudaMemcpy(dst, src, bytes, cudaMemcpyDeviceToHost);
    return e == cudaSuccess ? Status::Ok() : Fail("cudaMemcpy", e);
  }
  const size_t n = (bytes + kSlotBytes - 1) / kSlotBytes;
  auto len = [&](size_t i) { return std::min(kSlotBytes, bytes - i * kSlotBytes); };
  auto issue = [&](size_t i) -> cudaError_t {
    cudaError_t r = cudaMemcpyAsync(b->slot[i % 2], static_cast<const uint8_t*>(src) + i * kSlotBytes, len(i),
                                    cudaMemcpyDeviceToHost, b->stream);
    return r == cudaSuccess ? cudaEventRecord(b->done[i % 2], b->stream) : r;
  };
  // Slot (i + 1) % 2 is refilled only after the CPU has copied chunk i − 1 out of it.
  e = issue(0);
  for (size_t i = 0; e == cudaSuccess && i < n; ++i) {
    if (i + 1 < n) e = issue(i + 1);
    if (e == cudaSuccess) e = cudaEventSynchronize(b->done[i % 2]);
    if (e == cudaSuccess) ParallelCopy(static_cast<uint8_t*>(dst) + i * kSlotBytes, b->slot[i % 2], len(i));
  }
  if (e != cudaSuccess) {
    // The stream may still hold a copy into a slot: wait for it, then drop the slots (their stream or
    // events may be what failed); the next download allocates new ones or falls back to cudaMemcpy.
    cudaStreamSynchronize(b->stream);
    cudaGetLastError();
    Destroy(b);
    return Fail("device-to-host copy", e);
  }
  Release(b);
  return Status::Ok();
}

}  // namespace binding
}  // namespace monarch
#endif
