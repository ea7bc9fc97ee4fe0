#!/usr/bin/env node
// Child process of test/lifetime-inputs.test.ts: SharedArrayBuffer-backed inputs (also a growable one,
// grown mid-call) and addon memory (allocTensor, "transferred" mid-call) give the same bits as copies;
// the native Plan, used directly with ordinary arrays that are detached mid-call, never crashes.
'use strict';
require('./register-ts');
const path = require('node:path');
const m = require(path.join(__dirname, '..', '..', 'lib', 'index.ts'));
const { native } = require(path.join(__dirname, '..', '..', 'lib', 'native.ts'));

let seed = 99;
const rand = () => { seed = (seed * 1103515245 + 12345) >>> 0; return seed / 4294967296 - 0.5; };
const S = 1024, H = 2, D = 32, n = S * H * D, shape = [1, S, H, D];
const attn = new m.MonarchAttention({ layout: { kind: 'sequence', length: S, blockSize: 32 }, heads: H, headDim: D });
function fail(msg) { console.log(`FAIL ${msg}`); process.exit(1); }
const same = (a, b) => a.length === b.length && a.every((x, i) => Object.is(x, b[i]));

async function main() {
  const base = [0, 1, 2].map(() => Float32Array.from({ length: n }, rand));
  const expected = attn.forwardSync(...base.map((a) => m.tensor(a, shape)));

  // SharedArrayBuffer, one of them growable and grown while the call runs.
  const sab = base.map((a, i) => {
    const buf = i === 0 ? new SharedArrayBuffer(n * 4, { maxByteLength: n * 8 }) : new SharedArrayBuffer(n * 4);
    const s = new Float32Array(buf, 0, n);
    s.set(a);
    return s;
  });
  const p1 = attn.forward(...sab.map((a) => m.tensor(a, shape)));
  if (sab[0].buffer.grow) sab[0].buffer.grow(n * 8);
  if (!same((await p1).data, expected.data)) fail('SharedArrayBuffer inputs changed the result');
  const d1 = await m.denseAttention(...sab.map((a) => m.tensor(a, shape)));
  if (!same(d1.out.data, m.denseAttentionSync(...base.map((a) => m.tensor(a, shape))).out.data)) fail('dense on shared inputs');

  // Addon memory: zero-copy inputs; transferring their buffer (Node copies untransferable buffers or
  // throws DataCloneError) must not disturb the call.
  const before = m.memoryStats().stagingBytes;
  const addon = base.map((a) => { const t = m.allocTensor(shape, 'float32'); t.data.set(a); return t; });
  const p2 = attn.forward(...addon);
  const copied = m.memoryStats().stagingBytes - before;
  if (copied !== 0) fail(`addon inputs were staged (${copied} bytes copied)`);
  try { structuredClone(addon[1].data.buffer, { transfer: [addon[1].data.buffer] }); } catch (e) { if (e.name !== 'DataCloneError') throw e; }
  if (!same((await p2).data, expected.data)) fail('addon inputs changed the result');

  // Ordinary inputs are copied once each at call time.
  const b2 = m.memoryStats().stagingBytes;
  await attn.forward(...base.map((a) => m.tensor(a, shape)));
  if (m.memoryStats().stagingBytes - b2 !== 3 * n * 4) fail(`expected ${3 * n * 4} staged bytes, got ${m.memoryStats().stagingBytes - b2}`);

  // The native Plan directly (no lib staging): detach k mid-call, many times.
  const plan = new (native().Plan)({ backend: 'cpu', dtype: 0, B: 1, H, D, b1: 1, b2: 1, maxAq: 1, maxFk: 1, iterative: false, threads: 0 });
  let ok = 0, rejected = 0;
  for (let i = 0; i < 20; i++) {
    const [q, k, v] = base.map((a) => a.slice());
    const o = new Float32Array(n);
    const st = [n, H * D, D];
    const p = plan.denseAsync({ q: { data: q, strides: st }, k: { data: k, strides: st }, v: { data: v, strides: st }, o: { data: o, strides: st },
      B: 1, H, D, Nq: S, Nk: S, q0: 0, causalChunk: 0, scale: 0.2, dtype: 0 });
    const victim = i % 2 ? k.buffer : o.buffer;
    setTimeout(() => structuredClone(victim, { transfer: [victim] }), i % 5);
    try { await p; ok++; } catch (e) { if (!/detached|resized/.test(e.message)) fail(`unexpected: ${e.message}`); rejected++; }
  }
  plan.dispose();
  attn.dispose();
  console.log(`ok shared+addon; plan: ${ok} resolved, ${rejected} rejected`);
}
main().catch((e) => fail(e && e.stack));
