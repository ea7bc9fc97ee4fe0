// `monarch-attn check`: exactness oracles (docs/ALGORITHMS.md §E) and consistency checks of the chosen
// backend at small shapes. Each case compares two outputs by relative L2 error against a tolerance
// (tolerance.ts); the reference is float32 on the CPU, on the same dtype-rounded inputs.
import { Command } from 'commander';
import { castTensor, denseAttention, denseAttentionSync, MonarchAttention, tensor } from '../lib/index';
import type { DType, HostTensor, MonarchOptions, VideoLayout } from '../lib/types';
import type { CheckResult } from '../benchmarks/bench_check';
import { backendOption, dtypeOption, intOption, resolveBackend } from './options';
import { asFloat32, randomTensor, Rng } from '../benchmarks/random';
import { checksTable } from '../benchmarks/report';
import { maxAbsDiff, relL2 } from '../benchmarks/stats';
import { AnyTensor, concatTokens, disposeAll, place, sliceTokens, toHostF32 } from '../benchmarks/tensors';
import { EQUIV_TOL, REL_L2_TOL, SAME_PATH_TOL } from '../benchmarks/tolerance';

const B = 2, H = 2, D = 64;

interface Ctx { backend: 'cpu' | 'cuda'; dtype: DType; rng: Rng }
interface Case { name: string; run(c: Ctx): Promise<{ out: Float32Array; ref: Float32Array; tol: number }> }

/** [B][n][H][D] with token n's vectors produced by `row(b, n, h)`, rounded to dtype. */
function built(c: Ctx, n: number, row: (b: number, t: number, h: number) => Float32Array): HostTensor {
  const data = new Float32Array(B * n * H * D);
  for (let b = 0; b < B; b++) for (let t = 0; t < n; t++) for (let h = 0; h < H; h++) data.set(row(b, t, h), ((b * n + t) * H + h) * D);
  const f = tensor(data, [B, n, H, D]);
  // Round through the check dtype so both sides see representable values.
  return c.dtype === 'float32' ? f : asFloat32(castTensor(f, c.dtype));
}

/** Random [B][n][H][D] in float32 holding dtype-representable values. */
function rnd(c: Ctx, n: number): HostTensor {
  return asFloat32(randomTensor([B, n, H, D], c.dtype, c.rng));
}

/** A pool of `count` random D-vectors; row(b, key, h) picks one (identical / periodic queries). */
function pool(c: Ctx, count: number): (b: number, key: number, h: number) => Float32Array {
  const vecs = Array.from({ length: B * H * count }, () => c.rng.fillNormal(new Float32Array(D)));
  return (b, key, h) => vecs[(b * H + h) * count + key];
}

/** Runs Monarch with `opts` on the backend in the check dtype; returns float32. */
function monarch(c: Ctx, opts: Omit<MonarchOptions, 'heads' | 'headDim' | 'batch'>, q: HostTensor, k: HostTensor, v: HostTensor): Float32Array {
  const attn = new MonarchAttention({ heads: H, headDim: D, batch: B, dtype: c.dtype, backend: c.backend, ...opts });
  const ins = [q, k, v].map((t) => place(cast(t, c.dtype), c.backend));
  try {
    const o = attn.forwardSync(ins[0], ins[1], ins[2]);
    const f = toHostF32(o);
    disposeAll([o]);
    return f;
  } finally {
    disposeAll(ins);
    attn.dispose();
  }
}

function cast(t: HostTensor, dtype: DType): HostTensor {
  return dtype === 'float32' ? t : castTensor(t, dtype);
}

/** float32 dense attention on the CPU: the reference. */
function denseRef(q: HostTensor, k: HostTensor, v: HostTensor): Float32Array {
  return toHostF32(denseAttentionSync(q, k, v, { backend: 'cpu' }).out);
}

const seq = (length: number, blockSize: number, padding?: 'pre' | 'post') => ({ kind: 'sequence' as const, length, blockSize, ...(padding ? { padding } : {}) });
const video = (frames: number, height: number, width: number, factorization: VideoLayout['factorization'] = 'monarchrt'): VideoLayout =>
  ({ kind: 'video', frames, height, width, factorization });

