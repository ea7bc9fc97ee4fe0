// `monarch-attn info`: what the addon was built with and what it sees.
import * as os from 'node:os';
import { Command } from 'commander';
import { info } from '../lib/index';
import { cudaVersionString } from '../benchmarks/env';

export function infoCommand(): Command {
  return new Command('info')
    .description('print version, CUDA build, device and CPU facts')
    .option('--json', 'print JSON', false)
    .action((o: { json: boolean }) => {
      const i = info();
      if (o.json) {
        process.stdout.write(`${JSON.stringify(i, null, 2)}\n`);
        return;
      }
      const d = i.device;
      const lines = [
        `monarch-attention ${i.version} (N-API ${i.napiVersion}), node ${process.version}`,
        `CUDA compiled: ${i.compiledWithCuda ? `yes, archs ${i.cudaArchs}` : 'no (CPU-only build)'}`,
        `CUDA status:   ${i.cudaStatus ?? '—'} ${i.cudaMessage}`.trimEnd(),
        `devices:       ${i.deviceCount}`,
      ];
      if (d) {
        lines.push(
          `device 0:      ${d.name}, CC ${d.computeCapability}, ${d.smCount} SMs, ${(d.memoryBytes / 2 ** 30).toFixed(1)} GiB`,
          `driver/runtime: CUDA ${cudaVersionString(d.driverVersion)} (driver API) / ${cudaVersionString(d.runtimeVersion)} (runtime)`,
        );
      }
      lines.push(`CPU threads:   ${i.cpuThreads} (${os.cpus()[0]?.model ?? 'unknown CPU'})`);
      process.stdout.write(`${lines.join('\n')}\n`);
    });
}
