// binding_host_stager.h — HostStager: one host input copied into addon staging in bounded slices on the
// main thread, across event-loop turns (lib/hoststage.ts schedules the slices).
//
// An ordinary ArrayBuffer cannot be pinned (binding_host_memory.h): between two slices its owner may
// detach, transfer or shrink it. So every slice re-reads the source's span on the main thread and
// copies only when the buffer is still attached, still at least as long as at construction and its data
// pointer unchanged; otherwise copy() reports it (-1) and drops every reference, and lib/ rejects the
// call naming the tensor. The destination is addon memory held by a HostBlockRef, so a slice never
// writes freed memory whatever JS does with the staging array. A source in addon memory is held the
// same way (it cannot go away); a SharedArrayBuffer cannot be detached and only grows.
#pragma once

#include <cstddef>
#include <cstdint>

#include "binding_common.h"
#include "binding_host_memory.h"

namespace monarch {
namespace binding {

// JS: new HostStager(dst, src)  dst: a typed array in addon memory, src: a typed array of dst's byteLength
//   copy(maxBytes): number   copies the next ≤ maxBytes bytes (maxBytes ≥ 1); the bytes still to copy
//                            afterwards (0: done, references dropped), or -1 when src was detached,
//                            resized or moved since construction (nothing copied, references dropped)
//   remaining: number        bytes still to copy (0 once done, failed or closed)
//   close(): void            drops the references without copying more (idempotent)
// Counted in memoryStats().stagingCopies / stagingBytes once the whole span has been copied.
class HostStager : public Napi::ObjectWrap<HostStager> {
 public:
  static Napi::Function Init(Napi::Env env);
  explicit HostStager(const Napi::CallbackInfo& info);

 private:
  Napi::Value Copy(const Napi::CallbackInfo& info);
  Napi::Value GetRemaining(const Napi::CallbackInfo& info);
  void Close(const Napi::CallbackInfo& info);
  void Drop();

  HostBlockRef dstBlock_, srcBlock_;         // dst always; src when it is addon memory
  Napi::Reference<Napi::TypedArray> src_;    // src when it is not addon memory (re-checked per slice)
  uint8_t* dst_ = nullptr;
  const uint8_t* src0_ = nullptr;            // src's data pointer at construction
  size_t bytes_ = 0, done_ = 0;
  bool open_ = false;
};

}  // namespace binding
}  // namespace monarch
