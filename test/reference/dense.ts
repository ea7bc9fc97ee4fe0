// Float64 dense softmax attention, two passes per row (max, then sums), written from the definition
// (docs/ALGORITHMS.md §0): out = softmax(s·q·kᵀ)·v, lse = log Σ exp(s⟨q,k⟩), entropy = −Σ p log p.
import { Act, idx } from '../helpers/act';

export interface DenseRefOptions {
  /** Softmax scale, default 1/√D. */
  scale?: number;
  /** [B][Nk], 1 = keep. */
  keyMask?: Uint8Array;
  /** Block-causal chunk: query at position p = qOffset + n sees keys [0, (⌊p/c⌋+1)·c). */
  causalChunk?: number;
  /** Default Nk − Nq. */
  qOffset?: number;
}

export interface DenseRef {
  /** BSHD [B][Nq][H][Dv]. */
  out: Float64Array;
  /** [B][H][Nq]; −Infinity for a row with no visible key. */
  lse: Float64Array;
  /** [B][H][Nq]; 0 for a row with no visible key. */
  entropy: Float64Array;
}

/** Row logits x (−Infinity = not visible) → probabilities, lse, entropy (two-pass). */
export function softmaxRow(x: Float64Array): { p: Float64Array; lse: number; entropy: number } {
  let mx = -Infinity;
  for (const v of x) if (v > mx) mx = v;
  const p = new Float64Array(x.length);
  if (mx === -Infinity) return { p, lse: -Infinity, entropy: 0 };
  let z = 0;
  for (let i = 0; i < x.length; i++) {
    p[i] = x[i] === -Infinity ? 0 : Math.exp(x[i] - mx);
    z += p[i];
  }
  let h = 0;
  for (let i = 0; i < x.length; i++) {
    p[i] /= z;
    if (p[i] > 0) h -= p[i] * Math.log(p[i]);
  }
  return { p, lse: mx + Math.log(z), entropy: h };
}

export function denseRef(q: Act, k: Act, v: Act, o: DenseRefOptions = {}): DenseRef {
  const { B, H, D } = q;
  const Nq = q.S, Nk = k.S, Dv = v.D;
  const s = o.scale ?? 1 / Math.sqrt(D);
  const q0 = o.qOffset ?? Nk - Nq;
  const out = new Float64Array(B * Nq * H * Dv);
  const lse = new Float64Array(B * H * Nq);
  const entropy = new Float64Array(B * H * Nq);
  const x = new Float64Array(Nk);
  for (let b = 0; b < B; b++)
    for (let h = 0; h < H; h++)
      for (let n = 0; n < Nq; n++) {
        const limit = o.causalChunk ? (Math.floor((q0 + n) / o.causalChunk) + 1) * o.causalChunk : Nk;
        for (let t = 0; t < Nk; t++) {
          const visible = t < limit && (!o.keyMask || o.keyMask[b * Nk + t] !== 0);
          if (!visible) {
            x[t] = -Infinity;
            continue;
          }
          let dot = 0;
          for (let d = 0; d < D; d++) dot += q.x[idx(q, b, n, h, d)] * k.x[idx(k, b, t, h, d)];
          x[t] = s * dot;
        }
        const r = softmaxRow(x);
        lse[(b * H + h) * Nq + n] = r.lse;
        entropy[(b * H + h) * Nq + n] = r.entropy;
        for (let t = 0; t < Nk; t++) {
          if (r.p[t] === 0) continue;
          for (let d = 0; d < Dv; d++) out[((b * Nq + n) * H + h) * Dv + d] += r.p[t] * v.x[idx(v, b, t, h, d)];
        }
      }
  return { out, lse, entropy };
}
