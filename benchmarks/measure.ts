// One measurement per method at one workload: the output on input set 0 (for the error column and
// checks), then the timings. Monarch full forwards and our dense use the library's timers (CUDA
// events on the stream / monotonic clock on the CPU); the KV-cache step is timed the same way by
// KVCache.time() once the cache holds every earlier chunk of input set 0.
import { denseAttentionSync, denseTime, MonarchAttention } from '../lib/index';
import { pairFlops } from '../lib/flops';
import { allowedPairs } from '../lib/layout';
import { denseCausalChunk, shapeDenseFlops, tokenCounts } from './presets';
import { AnyTensor, disposeAll, QKV, toHostF32 } from './tensors';
import { makeAttention, MonarchVariant, Workload } from './workload';

export interface Timing { warmup: number; repeats: number }

export interface Measured {
  times: number[];
  /** Output on input set 0, float32 BSHD. */
  out: Float32Array;
  /** FLOPs of one call (actual work). */
  flops: number;
  /** How the times were taken. */
  timer: string;
  notes: string[];
}

function isKv(w: Workload): boolean {
  const g = w.shape.geometry;
  return g.kind === 'video' && !!g.chunkFrames;
}

function takeOutput(t: AnyTensor): Float32Array {
  const f = toHostF32(t);
  disposeAll([t]);
  return f;
}

/** FLOPs of `attn` at the workload: attn.flops() for full forwards (cross-checked), §B.7 for a KV step. */
function monarchStepFlops(attn: MonarchAttention, w: Workload, T: number, notes: string[]): number {
  const s = w.shape;
  const { b1, b2 } = attn.geometry;
  const { nq, nk } = tokenCounts(s);
  const tile = b1 * b2;
  if (isKv(w)) return s.batch * s.heads * Math.ceil(nq / tile) * Math.ceil(nk / tile) * pairFlops(b1, b2, s.headDim, T);
  const lib = attn.flops();
  const mine = s.batch * s.heads * allowedPairs(attn.geometry.tilesPerSequence, attn.geometry.chunkTiles) * pairFlops(b1, b2, s.headDim, T);
  if (Math.abs(lib - mine) > 0.01 * mine) notes.push(`attn.flops()=${lib.toExponential(3)} differs from the §B.7 formula ${mine.toExponential(3)}`);
  return lib;
}

export async function measureMonarch(w: Workload, v: MonarchVariant, timing: Timing): Promise<Measured> {
  const attn = makeAttention(w.shape, v, w.backend);
  const notes: string[] = [];
  try {
    const flops = monarchStepFlops(attn, w, v.T, notes);
    if (isKv(w)) {
      const cache = attn.createKVCache();
      try {
        // Every chunk but the last, untimed; time() then times the last chunk's step at that depth without
        // taking it, and the real last step (overwriting what timing appended) gives the output.
        const chunks = w.sets[0].chunks!;
        for (let c = 0; c < chunks.length - 1; c++) disposeAll([cache.stepSync(...chunks[c])]);
        const last = w.sets.map((s) => s.chunks![s.chunks!.length - 1]);
        const times = cache.time(last, { warmup: timing.warmup, iters: timing.repeats });
        const out = takeOutput(cache.stepSync(...chunks[chunks.length - 1]));
        const timer = w.backend === 'cuda' ? 'CUDA events around KVCache.time() steps' : 'monotonic clock';
        return { times, out, flops, timer, notes };
      } finally {
        cache.dispose();
      }
    }
    const s0 = w.sets[0];
    const out = takeOutput(attn.forwardSync(s0.q, s0.k, s0.v));
    const times = attn.time(w.sets.map((s) => [s.q, s.k, s.v] as QKV), { warmup: timing.warmup, iters: timing.repeats });
    return { times, out, flops, timer: w.backend === 'cuda' ? 'CUDA events' : 'monotonic clock', notes };
  } finally {
    attn.dispose();
  }
}

/**
 * Our dense kernel; with `stats` it also writes the per-row LSE and entropy (§C.3 online entropy), the
 * cost VMonarch-style entropy adds to FlashAttention. Block-causal shapes pass the chunk as causalChunk
 * and count FLOPs over the allowed pairs only.
 */
export function measureDense(w: Workload, timing: Timing, stats = false): Measured {
  const s = w.shape;
  const s0 = w.sets[0];
  const causalChunk = denseCausalChunk(s) || undefined;
  const extra = { returnLse: stats, returnEntropy: stats, causalChunk };
  const r = denseAttentionSync(s0.q, s0.k, s0.v, { backend: w.backend, ...extra });
  const out = takeOutput(r.out);
  // The KV case's last chunk sees every cached key (block-causal, last chunk), so no mask is needed.
  const times = denseTime(w.sets.map((x) => [x.q, x.k, x.v] as QKV), { backend: w.backend, warmup: timing.warmup, iters: timing.repeats, ...extra });
  return {
    times, out, flops: shapeDenseFlops(s),
    timer: w.backend === 'cuda' ? 'CUDA events' : 'monotonic clock', notes: [],
  };
}

