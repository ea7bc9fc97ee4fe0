// The fuzz driver (issue 8, item 7): seeded random — and often malformed — options, tensors, layouts and
// lifecycles through the public API on the CPU backend (scenarios: monarch, dense, kvcache, kvprotocol —
// the KV-cache protocol with enqueued / awaited / sync calls and pooled outputs —, lifecycle). Every case must either return results matching
// the float64 reference (test/reference) or throw a clear JS error (TypeError / RangeError / Error with a
// message); anything else — a wrong result, a non-Error throw, an empty message, a defect that is
// accepted — is a failure, and a native crash or hang kills this process (so it runs as a child of
// test/fuzz.test.ts, which then reports the case from the progress file).
//   node -r ./test/child/ts-register.js test/fuzz/fuzz-driver.ts [--seed S] [--cases N] [--ms T] [--progress FILE]
// Last stdout line: JSON counts {cases, accepted, rejected: {reason: n}, failures, rssStartMB, rssEndMB, ms}.
import * as fs from 'node:fs';
import { MonarchAttention, denseAttention, denseAttentionSync, tensor } from '../helpers/pkg';
import type { DType, HostTensor, MonarchOptions, TensorLayout } from '../helpers/pkg';
import { mulberry32, type Rng } from '../helpers/rng';
import { randAct, toHost, fromHost, type Act } from '../helpers/tensors';
import { compare } from '../helpers/compare';
import { denseRef } from '../reference/dense';
import { sequenceRef } from '../reference/sequence';
import { videoRef } from '../reference/video';
import { concatTokens, sliceRows } from '../helpers/act';
import { keyChunks } from '../helpers/self-forcing';

const args = process.argv.slice(2);
const arg = (name: string, dflt: number): number => {
  const i = args.indexOf(`--${name}`);
  return i >= 0 ? Number(args[i + 1]) : dflt;
};
const seed = arg('seed', 1), maxCases = arg('cases', 2000), budgetMs = arg('ms', 60_000);
const progressIdx = args.indexOf('--progress');
const progress = progressIdx >= 0 ? args[progressIdx + 1] : undefined;

const pick = <T>(r: Rng, xs: readonly T[]): T => xs[r.int(xs.length)];
const chance = (r: Rng, p: number): boolean => r.uniform() < p;

// Tolerances vs the float64 reference on dtype-rounded inputs (test/helpers/tolerances.ts explains the
// scale; the fuzz allows ~4× more because shapes, T ≤ 3 and scales are drawn at random). A real bug
// (wrong tile, mask, pass) errs by ≥ 0.1.
const TOL: Record<DType, { atol: number; rtol: number }> = {
  float32: { atol: 5e-4, rtol: 5e-4 }, bfloat16: { atol: 2 ** -3, rtol: 2 ** -6 }, float16: { atol: 2 ** -6, rtol: 2 ** -8 },
};

/**
 * The Monarch paths store aR, aL and y in the 16-bit dtype, and their rounding error grows with the
 * sharpness of the softmax: measured on the CPU backend (400 seeds × T 1..3, video 4×4×4, D 8/16/17,
 * scale 0.1..1.1) the worst error is ≤ 11u·κ with κ = max(1, scale·√D)² (u = 2^-12 fp16, 2^-9 bf16);
 * at scale·√D = 4.1 that is 98u in fp16 and 160u in bf16, above the flat 64u this driver used before.
 * The bound here, 32u·κ, keeps a 3× margin at every temperature and is still 24u (0.047 bf16, 0.006
 * fp16) at the default scale 1/√D, where a wrong tile, mask or pass errs by ≥ 0.1.
 */
function monarchTol(dtype: DType, scale: number, D: number): { atol: number; rtol: number } {
  if (dtype === 'float32') return TOL.float32;
  const u = dtype === 'float16' ? 2 ** -12 : 2 ** -9;
  const kappa = Math.max(1, scale * Math.sqrt(D)) ** 2;
  return { atol: 32 * u * kappa, rtol: 2 * u * kappa };
}

interface Outcome { kind: 'accepted' | 'rejected'; reason?: string }
class Failure extends Error {}

/** A defect injected into an otherwise valid request; `must` = it has to be rejected. */
interface Defect { name: string; must: boolean }

