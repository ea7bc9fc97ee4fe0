// addon.cc — module init of build/Release/monarch.node: registers the surface typed in lib/native.ts
// (info, Plan, DeviceBuffer, CudaStream, CudaEvent, HostStager, the host dtype conversions, setCpuThreads, nccl).
#include "binding_common.h"
#include "binding_convert.h"
#include "binding_device_buffer.h"
#include "binding_host_memory.h"
#include "binding_host_stager.h"
#include "binding_info.h"
#include "binding_nccl.h"
#include "binding_plan.h"
#include "binding_stream.h"

namespace monarch {
namespace binding {

Napi::Object Init(Napi::Env env, Napi::Object exports) {
  auto* data = new AddonData();
  env.SetInstanceData(data);  // deleted by node-addon-api at environment teardown

  Napi::Function deviceBuffer = DeviceBuffer::Init(env);
  data->deviceBufferCtor = Napi::Persistent(deviceBuffer);
  Napi::Function plan = Plan::Init(env);
  data->planCtor = Napi::Persistent(plan);

  exports.Set("info", Napi::Function::New<Info>(env, "info"));
  exports.Set("Plan", plan);
  exports.Set("DeviceBuffer", deviceBuffer);
  exports.Set("CudaStream", CudaStream::Init(env));
  exports.Set("CudaEvent", CudaEvent::Init(env));
  exports.Set("f32ToBf16", Napi::Function::New<F32ToBf16>(env, "f32ToBf16"));
  exports.Set("bf16ToF32", Napi::Function::New<Bf16ToF32>(env, "bf16ToF32"));
  exports.Set("f32ToF16", Napi::Function::New<F32ToF16>(env, "f32ToF16"));
  exports.Set("f16ToF32", Napi::Function::New<F16ToF32>(env, "f16ToF32"));
  exports.Set("allocHost", Napi::Function::New<AllocHost>(env, "allocHost"));
  exports.Set("hostMemoryKind", Napi::Function::New<HostMemoryKind>(env, "hostMemoryKind"));
  exports.Set("isPinnedHost", Napi::Function::New<IsPinnedHost>(env, "isPinnedHost"));
  exports.Set("copyHost", Napi::Function::New<CopyHost>(env, "copyHost"));
  exports.Set("HostStager", HostStager::Init(env));
  exports.Set("cloneHostAsync", Napi::Function::New<CloneHostAsync>(env, "cloneHostAsync"));
  exports.Set("memoryStats", Napi::Function::New<MemoryStats>(env, "memoryStats"));
  exports.Set("setCpuThreads", Napi::Function::New<SetCpuThreads>(env, "setCpuThreads"));
  exports.Set("nccl", InitNccl(env));
  return exports;
}

}  // namespace binding
}  // namespace monarch

static Napi::Object InitModule(Napi::Env env, Napi::Object exports) {
  return monarch::binding::Init(env, exports);
}

NODE_API_MODULE(monarch, InitModule)
