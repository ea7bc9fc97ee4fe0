// MonarchAttention on 1-D sequences (§A): the package (CPU, fp32) against the float64 reference over seeds,
// awkward sizes (N not a multiple of b, b = 1, b = N, one head, batch 2), both paddings, key masks and
// T = 1, 2, 3. Rows of masked queries are don't-care for T ≥ 2 (§A.4) and are skipped then.
import { zeroMaskedRows } from './helpers/act';
import { expectClose } from './helpers/compare';
import { mulberry32 } from './helpers/rng';
import { desc, monarch } from './helpers/run';
import { randAct } from './helpers/tensors';
import { FP32 } from './helpers/tolerances';
import { sequenceRef } from './reference/sequence';

interface Case { N: number; b: number; padding: 'pre' | 'post'; B: number; H: number; D: number; masked: boolean }

const cases: Case[] = [
  { N: 13, b: 4, padding: 'post', B: 2, H: 1, D: 8, masked: false },
  { N: 13, b: 4, padding: 'pre', B: 1, H: 3, D: 5, masked: true },
  { N: 17, b: 5, padding: 'pre', B: 2, H: 2, D: 16, masked: true },
  { N: 9, b: 1, padding: 'post', B: 1, H: 2, D: 3, masked: false },
  { N: 7, b: 7, padding: 'post', B: 2, H: 1, D: 8, masked: true },
  { N: 24, b: 6, padding: 'post', B: 1, H: 1, D: 8, masked: false },
  { N: 1, b: 1, padding: 'pre', B: 1, H: 1, D: 4, masked: false },
  { N: 11, b: 10, padding: 'pre', B: 2, H: 1, D: 8, masked: false }, // 9 pad tokens in front
];

describe('sequence MonarchAttention vs float64 reference (CPU, fp32)', () => {
  for (const c of cases)
    for (const T of [1, 2, 3])
      for (const seed of [1, 2])
        test(`${desc({ ...c })} T=${T} seed=${seed}`, () => {
          const rng = mulberry32(20000 + seed * 1000 + c.N * 31 + c.b * 7 + T);
          const { N, b, padding, B, H, D } = c;
          // scale 2 on q gives peaked (non-uniform) attention, where mistakes show
          const q = randAct(rng, B, N, H, D, 2), k = randAct(rng, B, N, H, D), v = randAct(rng, B, N, H, D);
          const keyMask = c.masked ? Uint8Array.from({ length: B * N }, () => (rng.uniform() < 0.25 ? 0 : 1)) : undefined;
          if (keyMask) for (let bb = 0; bb < B; bb++) keyMask[bb * N] = 1; // no fully masked sequence
          const got = monarch({ layout: { kind: 'sequence', length: N, blockSize: b, padding }, heads: H, headDim: D, numIters: T }, q, k, v, { keyMask });
          const want = sequenceRef(q, k, v, { blockSize: b, padding, numIters: T, keyMask });
          const m = T >= 2 ? keyMask : undefined;
          expectClose(zeroMaskedRows(got, m, B, N, H, D), zeroMaskedRows(want, m, B, N, H, D), FP32, `T=${T} seed=${seed}`, [B, N, H, D]);
        });
});

test('the scale option is honoured (s = 0.9 vs reference)', () => {
  const rng = mulberry32(20900);
  const N = 12, b = 4, H = 1, D = 8;
  const q = randAct(rng, 1, N, H, D), k = randAct(rng, 1, N, H, D), v = randAct(rng, 1, N, H, D);
  const got = monarch({ layout: { kind: 'sequence', length: N, blockSize: b }, heads: H, headDim: D, numIters: 2, scale: 0.9 }, q, k, v);
  expectClose(got, sequenceRef(q, k, v, { blockSize: b, numIters: 2, scale: 0.9 }), FP32, 'scale 0.9', [1, N, H, D]);
});
