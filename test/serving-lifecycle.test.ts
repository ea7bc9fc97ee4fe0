// Serving API on the CPU backend: `out`, AbortSignal, dispose/close while busy, Symbol.dispose, memory
// figures, diagnostics_channel events, and no native allocation on the steady-state path.
import * as diagnostics from 'node:diagnostics_channel';
import { allocTensor, denseAttention, hostMemoryKind, memoryStats, MonarchAttention, tensor } from './helpers/pkg';
import type { HostTensor } from './helpers/pkg';

let seed = 1 + Math.floor(Math.random() * 1e6);
const rand = (): number => { seed = (Math.imul(seed, 1103515245) + 12345) >>> 0; return seed / 4294967296 - 0.5; };
const S = 256, H = 2, D = 16, shape = [1, S, H, D];
const make = (): HostTensor => tensor(Float32Array.from({ length: S * H * D }, rand), shape);
const opts = { backend: 'cpu' as const, layout: { kind: 'sequence' as const, length: S, blockSize: 16 }, heads: H, headDim: D, numIters: 2 };
const video = { backend: 'cpu' as const, layout: { kind: 'video' as const, frames: 4, height: 4, width: 8 }, heads: H, headDim: D, causal: { chunkFrames: 2 } };

describe('out option', () => {
  test('ordinary, addon and shared out arrays receive the result and are returned', async () => {
    const attn = new MonarchAttention(opts);
    const [q, k, v] = [make(), make(), make()];
    const want = attn.forwardSync(q, k, v).data;
    const outs = [tensor(new Float32Array(S * H * D), shape), allocTensor(shape),
      tensor(new Float32Array(new SharedArrayBuffer(S * H * D * 4)), shape)];
    for (const out of outs) {
      const r = await attn.forward(q, k, v, { out });
      expect(r).toBe(out);
      expect(Array.from(out.data)).toEqual(Array.from(want));
    }
    const o2 = tensor(new Float32Array(S * H * D), shape);
    expect(attn.forwardSync(q, k, v, { out: o2 })).toBe(o2);
    expect(Array.from(o2.data)).toEqual(Array.from(want));
    attn.dispose();
  });

  test('a wrong out is rejected naming out', async () => {
    const attn = new MonarchAttention(opts);
    const [q, k, v] = [make(), make(), make()];
    await expect(attn.forward(q, k, v, { out: tensor(new Float32Array(S * H * D), [1, S, H * D, 1]) })).rejects.toThrow(/out\.shape \[1, 256, 32, 1\] must equal q\.shape/);
    expect(() => attn.forwardSync(q, k, v, { out: { data: new Float32Array(3) } as unknown as HostTensor })).toThrow(TypeError);
    attn.dispose();
  });
});

describe('AbortSignal', () => {
  test('aborted before the call: AbortError, nothing runs', async () => {
    const attn = new MonarchAttention(opts);
    const ac = new AbortController();
    ac.abort();
    await expect(attn.forward(make(), make(), make(), { signal: ac.signal })).rejects.toMatchObject({ name: 'AbortError' });
    await expect(denseAttention(make(), make(), make(), { signal: ac.signal })).rejects.toMatchObject({ name: 'AbortError' });
    await expect(attn.forward(make(), make(), make(), { signal: 'x' as unknown as AbortSignal })).rejects.toThrow(/signal must be an AbortSignal/);
    attn.dispose();
  });

  test('aborted mid-call: rejects with AbortError; the instance keeps working', async () => {
    const attn = new MonarchAttention(opts);
    const [q, k, v] = [make(), make(), make()];
    const want = attn.forwardSync(q, k, v).data;
    const ac = new AbortController();
    const p = attn.forward(q, k, v, { signal: ac.signal });
    const p2 = attn.forward(q, k, v, { signal: ac.signal });  // queued behind p
    ac.abort(new Error('client went away'));
    await expect(p).rejects.toMatchObject({ name: 'AbortError' });
    await expect(p2).rejects.toMatchObject({ name: 'AbortError' });
    expect(Array.from((await attn.forward(q, k, v)).data)).toEqual(Array.from(want));
    attn.dispose();
  });

  test('KV cache: an aborted step does not advance the cache', async () => {
    const attn = new MonarchAttention(video);
    const cache = attn.createKVCache();
    const n = 2 * 4 * 8 * H * D, sh = [1, 2 * 4 * 8, H, D];
    const t = (): HostTensor => tensor(Float32Array.from({ length: n }, rand), sh);
    const ac = new AbortController();
    ac.abort();
    await expect(cache.step(t(), t(), t(), { signal: ac.signal })).rejects.toMatchObject({ name: 'AbortError' });
    expect(cache.framesCached).toBe(0);
    await cache.step(t(), t(), t());
    expect(cache.framesCached).toBe(2);
    cache.dispose();
    attn.dispose();
  });
});

