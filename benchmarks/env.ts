// The run header every report starts with: device, driver, CUDA runtime, commit, date.
import { execFileSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { info } from '../lib/index';
import type { InfoResult } from '../lib/types';

/** The package root (the folder holding package.json), from src (benchmarks/) or dist (dist/benchmarks/). */
export function packageRoot(): string {
  let dir = __dirname;
  for (let i = 0; i < 6; i++) {
    if (fs.existsSync(path.join(dir, 'package.json'))) return dir;
    dir = path.dirname(dir);
  }
  return process.cwd();
}

/** 12030 → "12.3" (cudaDriverGetVersion / cudaRuntimeGetVersion encoding). */
export function cudaVersionString(v: number): string {
  return `${Math.floor(v / 1000)}.${Math.floor((v % 1000) / 10)}`;
}

function tryExec(cmd: string, args: string[], cwd?: string): string | null {
  try {
    return execFileSync(cmd, args, { cwd, stdio: ['ignore', 'pipe', 'ignore'], timeout: 10000 }).toString().trim();
  } catch {
    return null;
  }
}

/** MONARCH_COMMIT, else `git rev-parse HEAD` (+ "-dirty" when tracked files changed), else "unknown". */
export function commitId(): string {
  if (process.env.MONARCH_COMMIT) return process.env.MONARCH_COMMIT;
  const root = packageRoot();
  const head = tryExec('git', ['rev-parse', '--short=12', 'HEAD'], root);
  if (!head) return 'unknown';
  const dirty = tryExec('git', ['status', '--porcelain', '--untracked-files=no'], root);
  return dirty ? `${head}-dirty` : head;
}

export interface RunHeader {
  date: string;
  commit: string;
  version: string;
  backend: 'cpu' | 'cuda';
  device: string;
  computeCapability: string | null;
  smCount: number | null;
  memoryGiB: number | null;
  driver: string | null;
  cudaDriverApi: string | null;
  cudaRuntime: string | null;
  cudaArchs: string | null;
  cpu: string;
  cpuThreads: number;
  node: string;
}

export function runHeader(backend: 'cpu' | 'cuda', inf: InfoResult = info()): RunHeader {
  const dev = backend === 'cuda' ? inf.device : null;
  const smi = dev ? tryExec('nvidia-smi', ['--query-gpu=driver_version', '--format=csv,noheader', '-i', '0']) : null;
  const cpus = os.cpus();
  return {
    date: new Date().toISOString(),
    commit: commitId(),
    version: inf.version,
    backend,
    device: dev ? dev.name : `CPU (${cpus[0]?.model ?? 'unknown'})`,
    computeCapability: dev ? dev.computeCapability : null,
    smCount: dev ? dev.smCount : null,
    memoryGiB: dev ? +(dev.memoryBytes / 2 ** 30).toFixed(1) : null,
    driver: smi ? smi.split('\n')[0] : null,
    cudaDriverApi: dev ? cudaVersionString(dev.driverVersion) : null,
    cudaRuntime: dev ? cudaVersionString(dev.runtimeVersion) : null,
    cudaArchs: inf.cudaArchs,
    cpu: cpus[0]?.model ?? 'unknown',
    cpuThreads: inf.cpuThreads,
    node: process.version,
  };
}

export function headerLines(h: RunHeader): string[] {
  const lines = [`monarch-attention ${h.version}  commit ${h.commit}  ${h.date}`];
  if (h.backend === 'cuda') {
    lines.push(`GPU ${h.device}  CC ${h.computeCapability}  ${h.smCount} SMs  ${h.memoryGiB} GiB`);
    lines.push(`driver ${h.driver ?? `(nvidia-smi n/a; CUDA driver API ${h.cudaDriverApi})`}  CUDA runtime ${h.cudaRuntime}  archs ${h.cudaArchs}`);
  } else {
    lines.push(`backend cpu: ${h.cpu}, ${h.cpuThreads} threads`);
  }
  lines.push(`node ${h.node}`);
  return lines;
}
