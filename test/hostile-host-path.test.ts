// Findings of the hostile review of the session's host path and enqueued cache calls, each a regression
// test (CPU backend): a second dispose() of a pooled output after its buffer was lent again, an
// ordinary `out` detached while the call runs (the error names out), an instance disposed by a
// diagnostics subscriber inside its own call (the error names the instance), and a destination buffer for
// cloneHostAsync that JS shrinks while the worker fills it.
import { spawnSync } from 'node:child_process';
import * as diagnostics from 'node:diagnostics_channel';
import * as path from 'node:path';
import { MonarchAttention, tensor } from './helpers/pkg';
import type { HostTensor, MonarchOptions } from './helpers/pkg';
import { mulberry32 } from './helpers/rng';

const root = path.join(__dirname, '..');
const rng = mulberry32(1 + Math.floor(Math.random() * 1e6));
// 37 tokens in blocks of 8 (padded), 3 heads of 5: as test/host-output-pool.test.ts.
const S = 37, H = 3, D = 5, shape = [1, S, H, D], n = S * H * D;
const make = (): HostTensor => tensor(Float32Array.from({ length: n }, () => rng.uniform() - 0.5), shape);
const pooled: MonarchOptions = {
  backend: 'cpu', layout: { kind: 'sequence', length: S, blockSize: 8 }, heads: H, headDim: D, numIters: 2, hostOutputs: 'pooled',
};

describe('hostile review: host path', () => {
  test("a stale second dispose() of a pooled output does not give back the later output that reuses its buffer", async () => {
    const attn = new MonarchAttention(pooled);
    const a = [make(), make(), make()] as const, b = [make(), make(), make()] as const;
    const o1 = await attn.forward(...a);
    o1.dispose!();
    const o2 = await attn.forward(...a);
    expect(o2.data.buffer).toBe(o1.data.buffer);  // o1's buffer, lent again
    const kept = Array.from(o2.data);
    o1.dispose!();  // documented idempotent: must not return o2's buffer to the pool
    const o3 = await attn.forward(...b);
    expect(o3.data.buffer).not.toBe(o2.data.buffer);
    expect(Array.from(o2.data)).toEqual(kept);
    o2.dispose!();
    o3.dispose!();
    attn.dispose();
  });

  test('an ordinary out detached or shrunk while an async forward runs: an Error naming out', async () => {
    const attn = new MonarchAttention({ ...pooled, hostOutputs: 'fresh' });
    const [q, k, v] = [make(), make(), make()];
    type Resizable = ArrayBuffer & { resize(bytes: number): void };
    const ab = new (ArrayBuffer as unknown as new (bytes: number, o: { maxByteLength: number }) => Resizable)(n * 4, { maxByteLength: n * 4 });
    const shrunk = attn.forward(q, k, v, { out: tensor(new Float32Array(ab, 0, n), shape) });
    ab.resize(4);
    await expect(shrunk).rejects.toThrow(/^out was detached or resized while the call ran: out\.data has 0 bytes, the output 2220/);
    const gone = new Float32Array(n);
    const detached = attn.forward(q, k, v, { out: tensor(gone, shape) });
    structuredClone(gone.buffer, { transfer: [gone.buffer] });
    await expect(detached).rejects.toThrow(/^out was detached or resized while the call ran/);
    expect((await attn.forward(q, k, v)).data.length).toBe(n);  // the instance is still usable
    attn.dispose();
  });

  test('a diagnostics subscriber that disposes the instance in the start event: the call rejects naming the instance', async () => {
    const attn = new MonarchAttention(pooled);
    const fn = (m: unknown): void => { if ((m as { phase: string }).phase === 'start') attn.dispose(); };
    diagnostics.subscribe('monarch-attention:call', fn);
    try {
      await expect(attn.forward(make(), make(), make())).rejects.toThrow(/^MonarchAttention was disposed$/);
    } finally {
      diagnostics.unsubscribe('monarch-attention:call', fn);
    }
  });

  test('cloneHostAsync refuses a destination buffer: shrinking it during the copy crashed (child process)', () => {
    // 64 MB so that the worker is still copying when the caller shrinks the buffer.
    const r = spawnSync(process.execPath, ['-e', `
      const nat = require('node-gyp-build')(${JSON.stringify(root)});
      const bytes = 64 << 20;
      const src = new Float32Array(nat.allocHost(bytes, false, false));
      const into = new ArrayBuffer(bytes, { maxByteLength: bytes });
      let p;
      try { p = nat.cloneHostAsync(src, into); } catch (e) { p = Promise.reject(e); }
      if (into.resize) into.resize(0);
      p.then(() => console.log('resolved'), (e) => console.log(e.name + ': ' + e.message));`],
    { encoding: 'utf8', timeout: 60_000 });
    expect(r.signal).toBeNull();
    expect(r.status).toBe(0);
    expect(r.stdout.trim()).toMatch(/^TypeError: cloneHostAsync: takes one argument \(src\)/);
  });
});
