// binding_stream.h — CudaStream and CudaEvent (lib/native.ts NativeCudaStream / NativeCudaEvent): a
// stream and an event owned by the addon whose handles (cudaStream_t / cudaEvent_t as bigints) other
// CUDA code in the process can use, for stream-ordered interop with plans (Plan options.stream,
// Plan.waitEvent / recordEventHandle) without any device-wide synchronisation.
//
// CudaStream: upload / download enqueue copies between addon host memory (allocHost; pinned where a GPU
// is usable) and a DeviceBuffer; the host blocks are referenced until a later synchronize /
// synchronizeAsync has seen the stream pass them. dispose() synchronises and destroys the stream
// (deferred while a synchronizeAsync runs). CudaEvent: record(stream) / wait(stream) / synchronize /
// query; created with cudaEventDisableTiming. Both throw "CUDA backend unavailable: ..." when
// constructed in a build or process without CUDA, and "...was disposed" after dispose().
#pragma once

#include <vector>

#include "binding_common.h"
#include "binding_device_scope.h"
#include "binding_host_memory.h"

#ifdef MONARCH_WITH_CUDA
#include "binding_cuda.h"
#endif

namespace monarch {
namespace binding {

class CudaStream : public Napi::ObjectWrap<CudaStream> {
 public:
  static Napi::Function Init(Napi::Env env);
  explicit CudaStream(const Napi::CallbackInfo& info);
  ~CudaStream() override;
  void EndAsync();  // a synchronizeAsync has completed (main thread)

 private:
  Napi::Value GetHandle(const Napi::CallbackInfo& info);
  Napi::Value GetDisposed(const Napi::CallbackInfo& info);
  void Upload(const Napi::CallbackInfo& info);
  void Download(const Napi::CallbackInfo& info);
  void Transfer(const Napi::CallbackInfo& info, bool toDevice);
  void Synchronize(const Napi::CallbackInfo& info);
  Napi::Value SynchronizeAsync(const Napi::CallbackInfo& info);
  void Dispose(const Napi::CallbackInfo& info);
  void CheckLive(Napi::Env env, const char* method) const;
  void Free();

  bool disposed_ = false;
  int inflight_ = 0;
  int device_ = 0;  // new CudaStream(device = 0): its GPU, current around every CUDA call
#ifdef MONARCH_WITH_CUDA
  StreamHandle stream_;
  std::vector<HostBlockRef> inflightHost_;  // host blocks of copies not yet passed by a synchronize
#endif
};

class CudaEvent : public Napi::ObjectWrap<CudaEvent> {
 public:
  static Napi::Function Init(Napi::Env env);
  explicit CudaEvent(const Napi::CallbackInfo& info);
  ~CudaEvent() override;

 private:
  Napi::Value GetHandle(const Napi::CallbackInfo& info);
  Napi::Value GetDisposed(const Napi::CallbackInfo& info);
  void Record(const Napi::CallbackInfo& info);  // record(stream: bigint)
  void Wait(const Napi::CallbackInfo& info);    // wait(stream: bigint)
  void Synchronize(const Napi::CallbackInfo& info);
  Napi::Value Query(const Napi::CallbackInfo& info);
  void Dispose(const Napi::CallbackInfo& info);
  void CheckLive(Napi::Env env, const char* method) const;

  bool disposed_ = false;
  int device_ = 0;  // new CudaEvent(device = 0)
  void* event_ = nullptr;  // cudaEvent_t
};

}  // namespace binding
}  // namespace monarch
