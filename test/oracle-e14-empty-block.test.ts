// E14 / §A.4: a key block with no valid key must get no L mass (L logit −∞). Without that fix the empty
// block still receives mass with y = 0 and outputs shrink (error 6.6e-2 on this kind of case); with it a
// constant-query case is exact. The float64 reference shows both (reference-oracles.test.ts).
import { concatTokens, zeroMaskedRows } from './helpers/act';
import { expectClose, maxAbsDiff } from './helpers/compare';
import { mulberry32 } from './helpers/rng';
import { monarch } from './helpers/run';
import { randAct } from './helpers/tensors';
import { FP32 } from './helpers/tolerances';
import { denseRef } from './reference/dense';
import { sequenceRef } from './reference/sequence';

describe('E14: a fully masked key block gets no L mass', () => {
  for (const T of [1, 2, 3])
    test(`constant queries, N = 12, b = 4, block 1 fully masked, T=${T}`, () => {
      const rng = mulberry32(14000 + T);
      const N = 12, b = 4, H = 2, D = 8;
      const one = randAct(rng, 1, 1, H, D, 1);
      const q = concatTokens(Array.from({ length: N }, () => one));
      const k = randAct(rng, 1, N, H, D), v = randAct(rng, 1, N, H, D);
      const keyMask = Uint8Array.from({ length: N }, (_, n) => (n >= 4 && n < 8 ? 0 : 1));
      const got = monarch({ layout: { kind: 'sequence', length: N, blockSize: b }, heads: H, headDim: D, numIters: T }, q, k, v, { keyMask });
      const want = denseRef(q, k, v, { keyMask }).out;
      const m = T >= 2 ? keyMask : undefined; // masked query rows are don't-care for T ≥ 2
      expectClose(zeroMaskedRows(got, m, 1, N, H, D), zeroMaskedRows(want, m, 1, N, H, D), FP32, `T=${T}`, [1, N, H, D]);
      // the negative: without the fix the answer would be visibly wrong, so this case does test the fix
      const unfixed = sequenceRef(q, k, v, { blockSize: b, numIters: T, keyMask, noEmptyBlockFix: true });
      expect(maxAbsDiff(zeroMaskedRows(unfixed, m, 1, N, H, D), zeroMaskedRows(want, m, 1, N, H, D))).toBeGreaterThan(1e-2);
    });

  test('random queries, an empty block in post-padding with a pad tail (N = 10, b = 4, T = 2) vs the fixed reference', () => {
    const rng = mulberry32(14100);
    const N = 10, b = 4, H = 1, D = 8;
    const q = randAct(rng, 1, N, H, D, 2), k = randAct(rng, 1, N, H, D), v = randAct(rng, 1, N, H, D);
    const keyMask = Uint8Array.from({ length: N }, (_, n) => (n < 4 ? 0 : 1)); // block 0 empty; block 2 holds 2 pads
    const got = monarch({ layout: { kind: 'sequence', length: N, blockSize: b }, heads: H, headDim: D, numIters: 2 }, q, k, v, { keyMask });
    const want = sequenceRef(q, k, v, { blockSize: b, numIters: 2, keyMask });
    expectClose(zeroMaskedRows(got, keyMask, 1, N, H, D), zeroMaskedRows(want, keyMask, 1, N, H, D), FP32, 'fixed', [1, N, H, D]);
  });
});
