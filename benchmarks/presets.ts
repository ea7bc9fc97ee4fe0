// Benchmark shapes: the named presets (docs/ALGORITHMS.md §F, TARGETS.md) and custom shapes from options.
import { denseFlops } from '../lib/flops';
import type { DType } from '../lib/types';

/**
 * Video self-attention over frames·height·width tokens. At most one of chunkFrames / causalFrames is set:
 * both mean block-causal chunks of that many frames (a query in frame f sees key frames
 * < c·(⌊f/c⌋ + 1)), timed as the KV-cache step (chunkFrames) or as one forward over all frames (causalFrames).
 */
export interface VideoShape {
  kind: 'video';
  frames: number; height: number; width: number;
  /** Set for the KV-cache case: time the last step, a chunk of chunkFrames frames against all frames. */
  chunkFrames?: number;
  /** Set for the block-causal forward: every frame's queries at once, chunks of causalFrames frames. */
  causalFrames?: number;
}
export interface SequenceShape { kind: 'sequence'; length: number; blockSize: number }
/**
 * Text cross-attention in a video DiT block: the frames·height·width video tokens are the queries, `keys`
 * text tokens the keys and values. Dense only: Monarch factorises self-attention over one token set.
 */
export interface CrossShape { kind: 'cross'; frames: number; height: number; width: number; keys: number }

export type BenchGeometry = VideoShape | SequenceShape | CrossShape;

export interface BenchShape {
  name: string;
  geometry: BenchGeometry;
  heads: number;
  headDim: number;
  dtype: DType;
  batch: number;
  description: string;
}

const video = (frames: number, height: number, width: number, time: { chunkFrames?: number; causalFrames?: number } = {}): VideoShape =>
  ({ kind: 'video', frames, height, width, ...(time.chunkFrames ? { chunkFrames: time.chunkFrames } : {}), ...(time.causalFrames ? { causalFrames: time.causalFrames } : {}) });
const cross = (frames: number, height: number, width: number, keys: number): CrossShape => ({ kind: 'cross', frames, height, width, keys });
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
    name: 'self-forcing-chunk', geometry: video(21, 30, 52, { chunkFrames: 3 }), heads: 12, headDim: 128, dtype: 'bfloat16', batch: 1,
    description: 'Self-Forcing last KV-cache step: 3-frame query chunk (4,680) against 21 frames (32,760), 480p, 12 heads, d 128, bf16',
  },
  'wan-480p-causal': {
    name: 'wan-480p-causal', geometry: video(21, 30, 52, { causalFrames: 3 }), heads: 12, headDim: 128, dtype: 'bfloat16', batch: 1,
    description: 'Wan 2.1 480p block-causal self-attention (Self-Forcing chunks of 3 frames = 4,680 tokens): 32,760 tokens, 12 heads, d 128, bf16',
  },
  'wan-480p-cross': {
    name: 'wan-480p-cross', geometry: cross(21, 30, 52, 512), heads: 12, headDim: 128, dtype: 'bfloat16', batch: 1,
    description: 'Wan 2.1 480p text cross-attention: 32,760 video queries against 512 text keys, 12 heads, d 128, bf16 (dense only)',
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
  frames?: number; height?: number; width?: number; chunkFrames?: number; causalFrames?: number; crossKeys?: number;
  seq?: number; block?: number;
  heads?: number; headDim?: number; dtype?: DType; batch?: number;
}

/** Tokens attended by the query side / key side of one call. */
export function tokenCounts(s: BenchShape): { nq: number; nk: number } {
  const g = s.geometry;
  if (g.kind === 'sequence') return { nq: g.length, nk: g.length };
  const perFrame = g.height * g.width;
  if (g.kind === 'cross') return { nq: g.frames * perFrame, nk: g.keys };
  return { nq: (g.chunkFrames ?? g.frames) * perFrame, nk: g.frames * perFrame };
}

/**
 * The dense kernel's causalChunk (tokens) at the shape: causalFrames·height·width for the block-causal
 * forward; 0 otherwise (the KV step's last chunk sees every key, so it needs no mask).
 */
export function denseCausalChunk(s: BenchShape): number {
  const g = s.geometry;
  return g.kind === 'video' && g.causalFrames ? g.causalFrames * g.height * g.width : 0;
}

/** FLOPs of exact attention at the shape over the (query, key) pairs it allows (lib/flops.ts denseFlops). */
export function shapeDenseFlops(s: BenchShape): number {
  const { nq, nk } = tokenCounts(s);
  return denseFlops(nq, nk, s.headDim, s.batch, s.heads, denseCausalChunk(s));
}

