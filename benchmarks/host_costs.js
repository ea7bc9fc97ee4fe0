#!/usr/bin/env node
// Main-thread costs of the host-tensor path's pieces, measured with the addon alone (no GPU needed;
// benchmarks/notes/host-path.md explains which forward step each one is). Default size: one Wan 480p
// bf16 q/k/v/o tensor, 32760·12·128·2 = 100.6 MB. Prints one JSON object (and writes host_costs.json
// into --out when given).
//   node benchmarks/host_costs.js [--mb 100.6] [--reps 5] [--seconds 2] [--out results/]
'use strict';
const fs = require('node:fs');
const path = require('node:path');
const { monitorEventLoopDelay, performance, PerformanceObserver } = require('node:perf_hooks');
const root = path.join(__dirname, '..');
const native = require('node-gyp-build')(root);

const argv = process.argv.slice(2);
const arg = (name, dflt) => { const i = argv.indexOf(`--${name}`); return i < 0 ? dflt : argv[i + 1]; };
const bytes = Math.round(Number(arg('mb', 32760 * 12 * 128 * 2 / 1e6)) * 1e6 / 2) * 2;
const reps = Number(arg('reps', 5)), seconds = Number(arg('seconds', 2)), outDir = arg('out', undefined);
const ms3 = (x) => Number(x.toFixed(3));

/** Median ms of `reps` runs of fn (after one warm-up run). */
function time(fn) {
  fn();
  const t = [];
  for (let i = 0; i < reps; i++) { const s = performance.now(); fn(); t.push(performance.now() - s); }
  t.sort((a, b) => a - b);
  return ms3(t[t.length >> 1]);
}

/** Loops `step` (async) for `seconds`: iterations, ms per iteration, loop delay p50/p99/max, GC pauses. */
async function loop(step) {
  const gc = { count: 0, ms: 0, maxMs: 0 };
  const obs = new PerformanceObserver((list) => {
    for (const e of list.getEntries()) { gc.count++; gc.ms += e.duration; gc.maxMs = Math.max(gc.maxMs, e.duration); }
  });
  for (let i = 0; i < 2; i++) await step();
  obs.observe({ entryTypes: ['gc'] });
  const h = monitorEventLoopDelay({ resolution: 1 });
  h.enable();
  const t0 = performance.now();
  let n = 0;
  while (performance.now() - t0 < seconds * 1000) { await step(); n++; }
  const wall = performance.now() - t0;
  h.disable();
  await new Promise((r) => setImmediate(r));  // let the observer deliver
  obs.disconnect();
  return {
    iterations: n, msPerIteration: ms3(wall / n),
    loopDelayMs: { p50: ms3(h.percentile(50) / 1e6), p99: ms3(h.percentile(99) / 1e6), max: ms3(h.max / 1e6) },
    gc: { count: gc.count, ms: ms3(gc.ms), maxMs: ms3(gc.maxMs) },
  };
}

async function main() {
  const u16 = (ab) => new Uint16Array(ab);
  const src = u16(native.allocHost(bytes, false));
  src.fill(0x3f80);
  const src3 = u16(native.allocHost(3 * bytes, false));
  const ord3 = new Uint16Array(3 * bytes / 2).fill(0x3f80);
  const r = { bytes, cpuThreads: native.info().cpuThreads, node: process.version, measuredMs: {} };
  const m = r.measuredMs;
  // Main-thread steps, one call each (median of reps).
  m.allocHostUnpinned = time(() => native.allocHost(bytes, false));                       // calloc: fresh zero pages
  m.allocHostPlusMemset = time(() => new Uint8Array(native.allocHost(bytes, false)).fill(0));  // what a pinned alloc's memset adds (page faults + zeroing)
  m.newArrayBuffer = time(() => new ArrayBuffer(bytes));
  m.newArrayBufferFirstTouch = time(() => new Uint8Array(new ArrayBuffer(bytes)).fill(1));  // the pages faulted in
  m.sliceOfAddon = time(() => src.slice());                                                // forwardSync's output copy
  m.copyHost3xInto = time(() => native.copyHost(src3, ord3));                              // staging q+k+v (ParallelCopy, warm pages)
  // Staging-slice copy bandwidth against the copy's thread count (ParallelCopy takes one thread per
  // 2 MiB, capped by setCpuThreads): 3 tensors of ordinary memory into pinned (on a GPU machine) addon
  // memory, in slices of --slice-mb (default 16 MiB), as the sliced staging of an async call does.
  const sliceBytes = Math.round(Number(arg('slice-mb', 16)) * 1048576);
  const pinnedDst = new Uint8Array(native.allocHost(3 * bytes, true, false));
  const ordSrc = new Uint8Array(ord3.buffer);
  r.sliceCopy = { sliceBytes, pinnedDst: native.info().deviceCount > 0, byThreads: {} };
  for (const t of [1, 2, 4, 8, 16]) {
    native.setCpuThreads(t);
    const ms = time(() => {
      for (let o = 0; o < ordSrc.length; o += sliceBytes) {
        const n = Math.min(sliceBytes, ordSrc.length - o);
        native.copyHost(pinnedDst.subarray(o, o + n), ordSrc.subarray(o, o + n));
      }
    });
    r.sliceCopy.byThreads[t] = { ms, GBps: ms3(ordSrc.length / ms / 1e6), msPerSlice: ms3(ms * sliceBytes / ordSrc.length) };
  }
  native.setCpuThreads(0);
  const warm = new ArrayBuffer(bytes);
  new Uint8Array(warm).fill(1);
  m.transferArrayBuffer = time(() => { const a = new ArrayBuffer(bytes); structuredClone(a, { transfer: [a] }); });  // dispose's detach + re-own (incl. the alloc)
  m.transferOnly = (() => { let a = warm; const s = performance.now(); for (let i = 0; i < reps; i++) a = structuredClone(a, { transfer: [a] }); return ms3((performance.now() - s) / reps); })();
  // Async loop: a fresh output per step (the 'fresh' default). The reused-buffer variant this loop had
  // (cloneHostAsync(src, into)) is gone: a worker cannot fill a caller's ArrayBuffer safely (JS could
  // transfer or shrink it meanwhile); 'pooled' outputs reuse addon memory instead.
  r.cloneFresh = await loop(async () => { await native.cloneHostAsync(src); });
  const json = JSON.stringify(r, null, 2);
  if (outDir) { fs.mkdirSync(outDir, { recursive: true }); fs.writeFileSync(path.join(outDir, 'host_costs.json'), json + '\n'); }
  console.log(json);
}
main().catch((e) => { console.error(e); process.exit(1); });
