// Accuracy report: relative L2 error and mean row cosine similarity of Monarch attention (T, factorization,
// first-frame recompute) against dense softmax attention, beside oracle top-k attention at the same
// density, on (a) random normal inputs and (b) structured synthetic video (synthetic_video.ts).
// Reference and top-k are float64 in TypeScript (topk.ts); Monarch runs on the chosen backend.
//   run it as `monarch-attn accuracy [options]` (cli/accuracy.ts); this module never imports the CLI.
import { castTensor, denseAttentionSync, MonarchAttention } from '../lib/index';
import type { DType, HostTensor, MonarchOptions } from '../lib/types';
import { randomTensor, Rng } from './random';
import { meanRowCosine, relL2 } from './stats';
import { disposeAll, place, toHostF32 } from './tensors';
import { syntheticVideo } from './synthetic_video';
import { referenceAttention } from './topk';

export interface AccuracyOptions {
  frames: number; height: number; width: number; heads: number; headDim: number;
  iters: number[]; backend: 'cpu' | 'cuda'; dtype: DType; seed: number;
  /** Also MonarchRT tilings (hReduce 2, wReduce 2, fTied 3, where they divide the shape). */
  tilings?: boolean;
  /** Also T ≥ 2 with the other published c_R floor (MonarchRT at 0.1, VMonarch at 1e-4). */
  floors?: boolean;
  /** Keep only tilings that also divide this shape (the Pareto timing preset). */
  alsoFits?: { frames: number; height: number; width: number };
}

export interface Tiling { fTied?: number; hReduce?: number; wReduce?: number }

/** One Monarch configuration of the report: factorization, T, recompute, tiling, c_R floor. */
export interface AccuracyConfig {
  factorization: 'monarchrt' | 'vmonarch';
  T: number;
  recompute: 'none' | 'first-frame';
  tiling?: Tiling;
  /** undefined: the factorization's default (lib/options.ts DEFAULT_MIN_COLUMN_MASS). */
  minColumnMass?: number;
}

export interface AccuracyRow {
  input: 'random' | 'synthetic video';
  method: string;
  T: number | null;
  factorization: 'monarchrt' | 'vmonarch' | null;
  recompute: 'none' | 'first-frame' | null;
  tiling?: Tiling;
  minColumnMass?: number;
  /** Monarch: parameter density (b1+b2)/(b1·b2) (§B.3); top-k: k/Nk. */
  density: number;
  /** FLOPs of the method over dense FLOPs (top-k counted as dense: it needs every score). */
  flopRatio: number | null;
  relL2: number | null;
  cosine: number | null;
  note?: string;
}

export interface AccuracyReport {
  shape: { frames: number; height: number; width: number; tokens: number; heads: number; headDim: number; dtype: DType; backend: string };
  seed: number;
  clusterTokens: number;
  /** Sanity: the library's dense attention (float32, CPU) vs the float64 reference, per input. */
  libraryDenseVsReference: Record<string, number>;
  rows: AccuracyRow[];
}

/** (b1, b2) of a configuration at a bidirectional video (docs/ALGORITHMS.md §B.2, §C.2). */
function blocks(c: Pick<AccuracyConfig, 'factorization' | 'tiling'>, o: { frames: number; height: number; width: number }): [number, number] {
  if (c.factorization === 'vmonarch') return [o.frames, o.height * o.width];
  const t = c.tiling ?? {};
  return [(t.fTied ?? 1) * o.height / (t.hReduce ?? 1), o.width / (t.wReduce ?? 1)];
}

const TILINGS: Tiling[] = [{ hReduce: 2 }, { wReduce: 2 }, { fTied: 3 }];

/** Whether a tiling divides a video shape (frames by fTied, height by hReduce, width by wReduce). */
export function tilingFits(t: Tiling, v: { frames: number; height: number; width: number }): boolean {
  return v.frames % (t.fTied ?? 1) === 0 && v.height % (t.hReduce ?? 1) === 0 && v.width % (t.wReduce ?? 1) === 0;
}

