// KVCachePool: the KV caches of every layer of one session in one allocation (K and V of all layers,
// host memory on the CPU backend, device memory on CUDA), sharing one plan (workspace and stream), one
// set of staging buffers and one queue — a model's layers run one after the other, so one workspace
// serves them all. Its size is known before anything is allocated (bytesFor) and can be capped. The pool
// owns the memory: disposing it (dispose / close / Symbol.dispose) frees everything once the calls queued
// before it have finished; a createKVCache() cache is its one-layer pool's handle.
import './dispose';
import { native, type NativeData, type NativeDeviceBuffer } from './native';
import type { KVCacheBytes, KVCacheOptions, KVCachePoolOptions, MonarchOptions } from './types';
import { bufferView } from './device';
import { Scratch } from './inputs';
import { KVCache, type CacheCore, type CacheOwner, type FlushOptions } from './kvcache';
import { describeBatch, EnqueueLedger } from './kvenqueue';
import { addonArray, StagingPool } from './host';
import type { MemoryFigures } from './serving';
import type { CacheWindow } from './kvwindow';
import { chunkMaps } from './layout';
import { WorkQueue } from './ops';
import { checkBudget, createPlan, defaultMemoryBudget, resolveOptions, videoLayout, type ResolvedOptions } from './options';
import { dtypeSize } from './tensor';
import { checkInt, isErrorLike, show, snapshot } from './validate';
import { abortError, checkSignal, throwIfAborted } from './serving';

const MAX_LAYERS = 4096;
const MAX_WINDOW_FRAMES = 65536;

/** Checks that a resolved config can have a KV cache (video + causal). */
export function checkCacheConfig(cfg: ResolvedOptions, what: string): void {
  if (cfg.geometry.kind !== 'video' || cfg.chunkFrames === 0) {
    throw new Error(`${what} needs a video layout with causal: { chunkFrames }, received layout.kind ${show(cfg.geometry.kind)}${cfg.chunkFrames === 0 ? ' without causal' : ''}`);
  }
}

/** The window of a cache from its options (RangeError / TypeError naming the option). */
export function cacheWindow(cfg: ResolvedOptions, o: Record<string, unknown>): CacheWindow {
  const cf = cfg.chunkFrames, F = videoLayout(cfg).frames;
  const multiple = (name: string, x: number): void => {
    if (x % cf !== 0) throw new RangeError(`${name} ${x} must be a multiple of causal.chunkFrames ${cf}`);
  };
  if (o.localAttnFrames === undefined) {
    if (o.sinkFrames !== undefined && o.sinkFrames !== 0) {
      throw new RangeError(`sinkFrames ${show(o.sinkFrames)} needs localAttnFrames (a rolling window); without one every frame is kept`);
    }
    return { chunkFrames: cf, sink: 0, window: Infinity, slots: F / cf, positions: F / cf, rolling: false };
  }
  const sink = o.sinkFrames === undefined ? 0 : checkInt('sinkFrames', o.sinkFrames, 0, MAX_WINDOW_FRAMES);
  multiple('sinkFrames', sink);
  const win = checkInt('localAttnFrames', o.localAttnFrames, sink + cf, MAX_WINDOW_FRAMES);
  multiple('localAttnFrames', win);
  return { chunkFrames: cf, sink: sink / cf, window: win / cf, slots: win / cf, positions: Infinity, rolling: true };
}

function poolOptions(opts: unknown, needLayers: boolean): { layers: number; maxBytes: number; o: Record<string, unknown> } {
  const o = snapshot('KV cache options', opts, needLayers ? ['layers', 'localAttnFrames', 'sinkFrames', 'maxBytes'] : ['localAttnFrames', 'sinkFrames', 'maxBytes'], true);
  const layers = needLayers ? checkInt('layers', o.layers, 1, MAX_LAYERS) : 1;
  let maxBytes = Infinity;
  if (o.maxBytes !== undefined) {
    if (typeof o.maxBytes !== 'number' || Number.isNaN(o.maxBytes)) throw new TypeError(`maxBytes must be a number, received ${show(o.maxBytes)}`);
    if (!(o.maxBytes > 0)) throw new RangeError(`maxBytes ${o.maxBytes} must be positive`);
    maxBytes = o.maxBytes;
  }
  return { layers, maxBytes, o };
}

function bytesOf(cfg: ResolvedOptions, win: CacheWindow, layers: number): KVCacheBytes {
  const g = cfg.geometry, es = dtypeSize(cfg.dtype);
  const { batch: B, heads: H, headDim: D } = cfg;
  const chunkElems = B * g.chunkTokens * H * D;
  const cache = 2 * layers * win.slots * chunkElems * es;
  // csrc/binding_workspace.cc: aL, y (+ aR when T ≥ 2) of B·H·maxAq·maxFk·b1·b2·D storage elements,
  // cL (+ cR) of B·H·maxAq·maxFk·b1·b2 floats.
  const pairs = B * H * Math.min(cfg.queryTilesPerCall, g.chunkTiles) * win.slots * g.chunkTiles * g.b1 * g.b2;
  const iterative = cfg.numIters >= 2 ? 1 : 0;
  const workspace = pairs * D * es * (2 + iterative) + pairs * 4 * (1 + iterative);
  // stage.q/k/v/o (CUDA host inputs) and tile.q/o (reordered tilings): chunk-sized buffers.
  const staging = (cfg.backend === 'cuda' ? 4 : 0) * chunkElems * es + (g.needsGather ? 2 : 0) * chunkElems * es;
  return { cache, workspace, staging, total: cache + workspace + staging };
}

