// binding_stream.cc — CudaStream and CudaEvent (see binding_stream.h).
#include "binding_stream.h"

#include <memory>
#include <string>
#include <utility>

#include "binding_device_buffer.h"
#include "binding_safe_worker.h"
#include "binding_transfer.h"

#ifdef MONARCH_WITH_CUDA
#include <monarch/monarch_cuda.h>
#endif

namespace monarch {
namespace binding {

namespace {

[[noreturn]] void ThrowUnavailable(Napi::Env env, const char* what) {
  ThrowError(env, std::string(what) + ": CUDA backend unavailable: " + CudaUnavailableReason());
}

// The constructor's optional device argument (default 0), checked against the visible devices.
int ReadDevice(Napi::Env env, const Napi::Value& v, const char* what) {
  if (!CudaUnavailableReason().empty()) ThrowUnavailable(env, what);
  const int device = v.IsUndefined() ? 0 : int(ToInt(env, v, std::string(what) + ": device", 0, kMaxInt32));
#ifdef MONARCH_WITH_CUDA
  const int count = VisibleDeviceCount();
  if (device >= count) {
    ThrowRangeError(env, std::string(what) + ": device " + std::to_string(device) + " is out of range: " +
                             std::to_string(count) + " CUDA device(s) visible");
  }
#endif
  return device;
}

Napi::Value HandleValue(Napi::Env env, void* h) {
  return Napi::BigInt::New(env, uint64_t(reinterpret_cast<uintptr_t>(h)));
}

#ifdef MONARCH_WITH_CUDA
// synchronizeAsync: cudaStreamSynchronize on a libuv thread; the host blocks of the copies it covers go
// with it and are released on the main thread afterwards; the stream object is referenced meanwhile.
class StreamSyncWorker : public SafeWorker {
 public:
  StreamSyncWorker(Napi::Env env, CudaStream* owner, Napi::Object self, cuda::Stream s, int device, std::vector<HostBlockRef> held)
      : SafeWorker(env, "monarch:CudaStream.synchronizeAsync"), owner_(owner), s_(s), device_(device), held_(std::move(held)) {
    self_ = Napi::Persistent(self);
  }

 protected:
  void Run() override {
    DeviceScope dev(device_);
    Status st = dev.status();
    if (st.ok) st = cuda::stream_sync(s_);
    if (!st.ok) Fail("CudaStream.synchronizeAsync: " + st.message);
  }
  void Finish(bool) override {
    held_.clear();
    owner_->EndAsync();
  }

