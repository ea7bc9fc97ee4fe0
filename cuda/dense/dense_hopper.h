// dense_hopper.h — the sm_90a dense kernel (dense_attention_hopper.cu) as seen by the dense dispatch.
#pragma once

#include <cuda_runtime.h>

#include <monarch/monarch.h>

namespace monarch {
namespace cuda {

// True when the Hopper kernel runs this problem: the build holds sm_90a code, the current device is
// compute capability 9.0, 16-bit dtype, head dim 64 or 128, and MONARCH_DENSE_KERNEL is not "mma".
bool dense_hopper_applies(const DenseParams& p);
// Launch it (the tensor maps may still refuse a layout: then the status says why and the caller
// takes the mma.sync kernel).
Status dense_hopper(const DenseParams& p, cudaStream_t s);
// Second outputs of dense_hopper_keys_out.
struct DenseKeysOut {
  Act o;                        // softmax(Q·Kᵀ)·K, rows as p.o's ([B][Nq][H][D] through these strides)
  float* negEntropy = nullptr;  // Σ p log p (= −entropy, ≤ 0; NaN rows stay NaN) of row n of batch b,
  int64_t sB = 0, sH = 0, sRow = 0;  // head h at negEntropy[b·sB + h·sH + n·sRow]; or null
};
// A per-key additive bias: the logit of key n of (b, h) is s·⟨q, k_n⟩ − bias[b·sB + h·sH + n]
// (natural units; +INF masks the key; NaN poisons every row that sees it, as a non-finite logit does).
struct DenseKeyBias {
  const float* bias = nullptr;
  int64_t sB = 0, sH = 0;
};
// The attention with that bias (two consumers, the overlapped schedule; no lse or entropy outputs):
// the final L-step of one-tile problems (l_step_final_dense.cuh). Requires dense_hopper_applies(p); the
// tensor maps may refuse as for dense_hopper.
Status dense_hopper_biased(const DenseParams& p, const DenseKeyBias& kb, cudaStream_t s);
// The same attention, also writing softmax(Q·Kᵀ)·K (the keys as a second value matrix) and the
// row's Σ p log p from the one softmax: VMonarch's first R-step (aL, y and cL) in one pass.
// Requires dense_hopper_applies(p), p.lse and p.entropy null; the tensor maps may refuse as for
// dense_hopper (then nothing was launched).
Status dense_hopper_keys_out(const DenseParams& p, const DenseKeysOut& ko, cudaStream_t s);

}  // namespace cuda
}  // namespace monarch
