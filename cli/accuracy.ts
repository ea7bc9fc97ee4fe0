// `monarch-attn accuracy`: the accuracy report of benchmarks/accuracy.ts from the command line.
import * as fs from 'node:fs';
import { Command } from 'commander';
import { accuracyMarkdown, runAccuracy } from '../benchmarks/accuracy';
import type { DType } from '../lib/types';
import { backendOption, dtypeOption, intList, intOption, resolveBackend } from './options';
import { makeProgress } from './progress';

interface AccuracyCliOptions {
  frames: number; height: number; width: number; heads: number; headDim: number; iters: number[];
  backend: 'auto' | 'cpu' | 'cuda'; dtype?: DType; seed: number; json?: string; markdown?: string; progress: boolean;
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
    .action(async (o: AccuracyCliOptions) => {
      const backend = resolveBackend(o.backend);
      const progress = makeProgress(o.progress);
      progress.start(2 * (1 + 4 * o.iters.length), 'accuracy');
      let report;
      try {
        report = await runAccuracy({ ...o, backend, dtype: o.dtype ?? 'float32' }, (w) => progress.tick(w));
      } finally {
        progress.stop();
      }
      const md = accuracyMarkdown(report);
      process.stdout.write(md);
      if (o.markdown) fs.writeFileSync(o.markdown, md);
      if (o.json) fs.writeFileSync(o.json, `${JSON.stringify(report, null, 2)}\n`);
      process.exitCode = report.rows.some((r) => r.relL2 === null) ? 1 : 0;
    });
}
