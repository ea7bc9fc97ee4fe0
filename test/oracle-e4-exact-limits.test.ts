// E4: b = N (one block) or b = 1 is exact dense attention for any Q; tiled Monarch with b1 = 1 or b2 = 1
// is exact too (docs/ALGORITHMS.md §E). Random queries, so nothing else makes these exact.
import { expectClose } from './helpers/compare';
import { mulberry32 } from './helpers/rng';
import { monarch } from './helpers/run';
import { randAct } from './helpers/tensors';
import { FP32 } from './helpers/tolerances';
import { denseRef } from './reference/dense';
import type { MonarchOptions } from './helpers/pkg';

describe('E4: exact limits (package, fp32, random queries)', () => {
  const cases: Array<[string, number, MonarchOptions['layout']]> = [
    ['sequence b = N = 11', 11, { kind: 'sequence', length: 11, blockSize: 11 }],
    ['sequence b = 1, N = 11', 11, { kind: 'sequence', length: 11, blockSize: 1 }],
    ['monarchrt b1 = 1 (height 1, 3 frames × 1 × 5)', 15, { kind: 'video', frames: 3, height: 1, width: 5 }],
    ['monarchrt b2 = 1 (wReduce = width, 2 × 3 × 2)', 12, { kind: 'video', frames: 2, height: 3, width: 2, wReduce: 2 }],
    ['vmonarch b1 = 1 (one frame 3 × 4)', 12, { kind: 'video', frames: 1, height: 3, width: 4, factorization: 'vmonarch' }],
  ];
  for (const [name, N, layout] of cases)
    for (const T of [1, 2])
      test(`${name}, T=${T}`, () => {
        const rng = mulberry32(4000 + N * 3 + T);
        const B = 2, H = 1, D = 8;
        const q = randAct(rng, B, N, H, D, 2), k = randAct(rng, B, N, H, D, 1.5), v = randAct(rng, B, N, H, D);
        const got = monarch({ layout, heads: H, headDim: D, numIters: T }, q, k, v);
        expectClose(got, denseRef(q, k, v).out, FP32, name, [B, N, H, D]);
      });
});