export class KVCachePool implements CacheOwner {
  /** One KVCache per layer, all sharing this pool's memory, plan and queue. */
  readonly layers: readonly KVCache[];
  /** What this pool allocated (staging: at most, on first use). */
  readonly bytes: Readonly<KVCacheBytes>;
  private readonly core: CacheCore;
  private storage: NativeData | null;
  private closed: Promise<void> | null = null;

  /**
   * Bytes a pool for `options` (the MonarchAttention options) and `pool` would allocate, computed without
   * allocating anything. Throws the same option errors as createKVCachePool.
   */
  static bytesFor(options: MonarchOptions, pool: KVCachePoolOptions): KVCacheBytes {
    const cfg = resolveOptions(options);
    checkCacheConfig(cfg, 'KVCachePool.bytesFor');
    const { layers, o } = poolOptions(pool, true);
    return bytesOf(cfg, cacheWindow(cfg, o), layers);
  }

  /** @internal Use MonarchAttention.createKVCachePool() / createKVCache(). */
  constructor(cfg: ResolvedOptions, opts: KVCachePoolOptions | KVCacheOptions | undefined, single: boolean) {
    const { layers, maxBytes, o } = poolOptions(opts, !single);
    const win = cacheWindow(cfg, o);
    const bytes = bytesOf(cfg, win, layers);
    if (bytes.total > maxBytes) {
      throw new RangeError(`KV cache needs ${bytes.total} bytes (cache ${bytes.cache} + workspace ${bytes.workspace} + staging ${bytes.staging}), over maxBytes ${maxBytes}`);
    }
    // The instance-wide budget too (MonarchOptions.maxWorkspaceBytes, default the machine's / GPU's memory).
    const dflt = defaultMemoryBudget(cfg.backend, cfg.device);
    checkBudget(`KV cache (cache ${bytes.cache} + workspace ${bytes.workspace} + staging ${bytes.staging} bytes)`, bytes.total,
      cfg.maxWorkspaceBytes, cfg.maxWorkspaceBytes !== dflt.bytes, dflt.source, 'lower layers, localAttnFrames, layout.frames, batch or heads, or raise maxWorkspaceBytes');
    this.bytes = Object.freeze(bytes);
    // Staging copies of ordinary-ArrayBuffer inputs and idle device outputs share what the budget leaves.
    const rest = Math.max(0, cfg.maxWorkspaceBytes - bytes.total);
    const g = cfg.geometry, cuda = cfg.backend === 'cuda';
    const maps = chunkMaps(videoLayout(cfg), cfg.chunkFrames);
    const plan = createPlan(cfg, Math.min(cfg.queryTilesPerCall, g.chunkTiles), win.slots * g.chunkTiles);
    const layerElems = win.slots * cfg.batch * g.chunkTokens * cfg.heads * cfg.headDim;
    try {
      // CPU: addon memory, so the workers read and write it in place (lib/host.ts).
      this.storage = cuda ? native().DeviceBuffer.alloc(bytes.cache, cfg.device) : addonArray(cfg.dtype, 2 * layers * layerElems);
    } catch (e) {
      plan.dispose();
      throw new Error(`KV cache: allocating ${bytes.cache} bytes of ${cuda ? 'device' : 'host'} memory failed: ${(e as Error).message}`);
    }
    this.core = {
      cfg, win, plan, closing: false, scratch: new Scratch(cuda, rest, cfg.device, cfg.hostOutputs === 'pooled'), staging: new StagingPool(rest), queue: new WorkQueue(),
      ledger: new EnqueueLedger(),
      gatherMap: maps.gather ?? Int32Array.from({ length: g.chunkTokens }, (_, i) => i),
      scatterMap: maps.scatter, needsGather: maps.gather !== null, identity: new Map(),
      disposedMessage: single ? 'KVCache was disposed' : 'KVCache was disposed (its KVCachePool was disposed)',
    };
    const view = (i: number): NativeData => {
      const s = this.storage!;
      if (!cuda) return (s as Float32Array | Uint16Array).subarray(i * layerElems, (i + 1) * layerElems);
      const bytesPer = layerElems * dtypeSize(cfg.dtype);
      return bufferView(s as NativeDeviceBuffer, i * bytesPer, bytesPer);
    };
    const caches: KVCache[] = [];
    for (let l = 0; l < layers; l++) caches.push(new KVCache(this.core, view(2 * l), view(2 * l + 1), l, this, single));
    this.layers = Object.freeze(caches);
  }

