// Float64 reference attention on the CPU, computed in TypeScript for modest shapes: dense softmax
// attention and oracle top-k attention (per query row keep the k largest scores, softmax over those),
// from one pass over the scores. Tensors are float32 BSHD [B][N][H][D].

export interface RefShape { B: number; Nq: number; Nk: number; H: number; D: number; scale?: number }

/** Returns { dense, topk[i] for each kKeep[i] } as float32 BSHD outputs. */
export function referenceAttention(q: Float32Array, k: Float32Array, v: Float32Array, s: RefShape, kKeep: number[]): { dense: Float32Array; topk: Float32Array[] } {
  const { B, Nq, Nk, H, D } = s;
  const scale = s.scale ?? 1 / Math.sqrt(D);
  const dense = new Float32Array(B * Nq * H * D);
  const topk = kKeep.map(() => new Float32Array(B * Nq * H * D));
  const scores = new Float64Array(Nk);
  const work = new Float64Array(Nk);
  const acc = new Float64Array(D);
  for (let b = 0; b < B; b++) for (let h = 0; h < H; h++) for (let n = 0; n < Nq; n++) {
    const qo = ((b * Nq + n) * H + h) * D;
    let max = -Infinity;
    for (let j = 0; j < Nk; j++) {
      const ko = ((b * Nk + j) * H + h) * D;
      let dot = 0;
      for (let i = 0; i < D; i++) dot += q[qo + i] * k[ko + i];
      scores[j] = dot * scale;
      if (scores[j] > max) max = scores[j];
    }
    weighted(scores, -Infinity, Nk, max, v, b, h, s, acc);
    dense.set(acc, qo);
    kKeep.forEach((kk, idx) => {
      if (kk >= Nk) { topk[idx].set(acc, qo); return; }
      work.set(scores);
      const thr = kthLargest(work, kk);
      weighted(scores, thr, kk, max, v, b, h, s, acc);
      topk[idx].set(acc, qo);
    });
  }
  return { dense, topk };
}

/** acc = Σ_j p_j v_j over keys with score > thr, plus keys == thr until `keep` keys are used. */
function weighted(scores: Float64Array, thr: number, keep: number, max: number, v: Float32Array, b: number, h: number, s: RefShape, acc: Float64Array): void {
  const { Nk, H, D } = s;
  acc.fill(0);
  let above = 0;
  for (let j = 0; j < Nk; j++) if (scores[j] > thr) above++;
  let ties = keep - above;
  let z = 0;
  for (let j = 0; j < Nk; j++) {
    const x = scores[j];
    if (x < thr || (x === thr && ties-- <= 0)) continue;
    const p = Math.exp(x - max);
    z += p;
    const vo = ((b * Nk + j) * H + h) * D;
    for (let i = 0; i < D; i++) acc[i] += p * v[vo + i];
  }
  for (let i = 0; i < D; i++) acc[i] /= z;
}

/** k-th largest value (1-based) by quickselect; reorders `a`. */
export function kthLargest(a: Float64Array, k: number): number {
  let lo = 0, hi = a.length - 1;
  const target = k - 1;
  while (lo < hi) {
    const pivot = a[(lo + hi) >> 1];
    let i = lo, j = hi;
    while (i <= j) {
      while (a[i] > pivot) i++;
      while (a[j] < pivot) j--;
      if (i <= j) { const t = a[i]; a[i] = a[j]; a[j] = t; i++; j--; }
    }
    if (target <= j) hi = j;
    else if (target >= i) lo = i;
    else return a[target];
  }
  return a[target];
}
