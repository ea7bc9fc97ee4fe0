// Tolerances and why they have their values. Every comparison against the float64 reference is made on
// inputs already rounded to the dtype under test, so only the package's own arithmetic is judged.

/**
 * fp32 package vs float64 reference. fp32 unit roundoff is 2^-24 ≈ 6e-8. Dot products of length D ≤ 16 and
 * softmax sums of ≤ ~50 terms give relative errors ≲ 1e-6 per stage; a logit error δ becomes a relative
 * probability error δ, logits here are ≲ 10 in size, and T ≤ 3 passes with R temperatures ≲ 3 compound it
 * to ≲ 1e-5 on outputs of size ≲ 4 (convex combinations of N(0,1) values). 1e-4 leaves a 10× margin while
 * every real mistake (scale, mask, padding side, tile order, one step too few) gives errors ≥ 1e-2.
 */
export const FP32 = { atol: 1e-4, rtol: 1e-4 };

/**
 * fp32 package vs fp32 package on algebraically equal problems whose summation order may differ
 * (permuted inputs, other tiling of the same math): a few fp32 roundings of O(1) values, ≲ 1e-6.
 */
export const FP32_REORDER = { atol: 1e-5, rtol: 1e-5 };

/**
 * bfloat16 storage (8 significant bits): every stored value carries a relative rounding error ≤ u = 2^-9.
 * The MonarchAttention path stores aR, aL, y and the output in bf16 (§A.5). Output rounding alone is
 * u·|z| ≲ 2^-9·3; an aL error of u moves an L logit s⟨q,aL⟩ of size ≲ 4 by ≲ 4u, a relative error of that
 * size in the L weights multiplying values of size ≲ 3 — so ~(3 + a few)·u ≈ 0.01 is the expected scale,
 * independent of T (each pass re-derives its factors from exact q, k). Measured on the CPU backend: worst
 * 0.013 (≈ 6.8u) over 10 seeds × T = 1..3 at N = 21, D = 16. atol = 2^-5 = 16u leaves 2.3× margin; a wrong
 * algorithm (missing pass, scale, padding side) errs by ≥ 0.1 here.
 */
export const BF16 = { atol: 2 ** -5, rtol: 2 ** -7 };

/** float16 (11 significant bits, u = 2^-12): the same budget. Measured worst 1.8e-3 (≈ 7.5u); atol 2^-8 = 16u. */
export const FP16 = { atol: 2 ** -8, rtol: 2 ** -10 };

/**
 * Dense attention in bf16/fp16: fp32 accumulation, only the output is rounded (u·|out| ≲ 3u) plus, on GPUs,
 * P rounded to the input dtype before P·V (another ≲ u·max|v|). Measured CPU worst: 0.0077 = 3.9u (bf16),
 * 9.4e-4 = 3.8u (fp16); atol = 8u.
 */
export const DENSE_BF16 = { atol: 2 ** -6, rtol: 2 ** -8 };
export const DENSE_FP16 = { atol: 2 ** -9, rtol: 2 ** -11 };
