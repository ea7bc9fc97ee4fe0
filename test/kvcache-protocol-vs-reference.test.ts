// The Self-Forcing KV-cache protocol (explicit-position write / attend, rolling window with sink frames)
// against the float64 reference and the CPU backend's one-shot block-causal forward over the frames each
// chunk sees: every factorization the one-shot forward supports (monarchrt plain and reordered tilings,
// vmonarch), T = 1, 2, 3, recompute 'first-frame', global and rolling windows. 4 denoising passes + 1
// context pass per chunk overwrite the same slice.
import { expectBitIdentical, expectClose } from './helpers/compare';
import { KVCachePool, MonarchAttention } from './helpers/pkg';
import type { MonarchOptions, VideoLayout } from './helpers/pkg';
import { mulberry32 } from './helpers/rng';
import { desc, monarch } from './helpers/run';
import { keyChunks, passReference, protocolInputs, type Window } from './helpers/self-forcing';
import { fromHost, toHost } from './helpers/tensors';
import { FP32, FP32_REORDER } from './helpers/tolerances';
import { videoRef } from './reference/video';

interface Case { layout: VideoLayout; cf: number; T: number; recompute?: 'first-frame'; win?: { localAttnFrames: number; sinkFrames?: number } }

const cases: Case[] = [
  { layout: { kind: 'video', frames: 4, height: 2, width: 3 }, cf: 2, T: 1 },
  { layout: { kind: 'video', frames: 4, height: 2, width: 3 }, cf: 1, T: 2, win: { localAttnFrames: 3, sinkFrames: 1 } },
  { layout: { kind: 'video', frames: 4, height: 2, width: 4, fTied: 2, wReduce: 2 }, cf: 2, T: 2, win: { localAttnFrames: 6, sinkFrames: 2 } },
  { layout: { kind: 'video', frames: 2, height: 4, width: 3, hReduce: 2 }, cf: 1, T: 3, win: { localAttnFrames: 2 } },
  { layout: { kind: 'video', frames: 4, height: 2, width: 2, factorization: 'vmonarch' }, cf: 2, T: 2, recompute: 'first-frame', win: { localAttnFrames: 4, sinkFrames: 2 } },
  { layout: { kind: 'video', frames: 3, height: 3, width: 2, factorization: 'vmonarch' }, cf: 1, T: 1 },
  { layout: { kind: 'video', frames: 2, height: 2, width: 3 }, cf: 1, T: 3, recompute: 'first-frame', win: { localAttnFrames: 2, sinkFrames: 1 } },
];

const PASSES = 4;

function windowOf(c: Case, chunks: number): Window {
  return c.win ? { window: c.win.localAttnFrames / c.cf, sink: (c.win.sinkFrames ?? 0) / c.cf } : { window: chunks, sink: 0 };
}

