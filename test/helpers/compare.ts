// Comparison helpers. On failure they throw with the worst element's multi-index and both values, so a
// failing numerics test says where and by how much, not just "not close".

export interface Tol {
  /** Absolute part of the bound |a − e| ≤ atol + rtol·|e|. */
  atol: number;
  rtol: number;
}

export interface CompareResult {
  ok: boolean;
  /** Elements violating the bound (NaN / ±Inf mismatches count). */
  bad: number;
  /** Index of the element with the largest |a − e| / (atol + rtol·|e|). */
  worst: number;
  maxAbsErr: number;
  /** Largest ratio err / bound (≤ 1 passes). */
  worstRatio: number;
}

export function compare(actual: ArrayLike<number>, expected: ArrayLike<number>, tol: Tol): CompareResult {
  if (actual.length !== expected.length) throw new Error(`length ${actual.length} != expected ${expected.length}`);
  let bad = 0, worst = -1, worstRatio = -1, maxAbsErr = 0;
  for (let i = 0; i < actual.length; i++) {
    const a = actual[i], e = expected[i];
    let ratio: number;
    if (Number.isNaN(a) || Number.isNaN(e) || !Number.isFinite(a) || !Number.isFinite(e)) {
      ratio = a === e ? 0 : Infinity; // equal infinities pass; NaN never does
    } else {
      const err = Math.abs(a - e);
      if (err > maxAbsErr) maxAbsErr = err;
      ratio = err / (tol.atol + tol.rtol * Math.abs(e));
    }
    if (ratio > 1) bad++;
    if (ratio > worstRatio) {
      worstRatio = ratio;
      worst = i;
    }
  }
  return { ok: bad === 0, bad, worst, maxAbsErr, worstRatio };
}

/** Multi-index of a flat index in a row-major shape, e.g. "[b=0,s=5,h=1,d=3]". */
export function formatIndex(i: number, shape?: readonly number[], names = 'bshd'): string {
  if (!shape) return `[${i}]`;
  const parts: string[] = [];
  let r = i;
  for (let k = shape.length - 1; k >= 0; k--) {
    parts.unshift(`${names[k] ?? `i${k}`}=${r % shape[k]}`);
    r = Math.floor(r / shape[k]);
  }
  return `[${parts.join(',')}]`;
}

/** Throws unless every element satisfies |a − e| ≤ atol + rtol·|e|. */
export function expectClose(
  actual: ArrayLike<number>, expected: ArrayLike<number>, tol: Tol, label: string, shape?: readonly number[],
): CompareResult {
  const r = compare(actual, expected, tol);
  if (!r.ok) {
    const w = r.worst;
    throw new Error(
      `${label}: ${r.bad} of ${actual.length} elements outside |a-e| <= ${tol.atol} + ${tol.rtol}*|e|; ` +
      `worst at ${formatIndex(w, shape)}: actual=${actual[w]} expected=${expected[w]} ` +
      `|diff|=${Math.abs(actual[w] - expected[w])} (max |diff| over all = ${r.maxAbsErr})`,
    );
  }
  return r;
}

/** Largest |a − e| (NaN if any element is NaN). */
export function maxAbsDiff(a: ArrayLike<number>, e: ArrayLike<number>): number {
  let m = 0;
  for (let i = 0; i < a.length; i++) {
    const d = Math.abs(a[i] - e[i]);
    if (Number.isNaN(d)) return NaN;
    if (d > m) m = d;
  }
  return m;
}

export function maxAbs(a: ArrayLike<number>): number {
  let m = 0;
  for (let i = 0; i < a.length; i++) m = Math.max(m, Math.abs(a[i]));
  return m;
}

/** Throws unless a and b are bit-identical (float32 values compared through their bits; NaN == NaN). */
export function expectBitIdentical(a: ArrayLike<number>, b: ArrayLike<number>, label: string, shape?: readonly number[]): void {
  if (a.length !== b.length) throw new Error(`${label}: length ${a.length} != ${b.length}`);
  const fa = new Float32Array(1), fb = new Float32Array(1);
  const ua = new Uint32Array(fa.buffer), ub = new Uint32Array(fb.buffer);
  let diffs = 0, first = -1;
  for (let i = 0; i < a.length; i++) {
    fa[0] = a[i];
    fb[0] = b[i];
    const same = ua[0] === ub[0] || (Number.isNaN(fa[0]) && Number.isNaN(fb[0]));
    if (!same) {
      diffs++;
      if (first < 0) first = i;
    }
  }
  if (diffs) {
    throw new Error(`${label}: ${diffs} of ${a.length} elements differ; first at ${formatIndex(first, shape)}: ` +
      `${a[first]} vs ${b[first]}`);
  }
}

/** Throws unless every element is finite (poisoned outputs that were never written stay NaN). */
export function expectAllFinite(a: ArrayLike<number>, label: string, shape?: readonly number[]): void {
  let bad = 0, first = -1;
  for (let i = 0; i < a.length; i++) {
    if (!Number.isFinite(a[i])) {
      bad++;
      if (first < 0) first = i;
    }
  }
  if (bad) throw new Error(`${label}: ${bad} of ${a.length} elements not finite (not written?); first at ${formatIndex(first, shape)} = ${a[first]}`);
}
