#!/usr/bin/env node
// Longest main-thread stall of a forward with ordinary-ArrayBuffer host inputs (issue 12 item 1), with
// the staging copy done at call time (hostStagingSliceBytes Infinity: the path before sliced staging)
// and in slices (4 MiB, the recommended opt-in, or any --slice-bytes). Default shape: Wan 480p, q/k/v 1×32760×12×128
// bf16 (100.6 MB each), on the CPU backend (--backend cuda on a GPU machine).
//
// Per forward it measures, on the main thread:
//   callMs      — the synchronous part of forward() (the whole copy when unsliced);
//   maxGapMs    — the longest gap between two event-loop turns (a setImmediate ticker) from the call
//                 until the staging is done, the turn of the last slice excluded (it also runs the
//                 call's enqueue); p50GapMs, p99GapMs and ticks beside it (a garbage collection or
//                 the OS can lengthen any one turn: compare p50 with the slice's memcpy time);
//   stallMs     — max(callMs, maxGapMs): the longest the event loop was blocked by the staging;
//   stagingMs   — wall time from the call until the last slice;
//   stageMainThreadMs — the call's own main-thread ms in its 'stage' phase (diagnostics mainThreadMs);
//   slices, maxSliceMs — the slices and the longest one timed inside the copy (without GC or other work
//                 of the same turn; 0 slices when unsliced: then callMs is the one stall).
// A CPU forward at 480p computes for about a minute on 2 cores, so by default each forward is aborted
// (AbortSignal) as soon as its staging is done — the staging is what this measures; --full lets the
// forwards run to the end (and reports their wall).
//   npm run build:ts && node benchmarks/staging_stall.js [--slice-bytes Infinity,4194304] [--forwards 3]
//     [--backend cpu|cuda] [--full] [--frames F --height H --width W --heads n --head-dim d] [--out dir]
'use strict';
const fs = require('node:fs');
const path = require('node:path');
const { performance } = require('node:perf_hooks');
const diagnostics = require('node:diagnostics_channel');
const { loadLib, cliArgs } = require('./script_common');
const [m, hs] = loadLib('index', 'hoststage');
const { argv, arg, num } = cliArgs();
const cfg = {
  frames: num('frames', 21, 1), height: num('height', 30, 1), width: num('width', 52, 1),
  heads: num('heads', 12, 1), headDim: num('head-dim', 128, 1),
};
const slices = arg('slice-bytes', 'Infinity,4194304').split(',').map((s) => {
  const x = Number(s);
  if (!(x === Infinity || Number.isInteger(x))) throw new RangeError(`--slice-bytes must be integers or Infinity, received ${JSON.stringify(s)}`);
  return x;
});
const forwards = num('forwards', 3, 1);
const backend = arg('backend', 'cpu');
const full = argv.includes('--full');
const outDir = arg('out', undefined);
const N = cfg.frames * cfg.height * cfg.width, shape = [1, N, cfg.heads, cfg.headDim], n = N * cfg.heads * cfg.headDim;
const options = {
  layout: { kind: 'video', frames: cfg.frames, height: cfg.height, width: cfg.width },
  heads: cfg.heads, headDim: cfg.headDim, dtype: 'bfloat16', backend, hostOutputs: 'pooled',
  ...(backend === 'cpu' && { threads: 1 }),  // leave a core to the main thread on small machines
};

/** An ordinary bf16 tensor of values in ±[2^-8, 2^-1) (xorshift32 bits). */
function input(seed) {
  const a = new Uint16Array(n);
  let s = seed >>> 0 || 1;
  for (let i = 0; i < n; i++) {
    s ^= s << 13; s >>>= 0; s ^= s >>> 17; s ^= s << 5; s >>>= 0;
    a[i] = ((s >>> 31) << 15) | ((119 + (s & 7) % 7) << 7) | ((s >>> 3) & 0x7f);
  }
  return m.tensor(a, shape, 'bfloat16');
}

const ms3 = (x) => Number(x.toFixed(3));

async function one(attn, q, k, v) {
  let stage = null;
  const sub = (e) => { if (e.phase === 'end' && e.op === 'forward' && e.mainThreadMs) stage = e.mainThreadMs.stage; };
  diagnostics.subscribe('monarch-attention:call', sub);
  const ac = new AbortController();
  hs.takeStagingSliceStats();
  const t0 = performance.now();
  const p = attn.forward(q, k, v, full ? undefined : { signal: ac.signal });
  const t1 = performance.now();
  const gaps = [];
  let last = t1;
  while (hs.pendingStagingJobs() > 0) {
    await new Promise((r) => setImmediate(r));
    const t = performance.now();
    if (hs.pendingStagingJobs() > 0) gaps.push(t - last);
    last = t;
  }
  const staged = performance.now();
  const sl = hs.takeStagingSliceStats();
  if (!full) ac.abort();
  let wall = null;
  try {
    const o = await p;
    wall = performance.now() - t0;
    o.dispose?.();
  } catch (e) {
    if (!e || e.name !== 'AbortError') throw e;
  }
  diagnostics.unsubscribe('monarch-attention:call', sub);
  gaps.sort((a, b) => a - b);
  const maxGap = gaps.length ? gaps[gaps.length - 1] : 0;
  return {
    callMs: ms3(t1 - t0), maxGapMs: ms3(maxGap), p50GapMs: ms3(gaps.length ? gaps[gaps.length >> 1] : 0), p99GapMs: ms3(gaps.length ? gaps[Math.floor(gaps.length * 0.99)] : 0),
    ticks: gaps.length, stallMs: ms3(Math.max(t1 - t0, maxGap)), stagingMs: ms3(staged - t0),
    stageMainThreadMs: stage === null ? null : ms3(stage), slices: sl.slices, maxSliceMs: ms3(sl.maxSliceMs), ...(wall !== null && { wallMs: ms3(wall) }),
  };
}

async function main() {
  const [q, k, v] = [input(1), input(2), input(3)];
  const results = [];
  for (const sliceBytes of slices) {
    const attn = new m.MonarchAttention({ ...options, hostStagingSliceBytes: sliceBytes });
    const runs = [];
    for (let i = 0; i <= forwards; i++) {
      const r = await one(attn, q, k, v);
      if (i > 0) runs.push(r);  // the first allocates the staging buffers (fresh pages): a warm-up
    }
    await attn.close();
    const worst = (key) => ms3(Math.max(...runs.map((r) => r[key] ?? 0)));
    results.push({ hostStagingSliceBytes: sliceBytes === Infinity ? 'Infinity' : sliceBytes, forwards: runs, worstStallMs: worst('stallMs'), worstCallMs: worst('callMs'), worstGapMs: worst('maxGapMs'), worstSliceMs: worst('maxSliceMs') });
  }
  const i = m.info();
  const result = {
    probe: 'staging_stall', config: cfg, shape, dtype: 'bfloat16', inputBytes: 3 * n * 2, backend, full,
    cpus: require('node:os').cpus().length, device: i.device, results,
  };
  const json = JSON.stringify(result, null, 2);
  if (outDir) {
    fs.mkdirSync(outDir, { recursive: true });
    fs.writeFileSync(path.join(outDir, 'staging_stall.json'), json + '\n');
  }
  console.log(json);
}
main().catch((e) => { console.error(e); process.exit(1); });