describe('lifecycle', () => {
  test('dispose() during in-flight forwards: calls made before it complete, later calls throw, memory freed after', async () => {
    const attn = new MonarchAttention(opts);
    const [q, k, v] = [make(), make(), make()];
    const want = attn.forwardSync(q, k, v).data;
    const p1 = attn.forward(q, k, v);
    await new Promise((r) => setImmediate(r));
    const p2 = attn.forward(q, k, v);
    attn.dispose();
    expect(attn.memory.workspace).toBe(0);  // reported as gone at once; freed after the last call
    await expect(attn.forward(q, k, v)).rejects.toThrow(/MonarchAttention was disposed/);
    expect(Array.from((await p1).data)).toEqual(Array.from(want));
    expect(Array.from((await p2).data)).toEqual(Array.from(want));
    expect(() => attn.forwardSync(q, k, v)).toThrow(/MonarchAttention was disposed/);
    await expect(attn.close()).resolves.toBeUndefined();
  });

  test('close() waits for in-flight work; Symbol.dispose / asyncDispose', async () => {
    const attn = new MonarchAttention(opts);
    const p = attn.forward(make(), make(), make());
    const closed = attn.close();
    await expect(p).resolves.toBeDefined();
    await closed;
    const b = new MonarchAttention(opts);
    b[Symbol.dispose]();
    expect(() => b.flops()).toThrow(/disposed/);
    const c = new MonarchAttention(opts);
    await c[Symbol.asyncDispose]();
    expect(() => c.flops()).toThrow(/disposed/);
  });
});

describe('memory and diagnostics', () => {
  test('memory figures: the workspace as documented; staging grows only for ordinary inputs', async () => {
    const attn = new MonarchAttention(opts);
    // T = 2: aR, aL, y of B·H·A·A·b1·b2·D fp32 + cR, cL of B·H·A·A·b1·b2 fp32; A = 1, b1 = 16, b2 = 16.
    const c = 1 * H * 1 * 1 * 16 * 16;
    expect(attn.memory.workspace).toBe(3 * c * D * 4 + 2 * c * 4);
    await attn.forward(allocTensor(shape), allocTensor(shape), allocTensor(shape));
    expect(attn.memory.staging).toBe(0);
    await attn.forward(make(), make(), make());
    expect(attn.memory.staging).toBe(3 * S * H * D * 4);
    attn.dispose();
  });

  test('steady-state forwards and steps allocate no native memory', async () => {
    const attn = new MonarchAttention(opts);
    const [q, k, v] = [make(), make(), make()];
    await attn.forward(q, k, v);
    attn.forwardSync(q, k, v);
    const before = memoryStats();
    for (let i = 0; i < 5; i++) await attn.forward(q, k, v);
    for (let i = 0; i < 2; i++) attn.forwardSync(q, k, v);
    const after = memoryStats();
    expect(after.hostAllocations).toBe(before.hostAllocations);
    expect(after.deviceAllocations).toBe(before.deviceAllocations);
    const va = new MonarchAttention(video);
    const cache = va.createKVCache();
    const n = 2 * 4 * 8 * H * D, sh = [1, 2 * 4 * 8, H, D];
    const t = (): HostTensor => tensor(Float32Array.from({ length: n }, rand), sh);
    await cache.step(t(), t(), t());
    const b2 = memoryStats().hostAllocations;
    await cache.step(t(), t(), t());
    expect(memoryStats().hostAllocations).toBe(b2);
    cache.dispose();
    va.dispose();
    attn.dispose();
  });

  test('outputs are ordinary (transferable) arrays', async () => {
    const attn = new MonarchAttention(opts);
    const out = await attn.forward(make(), make(), make());
    expect(hostMemoryKind(out.data)).toBe('ordinary');
    const moved = structuredClone(out.data.buffer, { transfer: [out.data.buffer] });
    expect(moved.byteLength).toBe(S * H * D * 4);
    expect(out.data.length).toBe(0);
    attn.dispose();
  });

  test('diagnostics_channel: start and end events with sizes and timing', async () => {
    const events: Array<Record<string, unknown>> = [];
    const onMessage = (m: unknown): void => { events.push(m as Record<string, unknown>); };
    diagnostics.subscribe('monarch-attention:call', onMessage);
    try {
      const attn = new MonarchAttention(opts);
      await attn.forward(make(), make(), make());
      await denseAttention(make(), make(), make());
      attn.dispose();
    } finally {
      diagnostics.unsubscribe('monarch-attention:call', onMessage);
    }
    expect(events.map((e) => `${e.op}:${e.phase}`)).toEqual(['forward:start', 'forward:end', 'dense:start', 'dense:end']);
    expect(events[0]).toMatchObject({ backend: 'cpu', device: false, inputBytes: 3 * S * H * D * 4, stagedBytes: 3 * S * H * D * 4 });
    expect(events[1].id).toBe(events[0].id);
    expect(typeof events[1].ms).toBe('number');
  });
});

describe('native host<->device copies (Plan.upload / download)', () => {
  // eslint-disable-next-line @typescript-eslint/no-var-requires
  const { native } = require('../lib/native') as typeof import('../lib/native');
  test('a CPU plan refuses them naming the method; isPinnedHost is false for ordinary and shared memory', () => {
    const plan = new (native().Plan)({ backend: 'cpu', dtype: 0, B: 1, H: 1, D: 4, b1: 1, b2: 1, maxAq: 1, maxFk: 1, iterative: false, threads: 0 });
    const a = allocTensor([4]).data;
    expect(() => plan.upload(null as never, a)).toThrow(/upload: host<->device copies need a CUDA plan/);
    expect(() => plan.download(a, null as never)).toThrow(/download: host<->device copies need a CUDA plan/);
    plan.dispose();
    expect(native().isPinnedHost(new Float32Array(4))).toBe(false);
    expect(native().isPinnedHost(new Float32Array(new SharedArrayBuffer(16)))).toBe(false);
    expect(() => native().isPinnedHost(3 as never)).toThrow(/isPinnedHost: expected a typed array/);
  });
});
