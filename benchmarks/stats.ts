// Summary statistics of timings and error metrics between two outputs (float64 accumulation).

/** Percentile p ∈ [0, 100] with linear interpolation between order statistics. */
export function percentile(values: readonly number[], p: number): number {
  if (values.length === 0) return NaN;
  const s = [...values].sort((a, b) => a - b);
  const x = (p / 100) * (s.length - 1);
  const lo = Math.floor(x);
  const hi = Math.min(lo + 1, s.length - 1);
  return s[lo] + (s[hi] - s[lo]) * (x - lo);
}

export interface TimeSummary { median: number; p10: number; p90: number; min: number; n: number }

export function summarize(timesMs: readonly number[]): TimeSummary {
  return {
    median: percentile(timesMs, 50),
    p10: percentile(timesMs, 10),
    p90: percentile(timesMs, 90),
    min: Math.min(...timesMs),
    n: timesMs.length,
  };
}

type Vec = ArrayLike<number>;

/** ‖a − b‖₂ / ‖b‖₂ (b is the reference). */
export function relL2(a: Vec, b: Vec): number {
  if (a.length !== b.length) throw new RangeError(`relL2: lengths ${a.length} and ${b.length} differ`);
  let num = 0;
  let den = 0;
  for (let i = 0; i < a.length; i++) {
    const d = a[i] - b[i];
    num += d * d;
    den += b[i] * b[i];
  }
  return den === 0 ? Math.sqrt(num) : Math.sqrt(num / den);
}

/** Largest |a − b| and where it is (NaN anywhere counts as the worst). */
export function maxAbsDiff(a: Vec, b: Vec): { value: number; index: number; a: number; b: number } {
  let worst = -1;
  let index = -1;
  for (let i = 0; i < a.length; i++) {
    const d = Math.abs(a[i] - b[i]);
    const dd = Number.isNaN(d) ? Infinity : d;
    if (dd > worst) { worst = dd; index = i; }
  }
  return { value: worst, index, a: index >= 0 ? a[index] : NaN, b: index >= 0 ? b[index] : NaN };
}

/** Cosine similarity of the two flattened vectors. */
export function cosine(a: Vec, b: Vec): number {
  let ab = 0, aa = 0, bb = 0;
  for (let i = 0; i < a.length; i++) { ab += a[i] * b[i]; aa += a[i] * a[i]; bb += b[i] * b[i]; }
  return ab / Math.sqrt(aa * bb);
}

/** Mean over rows of length `rowLen` (one token of one head) of the rows' cosine similarity. */
export function meanRowCosine(a: Vec, b: Vec, rowLen: number): number {
  const rows = a.length / rowLen;
  let sum = 0;
  for (let r = 0; r < rows; r++) {
    let ab = 0, aa = 0, bb = 0;
    for (let i = r * rowLen; i < (r + 1) * rowLen; i++) { ab += a[i] * b[i]; aa += a[i] * a[i]; bb += b[i] * b[i]; }
    sum += aa === 0 && bb === 0 ? 1 : ab / Math.sqrt(aa * bb);
  }
  return sum / rows;
}
