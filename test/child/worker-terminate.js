#!/usr/bin/env node
// Child-process driver for test/worker-teardown.test.ts: starts worker threads that keep async
// forward() / denseAttention() / KVCache.step() calls (ordinary inputs staged in slices), or enqueued
// cache calls with two pool.flush() fences pending (CUDA: event waits on libuv threads), in flight on the
// given backend and terminates each at a random moment (seeded). The process must survive every
// termination (no abort, no signal).
//   node test/child/worker-terminate.js <cpu|cuda> <iterations> <seed>
// Last stdout line: JSON {iterations, modes, rssStartMB, rssEndMB}.
'use strict';
const path = require('node:path');
const { Worker } = require('node:worker_threads');

const backend = process.argv[2] || 'cpu';
const iterations = Number(process.argv[3] || 30);
let seed = Number(process.argv[4] || 1) >>> 0;
const rand = () => {  // mulberry32
  seed = (seed + 0x6d2b79f5) >>> 0;
  let t = seed;
  t = Math.imul(t ^ (t >>> 15), t | 1);
  t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
  return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
};

const register = path.join(__dirname, 'ts-register.js');
const lib = path.join(__dirname, '..', '..', 'lib', 'index.ts');
// The worker: one of three workloads, looping forever with several calls in flight at once.
const workerSource = `
require(${JSON.stringify(register)});
const m = require(${JSON.stringify(lib)});
const { parentPort, workerData } = require('node:worker_threads');
const { mode, backend } = workerData;
const dtype = backend === 'cuda' ? 'bfloat16' : 'float32';
const H = 2, D = 64;
// Small slices: the ordinary inputs of every call are staged over several event-loop turns, so many
// terminations land between two slices (lib/hoststage.ts).
const SLICE = 65536;
const make = (n) => {
  const x = Float32Array.from({ length: n * H * D }, () => Math.random() - 0.5);
  return dtype === 'float32' ? m.tensor(x, [1, n, H, D]) : m.tensor(m.toBfloat16(x), [1, n, H, D], dtype);
};
const loops = [];
if (mode === 'forward') {
  const attn = new m.MonarchAttention({ layout: { kind: 'video', frames: 4, height: 8, width: 12, wReduce: 2 },
    heads: H, headDim: D, numIters: 2, dtype, backend, hostStagingSliceBytes: SLICE });
  const [q, k, v] = [make(384), make(384), make(384)];
  for (let i = 0; i < 3; i++) loops.push(async () => { for (;;) await attn.forward(q, k, v); });
} else if (mode === 'dense') {
  const [q, k, v] = [make(512), make(512), make(512)];
  for (let i = 0; i < 3; i++) loops.push(async () => { for (;;) await m.denseAttention(q, k, v, { backend, returnLse: true, hostStagingSliceBytes: SLICE }); });
} else if (mode === 'enqueue') {
  const attn = new m.MonarchAttention({ layout: { kind: 'video', frames: 8, height: 6, width: 8 },
    heads: H, headDim: D, causal: { chunkFrames: 2 }, dtype, backend });
  const pool = attn.createKVCachePool({ layers: 2, localAttnFrames: 4, sinkFrames: 2 });
  const dev = (t) => (backend === 'cuda' ? m.DeviceTensor.fromHost(t) : t);
  const [q, k, v, out] = [make(96), make(96), make(96), make(96)].map(dev);
  loops.push(async () => {
    const pending = [];
    for (let f = 0; ; f += 2) {
      for (const c of pool.layers) c.enqueueAttend(q, { frame: f, write: { k, v }, out });
      pending.push(pool.flush());
      if (pending.length >= 2) await pending.shift();
    }
  });
} else {
  const attn = new m.MonarchAttention({ layout: { kind: 'video', frames: 64, height: 6, width: 8 },
    heads: H, headDim: D, causal: { chunkFrames: 2 }, dtype, backend, hostStagingSliceBytes: SLICE });
  const cache = attn.createKVCache();
  const [q, k, v] = [make(96), make(96), make(96)];
  loops.push(async () => { for (;;) { if (cache.framesCached >= cache.maxFrames) cache.reset(); await cache.step(q, k, v); } });
  loops.push(async () => { for (;;) await attn.forward(make(64 * 48), make(64 * 48), make(64 * 48)).catch(() => undefined); });
}
for (const l of loops) l().catch((e) => parentPort.postMessage({ error: String(e && e.stack || e) }));
parentPort.postMessage({ started: true });
`;

const modes = ['forward', 'dense', 'kvcache', 'enqueue'];
(async () => {
  const rssStart = process.memoryUsage().rss;
  for (let i = 0; i < iterations; i++) {
    const mode = modes[i % modes.length];
    const w = new Worker(workerSource, { eval: true, workerData: { mode, backend } });
    let failure = null;
    w.on('message', (msg) => { if (msg.error) failure = msg.error; });
    w.on('error', (e) => { failure = String(e && e.stack || e); });
    await new Promise((res, rej) => {
      w.once('message', (msg) => (msg.started ? res() : rej(new Error(msg.error))));
      w.once('error', rej);
    });
    await new Promise((res) => setTimeout(res, rand() * 40));
    await w.terminate();
    if (failure) throw new Error(`iteration ${i} (${mode}): the worker failed before termination: ${failure}`);
  }
  const rssEnd = process.memoryUsage().rss;
  console.log(JSON.stringify({ iterations, modes, rssStartMB: rssStart / 2 ** 20, rssEndMB: rssEnd / 2 ** 20 }));
})().catch((e) => {
  console.error(e && e.stack || e);
  process.exit(1);
});
