// `monarch-attn bench`: Monarch (T × factorization), our dense kernel and torch SDPA at one shape.
import * as fs from 'node:fs';
import { Command } from 'commander';
import { info } from '../lib/index';
import type { DType } from '../lib/types';
import { runBenchChecks, CheckResult } from '../benchmarks/bench_check';
import { addSpeedups, denseVsCudnn, failedRow, rowFrom, rowFromMeasured } from '../benchmarks/bench_rows';
import { headerLines, runHeader } from '../benchmarks/env';
import { measureDense, measureMonarch, Timing } from '../benchmarks/measure';
import { backendOption, dtypeOption, intList, intOption, rangeList, resolveBackend } from './options';
import { peakFor } from '../benchmarks/peak';
import { runPlot } from './plot';
import { BenchShape, denseCausalChunk, hasMonarch, PRESETS, resolveShape, shapeDenseFlops, tokenCounts } from '../benchmarks/presets';
import { makeProgress } from './progress';
import { estimateSteps, formatSeconds, measureCpuRates, type CpuRates, type StepEstimate } from './estimate';
import { planOutputs } from './outputs';
import { loadPngRenderer, type PngRenderer } from './png';
import { sweepBase, sweepFrames, sweepTiming } from './plot';
import { benchMarkdown, BenchReport, BenchRow, checksTable, denseVsCudnnLine, rowsTable } from '../benchmarks/report';
import { relL2 } from '../benchmarks/stats';
import { benchSdpa, findTorch, TORCH_LABEL, TorchBackend, TorchEnv } from '../benchmarks/torch';
import { defaultRotate, Factorization, makeWorkload, MonarchVariant, variantLabel } from '../benchmarks/workload';

interface BenchOpts {
  preset?: string; backend: 'auto' | 'cpu' | 'cuda';
  frames?: number; height?: number; width?: number; chunkFrames?: number; causalFrames?: number; crossKeys?: number;
  seq?: number; block?: number;
  heads?: number; headDim?: number; dtype?: DType; batch?: number;
  iters: number[]; factorization: 'monarchrt' | 'vmonarch' | 'both';
  warmup?: number; repeats?: number; rotate?: number; seed: number;
  check: boolean; python?: string | false; dense: boolean;
  json?: string; markdown?: string; plot?: string; plotFrames?: number[];
  progress: boolean; yes: boolean; maxSeconds?: number;
}

/** A CPU run estimated longer than this (seconds) needs --yes or a larger --max-seconds. */
export const CPU_MAX_SECONDS_DEFAULT = 60;

export function benchCommand(): Command {
  return new Command('bench')
    .description('time Monarch attention, our dense kernel and torch SDPA at one shape')
    .option('-p, --preset <name>', `shape preset: ${Object.keys(PRESETS).join(', ')} (default: wan-480p on CUDA, cpu-small on the CPU)`)
    .option('-b, --backend <b>', 'auto | cpu | cuda', backendOption, 'auto')
    .option('--frames <n>', 'custom video: latent frames', intOption('--frames'))
    .option('--height <n>', 'custom video: token rows per frame', intOption('--height'))
    .option('--width <n>', 'custom video: token columns per frame', intOption('--width'))
    .option('--chunk-frames <n>', 'custom video: time the last KV-cache step of chunks of n frames', intOption('--chunk-frames'))
    .option('--causal-frames <n>', 'custom video: one block-causal forward over all frames in chunks of n frames', intOption('--causal-frames'))
    .option('--cross-keys <n>', 'custom video: text cross-attention, the video tokens against n text keys (dense and torch rows only)', intOption('--cross-keys'))
    .option('--seq <n>', 'custom sequence length N', intOption('--seq'))
    .option('--block <n>', 'sequence block size b (default √N)', intOption('--block'))
    .option('--heads <n>', 'heads H', intOption('--heads'))
    .option('--head-dim <n>', 'head dim d', intOption('--head-dim'))
    .option('--dtype <t>', 'float32 | float16 | bfloat16', dtypeOption)
    .option('--batch <n>', 'batch B', intOption('--batch'))
    .option('-T, --iters <list>', 'Monarch alternating-minimisation steps T, comma-separated', intList('--iters'), [1, 2])
    .option('-f, --factorization <f>', 'monarchrt | vmonarch | both (video shapes)', 'both')
    .option('--warmup <n>', 'warm-up calls (default 10 on CUDA, 2 on the CPU)', intOption('--warmup', 0))
    .option('--repeats <n>', 'timed calls, ≥ 50 on CUDA (default 50 on CUDA, 10 on the CPU)', intOption('--repeats'))
    .option('--rotate <n>', 'input sets rotated through so L2 stays cold (default on CUDA: ≥ 3 and ≥ 256 MB in all; 2 on the CPU)', intOption('--rotate'))
    .option('--seed <n>', 'random seed', intOption('--seed', 0), 1)
    .option('--check', 'verify outputs (small twin shape vs the float32 CPU reference; dense vs torch) before timing', false)
    .option('--python <path>', 'python with torch + CUDA for the SDPA rows (default: auto-detect python3)')
    .option('--no-python', 'skip the torch rows')
    .option('--no-dense', 'skip our dense kernel row')
    .option('--json <file>', 'write the report as JSON')
    .option('--markdown <file>', 'write the report as markdown')
    .option('--plot <file>', 'also sweep latent frames at this resolution and plot time vs frames: x.svg, or x.png (needs @resvg/resvg-js); the sweep timings go to x.sweep.json')
    .option('--plot-frames <list>', 'frames of the --plot sweep, e.g. 1-41 or 1-41:4 (default 1-41 on CUDA, 1-41:8 on the CPU)', rangeList('--plot-frames'))
    .option('--no-progress', 'no progress bar on stderr')
    .option('-y, --yes', `run a CPU bench estimated longer than --max-seconds (default ${CPU_MAX_SECONDS_DEFAULT} s) anyway`, false)
    .option('--max-seconds <n>', `CPU: refuse to start when the estimated time exceeds n seconds (default ${CPU_MAX_SECONDS_DEFAULT}; --yes overrides)`, intOption('--max-seconds'))
    .action(async (o: BenchOpts) => { process.exitCode = await runBench(o); });
}

