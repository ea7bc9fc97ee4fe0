// Seeded random numbers (mulberry32 + Box–Muller) and random input tensors, so every benchmark and
// check is reproducible from its seed.
import { castTensor, tensor } from '../index';
import type { DType, HostTensor } from '../types';

export class Rng {
  private state: number;
  private spare: number | null = null;
  constructor(seed: number) { this.state = seed >>> 0; }

  /** Uniform in [0, 1). */
  uniform(): number {
    let t = (this.state = (this.state + 0x6d2b79f5) | 0);
    t = Math.imul(t ^ (t >>> 15), 1 | t);
    t = (t + Math.imul(t ^ (t >>> 7), 61 | t)) ^ t;
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  }

  /** Standard normal. */
  normal(): number {
    if (this.spare !== null) { const s = this.spare; this.spare = null; return s; }
    const u = 1 - this.uniform();
    const v = this.uniform();
    const m = Math.sqrt(-2 * Math.log(u));
    this.spare = m * Math.sin(2 * Math.PI * v);
    return m * Math.cos(2 * Math.PI * v);
  }

  fillNormal(out: Float32Array, std = 1): Float32Array {
    for (let i = 0; i < out.length; i++) out[i] = std * this.normal();
    return out;
  }

  /** A unit vector of length n. */
  unitVector(n: number): Float64Array {
    const v = new Float64Array(n);
    let s = 0;
    for (let i = 0; i < n; i++) { v[i] = this.normal(); s += v[i] * v[i]; }
    const inv = 1 / Math.sqrt(s);
    for (let i = 0; i < n; i++) v[i] *= inv;
    return v;
  }
}

/** Standard-normal tensor of `shape`, stored as `dtype` (rounded to nearest even from float32). */
export function randomTensor(shape: readonly number[], dtype: DType, rng: Rng): HostTensor {
  const n = shape.reduce((a, b) => a * b, 1);
  const t = tensor(rng.fillNormal(new Float32Array(n)), [...shape], 'float32');
  return dtype === 'float32' ? t : castTensor(t, dtype);
}

/** The same values as float32 (what the fp32 CPU reference sees: the dtype-rounded inputs). */
export function asFloat32(t: HostTensor): HostTensor {
  return t.dtype === 'float32' ? t : castTensor(t, 'float32');
}
