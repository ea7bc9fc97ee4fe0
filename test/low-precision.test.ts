// float16 / bfloat16 storage on the CPU backend vs the float64 reference on the same rounded inputs. The
// tolerances (helpers/tolerances.ts) follow from storage rounding: 2^-9 (bf16) and 2^-12 (fp16) relative
// per stored value, on aR, aL, y and the output, amplified by logit sizes (≲ 8) and T passes. A check that
// fp16 is tighter than bf16 catches a backend that silently computes in the wrong dtype.
import type { Act } from './helpers/act';
import { expectClose, maxAbsDiff } from './helpers/compare';
import type { DType, MonarchOptions } from './helpers/pkg';
import { mulberry32 } from './helpers/rng';
import { dense, monarch } from './helpers/run';
import { randAct } from './helpers/tensors';
import { BF16, DENSE_BF16, DENSE_FP16, FP16 } from './helpers/tolerances';
import { denseRef } from './reference/dense';
import { sequenceRef } from './reference/sequence';
import { videoRef } from './reference/video';

const TOL: Record<string, { atol: number; rtol: number }> = { bfloat16: BF16, float16: FP16 };

describe('bf16 / fp16 vs float64 reference (CPU)', () => {
  for (const dtype of ['bfloat16', 'float16'] as DType[])
    for (const T of [1, 3]) {
      test(`${dtype} sequence N=21, b=5, pre-pad, T=${T}`, () => {
        const rng = mulberry32(80000 + T + (dtype === 'float16' ? 50 : 0));
        const N = 21, B = 2, H = 2, D = 16;
        const q = randAct(rng, B, N, H, D, 2, dtype), k = randAct(rng, B, N, H, D, 1, dtype), v = randAct(rng, B, N, H, D, 1, dtype);
        const got = monarch({ layout: { kind: 'sequence', length: N, blockSize: 5, padding: 'pre' }, heads: H, headDim: D, numIters: T, dtype }, q, k, v);
        expectClose(got, sequenceRef(q, k, v, { blockSize: 5, padding: 'pre', numIters: T }), TOL[dtype], `${dtype} T=${T}`, [B, N, H, D]);
      });
      test(`${dtype} monarchrt 3×2×4 wReduce 2, T=${T}`, () => {
        const rng = mulberry32(80100 + T + (dtype === 'float16' ? 50 : 0));
        const layout: MonarchOptions['layout'] = { kind: 'video', frames: 3, height: 2, width: 4, wReduce: 2 };
        const N = 24, B = 1, H = 2, D = 16;
        const q = randAct(rng, B, N, H, D, 2, dtype), k = randAct(rng, B, N, H, D, 1, dtype), v = randAct(rng, B, N, H, D, 1, dtype);
        const got = monarch({ layout, heads: H, headDim: D, numIters: T, dtype }, q, k, v);
        expectClose(got, videoRef(q, k, v, layout as never, { numIters: T }), TOL[dtype], `${dtype} T=${T}`, [B, N, H, D]);
      });
    }

  test('fp16 is closer to the reference than bf16 (the storage dtype is really used)', () => {
    const rng = mulberry32(80200);
    const N = 16, H = 2, D = 16;
    // bf16 values (8 significant bits) in [2^-10, 16) are exact in fp16 as well; flush smaller ones to 0
    const both = (a: Act): Act => ({ ...a, x: a.x.map((x) => (Math.abs(x) < 2 ** -10 ? 0 : x)) });
    const q = both(randAct(rng, 1, N, H, D, 2, 'bfloat16')), k = both(randAct(rng, 1, N, H, D, 1, 'bfloat16'));
    const v = both(randAct(rng, 1, N, H, D, 1, 'bfloat16'));
    const opts = { layout: { kind: 'sequence' as const, length: N, blockSize: 4 }, heads: H, headDim: D, numIters: 2 };
    const want = sequenceRef(q, k, v, { blockSize: 4, numIters: 2 });
    const eb = maxAbsDiff(monarch({ ...opts, dtype: 'bfloat16' }, q, k, v), want);
    const eh = maxAbsDiff(monarch({ ...opts, dtype: 'float16' }, q, k, v), want);
    const e32 = maxAbsDiff(monarch({ ...opts, dtype: 'float32' }, q, k, v), want);
    expect(eh).toBeLessThan(eb);
    expect(e32).toBeLessThan(eh);
    expect(eb).toBeGreaterThan(0); // bf16 output storage must show some rounding
  });

  for (const dtype of ['bfloat16', 'float16'] as DType[])
    test(`${dtype} dense attention with lse, Nq=9, Nk=17`, () => {
      const rng = mulberry32(80300 + (dtype === 'float16' ? 1 : 0));
      const B = 1, H = 2, D = 16;
      const q = randAct(rng, B, 9, H, D, 2, dtype), k = randAct(rng, B, 17, H, D, 1, dtype), v = randAct(rng, B, 17, H, D, 1, dtype);
      const got = dense(q, k, v, { returnLse: true }, dtype);
      const want = denseRef(q, k, v);
      expectClose(got.out, want.out, dtype === 'bfloat16' ? DENSE_BF16 : DENSE_FP16, dtype, [B, 9, H, D]);
      // lse is float32 output from fp32 accumulation of exactly-represented inputs: fp32 tolerance
      expectClose(got.lse!, want.lse, { atol: 1e-4, rtol: 1e-4 }, `${dtype} lse`, [B, H, 9]);
    });
});