describe('Self-Forcing protocol vs one-shot forward and float64 reference (CPU, fp32)', () => {
  for (const cs of cases) {
    const { layout, cf, T } = cs;
    test(`${desc({ ...layout, chunkFrames: cf })} T=${T}${cs.recompute ? ' recompute' : ''}${cs.win ? ` window ${cs.win.localAttnFrames} sink ${cs.win.sinkFrames ?? 0}` : ''}`, async () => {
      const rng = mulberry32(60000 + layout.frames * 97 + layout.height * 13 + T * 7 + cf);
      const hw = layout.height * layout.width, chunkN = cf * hw, B = 2, H = 2, D = 8;
      // Rolling caches run past layout.frames; global ones fill it.
      const chunks = cs.win ? layout.frames / cf + 3 : layout.frames / cf;
      const w = windowOf(cs, chunks);
      const base: MonarchOptions = { layout, heads: H, headDim: D, batch: B, numIters: T, causal: { chunkFrames: cf }, recompute: cs.recompute ?? 'none' };
      const all = protocolInputs(rng, chunks, PASSES, B, chunkN, H, D);
      const attn = new MonarchAttention({ ...base, backend: 'cpu' });
      const cache = attn.createKVCache(cs.win);
      try {
        for (const p of all) {
          const frame = p.c * cf;
          const opts = { frame, write: { k: toHost(p.k), v: toHost(p.v) } };
          const out = fromHost((p.t % 2 ? await cache.attend(toHost(p.q), opts) : cache.attendSync(toHost(p.q), opts)) as never);
          const label = `chunk ${p.c} pass ${p.t}`;
          const run = (recompute: boolean) => (q: typeof p.q, k: typeof p.k, v: typeof p.v, vis: VideoLayout, first: boolean) =>
            recompute
              ? monarch({ ...base, layout: vis, recompute: first ? cs.recompute : 'none' }, q, k, v)
              : videoRef(q, k, v, vis, { numIters: T, chunkFrames: cf, recompute: first ? cs.recompute : 'none' });
          expectClose(out, passReference(all, PASSES, w, p, layout, cf, run(true)), FP32_REORDER, `${label} vs one-shot`, [B, chunkN, H, D]);
          expectClose(out, passReference(all, PASSES, w, p, layout, cf, run(false)), FP32, `${label} vs float64`, [B, chunkN, H, D]);
          expect(cache.nextFrame).toBe((p.c + 1) * cf);
          expect(cache.framesCached).toBe(keyChunks(w, p.c).length * cf);
        }
        if (cs.win) expect(cache.evictedFrames).toBeGreaterThan(0);
      } finally {
        cache.dispose();
        attn.dispose();
      }
    });
  }
});