  /** CUDA: the stream the pool's caches enqueue on (MonarchOptions.stream, or its own) as a bigint; null on the CPU. */
  get stream(): bigint | null {
    if (this.disposed) throw new Error('KVCachePool was disposed');
    return this.core.plan!.stream;
  }

  /** True after dispose() / close() (the memory may still be in use by calls queued before it). */
  get disposed(): boolean {
    return this.core.closing || this.core.plan === null;
  }

  /**
   * Bytes held now: cache (K/V of every layer), workspace, staging (host copies of ordinary-ArrayBuffer
   * inputs), scratch (chunk-sized buffers), device (their device part; 0 on the CPU). All 0 once disposed.
   */
  get memory(): MemoryFigures {
    if (this.disposed) return { workspace: 0, staging: 0, scratch: 0, cache: 0, device: 0 };
    const { workspace, cache } = this.bytes;
    const scratch = this.core.scratch.bytes;
    const device = this.core.cfg.backend === 'cuda' ? workspace + scratch + cache : 0;
    return { workspace, staging: this.core.staging.bytes + this.core.scratch.hostBytes, scratch, cache, device };
  }

  /** Empties every layer (keeps the memory): the pool serves a new session without reallocating. */
  reset(): void {
    if (this.disposed) throw new Error('KVCachePool was disposed');
    if (this.core.queue.busy) throw new Error('KVCachePool is busy with an async call; await it before calling reset()');
    if (this.core.ledger.pending) throw new Error('KVCachePool has enqueued calls in flight; await pool.flush() before calling reset()');
    for (const c of this.layers) c.reset();
  }

  /**
   * Waits for the calls enqueued on the pool (KVCache.enqueueAttend / enqueueWrite of any layer) before
   * this call, and for no later one: CUDA records an event on the pool's stream now (from a small pool of
   * reused events) and waits for it on a libuv worker, so calls enqueued while it waits (the next group
   * of a pipelined session) do not delay it; the CPU ran them when they were made. Rejects when their GPU
   * work failed, naming the calls it covered, and marks those layers unusable until reset(). Flushes may
   * overlap and settle in call order (each covers the calls before it); awaited and sync calls, time()
   * and reset() throw until every flush has settled.
   */
  flush(opts?: FlushOptions): Promise<void> {
    let signal: AbortSignal | undefined;
    try {
      signal = checkSignal(snapshot('flush options', opts, ['signal'], true).signal);
      if (this.disposed) throw new Error(this.core.disposedMessage);
    } catch (e) {
      return Promise.reject(e);
    }
    const core = this.core, ledger = core.ledger;
    if (!ledger.pending) return signal?.aborted ? Promise.reject(abortError(signal)) : Promise.resolve();
    const batch = ledger.begin();
    const plan = core.plan!;
    // CUDA: a fence at this point of the stream (after the plan's earlier waits). CPU: the enqueued calls
    // ran when they were made; earlier flushes settle first (microtask order).
    const wait = core.cfg.backend === 'cuda' ? plan.fenceAsync() : Promise.resolve();
    return wait.then(() => {
      ledger.end();
      throwIfAborted(signal);
    }, (e: unknown) => {
      ledger.end();
      const message = `KVCachePool.flush: the GPU work of ${describeBatch(batch)} failed: ${isErrorLike(e) ? e.message : String(e)}`;
      for (const fail of batch.fails) fail(message);
      const err = new Error(message);
      (err as Error & { cause?: unknown }).cause = e;
      throw err;
    });
  }

  /**
   * Frees the memory and the plan; later calls on the pool's caches throw "KVCache was disposed".
   * Idempotent. Calls queued before it still run (in order); the memory is freed after the last one
   * (close() resolves then).
   */
  dispose(): void {
    void this.close();
  }

  /** dispose(), resolving once the calls queued before it have finished and the memory is freed. */
  close(): Promise<void> {
    if (this.closed) return this.closed;
    const core = this.core;
    core.closing = true;
    const free = (): void => {
      core.plan?.dispose();
      core.plan = null;
      core.scratch.dispose();
      core.staging.clear();
      const s = this.storage;
      this.storage = null;
      if (s && !ArrayBuffer.isView(s)) (s as NativeDeviceBuffer).dispose();
    };
    if (!core.queue.busy && core.ledger.flushing === 0) {
      free();  // enqueued work not flushed yet completes first: the plan synchronises its stream before freeing
      this.closed = Promise.resolve();
    } else if (core.ledger.flushing === 0) {
      this.closed = core.queue.run(async () => free());
    } else {
      // Flushes in flight wait on the plan: free after them (no async call can be queued meanwhile).
      this.closed = core.ledger.idle().then(free);
    }
    return this.closed;
  }

  [Symbol.dispose](): void { this.dispose(); }
  [Symbol.asyncDispose](): Promise<void> { return this.close(); }
}
