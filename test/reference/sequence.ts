// Float64 MonarchAttention on a 1-D sequence, written from docs/ALGORITHMS.md §A in its own notation
// (block size b, m = ⌈N/b⌉ blocks, token (ℓ, j) = ℓ·b + j; factors R_k[j,i], L_j[ℓ,k]); deliberately
// independent of the tiled formulation in tiled.ts, so that "single tile ≡ MA" (E10) checks both.
//
//   aR ← Q as [m][b][d], cR ← 1                                             (§A.3, L = I)
//   T times:  R_k[j,:] = softmax_i(s⟨aR[k,j], k_(k,i)⟩·min(1/cR, 1e4))      (masked keys −∞; 1/cR = 1 first)
//             aL[j,k] = s·Σ_i R·k,  cL[j,k] = Σ_i R log R,  (last) y[k,j] = Σ_i R·v
//             L_j[ℓ,:] = softmax_k(⟨q_(ℓ,j), aL[j,k]⟩ − cL[j,k])           (block without valid key: −∞, §A.4 fix)
//             not last: zero L rows of invalid queries; aR[k,j] = Σ_ℓ L·q, cR[k,j] = Σ_ℓ L
//             last: z_(ℓ,j) = Σ_k L_j[ℓ,k]·y[k,j]
import { Act, act, headMatrix, setHeadMatrix } from '../helpers/act';
import { softmaxRow } from './dense';

export interface SequenceRefOptions {
  blockSize: number;
  /** Default 'post'. */
  padding?: 'pre' | 'post';
  /** T ≥ 1, default 1. */
  numIters?: number;
  /** Default 1/√D. */
  scale?: number;
  /** [B][N], 1 = keep (key-padding mask; also masks that query in non-final L-steps). */
  keyMask?: Uint8Array;
  /** Clamp of the R temperature 1/cR for T ≥ 2 (§A.5). Default 1e4. */
  maxInvTemp?: number;
  /** Reproduce the repo's pitfall (§A.4): an empty key block gets L logit 0 instead of −∞. For E14. */
  noEmptyBlockFix?: boolean;
}

/** Result for one (batch, head): output and the last factors, on the padded sequence of Np = m·b tokens. */
export interface SequenceHeadResult {
  /** [N][Dv] outputs of the real tokens. */
  z: Float64Array;
  m: number;
  b: number;
  Np: number;
  /** Padded position of real token n. */
  pos: (n: number) => number;
  /** R[(k·b + j)·b + i] = R_k[j,i] (last R-step). */
  R: Float64Array;
  /** L[(j·m + ℓ)·m + k] = L_j[ℓ,k] (last L-step). */
  L: Float64Array;
  /** Padded inputs [Np][D] and validity [Np]. */
  Qp: Float64Array;
  Kp: Float64Array;
  valid: Uint8Array;
}