describe('KV cache positions (CPU, fp32)', () => {
  const layout: VideoLayout = { kind: 'video', frames: 6, height: 2, width: 3 };
  const cf = 2, hw = 6, chunkN = 12, B = 1, H = 2, D = 8;
  const base: MonarchOptions = { layout, heads: H, headDim: D, causal: { chunkFrames: cf }, backend: 'cpu' };

  test('write() then attend() without writing, at the newest and at an older position; step() appends after write()', () => {
    const rng = mulberry32(61000);
    const all = protocolInputs(rng, 3, 0, B, chunkN, H, D);
    const attn = new MonarchAttention(base);
    const cache = attn.createKVCache();
    try {
      for (const p of all) cache.writeSync(toHost(p.k), toHost(p.v), { frame: p.c * cf });
      expect(cache.nextFrame).toBe(6);
      const w = { window: 3, sink: 0 };
      for (const c of [2, 0, 1]) {
        const got = fromHost(cache.attendSync(toHost(all[c].q), { frame: c * cf }) as never);
        const want = passReference(all, 0, w, all[c], layout, cf, (q, k, v, vis) => videoRef(q, k, v, vis, { chunkFrames: cf }));
        expectClose(got, want, FP32, `attend chunk ${c}`, [B, chunkN, H, D]);
      }
      cache.reset();
      cache.writeSync(toHost(all[0].k), toHost(all[0].v), { frame: 0 });
      const s1 = fromHost(cache.stepSync(toHost(all[1].q), toHost(all[1].k), toHost(all[1].v)) as never);
      const a1 = fromHost(cache.attendSync(toHost(all[1].q), { frame: 2 }) as never);
      expectBitIdentical(a1, s1, 'attend at frame 2 after step = the step');
      expect(cache.nextFrame).toBe(4);
    } finally {
      cache.dispose();
      attn.dispose();
    }
  });

  test('steps on a rolling cache run past layout.frames; queued async steps append in call order', async () => {
    const rng = mulberry32(61500);
    const chunks = 7, w: Window = { window: 2, sink: 1 };
    const all = protocolInputs(rng, chunks, 0, B, chunkN, H, D);
    const attn = new MonarchAttention(base);
    const cache = attn.createKVCache({ localAttnFrames: 4, sinkFrames: 2 });
    try {
      expect(cache.maxFrames).toBe(4);
      expect(cache.localAttnFrames).toBe(4);
      expect(cache.sinkFrames).toBe(2);
      const outs = await Promise.all(all.map((p) => cache.step(toHost(p.q), toHost(p.k), toHost(p.v))));
      outs.forEach((o, c) => {
        const want = passReference(all, 0, w, all[c], layout, cf, (q, k, v, vis) => videoRef(q, k, v, vis, { chunkFrames: cf }));
        expectClose(fromHost(o as never), want, FP32, `step ${c}`, [B, chunkN, H, D]);
      });
      expect(cache.nextFrame).toBe(14);
      expect(cache.framesCached).toBe(4);
      expect(cache.evictedFrames).toBe(10);  // chunks 1..5; the sink (chunk 0) and chunk 6 stay
      // time(): the next step would evict; a rewrite of the last chunk can be timed and changes nothing.
      const set: [never, never, never] = [toHost(all[6].q), toHost(all[6].k), toHost(all[6].v)] as never;
      expect(() => cache.time([set], { iters: 1 })).toThrow(/would evict frames; time frame 12/);
      expect(cache.time([set], { frame: 12, warmup: 0, iters: 2 })).toHaveLength(2);
      expect(cache.nextFrame).toBe(14);
      const again = fromHost(cache.attendSync(toHost(all[6].q), { frame: 12 }) as never);
      expectBitIdentical(again, fromHost(outs[6] as never), 'chunk 6 after time()');
    } finally {
      cache.dispose();
      attn.dispose();
    }
  });

  test('bad positions and window options throw clear errors and leave the cache usable', async () => {
    const rng = mulberry32(62000);
    const [p0, p1] = protocolInputs(rng, 2, 0, B, chunkN, H, D);
    const attn = new MonarchAttention(base);
    expect(() => attn.createKVCache({ sinkFrames: 2 })).toThrow(/sinkFrames 2 needs localAttnFrames/);
    expect(() => attn.createKVCache({ localAttnFrames: 3 })).toThrow(/localAttnFrames 3 must be a multiple of causal.chunkFrames 2/);
    expect(() => attn.createKVCache({ localAttnFrames: 2, sinkFrames: 2 })).toThrow(/localAttnFrames 2 is out of range 4\.\./);
    expect(() => attn.createKVCache({ localAttnFrames: 4, sinkFrames: 1 })).toThrow(/sinkFrames 1 must be a multiple/);
    expect(() => attn.createKVCache({ localAttnFrames: '4' } as never)).toThrow(TypeError);
    const cache = attn.createKVCache({ localAttnFrames: 4 });
    const plain = attn.createKVCache();
    try {
      const k = toHost(p0.k), v = toHost(p0.v), q = toHost(p0.q);
      expect(() => cache.attendSync(q, { frame: 0 })).toThrow(/frame 0: no keys are cached for frames 0\.\.1 \(no frames are cached\); pass write/);
      expect(() => cache.writeSync(k, v, { frame: 2 })).toThrow(/frame 2 would leave frames 0\.\.1 unwritten/);
      expect(() => cache.writeSync(k, v, { frame: 1 })).toThrow(/frame 1 must be a non-negative multiple of causal.chunkFrames 2/);
      expect(() => cache.writeSync(k, v, { frame: 1.5 })).toThrow(TypeError);
      expect(() => cache.writeSync(k, v, {} as never)).toThrow(/frame must be an integer frame position/);
      expect(() => cache.attendSync(q, undefined as never)).toThrow(/attend options/);
      expect(() => cache.writeSync(k, toHost(p1.k).data as never, { frame: 0 })).toThrow(/v/);
      expect(() => cache.attendSync(q, { frame: 0, out: q, write: { k, v } })).toThrow(/out must not share memory with q/);
      for (let c = 0; c < 3; c++) cache.writeSync(k, v, { frame: 2 * c });
      expect(() => cache.writeSync(k, v, { frame: 0 })).toThrow(/frame 0 was evicted from the rolling window \(cached: frames 2\.\.5\)/);
      expect(() => cache.attendSync(q, { frame: 0 })).toThrow(/frame 0 needs frames 0\.\.1, but frames before 2 were evicted/);
      expect(cache.attendSync(q, { frame: 4 }).shape).toEqual([B, chunkN, H, D]);
      expect(() => plain.writeSync(k, v, { frame: 6 })).toThrow(/frame 6 is out of range 0\.\.4 \(layout.frames 6; set localAttnFrames/);
      // an async call rejects (never throws synchronously) and the cache stays usable
      await expect(cache.write(k, v, { frame: 8 })).rejects.toThrow(/frame 8 would leave frames 6\.\.7 unwritten/);
      expect(cache.attendSync(q, { frame: 4, write: { k, v } }).shape).toEqual([B, chunkN, H, D]);
    } finally {
      cache.dispose();
      plain.dispose();
      attn.dispose();
    }
  });
});

describe('KVCachePool (CPU)', () => {
  const layout: VideoLayout = { kind: 'video', frames: 4, height: 2, width: 4, fTied: 2, wReduce: 2 };
  const cf = 2, chunkN = 16, B = 1, H = 2, D = 8, L = 3;
  const base: MonarchOptions = { layout, heads: H, headDim: D, numIters: 2, causal: { chunkFrames: cf }, backend: 'cpu' };

  test('bytesFor before allocating; maxBytes refuses; layers are independent; reset() reuses the memory', async () => {
    const bytes = KVCachePool.bytesFor(base, { layers: L, localAttnFrames: 4 });
    // cache: 2 (K, V) · L · 2 slots · chunkN · H · D · 4 bytes
    expect(bytes.cache).toBe(2 * L * 2 * chunkN * H * D * 4);
    expect(bytes.total).toBe(bytes.cache + bytes.workspace + bytes.staging);
    const attn = new MonarchAttention(base);
    expect(() => attn.createKVCachePool({ layers: L, localAttnFrames: 4, maxBytes: bytes.total - 1 })).toThrow(/KV cache needs \d+ bytes .* over maxBytes/);
    expect(() => attn.createKVCachePool({ layers: 0 })).toThrow(/layers 0 is out of range/);
    const pool = attn.createKVCachePool({ layers: L, localAttnFrames: 4, maxBytes: bytes.total });
    try {
      expect(pool.bytes).toEqual(bytes);
      expect(pool.layers).toHaveLength(L);
      expect(() => pool.layers[1].dispose()).toThrow(/KVCache 1 belongs to a KVCachePool; dispose the pool/);
      const rng = mulberry32(63000);
      const w: Window = { window: 2, sink: 0 };
      const inputs = pool.layers.map(() => protocolInputs(rng, 4, 1, B, chunkN, H, D));
      const session = async (): Promise<Float64Array[]> => {
        const outs: Float64Array[] = [];
        for (let c = 0; c < 4; c++)
          for (let t = 0; t <= 1; t++)
            for (let l = 0; l < L; l++) {
              const p = inputs[l][c * 2 + t];
              const o = await pool.layers[l].attend(toHost(p.q), { frame: c * cf, write: { k: toHost(p.k), v: toHost(p.v) } });
              const got = fromHost(o as never);
              const want = passReference(inputs[l], 1, w, p, layout, cf, (q, k, v, vis) => videoRef(q, k, v, vis, { numIters: 2, chunkFrames: cf }));
              expectClose(got, want, FP32, `layer ${l} chunk ${c} pass ${t}`, [B, chunkN, H, D]);
              outs.push(got);
            }
        return outs;
      };
      const first = await session();
      expect(() => pool.layers[0].attendSync(toHost(inputs[0][0].q), { frame: 0 })).toThrow(/evicted/);
      pool.reset();
      for (const c of pool.layers) expect(c.nextFrame).toBe(0);
      const second = await session();
      second.forEach((o, i) => expectBitIdentical(o, first[i], `session 2 output ${i}`));
    } finally {
      pool.dispose();
      pool.dispose();
      attn.dispose();
    }
    expect(() => pool.layers[0].stepSync(null as never, null as never, null as never)).toThrow('KVCache was disposed (its KVCachePool was disposed)');
    expect(() => pool.reset()).toThrow('KVCachePool was disposed');
  });
});
