// Benchmark shapes: the named presets (docs/ALGORITHMS.md §F, TARGETS.md) and custom shapes from options.
import type { DType } from '../lib/types';

export interface VideoShape {
  kind: 'video';
  frames: number; height: number; width: number;
  /** Set for the KV-cache case: time the last step, a chunk of chunkFrames frames against all frames. */
  chunkFrames?: number;
}
export interface SequenceShape { kind: 'sequence'; length: number; blockSize: number }

export interface BenchShape {
  name: string;
  geometry: VideoShape | SequenceShape;
  heads: number;
  headDim: number;
  dtype: DType;
  batch: number;
  description: string;
}

const video = (frames: number, height: number, width: number, chunkFrames?: number): VideoShape =>
  ({ kind: 'video', frames, height, width, ...(chunkFrames ? { chunkFrames } : {}) });
const sequence = (length: number): SequenceShape =>
  ({ kind: 'sequence', length, blockSize: Math.round(Math.sqrt(length)) });

export const PRESETS: Record<string, BenchShape> = {
  'wan-480p': {
    name: 'wan-480p', geometry: video(21, 30, 52), heads: 12, headDim: 128, dtype: 'bfloat16', batch: 1,
    description: 'Wan 2.1 1.3B 480p self-attention: 21×30×52 = 32,760 tokens, 12 heads, d 128, bf16',
  },
  'wan-720p': {
    name: 'wan-720p', geometry: video(21, 45, 80), heads: 12, headDim: 128, dtype: 'bfloat16', batch: 1,
    description: 'Wan 2.1 720p: 21×45×80 = 75,600 tokens, 12 heads, d 128, bf16',
  },
  'self-forcing-chunk': {
    name: 'self-forcing-chunk', geometry: video(21, 30, 52, 3), heads: 12, headDim: 128, dtype: 'bfloat16', batch: 1,
    description: 'Self-Forcing last KV-cache step: 3-frame query chunk (4,680) against 21 frames (32,760), 480p, 12 heads, d 128, bf16',
  },
  'seq-4k': {
    name: 'seq-4k', geometry: sequence(4096), heads: 12, headDim: 64, dtype: 'float16', batch: 1,
    description: 'sequence N = 4,096, b = 64, 12 heads, d 64, fp16 (MonarchAttention benchmark setting)',
  },
  'seq-16k': {
    name: 'seq-16k', geometry: sequence(16384), heads: 12, headDim: 64, dtype: 'float16', batch: 1,
    description: 'sequence N = 16,384, b = 128, 12 heads, d 64, fp16',
  },
  'cpu-small': {
    name: 'cpu-small', geometry: video(5, 8, 12), heads: 4, headDim: 64, dtype: 'float32', batch: 1,
    description: 'CPU smoke shape: video 5×8×12 = 480 tokens, 4 heads, d 64, fp32',
  },
};

export interface ShapeOptions {
  preset?: string;
  frames?: number; height?: number; width?: number; chunkFrames?: number;
  seq?: number; block?: number;
  heads?: number; headDim?: number; dtype?: DType; batch?: number;
}

/** Tokens attended by the query side / key side of one call. */
export function tokenCounts(s: BenchShape): { nq: number; nk: number } {
  const g = s.geometry;
  if (g.kind === 'sequence') return { nq: g.length, nk: g.length };
  const perFrame = g.height * g.width;
  return { nq: (g.chunkFrames ?? g.frames) * perFrame, nk: g.frames * perFrame };
}

export function describeGeometry(s: BenchShape): string {
  const g = s.geometry;
  if (g.kind === 'sequence') return `sequence N=${g.length} b=${g.blockSize}`;
  const base = `video ${g.frames}×${g.height}×${g.width}`;
  return g.chunkFrames ? `${base}, KV step ${g.chunkFrames} frames` : base;
}

/**
 * The preset (or the backend's default) with any explicit option overriding it. A custom geometry is
 * --frames/--height/--width (video) or --seq [--block] (sequence); other options override fields.
 */
export function resolveShape(o: ShapeOptions, backend: 'cpu' | 'cuda'): BenchShape {
  const presetName = o.preset ?? (backend === 'cpu' ? 'cpu-small' : 'wan-480p');
  const base = PRESETS[presetName];
  if (!base) {
    throw new RangeError(`preset "${presetName}" is unknown; expected one of ${Object.keys(PRESETS).join(', ')}`);
  }
  let geometry: VideoShape | SequenceShape = { ...base.geometry };
  let name = base.name;
  const videoGiven = o.frames !== undefined || o.height !== undefined || o.width !== undefined;
  if (o.seq !== undefined) {
    if (videoGiven) throw new RangeError('give either --seq or --frames/--height/--width, not both');
    geometry = { kind: 'sequence', length: o.seq, blockSize: o.block ?? Math.round(Math.sqrt(o.seq)) };
    name = 'custom';
  } else if (videoGiven || o.chunkFrames !== undefined) {
    const v = geometry.kind === 'video' ? geometry : video(5, 8, 12);
    geometry = video(o.frames ?? v.frames, o.height ?? v.height, o.width ?? v.width, o.chunkFrames ?? v.chunkFrames);
    name = 'custom';
  } else if (o.block !== undefined && geometry.kind === 'sequence') {
    geometry = { ...geometry, blockSize: o.block };
    name = 'custom';
  }
  const heads = o.heads ?? base.heads;
  const headDim = o.headDim ?? base.headDim;
  const dtype = o.dtype ?? base.dtype;
  const batch = o.batch ?? base.batch;
  if (heads !== base.heads || headDim !== base.headDim || dtype !== base.dtype || batch !== base.batch) name = name === 'custom' ? name : `${name}*`;
  const shape: BenchShape = { name, geometry, heads, headDim, dtype, batch, description: base.description };
  if (name !== base.name) shape.description = `${describeGeometry(shape)}, ${heads} heads, d ${headDim}, ${dtype}, batch ${batch}`;
  return shape;
}
