#!/usr/bin/env node
// Child process of test/lifetime-inputs.test.ts: starts async forward() / denseAttention() /
// KVCache.step() / attend() / write() calls on the CPU backend and, at a random moment while each runs, takes one input's
// memory away (transfer with structuredClone, postMessage transfer, shrinking a resizable ArrayBuffer),
// then allocates garbage. Every call must resolve with the result it would have had on untouched
// inputs (they are secured at call time) or reject with a clear Error; a native crash ends the process
// with a signal, which the parent reports.
//   node test/lifetime/detach-during-call.js <iterations> <seed>
// Last line: "ok N correct, N rejected" (exit 0) or "FAIL ..." (exit 1).
'use strict';
require('./register-ts');
const path = require('node:path');
const { MessageChannel } = require('node:worker_threads');
const m = require(path.join(__dirname, '..', '..', 'lib', 'index.ts'));

const iterations = Number(process.argv[2] || 12);
let seed = Number(process.argv[3] || 1) >>> 0;
function rand() {  // mulberry32
  seed = (seed + 0x6d2b79f5) >>> 0;
  let t = seed;
  t = Math.imul(t ^ (t >>> 15), t | 1);
  t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
  return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
}

// Each input gets its own ArrayBuffer; 'resizable' ones can be shrunk.
function input(n, resizable) {
  const buf = resizable ? new ArrayBuffer(n * 4, { maxByteLength: n * 4 }) : new ArrayBuffer(n * 4);
  const a = new Float32Array(buf, 0, n);
  for (let i = 0; i < n; i++) a[i] = rand() - 0.5;
  return a;
}

const port = new MessageChannel();
function takeAway(a, how) {
  const buf = a.buffer;
  if (how === 'structuredClone') structuredClone(buf, { transfer: [buf] });
  else if (how === 'postMessage') port.port1.postMessage(buf, [buf]);
  else if (how === 'shrink' && buf.resizable) buf.resize(0);
  const junk = [];
  for (let i = 0; i < 8; i++) junk.push(new Float32Array(1 << 18).fill(i));  // reuse freed memory
  return junk.length;
}

function sameBits(x, y) {
  if (x.length !== y.length) return false;
  for (let i = 0; i < x.length; i++) if (!(Object.is(x[i], y[i]))) return false;
  return true;
}

const S = 2048, H = 2, D = 64, n = S * H * D;
const shape = [1, S, H, D];
const attn = new m.MonarchAttention({ layout: { kind: 'sequence', length: S, blockSize: 64 }, heads: H, headDim: D, numIters: 2 });
const video = { kind: 'video', frames: 4, height: 16, width: 16 };
const vattn = new m.MonarchAttention({ layout: video, heads: H, headDim: D, causal: { chunkFrames: 2 } });
const chunk = 2 * 16 * 16 * H * D, chunkShape = [1, 2 * 16 * 16, H, D];
const k0 = m.tensor(input(chunk, false), chunkShape), v0 = m.tensor(input(chunk, false), chunkShape);

const calls = {
  forward: (q, k, v) => attn.forward(q, k, v),
  forwardSync: (q, k, v) => attn.forwardSync(q, k, v),
  dense: async (q, k, v) => (await m.denseAttention(q, k, v)).out,
  denseSync: (q, k, v) => m.denseAttentionSync(q, k, v).out,
  step: async (q, k, v) => { const c = vattn.createKVCache(); try { return await c.step(q, k, v); } finally { c.dispose(); } },
  stepSync: (q, k, v) => { const c = vattn.createKVCache(); try { return c.stepSync(q, k, v); } finally { c.dispose(); } },
  // A rolling one-layer pool; chunk 0 written first, the call attends chunk 1 writing its k, v.
  attend: async (q, k, v) => {
    const c = vattn.createKVCache({ localAttnFrames: 4, sinkFrames: 2 });
    try { c.writeSync(k0, v0, { frame: 0 }); return await c.attend(q, { frame: 2, write: { k, v } }); } finally { c.dispose(); }
  },
  attendSync: (q, k, v) => {
    const c = vattn.createKVCache({ localAttnFrames: 4, sinkFrames: 2 });
    try { c.writeSync(k0, v0, { frame: 0 }); return c.attendSync(q, { frame: 2, write: { k, v } }); } finally { c.dispose(); }
  },
  // write() of k, v; the result is read back with a sync attend (q copied at call time).
  write: async (q, k, v) => {
    const c = vattn.createKVCache();
    const q0 = m.tensor(q.data.slice(), q.shape);
    try { await c.write(k, v, { frame: 0 }); return c.attendSync(q0, { frame: 0 }); } finally { c.dispose(); }
  },
  writeSync: (q, k, v) => {
    const c = vattn.createKVCache();
    try { c.writeSync(k, v, { frame: 0 }); return c.attendSync(q, { frame: 0 }); } finally { c.dispose(); }
  },
};
const kinds = ['forward', 'dense', 'step', 'attend', 'write'];
const hows = ['structuredClone', 'postMessage', 'shrink'];

async function main() {
  let correct = 0, rejected = 0;
  for (let it = 0; it < iterations; it++) {
    const kind = kinds[it % kinds.length];
    const how = hows[Math.floor(rand() * hows.length)];
    const kv = kind === 'step' || kind === 'attend' || kind === 'write';
    const len = kv ? chunk : n, shp = kv ? chunkShape : shape;
    const arrays = [0, 1, 2].map(() => input(len, how === 'shrink'));
    const t = arrays.map((a) => m.tensor(a, shp));
    const expected = calls[`${kind}Sync`](...arrays.map((a) => m.tensor(a.slice(), shp)));
    const victim = Math.floor(rand() * 3);
    const p = calls[kind](...t);
    const delay = Math.floor(rand() * 40);
    await new Promise((r) => setTimeout(r, delay));
    takeAway(arrays[victim], how);
    try {
      const out = await p;
      if (!sameBits(out.data, expected.data)) {
        console.log(`FAIL ${kind}: ${how} of input ${victim} after ${delay} ms changed the result`);
        process.exit(1);
      }
      correct++;
    } catch (e) {
      if (!(e instanceof Error) || !/detached|resized|transferred/.test(e.message)) {
        console.log(`FAIL ${kind}: ${how} after ${delay} ms: unexpected rejection ${e && e.stack}`);
        process.exit(1);
      }
      rejected++;
    }
  }
  attn.dispose();
  vattn.dispose();
  port.port1.close();
  console.log(`ok ${correct} correct, ${rejected} rejected`);
}
main().catch((e) => { console.log(`FAIL ${e && e.stack}`); process.exit(1); });
