#!/usr/bin/env node
// Event-loop delay probe (issue 12): runs N concurrent MonarchAttention instances, each looping
// forwards on host tensors (ordinary arrays: staged at call time; addon arrays: allocTensor) and, on
// CUDA, on DeviceTensors, while perf_hooks.monitorEventLoopDelay samples the loop. Also measures the
// main-thread cost of staging q/k/v and, on CUDA, host↔device bandwidth from pinned and pageable
// memory. Prints one JSON object.
//   npm run build:ts && node benchmarks/loop_delay_probe.js [--preset wan-480p|small] [--instances 4] [--seconds 5]
'use strict';
const path = require('node:path');
const { monitorEventLoopDelay, performance } = require('node:perf_hooks');
const root = path.join(__dirname, '..');
let m;
try { m = require(path.join(root, 'dist', 'lib', 'index.js')); } catch {
  require(path.join(root, 'test', 'lifetime', 'register-ts.js'));  // from a checkout without dist/
  m = require(path.join(root, 'lib', 'index.ts'));
}

const arg = (name, dflt) => { const i = process.argv.indexOf(`--${name}`); return i > 0 ? process.argv[i + 1] : dflt; };
const presets = {
  'wan-480p': { layout: { kind: 'video', frames: 21, height: 30, width: 52 }, heads: 12, headDim: 128 },
  small: { layout: { kind: 'video', frames: 3, height: 8, width: 16 }, heads: 4, headDim: 64 },
};
const presetName = arg('preset', m.info().deviceCount > 0 ? 'wan-480p' : 'small');
const preset = presets[presetName];
const instances = Number(arg('instances', 4));
const seconds = Number(arg('seconds', 5));
const cuda = m.info().deviceCount > 0;
const dtype = cuda ? 'bfloat16' : 'float32';
const L = preset.layout, N = L.frames * L.height * L.width, shape = [1, N, preset.heads, preset.headDim];
const n = N * preset.heads * preset.headDim;

function randomTensor(kind) {
  const f = Float32Array.from({ length: n }, () => Math.random() - 0.5);
  const data = dtype === 'float32' ? f : m.toBfloat16(f);
  if (kind === 'addon') { const t = m.allocTensor(shape, dtype); t.data.set(data); return t; }
  return m.tensor(data, shape, dtype);
}

async function scenario(name, makeInputs) {
  const attns = Array.from({ length: instances }, () => new m.MonarchAttention({ ...preset, dtype, backend: cuda ? 'cuda' : 'cpu' }));
  const inputs = attns.map(() => makeInputs());
  for (let i = 0; i < instances; i++) await attns[i].forward(...inputs[i]);  // warm-up (allocations)
  const h = monitorEventLoopDelay({ resolution: 1 });
  const walls = [];
  let stop = false;
  const t0 = performance.now();
  h.enable();
  await Promise.all(attns.map(async (a, i) => {
    while (!stop) {
      const s = performance.now();
      const out = await a.forward(...inputs[i]);
      walls.push(performance.now() - s);
      if (out.dispose) out.dispose();
      if (performance.now() - t0 > seconds * 1000) stop = true;
    }
  }));
  h.disable();
  for (const a of attns) a.dispose();
  for (const set of inputs) for (const t of set) if (t.dispose) t.dispose();
  walls.sort((x, y) => x - y);
  const ms = (ns) => Number((ns / 1e6).toFixed(3));
  return {
    scenario: name, forwards: walls.length,
    wallMs: { p50: walls[walls.length >> 1], p99: walls[Math.floor(walls.length * 0.99)], max: walls[walls.length - 1] },
    loopDelayMs: { p50: ms(h.percentile(50)), p99: ms(h.percentile(99)), max: ms(h.max) },
  };
}

// Main-thread cost of securing ordinary q/k/v at call time: a CPU forward whose signal is aborted as
// soon as the call returns (the staging is done by then; no stage runs).
function stagingCost() {
  const t = [0, 1, 2].map(() => randomTensor('ordinary'));
  const a = new m.MonarchAttention({ ...preset, dtype, backend: 'cpu' });
  const runs = [];
  for (let i = 0; i < 5; i++) {
    const ac = new AbortController();
    const before = m.memoryStats().stagingBytes;
    const s = performance.now();
    a.forward(...t, { signal: ac.signal }).catch(() => {});
    runs.push({ ms: performance.now() - s, bytes: m.memoryStats().stagingBytes - before });
    ac.abort();
  }
  a.dispose();
  const ms = runs.map((r) => r.ms).sort((x, y) => x - y);
  return { bytes: runs[0].bytes, firstCallMs: runs[0].ms, medianMs: ms[2], GBs: Number((runs[0].bytes / (ms[2] / 1000) / 1e9).toFixed(2)) };
}

function bandwidth() {
  if (!cuda) return null;
  const bytes = n * 2;
  const res = {};
  for (const kind of ['pageable', 'pinned']) {
    const host = kind === 'pinned' ? m.allocTensor(shape, 'bfloat16') : m.tensor(new Uint16Array(n), shape, 'bfloat16');
    const d = m.DeviceTensor.fromHost(host);
    let s = performance.now();
    for (let i = 0; i < 5; i++) d.upload(host);
    const h2d = (5 * bytes) / ((performance.now() - s) / 1000) / 1e9;
    s = performance.now();
    for (let i = 0; i < 5; i++) d.downloadSync();
    const d2h = (5 * bytes) / ((performance.now() - s) / 1000) / 1e9;
    d.dispose();
    res[kind] = { h2dGBs: Number(h2d.toFixed(2)), d2hGBs: Number(d2h.toFixed(2)) };
  }
  return res;
}

async function main() {
  const result = { preset: presetName, instances, seconds, dtype, info: m.info(), results: [] };
  result.staging = stagingCost();
  result.results.push(await scenario('host-ordinary', () => [0, 1, 2].map(() => randomTensor('ordinary'))));
  result.results.push(await scenario('host-addon', () => [0, 1, 2].map(() => randomTensor('addon'))));
  if (cuda) result.results.push(await scenario('device', () => [0, 1, 2].map(() => m.DeviceTensor.fromHost(randomTensor('ordinary')))));
  result.bandwidth = bandwidth();
  console.log(JSON.stringify(result, null, 2));
}
main().catch((e) => { console.error(e); process.exit(1); });