function variantsFor(shape: BenchShape, o: BenchOpts): MonarchVariant[] {
  if (!['monarchrt', 'vmonarch', 'both'].includes(o.factorization)) {
    throw new RangeError(`--factorization expects monarchrt|vmonarch|both, received "${o.factorization}"`);
  }
  if (!hasMonarch(shape)) return [];
  const facts: Array<Factorization | null> = shape.geometry.kind === 'sequence' ? [null]
    : o.factorization === 'both' ? ['monarchrt', 'vmonarch'] : [o.factorization];
  return facts.flatMap((f) => o.iters.map((T) => ({ T, factorization: f })));
}

function timingFor(backend: 'cpu' | 'cuda', shape: BenchShape, o: BenchOpts): Timing & { rotate: number } {
  const cuda = backend === 'cuda';
  const t = { warmup: o.warmup ?? (cuda ? 10 : 2), repeats: o.repeats ?? (cuda ? 50 : 10), rotate: o.rotate ?? (cuda ? defaultRotate(shape) : 2) };
  if (cuda && t.repeats < 50) throw new RangeError(`--repeats ${t.repeats} is below 50, the minimum on CUDA for a stable median`);
  return t;
}

/**
 * A CPU run estimated over the limit (--max-seconds, default 60 s) refuses to start without --yes; a long
 * one warns with the estimate. Returns the estimate's line for the output.
 */
export function guardCpuTime(seconds: number, rates: CpuRates, shapeName: string, o: { yes: boolean; maxSeconds?: number }): string {
  const limit = o.maxSeconds ?? CPU_MAX_SECONDS_DEFAULT;
  const what = `estimated ${formatSeconds(seconds)} on the CPU (the attention work at ${rates.denseGflops.toFixed(1)} GFLOP/s dense, ` +
    `${rates.monarchGflops.toFixed(1)} GFLOP/s Monarch, measured here)`;
  if (seconds > limit && !o.yes) {
    throw new Error(`bench ${shapeName}: ${what}, over the ${limit} s limit; pass --yes to run it anyway, raise --max-seconds, ` +
      'or pick a smaller shape (--preset cpu-small, --frames/--height/--width, --seq)');
  }
  if (seconds > Math.min(limit, CPU_MAX_SECONDS_DEFAULT)) process.stderr.write(`warning: ${what}; the progress bar shows an ETA\n`);
  return what;
}

