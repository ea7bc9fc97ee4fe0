// binding_device_buffer.cc — DeviceBuffer (see binding_device_buffer.h).
//
// Ordering: upload / download / fill first wait for all GPU work on every stream
// (cudaDeviceSynchronize), so a transfer never races a kernel that a plan enqueued earlier on its own
// stream; download does that wait and the copy in an AsyncWorker, off the event loop.
#include "binding_device_buffer.h"
#include "binding_device_scope.h"
#include "binding_host_memory.h"

#include "binding_safe_worker.h"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <sstream>
#include <vector>

#ifdef MONARCH_WITH_CUDA
#include "binding_bounce_copy.h"
#include "binding_cuda.h"
#include <monarch/monarch_cuda.h>
#endif

namespace monarch {
namespace binding {

namespace {

// Passed (as an External) from Alloc / FromPointer to the constructor; JS cannot forge one.
struct InitToken {
  void* ptr = nullptr;
  size_t bytes = 0;
  int device = 0;
  bool owned = false;
  bool taken = false;  // the constructor took ownership of ptr
};

[[noreturn]] void ThrowUnavailable(Napi::Env env) {
  ThrowError(env, "CUDA backend unavailable: " + CudaUnavailableReason());
}

enum class HostKind { kF32, kU16 };

HostKind ReadKind(Napi::Env env, const Napi::Value& v, const char* method) {
  if (!v.IsString()) {
    ThrowTypeError(env, std::string("DeviceBuffer.") + method + ": kind must be 'f32' or 'u16', got " +
                            DescribeValue(v));
  }
  std::string k = v.As<Napi::String>().Utf8Value();
  if (k == "f32") return HostKind::kF32;
  if (k == "u16") return HostKind::kU16;
  ThrowRangeError(env, std::string("DeviceBuffer.") + method + ": kind must be 'f32' or 'u16', got '" + k + "'");
}

size_t KindSize(HostKind k) { return k == HostKind::kF32 ? 4 : 2; }

Napi::Value MakeTypedArray(Napi::Env env, Napi::ArrayBuffer ab, HostKind k) {
  size_t n = ab.ByteLength() / KindSize(k);
  if (k == HostKind::kF32) return Napi::Float32Array::New(env, n, ab, 0);
  return Napi::Uint16Array::New(env, n, ab, 0);
}

#ifdef MONARCH_WITH_CUDA
// Into pageable memory (a new ArrayBuffer) through page-locked bounce slots (binding_bounce_copy.h).
Status CopyToHost(void* dst, const void* src, size_t bytes) {
  Status s = DeviceSynchronize();
  if (!s.ok) return s;
  return CopyDeviceToPageable(dst, src, bytes);
}

Status CopyToDevice(void* dst, const void* src, size_t bytes) {
  Status s = DeviceSynchronize();
  if (!s.ok) return s;
  s = cuda::memcpy_h2d(dst, src, bytes, nullptr);
  if (!s.ok) return s;
  return cuda::stream_sync(nullptr);
}
#endif

// download(kind): the copy runs on a libuv worker into an ArrayBuffer created (unexposed) on the main
// thread; the DeviceBuffer object is referenced until completion. Completion goes through SafeWorker:
// at environment teardown the Promise is dropped and the in-flight count still released.
class DownloadWorker : public SafeWorker {
 public:
  DownloadWorker(Napi::Env env, DeviceBuffer* buf, Napi::Object self, HostKind kind)
      : SafeWorker(env, "monarch:DeviceBuffer.download"),
        buf_(buf),
        kind_(kind),
        src_(buf->data()),
        bytes_(buf->byteLength()),
        device_(buf->device()) {
    self_ = Napi::Persistent(self);
    Napi::ArrayBuffer ab = Napi::ArrayBuffer::New(env, bytes_);
    dst_ = ab.Data();
    host_ = Napi::Persistent(ab);
    buf_->BeginAsync();
  }

 protected:
  void Run() override {
#ifdef MONARCH_WITH_CUDA
    DeviceScope dev(device_);  // a libuv thread: the buffer's device
    Status s = dev.status();
    if (s.ok) s = CopyToHost(dst_, src_, bytes_);
    if (!s.ok) Fail("DeviceBuffer.download: " + s.message);
#else
    Fail("CUDA backend unavailable: " + CudaUnavailableReason());
#endif
  }
  napi_value Result(napi_env env) override {
    napi_value ab = nullptr, out = nullptr;
    if (napi_get_reference_value(env, host_, &ab) != napi_ok || !ab) return nullptr;
    const size_t n = bytes_ / KindSize(kind_);
    const napi_typedarray_type t = kind_ == HostKind::kF32 ? napi_float32_array : napi_uint16_array;
    if (napi_create_typedarray(env, t, n, ab, 0, &out) != napi_ok) return nullptr;
    return out;
  }
  void Finish(bool) override { buf_->EndAsync(); }

