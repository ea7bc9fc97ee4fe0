// Float64 tiled Monarch (docs/ALGORITHMS.md §B.3, §B.4), written from the formulas. Sequences are in tile
// order: token t of tile a, row i ∈ [b1], column j ∈ [b2] is (a·b1 + i)·b2 + j. Every (query tile a,
// key tile f) pair has its own factors; L is normalised jointly over all allowed (f, k).
//
//   init (every pair): aR[a,f,k,j] = Q[a,k,j], cR = 1
//   R-step: R[a,f,k,j,:] = softmax_l(s⟨aR, K[f,k,l]⟩·invT), invT = 1 first, else min(1/cR, 1e4) (1e4 if cR = 0)
//           aL = Σ_l R·K[f,k,l], cL = Σ_l R log R, y = Σ_l R·V[f,k,l]; no valid key in the row ⇒ the
//           candidate (f,k) is dropped from the L softmax (§A.4 fix)
//   L-step: L[a,(f,k),j,i] = softmax_(f,k)(s⟨Q[a,i,j], aL[a,f,j,k]⟩ − cL[a,f,j,k]) over allowed pairs
//           not last: L zeroed for invalid queries; aR[a,f,k,j] = Σ_i L·Q[a,i,j], cR = Σ_i L
//           last: Z[a,i,j] = Σ_(f,k) L·y
//   block-causal (§B.4): pair (a, f) allowed iff ⌊f/C⌋ ≤ ⌊(qTile0 + a)/C⌋; other pairs are skipped.
import { softmaxRow } from './dense';

export interface TiledGeometry {
  b1: number;
  b2: number;
  /** Query tiles. */
  Aq: number;
  /** Key tiles. */
  Fk: number;
}

export interface TiledRefOptions {
  numIters?: number;
  /** Default 1/√D. */
  scale?: number;
  /** [Fk·b1·b2], 1 = valid key. */
  keyValid?: Uint8Array;
  /** [Aq·b1·b2], 1 = valid query (non-final L-step). */
  queryValid?: Uint8Array;
  /** C > 0: block-causal over chunks of C tiles. */
  causalTiles?: number;
  /** Global index of query tile 0 (KV-cache decoding). */
  qTile0?: number;
  maxInvTemp?: number;
}

