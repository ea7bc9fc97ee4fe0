// E8: keys and values at masked positions do not affect any output (bit-identical), and pre-padding differs
// from post-padding (each matching its own float64 reference). docs/ALGORITHMS.md §A.4, §E.
import { cloneAct, idx } from './helpers/act';
import { expectBitIdentical, expectClose, maxAbsDiff } from './helpers/compare';
import { mulberry32 } from './helpers/rng';
import { monarch } from './helpers/run';
import { randAct, roundTo } from './helpers/tensors';
import { FP32 } from './helpers/tolerances';
import { sequenceRef } from './reference/sequence';
import type { MonarchOptions } from './helpers/pkg';

describe('E8: masked keys/values do not matter; pre ≠ post padding', () => {
  test.each([1, 2])('changing k and v at masked keys leaves the output bit-identical (N=10, b=4, pre, T=%i)', (T) => {
    const rng = mulberry32(8000 + T);
    const B = 2, N = 10, H = 2, D = 8;
    const q = randAct(rng, B, N, H, D, 2), k = randAct(rng, B, N, H, D), v = randAct(rng, B, N, H, D);
    const masked = [1, 6, N + 3, N + 9];
    const keyMask = Uint8Array.from({ length: B * N }, (_, i) => (masked.includes(i) ? 0 : 1));
    const opts: MonarchOptions = { layout: { kind: 'sequence', length: N, blockSize: 4, padding: 'pre' }, heads: H, headDim: D, numIters: T };
    const z = monarch(opts, q, k, v, { keyMask });
    const k2 = cloneAct(k), v2 = cloneAct(v);
    for (const i of masked) {
      const b = Math.floor(i / N), n = i % N;
      for (let h = 0; h < H; h++)
        for (let d = 0; d < D; d++) {
          k2.x[idx(k2, b, n, h, d)] = roundTo([5 * rng.normal()], 'float32')[0];
          v2.x[idx(v2, b, n, h, d)] = 1000;
        }
    }
    const z2 = monarch(opts, q, k2, v2, { keyMask });
    expectBitIdentical(z2, z, `T=${T}`, [B, N, H, D]);
  });

  test('pre-padding and post-padding differ, each matching its reference (N=10, b=4, T=1)', () => {
    const rng = mulberry32(8100);
    const N = 10, H = 1, D = 8;
    const q = randAct(rng, 1, N, H, D, 2), k = randAct(rng, 1, N, H, D, 2), v = randAct(rng, 1, N, H, D);
    const out: Record<string, Float64Array> = {};
    for (const padding of ['pre', 'post'] as const) {
      out[padding] = monarch({ layout: { kind: 'sequence', length: N, blockSize: 4, padding }, heads: H, headDim: D }, q, k, v);
      expectClose(out[padding], sequenceRef(q, k, v, { blockSize: 4, padding }), FP32, padding, [1, N, H, D]);
    }
    expect(maxAbsDiff(out.pre, out.post)).toBeGreaterThan(1e-2);
  });
});
