// side_stream.h — a second stream for a stage that runs two kernels side by side (cuda/fused/final_step.cu):
// leased from a per-device pool together with events to fork from the caller's stream and join back to it.
//
// The pool keeps what it creates for the life of the process (one lease per stage call running at once on
// a device, so it stays as small as the most concurrent callers), like a library handle cache: streams and
// events are never destroyed while a caller could still enqueue behind them. A stream reused by a later
// call only orders that call's work after the earlier call's, which has no wait on anything later, so no
// cycle (and no deadlock) can form.
#pragma once

#include <cuda_runtime.h>

#include <vector>

#include <monarch/monarch.h>

namespace monarch {
namespace cuda {

struct SideLease {
  int device = -1;
  cudaStream_t stream = nullptr;    // non-blocking
  std::vector<cudaEvent_t> events;  // timing disabled
};

// A lease on the current device with at least nEvents events; a Status error when a stream or event
// cannot be created (the caller then runs its kernels on its own stream).
Status side_lease_acquire(int nEvents, SideLease* out);
// Back to the pool (after every use has been enqueued; the work may still be running).
void side_lease_release(SideLease&& lease);

}  // namespace cuda
}  // namespace monarch
