// forward() (off the event loop) equals forwardSync() bit for bit; BHSD inputs give the BSHD result
// transposed (bit-identical: the same arithmetic on strided data); the same holds for the KV cache and
// dense attention. Also: one instance reused for several forwards gives the same answer every time.
import { expectBitIdentical } from './helpers/compare';
import { MonarchAttention, denseAttention, denseAttentionSync } from './helpers/pkg';
import type { MonarchOptions } from './helpers/pkg';
import { mulberry32 } from './helpers/rng';
import { monarch } from './helpers/run';
import { fromHost, randAct, toHost } from './helpers/tensors';

describe('sync ≡ async, BSHD ≡ BHSD', () => {
  const variants: Array<[string, MonarchOptions]> = [
    ['sequence N=14 b=4 pre T=2', { layout: { kind: 'sequence', length: 14, blockSize: 4, padding: 'pre' }, heads: 2, headDim: 8, numIters: 2, batch: 2 }],
    ['monarchrt 2×4×3 hReduce 2 T=3', { layout: { kind: 'video', frames: 2, height: 4, width: 3, hReduce: 2 }, heads: 2, headDim: 8, numIters: 3, batch: 2 }],
    ['vmonarch causal 4×2×2 chunks of 2', { layout: { kind: 'video', frames: 4, height: 2, width: 2, factorization: 'vmonarch' }, heads: 2, headDim: 8, batch: 2, causal: { chunkFrames: 2 } }],
  ];
  for (const [name, opts] of variants)
    test(name, async () => {
      const rng = mulberry32(90000 + name.length);
      const l = opts.layout;
      const N = l.kind === 'sequence' ? l.length : l.frames * l.height * l.width;
      const q = randAct(rng, 2, N, 2, 8, 2), k = randAct(rng, 2, N, 2, 8), v = randAct(rng, 2, N, 2, 8);
      const attn = new MonarchAttention({ ...opts, backend: 'cpu' });
      try {
        const sync = fromHost(attn.forwardSync(toHost(q), toHost(k), toHost(v)) as never);
        const promise = attn.forward(toHost(q), toHost(k), toHost(v));
        expect(promise).toBeInstanceOf(Promise);
        const asyncOut = fromHost((await promise) as never);
        expectBitIdentical(asyncOut, sync, 'async vs sync');
        const again = fromHost(attn.forwardSync(toHost(q), toHost(k), toHost(v)) as never);
        expectBitIdentical(again, sync, 'second forwardSync on the same instance');
      } finally {
        attn.dispose();
      }
      const bhsd = monarch({ ...opts, tensorLayout: 'BHSD' }, q, k, v); // returned as BSHD by the helper
      const bshd = monarch(opts, q, k, v);
      expectBitIdentical(bhsd, bshd, 'BHSD (transposed back) vs BSHD');
    });

  test('output keeps q\'s layout, shape and dtype', () => {
    const rng = mulberry32(90100);
    const q = randAct(rng, 1, 6, 3, 8, 1, 'bfloat16'), k = randAct(rng, 1, 6, 3, 8, 1, 'bfloat16'), v = randAct(rng, 1, 6, 3, 8, 1, 'bfloat16');
    const attn = new MonarchAttention({ layout: { kind: 'sequence', length: 6, blockSize: 2 }, heads: 3, headDim: 8, dtype: 'bfloat16', tensorLayout: 'BHSD', backend: 'cpu' });
    try {
      const out = attn.forwardSync(toHost(q, 'bfloat16', 'BHSD'), toHost(k, 'bfloat16', 'BHSD'), toHost(v, 'bfloat16', 'BHSD'));
      expect(out.shape).toEqual([1, 3, 6, 8]);
      expect(out.dtype).toBe('bfloat16');
      expect(Object.prototype.toString.call((out as { data: unknown }).data)).toBe('[object Uint16Array]');
    } finally {
      attn.dispose();
    }
  });

  test('KV cache: step() ≡ stepSync()', async () => {
    const rng = mulberry32(90200);
    const opts: MonarchOptions = { layout: { kind: 'video', frames: 4, height: 2, width: 3 }, heads: 1, headDim: 8, causal: { chunkFrames: 2 }, backend: 'cpu' };
    const chunk = (): ReturnType<typeof randAct> => randAct(rng, 1, 12, 1, 8);
    const qs = [chunk(), chunk()], ks = [chunk(), chunk()], vs = [chunk(), chunk()];
    const outs: Float64Array[][] = [];
    for (const mode of ['sync', 'async']) {
      const attn = new MonarchAttention(opts);
      const cache = attn.createKVCache();
      const o: Float64Array[] = [];
      for (let c = 0; c < 2; c++) {
        const args = [toHost(qs[c]), toHost(ks[c]), toHost(vs[c])] as const;
        o.push(fromHost((mode === 'sync' ? cache.stepSync(...args) : await cache.step(...args)) as never));
      }
      outs.push(o);
      cache.dispose();
      attn.dispose();
    }
    for (let c = 0; c < 2; c++) expectBitIdentical(outs[1][c], outs[0][c], `chunk ${c}`);
  });

  test('dense: async ≡ sync, BHSD ≡ BSHD', async () => {
    const rng = mulberry32(90300);
    const q = randAct(rng, 2, 5, 2, 8, 2), k = randAct(rng, 2, 9, 2, 8), v = randAct(rng, 2, 9, 2, 8);
    const o = { backend: 'cpu' as const, returnLse: true, returnEntropy: true };
    const s = denseAttentionSync(toHost(q), toHost(k), toHost(v), o);
    const a = await denseAttention(toHost(q), toHost(k), toHost(v), o);
    expectBitIdentical(fromHost(a.out as never), fromHost(s.out as never), 'out');
    expectBitIdentical(a.lse!.data, s.lse!.data, 'lse');
    expectBitIdentical(a.entropy!.data, s.entropy!.data, 'entropy');
    const t = denseAttentionSync(toHost(q, 'float32', 'BHSD'), toHost(k, 'float32', 'BHSD'), toHost(v, 'float32', 'BHSD'), { ...o, tensorLayout: 'BHSD' });
    expectBitIdentical(fromHost(t.out as never, 'BHSD'), fromHost(s.out as never), 'BHSD out');
    expectBitIdentical(t.lse!.data, s.lse!.data, 'BHSD lse');
  });

  test('CPU thread count does not change the result (threads 1 vs 2 vs all, bit-identical)', () => {
    const rng = mulberry32(90400);
    const opts: MonarchOptions = { layout: { kind: 'video', frames: 3, height: 4, width: 5 }, heads: 3, headDim: 8, numIters: 2, batch: 2 };
    const q = randAct(rng, 2, 60, 3, 8, 2), k = randAct(rng, 2, 60, 3, 8), v = randAct(rng, 2, 60, 3, 8);
    const one = monarch({ ...opts, threads: 1 }, q, k, v);
    expectBitIdentical(monarch({ ...opts, threads: 2 }, q, k, v), one, 'threads 2 vs 1');
    expectBitIdentical(monarch({ ...opts, threads: 0 }, q, k, v), one, 'threads 0 (all) vs 1');
  });
});
