// Dense attention (our FlashAttention-class kernel on CUDA; the CPU reference on CPU) against the float64
// reference: Nq ≠ Nk, block-causal with the default and an explicit qOffset, key masks, scale, BHSD.
import { expectClose } from './helpers/compare';
import { mulberry32 } from './helpers/rng';
import { dense } from './helpers/run';
import { randAct } from './helpers/tensors';
import { FP32 } from './helpers/tolerances';
import { denseRef } from './reference/dense';

describe('denseAttention vs float64 reference (CPU, fp32)', () => {
  const cases = [
    { name: 'Nq = Nk = 19', Nq: 19, Nk: 19, opts: {} },
    { name: 'Nq = 5 < Nk = 23, scale 0.3', Nq: 5, Nk: 23, opts: { scale: 0.3 } },
    { name: 'cross-attention Nq = 23 > Nk = 5', Nq: 23, Nk: 5, opts: {} },
    { name: 'block-causal chunk 4, Nq = Nk = 13', Nq: 13, Nk: 13, opts: { causalChunk: 4 } },
    { name: 'block-causal chunk 3, decode Nq = 3 of Nk = 12 (default qOffset = 9)', Nq: 3, Nk: 12, opts: { causalChunk: 3 } },
    { name: 'block-causal chunk 5, qOffset = 0, Nq = 7, Nk = 20', Nq: 7, Nk: 20, opts: { causalChunk: 5, qOffset: 0 } },
    { name: 'BHSD layout, Nq = 6, Nk = 9', Nq: 6, Nk: 9, opts: { tensorLayout: 'BHSD' as const } },
  ];
  for (const c of cases)
    test(c.name, () => {
      const rng = mulberry32(70000 + c.Nq * 100 + c.Nk);
      const B = 2, H = 3, D = 8;
      const q = randAct(rng, B, c.Nq, H, D, 2), k = randAct(rng, B, c.Nk, H, D), v = randAct(rng, B, c.Nk, H, D);
      const got = dense(q, k, v, { ...c.opts, returnLse: true });
      const want = denseRef(q, k, v, c.opts);
      expectClose(got.out, want.out, FP32, c.name, [B, c.Nq, H, D]);
      expectClose(got.lse!, want.lse, FP32, `${c.name} lse`, [B, H, c.Nq]);
    });

  test('key mask [B][Nk]', () => {
    const rng = mulberry32(70900);
    const B = 2, Nq = 4, Nk = 10, H = 1, D = 16;
    const q = randAct(rng, B, Nq, H, D, 2), k = randAct(rng, B, Nk, H, D), v = randAct(rng, B, Nk, H, D);
    const keyMask = Uint8Array.from({ length: B * Nk }, (_, i) => (i % 4 === 1 ? 0 : 1));
    expectClose(dense(q, k, v, { keyMask }).out, denseRef(q, k, v, { keyMask }).out, FP32, 'masked', [B, Nq, H, D]);
  });

  test('no lse / entropy unless asked', () => {
    const rng = mulberry32(70950);
    const q = randAct(rng, 1, 3, 1, 4), k = randAct(rng, 1, 3, 1, 4), v = randAct(rng, 1, 3, 1, 4);
    const r = dense(q, k, v);
    expect(r.lse).toBeUndefined();
    expect(r.entropy).toBeUndefined();
  });
});
