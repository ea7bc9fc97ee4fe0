// fp32_stages.h — the float32 path of the CUDA stages (CUDA cores, fp32 FMA; any head dim 1..128).
// Same semantics as monarch::cpu (monarch.h); monarch::cuda::r_step / l_step / dense route float32
// here and fp16 / bf16 to the tensor-core kernels.
#pragma once

#include <cuda_runtime.h>

#include <monarch/monarch.h>

namespace monarch {
namespace cuda {
namespace fp32 {

Status dense(const DenseParams& p, cudaStream_t s);
Status r_step(const MonarchParams& p, bool first, bool last, cudaStream_t s);
Status l_step(const MonarchParams& p, bool final, cudaStream_t s);

}  // namespace fp32
}  // namespace cuda
}  // namespace monarch
