// tma_map.cu — tensor-map encoding for the Hopper kernels (tma_map.h).
#include "tma_map.h"

#include <cuda_runtime.h>

#include <algorithm>
#include <array>
#include <cstdio>
#include <cstdlib>
#include <mutex>
#include <string>

namespace monarch {
namespace cuda {
namespace tma {
namespace {

using EncodeFn = CUresult (*)(CUtensorMap*, CUtensorMapDataType, cuuint32_t, void*, const cuuint64_t*,
                              const cuuint64_t*, const cuuint32_t*, const cuuint32_t*, CUtensorMapInterleave,
                              CUtensorMapSwizzle, CUtensorMapL2promotion, CUtensorMapFloatOOBfill);

EncodeFn encoder() {
  static EncodeFn fn = nullptr;
  static std::once_flag once;
  std::call_once(once, [] {
    void* p = nullptr;
    cudaDriverEntryPointQueryResult q = cudaDriverEntryPointSymbolNotFound;
    // 12000: the ABI of cuTensorMapEncodeTiled since CUDA 12.0.
    if (cudaGetDriverEntryPointByVersion("cuTensorMapEncodeTiled", &p, 12000, cudaEnableDefault, &q) ==
            cudaSuccess &&
        q == cudaDriverEntryPointSuccess)
      fn = reinterpret_cast<EncodeFn>(p);
    cudaGetLastError();  // leave no sticky error behind
  });
  return fn;
}

// The build holds sm_90a code (the architecture list CMake compiled for names 90a).
constexpr bool build_has_sm90a() {
#ifdef MONARCH_CUDA_ARCHS
  const char* s = MONARCH_CUDA_ARCHS;
  for (int i = 0; s[i] && s[i + 1] && s[i + 2]; ++i)
    if (s[i] == '9' && s[i + 1] == '0' && s[i + 2] == 'a') return true;
#endif
  return false;
}

// MONARCH_PREVIEW_KERNELS parsed: −1 (the default rule), 0 or 1 per StepKernel.
constexpr int kStepKernels = 6;
using PreviewChoice = std::array<int, kStepKernels>;
static_assert(static_cast<int>(StepKernel::kLDense) == kStepKernels - 1, "one name per StepKernel");
PreviewChoice parse_preview_choice(const char* env) {
  const std::string v = env ? env : "";
  PreviewChoice c;
  if (v.empty()) {
    c.fill(-1);
    return c;
  }
  if (v == "1" || v == "0") {
    c.fill(v == "1" ? 1 : 0);
    return c;
  }
  // (the order of StepKernel)
  static const char* const names[kStepKernels] = {"r-first", "r-later", "l-final", "l-columns", "r-dense", "l-dense"};
  c.fill(0);
  for (size_t at = 0; at <= v.size();) {
    const size_t end = std::min(v.find(',', at), v.size());
    std::string name = v.substr(at, end - at);
    name.erase(0, name.find_first_not_of(" \t"));
    name.erase(name.find_last_not_of(" \t") + 1);
    at = end + 1;
    if (name.empty()) continue;  // "r-first," or "r-first, l-final"
    const auto hit = std::find_if(std::begin(names), std::end(names), [&](const char* n) { return name == n; });
    if (hit == std::end(names)) {
      std::fprintf(stderr, "monarch-attention: MONARCH_PREVIEW_KERNELS='%s': unknown kernel '%s' (known: r-first, "
                   "r-later, l-final, l-columns, r-dense, l-dense, or 1 / 0); every selectable sm_90a step kernel is off\n",
                   v.c_str(), name.c_str());
      c.fill(0);
      return c;
    }
    c[hit - std::begin(names)] = 1;
  }
  return c;
}

}  // namespace

bool hopper_kernels_usable() {
  if (!build_has_sm90a()) return false;
  int dev = 0, major = 0, minor = 0;
  if (cudaGetDevice(&dev) != cudaSuccess || cudaDeviceGetAttribute(&major, cudaDevAttrComputeCapabilityMajor, dev) != cudaSuccess ||
      cudaDeviceGetAttribute(&minor, cudaDevAttrComputeCapabilityMinor, dev) != cudaSuccess) {
    cudaGetLastError();
    return false;
  }
  return major == 9 && minor == 0;
}

bool env_is(const char* name, const char* value) {
  const char* e = std::getenv(name);
  return e != nullptr && std::string(e) == value;
}

int preview_choice(StepKernel k) {
  static const PreviewChoice choice = parse_preview_choice(std::getenv("MONARCH_PREVIEW_KERNELS"));
  return choice[static_cast<int>(k)];
}

bool monarch_hopper_enabled() {
  static const bool on = !env_is("MONARCH_HOPPER_KERNELS", "0");
  return on;
}

bool hopper_step_runs(DType dtype, int D, StepKernel k, bool byDefault) {
  if (!((dtype == kF16 || dtype == kBF16) && (D == 64 || D == 128) && monarch_hopper_enabled())) return false;
  const int c = preview_choice(k);
  return (c < 0 ? byDefault : c == 1) && hopper_kernels_usable();
}

bool preview_strict() {
  static const bool on = env_is("MONARCH_PREVIEW_STRICT", "1");
  return on;
}

bool hopper_status_final(const Status& s) {
  return s.ok || s.message.find("TMA tensor map") == std::string::npos || preview_strict();
}

int64_t hopper_grid(int64_t items, int sms) {
  static const int64_t cap = [] {
    const char* e = std::getenv("MONARCH_HOPPER_MAX_GRID");
    const long long v = e ? std::atoll(e) : 0;
    return v > 0 ? int64_t(v) : int64_t(0);
  }();
  int64_t g = std::min<int64_t>(items, sms);
  if (cap > 0) g = std::min(g, cap);
  return std::max<int64_t>(g, 1);
}

Status encode_rows(CUtensorMap* map, const Act& a, DType dtype, int B, int S, int H, int D, int boxRows) {
  if (dtype != kF16 && dtype != kBF16) return Status::Error("TMA tensor maps are built for 16-bit dtypes only");
  if (B < 1 || S < 1 || H < 1 || D < 64 || D % 64 != 0 || boxRows < 1 || boxRows > 256)
    return Status::Error("TMA tensor map: sizes out of range");
  if ((reinterpret_cast<uintptr_t>(a.data) & 15u) != 0) return Status::Error("TMA tensor map: base not 16-byte aligned");
  const uint64_t es = 2;
  // A dimension of extent 1 is never stepped: give it a legal stride whatever the caller's is.
  const uint64_t sS = uint64_t(a.sS) * es;
  const uint64_t sH = H > 1 ? uint64_t(a.sH) * es : 16;
  const uint64_t sB = B > 1 ? uint64_t(a.sB) * es : 16;
  const uint64_t strides[3] = {S > 1 ? sS : 16, sH, sB};
  for (uint64_t s : strides)
    if (s == 0 || s % 16 != 0 || s >= (uint64_t(1) << 40))
      return Status::Error("TMA tensor map: strides must be positive multiples of 16 bytes");
  EncodeFn fn = encoder();
  if (!fn) return Status::Error("TMA tensor map: the driver has no cuTensorMapEncodeTiled");
  const cuuint64_t dims[4] = {cuuint64_t(D), cuuint64_t(S), cuuint64_t(H), cuuint64_t(B)};
  const cuuint64_t gstr[3] = {strides[0], strides[1], strides[2]};
  const cuuint32_t box[4] = {64, cuuint32_t(boxRows), 1, 1};
  const cuuint32_t estr[4] = {1, 1, 1, 1};
  const CUresult r = fn(map, dtype == kBF16 ? CU_TENSOR_MAP_DATA_TYPE_BFLOAT16 : CU_TENSOR_MAP_DATA_TYPE_FLOAT16, 4,
                        a.data, dims, gstr, box, estr, CU_TENSOR_MAP_INTERLEAVE_NONE, CU_TENSOR_MAP_SWIZZLE_128B,
                        CU_TENSOR_MAP_L2_PROMOTION_L2_256B, CU_TENSOR_MAP_FLOAT_OOB_FILL_NONE);
  if (r != CUDA_SUCCESS) return Status::Error("TMA tensor map: cuTensorMapEncodeTiled failed (" + std::to_string(int(r)) + ")");
  return Status::Ok();
}

Status encode_tile_rows(CUtensorMap* map, const Act& a, DType dtype, int B, int rows, int b2, int H, int D,
                        int boxRows) {
  if (dtype != kF16 && dtype != kBF16) return Status::Error("TMA tensor maps are built for 16-bit dtypes only");
  if (B < 1 || rows < 1 || b2 < 1 || H < 1 || D < 64 || D % 64 != 0 || boxRows < 1 || boxRows > 256)
    return Status::Error("TMA tensor map: sizes out of range");
  if ((reinterpret_cast<uintptr_t>(a.data) & 15u) != 0) return Status::Error("TMA tensor map: base not 16-byte aligned");
  const uint64_t es = 2;
  const uint64_t sS = uint64_t(a.sS) * es;
  const uint64_t sRow = sS * uint64_t(b2);
  const uint64_t strides[4] = {b2 > 1 ? sS : 16, rows > 1 ? sRow : 16, H > 1 ? uint64_t(a.sH) * es : 16,
                               B > 1 ? uint64_t(a.sB) * es : 16};
  for (uint64_t s : strides)
    if (s == 0 || s % 16 != 0 || s >= (uint64_t(1) << 40))
      return Status::Error("TMA tensor map: strides must be positive multiples of 16 bytes");
  EncodeFn fn = encoder();
  if (!fn) return Status::Error("TMA tensor map: the driver has no cuTensorMapEncodeTiled");
  const cuuint64_t dims[5] = {cuuint64_t(D), cuuint64_t(b2), cuuint64_t(rows), cuuint64_t(H), cuuint64_t(B)};
  const cuuint64_t gstr[4] = {strides[0], strides[1], strides[2], strides[3]};
  const cuuint32_t box[5] = {64, cuuint32_t(boxRows), 1, 1, 1};
  const cuuint32_t estr[5] = {1, 1, 1, 1, 1};
  const CUresult r = fn(map, dtype == kBF16 ? CU_TENSOR_MAP_DATA_TYPE_BFLOAT16 : CU_TENSOR_MAP_DATA_TYPE_FLOAT16, 5,
                        a.data, dims, gstr, box, estr, CU_TENSOR_MAP_INTERLEAVE_NONE, CU_TENSOR_MAP_SWIZZLE_128B,
                        CU_TENSOR_MAP_L2_PROMOTION_L2_256B, CU_TENSOR_MAP_FLOAT_OOB_FILL_NONE);
  if (r != CUDA_SUCCESS) return Status::Error("TMA tensor map: cuTensorMapEncodeTiled failed (" + std::to_string(int(r)) + ")");
  return Status::Ok();
}

Status encode_box(CUtensorMap* map, const void* base, DType dtype, int rank, const uint64_t* dims,
                  const uint64_t* strides, const uint32_t* box) {
  if (dtype != kF16 && dtype != kBF16) return Status::Error("TMA tensor maps are built for 16-bit dtypes only");
  if (rank < 1 || rank > 5 || dims[0] % 64 != 0 || box[0] != 64) return Status::Error("TMA tensor map: sizes out of range");
  if ((reinterpret_cast<uintptr_t>(base) & 15u) != 0) return Status::Error("TMA tensor map: base not 16-byte aligned");
  cuuint64_t d[5];
  cuuint64_t st[4];
  cuuint32_t bx[5], es[5];
  for (int i = 0; i < rank; ++i) {
    if (dims[i] < 1 || dims[i] >= (uint64_t(1) << 32) || box[i] < 1 || box[i] > 256)
      return Status::Error("TMA tensor map: sizes out of range");
    d[i] = dims[i], bx[i] = box[i], es[i] = 1;
  }
  for (int i = 0; i + 1 < rank; ++i) {
    // A dimension of extent 1 is never stepped: give it a legal stride whatever the caller's is.
    const uint64_t s = dims[i + 1] > 1 ? strides[i] : 16;
    if (s == 0 || s % 16 != 0 || s >= (uint64_t(1) << 40))
      return Status::Error("TMA tensor map: strides must be positive multiples of 16 bytes");
    st[i] = s;
  }
  EncodeFn fn = encoder();
  if (!fn) return Status::Error("TMA tensor map: the driver has no cuTensorMapEncodeTiled");
  const CUresult r = fn(map, dtype == kBF16 ? CU_TENSOR_MAP_DATA_TYPE_BFLOAT16 : CU_TENSOR_MAP_DATA_TYPE_FLOAT16,
                        cuuint32_t(rank), const_cast<void*>(base), d, st, bx, es, CU_TENSOR_MAP_INTERLEAVE_NONE,
                        CU_TENSOR_MAP_SWIZZLE_128B, CU_TENSOR_MAP_L2_PROMOTION_L2_256B, CU_TENSOR_MAP_FLOAT_OOB_FILL_NONE);
  if (r != CUDA_SUCCESS) return Status::Error("TMA tensor map: cuTensorMapEncodeTiled failed (" + std::to_string(int(r)) + ")");
  return Status::Ok();
}

}  // namespace tma
}  // namespace cuda
}  // namespace monarch
