// The inputs of one benchmark shape: `rotate` sets of random q, k, v placed on the backend (device
// tensors on CUDA, so timings exclude copies), plus the per-chunk K/V of the KV-cache case.
import { MonarchAttention } from '../lib/index';
import type { MonarchOptions, DType } from '../lib/types';
import type { BenchShape } from './presets';
import { tokenCounts } from './presets';
import { benchTensor, Rng } from './random';
import { AnyTensor, disposeAll, place, sliceTokens } from './tensors';

export type Factorization = 'monarchrt' | 'vmonarch';

export interface MonarchVariant {
  T: number;
  /** null for sequence shapes. */
  factorization: Factorization | null;
  recompute?: 'none' | 'first-frame';
}

export function variantLabel(v: MonarchVariant): string {
  const f = v.factorization ? ` ${v.factorization}` : '';
  const r = v.recompute === 'first-frame' ? ' +ff' : '';
  return `Monarch T=${v.T}${f}${r}`;
}

/**
 * MonarchOptions of `variant` at `shape` (causal with the chunk of the KV-cache case or of the block-causal
 * forward). A cross-attention shape has none: Monarch needs self-attention over one token set.
 */
export function monarchOptions(shape: BenchShape, v: MonarchVariant, backend: 'cpu' | 'cuda', dtype: DType = shape.dtype): MonarchOptions {
  const g = shape.geometry;
  if (g.kind === 'cross') throw new RangeError(`shape ${shape.name} is text cross-attention (Nq ≠ Nk): Monarch attention needs self-attention over one token set`);
  const chunkFrames = g.kind === 'video' ? g.chunkFrames ?? g.causalFrames : undefined;
  const common = { heads: shape.heads, headDim: shape.headDim, batch: shape.batch, numIters: v.T, dtype, backend };
  if (g.kind === 'sequence') {
    return { ...common, layout: { kind: 'sequence', length: g.length, blockSize: g.blockSize } };
  }
  return {
    ...common,
    layout: { kind: 'video', frames: g.frames, height: g.height, width: g.width, factorization: v.factorization ?? 'monarchrt' },
    ...(chunkFrames ? { causal: { chunkFrames } } : {}),
    recompute: v.recompute ?? 'none',
  };
}

export function makeAttention(shape: BenchShape, v: MonarchVariant, backend: 'cpu' | 'cuda', dtype?: DType): MonarchAttention {
  return new MonarchAttention(monarchOptions(shape, v, backend, dtype));
}

/** Bytes of one input set (q, k, v) at the shape's dtype. */
export function setBytes(shape: BenchShape): number {
  const { nq, nk } = tokenCounts(shape);
  return (nq + 2 * nk) * shape.batch * shape.heads * shape.headDim * (shape.dtype === 'float32' ? 4 : 2);
}

/**
 * Default number of rotated input sets on CUDA: at least 3, and enough to cycle through ≥ 256 MB (5× the
 * 50 MB L2 of an H100/H200) so each call finds its inputs outside L2; at most 64.
 */
export function defaultRotate(shape: BenchShape): number {
  return Math.min(64, Math.max(3, Math.ceil((256 << 20) / setBytes(shape))));
}

export interface InputSet {
  /** [B][Nq][H][D]: all tokens, the video tokens of a cross shape, or the last chunk for the KV-cache case. */
  q: AnyTensor;
  /** [B][Nk][H][D] (the text tokens of a cross shape). */
  k: AnyTensor;
  v: AnyTensor;
  /** KV-cache case: per-chunk q, k, v (the last chunk's q is `q`). */
  chunks?: Array<[AnyTensor, AnyTensor, AnyTensor]>;
}

export interface Workload {
  shape: BenchShape;
  backend: 'cpu' | 'cuda';
  sets: InputSet[];
  dispose(): void;
}

/** Builds `rotate` input sets from `seed` (standard normal, rounded to the shape's dtype). */
export function makeWorkload(shape: BenchShape, backend: 'cpu' | 'cuda', rotate: number, seed: number, dtype: DType = shape.dtype): Workload {
  const rng = new Rng(seed);
  const { nq, nk } = tokenCounts(shape);
  const dims = (n: number) => [shape.batch, n, shape.heads, shape.headDim];
  const g = shape.geometry;
  const kvChunkTokens = g.kind === 'video' && g.chunkFrames ? g.chunkFrames * g.height * g.width : 0;
  const sets: InputSet[] = [];
  for (let s = 0; s < rotate; s++) {
    // The KV case draws every chunk's queries (its chunks are whole-frame slices of all tokens).
    const qAll = benchTensor(dims(kvChunkTokens ? nk : nq), dtype, rng, 0, seed);
    const k = benchTensor(dims(nk), dtype, rng, 1, seed);
    const v = benchTensor(dims(nk), dtype, rng, 2, seed);
    if (kvChunkTokens) {
      const chunks: Array<[AnyTensor, AnyTensor, AnyTensor]> = [];
      for (let t0 = 0; t0 < nk; t0 += kvChunkTokens) {
        const sl = (x: typeof k) => place(sliceTokens(x, t0, t0 + kvChunkTokens), backend);
        chunks.push([sl(qAll), sl(k), sl(v)]);
      }
      sets.push({ q: chunks[chunks.length - 1][0], k: place(k, backend), v: place(v, backend), chunks });
    } else {
      sets.push({ q: place(qAll, backend), k: place(k, backend), v: place(v, backend) });
    }
  }
  return {
    shape, backend, sets,
    dispose() {
      for (const s of sets) {
        disposeAll([s.q, s.k, s.v]);
        for (const c of s.chunks ?? []) disposeAll(c);
      }
    },
  };
}