/** One (batch, head): Q [Aq·b1·b2][D], K [Fk·b1·b2][D], V [Fk·b1·b2][Dv] → Z [Aq·b1·b2][Dv]. */
export function tiledHead(
  Q: Float64Array, K: Float64Array, V: Float64Array, g: TiledGeometry, D: number, Dv: number, o: TiledRefOptions = {},
): Float64Array {
  const { b1, b2, Aq, Fk } = g;
  const s = o.scale ?? 1 / Math.sqrt(D);
  const T = o.numIters ?? 1;
  const C = o.causalTiles ?? 0, qTile0 = o.qTile0 ?? 0;
  const maxInvTemp = o.maxInvTemp ?? 1e4;
  const allowed = (a: number, f: number): boolean => C <= 0 || Math.floor(f / C) <= Math.floor((qTile0 + a) / C);
  const tok = (tile: number, i: number, j: number): number => (tile * b1 + i) * b2 + j;
  const dot = (x: Float64Array, xo: number, y: Float64Array, yo: number): number => {
    let acc = 0;
    for (let d = 0; d < D; d++) acc += x[xo + d] * y[yo + d];
    return acc;
  };
  const kValid = (f: number, k: number, l: number): boolean => !o.keyValid || o.keyValid[tok(f, k, l)] !== 0;
  const qValid = (a: number, i: number, j: number): boolean => !o.queryValid || o.queryValid[tok(a, i, j)] !== 0;
  const rowEmpty = (f: number, k: number): boolean => {
    for (let l = 0; l < b2; l++) if (kValid(f, k, l)) return false;
    return true;
  };

  // Per pair (a, f): arrays indexed by pair p = a·Fk + f.
  const P = Aq * Fk;
  const nR = b1 * b2; // (k, j) entries per pair
  let aR = new Float64Array(P * nR * D); // [p][k][j][D]
  let cR = new Float64Array(P * nR).fill(1);
  for (let a = 0; a < Aq; a++)
    for (let f = 0; f < Fk; f++)
      for (let k = 0; k < b1; k++)
        for (let j = 0; j < b2; j++)
          aR.set(Q.subarray(tok(a, k, j) * D, tok(a, k, j) * D + D), ((a * Fk + f) * nR + k * b2 + j) * D);
  const aL = new Float64Array(P * nR * D); // [p][j][k][D]
  const cL = new Float64Array(P * nR); // [p][j][k]
  const y = new Float64Array(P * nR * Dv); // [p][j][k][Dv]
  const Z = new Float64Array(Aq * b1 * b2 * Dv);
  const x = new Float64Array(b2);
  for (let t = 0; t < T; t++) {
    const first = t === 0, last = t === T - 1;
    for (let a = 0; a < Aq; a++)
      for (let f = 0; f < Fk; f++) {
        if (!allowed(a, f)) continue;
        const p = a * Fk + f;
        for (let k = 0; k < b1; k++)
          for (let j = 0; j < b2; j++) {
            const c = cR[p * nR + k * b2 + j];
            const invT = first ? 1 : c > 0 ? Math.min(1 / c, maxInvTemp) : maxInvTemp;
            for (let l = 0; l < b2; l++)
              x[l] = kValid(f, k, l) ? s * dot(aR, (p * nR + k * b2 + j) * D, K, tok(f, k, l) * D) * invT : -Infinity;
            const r = softmaxRow(x);
            const e = p * nR + j * b1 + k;
            let negEnt = 0;
            for (let d = 0; d < D; d++) aL[e * D + d] = 0;
            for (let d = 0; d < Dv; d++) y[e * Dv + d] = 0;
            for (let l = 0; l < b2; l++) {
              const w = r.p[l];
              if (w === 0) continue;
              negEnt += w * Math.log(w);
              for (let d = 0; d < D; d++) aL[e * D + d] += w * K[tok(f, k, l) * D + d];
              for (let d = 0; d < Dv; d++) y[e * Dv + d] += w * V[tok(f, k, l) * Dv + d];
            }
            cL[e] = negEnt;
          }
      }
    const aRn = new Float64Array(P * nR * D), cRn = new Float64Array(P * nR);
    const u = new Float64Array(Fk * b1);
    for (let a = 0; a < Aq; a++)
      for (let i = 0; i < b1; i++)
        for (let j = 0; j < b2; j++) {
          const qo = tok(a, i, j) * D;
          for (let f = 0; f < Fk; f++)
            for (let k = 0; k < b1; k++) {
              const e = (a * Fk + f) * nR + j * b1 + k;
              u[f * b1 + k] = !allowed(a, f) || rowEmpty(f, k) ? -Infinity : s * dot(Q, qo, aL, e * D) - cL[e];
            }
          const r = softmaxRow(u);
          if (last) {
            for (let f = 0; f < Fk; f++)
              for (let k = 0; k < b1; k++) {
                const w = r.p[f * b1 + k];
                if (w === 0) continue;
                const e = (a * Fk + f) * nR + j * b1 + k;
                for (let d = 0; d < Dv; d++) Z[tok(a, i, j) * Dv + d] += w * y[e * Dv + d];
              }
          } else if (qValid(a, i, j)) {
            for (let f = 0; f < Fk; f++)
              for (let k = 0; k < b1; k++) {
                const w = r.p[f * b1 + k];
                const e = (a * Fk + f) * nR + k * b2 + j;
                cRn[e] += w;
                for (let d = 0; d < D; d++) aRn[e * D + d] += w * Q[qo + d];
              }
          }
        }
    if (!last) {
      aR = aRn;
      cR = cRn;
    }
  }
  return Z;
}