export function tilingLabel(t?: Tiling): string {
  if (!t) return '';
  return Object.entries(t).map(([k, v]) => ` ${k} ${v}`).join('');
}

/** The configurations of a report: every (factorization, T, recompute), then tilings and floors if asked. */
export function accuracyConfigs(o: AccuracyOptions): AccuracyConfig[] {
  const alsoFits = o.alsoFits;
  const out: AccuracyConfig[] = [];
  for (const factorization of ['monarchrt', 'vmonarch'] as const)
    for (const T of o.iters) for (const recompute of ['none', 'first-frame'] as const) out.push({ factorization, T, recompute });
  if (o.tilings) {
    for (const tiling of TILINGS) {
      if (!tilingFits(tiling, o) || (alsoFits && !tilingFits(tiling, alsoFits))) continue;
      for (const T of o.iters) out.push({ factorization: 'monarchrt', T, recompute: 'none', tiling });
    }
  }
  if (o.floors) {
    for (const T of o.iters.filter((t) => t >= 2)) {
      out.push({ factorization: 'monarchrt', T, recompute: 'none', minColumnMass: 0.1 });
      out.push({ factorization: 'vmonarch', T, recompute: 'none', minColumnMass: 1e-4 });
    }
  }
  return out;
}

export function configLabel(c: AccuracyConfig): string {
  return `Monarch ${c.factorization}${tilingLabel(c.tiling)} T=${c.T}${c.recompute === 'first-frame' ? ' +first-frame' : ''}` +
    (c.minColumnMass !== undefined ? ` c_R≥${c.minColumnMass}` : '');
}

/** MonarchOptions of a configuration at a video shape. */
export function configOptions(c: AccuracyConfig, v: { frames: number; height: number; width: number }, heads: number, headDim: number,
  dtype: DType, backend: 'cpu' | 'cuda'): MonarchOptions {
  return {
    layout: { kind: 'video', frames: v.frames, height: v.height, width: v.width, factorization: c.factorization, ...(c.tiling ?? {}) },
    heads, headDim, numIters: c.T, recompute: c.recompute, dtype, backend,
    ...(c.minColumnMass !== undefined ? { minColumnMass: c.minColumnMass } : {}),
  };
}

export function density(b1: number, b2: number): number {
  return Math.min(1, (b1 + b2) / (b1 * b2));
}