export function sequenceHead(
  Q: Float64Array, K: Float64Array, V: Float64Array, N: number, D: number, Dv: number,
  o: SequenceRefOptions, mask?: Uint8Array,
): SequenceHeadResult {
  const b = o.blockSize;
  const m = Math.ceil(N / b), Np = m * b, pad = Np - N;
  const s = o.scale ?? 1 / Math.sqrt(D);
  const T = o.numIters ?? 1;
  const maxInvTemp = o.maxInvTemp ?? 1e4;
  const pos = (n: number): number => (o.padding === 'pre' ? n + pad : n);
  const Qp = new Float64Array(Np * D), Kp = new Float64Array(Np * D), Vp = new Float64Array(Np * Dv);
  const valid = new Uint8Array(Np);
  for (let n = 0; n < N; n++) {
    const p = pos(n);
    Qp.set(Q.subarray(n * D, (n + 1) * D), p * D);
    Kp.set(K.subarray(n * D, (n + 1) * D), p * D);
    Vp.set(V.subarray(n * Dv, (n + 1) * Dv), p * Dv);
    valid[p] = !mask || mask[n] ? 1 : 0;
  }
  const emptyBlock = new Uint8Array(m);
  for (let k = 0; k < m; k++) {
    let any = false;
    for (let i = 0; i < b; i++) any = any || valid[k * b + i] === 1;
    emptyBlock[k] = any ? 0 : 1;
  }
  const dot = (x: Float64Array, xo: number, y: Float64Array, yo: number): number => {
    let acc = 0;
    for (let d = 0; d < D; d++) acc += x[xo + d] * y[yo + d];
    return acc;
  };

  // aR[(k·b + j)·D], cR[k·b + j]
  let aR = Float64Array.from(Qp);
  let cR = new Float64Array(Np).fill(1);
  const R = new Float64Array(m * b * b);
  const L = new Float64Array(b * m * m);
  const aL = new Float64Array(b * m * D), cL = new Float64Array(b * m);
  const y = new Float64Array(m * b * Dv);
  const z = new Float64Array(Np * Dv);
  const x = new Float64Array(b), u = new Float64Array(m);
  for (let t = 0; t < T; t++) {
    const first = t === 0, last = t === T - 1;
    // R-step (§A.2)
    for (let k = 0; k < m; k++)
      for (let j = 0; j < b; j++) {
        const c = cR[k * b + j];
        const invT = first ? 1 : c > 0 ? Math.min(1 / c, maxInvTemp) : maxInvTemp;
        for (let i = 0; i < b; i++)
          x[i] = valid[k * b + i] ? s * dot(aR, (k * b + j) * D, Kp, (k * b + i) * D) * invT : -Infinity;
        const r = softmaxRow(x);
        R.set(r.p, (k * b + j) * b);
        let negEnt = 0;
        const al = (j * m + k) * D;
        for (let d = 0; d < D; d++) aL[al + d] = 0;
        for (let i = 0; i < b; i++) {
          const p = r.p[i];
          if (p === 0) continue;
          negEnt += p * Math.log(p);
          for (let d = 0; d < D; d++) aL[al + d] += s * p * Kp[(k * b + i) * D + d];
        }
        cL[j * m + k] = negEnt;
        if (last) {
          for (let d = 0; d < Dv; d++) {
            let acc = 0;
            for (let i = 0; i < b; i++) acc += r.p[i] * Vp[(k * b + i) * Dv + d];
            y[(k * b + j) * Dv + d] = acc;
          }
        }
      }
    // L-step
    const aRn = new Float64Array(Np * D), cRn = new Float64Array(Np);
    for (let j = 0; j < b; j++)
      for (let l = 0; l < m; l++) {
        const qo = (l * b + j) * D;
        for (let k = 0; k < m; k++)
          u[k] = emptyBlock[k] && !o.noEmptyBlockFix ? -Infinity : dot(Qp, qo, aL, (j * m + k) * D) - cL[j * m + k];
        const r = softmaxRow(u);
        L.set(r.p, (j * m + l) * m);
        if (last) {
          for (let d = 0; d < Dv; d++) {
            let acc = 0;
            for (let k = 0; k < m; k++) acc += r.p[k] * y[(k * b + j) * Dv + d];
            z[(l * b + j) * Dv + d] = acc;
          }
        } else if (valid[l * b + j]) {
          for (let k = 0; k < m; k++) {
            const w = r.p[k];
            cRn[k * b + j] += w;
            for (let d = 0; d < D; d++) aRn[(k * b + j) * D + d] += w * Qp[qo + d];
          }
        }
      }
    if (!last) {
      aR = aRn;
      cR = cRn;
    }
  }
  const zOut = new Float64Array(N * Dv);
  for (let n = 0; n < N; n++) zOut.set(z.subarray(pos(n) * Dv, (pos(n) + 1) * Dv), n * Dv);
  return { z: zOut, m, b, Np, pos, R, L, Qp, Kp, valid };
}

/** MonarchAttention over BSHD activations (all batches and heads). Returns BSHD [B][N][H][Dv]. */
export function sequenceRef(q: Act, k: Act, v: Act, o: SequenceRefOptions): Float64Array {
  const { B, S: N, H, D } = q;
  const out = new Float64Array(B * N * H * v.D);
  for (let b = 0; b < B; b++) {
    const mask = o.keyMask?.subarray(b * N, (b + 1) * N);
    for (let h = 0; h < H; h++) {
      const r = sequenceHead(headMatrix(q, b, h), headMatrix(k, b, h), headMatrix(v, b, h), N, D, v.D, o, mask);
      setHeadMatrix(out, { S: N, H, D: v.D }, b, h, r.z);
    }
  }
  return out;
}

/** Materialises M[(ℓ,j),(k,i)] = L_j[ℓ,k]·R_k[j,i] as an Np×Np row-major matrix (E1). */
export function monarchMatrix(r: SequenceHeadResult): Float64Array {
  const { m, b, Np } = r;
  const M = new Float64Array(Np * Np);
  for (let l = 0; l < m; l++)
    for (let j = 0; j < b; j++)
      for (let k = 0; k < m; k++)
        for (let i = 0; i < b; i++)
          M[(l * b + j) * Np + k * b + i] = r.L[(j * m + l) * m + k] * r.R[(k * b + j) * b + i];
  return M;
}

/** Variational objective F(A) = ⟨A, S⟩ + Σ_rows H(A_row), S = s·Q·Kᵀ (§0, E5). A: n×n row-major. */
export function objective(A: Float64Array, Q: Float64Array, K: Float64Array, n: number, D: number, s: number): number {
  let f = 0;
  for (let r = 0; r < n; r++)
    for (let c = 0; c < n; c++) {
      const a = A[r * n + c];
      if (a === 0) continue;
      let dot = 0;
      for (let d = 0; d < D; d++) dot += Q[r * D + d] * K[c * D + d];
      f += a * s * dot - a * Math.log(a);
    }
  return f;
}

/** Convenience: a float64 head matrix [n][d] as an Act with B = H = 1. */
export function asAct(m: Float64Array, n: number, d: number): Act {
  return act(m, 1, n, 1, d);
}
