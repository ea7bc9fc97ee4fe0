// Server configuration: presets and flags (commander), checked once at start-up.
import type { DType, MonarchOptions } from '../../lib';
import { FairGate } from './gate';

export interface ServerConfig {
  host: string; port: number;
  backend: 'cpu' | 'cuda' | 'auto';
  frames: number; height: number; width: number; chunkFrames: number;
  factorization: 'monarchrt' | 'vmonarch';
  heads: number; headDim: number; dtype: DType; numIters: number;
  layers: number; passes: number;
  /** Rolling window (0 = keep every frame; sessions then stop at frames / chunkFrames chunks). */
  localAttnFrames: number; sinkFrames: number;
  /** Pools kept for reuse and the most concurrent sessions (503 beyond). */
  maxSessions: number;
  /** Budget for all session pools, bytes (0 = no limit). */
  maxBytes: number;
  /** Chunks per session unless the client asks for fewer/more (≤ maxChunks). */
  defaultChunks: number; maxChunks: number;
  seed: number;
  /** Cache calls of all sessions in flight at once (fair FIFO gate, gate.ts); 0 = no gate. */
  inflight: number;
  /** Worker threads checksumming chunk outputs. */
  checksumThreads: number;
  /** Create every session's pool at start-up (no cudaMalloc on the event loop while sessions run). */
  preallocate: boolean;
  /**
   * How a session issues its cache calls (session.ts): 'enqueue' (enqueueAttend + one flush per
   * enqueueGroup calls), 'await' (one awaited attend per call), 'auto' = 'enqueue' on CUDA, 'await' on the CPU
   * (where an enqueued call computes on the main thread).
   */
  cacheCalls: 'auto' | 'await' | 'enqueue';
  /** 'enqueue': cache calls per flush (and per gate turn), 1..4096. */
  enqueueGroup: number;
  /**
   * 'enqueue': groups in flight per session, 1..64 (1 = enqueue a group, await its flush, then the next;
   * 2 = enqueue group n + 1 while group n's flush waits). Changeable at run time (POST /scheduler?depth=N).
   */
  enqueueDepth: number;
}

export const PRESETS: Record<string, Partial<ServerConfig>> = {
  // CI: a few hundred tokens, runs in milliseconds on the CPU backend.
  tiny: { backend: 'cpu', frames: 4, height: 2, width: 3, chunkFrames: 2, heads: 1, headDim: 8, dtype: 'float32', layers: 2, localAttnFrames: 4, sinkFrames: 2 },
  // The default: CPU backend, small shapes, Self-Forcing's chunks of 3 frames and a sink of one chunk.
  small: { backend: 'cpu', frames: 6, height: 4, width: 6, chunkFrames: 3, heads: 2, headDim: 32, dtype: 'float32', layers: 4, localAttnFrames: 6, sinkFrames: 3 },
  // Self-Forcing on Wan 2.1 1.3B at 480p: 21 × 30 × 52 latent frames, chunks of 3, 12 heads × 128, bf16,
  // 30 layers, the whole 21-frame video attended (no rolling).
  '480p': { backend: 'cuda', frames: 21, height: 30, width: 52, chunkFrames: 3, heads: 12, headDim: 128, dtype: 'bfloat16', layers: 30, localAttnFrames: 0, sinkFrames: 0 },
  // The same with Self-Forcing's rolling window: 21 frames attended, the first chunk (3 frames) a sink;
  // the cache stays 21 frames deep however long a session runs.
  '480p-rolling': { backend: 'cuda', frames: 21, height: 30, width: 52, chunkFrames: 3, heads: 12, headDim: 128, dtype: 'bfloat16', layers: 30, localAttnFrames: 21, sinkFrames: 3 },
};

export const DEFAULTS: ServerConfig = {
  host: '127.0.0.1', port: 8080, backend: 'cpu', frames: 6, height: 4, width: 6, chunkFrames: 3, factorization: 'monarchrt',
  heads: 2, headDim: 32, dtype: 'float32', numIters: 1, layers: 4, passes: 4, localAttnFrames: 6, sinkFrames: 3,
  maxSessions: 8, maxBytes: 0, defaultChunks: 7, maxChunks: 10000, seed: 1, inflight: 4, checksumThreads: 2, preallocate: false,
  cacheCalls: 'auto', enqueueGroup: 10, enqueueDepth: 2,
};

/** Checks an enqueue depth (config, flag or POST /scheduler?depth=N). */
export function checkDepth(depth: unknown): number {
  if (typeof depth !== 'number' || !Number.isInteger(depth) || depth < 1 || depth > 64) {
    throw new RangeError(`enqueueDepth must be an integer in 1..64, received ${JSON.stringify(depth)}`);
  }
  return depth;
}

/** The preset's config with explicit overrides applied. */
export function resolveConfig(preset: string, overrides: Partial<ServerConfig>): ServerConfig {
  const p = PRESETS[preset];
  if (!p) throw new RangeError(`unknown preset ${JSON.stringify(preset)} (known: ${Object.keys(PRESETS).join(', ')})`);
  const c: ServerConfig = { ...DEFAULTS, ...p };
  for (const [key, val] of Object.entries(overrides)) if (val !== undefined) (c as unknown as Record<string, unknown>)[key] = val;
  FairGate.check(c.inflight);
  if (!['auto', 'await', 'enqueue'].includes(c.cacheCalls)) {
    throw new RangeError(`cacheCalls must be 'auto', 'await' or 'enqueue', received ${JSON.stringify(c.cacheCalls)}`);
  }
  if (!Number.isInteger(c.enqueueGroup) || c.enqueueGroup < 1 || c.enqueueGroup > 4096) {
    throw new RangeError(`enqueueGroup must be an integer in 1..4096, received ${JSON.stringify(c.enqueueGroup)}`);
  }
  checkDepth(c.enqueueDepth);
  if (!Number.isInteger(c.checksumThreads) || c.checksumThreads < 1 || c.checksumThreads > 64) {
    throw new RangeError(`checksumThreads must be an integer in 1..64, received ${c.checksumThreads}`);
  }
  if (preset === '480p' && overrides.defaultChunks === undefined && c.localAttnFrames === 0) c.defaultChunks = c.frames / c.chunkFrames;
  return c;
}

export function monarchOptions(c: ServerConfig): MonarchOptions {
  return {
    layout: { kind: 'video', frames: c.frames, height: c.height, width: c.width, factorization: c.factorization },
    heads: c.heads, headDim: c.headDim, dtype: c.dtype, numIters: c.numIters, backend: c.backend,
    causal: { chunkFrames: c.chunkFrames },
  };
}

export function windowOptions(c: ServerConfig): { localAttnFrames?: number; sinkFrames?: number } {
  return c.localAttnFrames > 0 ? { localAttnFrames: c.localAttnFrames, sinkFrames: c.sinkFrames } : {};
}
