// Block-causal video attention and KV-cache decoding (§B.4) against the float64 reference: causal tiles of
// chunkFrames frames (monarchrt with fTied/hReduce/wReduce, vmonarch), T = 1, 2; the KV cache returns
// each chunk's rows of the block-causal forward, counts frames, resets and refuses to overflow.
import { expectClose, sliceRows, sliceTokens } from './helpers/cmp-act';
import { MonarchAttention } from './helpers/pkg';
import type { VideoLayout } from './helpers/pkg';
import { mulberry32 } from './helpers/rng';
import { desc, monarch } from './helpers/run';
import { fromHost, randAct, toHost } from './helpers/tensors';
import { FP32 } from './helpers/tolerances';
import { videoRef } from './reference/video';

const cases: Array<{ layout: VideoLayout; cf: number }> = [
  { layout: { kind: 'video', frames: 4, height: 3, width: 2 }, cf: 2 },
  { layout: { kind: 'video', frames: 3, height: 2, width: 3 }, cf: 1 },
  { layout: { kind: 'video', frames: 4, height: 2, width: 4, fTied: 2, wReduce: 2 }, cf: 2 },
  { layout: { kind: 'video', frames: 6, height: 1, width: 3, factorization: 'vmonarch' }, cf: 2 },
  { layout: { kind: 'video', frames: 3, height: 3, width: 3, factorization: 'vmonarch' }, cf: 3 },
];

describe('block-causal video vs float64 reference (CPU, fp32)', () => {
  for (const { layout, cf } of cases)
    for (const T of [1, 2])
      for (const seed of [1, 2])
        test(`${desc({ ...layout, chunkFrames: cf })} T=${T} seed=${seed}`, () => {
          const rng = mulberry32(50000 * seed + layout.frames * 100 + layout.height * 10 + layout.width + T * 1000 + cf * 7);
          const N = layout.frames * layout.height * layout.width, B = 2, H = 1, D = 8;
          const q = randAct(rng, B, N, H, D, 2), k = randAct(rng, B, N, H, D), v = randAct(rng, B, N, H, D);
          const got = monarch({ layout, heads: H, headDim: D, numIters: T, causal: { chunkFrames: cf } }, q, k, v);
          expectClose(got, videoRef(q, k, v, layout, { numIters: T, chunkFrames: cf }), FP32, `T=${T}`, [B, N, H, D]);
        });
});

