// KVCache: block-causal video decoding one chunk at a time (docs/ALGORITHMS.md §B.4). K/V of every frame
// seen so far are kept in tile order ([B][frames·h·w][H][D], contiguous BSHD; host arrays on the CPU,
// device memory on CUDA). step() appends one chunk and runs the chunk's C query tiles against all cached
// key tiles (qTile0 = first tile of the chunk, causalTiles = C): the output equals the chunk's rows of
// the one-shot block-causal forward.
import type { NativeAct, NativePlan, StageArgs } from './native';
import type { HostTensor } from './types';
import type { DeviceTensor } from './device';
import { chunkMaps } from './layout';
import { act, bshd, checkInputSets, checkQKV, offsetView, Scratch, stage, stageForTiming, timeInputSets, type AnyTensor, type CheckedQKV, type Staged } from './inputs';
import { runAsync, runSync, tLoop, WorkQueue, type Op } from './ops';
import { createPlan, videoLayout, type ResolvedOptions } from './options';
import { dtypeCode } from './tensor';
import { StagingPool } from './host';
import { checkOut, checkSignal, publishStart, throwIfAborted, workspaceBytes, type MemoryFigures } from './serving';
import { DeviceTensor as DeviceTensorClass, deviceBuffer } from './device';
import { checkObject } from './validate';
import type { StepOptions } from './types';
import { timeOptions, type TimeOptions } from './validate';

export class KVCache {
  private plan: NativePlan | null;
  private readonly cfg: ResolvedOptions;
  private readonly scratch: Scratch;
  private readonly queue = new WorkQueue();
  private readonly staging = new StagingPool();
  private closing = false;
  private closed: Promise<void> | null = null;
  private readonly gatherMap: Int32Array;   // chunk-local tile-order token → chunk token (identity when none)
  private readonly scatterMap: Int32Array | null;
  private readonly needsGather: boolean;
  private frames = 0;
  /** Frames per step (causal.chunkFrames). */
  readonly chunkFrames: number;
  /** Tokens per step (chunkFrames·height·width). */
  readonly chunkTokens: number;
  /** Capacity in frames (layout.frames). */
  readonly maxFrames: number;

  /** @internal Use MonarchAttention.createKVCache(). */
  constructor(cfg: ResolvedOptions) {
    this.cfg = cfg;
    const g = cfg.geometry, lay = videoLayout(cfg);
    this.chunkFrames = cfg.chunkFrames;
    this.chunkTokens = g.chunkTokens;
    this.maxFrames = lay.frames;
    const maps = chunkMaps(lay, cfg.chunkFrames);
    this.needsGather = maps.gather !== null;
    this.gatherMap = maps.gather ?? Int32Array.from({ length: this.chunkTokens }, (_, i) => i);
    this.scatterMap = maps.scatter;
    this.plan = createPlan(cfg, Math.min(cfg.queryTilesPerCall, g.chunkTiles), g.tilesPerSequence);
    this.scratch = new Scratch(cfg.backend === 'cuda');
  }

  /** Frames held in the cache. */
  get framesCached(): number {
    return this.frames;
  }

  private live(): NativePlan {
    if (this.plan === null || this.closing) throw new Error('KVCache was disposed');
    return this.plan;
  }

  private check(q: unknown, k: unknown, v: unknown): CheckedQKV {
    const cfg = this.cfg;
    const c = checkQKV(q, k, v, cfg.tensorLayout, cfg.dtype, 'options.dtype', {
      B: { value: cfg.batch, label: `batch ${cfg.batch}` },
      S: { value: this.chunkTokens, label: `chunk tokens ${this.chunkTokens} (chunkFrames·height·width)` },
      H: { value: cfg.heads, label: `heads ${cfg.heads}` },
      D: { value: cfg.headDim, label: `headDim ${cfg.headDim}` },
    }, true);
    if (c.device && cfg.backend !== 'cuda') {
      throw new TypeError("q, k, v are DeviceTensors but the backend is 'cpu'; pass host tensors or use backend 'cuda'");
    }
    this.ensureRoom();
    return c;
  }

  private ensureRoom(): void {
    if (this.frames >= this.maxFrames) {
      throw new Error(`KVCache is full: ${this.frames} of ${this.maxFrames} frames cached; call reset() to start a new video`);
    }
  }

