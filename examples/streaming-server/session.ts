// One Self-Forcing-shaped session over a KVCachePool: per chunk c (frame c·chunkFrames), for each of the
// passes (denoising steps, then the context pass) and for each of the L layers, one
// cache.attend(q, { frame, write: { k, v } }) — every pass writes the chunk's K/V into the same slice and
// attends over the sink + window up to the chunk's end. Every call goes through the server's fair gate
// (gate.ts). After a chunk, its last layer's context-pass output is downloaded (a libuv worker) and
// checksummed (a worker thread) while the next chunk already runs; the chunk's events follow in order.
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
  /** The pool's two reusable device outputs (device inputs only; chunk c writes outs[c % 2]). */
  outs?: [DeviceTensor, DeviceTensor];
}

export interface SessionOptions {
  chunks: number;
  passes: number;
  chunkFrames: number;
  /** Stops after the current chunk when aborted (client went away). */
  signal?: { aborted: boolean };
}

/** Chunk c's (passes + 1) × layers attends at `frame`; resolves to its wall time and last output. */
export async function runChunk(pool: KVCachePool, ctx: SessionContext, c: number, frame: number, passes: number, out?: DeviceTensor): Promise<{ ms: number; out: AnyTensor }> {
  const t0 = process.hrtime.bigint();
  let last: AnyTensor | undefined;
  for (let t = 0; t <= passes; t++) {
    const { q, k, v } = ctx.inputs.get(t, c);
    const opts = { frame, write: { k, v }, out: q instanceof DeviceTensor ? out : undefined };
    for (const cache of pool.layers) last = ctx.gate ? await ctx.gate.run(() => cache.attend(q, opts)) : await cache.attend(q, opts);
  }
  return { ms: Number(process.hrtime.bigint() - t0) / 1e6, out: last! };
}

/**
 * Runs `chunks` chunks; calls onChunk after each (in order); the pool is reset first. Resolves to the
 * chunks done. With device outputs, chunk c writes ctx.outs[c % 2]: its download (a libuv worker) and
 * checksum (a worker thread) overlap chunk c + 1, and chunk c + 2 waits for that download only.
 */
export async function runSession(pool: KVCachePool, ctx: SessionContext, o: SessionOptions, onChunk: (r: ChunkResult) => void): Promise<number> {
  pool.reset();
  const last = pool.layers[pool.layers.length - 1];
  let done = 0;
  let reported: Promise<void> = Promise.resolve();
  let failed: { error: unknown } | null = null;
  const downloads: Array<Promise<unknown>> = [Promise.resolve(), Promise.resolve()];
  try {
    for (let c = 0; c < o.chunks && !o.signal?.aborted && !failed; c++) {
      const frame = c * o.chunkFrames;
      await downloads[c % 2];  // chunk c − 2's output has left ctx.outs[c % 2]
      const { ms, out } = await runChunk(pool, ctx, c, frame, o.passes, ctx.outs?.[c % 2]);
      const base = { chunk: c, frame, ms, calls: pool.layers.length * (o.passes + 1), framesCached: last.framesCached, evictedFrames: last.evictedFrames };
      // A host output is a fresh array per call already; a device one is copied out (the host copy is ours).
      const host: Promise<HostTensor> = out instanceof DeviceTensor ? out.download() : Promise.resolve(out as HostTensor);
      downloads[c % 2] = host.catch(() => undefined);
      const sum = host.then((h) => ctx.checksums.checksum(h));
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
