// binding_cuda.h — RAII owners of CUDA resources used by the binding (device memory, a stream, the
// per-plan upload slots for host masks / gather maps, timing events). Everything here exists only in
// builds with MONARCH_WITH_CUDA; it talks to the GPU through monarch_cuda.h, except the timing events,
// which monarch_cuda.h does not cover and binding_cuda.cc takes from the CUDA runtime API directly.
#pragma once

#ifdef MONARCH_WITH_CUDA

#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

#include <monarch/monarch.h>
#include <monarch/monarch_cuda.h>

namespace monarch {
namespace binding {

// Unique owner of one monarch::cuda::malloc_device allocation.
class DeviceMem {
 public:
  DeviceMem() = default;
  ~DeviceMem() { Reset(); }
  DeviceMem(const DeviceMem&) = delete;
  DeviceMem& operator=(const DeviceMem&) = delete;
  DeviceMem(DeviceMem&& o) noexcept : ptr_(o.ptr_), bytes_(o.bytes_) { o.ptr_ = nullptr; o.bytes_ = 0; }
  // Allocates `bytes` (frees what was held first). On failure holds nothing and returns the status
  // (its message says "out of GPU memory" on OOM).
  Status Allocate(size_t bytes);
  void Reset();  // frees (cudaFree waits for work using the memory on every stream)
  void Abandon() { ptr_ = nullptr; bytes_ = 0; }  // forget without freeing
  void* get() const { return ptr_; }
  size_t bytes() const { return bytes_; }

 private:
  void* ptr_ = nullptr;
  size_t bytes_ = 0;
};

// Unique owner of one stream (monarch::cuda::stream_create).
class StreamHandle {
 public:
  StreamHandle() = default;
  ~StreamHandle() { Reset(); }
  StreamHandle(const StreamHandle&) = delete;
  StreamHandle& operator=(const StreamHandle&) = delete;
  Status Create();
  // Uses a stream owned elsewhere (a caller's cudaStream_t): Reset() synchronises it but never
  // destroys it.
  void Borrow(cuda::Stream s);
  void Reset();  // synchronises, then destroys (owned streams only)
  void Abandon() { s_ = nullptr; borrowed_ = false; }
  cuda::Stream get() const { return s_; }
  bool borrowed() const { return borrowed_; }

 private:
  cuda::Stream s_ = nullptr;
  bool borrowed_ = false;
};

// Device copies of small host arrays (key/query masks, gather maps) for kernels on one stream: a few
// entries, each a host vector and its device copy, looked up by content.
//
// Lifetime rule for the host side: cudaMemcpyAsync from pageable memory may return before the copy
// has read its source, so an entry copies the caller's bytes into a host vector it owns and never
// touches that vector (or overwrites its device copy, which enqueued kernels may still read) until the
// stream has passed them (a stream_sync before an entry is reused for other bytes). Uploads whose bytes
// an entry already holds are skipped, so a forward or KV step that alternates between a gather map and
// a scatter map, forward after forward, uploads each once and never synchronises the host.
class UploadSlot {
 public:
  // Returns the device pointer holding `bytes` bytes equal to src; a copy, if needed, is enqueued on s.
  Status Upload(const void* src, size_t bytes, cuda::Stream s, const void** devicePtr);
  void Reset();

 private:
  static constexpr int kEntries = 4;
  struct Entry {
    std::vector<uint8_t> host;
    DeviceMem dev;
    bool hasData = false;
    uint64_t lastUse = 0;
  };
  Entry entries_[kEntries];
  uint64_t clock_ = 0;
};

// Page-locked host memory (cudaHostAlloc / cudaFreeHost) for addon host buffers (allocHost).
Status AllocPinnedHost(void** p, size_t bytes);
void FreePinnedHost(void* p);

// Waits for all work on every stream of the current device (cudaDeviceSynchronize): DeviceBuffer
// transfers use it so that they are ordered after whatever any plan enqueued before them.
Status DeviceSynchronize();

// Events as opaque handles (cudaEvent_t) for stream interop (binding_stream.cc, Plan.waitEvent /
// Plan.recordEventHandle). Created without timing (cudaEventDisableTiming: cheapest to record and wait).
Status EventCreate(void** ev);
void EventDestroy(void* ev);
Status EventRecord(void* ev, cuda::Stream s);
// Work enqueued on s after this call waits until the event's last recorded work has completed (no host wait).
Status StreamWaitEvent(cuda::Stream s, void* ev);
Status EventSynchronize(void* ev);
// done = the event's recorded work has completed (cudaEventQuery; cudaErrorNotReady is not an error).
Status EventQuery(void* ev, bool* done);

// CUDA events recorded on a plan's stream, addressed by index (recordEvent returns the index).
class EventPool {
 public:
  EventPool() = default;
  ~EventPool() { Release(); }
  EventPool(const EventPool&) = delete;
  EventPool& operator=(const EventPool&) = delete;
  Status Record(cuda::Stream s, int* index);
  // Waits for `end`, then the elapsed time between the two events in ms.
  Status ElapsedMs(int start, int end, float* ms);
  size_t size() const { return events_.size(); }
  void Release();

 private:
  std::vector<void*> events_;  // cudaEvent_t
};

}  // namespace binding
}  // namespace monarch

#endif  // MONARCH_WITH_CUDA
