// binding_info.cc — info(), setCpuThreads() and the CUDA availability probe (see binding_info.h).
#include "binding_info.h"

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
#else
  o.Set("compiledWithCuda", false);
  o.Set("cudaArchs", env.Null());
  o.Set("cudaStatus", env.Null());
  o.Set("cudaMessage", "this build has no CUDA kernels");
  o.Set("deviceCount", 0);
  o.Set("device", env.Null());
#endif
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