describe('KV cache (CPU, fp32)', () => {
  test('steps reproduce the reference block-causal rows; framesCached, reset, overflow', () => {
    const rng = mulberry32(51000);
    const layout: VideoLayout = { kind: 'video', frames: 6, height: 2, width: 3 };
    const cf = 2, hw = 6, N = 36, B = 1, H = 2, D = 8;
    const q = randAct(rng, B, N, H, D, 2), k = randAct(rng, B, N, H, D), v = randAct(rng, B, N, H, D);
    const want = videoRef(q, k, v, layout, { chunkFrames: cf });
    const attn = new MonarchAttention({ layout, heads: H, headDim: D, causal: { chunkFrames: cf }, backend: 'cpu' });
    const cache = attn.createKVCache();
    try {
      const chunkN = cf * hw;
      const run = (c: number): Float64Array => {
        const s = (a: typeof q) => toHost(sliceTokens(a, c * chunkN, (c + 1) * chunkN));
        return fromHost(cache.stepSync(s(q), s(k), s(v)) as never);
      };
      for (let c = 0; c < 3; c++) {
        expectClose(run(c), sliceRows(want, B, N, H, D, c * chunkN, (c + 1) * chunkN), FP32, `chunk ${c}`, [B, chunkN, H, D]);
        expect(cache.framesCached).toBe((c + 1) * cf);
      }
      // full: a fourth chunk does not fit in 6 frames
      expect(() => run(0)).toThrow(/full|frames/i);
      cache.reset();
      expect(cache.framesCached).toBe(0);
      // after reset the first chunk again gives chunk 0's rows
      expectClose(run(0), sliceRows(want, B, N, H, D, 0, chunkN), FP32, 'chunk 0 after reset', [B, chunkN, H, D]);
    } finally {
      cache.dispose();
      attn.dispose();
    }
  });

  test('time() times the next step without taking it; the cache stays exact and full caches refuse', () => {
    const rng = mulberry32(51500);
    const layout: VideoLayout = { kind: 'video', frames: 6, height: 2, width: 3 };
    const cf = 2, chunkN = 12, N = 36, B = 1, H = 2, D = 8;
    const q = randAct(rng, B, N, H, D, 2), k = randAct(rng, B, N, H, D), v = randAct(rng, B, N, H, D);
    const other = [randAct(rng, B, chunkN, H, D), randAct(rng, B, chunkN, H, D), randAct(rng, B, chunkN, H, D)].map((a) => toHost(a));
    const want = videoRef(q, k, v, layout, { chunkFrames: cf });
    const attn = new MonarchAttention({ layout, heads: H, headDim: D, causal: { chunkFrames: cf }, backend: 'cpu' });
    const cache = attn.createKVCache();
    try {
      const part = (a: typeof q, c: number) => toHost(sliceTokens(a, c * chunkN, (c + 1) * chunkN));
      cache.stepSync(part(q, 0), part(k, 0), part(v, 0));
      // time() writes its chunk's keys at frame 2 (with other inputs), then the real step must overwrite them.
      const times = cache.time([[other[0], other[1], other[2]], [part(q, 1), part(k, 1), part(v, 1)]], { warmup: 1, iters: 3 });
      expect(times).toHaveLength(3);
      for (const t of times) expect(t).toBeGreaterThanOrEqual(0);
      expect(cache.framesCached).toBe(cf);
      for (let c = 1; c < 3; c++) {
        const got = fromHost(cache.stepSync(part(q, c), part(k, c), part(v, c)) as never);
        expectClose(got, sliceRows(want, B, N, H, D, c * chunkN, (c + 1) * chunkN), FP32, `chunk ${c} after time()`, [B, chunkN, H, D]);
      }
      expect(() => cache.time([[other[0], other[1], other[2]]], { iters: 1 })).toThrow(/KVCache is full: 6 of 6 frames/);
      cache.reset();
      expect(() => cache.time([[other[0], other[1]] as never])).toThrow(/inputs\[0\] must be a \[q, k, v\] triple/);
      expect(() => cache.time([[part(q, 0), part(k, 0), toHost(sliceTokens(v, 0, chunkN - 1))]])).toThrow(/^inputs\[0\]: /);
    } finally {
      cache.dispose();
      attn.dispose();
    }
    expect(() => cache.time([[other[0], other[1], other[2]]])).toThrow('KVCache was disposed');
  });

  test("recompute 'first-frame': the first step's frame-0 rows are dense rows, like the one-shot forward", () => {
    const rng = mulberry32(52000);
    const layout: VideoLayout = { kind: 'video', frames: 4, height: 2, width: 2, factorization: 'vmonarch' };
    const cf = 2, hw = 4, N = 16, chunkN = cf * hw, B = 2, H = 1, D = 8;
    const q = randAct(rng, B, N, H, D, 2), k = randAct(rng, B, N, H, D), v = randAct(rng, B, N, H, D);
    const want = videoRef(q, k, v, layout, { chunkFrames: cf, recompute: 'first-frame' });
    const attn = new MonarchAttention({ layout, heads: H, headDim: D, batch: B, causal: { chunkFrames: cf }, recompute: 'first-frame', backend: 'cpu' });
    const cache = attn.createKVCache();
    try {
      for (let c = 0; c < 2; c++) {
        const s = (a: typeof q) => toHost(sliceTokens(a, c * chunkN, (c + 1) * chunkN));
        const got = fromHost(cache.stepSync(s(q), s(k), s(v)) as never);
        expectClose(got, sliceRows(want, B, N, H, D, c * chunkN, (c + 1) * chunkN), FP32, `chunk ${c}`, [B, chunkN, H, D]);
      }
    } finally {
      cache.dispose();
      attn.dispose();
    }
  });
});
