// Seeded random numbers (mulberry32 + Box–Muller) and random input tensors, so every benchmark and
// check is reproducible from its seed.
import { castTensor, tensor } from '../lib/index';
import type { DType, HostTensor } from '../lib/types';

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

/**
 * Pool length: 2^24 + 1 = 97·257·673 is odd and not a multiple of 3, so it shares no factor with a token
 * row of H·D = 2^a·3^b elements: a tensor longer than the pool wraps around without ever repeating a
 * token row (rows n and n' coincide only if (n' − n)·H·D ≡ 0 mod P).
 */
const POOL_SIZE = (1 << 24) + 1;
const pools = new Map<string, Float32Array | Uint16Array>();

/**
 * Benchmark-sized standard-normal tensors fast: timing inputs of 10^8 elements would take seconds each
 * from the RNG, so large tensors are windows (at a random start, wrapping) of one of three seeded
 * pools of P normals already rounded to the dtype — one pool per role (q, k, v), so q, k and v stay
 * independent of each other. Tensors of at most P elements come from the RNG directly.
 */
export function benchTensor(shape: readonly number[], dtype: DType, rng: Rng, role: 0 | 1 | 2, seed: number): HostTensor {
  const n = shape.reduce((a, b) => a * b, 1);
  if (n <= POOL_SIZE) return randomTensor(shape, dtype, rng);
  const key = `${seed}:${role}:${dtype}`;
  let pool = pools.get(key);
  if (!pool) {
    pool = randomTensor([POOL_SIZE], dtype, new Rng(seed * 3 + role + 0x9e3779b9)).data;
    pools.set(key, pool);
  }
  const out = pool instanceof Float32Array ? new Float32Array(n) : new Uint16Array(n);
  let start = Math.floor(rng.uniform() * POOL_SIZE);
  for (let i = 0; i < n;) {
    const len = Math.min(n - i, POOL_SIZE - start);
    out.set(pool.subarray(start, start + len), i);
    i += len;
    start = 0;
  }
  return tensor(out, [...shape], dtype);
}

/** The same values as float32 (what the fp32 CPU reference sees: the dtype-rounded inputs). */
export function asFloat32(t: HostTensor): HostTensor {
  return t.dtype === 'float32' ? t : castTensor(t, 'float32');
}