function vsDense(name: string, layout: MonarchOptions['layout'], T: number, makeQ: (c: Ctx, n: number) => HostTensor): Case {
  return {
    name,
    async run(c) {
      const n = layout.kind === 'sequence' ? layout.length : layout.frames * layout.height * layout.width;
      const q = makeQ(c, n), k = rnd(c, n), v = rnd(c, n);
      return { out: monarch(c, { layout, numIters: T }, q, k, v), ref: denseRef(q, k, v), tol: REL_L2_TOL[c.dtype] };
    },
  };
}

const identicalQ = (c: Ctx, n: number) => { const p = pool(c, 1); return built(c, n, (b, _t, h) => p(b, 0, h)); };
const periodicQ = (period: number) => (c: Ctx, n: number) => { const p = pool(c, period); return built(c, n, (b, t, h) => p(b, t % period, h)); };
/** Video, one tile per frame (b1 = h rows, b2 = w columns): q depends on (frame, column) only. */
const rowConstantQ = (h: number, w: number) => (c: Ctx, n: number) => {
  const p = pool(c, (n / (h * w)) * w);
  return built(c, n, (b, t, hd) => p(b, Math.floor(t / (h * w)) * w + (t % w), hd));
};
const randomQ = (c: Ctx, n: number) => rnd(c, n);

function cases(): Case[] {
  const list: Case[] = [];
  for (const T of [1, 2, 3]) list.push(vsDense(`E2 identical queries ≡ dense: sequence N=64 b=8 T=${T}`, seq(64, 8), T, identicalQ));
  list.push(vsDense('E2 identical queries ≡ dense: N=60 b=8 post-pad T=2', seq(60, 8, 'post'), 2, identicalQ));
  list.push(vsDense('E2 identical queries ≡ dense: N=60 b=8 pre-pad T=2', seq(60, 8, 'pre'), 2, identicalQ));
  list.push(vsDense('E4 b = N ≡ dense: N=48 T=2', seq(48, 48), 2, randomQ));
  list.push(vsDense('E4 b = 1 ≡ dense: N=48 T=2', seq(48, 1), 2, randomQ));
  for (const T of [1, 3]) list.push(vsDense(`E3 periodic queries (period b) ≡ dense: N=64 b=8 T=${T}`, seq(64, 8), T, periodicQ(8)));
  for (const T of [1, 2]) list.push(vsDense(`E3 tiled, queries constant along in-tile rows ≡ dense: video 3×6×8 T=${T}`, video(3, 6, 8), T, rowConstantQ(6, 8)));
  list.push(vsDense('E4 tiled b1 = 1 ≡ dense: video 3×1×16 T=1', video(3, 1, 16), 1, randomQ));
  list.push(vsDense('E4 tiled b2 = 1 ≡ dense: video 3×16×1 T=1', video(3, 16, 1), 1, randomQ));
  list.push(vsDense('vmonarch with 1 frame (b1 = 1) ≡ dense: video 1×8×12 T=2', video(1, 8, 12, 'vmonarch'), 2, randomQ));
  for (const T of [1, 2, 3]) list.push(singleTileCase(T));
  for (const f of ['monarchrt', 'vmonarch'] as const) list.push(firstFrameCase(f));
  list.push(causalOneChunkCase());
  for (const [f, T] of [['monarchrt', 1], ['monarchrt', 2], ['vmonarch', 1]] as const) list.push(kvCacheCase(f, T));
  list.push(syncAsyncCase(), denseSyncAsyncCase());
  return list;
}

function singleTileCase(T: number): Case {
  return {
    name: `E10 single tile ≡ sequence (b = b2): video 1×6×8 vs N=48 b=8, T=${T}`,
    async run(c) {
      const q = rnd(c, 48), k = rnd(c, 48), v = rnd(c, 48);
      return { out: monarch(c, { layout: video(1, 6, 8), numIters: T }, q, k, v), ref: monarch(c, { layout: seq(48, 8), numIters: T }, q, k, v), tol: EQUIV_TOL[c.dtype] };
    },
  };
}