 private:
  DeviceBuffer* buf_;
  HostKind kind_;
  const void* src_;
  size_t bytes_;
  int device_;
  void* dst_ = nullptr;
  Napi::ObjectReference self_;
  Napi::Reference<Napi::ArrayBuffer> host_;
};

}  // namespace

Napi::Function DeviceBuffer::Init(Napi::Env env) {
  return DefineClass(
      env, "DeviceBuffer",
      {
          StaticMethod<&DeviceBuffer::Alloc>("alloc"),
          StaticMethod<&DeviceBuffer::FromPointer>("fromPointer"),
          InstanceAccessor<&DeviceBuffer::GetByteLength>("byteLength"),
          InstanceAccessor<&DeviceBuffer::GetPointer>("pointer"),
          InstanceAccessor<&DeviceBuffer::GetOwned>("owned"),
          InstanceAccessor<&DeviceBuffer::GetDisposed>("disposed"),
          InstanceAccessor<&DeviceBuffer::GetDevice>("device"),
          InstanceMethod<&DeviceBuffer::Upload>("upload"),
          InstanceMethod<&DeviceBuffer::DownloadSync>("downloadSync"),
          InstanceMethod<&DeviceBuffer::Download>("download"),
          InstanceMethod<&DeviceBuffer::Fill>("fill"),
          InstanceMethod<&DeviceBuffer::Dispose>("dispose"),
      });
}

DeviceBuffer* DeviceBuffer::FromValue(Napi::Env env, const Napi::Value& v) {
  if (!v.IsObject()) return nullptr;
  Napi::Object o = v.As<Napi::Object>();
  if (!o.InstanceOf(GetAddonData(env).deviceBufferCtor.Value())) return nullptr;
  void* raw = nullptr;
  if (napi_unwrap(env, o, &raw) != napi_ok || raw == nullptr) return nullptr;  // a prototype impostor
  return static_cast<DeviceBuffer*>(raw);
}

DeviceBuffer::DeviceBuffer(const Napi::CallbackInfo& info) : Napi::ObjectWrap<DeviceBuffer>(info) {
  Napi::Env env = info.Env();
  if (info.Length() < 1 || !info[0].IsExternal()) {
    ThrowTypeError(env, "DeviceBuffer cannot be constructed directly; use DeviceBuffer.alloc(bytes) or "
                        "DeviceBuffer.fromPointer(ptr, bytes)");
  }
  InitToken* t = info[0].As<Napi::External<InitToken>>().Data();
  ptr_ = t->ptr;
  bytes_ = t->bytes;
  owned_ = t->owned;
  device_ = t->device;
  t->taken = true;
  if (owned_ && bytes_ > 0) {
    // Device memory held by a JS object: reported so that dropped buffers put pressure on the GC.
    int64_t ignored = 0;
    if (napi_adjust_external_memory(env, int64_t(bytes_), &ignored) == napi_ok) externalBytes_ = int64_t(bytes_);
  }
}

DeviceBuffer::~DeviceBuffer() {
  // Finalizer (or environment teardown). An async download still running keeps a reference to this
  // object, so inflight_ is 0 here except at teardown with work in flight, where leaking is safer.
  if (inflight_ == 0) FreeMemory();
}

void DeviceBuffer::FreeMemory() {
#ifdef MONARCH_WITH_CUDA
  if (owned_ && ptr_) {
    DeviceScope dev(device_);
    cuda::free_device(ptr_);
    CountDeviceFree(bytes_);
  }
#endif
  if (externalBytes_ != 0) {
    int64_t ignored = 0;
    napi_adjust_external_memory(Env(), -externalBytes_, &ignored);
    externalBytes_ = 0;
  }
  ptr_ = nullptr;
}

void DeviceBuffer::EndAsync() {
  if (--inflight_ == 0 && disposed_) FreeMemory();
}

void DeviceBuffer::CheckLive(Napi::Env env, const char* method) const {
  if (disposed_) ThrowError(env, std::string("DeviceBuffer was disposed (DeviceBuffer.") + method + ")");
}

Napi::Value DeviceBuffer::Alloc(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  int64_t bytes = ToInt(env, info[0], "DeviceBuffer.alloc: bytes", 1, kMaxSafeInteger);
  const int device = info[1].IsUndefined() ? 0 : int(ToInt(env, info[1], "DeviceBuffer.alloc: device", 0, kMaxInt32));
#ifdef MONARCH_WITH_CUDA
  if (!CudaUnavailableReason().empty()) ThrowUnavailable(env);
  const int count = VisibleDeviceCount();
  if (device >= count) {
    ThrowRangeError(env, "DeviceBuffer.alloc: device " + std::to_string(device) + " is out of range: " + std::to_string(count) +
                             " CUDA device(s) visible");
  }
  DeviceScope dev(device);
  ThrowIfFailed(env, dev.status());
  InitToken t;
  t.device = device;
  Status s = cuda::malloc_device(&t.ptr, size_t(bytes));
  if (!s.ok) ThrowError(env, "DeviceBuffer.alloc(" + std::to_string(bytes) + "): " + s.message);
  t.bytes = size_t(bytes);
  t.owned = true;
  CountDeviceAlloc(t.bytes);
  try {
    return GetAddonData(env).deviceBufferCtor.New({Napi::External<InitToken>::New(env, &t)});
  } catch (...) {
    if (!t.taken) {
      cuda::free_device(t.ptr);
      CountDeviceFree(t.bytes);
    }
    throw;
  }
#else
  (void)bytes;
  (void)device;
  ThrowUnavailable(env);
#endif
}

Napi::Value DeviceBuffer::FromPointer(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (!info[0].IsBigInt()) {
    ThrowTypeError(env, "DeviceBuffer.fromPointer: ptr must be a bigint, got " + DescribeValue(info[0]));
  }
  bool lossless = false;
  uint64_t ptr = info[0].As<Napi::BigInt>().Uint64Value(&lossless);
  if (!lossless || ptr == 0) {
    ThrowRangeError(env, "DeviceBuffer.fromPointer: ptr must be a non-zero 64-bit unsigned address");
  }
  int64_t bytes = ToInt(env, info[1], "DeviceBuffer.fromPointer: bytes", 1, kMaxSafeInteger);
  const int given = info[2].IsUndefined() ? -1 : int(ToInt(env, info[2], "DeviceBuffer.fromPointer: device", 0, kMaxInt32));
#ifdef MONARCH_WITH_CUDA
  if (!CudaUnavailableReason().empty()) ThrowUnavailable(env);
  const int count = VisibleDeviceCount();
  if (given >= count) {
    ThrowRangeError(env, "DeviceBuffer.fromPointer: device " + std::to_string(given) + " is out of range: " +
                             std::to_string(count) + " CUDA device(s) visible");
  }
  InitToken t;
  t.ptr = reinterpret_cast<void*>(uintptr_t(ptr));
  const int found = cuda::pointer_device(t.ptr);
  t.device = given >= 0 ? given : (found >= 0 ? found : 0);
  t.bytes = size_t(bytes);
  t.owned = false;
  return GetAddonData(env).deviceBufferCtor.New({Napi::External<InitToken>::New(env, &t)});
#else
  (void)bytes;
  (void)given;
  ThrowUnavailable(env);
#endif
}

Napi::Value DeviceBuffer::GetByteLength(const Napi::CallbackInfo& info) {
  return Napi::Number::New(info.Env(), double(bytes_));
}

Napi::Value DeviceBuffer::GetPointer(const Napi::CallbackInfo& info) {
  CheckLive(info.Env(), "pointer");
  return Napi::BigInt::New(info.Env(), uint64_t(reinterpret_cast<uintptr_t>(ptr_)));
}

Napi::Value DeviceBuffer::GetOwned(const Napi::CallbackInfo& info) {
  return Napi::Boolean::New(info.Env(), owned_);
}

Napi::Value DeviceBuffer::GetDevice(const Napi::CallbackInfo& info) {
  return Napi::Number::New(info.Env(), device_);
}

Napi::Value DeviceBuffer::GetDisposed(const Napi::CallbackInfo& info) {
  return Napi::Boolean::New(info.Env(), disposed_);
}

void DeviceBuffer::Upload(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  CheckLive(env, "upload");
  Napi::Value v = info[0];
  bool ok = v.IsTypedArray();
  if (ok) {
    napi_typedarray_type t = v.As<Napi::TypedArray>().TypedArrayType();
    ok = t == napi_float32_array || t == napi_uint16_array || t == napi_uint8_array || t == napi_int32_array;
  }
  if (!ok) {
    ThrowTypeError(env, "DeviceBuffer.upload: src must be a Float32Array, Uint16Array, Uint8Array or "
                        "Int32Array, got " + DescribeValue(v));
  }
  Napi::TypedArray ta = v.As<Napi::TypedArray>();
  size_t srcBytes = ta.ByteLength();
  if (srcBytes != bytes_) {
    ThrowRangeError(env, "DeviceBuffer.upload: src has " + std::to_string(srcBytes) +
                             " bytes but the DeviceBuffer has " + std::to_string(bytes_) + " bytes");
  }
#ifdef MONARCH_WITH_CUDA
  const uint8_t* src = static_cast<const uint8_t*>(ta.ArrayBuffer().Data()) + ta.ByteOffset();
  DeviceScope dev(device_);
  ThrowIfFailed(env, dev.status());
  ThrowIfFailed(env, CopyToDevice(ptr_, src, bytes_));
#else
  ThrowUnavailable(env);
#endif
}

Napi::Value DeviceBuffer::DownloadSync(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  CheckLive(env, "downloadSync");
  HostKind k = ReadKind(env, info[0], "downloadSync");
  if (bytes_ % KindSize(k) != 0) {
    ThrowRangeError(env, "DeviceBuffer.downloadSync: byteLength " + std::to_string(bytes_) +
                             " is not a multiple of " + std::to_string(KindSize(k)));
  }
  Napi::ArrayBuffer ab = Napi::ArrayBuffer::New(env, bytes_);
#ifdef MONARCH_WITH_CUDA
  DeviceScope dev(device_);
  Status s = dev.status();
  if (s.ok) s = CopyToHost(ab.Data(), ptr_, bytes_);
  if (!s.ok) ThrowError(env, "DeviceBuffer.downloadSync: " + s.message);
#else
  ThrowUnavailable(env);
#endif
  return MakeTypedArray(env, ab, k);
}

Napi::Value DeviceBuffer::Download(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  auto deferred = Napi::Promise::Deferred::New(env);
  try {
    CheckLive(env, "download");
    HostKind k = ReadKind(env, info[0], "download");
    if (bytes_ % KindSize(k) != 0) {
      ThrowRangeError(env, "DeviceBuffer.download: byteLength " + std::to_string(bytes_) +
                               " is not a multiple of " + std::to_string(KindSize(k)));
    }
    auto* w = new DownloadWorker(env, this, Value(), k);
    Napi::Promise promise = w->Promise();
    if (!w->TryQueue()) {
      EndAsync();
      w->DropUnqueued("DeviceBuffer.download: could not be queued (the environment is shutting down)");
    }
    return promise;
  } catch (const Napi::Error& e) {
    deferred.Reject(e.Value());
    return deferred.Promise();
  }
}

void DeviceBuffer::Fill(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  CheckLive(env, "fill");
  if (!info[0].IsNumber()) {
    ThrowTypeError(env, "DeviceBuffer.fill: value must be a number, got " + DescribeValue(info[0]));
  }
  float value = float(info[0].As<Napi::Number>().DoubleValue());  // NaN / ±Infinity allowed (poisoning)
  DType dtype = DType(ToInt(env, info[1], "DeviceBuffer.fill: dtype", 0, 2));
  size_t es = dtype_size(dtype);
  if (bytes_ % es != 0) {
    ThrowRangeError(env, "DeviceBuffer.fill: byteLength " + std::to_string(bytes_) +
                             " is not a multiple of the " + dtype_name(dtype) + " size " + std::to_string(es));
  }
  uint8_t pattern[4];
  if (dtype == kF32) {
    std::memcpy(pattern, &value, 4);
  } else {
    uint16_t h = dtype == kBF16 ? f32_to_bf16(value) : f32_to_f16(value);
    std::memcpy(pattern, &h, 2);
  }
#ifdef MONARCH_WITH_CUDA
  DeviceScope dev(device_);
  ThrowIfFailed(env, dev.status());
  bool uniform = std::all_of(pattern, pattern + es, [&](uint8_t b) { return b == pattern[0]; });
  if (uniform) {  // e.g. 0.0: one memset
    Status s = DeviceSynchronize();
    if (s.ok) s = cuda::memset_device(ptr_, pattern[0], bytes_, nullptr);
    if (s.ok) s = cuda::stream_sync(nullptr);
    if (!s.ok) ThrowError(env, "DeviceBuffer.fill: " + s.message);
    return;
  }
  // Otherwise upload a host chunk of the pattern repeatedly (bounded host memory).
  const size_t chunk = std::min(bytes_, size_t(16) << 20);
  std::vector<uint8_t> host(chunk);
  for (size_t i = 0; i < chunk; i += es) std::memcpy(host.data() + i, pattern, es);
  for (size_t off = 0; off < bytes_; off += chunk) {
    size_t n = std::min(chunk, bytes_ - off);
    Status s = CopyToDevice(static_cast<uint8_t*>(ptr_) + off, host.data(), n);
    if (!s.ok) ThrowError(env, "DeviceBuffer.fill: " + s.message);
  }
#else
  ThrowUnavailable(env);
#endif
}

void DeviceBuffer::Dispose(const Napi::CallbackInfo& info) {
  CheckLive(info.Env(), "dispose");
  disposed_ = true;
  if (inflight_ == 0) FreeMemory();
}

}  // namespace binding
}  // namespace monarch
