// Runs benchmarks/torch_sdpa.py (torch SDPA FLASH_ATTENTION / CUDNN_ATTENTION baselines) with a python
// that has torch and CUDA; every failure becomes a note, never an exception.
import { spawnSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { packageRoot } from './env';
import type { TimeSummary } from './stats';

export type TorchBackend = 'flash' | 'cudnn';
export const TORCH_LABEL: Record<TorchBackend, string> = { flash: 'torch FA2 (FLASH_ATTENTION)', cudnn: 'torch cuDNN (CUDNN_ATTENTION)' };

export interface TorchEnv { python: string | null; torch: string | null; device: string | null; note: string }
export interface SdpaShape { B: number; H: number; Nq: number; Nk: number; D: number; dtype: string; rotate?: number }
export interface SdpaTiming { shape: SdpaShape; backend: TorchBackend; ok: boolean; error?: string; ms?: TimeSummary }

function helperPath(): string {
  return path.join(packageRoot(), 'benchmarks', 'torch_sdpa.py');
}

function runHelper(python: string, args: string[], timeoutMs: number): { json?: any; error?: string } {
  const r = spawnSync(python, [helperPath(), ...args], { encoding: 'utf8', timeout: timeoutMs, maxBuffer: 64 << 20 });
  if (r.error) return { error: `${python}: ${r.error.message}` };
  if (r.status !== 0) return { error: `${python} exited ${r.status}: ${(r.stderr || '').trim().split('\n').slice(-1)[0] ?? ''}` };
  try {
    const lines = r.stdout.trim().split('\n');
    return { json: JSON.parse(lines[lines.length - 1]) };
  } catch {
    return { error: `could not parse the helper's output: ${r.stdout.slice(0, 200)}` };
  }
}

/**
 * `explicit`: --python PATH; `false`: --no-python. Otherwise auto-detect python3 with torch and CUDA.
 */
export function findTorch(explicit: string | false | undefined): TorchEnv {
  if (explicit === false) return { python: null, torch: null, device: null, note: 'torch rows skipped (--no-python)' };
  const python = explicit ?? 'python3';
  if (!fs.existsSync(helperPath())) return { python: null, torch: null, device: null, note: `torch rows skipped: ${helperPath()} not found` };
  const r = runHelper(python, ['probe'], 120_000);
  if (r.error) return { python: null, torch: null, device: null, note: `torch rows skipped: no usable torch (${r.error})` };
  const p = r.json as { torch: string; cuda: boolean; device: string | null };
  if (!p.cuda) return { python: null, torch: p.torch, device: null, note: `torch rows skipped: torch ${p.torch} sees no CUDA device` };
  return { python, torch: p.torch, device: p.device, note: `torch ${p.torch} on ${p.device} (${python})` };
}

export interface SdpaBenchSpec { warmup: number; repeats: number; rotate: number; seed: number; backends: TorchBackend[] }

/** Times every shape × backend in one python process. */
export function benchSdpa(env: TorchEnv, shapes: SdpaShape[], spec: SdpaBenchSpec): { results: SdpaTiming[]; error?: string } {
  if (!env.python) return { results: [], error: env.note };
  const file = path.join(fs.mkdtempSync(path.join(os.tmpdir(), 'monarch-sdpa-')), 'spec.json');
  fs.writeFileSync(file, JSON.stringify({ shapes, ...spec }));
  const r = runHelper(env.python, ['bench', `@${file}`], 3_600_000);
  fs.rmSync(path.dirname(file), { recursive: true, force: true });
  if (r.error) return { results: [], error: r.error };
  if (r.json.error) return { results: [], error: r.json.error };
  return { results: r.json.results as SdpaTiming[] };
}

/**
 * Runs SDPA on the given float32 BSHD inputs (already rounded to `shape.dtype`); returns each backend's
 * output (and "math", float32 on those inputs) as float32 BSHD.
 */
export function runSdpa(env: TorchEnv, shape: SdpaShape, q: Float32Array, k: Float32Array, v: Float32Array, backends: TorchBackend[]):
    { outputs: Record<string, Float32Array>; errors: Record<string, string>; error?: string } {
  if (!env.python) return { outputs: {}, errors: {}, error: env.note };
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'monarch-sdpa-'));
  try {
    const write = (name: string, a: Float32Array) => {
      const p = path.join(dir, name);
      fs.writeFileSync(p, Buffer.from(a.buffer, a.byteOffset, a.byteLength));
      return p;
    };
    const spec = { ...shape, q: write('q.f32', q), k: write('k.f32', k), v: write('v.f32', v), out_prefix: path.join(dir, 'o'), backends };
    fs.writeFileSync(path.join(dir, 'spec.json'), JSON.stringify(spec));
    const r = runHelper(env.python, ['run', `@${path.join(dir, 'spec.json')}`], 600_000);
    if (r.error) return { outputs: {}, errors: {}, error: r.error };
    if (r.json.error) return { outputs: {}, errors: {}, error: r.json.error };
    const outputs: Record<string, Float32Array> = {};
    for (const [b, p] of Object.entries(r.json.outputs as Record<string, string>)) {
      const buf = fs.readFileSync(p);
      outputs[b] = new Float32Array(buf.buffer.slice(buf.byteOffset, buf.byteOffset + buf.byteLength));
    }
    return { outputs, errors: r.json.errors ?? {} };
  } finally {
    fs.rmSync(dir, { recursive: true, force: true });
  }
}
