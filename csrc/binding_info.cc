// binding_info.cc — info(), setCpuThreads() and the CUDA availability probe (see binding_info.h).
#include "binding_info.h"

#include <monarch/support.h>

#ifdef MONARCH_WITH_CUDA
#include <monarch/monarch_cuda.h>
#endif

namespace monarch {
namespace binding {

const std::string& CudaUnavailableReason() {
  // Device visibility does not change within a process in practice, and cudart caches a failed
  // initialisation anyway: probe once.
  static const std::string reason = []() -> std::string {
#ifdef MONARCH_WITH_CUDA
    cuda::DeviceInfo d = cuda::device_info();
    if (d.runtimeStatus != 0) {
      return d.message.empty() ? "cudaGetDeviceCount returned " + std::to_string(d.runtimeStatus) : d.message;
    }
    if (d.count <= 0) return "no CUDA device is visible";
    return "";
#else
    return "this build has no CUDA kernels";
#endif
  }();
  return reason;
}

int VisibleDeviceCount() {
  static const int count = []() {
#ifdef MONARCH_WITH_CUDA
    if (!CudaUnavailableReason().empty()) return 0;
    return cuda::device_info().count;
#else
    return 0;
#endif
  }();
  return count;
}

// The support table (monarch/support.h) as [{ backend, dtype, headDims: [..] | { min, max }, minSm, engine }];
// listed whether or not this build has the CUDA kernels (compiledWithCuda says that).
static Napi::Array SupportTable(Napi::Env env) {
  Napi::Array a = Napi::Array::New(env, kSupportCount);
  for (int i = 0; i < kSupportCount; ++i) {
    const SupportEntry& e = kSupport[i];
    Napi::Object r = Napi::Object::New(env);
    r.Set("backend", backend_name(e.backend));
    r.Set("dtype", dtype_name(e.dtype));
    if (e.headDims.count > 0) {
      Napi::Array dims = Napi::Array::New(env, e.headDims.count);
      for (int d = 0; d < e.headDims.count; ++d) dims.Set(uint32_t(d), e.headDims.dims[d]);
      r.Set("headDims", dims);
    } else {
      Napi::Object range = Napi::Object::New(env);
      range.Set("min", e.headDims.min);
      range.Set("max", e.headDims.max);
      r.Set("headDims", range);
    }
    r.Set("minSm", e.minSm);
    r.Set("engine", e.engine);
    a.Set(uint32_t(i), r);
  }
  return a;
}

Napi::Value Info(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  Napi::Object o = Napi::Object::New(env);
#ifdef MONARCH_WITH_CUDA
  cuda::DeviceInfo d = cuda::device_info();
  o.Set("compiledWithCuda", true);
  const char* archs = cuda::compiled_archs();
  o.Set("cudaArchs", archs ? Napi::Value(Napi::String::New(env, archs)) : env.Null());
  o.Set("cudaStatus", d.runtimeStatus);
  o.Set("cudaMessage", d.message);
  o.Set("deviceCount", d.count);
  if (d.runtimeStatus == 0 && d.count > 0) {
    Napi::Object dev = Napi::Object::New(env);
    dev.Set("name", d.name);
    dev.Set("major", d.major);
    dev.Set("minor", d.minor);
    dev.Set("smCount", d.smCount);
    dev.Set("memoryBytes", double(d.totalMem));
    dev.Set("driverVersion", d.driverVersion);
    dev.Set("runtimeVersion", d.runtimeVersion);
    o.Set("device", dev);
  } else {
    o.Set("device", env.Null());
  }
  // Every visible device (index = the `device` option's value).
  Napi::Array devices = Napi::Array::New(env);
  for (int i = 0; d.runtimeStatus == 0 && i < d.count; ++i) {
    cuda::DeviceProps p;
    Napi::Object dev = Napi::Object::New(env);
    dev.Set("index", i);
    if (cuda::device_props(i, &p).ok) {
      dev.Set("name", p.name);
      dev.Set("major", p.major);
      dev.Set("minor", p.minor);
      dev.Set("smCount", p.smCount);
      dev.Set("memoryBytes", double(p.totalMem));
      dev.Set("pciBusId", p.pciBusId);
    }
    devices.Set(uint32_t(devices.Length()), dev);
  }
  o.Set("devices", devices);
#else
  o.Set("compiledWithCuda", false);
  o.Set("cudaArchs", env.Null());
  o.Set("cudaStatus", env.Null());
  o.Set("cudaMessage", "this build has no CUDA kernels");
  o.Set("deviceCount", 0);
  o.Set("device", env.Null());
  o.Set("devices", Napi::Array::New(env));
#endif
  o.Set("support", SupportTable(env));
  o.Set("cpuThreads", cpu::num_threads());
  o.Set("napiVersion", NAPI_VERSION);
  return o;
}

void SetCpuThreads(const Napi::CallbackInfo& info) {
  // 0 = hardware concurrency (monarch::cpu::set_num_threads).
  int n = int(ToInt(info.Env(), info[0], "setCpuThreads: n", 0, 65536));
  cpu::set_num_threads(n);
}

}  // namespace binding
}  // namespace monarch
