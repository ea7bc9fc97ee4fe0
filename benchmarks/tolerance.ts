// Tolerances on the relative L2 error ‖out − ref‖/‖ref‖ against a float32 reference on the same
// (dtype-rounded) inputs. Half-precision outputs alone carry ~2^-9 (fp16) / 2^-8 (bf16) relative
// rounding, and Monarch keeps its intermediates (aL, y) in the input dtype, adding a few such roundings;
// the starting points are docs/ALGORITHMS.md §E's (MA fp16 1e-2, bf16 5e-2 vs an fp32 reference). float32
// differs from the reference only by summation order (~1e-6), so 1e-4 leaves room for long sums.
import type { DType } from '../lib/types';

export const REL_L2_TOL: Record<DType, number> = { float32: 1e-4, float16: 1e-2, bfloat16: 5e-2 };

/** Sync vs async of the same backend: same kernels, same order ⇒ identical up to float32 reassociation. */
export const SAME_PATH_TOL = 1e-6;

/**
 * Two paths of the same algorithm in the same dtype that differ only in tiling or loop order (single
 * tile vs sequence, KV-cache decode vs one-shot, one chunk vs bidirectional): float32 agrees to
 * summation order; half precision may round a few intermediates/outputs one ulp differently
 * (2^-8 = 3.9e-3 relative for bf16, 2^-11 = 4.9e-4 for fp16), which moves the relative L2 far less.
 */
export const EQUIV_TOL: Record<DType, number> = { float32: 1e-5, float16: 1e-3, bfloat16: 5e-3 };