function firstFrameCase(f: 'monarchrt' | 'vmonarch'): Case {
  return {
    name: `first-frame recompute: frame-0 rows ≡ dense (${f}, video 3×4×6, T=2)`,
    async run(c) {
      const n = 72, frame = 24;
      const q = rnd(c, n), k = rnd(c, n), v = rnd(c, n);
      const out = monarch(c, { layout: video(3, 4, 6, f), numIters: 2, recompute: 'first-frame' }, q, k, v);
      const ref = denseRef(q, k, v);
      const rows = (x: Float32Array) => { const o = new Float32Array(B * frame * H * D); for (let b = 0; b < B; b++) o.set(x.subarray(b * n * H * D, (b * n + frame) * H * D), b * frame * H * D); return o; };
      return { out: rows(out), ref: rows(ref), tol: REL_L2_TOL[c.dtype] };
    },
  };
}

function causalOneChunkCase(): Case {
  return {
    name: 'block-causal with one chunk (chunkFrames = frames) ≡ bidirectional: video 3×4×6 T=2',
    async run(c) {
      const q = rnd(c, 72), k = rnd(c, 72), v = rnd(c, 72);
      return {
        out: monarch(c, { layout: video(3, 4, 6), numIters: 2, causal: { chunkFrames: 3 } }, q, k, v),
        ref: monarch(c, { layout: video(3, 4, 6), numIters: 2 }, q, k, v), tol: EQUIV_TOL[c.dtype],
      };
    },
  };
}

function kvCacheCase(f: 'monarchrt' | 'vmonarch', T: number): Case {
  return {
    name: `E10 KV-cache decode ≡ one-shot block-causal: ${f} video 6×4×6 chunks of 2, T=${T}`,
    async run(c) {
      const n = 144, chunk = 48;
      const q = rnd(c, n), k = rnd(c, n), v = rnd(c, n);
      const opts = { heads: H, headDim: D, batch: B, dtype: c.dtype, backend: c.backend, numIters: T, layout: video(6, 4, 6, f), causal: { chunkFrames: 2 } };
      const ref = monarch(c, { layout: opts.layout, numIters: T, causal: opts.causal }, q, k, v);
      const attn = new MonarchAttention(opts);
      const cache = attn.createKVCache();
      const parts: HostTensor[] = [];
      try {
        for (let t0 = 0; t0 < n; t0 += chunk) {
          const ins = [q, k, v].map((x) => place(cast(sliceTokens(x, t0, t0 + chunk), c.dtype), c.backend));
          const o = await cache.step(ins[0], ins[1], ins[2]);
          parts.push(tensor(toHostF32(o), [B, chunk, H, D]));
          disposeAll([...ins, o]);
        }
      } finally {
        cache.dispose();
        attn.dispose();
      }
      return { out: concatTokens(parts).data as Float32Array, ref, tol: EQUIV_TOL[c.dtype] };
    },
  };
}

function syncAsyncCase(): Case {
  return {
    name: 'Monarch forward (async) ≡ forwardSync: video 3×4×6 T=2',
    async run(c) {
      const attn = new MonarchAttention({ heads: H, headDim: D, batch: B, dtype: c.dtype, backend: c.backend, numIters: 2, layout: video(3, 4, 6) });
      const ins: AnyTensor[] = [rnd(c, 72), rnd(c, 72), rnd(c, 72)].map((t) => place(cast(t, c.dtype), c.backend));
      try {
        const a = await attn.forward(ins[0], ins[1], ins[2]);
        const s = attn.forwardSync(ins[0], ins[1], ins[2]);
        const r = { out: toHostF32(a), ref: toHostF32(s), tol: SAME_PATH_TOL };
        disposeAll([a, s]);
        return r;
      } finally {
        disposeAll(ins);
        attn.dispose();
      }
    },
  };
}

function denseSyncAsyncCase(): Case {
  return {
    name: 'denseAttention (async) ≡ denseAttentionSync: N=72',
    async run(c) {
      const ins: AnyTensor[] = [rnd(c, 72), rnd(c, 72), rnd(c, 72)].map((t) => place(cast(t, c.dtype), c.backend));
      try {
        const a = (await denseAttention(ins[0], ins[1], ins[2], { backend: c.backend })).out;
        const s = denseAttentionSync(ins[0], ins[1], ins[2], { backend: c.backend }).out;
        const r = { out: toHostF32(a), ref: toHostF32(s), tol: SAME_PATH_TOL };
        disposeAll([a, s]);
        return r;
      } finally {
        disposeAll(ins);
      }
    },
  };
}