function classify(e: unknown): string {
  if (!(e instanceof Error) && !(typeof e === 'object' && e !== null && typeof (e as Error).message === 'string')) {
    throw new Failure(`a non-Error was thrown: ${String(e)}`);
  }
  const err = e as Error;
  if (!err.message || err.message.length < 8) throw new Failure(`an error without a useful message: ${err.name}: "${err.message}"`);
  if (e instanceof Failure) throw e;
  const cls = err.name === 'TypeError' || err.name === 'RangeError' ? err.name : 'Error';
  // Reason = the class plus the message's leading words (numbers and quoted values stripped).
  const head = err.message.replace(/^inputs\[\d+\]: /, '').replace(/"[^"]*"|'[^']*'|-?\d[\d.e+-]*/g, '#').split(/[,;:(]/)[0].slice(0, 48).trim();
  return `${cls}: ${head}`;
}

function layoutShape(r: Rng, dtype: DType, tl: TensorLayout, B: number, S: number, H: number, D: number): { act: Act; t: HostTensor } {
  const a = randAct(r, B, S, H, D, 1, dtype);
  return { act: a, t: toHost(a, dtype, tl) };
}

/** Applies an input defect: returns the (possibly broken) tensor. */
function breakTensor(r: Rng, t: HostTensor, name: string, defects: Defect[]): unknown {
  const k = r.int(9);
  switch (k) {
    case 0: defects.push({ name: `${name}: shape rank 3`, must: true }); return { ...t, shape: t.shape.slice(0, 3) };
    case 1: defects.push({ name: `${name}: wrong dtype label`, must: true }); return { ...t, dtype: t.dtype === 'float32' ? 'bfloat16' : 'float32' };
    case 2: defects.push({ name: `${name}: data too short`, must: true }); return { ...t, data: t.data.subarray(0, t.data.length - 1) };
    case 3: defects.push({ name: `${name}: null`, must: true }); return null;
    case 4: defects.push({ name: `${name}: a Float64Array`, must: true }); return { ...t, data: Float64Array.from(t.data) };
    case 5: defects.push({ name: `${name}: a dimension off by one`, must: true }); { const s = t.shape.slice(); const i = r.int(4); s[i] += 1; return { ...t, shape: s }; }
    case 6: defects.push({ name: `${name}: shape with NaN`, must: true }); return { ...t, shape: [t.shape[0], NaN, t.shape[2], t.shape[3]] };
    case 7: defects.push({ name: `${name}: a string`, must: true }); return 'q';
    default: defects.push({ name: `${name}: shape as strings`, must: true }); return { ...t, shape: t.shape.map(String) };
  }
}

