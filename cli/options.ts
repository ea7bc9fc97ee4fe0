// Option parsers shared by the subcommands: each throws a sentence naming the option and the value.
import { InvalidArgumentError } from 'commander';
import { info } from '../lib/index';
import type { DType } from '../lib/types';

export function intOption(name: string, min = 1) {
  return (v: string): number => {
    const n = Number(v);
    if (!Number.isInteger(n) || n < min) throw new InvalidArgumentError(`${name} expects an integer ≥ ${min}, received "${v}"`);
    return n;
  };
}

export function intList(name: string, min = 1, max = 16) {
  return (v: string): number[] => {
    const out = v.split(',').map((s) => Number(s.trim()));
    if (!out.length || out.some((n) => !Number.isInteger(n) || n < min || n > max)) {
      throw new InvalidArgumentError(`${name} expects comma-separated integers in ${min}..${max}, received "${v}"`);
    }
    return out;
  };
}

/** "1-41", "1,5,9" or "1-41:4" (step). */
export function rangeList(name: string) {
  return (v: string): number[] => {
    const out: number[] = [];
    for (const part of v.split(',')) {
      const m = /^(\d+)(?:-(\d+)(?::(\d+))?)?$/.exec(part.trim());
      if (!m) throw new InvalidArgumentError(`${name} expects e.g. "1-41", "1-41:4" or "1,5,9", received "${v}"`);
      const a = Number(m[1]);
      const b = m[2] ? Number(m[2]) : a;
      const step = m[3] ? Number(m[3]) : 1;
      if (a < 1 || b < a || step < 1) throw new InvalidArgumentError(`${name}: bad range "${part}"`);
      for (let x = a; x <= b; x += step) out.push(x);
    }
    return out;
  };
}

const DTYPES: Record<string, DType> = { float32: 'float32', fp32: 'float32', float16: 'float16', fp16: 'float16', bfloat16: 'bfloat16', bf16: 'bfloat16' };

export function dtypeOption(v: string): DType {
  const d = DTYPES[v.toLowerCase()];
  if (!d) throw new InvalidArgumentError(`--dtype expects float32|float16|bfloat16 (or fp32|fp16|bf16), received "${v}"`);
  return d;
}

export function backendOption(v: string): 'auto' | 'cpu' | 'cuda' {
  if (v !== 'auto' && v !== 'cpu' && v !== 'cuda') throw new InvalidArgumentError(`--backend expects auto|cpu|cuda, received "${v}"`);
  return v;
}

/** `auto` → cuda when compiled in and a device is visible, else cpu; `cuda` without a GPU throws. */
export function resolveBackend(b: 'auto' | 'cpu' | 'cuda'): 'cpu' | 'cuda' {
  if (b === 'cpu') return 'cpu';
  const i = info();
  const usable = i.compiledWithCuda && i.deviceCount > 0 && i.device !== null;
  if (b === 'cuda' && !usable) {
    throw new Error(`CUDA backend unavailable: ${i.compiledWithCuda ? i.cudaMessage || 'no device' : 'the addon was built without CUDA'}`);
  }
  return usable ? 'cuda' : 'cpu';
}