export async function runAccuracy(o: AccuracyOptions, onStep?: (what: string) => void): Promise<AccuracyReport> {
  const N = o.frames * o.height * o.width;
  const shape = [1, N, o.heads, o.headDim];
  const rng = new Rng(o.seed);
  const syn = syntheticVideo({ frames: o.frames, height: o.height, width: o.width, heads: o.heads, headDim: o.headDim, seed: o.seed + 1 });
  const inputs: Array<['random' | 'synthetic video', HostTensor[]]> = [
    ['random', [randomTensor(shape, 'float32', rng), randomTensor(shape, 'float32', rng), randomTensor(shape, 'float32', rng)]],
    ['synthetic video', [syn.q, syn.k, syn.v]],
  ];
  const facts = ['monarchrt', 'vmonarch'] as const;
  const rows: AccuracyRow[] = [];
  const libraryDenseVsReference: Record<string, number> = {};
  for (const [input, qkvF32] of inputs) {
    // Round once to the run dtype; the float64 references see the same rounded values.
    const qkv = qkvF32.map((t) => (o.dtype === 'float32' ? t : castTensor(t, o.dtype)));
    const f32 = qkv.map((t) => toHostF32(t));
    onStep?.(`${input}: dense and top-k references`);
    const ks = facts.map((f) => Math.ceil(density(...blocks({ factorization: f }, o)) * N));
    const ref = referenceAttention(f32[0], f32[1], f32[2], { B: 1, Nq: N, Nk: N, H: o.heads, D: o.headDim }, ks);
    const lib = denseAttentionSync(tensor32(f32[0], shape), tensor32(f32[1], shape), tensor32(f32[2], shape), { backend: 'cpu' }).out;
    libraryDenseVsReference[input] = relL2(toHostF32(lib), ref.dense);
    const metrics = (out: Float32Array) => ({ relL2: relL2(out, ref.dense), cosine: meanRowCosine(out, ref.dense, o.headDim) });
    for (const [i, f] of facts.entries()) {
      rows.push({ input, method: `oracle top-k (k=${ks[i]}, ${f} density)`, T: null, factorization: null, recompute: null,
        density: ks[i] / N, flopRatio: 1, ...metrics(ref.topk[i]) });
    }
    const placed = qkv.map((t) => place(t, o.backend));
    try {
      for (const c of accuracyConfigs(o)) {
        const method = configLabel(c);
        onStep?.(`${input}: ${method}`);
        const base: AccuracyRow = {
          input, method, T: c.T, factorization: c.factorization, recompute: c.recompute,
          ...(c.tiling ? { tiling: c.tiling } : {}), ...(c.minColumnMass !== undefined ? { minColumnMass: c.minColumnMass } : {}),
          density: density(...blocks(c, o)), flopRatio: null, relL2: null, cosine: null,
        };
        try {
          const attn = new MonarchAttention(configOptions(c, o, o.heads, o.headDim, o.dtype, o.backend));
          try {
            const out = attn.forwardSync(placed[0], placed[1], placed[2]);
            rows.push({ ...base, flopRatio: attn.flops() / (4 * N * N * o.headDim * o.heads), ...metrics(toHostF32(out)) });
            disposeAll([out]);
          } finally {
            attn.dispose();
          }
        } catch (e) {
          rows.push({ ...base, note: `failed: ${(e as Error).message}` });
        }
      }
    } finally {
      disposeAll(placed);
    }
  }
  return {
    shape: { frames: o.frames, height: o.height, width: o.width, tokens: N, heads: o.heads, headDim: o.headDim, dtype: o.dtype, backend: o.backend },
    seed: o.seed, clusterTokens: syn.clusterTokens, libraryDenseVsReference, rows,
  };
}

function tensor32(data: Float32Array, shape: number[]): HostTensor {
  return { data, shape, dtype: 'float32' };
}

const f3 = (x: number | null) => (x === null ? '—' : Math.abs(x) < 1e-3 && x !== 0 ? x.toExponential(2) : x.toFixed(4));

export function accuracyMarkdown(r: AccuracyReport): string {
  const s = r.shape;
  const lines = [
    `# Monarch accuracy vs dense attention`, '',
    `Video ${s.frames}×${s.height}×${s.width} = ${s.tokens} tokens, ${s.heads} heads, d ${s.headDim}, ${s.dtype} on the ${s.backend} backend; seed ${r.seed}.`,
    `Reference: float64 dense softmax attention (TypeScript). rel L2 = ‖O − O_dense‖/‖O_dense‖; cosine = mean over (token, head) rows.`,
    `Top-k keeps, per query row, the k largest scores, k = ⌈density·N⌉ with density (b1+b2)/(b1·b2) of the factorization (docs/ALGORITHMS.md §B.3); it needs all N² scores (FLOP ratio 1).`,
    `Synthetic video: 3-D RoPE positional term + ${r.clusterTokens} tokens (head 0) in moving semantic clusters + dense mixing noise (benchmarks/synthetic_video.ts).`,
    `Random normal inputs give near-uniform attention; Monarch is far from dense there and that is expected (TARGETS.md, Accuracy).`,
    `Sanity: the library's float32 CPU dense vs the float64 reference: ${Object.entries(r.libraryDenseVsReference).map(([k, v]) => `${k} ${f3(v)}`).join(', ')} (rel L2).`, '',
    '| input | method | density | FLOPs / dense | rel L2 | cosine |', '|---|---|---|---|---|---|',
  ];
  for (const row of r.rows) {
    lines.push(`| ${row.input} | ${row.method}${row.note ? ` (${row.note})` : ''} | ${(100 * row.density).toFixed(1)}% | ${row.flopRatio === null ? '—' : row.flopRatio.toFixed(3)} | ${f3(row.relL2)} | ${f3(row.cosine)} |`);
  }
  return `${lines.join('\n')}\n`;
}
