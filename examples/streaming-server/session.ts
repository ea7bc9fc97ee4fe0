// One Self-Forcing-shaped session over a KVCachePool: per chunk c (frame c·chunkFrames), for each of the
// passes (denoising steps, then the context pass) and for each of the L layers, one
// cache.attend(q, { frame, write: { k, v } }) — every pass writes the chunk's K/V into the same slice and
// attends over the sink + window up to the chunk's end. Every call goes through the server's fair gate
// (gate.ts). After a chunk, its last layer's context-pass output is downloaded (off the event loop) and
// checksummed on a worker thread while the next chunk already runs; the chunk's event follows, in order.
import { DeviceTensor } from '../../lib';
import type { AnyTensor, HostTensor, KVCachePool } from '../../lib';
import type { Checksum, ChecksumPool } from './checksum';
import type { FairGate } from './gate';
import type { StandIn } from './standin';

export interface ChunkResult {
  chunk: number;
  frame: number;
  /** Wall time of the chunk's layers × (passes + 1) attends, ms (waits at the gate included). */
  ms: number;
  /** Attend calls in this chunk. */
  calls: number;
  /** Sum and sum of squares of the last layer's context-pass output (float64 over the stored values). */
  checksum: Checksum;
  framesCached: number;
  evictedFrames: number;
}

/** What a session needs from the server besides its pool. */
export interface SessionContext {
  inputs: StandIn;
  gate: FairGate | null;
  checksums: ChecksumPool;
  /** The pool's reusable device output (device inputs only), written by every call. */
  out?: DeviceTensor;
}

export interface SessionOptions {
  chunks: number;
  passes: number;
  chunkFrames: number;
  /** Stops after the current chunk when aborted (client went away). */
  signal?: { aborted: boolean };
}

/** Chunk c's (passes + 1) × layers attends at `frame`; resolves to its wall time and last output. */
export async function runChunk(pool: KVCachePool, ctx: SessionContext, c: number, frame: number, passes: number): Promise<{ ms: number; out: AnyTensor }> {
  const t0 = process.hrtime.bigint();
  let out: AnyTensor | undefined;
  for (let t = 0; t <= passes; t++) {
    const { q, k, v } = ctx.inputs.get(t, c);
    const opts = { frame, write: { k, v }, out: q instanceof DeviceTensor ? ctx.out : undefined };
    for (const cache of pool.layers) out = ctx.gate ? await ctx.gate.run(() => cache.attend(q, opts)) : await cache.attend(q, opts);
  }
  return { ms: Number(process.hrtime.bigint() - t0) / 1e6, out: out! };
}

/** Runs `chunks` chunks; calls onChunk after each (in order); the pool is reset first. Resolves to the chunks done. */
export async function runSession(pool: KVCachePool, ctx: SessionContext, o: SessionOptions, onChunk: (r: ChunkResult) => void): Promise<number> {
  pool.reset();
  const last = pool.layers[pool.layers.length - 1];
  let done = 0;
  let reported: Promise<void> = Promise.resolve();
  let failed: { error: unknown } | null = null;
  try {
    for (let c = 0; c < o.chunks && !o.signal?.aborted && !failed; c++) {
      const frame = c * o.chunkFrames;
      const { ms, out } = await runChunk(pool, ctx, c, frame, o.passes);
      // The device output is overwritten by the next chunk: download it first (a libuv worker; the
      // host copy is ours). A host output is a fresh array per call already.
      const host = out instanceof DeviceTensor ? await out.download() : out as HostTensor;
      const base = { chunk: c, frame, ms, calls: pool.layers.length * (o.passes + 1), framesCached: last.framesCached, evictedFrames: last.evictedFrames };
      const sum = ctx.checksums.checksum(host);
      reported = Promise.all([reported, sum]).then(([, checksum]) => { if (!failed) onChunk({ ...base, checksum }); })
        .catch((error: unknown) => { failed ??= { error }; });
      done++;
    }
  } finally {
    await reported;  // never rejects; a failure is in `failed`
  }
  if (failed) throw (failed as { error: unknown }).error;
  return done;
}
