// FLOP formulas (2 FLOPs per multiply-add), docs/ALGORITHMS.md §0, §A.7, §B.7, §C.5. The library's
// attn.flops() is the authority for full forwards; these are used for the KV-cache step (which
// attn.flops() does not describe), for torch/dense rows, and to cross-check attn.flops().

/** Dense attention: QKᵀ and PV, 4·Nq·Nk·d per (batch, head). */
export function denseFlops(batch: number, heads: number, nq: number, nk: number, d: number): number {
  return 4 * batch * heads * nq * nk * d;
}

/**
 * One (query tile, key tile) pair of tiled Monarch (§B.7): T·4·b1·b2·d·(b1 + b2) + 2·b1·b2²·d.
 * Sequence MonarchAttention (§A.7) is the single-tile case with b1 = m, b2 = b; VMonarch (§C.5) is
 * b1 = frames per tile, b2 = h·w.
 */
export function tilePairFlops(b1: number, b2: number, d: number, T: number): number {
  return T * 4 * b1 * b2 * d * (b1 + b2) + 2 * b1 * b2 * b2 * d;
}

/** Tiled Monarch over `pairs` allowed (query tile, key tile) pairs, all batches and heads. */
export function monarchFlops(batch: number, heads: number, pairs: number, b1: number, b2: number, d: number, T: number): number {
  return batch * heads * pairs * tilePairFlops(b1, b2, d, T);
}