 private:
  CudaStream* owner_;
  cuda::Stream s_;
  int device_;
  std::vector<HostBlockRef> held_;
  Napi::ObjectReference self_;
};
#endif

}  // namespace

// ---- CudaStream ------------------------------------------------------------------------------------

Napi::Function CudaStream::Init(Napi::Env env) {
  return DefineClass(env, "CudaStream",
                     {
                         InstanceAccessor<&CudaStream::GetHandle>("handle"),
                         InstanceAccessor<&CudaStream::GetDisposed>("disposed"),
                         InstanceMethod<&CudaStream::Upload>("upload"),
                         InstanceMethod<&CudaStream::Download>("download"),
                         InstanceMethod<&CudaStream::Synchronize>("synchronize"),
                         InstanceMethod<&CudaStream::SynchronizeAsync>("synchronizeAsync"),
                         InstanceMethod<&CudaStream::Dispose>("dispose"),
                     });
}

CudaStream::CudaStream(const Napi::CallbackInfo& info) : Napi::ObjectWrap<CudaStream>(info) {
  Napi::Env env = info.Env();
  device_ = ReadDevice(env, info[0], "CudaStream");
#ifdef MONARCH_WITH_CUDA
  DeviceScope dev(device_);
  ThrowIfFailed(env, dev.status());
  Status s = stream_.Create();
  if (!s.ok) ThrowError(env, "CudaStream: " + s.message);
#endif
}

CudaStream::~CudaStream() {
  if (inflight_ > 0) {
    // Environment teardown while a synchronizeAsync runs on the stream: leak rather than destroy it.
#ifdef MONARCH_WITH_CUDA
    stream_.Abandon();
    new std::vector<HostBlockRef>(std::move(inflightHost_));
#endif
    return;
  }
  Free();
}

void CudaStream::Free() {
#ifdef MONARCH_WITH_CUDA
  DeviceScope dev(device_);
  stream_.Reset();  // synchronises first: the copies have completed before their host blocks go
  inflightHost_.clear();
#endif
}

void CudaStream::EndAsync() {
  if (--inflight_ == 0 && disposed_) Free();
}

void CudaStream::CheckLive(Napi::Env env, const char* method) const {
  if (disposed_) ThrowError(env, std::string("CudaStream was disposed (") + method + ")");
}

Napi::Value CudaStream::GetHandle(const Napi::CallbackInfo& info) {
  CheckLive(info.Env(), "handle");
#ifdef MONARCH_WITH_CUDA
  return HandleValue(info.Env(), stream_.get());
#else
  return info.Env().Null();
#endif
}

Napi::Value CudaStream::GetDisposed(const Napi::CallbackInfo& info) {
  return Napi::Boolean::New(info.Env(), disposed_);
}

void CudaStream::Upload(const Napi::CallbackInfo& info) { Transfer(info, true); }
void CudaStream::Download(const Napi::CallbackInfo& info) { Transfer(info, false); }

void CudaStream::Transfer(const Napi::CallbackInfo& info, bool toDevice) {
  Napi::Env env = info.Env();
  const std::string name = toDevice ? "CudaStream.upload" : "CudaStream.download";
  CheckLive(env, toDevice ? "upload" : "download");
  TransferArgs t = toDevice ? ReadTransfer(env, info[0], info[1], name, "dst", "src")
                            : ReadTransfer(env, info[1], info[0], name, "src", "dst");
#ifdef MONARCH_WITH_CUDA
  EnqueueTransfer(env, std::move(t), toDevice, device_, stream_.get(), name, "the stream", inflightHost_);
#else
  (void)t;  // a CPU build has no streams: the checks above are all it does
#endif
}

void CudaStream::Synchronize(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  CheckLive(env, "synchronize");
#ifdef MONARCH_WITH_CUDA
  DeviceScope dev(device_);
  ThrowIfFailed(env, dev.status());
  Status s = cuda::stream_sync(stream_.get());
  if (!s.ok) ThrowError(env, "CudaStream.synchronize: " + s.message);
  inflightHost_.clear();
#endif
}

Napi::Value CudaStream::SynchronizeAsync(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  auto deferred = Napi::Promise::Deferred::New(env);
  try {
    CheckLive(env, "synchronizeAsync");
#ifdef MONARCH_WITH_CUDA
    std::vector<HostBlockRef> held = std::move(inflightHost_);
    inflightHost_.clear();
    auto* w = new StreamSyncWorker(env, this, Value(), stream_.get(), device_, std::move(held));
    Napi::Promise promise = w->Promise();
    ++inflight_;
    if (!w->TryQueue()) {
      --inflight_;
      w->DropUnqueued("CudaStream.synchronizeAsync: could not be queued (the environment is shutting down)");
    }
    return promise;
#else
    deferred.Resolve(env.Undefined());  // unreachable: the constructor throws without CUDA
#endif
  } catch (const Napi::Error& e) {
    deferred.Reject(e.Value());
  }
  return deferred.Promise();
}

// Idempotent: frees the stream (after a running synchronizeAsync); later calls throw.
void CudaStream::Dispose(const Napi::CallbackInfo&) {
  if (disposed_) return;
  disposed_ = true;
  if (inflight_ == 0) Free();
}

// ---- CudaEvent -------------------------------------------------------------------------------------

Napi::Function CudaEvent::Init(Napi::Env env) {
  return DefineClass(env, "CudaEvent",
                     {
                         InstanceAccessor<&CudaEvent::GetHandle>("handle"),
                         InstanceAccessor<&CudaEvent::GetDisposed>("disposed"),
                         InstanceMethod<&CudaEvent::Record>("record"),
                         InstanceMethod<&CudaEvent::Wait>("wait"),
                         InstanceMethod<&CudaEvent::Synchronize>("synchronize"),
                         InstanceMethod<&CudaEvent::Query>("query"),
                         InstanceMethod<&CudaEvent::Dispose>("dispose"),
                     });
}

CudaEvent::CudaEvent(const Napi::CallbackInfo& info) : Napi::ObjectWrap<CudaEvent>(info) {
  Napi::Env env = info.Env();
  device_ = ReadDevice(env, info[0], "CudaEvent");
#ifdef MONARCH_WITH_CUDA
  DeviceScope dev(device_);
  ThrowIfFailed(env, dev.status());
  ThrowIfFailed(env, EventCreate(&event_));
#endif
}

CudaEvent::~CudaEvent() {
#ifdef MONARCH_WITH_CUDA
  EventDestroy(event_);  // legal with work pending: the event's resources go once it completes
#endif
}

void CudaEvent::CheckLive(Napi::Env env, const char* method) const {
  if (disposed_) ThrowError(env, std::string("CudaEvent was disposed (") + method + ")");
}

Napi::Value CudaEvent::GetHandle(const Napi::CallbackInfo& info) {
  CheckLive(info.Env(), "handle");
  return HandleValue(info.Env(), event_);
}

Napi::Value CudaEvent::GetDisposed(const Napi::CallbackInfo& info) {
  return Napi::Boolean::New(info.Env(), disposed_);
}

void CudaEvent::Record(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  CheckLive(env, "record");
  void* s = ToHandle(env, info[0], "CudaEvent.record: stream");
#ifdef MONARCH_WITH_CUDA
  DeviceScope dev(device_);
  ThrowIfFailed(env, dev.status());
  Status st = EventRecord(event_, s);
  if (!st.ok) ThrowError(env, "CudaEvent.record: " + st.message);
#else
  (void)s;
#endif
}

void CudaEvent::Wait(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  CheckLive(env, "wait");
  void* s = ToHandle(env, info[0], "CudaEvent.wait: stream");
#ifdef MONARCH_WITH_CUDA
  DeviceScope dev(device_);
  ThrowIfFailed(env, dev.status());
  Status st = StreamWaitEvent(s, event_);
  if (!st.ok) ThrowError(env, "CudaEvent.wait: " + st.message);
#else
  (void)s;
#endif
}

void CudaEvent::Synchronize(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  CheckLive(env, "synchronize");
#ifdef MONARCH_WITH_CUDA
  DeviceScope dev(device_);
  ThrowIfFailed(env, dev.status());
  Status st = EventSynchronize(event_);
  if (!st.ok) ThrowError(env, "CudaEvent.synchronize: " + st.message);
#endif
}

Napi::Value CudaEvent::Query(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  CheckLive(env, "query");
  bool done = true;
#ifdef MONARCH_WITH_CUDA
  DeviceScope dev(device_);
  ThrowIfFailed(env, dev.status());
  Status st = EventQuery(event_, &done);
  if (!st.ok) ThrowError(env, "CudaEvent.query: " + st.message);
#endif
  return Napi::Boolean::New(env, done);
}

void CudaEvent::Dispose(const Napi::CallbackInfo&) {
  if (disposed_) return;
  disposed_ = true;
#ifdef MONARCH_WITH_CUDA
  EventDestroy(event_);
#endif
  event_ = nullptr;
}

}  // namespace binding
}  // namespace monarch