/** Random MonarchOptions, with one option defect at probability pBad. */
function genMonarch(r: Rng, pBad: number, defects: Defect[]): { o: Record<string, unknown>; video: boolean } {
  const video = chance(r, 0.55);
  const o: Record<string, unknown> = { heads: 1 + r.int(3), headDim: pick(r, [1, 2, 3, 5, 8, 16, 17]), backend: 'cpu' };
  if (chance(r, 0.5)) o.batch = 1 + r.int(2);
  if (chance(r, 0.6)) o.numIters = 1 + r.int(3);
  if (chance(r, 0.5)) o.dtype = pick(r, ['float32', 'bfloat16', 'float16'] as const);
  if (chance(r, 0.4)) o.tensorLayout = pick(r, ['BSHD', 'BHSD'] as const);
  if (chance(r, 0.3)) o.scale = 0.1 + r.uniform();
  if (chance(r, 0.3)) o.threads = r.int(3);
  if (video) {
    const fact = chance(r, 0.25) ? 'vmonarch' : 'monarchrt';
    const F = pick(r, [1, 2, 3, 4, 6]), h = 1 + r.int(4), w = 1 + r.int(5);
    const l: Record<string, unknown> = { kind: 'video', frames: F, height: h, width: w };
    if (fact === 'vmonarch') l.factorization = 'vmonarch';
    const divisors = (n: number) => Array.from({ length: n }, (_, i) => i + 1).filter((d) => n % d === 0);
    let fTied = 1;
    if (fact === 'monarchrt') {
      if (chance(r, 0.3)) l.fTied = fTied = pick(r, divisors(F));
      if (chance(r, 0.3)) l.hReduce = pick(r, divisors(h));
      if (chance(r, 0.3)) l.wReduce = pick(r, divisors(w));
    }
    o.layout = l;
    if (chance(r, 0.4)) {
      const cands = divisors(F).filter((c) => c % fTied === 0);
      if (cands.length) o.causal = { chunkFrames: pick(r, cands) };
    }
    if (chance(r, 0.2)) o.recompute = 'first-frame';
  } else {
    const N = 1 + r.int(40);
    const l: Record<string, unknown> = { kind: 'sequence', length: N, blockSize: 1 + r.int(N) };
    if (chance(r, 0.3)) l.padding = pick(r, ['pre', 'post']);
    o.layout = l;
  }
  if (chance(r, pBad)) {
    const k = r.int(14);
    const l = o.layout as Record<string, unknown>;
    switch (k) {
      case 0: o.heads = 0; defects.push({ name: 'heads 0', must: true }); break;
      case 1: o.headDim = '8'; defects.push({ name: 'headDim string', must: true }); break;
      case 2: o.numIters = 17; defects.push({ name: 'numIters 17', must: true }); break;
      case 3: o.numIter = 2; defects.push({ name: 'typo numIter', must: true }); break;
      case 4: o.dtype = 'float64'; defects.push({ name: 'dtype float64', must: true }); break;
      case 5: o.scale = pick(r, [NaN, -1, 0, Infinity, 1e39]); defects.push({ name: `scale ${o.scale}`, must: true }); break;
      case 6: o.batch = 1.5; defects.push({ name: 'batch 1.5', must: true }); break;
      case 7: o.maxWorkspaceBytes = 1; defects.push({ name: 'maxWorkspaceBytes 1', must: true }); break;
      case 8: l.kind = 'image'; defects.push({ name: 'layout.kind image', must: true }); break;
      case 9:
        if (l.kind === 'sequence') { l.blockSize = (l.length as number) + 1; defects.push({ name: 'blockSize > length', must: true }); }
        else { l.frames = -2; defects.push({ name: 'frames -2', must: true }); }
        break;
      case 10: o.causal = { chunkFrames: 0 }; defects.push({ name: 'causal.chunkFrames 0', must: true }); break;
      case 11: o.backend = 'gpu'; defects.push({ name: 'backend gpu', must: true }); break;
      case 12: o.layout = null; defects.push({ name: 'layout null', must: true }); break;
      default: o.queryTilesPerCall = 0; defects.push({ name: 'queryTilesPerCall 0', must: true }); break;
    }
  }
  return { o, video };
}

async function caseMonarch(r: Rng): Promise<Outcome> {
  const defects: Defect[] = [];
  const { o } = genMonarch(r, 0.3, defects);
  let attn: MonarchAttention;
  try {
    attn = new MonarchAttention(o as unknown as MonarchOptions);
  } catch (e) {
    return { kind: 'rejected', reason: classify(e) };
  }
  try {
    const cfg = attn.config, g = attn.geometry;
    const dtype = cfg.dtype, tl = cfg.tensorLayout;
    const [B, S, H, D] = [cfg.batch, attn.numTokens, cfg.heads, cfg.headDim];
    const ins = [0, 1, 2].map(() => layoutShape(r, dtype, tl, B, S, H, D));
    const given: unknown[] = ins.map((x) => x.t);
    if (chance(r, 0.15)) { const i = r.int(3); given[i] = breakTensor(r, ins[i].t, ['q', 'k', 'v'][i], defects); }
    let keyMask: Uint8Array | undefined;
    if (g.kind === 'sequence' && chance(r, 0.25)) keyMask = Uint8Array.from({ length: B * S }, () => (chance(r, 0.8) ? 1 : 0));
    let out: HostTensor;
    try {
      out = chance(r, 0.5)
        ? await attn.forward(given[0] as HostTensor, given[1] as HostTensor, given[2] as HostTensor, keyMask && { keyMask })
        : attn.forwardSync(given[0] as HostTensor, given[1] as HostTensor, given[2] as HostTensor, keyMask && { keyMask });
    } catch (e) {
      return { kind: 'rejected', reason: classify(e) };
    }
    const must = defects.filter((d) => d.must);
    if (must.length) throw new Failure(`accepted a request with defect(s): ${must.map((d) => d.name).join(', ')}`);
    const [q, k, v] = ins.map((x) => x.act);
    let ref: Float64Array;
    if (g.kind === 'sequence') {
      const l = cfg.layout as { blockSize: number; padding?: 'pre' | 'post' };
      ref = sequenceRef(q, k, v, { blockSize: l.blockSize, padding: l.padding, numIters: cfg.numIters, scale: cfg.scale, keyMask });
    } else {
      const l = cfg.layout as { frames: number; height: number; width: number; factorization?: 'monarchrt' | 'vmonarch'; fTied?: number; hReduce?: number; wReduce?: number };
      ref = videoRef(q, k, v, l, { numIters: cfg.numIters, scale: cfg.scale, chunkFrames: cfg.chunkFrames, recompute: cfg.recompute });
    }
    const got = fromHost(out, tl);
    const c = compare(got, ref, monarchTol(dtype, cfg.scale, D));
    if (!c.ok) {
      throw new Failure(`output differs from the float64 reference: worst index ${c.worst}: ${got[c.worst]} vs ${ref[c.worst]} ` +
        `(${c.bad} bad); options ${JSON.stringify(o)}`);
    }
    return { kind: 'accepted' };
  } finally {
    attn.dispose();
  }
}

