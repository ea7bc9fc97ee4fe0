// Serving API of the KV cache on the CPU backend (attend / write / step and KVCachePool): `out` through the
// one checkOut path, AbortSignal (what an abort leaves in the cache), close / dispose while busy (the pool
// owns the memory), memory figures, diagnostics_channel events, no native allocation at steady state.
import * as diagnostics from 'node:diagnostics_channel';
import { allocTensor, KVCachePool, memoryStats, MonarchAttention, tensor } from './helpers/pkg';
import type { HostTensor } from './helpers/pkg';

let seed = 1 + Math.floor(Math.random() * 1e6);
const rand = (): number => { seed = (Math.imul(seed, 1103515245) + 12345) >>> 0; return seed / 4294967296 - 0.5; };
const H = 2, D = 16, hw = 4 * 8, cf = 2, chunkN = cf * hw, n = chunkN * H * D, sh = [1, chunkN, H, D];
const video = { backend: 'cpu' as const, layout: { kind: 'video' as const, frames: 6, height: 4, width: 8 }, heads: H, headDim: D, causal: { chunkFrames: cf }, numIters: 2 };
const t = (): HostTensor => tensor(Float32Array.from({ length: n }, rand), sh);
const same = (a: HostTensor, b: HostTensor): boolean => a.data.length === b.data.length && a.data.every((x, i) => Object.is(x, b.data[i]));

describe('KV cache out option', () => {
  test('attend / step write ordinary, addon and shared host outs; the result is out itself', async () => {
    const attn = new MonarchAttention(video);
    const cache = attn.createKVCache(), ref = attn.createKVCache();
    const [k0, v0, q1, k1, v1] = [t(), t(), t(), t(), t()];
    ref.writeSync(k0, v0, { frame: 0 });
    const want = ref.attendSync(q1, { frame: 2, write: { k: k1, v: v1 } });
    cache.writeSync(k0, v0, { frame: 0 });
    const outs = [tensor(new Float32Array(n), sh), allocTensor(sh), tensor(new Float32Array(new SharedArrayBuffer(n * 4)), sh)];
    for (const out of outs) {
      const r = await cache.attend(q1, { frame: 2, write: { k: k1, v: v1 }, out });
      expect(r).toBe(out);
      expect(same(out, want)).toBe(true);
    }
    const o2 = tensor(new Float32Array(n), sh);
    expect(cache.attendSync(q1, { frame: 2, out: o2 })).toBe(o2);
    expect(same(o2, want)).toBe(true);
    // step: chunk 2 (nextFrame 4), with and without out
    const [q2, k2, v2] = [t(), t(), t()];
    const w2 = ref.stepSync(q2, k2, v2);
    const o3 = allocTensor(sh);
    expect(await cache.step(q2, k2, v2, { out: o3 })).toBe(o3);
    expect(same(o3, w2)).toBe(true);
    cache.dispose();
    ref.dispose();
    attn.dispose();
  });

  test('a wrong out is rejected naming out; out cannot alias q, k or v', async () => {
    const attn = new MonarchAttention(video);
    const cache = attn.createKVCache();
    const [q, k, v] = [t(), t(), t()];
    await expect(cache.attend(q, { frame: 0, write: { k, v }, out: tensor(new Float32Array(n), [1, chunkN, H * D, 1]) }))
      .rejects.toThrow(/out\.shape \[1, 64, 32, 1\] must equal q\.shape/);
    await expect(cache.step(q, k, v, { out: k })).rejects.toThrow(/out must not share memory with k/);
    const view = tensor(new Float32Array(v.data.buffer, 0, n), sh);
    expect(() => cache.stepSync(q, k, v, { out: view })).toThrow(/out must not share memory with v/);
    expect(() => cache.stepSync(q, k, v, { out: 3 as never })).toThrow(TypeError);
    expect(cache.nextFrame).toBe(0);  // nothing ran
    cache.dispose();
    attn.dispose();
  });
});

