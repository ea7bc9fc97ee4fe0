// `monarch-attn build`: rebuild the installed package's addon for this machine (scripts/build-cuda.js,
// shipped in the package; README "Rebuilding for your GPU").
import { spawnSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { Command } from 'commander';

/** scripts/build-cuda.js of this package (from cli/ in a checkout, dist/cli/ when built). */
export function buildScript(): string {
  for (const up of ['..', '../..']) {
    const f = path.resolve(__dirname, up, 'scripts', 'build-cuda.js');
    if (fs.existsSync(f)) return f;
  }
  throw new Error('scripts/build-cuda.js is missing from this installation of monarch-attention');
}

export function buildCommand(): Command {
  return new Command('build')
    .description('rebuild the addon for this machine: CUDA for the given architectures (default: the GPUs here), or CPU-only')
    .option('--cuda-arch <list>', 'CMake CUDA architectures, comma-separated: 89, 90a, 80,120, ... or native', 'native')
    .option('--cpu', 'CPU-only build (no CUDA compiler needed)', false)
    .option('--clean', 'remove the local build and go back to the shipped prebuild', false)
    .action((o: { cudaArch: string; cpu: boolean; clean: boolean }, cmd: Command) => {
      const args = o.clean ? ['--clean'] : o.cpu ? ['--cpu'] : ['--cuda-arch', o.cudaArch];
      if (o.cpu && cmd.getOptionValueSource('cudaArch') === 'cli') throw new Error('--cpu and --cuda-arch exclude each other');
      const r = spawnSync(process.execPath, [buildScript(), ...args], { stdio: 'inherit' });
      if (r.error) throw r.error;
      process.exitCode = r.status ?? 1;
    });
}
