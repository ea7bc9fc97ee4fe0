// Host outputs without `out` (CPU backend; the CUDA twin is in cuda-host-path.test.ts):
//  - hostOutputs 'pooled': a disposed output's buffer is the next call's output (no allocation of any
//    kind at steady state: memoryStats counters), values right after reuse (vs the float64 reference and
//    bit for bit vs 'fresh'), dispose() idempotent / non-enumerable / after the instance is gone;
//  - no O(bytes) main-thread work for allocTensor or SharedArrayBuffer inputs (stagingBytes unchanged);
//  - cloneHostAsync(src): a new ordinary copy; a destination buffer is refused;
//  - the mainThreadMs phases of the diagnostics end event.
import * as diagnostics from 'node:diagnostics_channel';
import { allocTensor, memoryStats, MonarchAttention, tensor } from './helpers/pkg';
import type { HostTensor, MonarchOptions } from './helpers/pkg';
import { act } from './helpers/act';
import { expectClose } from './helpers/compare';
import { FP32 } from './helpers/tolerances';
import { sequenceRef } from './reference/sequence';
import { native } from '../lib/native';

let seed = 1 + Math.floor(Math.random() * 1e6);
const rand = (): number => { seed = (Math.imul(seed, 1103515245) + 12345) >>> 0; return seed / 4294967296 - 0.5; };
// Awkward on purpose: 37 tokens in blocks of 8 (padded), 3 heads of 5.
const S = 37, H = 3, D = 5, B = 1, shape = [B, S, H, D], n = S * H * D;
const make = (): HostTensor => tensor(Float32Array.from({ length: n }, rand), shape);
const base: MonarchOptions = { backend: 'cpu', layout: { kind: 'sequence', length: S, blockSize: 8 }, heads: H, headDim: D, numIters: 2 };
const pooled: MonarchOptions = { ...base, hostOutputs: 'pooled' };
const ref = (q: HostTensor, k: HostTensor, v: HostTensor): Float64Array => {
  const a = (t: HostTensor) => act(Float64Array.from(t.data), B, S, H, D);
  return sequenceRef(a(q), a(k), a(v), { blockSize: 8, numIters: 2 });
};

describe("hostOutputs 'pooled' (CPU)", () => {
  test('a disposed output is the next output: same buffer, right values, no allocation at steady state', async () => {
    const attn = new MonarchAttention(pooled);
    const fresh = new MonarchAttention(base);
    const sets = [[make(), make(), make()], [make(), make(), make()]] as const;
    const want = sets.map(([q, k, v]) => fresh.forwardSync(q, k, v).data);
    const first = await attn.forward(...sets[0]);
    expectClose(first.data, ref(...sets[0]), FP32, 'pooled first', shape);
    const buf = first.data.buffer;
    first.dispose!();
    const s0 = memoryStats();
    for (let i = 1; i <= 6; i++) {
      const o = await attn.forward(...sets[i % 2]);
      expect(o.data.buffer).toBe(buf);
      // Alternating inputs: a stale value left from the previous call would show here.
      expect(Array.from(o.data)).toEqual(Array.from(want[i % 2]));
      o.dispose!();
    }
    const s1 = memoryStats();
    expect(s1.hostOutputAllocations).toBe(s0.hostOutputAllocations);
    expect(s1.hostOutputReuses).toBe(s0.hostOutputReuses + 6);
    expect(s1.hostAllocations).toBe(s0.hostAllocations);
    // The ordinary inputs' staging copies, plus the O(tokens) key-mask / gather-map snapshots of the
    // padded layout: nothing output-sized.
    expect(s1.stagingBytes - s0.stagingBytes).toBeGreaterThanOrEqual(6 * 3 * n * 4);
    expect(s1.stagingBytes - s0.stagingBytes).toBeLessThan(6 * 3 * n * 4 + 6 * n * 4);
    expect(attn.memory.staging).toBe(3 * n * 4 + n * 4);  // staging for q, k, v + one idle output
    attn.dispose();
    fresh.dispose();
  });

  test('outputs not disposed stay valid and the next call gets a new buffer; forwardSync is pooled too', async () => {
    const attn = new MonarchAttention(pooled);
    const [q, k, v] = [make(), make(), make()];
    const a = await attn.forward(q, k, v);
    const b = await attn.forward(q, k, v);
    expect(b.data.buffer).not.toBe(a.data.buffer);
    expect(Array.from(b.data)).toEqual(Array.from(a.data));
    const c = attn.forwardSync(q, k, v);
    expect(c.data.buffer).not.toBe(a.data.buffer);
    expect(Array.from(c.data)).toEqual(Array.from(a.data));
    c.dispose!();
    const d = attn.forwardSync(q, k, v);
    expect(d.data.buffer).toBe(c.data.buffer);
    attn.dispose();
    expect(Array.from(a.data)).toEqual(Array.from(b.data));  // outputs outlive their instance
  });

  test('dispose(): idempotent, non-enumerable, Symbol.dispose, harmless after the instance is disposed', async () => {
    const attn = new MonarchAttention(pooled);
    const [q, k, v] = [make(), make(), make()];
    const o = await attn.forward(q, k, v);
    expect(Object.keys(o).sort()).toEqual(['data', 'dtype', 'shape']);
    expect(Object.isFrozen(o)).toBe(true);
    expect(Array.from(structuredClone(o).data)).toEqual(Array.from(o.data));  // still a plain cloneable record
    o.dispose!();
    o.dispose!();  // a second dispose must not put the buffer in the pool twice
    const x = await attn.forward(q, k, v);
    const y = await attn.forward(q, k, v);
    expect(y.data.buffer).not.toBe(x.data.buffer);
    (x as unknown as { [Symbol.dispose](): void })[Symbol.dispose]();
    expect((await attn.forward(q, k, v)).data.buffer).toBe(x.data.buffer);
    await attn.close();
    y.dispose!();  // after close: dropped, no throw
    expect(attn.memory.staging).toBe(0);
  });

  test("'fresh' (default) outputs are ordinary arrays without dispose; a bad hostOutputs names the option", async () => {
    const attn = new MonarchAttention(base);
    const o = await attn.forward(make(), make(), make());
    expect(o.dispose).toBeUndefined();
    expect(native().hostMemoryKind(o.data)).toBe(0);
    attn.dispose();
    expect(() => new MonarchAttention({ ...base, hostOutputs: 'reuse' } as unknown as MonarchOptions)).toThrow(RangeError);
    expect(() => new MonarchAttention({ ...base, hostOutputs: 'reuse' } as unknown as MonarchOptions)).toThrow(/hostOutputs/);
    expect(() => new MonarchAttention({ ...base, hostOutputs: 1 } as unknown as MonarchOptions)).toThrow(TypeError);
  });

  test('KV-cache attend outputs come from the pool of the cache', async () => {
    const video: MonarchOptions = { backend: 'cpu', layout: { kind: 'video', frames: 4, height: 4, width: 8 }, heads: 2, headDim: 8, causal: { chunkFrames: 2 }, hostOutputs: 'pooled' };
    const attn = new MonarchAttention(video);
    const cache = attn.createKVCache();
    const cs = [1, 64, 2, 8], m = 64 * 16;
    const t = (): HostTensor => tensor(Float32Array.from({ length: m }, rand), cs);
    const [q, k, v] = [t(), t(), t()];
    const o1 = await cache.attend(q, { frame: 0, write: { k, v } });
    const vals = Array.from(o1.data);
    o1.dispose!();
    cache.reset();
    const o2 = await cache.attend(q, { frame: 0, write: { k, v } });
    expect(o2.data.buffer).toBe(o1.data.buffer);
    expect(Array.from(o2.data)).toEqual(vals);
    cache.dispose();
    attn.dispose();
  });
});