describe('KV cache AbortSignal', () => {
  test('aborted before the call: nothing is written, the cache is unchanged', async () => {
    const attn = new MonarchAttention(video);
    const cache = attn.createKVCache();
    const ac = new AbortController();
    ac.abort();
    const [q, k, v] = [t(), t(), t()];
    await expect(cache.write(k, v, { frame: 0, signal: ac.signal })).rejects.toMatchObject({ name: 'AbortError' });
    await expect(cache.attend(q, { frame: 0, write: { k, v }, signal: ac.signal })).rejects.toMatchObject({ name: 'AbortError' });
    await expect(cache.step(q, k, v, { signal: ac.signal })).rejects.toMatchObject({ name: 'AbortError' });
    await expect(cache.write(k, v, { frame: 0, signal: {} as AbortSignal })).rejects.toThrow(/signal must be an AbortSignal/);
    expect(cache.nextFrame).toBe(0);
    await cache.step(q, k, v);
    expect(cache.nextFrame).toBe(2);
    cache.dispose();
    attn.dispose();
  });

  test('aborted at a random moment: AbortError or the result; a started write is kept; the cache stays usable', async () => {
    const attn = new MonarchAttention(video);
    let aborted = 0, kept = 0;
    for (let it = 0; it < 8; it++) {
      const cache = attn.createKVCache({ localAttnFrames: 4, sinkFrames: 2 }), ref = attn.createKVCache({ localAttnFrames: 4, sinkFrames: 2 });
      const [k0, v0, q1, k1, v1, q2] = [t(), t(), t(), t(), t(), t()];
      for (const c of [cache, ref]) c.writeSync(k0, v0, { frame: 0 });
      const ac = new AbortController();
      const p = cache.attend(q1, { frame: 2, write: { k: k1, v: v1 }, signal: ac.signal });
      for (let i = 0; i < it % 4; i++) await new Promise((r) => setImmediate(r));
      ac.abort(new Error('client went away'));
      try {
        await p;
      } catch (e) {
        expect(e).toMatchObject({ name: 'AbortError' });
        aborted++;
      }
      if (cache.nextFrame === 4) {  // the write ran: its k, v are in the cache
        kept++;
        ref.writeSync(k1, v1, { frame: 2 });
        expect(same(cache.attendSync(q2, { frame: 2 }), ref.attendSync(q2, { frame: 2 }))).toBe(true);
      } else {
        expect(cache.nextFrame).toBe(2);
      }
      expect((await cache.step(q2, k1, v1)).shape).toEqual(sh);  // usable, no failure recorded
      cache.dispose();
      ref.dispose();
    }
    expect(aborted + kept).toBeGreaterThan(0);
    attn.dispose();
  });
});