async function caseDense(r: Rng): Promise<Outcome> {
  const defects: Defect[] = [];
  const dtype = pick(r, ['float32', 'bfloat16', 'float16'] as const), tl = pick(r, ['BSHD', 'BHSD'] as const);
  const [B, Nq, Nk, H, D] = [1 + r.int(2), 1 + r.int(30), 1 + r.int(30), 1 + r.int(3), pick(r, [1, 3, 8, 16, 33])];
  const q = layoutShape(r, dtype, tl, B, Nq, H, D), k = layoutShape(r, dtype, tl, B, Nk, H, D), v = layoutShape(r, dtype, tl, B, Nk, H, D);
  const opts: Record<string, unknown> = { backend: 'cpu', tensorLayout: tl };
  if (chance(r, 0.3)) opts.scale = 0.1 + r.uniform();
  if (chance(r, 0.4)) opts.returnLse = true;
  if (chance(r, 0.2)) opts.returnEntropy = true;
  if (chance(r, 0.25)) opts.keyMask = Uint8Array.from({ length: B * Nk }, () => (chance(r, 0.8) ? 1 : 0));
  if (chance(r, 0.3)) opts.causalChunk = 1 + r.int(Nk);
  if (chance(r, 0.2)) opts.qOffset = r.int(Nk + 1);
  const given: unknown[] = [q.t, k.t, v.t];
  if (chance(r, 0.25)) {
    const kd = r.int(8);
    switch (kd) {
      case 0: opts.returnLSE = true; defects.push({ name: 'typo returnLSE', must: true }); break;
      case 1: opts.keyMask = new Uint8Array(B * Nk + 1); defects.push({ name: 'keyMask length', must: true }); break;
      case 2: opts.causalChunk = 0; defects.push({ name: 'causalChunk 0', must: true }); break;
      case 3: opts.scale = pick(r, [NaN, -2, 1e39]); defects.push({ name: `scale ${opts.scale}`, must: true }); break;
      case 4: opts.tensorLayout = 'SBHD'; defects.push({ name: 'tensorLayout SBHD', must: true }); break;
      default: { const i = r.int(3); given[i] = breakTensor(r, [q.t, k.t, v.t][i], ['q', 'k', 'v'][i], defects); }
    }
  }
  let res: { out: HostTensor; lse?: HostTensor };
  try {
    res = chance(r, 0.5)
      ? await denseAttention(given[0] as HostTensor, given[1] as HostTensor, given[2] as HostTensor, opts)
      : denseAttentionSync(given[0] as HostTensor, given[1] as HostTensor, given[2] as HostTensor, opts);
  } catch (e) {
    return { kind: 'rejected', reason: classify(e) };
  }
  const must = defects.filter((d) => d.must);
  if (must.length) throw new Failure(`accepted a request with defect(s): ${must.map((d) => d.name).join(', ')}`);
  const ref = denseRef(q.act, k.act, v.act, {
    scale: opts.scale as number | undefined, keyMask: opts.keyMask as Uint8Array | undefined,
    causalChunk: opts.causalChunk as number | undefined, qOffset: opts.qOffset as number | undefined,
  });
  const got = fromHost(res.out, tl);
  const c = compare(got, ref.out, TOL[dtype]);
  if (!c.ok) throw new Failure(`dense output differs from the float64 reference at ${c.worst}: ${got[c.worst]} vs ${ref.out[c.worst]}`);
  if (res.lse) {
    const cl = compare(res.lse.data as Float32Array, ref.lse, { atol: 1e-3, rtol: 1e-4 });
    if (!cl.ok) throw new Failure(`dense lse differs at ${cl.worst}: ${res.lse.data[cl.worst]} vs ${ref.lse[cl.worst]}`);
  }
  return { kind: 'accepted' };
}

