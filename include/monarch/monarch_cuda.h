// monarch_cuda.h — the CUDA backend's C++ surface. Included by csrc/ (the binding) without any CUDA
// header: streams are passed as opaque pointers (cudaStream_t is a pointer type), device memory as
// void*. Every function returns a monarch::Status naming the kernel / runtime call and the CUDA error;
// nothing here aborts. Compiled only when MONARCH_WITH_CUDA is defined (CMake, nvcc found).
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>

#include <monarch/monarch.h>

namespace monarch {
namespace cuda {

using Stream = void*;  // a cudaStream_t

struct DeviceInfo {
  int count = 0;             // devices visible (0 when no driver / no GPU)
  int runtimeStatus = 0;     // cudaError_t of cudaGetDeviceCount
  std::string message;       // cudaGetErrorString of that status
  std::string name;          // device 0 name, when count > 0
  int major = 0, minor = 0;  // compute capability of device 0
  int smCount = 0;
  size_t totalMem = 0;
  int driverVersion = 0, runtimeVersion = 0;
};
DeviceInfo device_info();
// Properties of device `index` (0 ≤ index < count).
struct DeviceProps {
  std::string name;
  int major = 0, minor = 0, smCount = 0;
  size_t totalMem = 0;
  int pciBusId = 0;
};
Status device_props(int index, DeviceProps* out);
// The calling thread's current device (cudaGetDevice / cudaSetDevice; per host thread).
Status get_device(int* device);
Status set_device(int device);
// The device holding the memory at p, or -1 when CUDA does not know it as device memory.
int pointer_device(const void* p);
// Architectures compiled into the fatbin, e.g. "80-real;89-real;90a-real;..." (from CMake).
const char* compiled_archs();

// Memory and streams.
Status malloc_device(void** ptr, size_t bytes);   // message says "out of GPU memory" on OOM
Status free_device(void* ptr);
Status stream_create(Stream* s);
Status stream_destroy(Stream s);
Status stream_sync(Stream s);
Status memcpy_h2d(void* dst, const void* src, size_t bytes, Stream s);  // async on s
Status memcpy_d2h(void* dst, const void* src, size_t bytes, Stream s);  // async on s
Status memset_device(void* dst, int byte, size_t bytes, Stream s);

// Stages: same semantics as monarch::cpu (see monarch.h); all pointers in MonarchParams / DenseParams /
// GatherParams are device pointers. Enqueued on s; no host synchronisation.
// Supported on CUDA: the cuda entries of the support table (support.h): f16 / bf16 on tensor cores (fp32
// accumulation), f32 on CUDA cores (fp32 FMA, cuda/*/fp32_*.cu); any other head dim returns a Status naming
// D and the supported set ("Unsupported head dim D=<d>; the CUDA backend supports …").
Status r_step(const MonarchParams& p, bool first, bool last, Stream s);
Status l_step(const MonarchParams& p, bool final, Stream s);
// The T loop's last pair: r_step(p, first, last = true) then l_step(p, final = true), same results. Where
// final_step_fused says so, one kernel does both and the workspace's aL, y, cL are neither written nor read
// (cuda/fused/final_step.cu: one-tile problems with b1, b2 <= 64, head dim 64, on sm_90+, with
// MONARCH_FUSED_KERNELS=1; off by default, slower than the two stages on the H200).
Status final_step(const MonarchParams& p, bool first, Stream s);
bool final_step_fused(const MonarchParams& p, bool first);
// Where no fused kernel applies: the number of head chunks final_step runs side by side (the R-step of one
// chunk beside the L-step of the one before, on a second stream; only with MONARCH_RL_OVERLAP=1, slower on
// the H200), or 0 when it runs the two stages in turn.
int final_step_chunks(const MonarchParams& p, bool first);
Status dense(const DenseParams& p, Stream s);
Status gather_tokens(const GatherParams& p, Stream s);

}  // namespace cuda
}  // namespace monarch
