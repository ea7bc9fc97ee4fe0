// binding_transfer.h — the arguments of a stream-ordered host<->device copy (Plan.upload / download,
// CudaStream.upload / download): a live DeviceBuffer and addon host memory of the same size, whose block
// the caller keeps referenced until its stream has passed the copy (binding_plan_transfer.cc).
#pragma once

#include <cstddef>
#include <string>
#include <vector>

#include "binding_common.h"
#include "binding_host_memory.h"

namespace monarch {
namespace binding {

class DeviceBuffer;

struct TransferArgs {
  DeviceBuffer* dev = nullptr;
  void* host = nullptr;
  size_t bytes = 0;
  HostBlockRef block;
};

// (device buffer, host typed array) of upload(dst, src) / download(dst, src), validated; messages start
// with `name` and call the two `devName` / `hostName`.
TransferArgs ReadTransfer(Napi::Env env, const Napi::Value& devV, const Napi::Value& hostV, const std::string& name,
                          const char* devName, const char* hostName);

// Checks that t's DeviceBuffer is on `device` (the owner's, which the message calls `owner`: "the plan",
// "the stream"), makes that device current and enqueues the copy on `stream` (a cudaStream_t); t's host
// block joins `inflight`, which the owner keeps until its stream has passed the copy. CUDA builds only.
#ifdef MONARCH_WITH_CUDA
void EnqueueTransfer(Napi::Env env, TransferArgs t, bool toDevice, int device, void* stream, const std::string& name,
                     const char* owner, std::vector<HostBlockRef>& inflight);
#endif

}  // namespace binding
}  // namespace monarch