async function caseKVCache(r: Rng): Promise<Outcome> {
  const dtype = pick(r, ['float32', 'bfloat16'] as const);
  const F = pick(r, [2, 4, 6]), h = 1 + r.int(3), w = 1 + r.int(4), chunk = pick(r, [1, 2].filter((c) => F % c === 0));
  const o: MonarchOptions = { layout: { kind: 'video', frames: F, height: h, width: w, ...(chance(r, 0.4) && { wReduce: w % 2 === 0 ? 2 : 1 }) },
    heads: 1 + r.int(2), headDim: pick(r, [2, 8]), causal: { chunkFrames: chunk }, numIters: 1 + r.int(2), dtype, backend: 'cpu' };
  const attn = new MonarchAttention(o);
  const cache = attn.createKVCache();
  try {
    const cfg = attn.config, S = attn.numTokens, ct = cache.chunkTokens;
    const [q, k, v] = [0, 1, 2].map(() => randAct(r, 1, S, cfg.heads, cfg.headDim, 1, dtype));
    const ref = videoRef(q, k, v, o.layout as never, { numIters: cfg.numIters, chunkFrames: chunk });
    const steps = F / chunk;
    for (let s = 0; s < steps; s++) {
      const part = (a: Act) => toHost({ ...a, S: ct, x: sliceRows(a.x, 1, S, a.H, a.D, s * ct, (s + 1) * ct) }, dtype);
      const out = chance(r, 0.5) ? await cache.step(part(q), part(k), part(v)) : cache.stepSync(part(q), part(k), part(v));
      const want = sliceRows(ref, 1, S, cfg.heads, cfg.headDim, s * ct, (s + 1) * ct);
      const c = compare(fromHost(out), want, TOL[dtype]);
      if (!c.ok) throw new Failure(`KV step ${s} differs from the one-shot reference at ${c.worst}`);
    }
    // Lifecycle: a step beyond the capacity, reset, and use after dispose are clear errors.
    const part0 = (a: Act) => toHost({ ...a, S: ct, x: sliceRows(a.x, 1, S, a.H, a.D, 0, ct) }, dtype);
    let reason: string | undefined;
    try {
      cache.stepSync(part0(q), part0(k), part0(v));
      throw new Failure('a step beyond layout.frames was accepted');
    } catch (e) {
      reason = classify(e);
    }
    cache.reset();
    cache.dispose();
    try {
      await cache.step(part0(q), part0(k), part0(v));
      throw new Failure('a step after dispose() was accepted');
    } catch (e) {
      classify(e);
    }
    return { kind: 'accepted', reason };
  } finally {
    cache.dispose();
    attn.dispose();
  }
}

/**
 * The KV-cache protocol with a rolling window and sink, at random positions (appends, rewrites of held
 * chunks, attends of older chunks, bad positions), each call made at random as enqueueAttend /
 * enqueueWrite (flushed at random points), awaited or sync, with 'fresh' or 'pooled' host outputs.
 * Every output must match the float64 reference over the frames the chunk sees (the latest K/V written
 * at each), outputs kept must not change until disposed (no buffer shared between live outputs), and a
 * refused call must leave the positions unchanged.
 */
