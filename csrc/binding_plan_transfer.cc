// binding_plan_transfer.cc — Plan.upload / Plan.download: host<->device copies enqueued on the plan's
// stream (CUDA plans only), so a forward's transfers are ordered with its kernels without any
// device-wide synchronisation, and the host never waits until synchronize / synchronizeAsync.
//
// The host side must be addon memory (allocHost; page-locked where a GPU is usable, which makes
// cudaMemcpyAsync truly asynchronous): the plan takes a reference to its block, released once a later
// synchronize / synchronizeAsync has seen the stream pass the copy (or when the plan is freed), so the
// memory outlives the copy whatever JS does with its ArrayBuffer meanwhile. Ordinary or shared arrays
// are refused (lib/host.ts stages them into pinned addon memory at call time).
#include "binding_transfer.h"

#include "binding_device_buffer.h"
#include "binding_device_scope.h"
#include "binding_plan.h"

#include <string>
#include <utility>

#ifdef MONARCH_WITH_CUDA
#include <monarch/monarch_cuda.h>
#endif

namespace monarch {
namespace binding {

TransferArgs ReadTransfer(Napi::Env env, const Napi::Value& devV, const Napi::Value& hostV, const std::string& name,
                          const char* devName, const char* hostName) {
  TransferArgs t;
  t.dev = DeviceBuffer::FromValue(env, devV);
  if (!t.dev) ThrowTypeError(env, name + ": " + devName + " must be a DeviceBuffer, got " + DescribeValue(devV));
  if (t.dev->disposed()) ThrowError(env, name + ": " + devName + " DeviceBuffer was disposed");
  if (!hostV.IsTypedArray()) ThrowTypeError(env, name + ": " + hostName + " must be a typed array, got " + DescribeValue(hostV));
  TypedSpan s = GetTypedSpan(env, hostV.As<Napi::TypedArray>());
  if (s.detached) ThrowError(env, name + ": " + hostName + " is detached");
  if (s.bytes != t.dev->byteLength()) {
    ThrowRangeError(env, name + ": " + hostName + " has " + std::to_string(s.bytes) + " bytes but the DeviceBuffer has " +
                             std::to_string(t.dev->byteLength()));
  }
  t.block = s.shared ? HostBlockRef() : FindHostBlock(s.data, s.bytes);
  if (!t.block) {
    ThrowTypeError(env, name + ": " + hostName + " must be addon host memory (allocHost / allocTensor), got " +
                            (s.shared ? "a SharedArrayBuffer view" : "an ordinary ArrayBuffer view"));
  }
  t.host = s.data;
  t.bytes = s.bytes;
  return t;
}

void Plan::Upload(const Napi::CallbackInfo& info) { Transfer(info, true); }
void Plan::Download(const Napi::CallbackInfo& info) { Transfer(info, false); }

void Plan::Transfer(const Napi::CallbackInfo& info, bool toDevice) {
  Napi::Env env = info.Env();
  const char* name = toDevice ? "upload" : "download";
  CheckLive(env, name);
  if (!cuda_) ThrowError(env, std::string(name) + ": host<->device copies need a CUDA plan");
  TransferArgs t = toDevice ? ReadTransfer(env, info[0], info[1], name, "dst", "src")
                            : ReadTransfer(env, info[1], info[0], name, "src", "dst");
#ifdef MONARCH_WITH_CUDA
  EnqueueTransfer(env, std::move(t), toDevice, device_, stream_.get(), name, "the plan", inflightHost_);
#else
  (void)t;  // a CPU build has no streams: the checks above are all it does
#endif
}

#ifdef MONARCH_WITH_CUDA
void EnqueueTransfer(Napi::Env env, TransferArgs t, bool toDevice, int device, void* stream, const std::string& name,
                     const char* owner, std::vector<HostBlockRef>& inflight) {
  if (t.dev->device() != device) {
    ThrowRangeError(env, name + ": the DeviceBuffer is on device " + std::to_string(t.dev->device()) + " but " + owner +
                             " is on device " + std::to_string(device));
  }
  DeviceScope dev(device);
  ThrowIfFailed(env, dev.status());
  Status s = toDevice ? cuda::memcpy_h2d(t.dev->data(), t.host, t.bytes, stream)
                      : cuda::memcpy_d2h(t.host, t.dev->data(), t.bytes, stream);
  if (!s.ok) ThrowError(env, name + ": " + s.message);
  inflight.push_back(std::move(t.block));
}
#endif

}  // namespace binding
}  // namespace monarch
