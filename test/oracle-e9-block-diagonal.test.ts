// E9: block-diagonal limit. Appending one-hot block features of magnitude c to q and k adds s·c² to every
// within-block logit, so dense attention becomes block-diagonal — which MonarchAttention's first R-step
// (L = I) computes exactly. The T = 1 error vs dense must fall as c = 2, 4, 8 grows (docs/ALGORITHMS.md §E).
import { act, Act } from './helpers/act';
import { maxAbsDiff } from './helpers/compare';
import { mulberry32 } from './helpers/rng';
import { monarch } from './helpers/run';
import { randAct } from './helpers/tensors';
import { denseRef } from './reference/dense';

test('E9: the T = 1 error vs dense decreases for c = 2, 4, 8 and vanishes at c = 8', () => {
  const rng = mulberry32(9000);
  const b = 4, m = 4, N = b * m, D0 = 12, D = D0 + m, H = 1;
  const q0 = randAct(rng, 1, N, H, D0), k0 = randAct(rng, 1, N, H, D0), v = randAct(rng, 1, N, H, D);
  const aug = (a: Act, c: number): Act => {
    const x = new Float64Array(N * D);
    for (let n = 0; n < N; n++) {
      for (let d = 0; d < D0; d++) x[n * D + d] = a.x[n * D0 + d];
      x[n * D + D0 + Math.floor(n / b)] = c; // c is a power of two: exact in fp32
    }
    return act(x, 1, N, H, D);
  };
  const errs = [2, 4, 8].map((c) => {
    const q = aug(q0, c), k = aug(k0, c);
    const got = monarch({ layout: { kind: 'sequence', length: N, blockSize: b }, heads: H, headDim: D }, q, k, v);
    return maxAbsDiff(got, denseRef(q, k, v).out);
  });
  expect(errs[0]).toBeGreaterThan(1e-2); // not exact at c = 2: the test can tell
  expect(errs[1]).toBeLessThan(errs[0]);
  expect(errs[2]).toBeLessThan(errs[1]);
  // at c = 8, s·c² = 16: off-block mass ~e^-16 ≈ 1e-7, below fp32 output error; 1e-4 = FP32 atol
  expect(errs[2]).toBeLessThan(1e-4);
});