describe('KVCachePool lifecycle and memory', () => {
  test('dispose() while busy: queued calls complete, later calls throw, memory freed after; close() resolves then', async () => {
    const attn = new MonarchAttention(video);
    const pool = attn.createKVCachePool({ layers: 2 });
    const [q, k, v] = [t(), t(), t()];
    const p0 = pool.layers[0].step(q, k, v);
    const p1 = pool.layers[1].step(q, k, v);
    pool.dispose();
    expect(pool.disposed).toBe(true);
    expect(pool.memory).toEqual({ workspace: 0, staging: 0, scratch: 0, cache: 0, device: 0 });
    await expect(pool.layers[0].step(q, k, v)).rejects.toThrow('KVCache was disposed (its KVCachePool was disposed)');
    expect(() => pool.reset()).toThrow('KVCachePool was disposed');
    const [o0, o1] = await Promise.all([p0, p1]);
    expect(same(o0, o1)).toBe(true);  // both layers saw the same inputs
    await expect(pool.close()).resolves.toBeUndefined();
    pool.dispose();  // idempotent
    attn.dispose();
  });

  test('a pool layer is owned by its pool; createKVCache()\'s cache disposes its one-layer pool', async () => {
    const attn = new MonarchAttention(video);
    const pool = attn.createKVCachePool({ layers: 2 });
    expect(() => pool.layers[1].dispose()).toThrow(/KVCache 1 belongs to a KVCachePool; dispose the pool/);
    expect(() => pool.layers[0][Symbol.dispose]()).toThrow(/belongs to a KVCachePool/);
    await expect(pool.layers[0].close()).rejects.toThrow(/belongs to a KVCachePool/);
    await pool[Symbol.asyncDispose]();
    expect(pool.disposed).toBe(true);
    const a = attn.createKVCache();
    const p = a.step(t(), t(), t());
    const closed = a.close();
    await expect(p).resolves.toBeDefined();
    await closed;
    expect(() => a.stepSync(t(), t(), t())).toThrow('KVCache was disposed');
    const b = attn.createKVCache();
    b[Symbol.dispose]();
    expect(() => b.reset()).toThrow('KVCache was disposed');
    attn.dispose();
  });

  test('memory figures match KVCachePool.bytesFor; staging only for ordinary inputs; a cache reports its pool', async () => {
    const attn = new MonarchAttention(video);
    const pool = attn.createKVCachePool({ layers: 3, localAttnFrames: 4 });
    const bytes = KVCachePool.bytesFor(video, { layers: 3, localAttnFrames: 4 });
    const m0 = pool.memory;
    expect(m0).toMatchObject({ cache: bytes.cache, workspace: bytes.workspace, staging: 0, device: 0 });
    expect(pool.layers[2].memory).toEqual(m0);
    await pool.layers[0].write(allocTensor(sh), allocTensor(sh), { frame: 0 });
    expect(pool.memory.staging).toBe(0);
    await pool.layers[0].attend(t(), { frame: 0 });
    expect(pool.memory.staging).toBe(n * 4);
    await pool.layers[1].step(t(), t(), t());
    expect(pool.memory.staging).toBe(3 * n * 4);  // the q buffer is reused, k and v added
    pool.dispose();
    attn.dispose();
  });

  test('steady-state attend / write / step allocate no native memory', async () => {
    const attn = new MonarchAttention(video);
    const pool = attn.createKVCachePool({ layers: 2, localAttnFrames: 4, sinkFrames: 2 });
    const [q, k, v] = [t(), t(), t()];
    const round = async (c: number): Promise<void> => {
      for (const layer of pool.layers) {
        await layer.write(k, v, { frame: c * cf });
        await layer.attend(q, { frame: c * cf, write: { k, v } });
        layer.attendSync(q, { frame: c * cf });
      }
    };
    await round(0);
    await round(1);
    const before = memoryStats();
    for (let c = 2; c < 6; c++) await round(c);  // rolling: evicts from c = 2 on
    const after = memoryStats();
    expect(after.hostAllocations).toBe(before.hostAllocations);
    expect(after.deviceAllocations).toBe(before.deviceAllocations);
    pool.dispose();
    attn.dispose();
  });

  test('diagnostics_channel: write / attend / step events with input and staged bytes', async () => {
    const events: Array<Record<string, unknown>> = [];
    const onMessage = (m: unknown): void => { events.push(m as Record<string, unknown>); };
    diagnostics.subscribe('monarch-attention:call', onMessage);
    const attn = new MonarchAttention(video);
    const cache = attn.createKVCache();
    try {
      await cache.write(t(), t(), { frame: 0 });
      await cache.attend(allocTensor(sh), { frame: 0 });
      await cache.step(t(), t(), t());
      await expect(cache.attend(t(), { frame: 4 })).rejects.toThrow(/no keys are cached/);
    } finally {
      diagnostics.unsubscribe('monarch-attention:call', onMessage);
      cache.dispose();
      attn.dispose();
    }
    expect(events.map((e) => `${e.op}:${e.phase}`)).toEqual(['write:start', 'write:end', 'attend:start', 'attend:end', 'step:start', 'step:end', 'attend:start', 'attend:end']);
    expect(events[0]).toMatchObject({ backend: 'cpu', device: false, shape: sh, inputBytes: 2 * n * 4, stagedBytes: 2 * n * 4 });
    expect(events[2]).toMatchObject({ inputBytes: n * 4, stagedBytes: 0 });
    expect(events[4]).toMatchObject({ inputBytes: 3 * n * 4, stagedBytes: 3 * n * 4 });
    expect(events[7].error).toMatch(/no keys are cached/);
    expect(events[7].id).toBe(events[6].id);
  });
});
