// One Self-Forcing-shaped session over a KVCachePool: per chunk c (frame c·chunkFrames), for each of the
// passes (denoising steps, then the context pass) and for each of the L layers, one attend of the chunk's
// queries with write: { k, v } — every pass writes the chunk's K/V into the same slice and attends over
// the sink + window up to the chunk's end. Two ways to issue the calls (SessionContext.mode):
//   'enqueue'  groups of `group` calls: cache.enqueueAttend() each (the main thread validates, builds and
//              enqueues on the pool's stream, no wait), then one pool.flush() per group — one host round
//              trip per group instead of per call, and the event loop runs between groups. Up to `depth`
//              groups are in flight: group n + 1 is enqueued while group n's flush waits (a flush covers
//              only the calls before it), so the GPU has the next group queued when one finishes; the
//              session awaits the oldest flush once `depth` are pending, and the chunk's last flush
//              before it ends;
//   'await'    one awaited cache.attend() per call (a libuv wait and a Promise resolution each), kept to
//              measure the difference.
// Every gate turn (gate.ts) is one call ('await') or one group ('enqueue', from its enqueue to its flush:
// a session at depth d holds up to d turns, and waits in the FIFO for each new one). After a chunk, its last
// layer's context-pass output is downloaded (a libuv worker) and checksummed (a worker thread) while the
// next chunk already runs; the chunk's events follow in order.
import { DeviceTensor } from '../../lib';
import type { AnyTensor, AttendOptions, HostTensor, KVCachePool } from '../../lib';
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
  /** Main-thread time of the chunk's enqueueAttend() calls, ms (0 in 'await' mode). */
  enqueueMs: number;
  /** Sum and sum of squares of the last layer's context-pass output (float64 over the stored values). */
  checksum: Checksum;
  framesCached: number;
  evictedFrames: number;
}

export type CallMode = 'await' | 'enqueue';

/** What a session needs from the server besides its pool. */
export interface SessionContext {
  inputs: StandIn;
  gate: FairGate | null;
  checksums: ChecksumPool;
  /** How cache calls are issued (above); default 'await'. */
  mode?: CallMode;
  /** 'enqueue': calls per flush (default 10). */
  group?: number;
  /** 'enqueue': groups in flight per session (1 = enqueue, flush, await, then the next group; default 1). */
  depth?: number;
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

export interface ChunkRun {
  /** Wall time of the chunk, ms. */
  ms: number;
  out: AnyTensor;
  /** 'enqueue': main-thread time spent in enqueueAttend() calls, ms (0 for 'await'). */
  enqueueMs: number;
}

/** Chunk c's (passes + 1) × layers attends at `frame`; resolves to its wall time and last output. */
export async function runChunk(pool: KVCachePool, ctx: SessionContext, c: number, frame: number, passes: number, out?: DeviceTensor): Promise<ChunkRun> {
  const t0 = process.hrtime.bigint();
  let last: AnyTensor | undefined;
  const L = pool.layers.length, calls = (passes + 1) * L;
  const optsOf = (t: number): { q: AnyTensor; opts: AttendOptions } => {
    const { q, k, v } = ctx.inputs.get(t, c);
    return { q, opts: { frame, write: { k, v }, out: q instanceof DeviceTensor ? out : undefined } };
  };
  if (ctx.mode !== 'enqueue') {
    for (let t = 0; t <= passes; t++) {
      const { q, opts } = optsOf(t);
      for (const cache of pool.layers) last = ctx.gate ? await ctx.gate.run(() => cache.attend(q, opts)) : await cache.attend(q, opts);
    }
    return { ms: Number(process.hrtime.bigint() - t0) / 1e6, out: last!, enqueueMs: 0 };
  }
  const G = ctx.group ?? 10, depth = ctx.depth ?? 1;
  let enqueueNs = 0n;
  const pending: Array<Promise<void>> = [];  // groups whose flush has not been awaited, oldest first
  try {
    for (let i0 = 0; i0 < calls; i0 += G) {
      let enqueued!: () => void;
      const ready = new Promise<void>((resolve) => { enqueued = resolve; });
      // Call i = pass ⌊i / L⌋, layer i mod L: the order of the awaited loop.
      const group = async (): Promise<void> => {
        const e0 = process.hrtime.bigint();
        try {
          for (let i = i0; i < Math.min(calls, i0 + G); i++) {
            const { q, opts } = optsOf(Math.floor(i / L));
            last = pool.layers[i % L].enqueueAttend(q, opts);
          }
        } catch (e) {
          await pool.flush().catch(() => undefined);  // what was enqueued completes; the first error is the one reported
          throw e;
        } finally {
          enqueueNs += process.hrtime.bigint() - e0;
        }
        const flushed = pool.flush();  // this group's calls (and the earlier groups'), not the ones enqueued after it
        enqueued();
        await flushed;
      };
      const turn = ctx.gate ? ctx.gate.run(group) : group();
      turn.catch(() => undefined);  // awaited below; a rejection while another group is awaited is not unhandled
      pending.push(turn);
      await Promise.race([ready, turn]);  // enqueued (or failed)
      while (pending.length >= depth) await pending.shift();
    }
    while (pending.length > 0) await pending.shift();
  } catch (e) {
    await Promise.allSettled(pending);  // the groups in flight settle before the chunk reports its failure
    throw e;
  }
  return { ms: Number(process.hrtime.bigint() - t0) / 1e6, out: last!, enqueueMs: Number(enqueueNs) / 1e6 };
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
      const { ms, out, enqueueMs } = await runChunk(pool, ctx, c, frame, o.passes, ctx.outs?.[c % 2]);
      const base = { chunk: c, frame, ms, enqueueMs, calls: pool.layers.length * (o.passes + 1), framesCached: last.framesCached, evictedFrames: last.evictedFrames };
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
