// The serving options (out, signal) under hardening's option rules: read once, unknown keys rejected
// with a did-you-mean naming the key, on forward, denseAttention and every KV-cache call; and
// maxWorkspaceBytes bounding the staging copies of ordinary-ArrayBuffer inputs.
import { allocTensor, denseAttention, memoryStats, MonarchAttention, tensor } from './helpers/pkg';
import type { MonarchOptions } from './helpers/pkg';
import { mulberry32 } from './helpers/rng';
import { randAct, toHost } from './helpers/tensors';

const base = (): MonarchOptions => ({ layout: { kind: 'sequence', length: 8, blockSize: 4 }, heads: 2, headDim: 8, backend: 'cpu' });
const video: MonarchOptions = { layout: { kind: 'video', frames: 4, height: 2, width: 4 }, heads: 2, headDim: 8, causal: { chunkFrames: 1 }, backend: 'cpu' };

async function rejection(p: Promise<unknown>): Promise<Error> {
  try {
    await p;
  } catch (e) {
    return e as Error;
  }
  throw new Error('expected a rejection');
}

describe('serving options: unknown keys and snapshots', () => {
  const rng = mulberry32(8807);
  const qkv = (S: number) => [0, 1, 2].map(() => toHost(randAct(rng, 1, S, 2, 8)));

  test('forward: out / signal are known; a typo names the key and the closest one', async () => {
    const attn = new MonarchAttention(base());
    try {
      const [q, k, v] = qkv(8);
      const e = await rejection(attn.forward(q, k, v, { signl: new AbortController().signal } as never));
      expect(e).toBeInstanceOf(TypeError);
      expect(e.message).toMatch(/forward options\.signl is not a known option; did you mean 'signal'\? \(known: keyMask, out, signal, waitEvent, recordEvent\)/);
      expect(() => attn.forwardSync(q, k, v, { outt: q } as never)).toThrow(/forward options\.outt .*did you mean 'out'/);
      // Accepted, and read once: a getter that answers differently later cannot swap the output.
      const out = allocTensor(q.shape, 'float32');
      let reads = 0;
      const opts = { get out() { reads++; return reads === 1 ? out : undefined; }, signal: new AbortController().signal };
      const r = await attn.forward(q, k, v, opts as never);
      expect(r).toBe(out);
      expect(reads).toBe(1);
    } finally {
      attn.dispose();
    }
  });

  test('denseAttention: signal is a known option, read once; aborted before start → AbortError', async () => {
    const [q, k, v] = qkv(8);
    const e = await rejection(denseAttention(q, k, v, { sigal: 1 } as never));
    expect(e.message).toMatch(/options\.sigal .*did you mean 'signal'/);
    const ac = new AbortController();
    ac.abort();
    let reads = 0;
    const opts = { get signal() { reads++; return reads === 1 ? ac.signal : undefined; } };
    const a = await rejection(denseAttention(q, k, v, opts as never));
    expect(a.name).toBe('AbortError');
    expect(reads).toBe(1);
    await expect(denseAttention(q, k, v, { signal: 'x' } as never)).rejects.toThrow(/signal must be an AbortSignal/);
  });

  test('KV cache: step / attend / write options', async () => {
    const attn = new MonarchAttention(video);
    const cache = attn.createKVCache();
    try {
      const [q, k, v] = qkv(8);
      expect(() => cache.stepSync(q, k, v, { outt: q } as never)).toThrow(/step options\.outt .*did you mean 'out'/);
      expect((await rejection(cache.step(q, k, v, { singal: 1 } as never))).message).toMatch(/step options\.singal .*did you mean 'signal'/);
      expect((await rejection(cache.write(k, v, { frame: 0, signall: 1 } as never))).message).toMatch(/write options\.signall .*did you mean 'signal'/);
      expect(() => cache.attendSync(q, { frame: 0, ot: q } as never)).toThrow(/attend options\.ot .*did you mean 'out'/);
      const out = allocTensor(q.shape, 'float32');
      expect(await cache.step(q, k, v, { out, signal: new AbortController().signal })).toBe(out);
      expect(cache.nextFrame).toBe(1);
    } finally {
      cache.dispose();
      attn.dispose();
    }
  });
});

describe('maxWorkspaceBytes bounds the staging copies of ordinary inputs', () => {
  test('a forward whose staging would not fit is refused (RangeError naming both); addon inputs still run', async () => {
    const probe = new MonarchAttention(base());
    const need = probe.config.workspaceBytes;
    probe.dispose();
    const rng = mulberry32(8808);
    const [q, k, v] = [0, 1, 2].map(() => toHost(randAct(rng, 1, 8, 2, 8)));
    const copies = 3 * q.data.byteLength;
    // Room for exactly one call's copies: a second call queued behind the first does not fit.
    const attn = new MonarchAttention({ ...base(), maxWorkspaceBytes: need + copies });
    try {
      const first = attn.forward(q, k, v);
      const e = await rejection(attn.forward(q, k, v));
      expect(e).toBeInstanceOf(RangeError);
      const m = /staging copies of ordinary-ArrayBuffer inputs need (\d+) bytes, more than the (\d+) bytes maxWorkspaceBytes leaves/.exec(e.message);
      expect(m).not.toBeNull();
      expect(Number(m![2])).toBe(copies);
      expect(Number(m![1])).toBeGreaterThan(copies);
      const r1 = await first;
      // Once the first call has released its staging, the same call fits again (the pool reuses it).
      const before = memoryStats().hostAllocations;
      const r2 = await attn.forward(q, k, v);
      expect(Array.from(r2.data)).toEqual(Array.from(r1.data));
      expect(memoryStats().hostAllocations).toBe(before);  // the staging (and output buffer) were reused
      // Addon inputs are used in place: they need no staging, whatever the budget.
      const [aq, ak, av] = [q, k, v].map((t) => {
        const a = allocTensor(t.shape, 'float32');
        a.data.set(t.data as Float32Array);
        return a;
      });
      const r3 = await Promise.all([attn.forward(aq, ak, av), attn.forward(aq, ak, av)]);
      for (const r of r3) expect(Array.from(r.data)).toEqual(Array.from(r1.data));
    } finally {
      attn.dispose();
    }
  });

  test('a call that fails to stage gives back what it had taken (the next call still fits)', async () => {
    const rng = mulberry32(8809);
    const probe = new MonarchAttention(base());
    const need = probe.config.workspaceBytes;
    probe.dispose();
    const [q, k, v] = [0, 1, 2].map(() => toHost(randAct(rng, 1, 8, 2, 8)));
    const bytes = q.data.byteLength;
    const attn = new MonarchAttention({ ...base(), maxWorkspaceBytes: need + 2 * bytes });  // q, k fit, v not
    try {
      await expect(attn.forward(q, k, v)).rejects.toThrow(RangeError);
      await expect(attn.forward(q, k, v)).rejects.toThrow(/need \d+ bytes, more than the \d+ bytes/);
      const aq = allocTensor(q.shape, 'float32');
      aq.data.set(q.data as Float32Array);
      // q in place; k, v staged into the two arrays the failed calls gave back.
      const r = await attn.forward(aq, k, v);
      expect(r.shape).toEqual(q.shape);
      expect(tensor(r.data as Float32Array, r.shape).dtype).toBe('float32');
    } finally {
      attn.dispose();
    }
  });
});