/** CUDA only: the same algorithm on the GPU (check dtype) vs the CPU in float32. */
function crossBackendCases(): Case[] {
  const layouts: Array<[string, MonarchOptions['layout'], number]> = [
    ['sequence N=256 b=16', seq(256, 16), 1], ['sequence N=250 b=16 post-pad', seq(250, 16, 'post'), 2],
    ['video 3×6×8 monarchrt', video(3, 6, 8), 1], ['video 3×6×8 monarchrt', video(3, 6, 8), 2],
    ['video 3×6×8 vmonarch', video(3, 6, 8, 'vmonarch'), 1], ['video 3×6×8 vmonarch', video(3, 6, 8, 'vmonarch'), 2],
  ];
  const out: Case[] = layouts.map(([label, layout, T]) => ({
    name: `Monarch cuda ≡ cpu/float32: ${label} T=${T}`,
    async run(c: Ctx) {
      const n = layout.kind === 'sequence' ? layout.length : layout.frames * layout.height * layout.width;
      const q = rnd(c, n), k = rnd(c, n), v = rnd(c, n);
      return { out: monarch(c, { layout, numIters: T }, q, k, v), ref: monarch({ ...c, backend: 'cpu', dtype: 'float32' }, { layout, numIters: T }, q, k, v), tol: REL_L2_TOL[c.dtype] };
    },
  }));
  out.push({
    name: 'our dense cuda ≡ cpu/float32: Nq=200, Nk=333',
    async run(c: Ctx) {
      const q = rnd(c, 200), k = rnd(c, 333), v = rnd(c, 333);
      const ins = [q, k, v].map((t) => place(cast(t, c.dtype), c.backend));
      const o = denseAttentionSync(ins[0], ins[1], ins[2], { backend: 'cuda' }).out;
      const r = { out: toHostF32(o), ref: denseRef(q, k, v), tol: REL_L2_TOL[c.dtype] };
      disposeAll([...ins, o]);
      return r;
    },
  });
  return out;
}

export async function runChecks(backend: 'cpu' | 'cuda', dtype: DType, seed: number, onCase?: (name: string) => void): Promise<CheckResult[]> {
  const results: CheckResult[] = [];
  const list = backend === 'cuda' ? [...cases(), ...crossBackendCases()] : cases();
  for (const [i, k] of list.entries()) {
    onCase?.(k.name);
    const ctx: Ctx = { backend, dtype, rng: new Rng(seed + 7919 * i) };
    try {
      const { out, ref, tol } = await k.run(ctx);
      const e = relL2(out, ref);
      const m = maxAbsDiff(out, ref);
      const pass = e <= tol && Number.isFinite(m.value);
      results.push({ name: k.name, relL2: e, maxAbs: m.value, tol, pass,
        ...(pass ? {} : { note: `worst index ${m.index}: ${m.a} vs ${m.b}` }) });
    } catch (e) {
      results.push({ name: k.name, relL2: null, maxAbs: null, tol: NaN, pass: false, note: `threw ${(e as Error).name}: ${(e as Error).message}` });
    }
  }
  return results;
}

export function checkCommand(): Command {
  return new Command('check')
    .description('exactness oracles (docs/ALGORITHMS.md §E) and consistency checks on the chosen backend; exits 1 on any failure')
    .option('-b, --backend <b>', 'auto | cpu | cuda', backendOption, 'auto')
    .option('--dtype <t>', 'dtype of the checked runs (default float32 on the CPU, float16 on CUDA)', dtypeOption)
    .option('--seed <n>', 'random seed', intOption('--seed', 0), 1)
    .option('--json', 'print JSON', false)
    .action(async (o: { backend: 'auto' | 'cpu' | 'cuda'; dtype?: DType; seed: number; json: boolean }) => {
      const backend = resolveBackend(o.backend);
      const dtype = o.dtype ?? (backend === 'cuda' ? 'float16' : 'float32');
      const results = await runChecks(backend, dtype, o.seed);
      const failed = results.filter((r) => !r.pass).length;
      if (o.json) process.stdout.write(`${JSON.stringify({ backend, dtype, seed: o.seed, failed, results }, null, 2)}\n`);
      else process.stdout.write(`backend ${backend}, dtype ${dtype} (B=${B}, H=${H}, d=${D}; reference: float32 on the CPU)\n${checksTable(results)}\n${failed ? `${failed} of ${results.length} FAILED` : `all ${results.length} passed`}\n`);
      process.exitCode = failed ? 1 : 0;
    });
}