async function caseKVProtocol(r: Rng): Promise<Outcome> {
  const dtype = pick(r, ['float32', 'float32', 'bfloat16'] as const);
  const h = 1 + r.int(2), w = 1 + r.int(3), cf = pick(r, [1, 2]), F = cf * (1 + r.int(3));
  const layout = { kind: 'video' as const, frames: F, height: h, width: w, ...(w % 2 === 0 && chance(r, 0.4) && { wReduce: 2 }) };
  const rec = chance(r, 0.2) ? 'first-frame' as const : 'none' as const;
  const o: MonarchOptions = { layout, heads: 1 + r.int(2), headDim: pick(r, [2, 8]), causal: { chunkFrames: cf }, numIters: 1 + r.int(2),
    dtype, backend: 'cpu', recompute: rec, hostOutputs: chance(r, 0.5) ? 'pooled' : 'fresh' };
  const rolling = chance(r, 0.7);
  const sinkC = rolling ? r.int(3) : 0, winC = rolling ? sinkC + 1 + r.int(3) : Infinity;
  const win = rolling ? { localAttnFrames: winC * cf, sinkFrames: sinkC * cf } : {};
  const attn = new MonarchAttention(o);
  const layers = 1 + r.int(2);
  const pool = attn.createKVCachePool({ layers, ...win });
  const cfg = attn.config, H = cfg.heads, D = cfg.headDim, ct = pool.layers[0].chunkTokens;
  const positions = rolling ? Infinity : F / cf;
  // Per layer: the K/V last written at each logical chunk, chunks written [0, end), evicted non-sink chunks.
  const model = Array.from({ length: layers }, () => ({ kv: new Map<number, [Act, Act]>(), end: 0, evicted: 0 }));
  const kept: Array<{ t: HostTensor; copy: Float32Array | Uint16Array; label: string }> = [];
  const disposedFns: Array<() => void> = [];
  let pendingEnqueued = false;
  const ctx = `options ${JSON.stringify({ ...o, ...win, layers })}`;
  const checkKept = (when: string): void => {
    for (const k of kept) {
      const cur = k.t.data;
      for (let i = 0; i < cur.length; i++) {
        if (cur[i] !== k.copy[i] && !(Number.isNaN(cur[i]) && Number.isNaN(k.copy[i]))) {
          throw new Failure(`${k.label}: a kept output changed at index ${i} (${when}); ${ctx}`);
        }
      }
    }
  };
  try {
    const ops = 4 + r.int(10);
    for (let n = 0; n < ops; n++) {
      if (chance(r, 0.06)) {
        // A new video: reset() needs the enqueued calls flushed first (and then forgets the positions).
        if (pendingEnqueued) {
          let refused = false;
          try { pool.reset(); } catch (e) { refused = /enqueued calls in flight/.test((e as Error).message); }
          if (!refused) throw new Failure(`pool.reset() with unflushed enqueued calls was not refused; ${ctx}`);
          await pool.flush();
          pendingEnqueued = false;
        }
        const which = r.int(layers + 1);  // a layer, or the whole pool
        if (which === layers) pool.reset(); else pool.layers[which].reset();
        for (let i = 0; i < layers; i++) if (which === layers || i === which) model[i] = { kv: new Map(), end: 0, evicted: 0 };
        checkKept('after reset()');
        continue;
      }
      const l = r.int(layers), cache = pool.layers[l], m = model[l];
      const held = (c: number): boolean => c < m.end && (c < sinkC || c >= sinkC + m.evicted);
      // A position: mostly valid (append, rewrite, attend of a held chunk), sometimes not.
      let c: number;
      const u = r.uniform();
      if (u < 0.45) c = m.end;
      else if (u < 0.85) c = m.end > 0 ? r.int(m.end) : 0;
      else c = m.end + 1 + r.int(2);
      const doWrite = c === m.end || chance(r, 0.6);
      // Would the call be accepted (the model's rules, docs/API.md "Rules")?
      const fits = c < positions;
      const canWrite = fits && c <= m.end && held(c) || (fits && c === m.end);
      let after = { end: m.end, evicted: m.evicted };
      if (doWrite && canWrite && c === m.end && rolling) {
        const end = c + 1, ws = Math.max(sinkC, end - (winC - sinkC));
        after = { end, evicted: Math.max(m.evicted, ws - sinkC) };
      } else if (doWrite && canWrite) after = { end: Math.max(m.end, c + 1), evicted: m.evicted };
      const attendOnly = !doWrite;
      const wsC = Math.max(sinkC, c + 1 - (winC - sinkC));
      const keysHeld = c < after.end && (c < sinkC || wsC >= sinkC + after.evicted);
      const isAttend = attendOnly || chance(r, 0.8);
      const ok = (doWrite ? canWrite : true) && (!isAttend || keysHeld) && (doWrite || fits);
      const a = (scale: number): Act => randAct(r, 1, ct, H, D, scale, dtype);
      const q = a(2), k = a(1), v = a(1);
      const mode = pendingEnqueued && chance(r, 0.7) ? 'enqueue' : pick(r, ['enqueue', 'await', 'sync'] as const);
      if (mode !== 'enqueue' && pendingEnqueued) { await pool.flush(); pendingEnqueued = false; checkKept('after a flush'); }
      const before = { next: cache.nextFrame, cached: cache.framesCached, evicted: cache.evictedFrames };
      const frame = c * cf;
      let out: HostTensor | undefined;
      try {
        const wr = doWrite ? { k: toHost(k, dtype), v: toHost(v, dtype) } : undefined;
        if (isAttend) {
          const opts = { frame, ...(wr && { write: wr }) };
          out = mode === 'enqueue' ? cache.enqueueAttend(toHost(q, dtype), opts) : mode === 'sync' ? cache.attendSync(toHost(q, dtype), opts) : await cache.attend(toHost(q, dtype), opts);
        } else if (mode === 'enqueue') cache.enqueueWrite(wr!.k, wr!.v, { frame });
        else if (mode === 'sync') cache.writeSync(wr!.k, wr!.v, { frame });
        else await cache.write(wr!.k, wr!.v, { frame });
      } catch (e) {
        const reason = classify(e);
        if (ok) throw new Failure(`a valid ${mode} ${isAttend ? 'attend' : 'write'} at frame ${frame} (layer ${l}, ${JSON.stringify(m.end)} written, ${m.evicted} evicted) was refused: ${(e as Error).message}; ${ctx}`);
        if (!/^RangeError/.test(reason)) throw new Failure(`a bad position was refused with ${reason} (not a RangeError): ${(e as Error).message}`);
        const now = { next: cache.nextFrame, cached: cache.framesCached, evicted: cache.evictedFrames };
        if (JSON.stringify(now) !== JSON.stringify(before)) throw new Failure(`a refused call moved the positions: ${JSON.stringify(before)} → ${JSON.stringify(now)}`);
        continue;
      }
      if (!ok) throw new Failure(`a ${mode} ${isAttend ? 'attend' : 'write'} at frame ${frame} was accepted (layer ${l}, ${m.end} written, ${m.evicted} evicted); ${ctx}`);
      if (mode === 'enqueue') pendingEnqueued = true;
      if (doWrite) m.kv.set(c, [k, v]);
      m.end = after.end;
      m.evicted = after.evicted;
      if (cache.nextFrame !== m.end * cf || cache.evictedFrames !== m.evicted * cf) {
        throw new Failure(`positions: nextFrame ${cache.nextFrame} evictedFrames ${cache.evictedFrames}, expected ${m.end * cf} / ${m.evicted * cf}`);
      }
      if (!out) continue;
      // Reference: the chunk's rows of a one-shot forward over the frames it sees (latest K/V of each).
      const chunks = keyChunks({ window: winC, sink: sinkC }, c);
      const zero = (x: Act): Act => ({ ...x, x: new Float64Array(x.x.length) });
      const qq = concatTokens(chunks.map((cc) => (cc === c ? q : zero(q))));
      const kk = concatTokens(chunks.map((cc) => (cc === c && doWrite ? k : m.kv.get(cc)![0])));
      const vv = concatTokens(chunks.map((cc) => (cc === c && doWrite ? v : m.kv.get(cc)![1])));
      const vis = { ...layout, frames: chunks.length * cf };
      const full = videoRef(qq, kk, vv, vis, { numIters: cfg.numIters, chunkFrames: cf, recompute: c === 0 ? rec : 'none', scale: cfg.scale });
      const want = sliceRows(full, 1, qq.S, H, D, qq.S - ct, qq.S);
      const got = fromHost(out);
      const cmp = compare(got, want, monarchTol(dtype, cfg.scale, D));
      if (!cmp.ok) throw new Failure(`${mode} attend at frame ${frame} (layer ${l}) differs from the float64 reference at ${cmp.worst}: ${got[cmp.worst]} vs ${want[cmp.worst]}; ${ctx}`);
      const disposable = (out as HostTensor & { dispose?: () => void }).dispose;
      // A stale dispose() of an output disposed earlier (its buffer may be lent out again) is a no-op.
      if (disposedFns.length && chance(r, 0.3)) disposedFns[r.int(disposedFns.length)]();
      if (disposable && chance(r, 0.5)) {
        // Poisoned first: a later output reusing the buffer must overwrite every element (NaN fails the reference).
        out.data.fill(dtype === 'float32' ? NaN : 0x7fc1);
        disposable();
        disposedFns.push(disposable);
      } else {
        kept.push({ t: out, copy: out.data.slice(), label: `${mode} attend at frame ${frame} (layer ${l})` });
      }
      checkKept(`after ${mode} attend at frame ${frame}`);
    }
    await pool.flush();
    checkKept('at the end');
    return { kind: 'accepted' };
  } finally {
    await pool.close();
    attn.dispose();
  }
}