async function runBench(o: BenchOpts): Promise<number> {
  const backend = resolveBackend(o.backend);
  const shape = resolveShape(o, backend);
  const timing = timingFor(backend, shape, o);
  const variants = variantsFor(shape, o);
  // Outputs first: a clash or a missing PNG renderer fails now, not after the timing.
  const outputs = planOutputs(o);
  const png: PngRenderer | undefined = outputs.plot?.format === 'png' ? loadPngRenderer(outputs.plot.image) : undefined;
  const header = runHeader(backend, info());
  const peak = peakFor(backend === 'cuda' ? header.device : null, shape.dtype);
  const { nq, nk } = tokenCounts(shape);
  const dense = shapeDenseFlops(shape);
  const notes: string[] = [];
  const torch: TorchEnv = backend === 'cuda' ? findTorch(o.python) : { python: null, torch: null, device: null, note: 'torch rows skipped: CPU backend' };
  if (!hasMonarch(shape)) notes.push(`Monarch rows skipped: ${shape.name} is text cross-attention (${nq} queries against ${nk} keys); Monarch factorises self-attention over one token set`);
  const blockCausal = denseCausalChunk(shape) > 0;
  if (blockCausal && torch.python) notes.push('torch FA2/cuDNN rows skipped: torch SDPA has no block-causal mask on FA2/cuDNN (is_causal is token-causal); our rows count FLOPs over the allowed pairs only');
  if (backend === 'cpu' && dense > 5e10) notes.push(`dense work is ${(dense / 1e12).toFixed(2)} TFLOP per call: slow on the CPU, and CPU TFLOP/s say nothing about the GPU kernels`);

  for (const l of headerLines(header)) process.stdout.write(`${l}\n`);
  process.stdout.write(`shape ${shape.name}: ${shape.description}\n${torch.note}\n`);
  for (const n of notes) process.stdout.write(`note: ${n}\n`);

  // CPU: estimate before running (and refuse a long run without --yes); the estimates weight the progress bar.
  let estimate: BenchReport['estimate'];
  let steps: StepEstimate[] = [];
  const plotSweep = outputs.plot ? { base: sweepBase({ shape, backend }), frames: sweepFrames({ plotFrames: o.plotFrames, backend }), timing: sweepTiming({ timing, backend }) } : undefined;
  if (backend === 'cpu') {
    const rates = measureCpuRates();
    steps = estimateSteps(shape, variants, timing, o.dense, rates, plotSweep);
    const seconds = steps.reduce((a, st) => a + st.seconds, 0);
    estimate = { seconds, ...rates };
    process.stdout.write(`note: ${guardCpuTime(seconds, rates, shape.name, o)}\n`);
  }
  const cpu = backend === 'cpu';
  const weight = (label: string) => (cpu ? Math.max(0.05, steps.find((st) => st.label === label)?.seconds ?? 0.05) : 1);
  const genWeight = cpu ? Math.max(0.05, timing.rotate * (nq + 2 * nk) * shape.batch * shape.heads * shape.headDim / 5e7) : 1;
  const checkWeight = 1;

  const progress = makeProgress(o.progress);
  const torchBackends: TorchBackend[] = torch.python && shape.dtype !== 'float32' && !blockCausal ? ['flash', 'cudnn'] : [];
  const denseLabels = ['our dense', 'our dense + lse + entropy'];
  const variantWeight = (v: MonarchVariant) => weight(`Monarch T=${v.T}${v.factorization ? ` ${v.factorization}` : ''}`);
  progress.start(genWeight + (o.check ? checkWeight : 0) + (o.dense ? weight(denseLabels[0]) + weight(denseLabels[1]) : 0) +
    variants.reduce((a, v) => a + variantWeight(v), 0) + (torchBackends.length ? 1 : 0), 'starting');
  let checks: CheckResult[] = [];
  const rows: BenchRow[] = [];
  try {
    if (o.check) {
      progress.tick('checking outputs on a twin shape', checkWeight);
      checks = await runBenchChecks(shape, backend, variants, torch, o.seed + 1000);
    }
    progress.tick(`generating ${timing.rotate} input sets`, genWeight);
    const w = makeWorkload(shape, backend, timing.rotate, o.seed);
    let denseOut: Float32Array | null = null;
    try {
      if (o.dense) {
        progress.tick('our dense', weight(denseLabels[0]));
        try {
          const m = measureDense(w, timing);
          denseOut = m.out;
          rows.push(rowFromMeasured(`our dense (${backend})`, 'dense', m, dense, peak.tflops));
        } catch (e) {
          rows.push(failedRow(`our dense (${backend})`, 'dense', dense, (e as Error).message));
        }
        const statsLabel = `our dense + lse + entropy (${backend})`;
        progress.tick(statsLabel, weight(denseLabels[1]));
        try {
          rows.push(rowFromMeasured(statsLabel, 'dense', measureDense(w, timing, true), dense, peak.tflops));
        } catch (e) {
          rows.push(failedRow(statsLabel, 'dense', dense, (e as Error).message));
        }
      }
      for (const v of variants) {
        progress.tick(variantLabel(v), variantWeight(v));
        try {
          const m = await measureMonarch(w, v, timing);
          const row = rowFromMeasured(variantLabel(v), 'monarch', m, dense, peak.tflops);
          row.T = v.T;
          row.factorization = v.factorization;
          row.relL2VsDense = denseOut ? relL2(m.out, denseOut) : null;
          rows.push(row);
        } catch (e) {
          rows.push(failedRow(variantLabel(v), 'monarch', dense, (e as Error).message));
        }
      }
    } finally {
      w.dispose();
    }
    if (torchBackends.length) {
      progress.tick('torch SDPA');
      const r = benchSdpa(torch, [{ B: shape.batch, H: shape.heads, Nq: nq, Nk: nk, D: shape.headDim, dtype: shape.dtype }],
        { ...timing, seed: o.seed, backends: torchBackends });
      if (r.error) notes.push(`torch rows failed: ${r.error}`);
      for (const t of r.results) {
        rows.push(t.ok && t.ms ? rowFrom(TORCH_LABEL[t.backend], 'torch', t.ms, dense, dense, peak.tflops, 'CUDA events (torch)')
          : failedRow(TORCH_LABEL[t.backend], 'torch', dense, t.error ?? 'unknown'));
      }
    } else if (backend === 'cuda' && shape.dtype === 'float32' && !blockCausal) {
      notes.push('torch FA2/cuDNN rows skipped: float32 is not supported by those SDPA backends');
    }
    progress.tick('done');
  } finally {
    progress.stop();
  }
  addSpeedups(rows);
  const vsCudnn = denseVsCudnn(rows);

  const report: BenchReport = {
    tool: 'monarch-attn bench', header,
    shape: { name: shape.name, description: shape.description, batch: shape.batch, heads: shape.heads, headDim: shape.headDim, dtype: shape.dtype, nq, nk, geometry: shape.geometry },
    settings: { ...timing, seed: o.seed, iters: o.iters, factorizations: [...new Set(variants.map((v) => v.factorization ?? 'sequence'))] },
    peak, torch: torch.note, checks, rows, notes,
    ...(vsCudnn.length && { denseVsCudnn: vsCudnn }),
    ...(outputs.plot && { plot: { image: outputs.plot.image, data: outputs.plot.data } }),
    ...(estimate && { estimate }),
  };
  if (checks.length) process.stdout.write(`checks before timing:\n${checksTable(checks)}\n`);
  process.stdout.write(`${rowsTable(rows, backend)}\n`);
  process.stdout.write(`median of ${timing.repeats} after ${timing.warmup} warm-up, ${timing.rotate} input sets; peak: ${peak.label}\n`);
  if (vsCudnn.length) process.stdout.write(`${denseVsCudnnLine(vsCudnn)}\n`);
  for (const n of [...notes, ...rows.flatMap((r) => r.notes.map((x) => `${r.method}: ${x}`))]) process.stdout.write(`note: ${n}\n`);
  if (outputs.json) fs.writeFileSync(outputs.json, `${JSON.stringify(report, null, 2)}\n`);
  if (outputs.markdown) fs.writeFileSync(outputs.markdown, benchMarkdown(report));
  if (outputs.plot) {
    const weights = plotSweep?.frames.map((f) => weight(`plot: ${f} frames`));
    await runPlot(outputs.plot, { shape, backend, timing, torch, plotFrames: o.plotFrames, seed: o.seed, progress: makeProgress(o.progress), png, weights });
    process.stdout.write(`plot: ${outputs.plot.image} (sweep timings: ${outputs.plot.data})\n`);
  }

  const failed = checks.filter((c) => !c.pass);
  if (failed.length) process.stderr.write(`${failed.length} check(s) failed: ${failed.map((c) => c.name).join('; ')}\n`);
  return failed.length || rows.some((r) => r.ms === null) ? 1 : 0;
}

