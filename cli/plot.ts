// `bench --plot FILE`: time vs number of latent frames (1..41 by default) at the shape's resolution
// (480p for non-video presets) for Monarch T = 1 (monarchrt), our dense kernel and torch FA2 / cuDNN.
import * as fs from 'node:fs';
import { denseFlops } from '../lib/flops';
import { measureDense, measureMonarch, Timing } from '../benchmarks/measure';
import { BenchShape, isBidirectionalVideo, PRESETS } from '../benchmarks/presets';
import type { Progress } from './progress';
import type { BenchOutputs } from './outputs';
import type { PngRenderer } from './png';
import { summarize } from '../benchmarks/stats';
import { lineChartSvg, Series } from '../benchmarks/svg';
import { benchSdpa, TORCH_LABEL, TorchEnv } from '../benchmarks/torch';
import { defaultRotate, makeWorkload } from '../benchmarks/workload';

export interface PlotOptions {
  shape: BenchShape;
  backend: 'cpu' | 'cuda';
  timing: Timing & { rotate: number };
  torch: TorchEnv;
  plotFrames?: number[];
  seed: number;
  progress: Progress;
  /** Set when the image is a PNG (loaded before the bench ran). */
  png?: PngRenderer;
  /** Estimated seconds per swept frame count (CPU), to weight the progress bar; else 1 each. */
  weights?: number[];
}

/**
 * The video shape swept: bidirectional self-attention at the benchmark's own video resolution (also for
 * the KV step, block-causal and cross-attention shapes), else Wan 480p (CUDA) / cpu-small.
 */
export function sweepBase(o: Pick<PlotOptions, 'shape' | 'backend'>): BenchShape {
  const g = o.shape.geometry;
  if (isBidirectionalVideo(g)) return o.shape;
  const p = PRESETS[o.backend === 'cuda' ? 'wan-480p' : 'cpu-small'];
  return g.kind !== 'sequence' ? { ...o.shape, geometry: { kind: 'video', frames: g.frames, height: g.height, width: g.width } } : p;
}

/** The frame counts swept: --plot-frames, else 1..41 (CUDA) or 1..41 step 8 (CPU). */
export function sweepFrames(o: Pick<PlotOptions, 'plotFrames' | 'backend'>): number[] {
  return o.plotFrames ?? (o.backend === 'cuda' ? range(1, 41, 1) : range(1, 41, 8));
}

/** The sweep's timing: the bench's on CUDA; on the CPU a smoke test of the plot (CPU times say nothing about the GPU): 3 repeats. */
export function sweepTiming(o: Pick<PlotOptions, 'timing' | 'backend'>): Timing & { rotate: number } {
  return o.backend === 'cuda' ? o.timing : { ...o.timing, warmup: 1, repeats: Math.min(o.timing.repeats, 3) };
}

/** "1, 5, 9" or "1-41" or "1-41:8" for a sorted list of frame counts. */
export function framesText(frames: number[]): string {
  if (frames.length <= 2) return frames.join(', ');
  const step = frames[1] - frames[0];
  const even = step > 0 && frames.every((f, i) => i === 0 || f - frames[i - 1] === step);
  if (!even) return frames.join(', ');
  return `${frames[0]}-${frames[frames.length - 1]}${step === 1 ? '' : `:${step}`}`;
}