async function caseLifecycle(r: Rng): Promise<Outcome> {
  const attn = new MonarchAttention({ layout: { kind: 'sequence', length: 16 + r.int(32), blockSize: 4 }, heads: 2, headDim: 8, numIters: 2, backend: 'cpu' });
  const S = attn.numTokens;
  const [q, k, v] = [0, 1, 2].map(() => tensor(Float32Array.from({ length: S * 16 }, () => r.normal()), [1, S, 2, 8]));
  const pending = attn.forward(q, k, v);
  const which = r.int(4);
  let reason = '';
  try {
    // dispose() while a forward is in flight is accepted: the memory is freed once it has finished
    // (docs/API.md "Lifetime"), and the in-flight forward still resolves.
    if (which === 0) attn.dispose();
    else if (which === 1) attn.forwardSync(q, k, v);
    else if (which === 2) attn.time([[q, k, v]], { iters: 1, warmup: 0 });
    else attn.createKVCache();
    if (which === 1 || which === 2) throw new Failure('a call on a busy instance was accepted');
  } catch (e) {
    reason = classify(e);
  }
  const out = await pending;
  if (out.shape.join() !== q.shape.join()) throw new Failure('the forward in flight at dispose() did not complete');
  attn.dispose();
  attn.dispose();  // idempotent
  try {
    attn.forwardSync(q, k, v);
    throw new Failure('forwardSync after dispose() was accepted');
  } catch (e) {
    classify(e);
  }
  return reason ? { kind: 'rejected', reason } : { kind: 'accepted' };
}

