// binding_device_buffer.h — DeviceBuffer (lib/native.ts NativeDeviceBuffer): a span of GPU memory,
// either allocated here (owned: dispose and the finalizer free it) or wrapped from a pointer owned
// elsewhere (fromPointer: never freed here). alloc(bytes, device = 0); fromPointer(ptr, bytes, device =
// the pointer's device as CUDA reports it, else 0). Created only through the static alloc / fromPointer.
// In a build without CUDA every way of creating one throws "CUDA backend unavailable: ...".
#pragma once

#include <cstddef>
#include <cstdint>

#include "binding_common.h"

namespace monarch {
namespace binding {

class DeviceBuffer : public Napi::ObjectWrap<DeviceBuffer> {
 public:
  static Napi::Function Init(Napi::Env env);
  // The DeviceBuffer behind v, or nullptr when v is not one.
  static DeviceBuffer* FromValue(Napi::Env env, const Napi::Value& v);

  explicit DeviceBuffer(const Napi::CallbackInfo& info);
  ~DeviceBuffer() override;

  void* data() const { return ptr_; }
  int device() const { return device_; }
  size_t byteLength() const { return bytes_; }
  bool disposed() const { return disposed_; }

  // In-flight async downloads keep the memory alive across dispose() (freed when the last ends).
  void BeginAsync() { ++inflight_; }
  void EndAsync();

 private:
  static Napi::Value Alloc(const Napi::CallbackInfo& info);
  static Napi::Value FromPointer(const Napi::CallbackInfo& info);

  Napi::Value GetByteLength(const Napi::CallbackInfo& info);
  Napi::Value GetPointer(const Napi::CallbackInfo& info);
  Napi::Value GetOwned(const Napi::CallbackInfo& info);
  Napi::Value GetDisposed(const Napi::CallbackInfo& info);
  Napi::Value GetDevice(const Napi::CallbackInfo& info);
  void Upload(const Napi::CallbackInfo& info);
  Napi::Value DownloadSync(const Napi::CallbackInfo& info);
  Napi::Value Download(const Napi::CallbackInfo& info);
  void Fill(const Napi::CallbackInfo& info);
  void Dispose(const Napi::CallbackInfo& info);

  void CheckLive(Napi::Env env, const char* method) const;
  void FreeMemory();

  void* ptr_ = nullptr;
  size_t bytes_ = 0;
  bool owned_ = false;
  bool disposed_ = false;
  int device_ = 0;  // the GPU holding the memory; current around every copy and the free (DeviceScope)
  int inflight_ = 0;
  int64_t externalBytes_ = 0;  // reported to V8 (napi_adjust_external_memory) while the memory is held
};

}  // namespace binding
}  // namespace monarch
