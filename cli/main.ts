// The `monarch-attn` command line: info, check, bench, accuracy, build.
import { Command } from 'commander';
import { info } from '../lib/index';
import { accuracyCommand } from './accuracy';
import { benchCommand } from './bench';
import { buildCommand } from './build';
import { checkCommand } from './check';
import { infoCommand } from './info';

export function program(): Command {
  let version = 'unknown';
  try { version = info().version; } catch { /* addon not built: subcommands report it */ }
  return new Command('monarch-attn')
    .description('Monarch attention for Node.js: device info, exactness checks, benchmarks, accuracy reports, rebuilds')
    .version(version)
    .addCommand(infoCommand())
    .addCommand(checkCommand())
    .addCommand(benchCommand())
    .addCommand(accuracyCommand())
    .addCommand(buildCommand());
}

export async function main(argv: string[] = process.argv): Promise<void> {
  try {
    await program().parseAsync(argv);
  } catch (e) {
    const err = e as Error;
    process.stderr.write(`monarch-attn: ${err.name === 'Error' ? '' : `${err.name}: `}${err.message}\n`);
    process.exitCode = 1;
  }
}

if (require.main === module) void main();
