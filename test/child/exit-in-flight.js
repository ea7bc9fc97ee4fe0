#!/usr/bin/env node
// Child-process driver for test/worker-teardown.test.ts: starts async forward() / denseAttention() /
// KVCache.step() calls and enqueued cache calls with two pool.flush() fences pending, and exits the
// process while they run. Exit code must be the one asked for (0).
//   node test/child/exit-in-flight.js <cpu|cuda> <delayMs>
'use strict';
const path = require('node:path');
require(path.join(__dirname, 'ts-register.js'));
const m = require(path.join(__dirname, '..', '..', 'lib', 'index.ts'));

const backend = process.argv[2] || 'cpu';
const delay = Number(process.argv[3] || 5);
const dtype = backend === 'cuda' ? 'bfloat16' : 'float32';
const H = 2, D = 64;
const make = (n) => {
  const x = Float32Array.from({ length: n * H * D }, () => Math.random() - 0.5);
  return dtype === 'float32' ? m.tensor(x, [1, n, H, D]) : m.tensor(m.toBfloat16(x), [1, n, H, D], dtype);
};
const attn = new m.MonarchAttention({ layout: { kind: 'sequence', length: 2048, blockSize: 32 }, heads: H, headDim: D, numIters: 2, dtype, backend });
const big = [make(2048), make(2048), make(2048)];
attn.forward(...big);
attn.forward(...big);
m.denseAttention(...big, { backend });
const video = new m.MonarchAttention({ layout: { kind: 'video', frames: 8, height: 6, width: 8 }, heads: H, headDim: D, causal: { chunkFrames: 2 }, dtype, backend });
const cache = video.createKVCache();
cache.step(make(96), make(96), make(96));
const pool = video.createKVCachePool({ layers: 2, localAttnFrames: 4, sinkFrames: 2 });
const dev = (t) => (backend === 'cuda' ? m.DeviceTensor.fromHost(t) : t);
const [q, k, v, out] = [make(96), make(96), make(96), make(96)].map(dev);
for (let f = 0; f < 8; f += 2) {
  for (const c of pool.layers) c.enqueueAttend(q, { frame: f, write: { k, v }, out });
  pool.flush();
}
setTimeout(() => process.exit(0), delay);
