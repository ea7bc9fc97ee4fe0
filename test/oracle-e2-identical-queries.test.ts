// E2: when every query row is the same, MonarchAttention equals dense softmax attention — for any block
// size b, any T, key masks without an empty block and, for T ≥ 2, pre or post padding (docs/ALGORITHMS.md §E).
// The package must reach the float64 dense result within fp32 error.
// Caveat (found while writing these tests, float64 reference and package agree): at T = 1 the first R-step
// runs from L = I, so a pad token's zero query defines R_k[j,:] for its own block k and position j; unless
// that block has a single valid key, the real queries at position j inherit that row and the result is
// not dense (N = 13, b = 5: error 0.75). docs/ALGORITHMS.md's "any T, pre/post pad" holds for T ≥ 2 only; the
// T = 1 cases below therefore use N = 15, divisible by every b tried (reference-oracles.test.ts pins the caveat).
import { concatTokens, zeroMaskedRows } from './helpers/act';
import { expectClose } from './helpers/compare';
import { mulberry32 } from './helpers/rng';
import { desc, monarch } from './helpers/run';
import { randAct } from './helpers/tensors';
import { FP32 } from './helpers/tolerances';
import { denseRef } from './reference/dense';

describe('E2: identical queries ⇒ dense attention (package, fp32)', () => {
  const B = 2, H = 2, D = 8;
  const cases: Array<{ N: number; b: number; T: number; padding: 'pre' | 'post'; masked: boolean }> = [];
  for (const b of [1, 3, 5, 15]) cases.push({ N: 15, b, T: 1, padding: 'post', masked: true });
  for (const b of [1, 3, 5, 13])
    for (const T of [2, 3])
      cases.push({ N: 13, b, T, padding: (b + T) % 2 ? 'pre' : 'post', masked: T !== 2 });
  test.each(cases)('N=$N b=$b T=$T padding=$padding masked=$masked', ({ N, b, T, padding, masked }) => {
    const rng = mulberry32(2000 + b * 10 + T);
    const one = randAct(rng, B, 1, H, D, 2);
    const q = concatTokens(Array.from({ length: N }, () => one));
    const k = randAct(rng, B, N, H, D), v = randAct(rng, B, N, H, D);
    // every block of b ≥ 3 keeps at least one key: mask tokens 2, 7, 11 of batch 0 and 0, 5 of batch 1
    const keyMask = masked ? Uint8Array.from({ length: B * N }, (_, i) => ([2, 7, 11, N + 0, N + 5].includes(i) ? 0 : 1)) : undefined;
    const got = monarch({ layout: { kind: 'sequence', length: N, blockSize: b, padding }, heads: H, headDim: D, numIters: T }, q, k, v, { keyMask });
    const want = denseRef(q, k, v, { keyMask }).out;
    // rows of masked queries are don't-care for T ≥ 2 (§A.4)
    const m = T >= 2 ? keyMask : undefined;
    expectClose(zeroMaskedRows(got, m, B, N, H, D), zeroMaskedRows(want, m, B, N, H, D), FP32, desc({ N, b, T, padding, masked }), [B, N, H, D]);
  });
});
