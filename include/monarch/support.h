// support.h — the one table of what each backend supports: (backend, dtype, head dims, arch).
// Every check reads it: the CUDA dispatchers (cuda/common/mma_utils.cuh dispatch_dtype_dim,
// cuda/common/fp32_rows.cuh dispatch_nc), the CPU stages (cpu/common.h dims_error), the addon's
// info().support (csrc/binding_info.cc) and through it the TypeScript checks (lib/info.ts,
// lib/options.ts). Framework-free, header-only, constexpr.
#pragma once

#include <string>

#include "monarch.h"

namespace monarch {

enum class BackendId : int { kCpu = 0, kCuda = 1 };

inline const char* backend_name(BackendId b) { return b == BackendId::kCpu ? "cpu" : "cuda"; }

// Head dims of one entry: the explicit list dims[0..count) when count > 0, else every D in min..max.
struct HeadDims {
  int min, max;
  int count;
  int dims[4];
  constexpr bool contains(int D) const {
    if (count == 0) return D >= min && D <= max;
    for (int i = 0; i < count; ++i)
      if (dims[i] == D) return true;
    return false;
  }
  // "64, 128" or "1 to 128" (the error messages' wording).
  std::string text(const char* rangeWord = " to ") const {
    if (count == 0) return std::to_string(min) + rangeWord + std::to_string(max);
    std::string s;
    for (int i = 0; i < count; ++i) s += (i ? ", " : "") + std::to_string(dims[i]);
    return s;
  }
};

struct SupportEntry {
  BackendId backend;
  DType dtype;
  HeadDims headDims;
  int minSm;           // lowest compute capability ×10 (80 = sm_80); 0 = no requirement (CPU)
  const char* engine;  // what runs it
};

// float16 / bfloat16 on tensor cores: mma fragments of 16, 16-byte rows, one instantiation per D.
constexpr HeadDims kTensorCoreHeadDims{64, 128, 2, {64, 128}};
// float32 on CUDA cores: one warp per row, ⌈D/32⌉ ≤ 4 value columns per lane.
constexpr HeadDims kCudaF32HeadDims{1, 128, 0, {}};
// The CPU reference: any D up to 512 (the bound the API documents and checks).
constexpr HeadDims kCpuHeadDims{1, 512, 0, {}};

constexpr SupportEntry kSupport[] = {
    {BackendId::kCpu, kF32, kCpuHeadDims, 0, "CPU (fp32 accumulation)"},
    {BackendId::kCpu, kF16, kCpuHeadDims, 0, "CPU (fp32 accumulation)"},
    {BackendId::kCpu, kBF16, kCpuHeadDims, 0, "CPU (fp32 accumulation)"},
    {BackendId::kCuda, kF32, kCudaF32HeadDims, 80, "CUDA cores (fp32 FMA)"},
    {BackendId::kCuda, kF16, kTensorCoreHeadDims, 80, "tensor cores (fp32 accumulation)"},
    {BackendId::kCuda, kBF16, kTensorCoreHeadDims, 80, "tensor cores (fp32 accumulation)"},
};
constexpr int kSupportCount = int(sizeof(kSupport) / sizeof(kSupport[0]));

// The entry of (backend, dtype), or null when the backend does not take the dtype.
constexpr const SupportEntry* find_support(BackendId b, DType t) {
  for (int i = 0; i < kSupportCount; ++i)
    if (kSupport[i].backend == b && kSupport[i].dtype == t) return &kSupport[i];
  return nullptr;
}

constexpr bool supports(BackendId b, DType t, int D) {
  return find_support(b, t) != nullptr && find_support(b, t)->headDims.contains(D);
}

}  // namespace monarch
