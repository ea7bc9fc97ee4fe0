// FLOP counts (2 FLOPs per multiply-add, docs/ALGORITHMS.md §0), one documented formula per method; the
// one FLOP module (attn.flops(), attn.denseFlops() and the benchmark harness all count with it):
//   tiled Monarch (docs/ALGORITHMS.md §B.7, general T): per allowed (query tile, key tile) pair
//     T·4·b1·b2·d·(b1 + b2) + 2·b1·b2²·d;
//   a single tile is MonarchAttention (§A.7): 4·T·N·d·(b + m) + 2·N·b·d with N = m·b (padded);
//   dense attention: 4·d per (query, visible key) pair (QKᵀ and PV);
//   first-frame recomputation (§C.4 a): dense for the h·w frame-0 queries against the keys they see.
import type { Geometry } from './layout';
import { allowedPairs } from './layout';

/** FLOPs of one (query tile, key tile) pair with T alternating steps (§B.7). */
export function pairFlops(b1: number, b2: number, d: number, T: number): number {
  return T * 4 * b1 * b2 * d * (b1 + b2) + 2 * b1 * b2 * b2 * d;
}

/** FLOPs of one tiled-Monarch forward over Aq query tiles and the pairs it computes, all batches/heads. */
export function monarchFlops(g: Geometry, d: number, T: number, batch: number, heads: number, recompute: boolean): number {
  const pairs = allowedPairs(g.tilesPerSequence, g.chunkTiles);
  let f = pairs * pairFlops(g.b1, g.b2, d, T);
  if (recompute) f += 4 * g.frameTokens * (g.chunkTokens > 0 ? g.chunkTokens : g.numTokens) * d;
  return f * batch * heads;
}

/**
 * Dense attention FLOPs 4·d·Σ_queries(visible keys)·B·H. causalChunk > 0: query at position q0 + n sees
 * keys [0, min(Nk, (⌊(q0 + n)/causalChunk⌋ + 1)·causalChunk)).
 */
export function denseFlops(Nq: number, Nk: number, d: number, batch: number, heads: number, causalChunk = 0, q0 = 0): number {
  let pairs = 0;
  if (causalChunk > 0) {
    for (let n = 0; n < Nq; n++) pairs += Math.min(Nk, (Math.floor((q0 + n) / causalChunk) + 1) * causalChunk);
  } else {
    pairs = Nq * Nk;
  }
  return 4 * pairs * d * batch * heads;
}

/** Dense-equivalent FLOPs of a Monarch geometry (the same attention pattern computed exactly). */
export function denseEquivalentFlops(g: Geometry, d: number, batch: number, heads: number): number {
  const N = g.numTokens;
  return denseFlops(N, N, d, batch, heads, g.chunkTokens, 0);
}