  private ops(s: Staged): Op[] {
    const cfg = this.cfg, g = cfg.geometry;
    const { batch: B, heads: H, headDim: D } = cfg;
    const dt = dtypeCode(cfg.dtype);
    const P = g.paddedTokens, Tc = this.chunkTokens, C = g.chunkTiles;
    const chunk = this.frames / this.chunkFrames;
    const st = bshd(P, H, D);
    const cacheK = this.scratch.get('cache.k', cfg.dtype, B * P * H * D);
    const cacheV = this.scratch.get('cache.v', cfg.dtype, B * P * H * D);
    const ops: Op[] = [];
    // Append this chunk's k, v in tile order at token offset chunk·Tc (a strided copy when no reorder).
    const at = chunk * Tc * H * D;
    ops.push({ op: 'gather', args: { src: s.k, dst: act(offsetView(cacheK, cfg.dtype, at), st), B, H, D, map: this.gatherMap, dtype: dt } });
    ops.push({ op: 'gather', args: { src: s.v, dst: act(offsetView(cacheV, cfg.dtype, at), st), B, H, D, map: this.gatherMap, dtype: dt } });
    let q: NativeAct = s.q, o: NativeAct = s.o;
    if (this.needsGather) {
      const sc = bshd(Tc, H, D);
      q = act(this.scratch.get('tile.q', cfg.dtype, B * Tc * H * D), sc);
      o = act(this.scratch.get('tile.o', cfg.dtype, B * Tc * H * D), sc);
      ops.push({ op: 'gather', args: { src: s.q, dst: q, B, H, D, map: this.gatherMap, dtype: dt } });
    }
    const G = Math.min(cfg.queryTilesPerCall, C), tile = g.tokensPerTile;
    for (let a0 = 0; a0 < C; a0 += G) {
      // The chunk's query tiles [a0, a0 + G) against every cached key tile (all see the same keys).
      const at = (x: NativeAct): NativeAct => act(offsetView(x.data, cfg.dtype, a0 * tile * x.strides[1]), x.strides);
      const args: StageArgs = {
        q: at(q), k: act(cacheK, st), v: act(cacheV, st), o: at(o), Aq: G, Fk: (chunk + 1) * C, qTile0: chunk * C + a0,
        causalTiles: C, scale: cfg.scale, maxInvTemp: cfg.maxInvTemp,
      };
      ops.push(...tLoop(args, cfg.numIters));
    }
    if (this.needsGather) ops.push({ op: 'gather', args: { src: o, dst: s.o, B, H, D, map: this.scatterMap!, dtype: dt } });
    if (chunk === 0 && cfg.recompute === 'first-frame') {
      // Same rows as the one-shot forward: frame-0 queries against chunk 0's keys (any key order).
      ops.push({ op: 'dense', args: {
        q: s.q, k: act(cacheK, st), v: act(cacheV, st), o: s.o, B, H, D, Nq: g.frameTokens, Nk: Tc,
        q0: 0, causalChunk: 0, scale: cfg.scale, dtype: dt,
      } });
    }
    return ops;
  }

  /**
   * Appends one chunk (chunkFrames frames: q, k, v [B][chunkFrames·h·w][H][D] or BHSD) and returns the
   * chunk's output: the matching rows of a block-causal forward over all frames so far.
   */
  step(q: HostTensor, k: HostTensor, v: HostTensor, opts?: StepOptions): Promise<HostTensor>;
  step(q: DeviceTensor, k: DeviceTensor, v: DeviceTensor, opts?: StepOptions): Promise<DeviceTensor>;
  step(q: AnyTensor, k: AnyTensor, v: AnyTensor, opts?: StepOptions): Promise<AnyTensor>;
  async step(q: AnyTensor, k: AnyTensor, v: AnyTensor, opts?: StepOptions): Promise<AnyTensor> {
    const plan = this.live();
    const c = this.check(q, k, v);
    const { out, signal } = stepOptions(opts, q, c.device);
    throwIfAborted(signal);
    const cuda = this.cfg.backend === 'cuda';
    // As in MonarchAttention.forward: host inputs are secured at call time (lib/host.ts).
    const held = !cuda && !c.device ? this.staging.secure([q, k, v] as HostTensor[]) : null;
    const end = publishStart('step', this.cfg.backend, q, k, v, held?.copiedBytes ?? 0);
    if (held) [q, k, v] = held.tensors;
    return this.queue.run(async () => {
      try {
        throwIfAborted(signal);
        this.ensureRoom();  // again: steps queued before this one may have filled the cache
        const s = stage(cuda, this.scratch, this.cfg.tensorLayout, c, q, k, v, outDevice(out), outHost(out));
        await runAsync(plan, this.ops(s), cuda, signal);
        this.frames += this.chunkFrames;
        const result = await s.collectAsync();
        end();
        return result;
      } catch (e) {
        end(e);
        throw e;
      } finally {
        held?.release();
      }
    });
  }

