// binding_nccl.h — the NCCL communicator of lib/nccl.ts (lib/native.ts NativeNccl): `load(candidates)`,
// `uniqueId()` and the `Comm` class (one non-blocking NCCL communicator and its own CUDA stream).
//
// Comm execution model: init and allToAll run in an AsyncWorker (off the event loop) that enqueues the
// work and then polls — cudaStreamQuery for completion, ncclCommGetAsyncError for NCCL errors, the
// deadline, and an abort flag — every ~100 µs. A deadline passed, an NCCL error or abort() calls
// ncclCommAbort: the communicator is then dead and every later call throws the recorded failure, so a
// peer that died or hangs makes this rank fail with a timeout Error instead of hanging forever. One
// operation at a time (a second call while one runs throws). dispose() aborts the communicator (all
// previous operations have completed, so nothing is lost) and frees the stream and staging memory.
//
// allToAll(parts, timeoutMs): parts = [{ src, dst: DeviceBuffer, send, recv: Float64Array(4·size) }],
// regions (offset, rows, rowBytes, pitch) in bytes, per peer. Strided regions are packed / unpacked with
// cudaMemcpy2DAsync through device staging on the comm's stream; contiguous ones are sent and received
// in place; the rank's own region is a device copy. Without CUDA every method throws.
#pragma once

#include "binding_common.h"

namespace monarch {
namespace binding {

// { load, uniqueId, Comm } (registered as `nccl` by addon.cc).
Napi::Object InitNccl(Napi::Env env);

}  // namespace binding
}  // namespace monarch
