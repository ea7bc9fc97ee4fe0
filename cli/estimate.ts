// How long a CPU bench will take, before it runs: the attention work of every timed call (and of the
// --plot sweep) at the CPU throughput measured here on small dense and Monarch problems. Used to warn
// (and refuse without --yes) before a run of many minutes.
import { denseAttentionSync, MonarchAttention, tensor } from '../lib/index';
import { denseFlops, monarchFlops, pairFlops } from '../lib/flops';
import { resolveOptions } from '../lib/options';
import type { Timing } from '../benchmarks/measure';
import { BenchShape, shapeDenseFlops, tokenCounts } from '../benchmarks/presets';
import { monarchOptions, MonarchVariant } from '../benchmarks/workload';

/** CPU throughput (GFLOP/s) of our dense and Monarch kernels on small float32 problems. */
export interface CpuRates { denseGflops: number; monarchGflops: number }

function best(f: () => void, n = 3): number {
  let t = Infinity;
  for (let i = 0; i < n; i++) {
    const t0 = process.hrtime.bigint();
    f();
    t = Math.min(t, Number(process.hrtime.bigint() - t0) / 1e9);
  }
  return t;
}

export function measureCpuRates(): CpuRates {
  const [N, H, D] = [512, 4, 64];
  const x = tensor(Float32Array.from({ length: N * H * D }, (_, i) => Math.sin(i)), [1, N, H, D]);
  const dense = best(() => denseAttentionSync(x, x, x, { backend: 'cpu' }));
  const opts = { layout: { kind: 'sequence' as const, length: N, blockSize: 32 }, heads: H, headDim: D, backend: 'cpu' as const };
  const attn = new MonarchAttention(opts);
  try {
    const monarch = best(() => attn.forwardSync(x, x, x));
    return { denseGflops: denseFlops(N, N, D, 1, H) / dense / 1e9, monarchGflops: attn.flops() / monarch / 1e9 };
  } finally {
    attn.dispose();
  }
}

/** FLOPs of one call of a Monarch variant at a shape (what the bench times). */
export function variantFlops(shape: BenchShape, v: MonarchVariant): number {
  const cfg = resolveOptions(monarchOptions(shape, v, 'cpu', 'float32'));
  const g = cfg.geometry;
  if (shape.geometry.kind === 'video' && shape.geometry.chunkFrames) {
    // The KV step: its chunk's query tiles against every key tile so far (measure.ts counts the same).
    const { nq, nk } = tokenCounts(shape);
    const tile = g.b1 * g.b2;
    return shape.batch * shape.heads * Math.ceil(nq / tile) * Math.ceil(nk / tile) * pairFlops(g.b1, g.b2, shape.headDim, v.T);
  }
  return monarchFlops(g, shape.headDim, v.T, shape.batch, shape.heads, cfg.recompute === 'first-frame');
}

export interface StepEstimate { label: string; seconds: number }

/**
 * Seconds of each step of a CPU bench: dense and dense + stats (when `dense`), each Monarch variant,
 * each frame count of the plot sweep; calls = warm-up + repeats + the output call.
 */
export function estimateSteps(shape: BenchShape, variants: MonarchVariant[], timing: Timing, dense: boolean,
  rates: CpuRates, plot?: { base: BenchShape; frames: number[]; timing: Timing }): StepEstimate[] {
  const calls = (t: Timing) => t.warmup + t.repeats + 1;
  const dSec = (s: BenchShape, t: Timing) => calls(t) * shapeDenseFlops(s) / (rates.denseGflops * 1e9);
  const mSec = (s: BenchShape, v: MonarchVariant, t: Timing) => calls(t) * variantFlops(s, v) / (rates.monarchGflops * 1e9);
  const steps: StepEstimate[] = [];
  if (dense) {
    steps.push({ label: 'our dense', seconds: dSec(shape, timing) }, { label: 'our dense + lse + entropy', seconds: dSec(shape, timing) });
  }
  for (const v of variants) steps.push({ label: `Monarch T=${v.T}${v.factorization ? ` ${v.factorization}` : ''}`, seconds: mSec(shape, v, timing) });
  if (plot && plot.base.geometry.kind === 'video') {
    const g = plot.base.geometry;
    for (const f of plot.frames) {
      const s: BenchShape = { ...plot.base, geometry: { kind: 'video', frames: f, height: g.height, width: g.width } };
      steps.push({ label: `plot: ${f} frames`, seconds: dSec(s, plot.timing) + mSec(s, { T: 1, factorization: 'monarchrt' }, plot.timing) });
    }
  }
  return steps;
}

export function formatSeconds(s: number): string {
  if (s < 90) return `${Math.max(1, Math.round(s))} s`;
  if (s < 5400) return `${Math.round(s / 60)} min`;
  return `${(s / 3600).toFixed(1)} h`;
}