describe('main-thread work of a host forward (CPU)', () => {
  test('allocTensor and SharedArrayBuffer inputs: no staging copy on either output mode', async () => {
    // 32 tokens in blocks of 8: no padding, so no key mask or gather map is snapshotted either (those
    // are O(tokens) copies, not O(tokens·heads·headDim)).
    const even = { layout: { kind: 'sequence' as const, length: 32, blockSize: 8 } };
    const S = 32, shape = [1, S, H, D], n = S * H * D;
    const make = (): HostTensor => tensor(Float32Array.from({ length: n }, rand), shape);
    for (const opts of [{ ...base, ...even }, { ...pooled, ...even }]) {
      const attn = new MonarchAttention(opts);
      const q0 = make();
      const addon = allocTensor(shape);
      addon.data.set(q0.data);
      const shared = tensor(new Float32Array(new SharedArrayBuffer(n * 4)), shape);
      shared.data.set(q0.data);
      const o = await attn.forward(addon, addon, shared);
      o.dispose?.();
      const s0 = memoryStats();
      for (let i = 0; i < 3; i++) {
        const r = await attn.forward(addon, shared, addon);
        r.dispose?.();
      }
      const s1 = memoryStats();
      expect(s1.stagingBytes).toBe(s0.stagingBytes);
      expect(s1.stagingCopies).toBe(s0.stagingCopies);
      expect(s1.hostAllocations).toBe(s0.hostAllocations);
      attn.dispose();
    }
  });

  test('diagnostics: the forward end event carries mainThreadMs by phase, only while subscribed', async () => {
    const attn = new MonarchAttention(pooled);
    const events: Array<Record<string, unknown>> = [];
    const fn = (m: unknown): void => { events.push(m as Record<string, unknown>); };
    diagnostics.subscribe('monarch-attention:call', fn);
    try {
      const o = await attn.forward(make(), make(), make());
      o.dispose!();
    } finally {
      diagnostics.unsubscribe('monarch-attention:call', fn);
    }
    const end = events.find((e) => e.phase === 'end')!;
    const ms = end.mainThreadMs as Record<string, number>;
    expect(Object.keys(ms).sort()).toEqual(['complete', 'enqueue', 'stage', 'validate']);
    for (const v of Object.values(ms)) expect(v).toBeGreaterThanOrEqual(0);
    expect(ms.validate + ms.stage + ms.enqueue + ms.complete).toBeLessThanOrEqual(end.ms as number);
    attn.dispose();
  });
});

describe('cloneHostAsync(src)', () => {
  const src = (): Float32Array => {
    const a = new Float32Array(native().allocHost(64 * 4, false));
    a.set(Float32Array.from({ length: 64 }, rand));
    return a;
  };
  test('returns an ordinary copy in a new ArrayBuffer', async () => {
    const s = src();
    const r = await native().cloneHostAsync(s);
    expect(r.buffer).not.toBe(s.buffer);
    expect(Array.from(r)).toEqual(Array.from(s));
    expect(native().hostMemoryKind(r)).toBe(0);
  });
  test('refuses a destination buffer (JS could transfer or shrink it while the worker writes)', async () => {
    const clone = native().cloneHostAsync as unknown as (s: Float32Array, into: unknown) => Promise<Float32Array>;
    await expect(clone(src(), new ArrayBuffer(256))).rejects.toThrow(/cloneHostAsync: takes one argument \(src\)/);
    await expect(clone(src(), new ArrayBuffer(256))).rejects.toMatchObject({ name: 'TypeError' });  // the addon's realm
  });
});