/** Monarch applies: self-attention over one token set (not the text cross-attention). */
export function hasMonarch(s: BenchShape): boolean {
  return s.geometry.kind !== 'cross';
}

/** A bidirectional video self-attention shape (no KV step, no block-causal chunks). */
export function isBidirectionalVideo(g: BenchGeometry): g is VideoShape {
  return g.kind === 'video' && !g.chunkFrames && !g.causalFrames;
}

export function describeGeometry(s: BenchShape): string {
  const g = s.geometry;
  if (g.kind === 'sequence') return `sequence N=${g.length} b=${g.blockSize}`;
  const base = `video ${g.frames}×${g.height}×${g.width}`;
  if (g.kind === 'cross') return `cross-attention: ${base} queries against ${g.keys} text keys`;
  if (g.chunkFrames) return `${base}, KV step ${g.chunkFrames} frames`;
  return g.causalFrames ? `${base}, block-causal chunks of ${g.causalFrames} frames` : base;
}

/** RangeErrors naming the option for a video geometry that cannot run. */
function checkGeometry(g: BenchGeometry): void {
  if (g.kind !== 'video') return;
  if (g.chunkFrames && g.causalFrames) {
    throw new RangeError(`give either --chunk-frames (the KV-cache step) or --causal-frames (the block-causal forward), not both; received ${g.chunkFrames} and ${g.causalFrames}`);
  }
  for (const [flag, c] of [['--chunk-frames', g.chunkFrames], ['--causal-frames', g.causalFrames]] as const) {
    if (c && g.frames % c !== 0) throw new RangeError(`${flag} ${c} must divide the ${g.frames} frames`);
  }
}

/**
 * The preset (or the backend's default) with any explicit option overriding it. A custom geometry is
 * --frames/--height/--width (video; with --chunk-frames, --causal-frames or --cross-keys) or --seq [--block]
 * (sequence); other options override fields. Video options on a cross preset keep it cross-attention;
 * --chunk-frames / --causal-frames replace the preset's block-causal setting.
 */
export function resolveShape(o: ShapeOptions, backend: 'cpu' | 'cuda'): BenchShape {
  const presetName = o.preset ?? (backend === 'cpu' ? 'cpu-small' : 'wan-480p');
  const base = PRESETS[presetName];
  if (!base) {
    throw new RangeError(`preset "${presetName}" is unknown; expected one of ${Object.keys(PRESETS).join(', ')}`);
  }
  let geometry: BenchGeometry = { ...base.geometry };
  let name = base.name;
  const videoGiven = o.frames !== undefined || o.height !== undefined || o.width !== undefined;
  const timeGiven = o.chunkFrames !== undefined || o.causalFrames !== undefined;
  if (o.seq !== undefined) {
    if (videoGiven || timeGiven || o.crossKeys !== undefined) {
      throw new RangeError('give either --seq or --frames/--height/--width (with --chunk-frames, --causal-frames or --cross-keys), not both');
    }
    geometry = { kind: 'sequence', length: o.seq, blockSize: o.block ?? Math.round(Math.sqrt(o.seq)) };
    name = 'custom';
  } else if (videoGiven || timeGiven || o.crossKeys !== undefined) {
    const v = geometry.kind === 'sequence' ? video(5, 8, 12) : geometry;
    const [f, h, w] = [o.frames ?? v.frames, o.height ?? v.height, o.width ?? v.width];
    const keys = o.crossKeys ?? (v.kind === 'cross' ? v.keys : undefined);
    if (keys !== undefined) {
      if (timeGiven) throw new RangeError('text cross-attention (--cross-keys or a cross preset) has no block-causal chunks: drop --chunk-frames / --causal-frames');
      geometry = cross(f, h, w, keys);
    } else {
      const t = timeGiven ? o : v.kind === 'video' ? v : {};
      geometry = video(f, h, w, { chunkFrames: t.chunkFrames, causalFrames: t.causalFrames });
    }
    name = 'custom';
  } else if (o.block !== undefined && geometry.kind === 'sequence') {
    geometry = { ...geometry, blockSize: o.block };
    name = 'custom';
  }
  checkGeometry(geometry);
  const heads = o.heads ?? base.heads;
  const headDim = o.headDim ?? base.headDim;
  const dtype = o.dtype ?? base.dtype;
  const batch = o.batch ?? base.batch;
  if (heads !== base.heads || headDim !== base.headDim || dtype !== base.dtype || batch !== base.batch) name = name === 'custom' ? name : `${name}*`;
  const shape: BenchShape = { name, geometry, heads, headDim, dtype, batch, description: base.description };
  if (name !== base.name) shape.description = `${describeGeometry(shape)}, ${heads} heads, d ${headDim}, ${dtype}, batch ${batch}`;
  return shape;
}
