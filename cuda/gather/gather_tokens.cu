// gather_tokens.cu — dst token t = src token map[t] (map[t] < 0: zeros), for every batch and head.
// Used to pad (§A.4) and to reorder tokens into tile order (§B.2). The map is a device pointer.
// One CTA per (destination token, batch); its threads copy the H rows of D elements with the widest
// access (16, 4 or 2 bytes) that every pointer and stride allows.
#include <cuda_runtime.h>

#include <string>

#include <monarch/monarch_cuda.h>

namespace monarch {
namespace cuda {
namespace {

constexpr int kThreads = 128;

template <typename V>
__global__ void __launch_bounds__(kThreads) gather_tokens_kernel(GatherParams p, int esize) {
  const int t = blockIdx.x, b = blockIdx.y;
  const int src = p.map[t];
  const int vecPerRow = p.D * esize / int(sizeof(V));
  const int64_t eB = int64_t(esize);  // strides are in elements; address in bytes
  const char* sbase = static_cast<const char*>(p.src.data) + (int64_t(b) * p.src.sB + int64_t(src) * p.src.sS) * eB;
  char* dbase = static_cast<char*>(p.dst.data) + (int64_t(b) * p.dst.sB + int64_t(t) * p.dst.sS) * eB;
  for (int idx = threadIdx.x; idx < p.H * vecPerRow; idx += kThreads) {
    const int h = idx / vecPerRow, v = idx - h * vecPerRow;
    V val{};
    if (src >= 0) val = reinterpret_cast<const V*>(sbase + int64_t(h) * p.src.sH * eB)[v];
    reinterpret_cast<V*>(dbase + int64_t(h) * p.dst.sH * eB)[v] = val;
  }
}

bool fits(const GatherParams& p, int64_t esize, int64_t width) {
  auto ok = [&](int64_t x) { return (x * esize) % width == 0; };
  return reinterpret_cast<uintptr_t>(p.src.data) % width == 0 &&
         reinterpret_cast<uintptr_t>(p.dst.data) % width == 0 && ok(p.D) && ok(p.src.sB) && ok(p.src.sS) &&
         ok(p.src.sH) && ok(p.dst.sB) && ok(p.dst.sS) && ok(p.dst.sH);
}

}  // namespace

Status gather_tokens(const GatherParams& p, Stream stream) {
  if (p.B <= 0 || p.H <= 0 || p.D <= 0 || p.nDst <= 0) return Status::Ok();
  if (p.B > 65535) return Status::Error("gather_tokens_kernel: B must be at most 65535 (grid limit)");
  if (!p.map) return Status::Error("gather_tokens_kernel: map is null");
  cudaStream_t s = static_cast<cudaStream_t>(stream);
  const int esize = int(dtype_size(p.dtype));
  dim3 grid(unsigned(p.nDst), unsigned(p.B));
  if (fits(p, esize, 16))
    gather_tokens_kernel<uint4><<<grid, kThreads, 0, s>>>(p, esize);
  else if (fits(p, esize, 4))
    gather_tokens_kernel<uint32_t><<<grid, kThreads, 0, s>>>(p, esize);
  else
    gather_tokens_kernel<uint16_t><<<grid, kThreads, 0, s>>>(p, esize);
  cudaError_t e = cudaGetLastError();
  if (e != cudaSuccess) return Status::Error(std::string("gather_tokens_kernel: ") + cudaGetErrorString(e));
  return Status::Ok();
}

}  // namespace cuda
}  // namespace monarch
