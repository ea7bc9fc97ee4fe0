// `monarch-attn accuracy`: the accuracy report of benchmarks/accuracy.ts from the command line.
import * as fs from 'node:fs';
import { Command } from 'commander';
import { accuracyConfigs, accuracyMarkdown, runAccuracy } from '../benchmarks/accuracy';
import { paretoMarkdown, paretoSvg, timeConfigs, type ParetoTiming } from '../benchmarks/pareto';
import { isBidirectionalVideo, PRESETS } from '../benchmarks/presets';
import type { DType } from '../lib/types';
import { backendOption, dtypeOption, intList, intOption, resolveBackend } from './options';
import { checkWritable } from './outputs';
import { makeProgress } from './progress';

interface AccuracyCliOptions {
  frames: number; height: number; width: number; heads: number; headDim: number; iters: number[];
  backend: 'auto' | 'cpu' | 'cuda'; dtype?: DType; seed: number; json?: string; markdown?: string; progress: boolean;
  tilings: boolean; floors: boolean; timePreset?: string; timeIters: number; pareto?: string;
}

export function accuracyCommand(): Command {
  return new Command('accuracy')
    .description('relative L2 error and cosine of Monarch vs dense (random and synthetic video inputs), beside oracle top-k')
    .option('--frames <n>', 'latent frames', intOption('--frames'), 9)
    .option('--height <n>', 'token rows per frame', intOption('--height'), 12)
    .option('--width <n>', 'token columns per frame', intOption('--width'), 16)
    .option('--heads <n>', 'heads', intOption('--heads'), 2)
    .option('--head-dim <n>', 'head dim', intOption('--head-dim'), 64)
    .option('-T, --iters <list>', 'Monarch steps T', intList('--iters'), [1, 2, 3])
    .option('-b, --backend <b>', 'backend of the Monarch runs: auto | cpu | cuda', backendOption, 'cpu')
    .option('--dtype <t>', 'dtype of the inputs and Monarch runs (default float32)', dtypeOption)
    .option('--seed <n>', 'random seed', intOption('--seed', 0), 1)
    .option('--json <file>', 'write JSON')
    .option('--markdown <file>', 'write the markdown table to a file too')
    .option('--no-progress', 'no progress bar')
    .option('--tilings', 'also MonarchRT tilings hReduce 2, wReduce 2, fTied 3 (where they divide the shape)', false)
    .option('--floors', 'also T >= 2 with the other published c_R floor (MonarchRT at 0.1, VMonarch at 1e-4)', false)
    .option('--time-preset <name>', 'also time every configuration at this bidirectional video preset (e.g. wan-480p) for the accuracy-vs-cost table')
    .option('--time-iters <n>', 'timed forwards per configuration at the preset', intOption('--time-iters'), 20)
    .option('--pareto <file.svg>', 'write the accuracy-vs-cost chart (needs --time-preset)')
    .action(async (o: AccuracyCliOptions) => {
      const backend = resolveBackend(o.backend);
      if (o.pareto && !o.timePreset) throw new Error('--pareto needs --time-preset');
      if (o.pareto && !o.pareto.toLowerCase().endsWith('.svg')) throw new Error(`--pareto writes SVG: give a .svg file name, received ${o.pareto}`);
      for (const [what, file] of [['--json', o.json], ['--markdown', o.markdown], ['--pareto', o.pareto]] as const)
        if (file !== undefined) checkWritable(what, file);
      const preset = o.timePreset === undefined ? undefined : PRESETS[o.timePreset];
      if (o.timePreset !== undefined && (!preset || !isBidirectionalVideo(preset.geometry)))
        throw new Error(`--time-preset must be a bidirectional video preset (${Object.values(PRESETS).filter((p) => isBidirectionalVideo(p.geometry)).map((p) => p.name).join(', ')}), received ${o.timePreset}`);
      const ao = { ...o, backend, dtype: o.dtype ?? 'float32', ...(preset && preset.geometry.kind === 'video' ? { alsoFits: preset.geometry } : {}) };
      const configs = accuracyConfigs(ao);
      const progress = makeProgress(o.progress);
      progress.start(2 * (1 + configs.length) + (preset ? 1 + configs.length : 0), 'accuracy');
      let report;
      let timing: ParetoTiming | undefined;
      try {
        report = await runAccuracy(ao, (w) => progress.tick(w));
        if (preset) timing = timeConfigs(preset, configs, backend, { warmup: 3, iters: o.timeIters, seed: o.seed }, (w) => progress.tick(w));
      } finally {
        progress.stop();
      }
      let md = accuracyMarkdown(report);
      if (timing) md += `\n${paretoMarkdown(report, timing)}`;
      if (timing && o.pareto) fs.writeFileSync(o.pareto, paretoSvg(report, timing));
      process.stdout.write(md);
      if (o.markdown) fs.writeFileSync(o.markdown, md);
      if (o.json) fs.writeFileSync(o.json, `${JSON.stringify(timing ? { ...report, timing } : report, null, 2)}\n`);
      process.exitCode = report.rows.some((r) => r.relL2 === null) ? 1 : 0;
    });
}
