// E3: queries periodic with period b (q_n depends on n mod b only) make MonarchAttention exact (T = 1, 3);
// for tiled Monarch, queries constant along the in-tile row i make it exact (T = 1, 2). docs/ALGORITHMS.md §E.
import { act, concatTokens } from './helpers/act';
import { expectClose } from './helpers/compare';
import { mulberry32 } from './helpers/rng';
import { monarch } from './helpers/run';
import { randAct } from './helpers/tensors';
import { FP32 } from './helpers/tolerances';
import { denseRef } from './reference/dense';

describe('E3: periodic queries ⇒ dense (package, fp32)', () => {
  test.each([1, 3])('sequence, period b = 4, m = 3 blocks, T=%i', (T) => {
    const rng = mulberry32(3000 + T);
    const b = 4, m = 3, N = b * m, H = 2, D = 8;
    const period = randAct(rng, 1, b, H, D, 2);
    const q = concatTokens(Array.from({ length: m }, () => period));
    const k = randAct(rng, 1, N, H, D), v = randAct(rng, 1, N, H, D);
    const got = monarch({ layout: { kind: 'sequence', length: N, blockSize: b }, heads: H, headDim: D, numIters: T }, q, k, v);
    expectClose(got, denseRef(q, k, v).out, FP32, `T=${T}`, [1, N, H, D]);
  });

  test.each([1, 2])('monarchrt video 3×3×4, queries constant along each tile row index i (= y), T=%i', (T) => {
    const rng = mulberry32(3100 + T);
    const F = 3, h = 3, w = 4, N = F * h * w, H = 1, D = 8;
    const base = randAct(rng, 1, N, H, D, 2);
    const x = Float64Array.from(base.x);
    // q(t, y, x) := q(t, 0, x): constant along the tile row i = y (fTied = hReduce = wReduce = 1)
    for (let t = 0; t < F; t++)
      for (let y = 1; y < h; y++)
        for (let xx = 0; xx < w; xx++)
          for (let d = 0; d < D; d++) x[((t * h + y) * w + xx) * D + d] = base.x[((t * h) * w + xx) * D + d];
    const q = act(x, 1, N, H, D);
    const k = randAct(rng, 1, N, H, D), v = randAct(rng, 1, N, H, D);
    const got = monarch({ layout: { kind: 'video', frames: F, height: h, width: w }, heads: H, headDim: D, numIters: T }, q, k, v);
    expectClose(got, denseRef(q, k, v).out, FP32, `T=${T}`, [1, N, H, D]);
  });
});