  /** Synchronous twin of step(). */
  stepSync(q: HostTensor, k: HostTensor, v: HostTensor, opts?: StepOptions): HostTensor;
  stepSync(q: DeviceTensor, k: DeviceTensor, v: DeviceTensor, opts?: StepOptions): DeviceTensor;
  stepSync(q: AnyTensor, k: AnyTensor, v: AnyTensor, opts?: StepOptions): AnyTensor;
  stepSync(q: AnyTensor, k: AnyTensor, v: AnyTensor, opts?: StepOptions): AnyTensor {
    const plan = this.live();
    if (this.queue.busy) throw new Error('KVCache is busy with an async step(); await it before calling stepSync()');
    const c = this.check(q, k, v);
    const { out } = stepOptions(opts, q, c.device);
    const cuda = this.cfg.backend === 'cuda';
    const s = stage(cuda, this.scratch, this.cfg.tensorLayout, c, q, k, v, outDevice(out), outHost(out));
    runSync(plan, this.ops(s), cuda);
    this.frames += this.chunkFrames;
    return s.collect();
  }

  /**
   * Times the next step without taking it: `iters` steps after `warmup`, each appending its chunk at
   * the current position (framesCached stays where it is) and attending to every cached frame, rotating
   * over the input sets; one time in ms per step. Fill the cache with stepSync()/step() first to time
   * the step at a given depth. CUDA: events on the cache's stream around each step (host inputs are
   * uploaded once first, so only GPU work is timed). CPU: the monotonic clock around each step.
   */
  time(inputs: Array<[AnyTensor, AnyTensor, AnyTensor]>, opts: TimeOptions = {}): number[] {
    const plan = this.live();
    if (this.queue.busy) throw new Error('KVCache is busy with an async step(); await it before calling time()');
    const timing = timeOptions(opts);
    const sets = checkInputSets(inputs);
    const cuda = this.cfg.backend === 'cuda';
    return timeInputSets(plan, cuda, sets, timing, ([q, k, v], owned) => {
      const c = this.check(q, k, v);
      return this.ops(stageForTiming(cuda, this.scratch, this.cfg.tensorLayout, c, q, k, v, owned));
    });
  }

  /** Empties the cache (keeps its memory) to decode a new video. */
  reset(): void {
    this.live();
    if (this.queue.busy) throw new Error('KVCache is busy with an async step(); await it before calling reset()');
    this.frames = 0;
  }

  /** Bytes held by this cache (workspace, staging, scratch incl. cached keys/values; device bytes on CUDA). */
  get memory(): MemoryFigures {
    const c = this.cfg, g = c.geometry;
    const workspace = this.plan === null || this.closing ? 0 : workspaceBytes({
      batch: c.batch, heads: c.heads, headDim: c.headDim, b1: g.b1, b2: g.b2, maxAq: Math.min(c.queryTilesPerCall, g.chunkTiles),
      maxFk: g.tilesPerSequence, dtype: c.dtype, iterative: c.numIters >= 2,
    });
    const scratch = this.scratch.bytes;
    return { workspace, staging: this.staging.bytes, scratch, device: c.backend === 'cuda' ? workspace + scratch : 0 };
  }

  /**
   * Frees the cache memory and plan; later calls throw "KVCache was disposed". Idempotent. Steps made
   * before it still run to completion; the memory is freed after the last one (see close()).
   */
  dispose(): void {
    void this.close();
  }

  /** dispose(), resolving once in-flight work has finished and the memory is freed. */
  close(): Promise<void> {
    if (this.closed) return this.closed;
    this.closing = true;
    const free = (): void => {
      this.plan?.dispose();
      this.plan = null;
      this.scratch.dispose();
      this.staging.clear();
    };
    if (!this.queue.busy) {
      free();
      this.closed = Promise.resolve();
    } else {
      this.closed = this.queue.run(async () => free());
    }
    return this.closed;
  }

  [Symbol.dispose](): void { this.dispose(); }
  [Symbol.asyncDispose](): Promise<void> { return this.close(); }
}

function stepOptions(opts: unknown, q: AnyTensor, device: boolean): { out?: AnyTensor; signal?: AbortSignal } {
  if (opts === undefined) return {};
  const o = checkObject('step options', opts);
  return { out: checkOut(o.out, q, device), signal: checkSignal(o.signal) };
}
function outDevice(out: AnyTensor | undefined) {
  return out instanceof DeviceTensorClass ? deviceBuffer(out) : undefined;
}
function outHost(out: AnyTensor | undefined): HostTensor | undefined {
  return out === undefined || out instanceof DeviceTensorClass ? undefined : out;
}