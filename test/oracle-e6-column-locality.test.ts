// E6: column locality (docs/ALGORITHMS.md §A.8): every output z_(ℓ,j) depends only on the queries q_(ℓ',j) at the
// same in-block position j (plus all keys/values). Perturbing a query at position j' ≠ j must leave z_(ℓ,j)
// bit-identical in the package output; perturbing q_(ℓ',j) with ℓ' ≠ ℓ must change it.
import { cloneAct, idx } from './helpers/act';
import { expectBitIdentical, maxAbsDiff } from './helpers/compare';
import { mulberry32 } from './helpers/rng';
import { monarch } from './helpers/run';
import { randAct } from './helpers/tensors';
import type { MonarchOptions } from './helpers/pkg';

function rowsAt(z: Float64Array, N: number, HD: number, pick: (n: number) => boolean): Float64Array {
  const out: number[] = [];
  for (let n = 0; n < N; n++) if (pick(n)) out.push(...z.subarray(n * HD, (n + 1) * HD));
  return Float64Array.from(out);
}

describe('E6: column locality is bit-exact in the package output', () => {
  test.each([1, 2, 3])('sequence N=12, b=4, T=%i: perturbing q at block 1, position 2', (T) => {
    const rng = mulberry32(6000 + T);
    const N = 12, b = 4, H = 2, D = 8;
    const q = randAct(rng, 1, N, H, D, 2), k = randAct(rng, 1, N, H, D), v = randAct(rng, 1, N, H, D);
    const opts: MonarchOptions = { layout: { kind: 'sequence', length: N, blockSize: b }, heads: H, headDim: D, numIters: T };
    const z = monarch(opts, q, k, v);
    const q2 = cloneAct(q);
    for (let h = 0; h < H; h++) for (let d = 0; d < D; d++) q2.x[idx(q2, 0, 1 * b + 2, h, d)] += 0.5 + d / D;
    const z2 = monarch(opts, q2, k, v);
    const other = (n: number): boolean => n % b !== 2;
    expectBitIdentical(rowsAt(z2, N, H * D, other), rowsAt(z, N, H * D, other), `T=${T}: rows at positions j ≠ 2`);
    // the queries at the same position in other blocks (tokens 2 and 10) do change
    for (const n of [2, 10]) {
      const diff = maxAbsDiff(z2.subarray(n * H * D, (n + 1) * H * D), z.subarray(n * H * D, (n + 1) * H * D));
      expect(diff).toBeGreaterThan(1e-4);
    }
  });

  test('monarchrt video 2×3×4 (T=2): output (a,i,j) depends only on Q[a,·,j]', () => {
    const rng = mulberry32(6100);
    const F = 2, h = 3, w = 4, N = F * h * w, H = 1, D = 8;
    const q = randAct(rng, 1, N, H, D, 2), k = randAct(rng, 1, N, H, D), v = randAct(rng, 1, N, H, D);
    const opts: MonarchOptions = { layout: { kind: 'video', frames: F, height: h, width: w }, heads: H, headDim: D, numIters: 2 };
    const z = monarch(opts, q, k, v);
    const q2 = cloneAct(q);
    const tok = (t: number, y: number, x: number): number => (t * h + y) * w + x;
    for (let d = 0; d < D; d++) q2.x[idx(q2, 0, tok(1, 2, 3), 0, d)] -= 1; // frame 1, row 2, column 3
    const z2 = monarch(opts, q2, k, v);
    const unaffected = (n: number): boolean => !(Math.floor(n / (h * w)) === 1 && n % w === 3);
    expectBitIdentical(rowsAt(z2, N, H * D, unaffected), rowsAt(z, N, H * D, unaffected), 'rows outside (frame 1, column 3)');
    const n = tok(1, 0, 3);
    expect(maxAbsDiff(z2.subarray(n * D, (n + 1) * D), z.subarray(n * D, (n + 1) * D))).toBeGreaterThan(1e-4);
  });
});
