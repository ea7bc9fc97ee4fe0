// Findings of the hostile review of the session's host path and enqueued cache calls, each a regression
// test (CPU backend): a second dispose() of a pooled output after its buffer was lent again, and a
// destination buffer for cloneHostAsync that JS shrinks while the worker fills it.
import { spawnSync } from 'node:child_process';
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