async function main(): Promise<void> {
  const t0 = Date.now();
  const rssStart = process.memoryUsage().rss;
  const rejected: Record<string, number> = {};
  const byScenario: Record<string, number> = {};
  let cases = 0, accepted = 0, failures = 0;
  const failed: string[] = [];
  const scenarios: Array<[string, (r: Rng) => Promise<Outcome>, number]> = [
    ['monarch', caseMonarch, 0.45], ['dense', caseDense, 0.25], ['kvcache', caseKVCache, 0.1], ['kvprotocol', caseKVProtocol, 0.1],
    ['lifecycle', caseLifecycle, 0.1],
  ];
  while (cases < maxCases && Date.now() - t0 < budgetMs) {
    const caseSeed = (seed * 1_000_003 + cases) >>> 0;
    const r = mulberry32(caseSeed);
    let u = r.uniform(), sc = scenarios[0];
    for (const s of scenarios) { if (u < s[2]) { sc = s; break; } u -= s[2]; }
    if (progress) fs.writeFileSync(progress, JSON.stringify({ case: cases, caseSeed, scenario: sc[0] }));
    cases++;
    byScenario[sc[0]] = (byScenario[sc[0]] ?? 0) + 1;
    try {
      const out = await sc[1](r);
      if (out.kind === 'accepted') accepted++;
      else rejected[out.reason ?? '?'] = (rejected[out.reason ?? '?'] ?? 0) + 1;
    } catch (e) {
      failures++;
      if (failed.length < 20) failed.push(`case ${cases - 1} (seed ${caseSeed}, ${sc[0]}): ${(e as Error).message}`);
    }
  }
  const top = Object.fromEntries(Object.entries(rejected).sort((a, b) => b[1] - a[1]));
  const nRejected = Object.values(rejected).reduce((a, b) => a + b, 0);
  console.log(failed.join('\n'));
  console.log(JSON.stringify({
    seed, cases, accepted, rejected: nRejected, failures, crashes: 0, hangs: 0, byScenario, reasons: top, failed,
    rssStartMB: Math.round(rssStart / 2 ** 20), rssEndMB: Math.round(process.memoryUsage().rss / 2 ** 20), ms: Date.now() - t0,
  }));
  process.exitCode = failures > 0 ? 1 : 0;
}

main().catch((e) => {
  console.error(e);
  process.exit(2);
});
