// Float64 activations in BSHD order ([B][S][H][D], D fastest) and pure index helpers. No package import,
// so the float64 references can be tested without the native addon.
import { Rng, randn } from './rng';

export interface Act {
  x: Float64Array;
  B: number;
  S: number;
  H: number;
  D: number;
}

export function act(x: Float64Array, B: number, S: number, H: number, D: number): Act {
  if (x.length !== B * S * H * D) throw new Error(`act: ${x.length} != ${B}*${S}*${H}*${D}`);
  return { x, B, S, H, D };
}

/** Index of (b, s, h, d) in a BSHD array. */
export function idx(a: { S: number; H: number; D: number }, b: number, s: number, h: number, d: number): number {
  return ((b * a.S + s) * a.H + h) * a.D + d;
}

/** Random normal float64 activation times `scale` (not rounded to any storage dtype). */
export function randAct64(rng: Rng, B: number, S: number, H: number, D: number, scale = 1): Act {
  return act(randn(rng, B * S * H * D, scale), B, S, H, D);
}

export function cloneAct(a: Act): Act {
  return { ...a, x: Float64Array.from(a.x) };
}

/** BSHD → BHSD data order. */
export function bshdToBhsd(a: Act): Float64Array {
  const out = new Float64Array(a.x.length);
  for (let b = 0; b < a.B; b++)
    for (let s = 0; s < a.S; s++)
      for (let h = 0; h < a.H; h++)
        for (let d = 0; d < a.D; d++) out[((b * a.H + h) * a.S + s) * a.D + d] = a.x[idx(a, b, s, h, d)];
  return out;
}

/** BHSD data → BSHD order. */
export function bhsdToBshd(x: ArrayLike<number>, B: number, S: number, H: number, D: number): Float64Array {
  const out = new Float64Array(B * S * H * D);
  for (let b = 0; b < B; b++)
    for (let h = 0; h < H; h++)
      for (let s = 0; s < S; s++)
        for (let d = 0; d < D; d++) out[((b * S + s) * H + h) * D + d] = x[((b * H + h) * S + s) * D + d];
  return out;
}

/** Tokens [s0, s1) of an activation (all batches and heads) as a new activation. */
export function sliceTokens(a: Act, s0: number, s1: number): Act {
  const S = s1 - s0;
  const row = a.H * a.D;
  const x = new Float64Array(a.B * S * row);
  for (let b = 0; b < a.B; b++) x.set(a.x.subarray((b * a.S + s0) * row, (b * a.S + s1) * row), b * S * row);
  return act(x, a.B, S, a.H, a.D);
}

/** The same for a flat BSHD array with S tokens. */
export function sliceRows(x: Float64Array, B: number, S: number, H: number, D: number, s0: number, s1: number): Float64Array {
  return sliceTokens(act(x, B, S, H, D), s0, s1).x;
}

/** Concatenates activations along the token axis. */
export function concatTokens(parts: Act[]): Act {
  const { B, H, D } = parts[0];
  const S = parts.reduce((s, p) => s + p.S, 0);
  const x = new Float64Array(B * S * H * D);
  const row = H * D;
  for (let b = 0; b < B; b++) {
    let s0 = 0;
    for (const p of parts) {
      x.set(p.x.subarray(b * p.S * row, (b + 1) * p.S * row), (b * S + s0) * row);
      s0 += p.S;
    }
  }
  return act(x, B, S, H, D);
}

/** The [S][D] matrix of head h in batch b, copied. */
export function headMatrix(a: Act, b: number, h: number): Float64Array {
  const m = new Float64Array(a.S * a.D);
  for (let s = 0; s < a.S; s++)
    for (let d = 0; d < a.D; d++) m[s * a.D + d] = a.x[idx(a, b, s, h, d)];
  return m;
}

/** Writes a [S][D] head matrix into a BSHD array. */
export function setHeadMatrix(out: Float64Array, shape: { S: number; H: number; D: number }, b: number, h: number, m: Float64Array): void {
  for (let s = 0; s < shape.S; s++)
    for (let d = 0; d < shape.D; d++) out[idx(shape, b, s, h, d)] = m[s * shape.D + d];
}

/** Permutes tokens: out token n = a token perm[n]. */
export function permuteTokens(a: Act, perm: ArrayLike<number>): Act {
  const out = new Float64Array(a.x.length);
  const row = a.H * a.D;
  for (let b = 0; b < a.B; b++)
    for (let n = 0; n < a.S; n++)
      out.set(a.x.subarray((b * a.S + perm[n]) * row, (b * a.S + perm[n] + 1) * row), (b * a.S + n) * row);
  return act(out, a.B, a.S, a.H, a.D);
}

/**
 * Copy of a BSHD array with the rows of masked tokens (keyMask[b·S + s] = 0) set to 0. Those query rows are
 * don't-care for T ≥ 2 (§A.4: invalid queries are dropped from the non-final L-steps), so comparisons skip them.
 */
export function zeroMaskedRows(x: ArrayLike<number>, mask: Uint8Array | undefined, B: number, S: number, H: number, D: number): Float64Array {
  const out = Float64Array.from(x);
  if (!mask) return out;
  for (let b = 0; b < B; b++)
    for (let s = 0; s < S; s++) if (!mask[b * S + s]) out.fill(0, (b * S + s) * H * D, (b * S + s + 1) * H * D);
  return out;
}
