// The dense plan cache: PlanCache (lib/plancache.ts) with test-double entries — keying, the LRU bound,
// in-use exclusion, several idle entries per key — and, on the CPU backend, repeated denseAttention /
// denseAttentionSync calls of one shape that allocate no native memory after the first, concurrent calls
// of one shape that each get their own plan, and a bounded cache over many shapes.
import { PlanCache } from '../lib/plancache';
import { DENSE_PLAN_CACHE_SIZE, densePlanKeys } from '../lib/dense';
import { denseAttention, denseAttentionSync, memoryStats, tensor } from './helpers/pkg';
import type { DenseOptions, HostTensor } from './helpers/pkg';
import { mulberry32 } from './helpers/rng';

class Fake {
  disposed = 0;
  constructor(readonly id: number) {}
  dispose(): void { this.disposed++; }
}

describe('PlanCache', () => {
  let next = 0;
  const make = (): Fake => new Fake(next++);

  test('take() reuses an idle entry of the same key only, and takes it out of the cache', () => {
    const c = new PlanCache<Fake>(4);
    const a = c.take('x', make);
    c.give('x', a);
    expect(c.take('y', make)).not.toBe(a);
    expect(c.size).toBe(1);
    const again = c.take('x', make);
    expect(again).toBe(a);
    expect(c.size).toBe(0);
    expect(a.disposed).toBe(0);
  });

  test('an entry in use is never handed out twice: concurrent takers of one key get distinct entries, all kept', () => {
    const c = new PlanCache<Fake>(4);
    const [a, b, d] = [c.take('k', make), c.take('k', make), c.take('k', make)];
    expect(new Set([a, b, d]).size).toBe(3);
    c.give('k', a); c.give('k', b); c.give('k', d);
    expect(c.keys()).toEqual(['k', 'k', 'k']);
    // The most recently given back first; each once.
    expect(c.take('k', make)).toBe(d);
    expect(c.take('k', make)).toBe(b);
    expect(c.take('k', make)).toBe(a);
    expect(c.take('k', make).id).toBeGreaterThan(d.id);  // a new one
  });

  test('past max idle entries the least recently used are disposed; a reused entry becomes the most recent', () => {
    const c = new PlanCache<Fake>(2);
    const a = c.take('a', make), b = c.take('b', make), d = c.take('c', make);
    c.give('a', a);
    c.give('b', b);
    c.give('a', c.take('a', make));  // a is now the most recent
    c.give('c', d);                  // evicts b, the least recently used
    expect(b.disposed).toBe(1);
    expect(a.disposed + d.disposed).toBe(0);
    expect(c.keys()).toEqual(['a', 'c']);
    c.clear();
    expect([a.disposed, b.disposed, d.disposed]).toEqual([1, 1, 1]);
    expect(c.size).toBe(0);
  });

  test('max 0 disposes everything given back; a throwing make() caches nothing', () => {
    const c = new PlanCache<Fake>(0);
    const a = c.take('a', make);
    c.give('a', a);
    expect(a.disposed).toBe(1);
    expect(() => c.take('a', () => { throw new RangeError('boom'); })).toThrow('boom');
    expect(c.size).toBe(0);
  });
});

describe('dense plan cache (CPU backend)', () => {
  const rng = mulberry32(1 + Math.floor(Math.random() * 1e6));
  const H = 3, D = 32;
  const make = (S: number): HostTensor => tensor(Float32Array.from({ length: S * H * D }, () => rng.uniform() - 0.5), [1, S, H, D]);
  const arr = (t: HostTensor): number[] => Array.from(t.data as Float32Array);
  const opts: DenseOptions = { backend: 'cpu', returnLse: true, returnEntropy: true };

  test('repeated calls of one shape (ordinary inputs, async and sync) allocate no native memory after the first', async () => {
    const [q, k, v] = [make(40), make(56), make(56)];
    const want = denseAttentionSync(q, k, v, opts);
    await denseAttention(q, k, v, opts);
    const s0 = memoryStats();
    for (let i = 0; i < 5; i++) {
      const r = await denseAttention(q, k, v, opts);
      expect(arr(r.out)).toEqual(arr(want.out));
      expect(arr(r.lse!)).toEqual(arr(want.lse!));
      expect(arr(r.entropy!)).toEqual(arr(want.entropy!));
      expect(arr(denseAttentionSync(q, k, v, opts).out)).toEqual(arr(want.out));
    }
    const s1 = memoryStats();
    expect(s1.hostAllocations).toBe(s0.hostAllocations);
    expect(s1.deviceAllocations).toBe(s0.deviceAllocations);
    expect(densePlanKeys().length).toBeGreaterThanOrEqual(1);
    expect(densePlanKeys().length).toBeLessThanOrEqual(DENSE_PLAN_CACHE_SIZE);
  });

  test('concurrent calls of one shape get plans of their own and correct results', async () => {
    const sets = [0, 1, 2].map(() => [make(33), make(47), make(47)] as const);
    const want = sets.map(([q, k, v]) => denseAttentionSync(q, k, v, opts));
    for (let round = 0; round < 3; round++) {
      const got = await Promise.all(sets.map(([q, k, v]) => denseAttention(q, k, v, opts)));
      got.forEach((r, i) => {
        expect(arr(r.out)).toEqual(arr(want[i].out));
        expect(arr(r.lse!)).toEqual(arr(want[i].lse!));
      });
    }
    // Three entries of this key were in use at once; all three are kept for the next burst.
    const key = densePlanKeys().filter((x) => x.includes('/33/47/'));
    expect(key.length).toBe(3);
    const s0 = memoryStats();
    await Promise.all(sets.map(([q, k, v]) => denseAttention(q, k, v, opts)));
    expect(memoryStats().hostAllocations).toBe(s0.hostAllocations);
  });

  test('many shapes: the cache stays bounded and every call is correct; a failing call caches nothing new', async () => {
    for (let S = 5; S < 5 + 3 * DENSE_PLAN_CACHE_SIZE; S++) {
      const [q, k, v] = [make(S), make(S + 1), make(S + 1)];
      const a = await denseAttention(q, k, v, { backend: 'cpu' });
      const b = denseAttentionSync(q, k, v, { backend: 'cpu', tensorLayout: 'BSHD' });
      expect(arr(a.out)).toEqual(arr(b.out));
      expect(densePlanKeys().length).toBeLessThanOrEqual(DENSE_PLAN_CACHE_SIZE);
    }
    const before = densePlanKeys();
    const [q, k, v] = [make(9), make(9), make(9)];
    const ac = new AbortController();
    const p = denseAttention(q, k, v, { backend: 'cpu', signal: ac.signal });
    ac.abort();  // after the call started: its plan was taken, and is disposed rather than given back
    await expect(p).rejects.toThrow(/aborted/);
    expect(densePlanKeys()).toEqual(before);
    expect(arr((await denseAttention(q, k, v, { backend: 'cpu' })).out)).toEqual(arr(denseAttentionSync(q, k, v, { backend: 'cpu' }).out));
  });
});
