// Accuracy against cost: each Monarch configuration of the accuracy report timed at a bench preset
// (e.g. wan-480p on CUDA), and a Pareto chart of relative error (synthetic video) vs milliseconds.
// Errors come from the accuracy report's shape (where a float64 dense reference is affordable); times
// from the preset, with the same configuration (factorization, T, recompute, tiling, c_R floor).
import { denseTime, MonarchAttention } from '../lib/index';
import { configLabel, configOptions, type AccuracyConfig, type AccuracyReport } from './accuracy';
import { isBidirectionalVideo, type BenchShape } from './presets';
import { percentile } from './stats';
import { lineChartSvg, type Series } from './svg';
import { defaultRotate, makeWorkload } from './workload';

export interface ConfigTiming { method: string; ms: number | null; note?: string }

export interface ParetoTiming {
  preset: string;
  description: string;
  backend: 'cpu' | 'cuda';
  warmup: number;
  iters: number;
  rotate: number;
  /** Our dense attention at the preset: the cost floor of oracle top-k, which needs every score. */
  denseMs: number;
  rows: ConfigTiming[];
}

const median = (xs: readonly number[]): number => percentile(xs, 50);  // the bench's median (stats.ts)

/** Times every configuration at `shape` (a bidirectional video preset): median of `iters` after `warmup`. */
export function timeConfigs(shape: BenchShape, configs: AccuracyConfig[], backend: 'cpu' | 'cuda',
  o: { warmup: number; iters: number; seed: number }, onStep?: (what: string) => void): ParetoTiming {
  const g = shape.geometry;
  if (!isBidirectionalVideo(g)) throw new RangeError(`the Pareto timing needs a bidirectional video preset, received ${shape.name}`);
  const rotate = backend === 'cuda' ? defaultRotate(shape) : 1;
  const w = makeWorkload(shape, backend, rotate, o.seed);
  try {
    const sets = w.sets.map((s) => [s.q, s.k, s.v] as [typeof s.q, typeof s.k, typeof s.v]);
    onStep?.(`timing dense at ${shape.name}`);
    const denseMs = median(denseTime(sets, { warmup: o.warmup, iters: o.iters }));
    const rows: ConfigTiming[] = [];
    for (const c of configs) {
      const method = configLabel(c);
      onStep?.(`timing ${method} at ${shape.name}`);
      try {
        const attn = new MonarchAttention(configOptions(c, g, shape.heads, shape.headDim, shape.dtype, backend));
        try {
          rows.push({ method, ms: median(attn.time(sets, { warmup: o.warmup, iters: o.iters })) });
        } finally {
          attn.dispose();
        }
      } catch (e) {
        rows.push({ method, ms: null, note: `failed: ${(e as Error).message}` });
      }
    }
    return { preset: shape.name, description: shape.description, backend, warmup: o.warmup, iters: o.iters, rotate, denseMs, rows };
  } finally {
    w.dispose();
  }
}

/** Family of a row (one chart series: T = 1, 2, 3 along it). */
function family(method: string): string {
  return method.replace(/ T=\d+/, '');
}

/** The Pareto chart: rel L2 on the synthetic video input vs ms at the preset, one series per family. */
export function paretoSvg(report: AccuracyReport, timing: ParetoTiming): string {
  const ms = new Map(timing.rows.filter((r) => r.ms !== null).map((r) => [r.method, r.ms as number]));
  const byFamily = new Map<string, Array<[number, number]>>();
  for (const row of report.rows) {
    if (row.input !== 'synthetic video' || row.relL2 === null) continue;
    const isTopk = row.T === null;
    const x = isTopk ? timing.denseMs : ms.get(row.method);
    if (x === undefined) continue;
    const fam = isTopk ? `${row.method} (≥ dense time)` : family(row.method);
    if (!byFamily.has(fam)) byFamily.set(fam, []);
    byFamily.get(fam)!.push([x, row.relL2]);
  }
  const series: Series[] = [...byFamily.entries()].map(([label, points]) => ({ label, points: points.sort((a, b) => a[0] - b[0]) }));
  const s = report.shape;
  return lineChartSvg({
    title: `Monarch accuracy vs cost (${timing.backend}, ${timing.preset})`,
    subtitle: `rel L2 vs dense on synthetic video ${s.frames}×${s.height}×${s.width} (${s.dtype}); ms: median at ${timing.preset}; lines join T = 1, 2, 3`,
    xLabel: `ms per forward at ${timing.preset} (batch 1)`,
    yLabel: 'relative L2 error vs dense',
    series,
  });
}

export function paretoMarkdown(report: AccuracyReport, timing: ParetoTiming): string {
  const ms = new Map(timing.rows.map((r) => [r.method, r]));
  const lines = [
    `## Accuracy vs cost`, '',
    `Times: ${timing.description}; ${timing.backend}, median of ${timing.iters} after ${timing.warmup} warm-up, ${timing.rotate} rotated input sets. ` +
      `Our dense attention there: ${timing.denseMs.toFixed(3)} ms (oracle top-k needs every score, so it costs at least that).`,
    `Errors: the synthetic-video rows above (${report.shape.frames}×${report.shape.height}×${report.shape.width}).`, '',
    '| method | ms at preset | rel L2 (synthetic video) |', '|---|---|---|',
  ];
  for (const row of report.rows) {
    if (row.input !== 'synthetic video' || row.T === null) continue;
    const t = ms.get(row.method);
    lines.push(`| ${row.method} | ${t?.ms == null ? `— ${t?.note ?? ''}` : t.ms.toFixed(3)} | ${row.relL2 === null ? '—' : row.relL2.toFixed(4)} |`);
  }
  return `${lines.join('\n')}\n`;
}