export async function runPlot(plot: NonNullable<BenchOutputs['plot']>, o: PlotOptions): Promise<void> {
  const base = sweepBase(o);
  const g = base.geometry;
  if (g.kind !== 'video') throw new Error('internal: plot base is not a video');
  const frames = sweepFrames(o);
  const timing = sweepTiming(o);
  const monarch: Series = { label: 'Monarch T=1 (monarchrt)', points: [] };
  const dense: Series = { label: `our dense (${o.backend})`, points: [] };
  const rows: Array<{ frames: number; tokens: number; monarchMs: number | null; denseMs: number | null; flaMs?: number | null; cudnnMs?: number | null }> = [];
  const weight = (i: number) => o.weights?.[i] ?? 1;
  o.progress.start(frames.reduce((a, _, i) => a + weight(i), 0) + 1, 'plot sweep');
  try {
    for (const [i, f] of frames.entries()) {
      o.progress.tick(`plot: ${f} frames`, weight(i));
      const shape: BenchShape = { ...base, geometry: { kind: 'video', frames: f, height: g.height, width: g.width } };
      const w = makeWorkload(shape, o.backend, o.backend === 'cuda' ? defaultRotate(shape) : o.timing.rotate, o.seed);
      const row = { frames: f, tokens: f * g.height * g.width, monarchMs: null as number | null, denseMs: null as number | null };
      try {
        row.monarchMs = summarize((await measureMonarch(w, { T: 1, factorization: 'monarchrt' }, timing)).times).median;
        row.denseMs = summarize(measureDense(w, timing).times).median;
      } catch (e) {
        o.progress.log(`plot: ${f} frames failed: ${(e as Error).message}`);
      } finally {
        w.dispose();
      }
      if (row.monarchMs !== null) monarch.points.push([f, row.monarchMs]);
      if (row.denseMs !== null) dense.points.push([f, row.denseMs]);
      rows.push(row);
    }
    const series = [monarch, dense];
    if (o.torch.python && base.dtype !== 'float32') {
      o.progress.tick('plot: torch SDPA');
      const shapes = frames.map((f) => {
        const n = f * g.height * g.width;
        const rotate = defaultRotate({ ...base, geometry: { kind: 'video', frames: f, height: g.height, width: g.width } });
        return { B: base.batch, H: base.heads, Nq: n, Nk: n, D: base.headDim, dtype: base.dtype, rotate };
      });
      const r = benchSdpa(o.torch, shapes, { ...timing, seed: o.seed, backends: ['flash', 'cudnn'] });
      for (const b of ['flash', 'cudnn'] as const) {
        const s: Series = { label: TORCH_LABEL[b], points: [] };
        r.results.filter((t) => t.backend === b && t.ok && t.ms).forEach((t) => s.points.push([t.shape.Nq / (g.height * g.width), t.ms!.median]));
        if (s.points.length) series.push(s);
        for (const row of rows) {
          const hit = r.results.find((t) => t.backend === b && t.shape.Nq === row.tokens);
          (row as Record<string, unknown>)[b === 'flash' ? 'flaMs' : 'cudnnMs'] = hit?.ok ? hit.ms!.median : null;
        }
      }
    }
    const svg = lineChartSvg({
      title: `Attention time vs latent frames, ${g.height}×${g.width} tokens/frame (${o.backend})`,
      subtitle: plotSubtitle(base, frames, timing.repeats),
      xLabel: 'latent frames', yLabel: 'time per call (ms)', series,
    });
    fs.writeFileSync(plot.image, plot.format === 'png' ? o.png!(svg) : svg);
    fs.writeFileSync(plot.data, `${JSON.stringify({ image: plot.image, resolution: [g.height, g.width], heads: base.heads, headDim: base.headDim, dtype: base.dtype, frames, rows }, null, 2)}\n`);
  } finally {
    o.progress.stop();
  }
}

/** The plot's subtitle: the frame counts actually swept, and the dense work at the largest. */
export function plotSubtitle(base: BenchShape, frames: number[], repeats: number): string {
  const g = base.geometry;
  if (g.kind !== 'video') throw new Error('internal: plot base is not a video');
  const sorted = [...new Set(frames)].sort((a, b) => a - b);
  const fMax = sorted[sorted.length - 1];
  const n = fMax * g.height * g.width;
  return `${base.heads} heads, d ${base.headDim}, ${base.dtype}, batch ${base.batch}; frames ${framesText(sorted)}; median of ${repeats}; ` +
    `dense at ${fMax} frame${fMax === 1 ? '' : 's'} = ${flopText(denseFlops(n, n, base.headDim, base.batch, base.heads))}`;
}

function flopText(f: number): string {
  return f >= 1e11 ? `${(f / 1e12).toFixed(2)} TFLOP` : f >= 1e8 ? `${(f / 1e9).toFixed(1)} GFLOP` : `${(f / 1e6).toFixed(2)} MFLOP`;
}

function range(a: number, b: number, step: number): number[] {
  const out: number[] = [];
  for (let x = a; x <= b; x += step) out.push(x);
  return out;
}
