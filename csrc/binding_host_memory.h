// binding_host_memory.h — host memory the addon owns and lends to JS, and the lifetime rules for host
// typed arrays that native code reads or writes off the main thread.
//
// N-API cannot pin an ArrayBuffer: its owner may transfer it (structuredClone / postMessage with a
// transfer list), detach it, or shrink it (resizable ArrayBuffer) while a libuv worker reads it. So
// every host span an async call touches is made safe at call time, on the main thread (HostHolds):
//   addon memory  (allocHost: an external ArrayBuffer over a refcounted HostBlock, pinned with
//                  cudaHostAlloc where a GPU is usable) — zero-copy: the call holds a reference to the
//                  block, so the memory outlives any transfer or collection of the JS buffer;
//   shared memory (SharedArrayBuffer: cannot be detached, a growable one only grows) — used in place,
//                  the typed array referenced for the duration of the call;
//   anything else (ordinary ArrayBuffer) — read-only spans are copied into memory the call owns;
//                  written spans go through such a copy and are copied back on the main thread when
//                  the work has finished (rejected if the caller detached or resized the array).
#pragma once

#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "binding_common.h"

namespace monarch {
namespace binding {

struct HostBlock;

// A counted reference to a HostBlock (the block is freed when the JS buffer has been finalized and the
// last reference is gone).
class HostBlockRef {
 public:
  HostBlockRef() = default;
  explicit HostBlockRef(HostBlock* b);  // takes a new reference (b may be null)
  enum AdoptTag { kAdopt };
  HostBlockRef(HostBlock* b, AdoptTag);  // adopts a reference already counted
  ~HostBlockRef();
  HostBlockRef(HostBlockRef&& o) noexcept : b_(o.b_) { o.b_ = nullptr; }
  HostBlockRef& operator=(HostBlockRef&& o) noexcept;
  HostBlockRef(const HostBlockRef&) = delete;
  HostBlockRef& operator=(const HostBlockRef&) = delete;
  explicit operator bool() const { return b_ != nullptr; }
  bool pinned() const;  // page-locked (cudaHostAlloc)

 private:
  HostBlock* b_ = nullptr;
};

// The addon block holding [p, p + bytes), referenced, or an empty ref when there is none.
HostBlockRef FindHostBlock(const void* p, size_t bytes);

// Where a typed array's memory comes from.
enum class HostMemory { kOrdinary = 0, kShared = 1, kAddon = 2 };

// One typed array's span as N-API reports it (works for SharedArrayBuffer-backed arrays, unlike
// Napi::TypedArray::ArrayBuffer()). data is null and bytes 0 for a detached buffer.
struct TypedSpan {
  void* data = nullptr;
  size_t bytes = 0;
  bool shared = false;    // backed by a SharedArrayBuffer
  bool detached = false;
};
TypedSpan GetTypedSpan(Napi::Env env, const Napi::TypedArray& a);
HostMemory ClassifySpan(const TypedSpan& s);

// memcpy split over the CPU backend's threads for large copies (the main-thread cost of staging).
void ParallelCopy(void* dst, const void* src, size_t bytes);

// What keeps the host spans of one async call valid until it has finished (see the header comment).
// Created on the main thread; CopyBack runs there after the job; destroyed there.
class HostHolds {
 public:
  // The pointer the backend must use for the span [data, data + bytes) of `a` (`name` for messages).
  // `writes`: the job writes the span. `copyAlways`: its contents decide addressing (gather maps), so
  // it is snapshotted even when shared or addon memory.
  void* Secure(Napi::Env env, const Napi::TypedArray& a, void* data, size_t bytes, bool writes, bool copyAlways,
               const std::string& name);
  // Copies written spans back into the caller's arrays; "" or an error message naming the array.
  std::string CopyBack(Napi::Env env);
  size_t copiedBytes() const { return copiedBytes_; }

 private:
  struct Copy {
    Napi::Reference<Napi::TypedArray> array;
    void* data;  // the caller's span at call time
    size_t bytes;
    std::unique_ptr<uint8_t[]> buf;
    std::string name;
  };
  std::vector<HostBlockRef> blocks_;
  std::vector<Copy> writeBacks_;
  std::vector<std::unique_ptr<uint8_t[]>> snapshots_;
  size_t copiedBytes_ = 0;
};

// Process-wide counters for memoryStats() (tests check that steady-state calls do not allocate).
struct MemoryCounters {
  uint64_t deviceAllocations = 0, deviceFrees = 0;
  uint64_t deviceBytesLive = 0;
  uint64_t hostBlocks = 0, hostBlocksLive = 0;
  uint64_t hostBytesLive = 0, pinnedBytesLive = 0;
  uint64_t stagingCopies = 0, stagingBytes = 0;
};
MemoryCounters GetMemoryCounters();
void CountDeviceAlloc(size_t bytes);
void CountDeviceFree(size_t bytes);
void CountStagingCopy(size_t bytes);

// JS functions (registered in addon.cc):
//   allocHost(bytes, pinned, zero = true): ArrayBuffer (addon memory; zeroed unless zero is false and
//                        the block is pinned: callers that overwrite it all skip the memset)
//   hostMemoryKind(typedArray): 0 ordinary | 1 shared | 2 addon
//   isPinnedHost(typedArray): addon memory that is page-locked (cudaMemcpyAsync is truly async on it)
//   copyHost(dst, src): dst.set(src) for same-size typed arrays, on several threads
//   memoryStats(): MemoryCounters as numbers
//   cloneHostAsync(src): Promise of an ordinary typed array of src's kind with src's bytes, copied on a
//                        libuv worker into a new ArrayBuffer that no JS code sees until it settles (src:
//                        addon memory, referenced until the copy is done; other memory is copied on the
//                        calling thread first). Outputs are handed to callers this way: ordinary
//                        ArrayBuffers stay transferable to workers, which external (addon) ones are not;
//                        the only main-thread work is O(1). A second argument (a caller's buffer to fill)
//                        is a TypeError: JS could transfer or shrink it while the worker writes.
Napi::Value AllocHost(const Napi::CallbackInfo& info);
Napi::Value HostMemoryKind(const Napi::CallbackInfo& info);
Napi::Value IsPinnedHost(const Napi::CallbackInfo& info);
void CopyHost(const Napi::CallbackInfo& info);
Napi::Value MemoryStats(const Napi::CallbackInfo& info);
Napi::Value CloneHostAsync(const Napi::CallbackInfo& info);

}  // namespace binding
}  // namespace monarch
