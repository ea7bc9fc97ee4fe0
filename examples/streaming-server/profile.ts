// GET /profile: the cost of one chunk split into the kernels and the protocol path, on an idle pool with
// no other session running. Measured in-process (no HTTP, no gate), at the chunk whose keys fill the
// cache (the last chunk of a whole video: 3 query frames against localAttnFrames or all frames):
//   kernel    cache.time() of one attend-with-write at that frame: CUDA events on the pool's stream
//             around the enqueued work (the CPU: the monotonic clock), median of `iters` after warm-up;
//   protocol  wall time of the session's real chunk loop in the server's mode (session.ts: 'enqueue' —
//             enqueueAttend calls, one flush per group; 'await' — one awaited attend per call: validation,
//             op building, enqueue, one synchronize, Promise resolution each) rewriting that chunk, median
//             of `repeats`; overhead = protocol / (calls × kernel) − 1; mainThreadMsPerCall = the main
//             thread's time per enqueued call ('enqueue'; what a call blocks the event loop);
//   modes     the same for both modes, so one run compares them ('enqueue' at the server's depth);
//   depths    'enqueue' at depth 1 and 2 (and the server's depth): what pipelining the groups buys;
//   roll      the same for new chunks past the window (the eviction shift included), when rolling;
//   video     a whole video from an empty cache (frames / chunkFrames chunks): attention-only latent
//             frames per second.
// The server path on top (gate, SSE, download + checksum) is the session's chunk time minus `protocol`
// (load.ts reports it).
import type { KVCachePool } from '../../lib';
import { runChunk, type CallMode, type SessionContext } from './session';

export interface ProfileResult {
  backend: string;
  layers: number; passes: number; callsPerChunk: number; chunkFrames: number;
  /** Frames the profiled chunk attends (its own included). */
  keyFrames: number;
  kernel: { msPerCall: number; msPerChunk: number; iters: number };
  protocol: ModeProfile & { mode: CallMode; repeats: number };
  modes: Record<CallMode, ModeProfile>;
  /** 'enqueue' at each depth measured (1, 2 and the server's), by depth. */
  depths: Record<string, ModeProfile>;
  roll: { chunkMs: number; overhead: number; evicts: boolean } | null;
  video: { frames: number; chunks: number; ms: number; chunkMs: number[]; latentFramesPerSecond: number };
}

export interface ModeProfile {
  chunkMs: number; msPerCall: number; overheadMsPerCall: number; overhead: number;
  /** Main-thread ms per call spent enqueueing ('enqueue'), median over the repeats; 0 for 'await'. */
  mainThreadMsPerCall: number;
  /** 'enqueue': calls per flush. */
  group: number | null;
  /** 'enqueue': groups in flight. */
  depth: number | null;
}

const median = (xs: number[]): number => {
  const s = xs.slice().sort((a, b) => a - b), m = s.length >> 1;
  return s.length % 2 ? s[m] : (s[m - 1] + s[m]) / 2;
};

export interface ProfileConfig { backend: string; frames: number; chunkFrames: number; passes: number; rolling: boolean }

export async function profileChunk(pool: KVCachePool, ctx: SessionContext, c: ProfileConfig, o: { repeats: number; iters: number }): Promise<ProfileResult> {
  const ctxNoGate = { ...ctx, gate: null };
  const cf = c.chunkFrames, videoChunks = c.frames / cf, calls = pool.layers.length * (c.passes + 1);
  pool.reset();
  try {
    const chunkMs: number[] = [];
    for (let i = 0; i < videoChunks; i++) chunkMs.push((await runChunk(pool, ctxNoGate, i, i * cf, c.passes, ctx.outs?.[0])).ms);
    const ms = chunkMs.reduce((a, b) => a + b, 0);
    const last = videoChunks - 1, frame = last * cf, keyFrames = pool.layers[0].framesCached;

    const { q, k, v } = ctx.inputs.get(c.passes, last);
    const times = pool.layers[0].time([[q, k, v]], { frame, warmup: Math.min(10, o.iters), iters: o.iters });
    const kernelMs = median(times);

    const mode: CallMode = ctx.mode ?? 'await', serverDepth = ctx.depth ?? 1;
    const measure = async (m: CallMode, depth: number): Promise<ModeProfile> => {
      const rewrite: number[] = [], main: number[] = [];
      for (let r = 0; r < o.repeats; r++) {
        const run = await runChunk(pool, { ...ctxNoGate, mode: m, depth }, last, frame, c.passes, ctx.outs?.[0]);
        rewrite.push(run.ms);
        main.push(run.enqueueMs / calls);
      }
      const chunk = median(rewrite);
      return {
        chunkMs: chunk, msPerCall: chunk / calls, overheadMsPerCall: chunk / calls - kernelMs, overhead: chunk / (calls * kernelMs) - 1,
        mainThreadMsPerCall: median(main), group: m === 'enqueue' ? ctx.group ?? 10 : null, depth: m === 'enqueue' ? depth : null,
      };
    };
    const modes = {} as Record<CallMode, ModeProfile>, depths: Record<string, ModeProfile> = {};
    for (const m of [mode, mode === 'await' ? 'enqueue' : 'await'] as CallMode[]) {
      if (m === 'await') {
        modes.await = await measure('await', 1);
        continue;
      }
      for (const d of [...new Set([serverDepth, 1, 2])]) depths[d] = await measure('enqueue', d);
      modes.enqueue = depths[serverDepth];
    }

    let roll: ProfileResult['roll'] = null;
    if (c.rolling) {
      const before = pool.layers[0].evictedFrames, news: number[] = [];
      for (let r = 1; r <= o.repeats; r++) news.push((await runChunk(pool, ctxNoGate, last + r, (last + r) * cf, c.passes, ctx.outs?.[0])).ms);
      const rm = median(news);
      roll = { chunkMs: rm, overhead: rm / (calls * kernelMs) - 1, evicts: pool.layers[0].evictedFrames > before };
    }
    return {
      backend: c.backend, layers: pool.layers.length, passes: c.passes, callsPerChunk: calls, chunkFrames: cf, keyFrames,
      kernel: { msPerCall: kernelMs, msPerChunk: calls * kernelMs, iters: o.iters },
      protocol: { mode, ...modes[mode], repeats: o.repeats }, modes, depths,
      roll,
      video: { frames: c.frames, chunks: videoChunks, ms, chunkMs, latentFramesPerSecond: c.frames / (ms / 1e3) },
    };
  } finally {
    pool.reset();
  }
}
