// binding_host_stager.cc — HostStager (see binding_host_stager.h).
#include "binding_host_stager.h"

#include <algorithm>

namespace monarch {
namespace binding {

Napi::Function HostStager::Init(Napi::Env env) {
  return DefineClass(env, "HostStager",
                     {
                         InstanceMethod<&HostStager::Copy>("copy"),
                         InstanceAccessor<&HostStager::GetRemaining>("remaining"),
                         InstanceMethod<&HostStager::Close>("close"),
                     });
}

HostStager::HostStager(const Napi::CallbackInfo& info) : Napi::ObjectWrap<HostStager>(info) {
  Napi::Env env = info.Env();
  if (!info[0].IsTypedArray() || !info[1].IsTypedArray()) {
    ThrowTypeError(env, "HostStager: dst and src must be typed arrays, got " + DescribeValue(info[0]) + " and " +
                            DescribeValue(info[1]));
  }
  Napi::TypedArray dst = info[0].As<Napi::TypedArray>(), src = info[1].As<Napi::TypedArray>();
  TypedSpan d = GetTypedSpan(env, dst), s = GetTypedSpan(env, src);
  if (d.detached || s.detached) ThrowError(env, "HostStager: an array is detached");
  if (d.bytes != s.bytes) {
    ThrowRangeError(env, "HostStager: dst has " + std::to_string(d.bytes) + " bytes, src " + std::to_string(s.bytes));
  }
  dstBlock_ = d.shared ? HostBlockRef() : FindHostBlock(d.data, d.bytes);
  if (d.bytes && !dstBlock_) ThrowTypeError(env, "HostStager: dst must be addon memory (allocHost)");
  if (!s.shared) srcBlock_ = FindHostBlock(s.data, s.bytes);
  if (!srcBlock_) src_ = Napi::Reference<Napi::TypedArray>::New(src, 1);
  dst_ = static_cast<uint8_t*>(d.data);
  src0_ = static_cast<const uint8_t*>(s.data);
  bytes_ = d.bytes;
  open_ = bytes_ > 0;
  if (!open_) Drop();
}

void HostStager::Drop() {
  open_ = false;
  dstBlock_ = HostBlockRef();
  srcBlock_ = HostBlockRef();
  src_.Reset();
}

Napi::Value HostStager::Copy(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  const int64_t max = ToInt(env, info[0], "HostStager.copy: maxBytes", 1, kMaxSafeInteger);
  if (!open_) return Napi::Number::New(env, double(bytes_ - done_));
  if (!srcBlock_) {
    // Not addon memory: the caller's buffer may have been detached, transferred or shrunk since the
    // last slice (this runs on the main thread, so it cannot change during the copy below).
    TypedSpan s = GetTypedSpan(env, src_.Value());
    if (s.detached || s.data != src0_ || s.bytes < bytes_) {
      Drop();
      done_ = bytes_;  // nothing more to copy: remaining reads 0
      return Napi::Number::New(env, -1);
    }
  }
  const size_t n = std::min(bytes_ - done_, size_t(max));
  ParallelCopy(dst_ + done_, src0_ + done_, n);
  done_ += n;
  if (done_ == bytes_) {
    CountStagingCopy(bytes_);
    Drop();
  }
  return Napi::Number::New(env, double(bytes_ - done_));
}

Napi::Value HostStager::GetRemaining(const Napi::CallbackInfo& info) {
  return Napi::Number::New(info.Env(), open_ ? double(bytes_ - done_) : 0.0);
}

void HostStager::Close(const Napi::CallbackInfo&) { Drop(); }

}  // namespace binding
}  // namespace monarch
