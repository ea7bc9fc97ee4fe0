// MonarchAttention: options → one native Plan; forward = gather into tile order → THE T LOOP over the
// native R/L stage primitives → scatter back → optional first-frame recomputation (docs/ALGORITHMS.md §A.3,
// §B.2–§B.4, §C.4). The loop runs here in TypeScript; on CUDA it only enqueues (one sync at the end).
import './dispose';
import type { NativeAct, NativePlan, StageArgs } from './native';
import type { ForwardOptions, HostTensor, KVCacheOptions, KVCachePoolOptions, MonarchOptions } from './types';
import type { Geometry } from './layout';
import { validityMask } from './layout';
import { DeviceTensor } from './device';
import { act, bshd, checkInputSets, checkQKV, freezeTensor, offsetView, Scratch, stage, stageForTiming, timeInputSets, uploadQKV, type AnyTensor, type CheckedQKV, type Staged } from './inputs';
import { enqueue, runAsync, runSync, tLoop, WorkQueue, type Op } from './ops';
import { createPlan, resolveOptions, type ResolvedOptions } from './options';
import { denseEquivalentFlops, monarchFlops } from './flops';
import { dtypeCode } from './tensor';
import type { KVCache } from './kvcache';
import { checkCacheConfig, KVCachePool } from './kvpool';
import { StagingPool, type SecuredInputs } from './host';
import { checkOut, checkSignal, phaseClock, publishStart, throwIfAborted, traced, workspaceBytes, type MemoryFigures } from './serving';
import { checkCallEvents, withEvents, type CallEvents } from './stream';
import { checkTensorDevices } from './devices';
import { checkMask, snapshot, timeOptions, type TimeOptions } from './validate';

/** Rows [t0, t0 + n) of each batch of a [B][P] mask (the mask itself when that is all of it). */
function sliceMask(m: Uint8Array, B: number, P: number, t0: number, n: number): Uint8Array {
  if (t0 === 0 && n === P) return m;
  const out = new Uint8Array(B * n);
  for (let b = 0; b < B; b++) out.set(m.subarray(b * P + t0, b * P + t0 + n), b * n);
  return out;
}

/** Sub-quadratic Monarch attention (MonarchAttention, MonarchRT, VMonarch) with a fixed shape. */
export class MonarchAttention {
  /** 'cpu' | 'cuda', resolved from options.backend. */
  readonly backend: 'cpu' | 'cuda';
  /** Tokens per sequence (layout.length, or frames·height·width). */
  readonly numTokens: number;
  /** The tiled-Monarch parameters actually used. */
  readonly geometry: Readonly<Geometry>;
  /** The validated options with defaults filled in. */
  readonly config: Readonly<ResolvedOptions>;
  private plan: NativePlan | null;
  private readonly scratch: Scratch;
  private readonly queue = new WorkQueue();
  private readonly staging: StagingPool;
  private closing = false;
  private closed: Promise<void> | null = null;

  constructor(options: MonarchOptions) {
    const cfg = resolveOptions(options);
    this.config = Object.freeze(cfg);
    this.backend = cfg.backend;
    this.geometry = Object.freeze(cfg.geometry);
    this.numTokens = cfg.geometry.numTokens;
    // Staging copies and idle device outputs share what maxWorkspaceBytes leaves after the workspace.
    const rest = Math.max(0, cfg.maxWorkspaceBytes - cfg.workspaceBytes);
    this.staging = new StagingPool(rest);
    this.plan = createPlan(cfg, cfg.queryTilesPerCall, cfg.geometry.tilesPerSequence);
    this.scratch = new Scratch(cfg.backend === 'cuda', rest, cfg.device, cfg.hostOutputs === 'pooled');
  }

  private live(): NativePlan {
    if (this.plan === null || this.closing) throw new Error('MonarchAttention was disposed');
    return this.plan;
  }

  /** FLOPs of one forward, all batches and heads (docs/ALGORITHMS.md §A.7 / §B.7; + 4·hw·Nk·d for recompute). */
  flops(): number {
    this.live();
    const c = this.config;
    return monarchFlops(c.geometry, c.headDim, c.numIters, c.batch, c.heads, c.recompute === 'first-frame');
  }

  /** FLOPs of exact attention with the same pattern (4·N²·d, or block-causal), all batches and heads. */
  denseFlops(): number {
    this.live();
    const c = this.config;
    return denseEquivalentFlops(c.geometry, c.headDim, c.batch, c.heads);
  }

  private check(q: unknown, k: unknown, v: unknown, opts: unknown): { c: CheckedQKV; keyMask?: Uint8Array; out?: AnyTensor; signal?: AbortSignal; events?: CallEvents } {
    const cfg = this.config;
    const c = checkQKV(q, k, v, cfg.tensorLayout, cfg.dtype, 'options.dtype', {
      B: { value: cfg.batch, label: `batch ${cfg.batch}` },
      S: { value: this.numTokens, label: `numTokens ${this.numTokens}` },
      H: { value: cfg.heads, label: `heads ${cfg.heads}` },
      D: { value: cfg.headDim, label: `headDim ${cfg.headDim}` },
    }, true);
    if (c.device && this.backend !== 'cuda') {
      throw new TypeError("q, k, v are DeviceTensors but the backend is 'cpu'; pass host tensors or use backend 'cuda'");
    }
    let keyMask: Uint8Array | undefined, out: AnyTensor | undefined, signal: AbortSignal | undefined, events: CallEvents | undefined;
    if (opts !== undefined) {
      const o = snapshot('forward options', opts, ['keyMask', 'out', 'signal', 'waitEvent', 'recordEvent']);
      events = checkCallEvents(o, this.backend === 'cuda');
      if (o.keyMask !== undefined) {
        if (this.geometry.kind !== 'sequence') throw new RangeError('keyMask is only supported for sequence layouts, received a video layout');
        keyMask = checkMask('keyMask', o.keyMask, cfg.batch * this.numTokens, 'batch·length');
      }
      out = checkOut(o.out, q as AnyTensor, c.device, [['q', q as AnyTensor], ['k', k as AnyTensor], ['v', v as AnyTensor]]);
      signal = checkSignal(o.signal);
    }
    if (c.device) {
      checkTensorDevices('MonarchAttention', cfg.device, [['q', q as DeviceTensor], ['k', k as DeviceTensor], ['v', v as DeviceTensor], ['out', out as DeviceTensor | undefined]]);
    }
    return { c, keyMask, out, signal, events };
  }

  /** The op list of one forward on staged inputs (CUDA host tensors: uploads first, the download last). */
  private ops(s: Staged, keyMask?: Uint8Array): Op[] {
    const cfg = this.config, g = cfg.geometry;
    const { batch: B, heads: H, headDim: D } = cfg;
    const dt = dtypeCode(cfg.dtype);
    const ops: Op[] = [...s.pre];
    let q: NativeAct = s.q, k: NativeAct = s.k, v: NativeAct = s.v, o: NativeAct = s.o;
    if (g.needsGather) {
      // Tile-order copies [B][paddedTokens][H][D] (pads zero), include/monarch/monarch.h "Tile order".
      const n = B * g.paddedTokens * H * D, st = bshd(g.paddedTokens, H, D);
      const tile = (key: string): NativeAct => act(this.scratch.get(key, cfg.dtype, n), st);
      const [tq, tk, tv] = [tile('tile.q'), tile('tile.k'), tile('tile.v')];
      for (const [src, dst] of [[s.q, tq], [s.k, tk], [s.v, tv]]) {
        ops.push({ op: 'gather', args: { src, dst, B, H, D, map: g.gatherMap!, dtype: dt } });
      }
      [q, k, v, o] = [tq, tk, tv, tile('tile.o')];
    }
    const valid = validityMask(g, B, keyMask) ?? undefined;
    const A = g.tilesPerSequence, C = g.chunkTiles, G = cfg.queryTilesPerCall, tile = g.tokensPerTile;
    for (let a0 = 0; a0 < A; a0 += G) {
      // Query tiles [a0, a0 + Aq) against the key tiles they may see (all, or up to their chunk's end).
      const Aq = Math.min(G, A - a0);
      const Fk = C > 0 ? Math.min(A, (Math.floor((a0 + Aq - 1) / C) + 1) * C) : A;
      const at = (x: NativeAct): NativeAct => act(offsetView(x.data, cfg.dtype, a0 * tile * x.strides[1]), x.strides);
      const args: StageArgs = {
        q: at(q), k, v, o: at(o), Aq, Fk, qTile0: a0, causalTiles: C, scale: cfg.scale, maxInvTemp: cfg.maxInvTemp,
        keyValid: valid && sliceMask(valid, B, g.paddedTokens, 0, Fk * tile),
        queryValid: valid && sliceMask(valid, B, g.paddedTokens, a0 * tile, Aq * tile),
      };
      ops.push(...tLoop(args, cfg.numIters));
    }
    if (g.needsGather) ops.push({ op: 'gather', args: { src: o, dst: s.o, B, H, D, map: g.scatterMap!, dtype: dt } });
    if (cfg.recompute === 'first-frame') {
      // §C.4 (a): exact attention for the h·w frame-0 queries against the keys they see (chunk 0 when
      // causal), overwriting those output rows. Frame 0 is the first h·w tokens in input order.
      ops.push({ op: 'dense', args: {
        q: s.q, k: s.k, v: s.v, o: s.o, B, H, D, Nq: g.frameTokens, Nk: g.chunkTokens > 0 ? g.chunkTokens : g.numTokens,
        q0: 0, causalChunk: 0, scale: cfg.scale, dtype: dt,
      } });
    }
    ops.push(...s.post);
    return ops;
  }

  /**
   * One forward. q, k, v: [batch][numTokens][heads][headDim] (BSHD) or [batch][heads][numTokens][headDim]
   * (BHSD), dtype options.dtype; host tensors → HostTensor, DeviceTensors → DeviceTensor (CUDA).
   * Work runs off the event loop; concurrent calls on one instance are queued.
   */
  forward(q: HostTensor, k: HostTensor, v: HostTensor, opts?: ForwardOptions): Promise<HostTensor>;
  forward(q: DeviceTensor, k: DeviceTensor, v: DeviceTensor, opts?: ForwardOptions): Promise<DeviceTensor>;
  forward<T extends AnyTensor>(q: T, k: T, v: T, opts?: ForwardOptions): Promise<AnyTensor>;
  async forward(q: AnyTensor, k: AnyTensor, v: AnyTensor, opts?: ForwardOptions): Promise<AnyTensor> {
    const clock = phaseClock();  // main-thread time by phase, only while someone listens (lib/serving.ts)
    const plan = this.live();
    [q, k, v] = [freezeTensor(q), freezeTensor(k), freezeTensor(v)];  // each read once
    const { c, keyMask, out, signal, events } = this.check(q, k, v, opts);
    throwIfAborted(signal);
    const cuda = this.backend === 'cuda';
    clock.lap('validate');
    // Host inputs are read after this returns (CPU: on libuv workers; CUDA: by copies on the stream):
    // secure them now (lib/host.ts), so the caller may transfer, detach or overwrite its arrays at once.
    // Large ordinary inputs are copied in slices across event-loop turns (hostStagingSliceBytes); the
    // call holds its place in the queue (busy) from now on, and enqueues nothing before the last slice.
    const held = !c.device
      ? this.staging.secure([q, k, v] as HostTensor[], cuda, { sliceBytes: this.config.hostStagingSliceBytes, signal })
      : null;
    if (held) [q, k, v] = held.tensors;
    const mask = keyMask && keyMask.slice();
    clock.lap('stage');
    const end = publishStart('forward', this.backend, [q, k, v], held?.copiedBytes ?? 0, clock);
    return this.queue.run(() => traced(end, async () => {
      // First, always: no path may give the staging back while a slice could still write it.
      // Only a sliced staging job waits: an `await` always yields, and an idle instance must enqueue its
      // GPU work (and its recordEvent) before forward() returns (docs/API.md "Stream interop").
      let early = false;  // the inputs' uploads (and the call's waitEvent) are already enqueued
      if (held?.sliced) {
        // CUDA: each input's upload is enqueued as soon as that input is staged, so the copies of q and
        // k to the device overlap the staging of the inputs after them. This call heads the instance's
        // queue here (every earlier call has settled), so the scratch buffers are free.
        if (cuda && !c.device) {
          await this.uploadEarly(held, plan, q as HostTensor, k as HostTensor, v as HostTensor, events, signal);
          early = true;
        }
        await held.ready;
        clock.add('stage', held.sliced.ms);
      }
      clock.start();  // a queued call starts here; the wait before is not main-thread work
      throwIfAborted(signal);
      // Disposed between the checks above and here (a diagnostics subscriber of the start event can).
      if (this.plan === null) throw new Error('MonarchAttention was disposed');
      const staged = stage(cuda, this.scratch, this.config.tensorLayout, c, q, k, v, out);
      // (early: the same scratch buffers, already filled in stream order; the wait already enqueued)
      const s = early ? { ...staged, pre: [] } : staged;
      await runAsync(plan, withEvents(this.ops(s, mask), early ? { recordEvent: events?.recordEvent } : events), cuda, signal,
        () => clock.lap('enqueue'));
      clock.start();
      const result = s.collectAsync();
      clock.lap('complete');
      const o = await result;
      clock.start();  // the rest up to the end event is charged to 'complete' there
      return o;
    }, () => held?.release()));
  }

  /**
   * forward()'s sliced staging on CUDA host inputs: enqueues the call's waitEvent (if any), then each
   * input's upload into its scratch buffer (uploadQKV: the buffers stage() uses) once that input's last
   * slice is in. A failure or abort stops before
   * the next upload and rejects at once: an upload already enqueued only fills this instance's scratch,
   * which the next call overwrites in stream order, and the native side keeps the staging memory it reads
   * alive until the stream has passed it.
   */
  private async uploadEarly(held: SecuredInputs, plan: NativePlan, q: HostTensor, k: HostTensor, v: HostTensor,
    events: CallEvents | undefined, signal: AbortSignal | undefined): Promise<void> {
    const pre: Op[] = [];
    uploadQKV(this.scratch, q, k, v, pre);
    if (events?.waitEvent !== undefined) enqueue(plan, [{ op: 'waitEvent', event: events.waitEvent }]);
    for (let i = 0; i < 3; i++) {
      await held.readyOf(i);
      throwIfAborted(signal);
      enqueue(plan, [pre[i]]);
    }
  }

  /** Synchronous twin of forward() (blocks the event loop). */
  forwardSync(q: HostTensor, k: HostTensor, v: HostTensor, opts?: ForwardOptions): HostTensor;
  forwardSync(q: DeviceTensor, k: DeviceTensor, v: DeviceTensor, opts?: ForwardOptions): DeviceTensor;
  forwardSync<T extends AnyTensor>(q: T, k: T, v: T, opts?: ForwardOptions): AnyTensor;
  forwardSync(q: AnyTensor, k: AnyTensor, v: AnyTensor, opts?: ForwardOptions): AnyTensor {
    const plan = this.live();
    if (this.queue.busy) throw new Error('MonarchAttention is busy with an async forward(); await it before calling forwardSync()');
    [q, k, v] = [freezeTensor(q), freezeTensor(k), freezeTensor(v)];  // each read once
    const { c, keyMask, out, events, signal } = this.check(q, k, v, opts);
    throwIfAborted(signal);  // a sync call cannot be interrupted, but an already-aborted signal is honoured
    const cuda = this.backend === 'cuda';
    // CUDA host inputs go through pinned staging (the upload ops copy from it); the CPU reads them in place.
    const held = cuda && !c.device ? this.staging.secure([q, k, v] as HostTensor[], true) : null;
    if (held) [q, k, v] = held.tensors;
    try {
      const s = stage(cuda, this.scratch, this.config.tensorLayout, c, q, k, v, out);
      runSync(plan, withEvents(this.ops(s, keyMask), events), cuda);
      return s.collect();
    } finally {
      held?.release();
    }
  }

  /**
   * Times `iters` forwards after `warmup`, rotating over the input sets; one time in ms per iteration.
   * CUDA: events on the instance's stream around each forward (host inputs are uploaded once first, so
   * only the GPU work is timed). CPU: the monotonic clock around each synchronous forward.
   */
  time(inputs: Array<[AnyTensor, AnyTensor, AnyTensor]>, opts: TimeOptions = {}): number[] {
    const plan = this.live();
    if (this.queue.busy) throw new Error('MonarchAttention is busy with an async forward(); await it before calling time()');
    const timing = timeOptions(opts);
    const sets = checkInputSets(inputs);
    const cuda = this.backend === 'cuda';
    return timeInputSets(plan, cuda, sets, timing, ([q, k, v], owned) => {
      const { c } = this.check(q, k, v, undefined);
      return this.ops(stageForTiming(cuda, this.scratch, this.config.tensorLayout, c, q, k, v, owned));
    });
  }

  /**
   * A KV cache for block-causal video decoding (§B.4); needs a video layout with `causal`. Its own plan
   * and memory (a one-layer KVCachePool); dispose it separately. Options: a rolling window (docs/API.md).
   */
  createKVCache(opts?: KVCacheOptions): KVCache {
    this.live();
    checkCacheConfig(this.config, 'createKVCache');
    return new KVCachePool(this.config, opts, true).layers[0];
  }

  /** The KV caches of `layers` layers of one session in one allocation sharing one plan (docs/API.md). */
  createKVCachePool(opts: KVCachePoolOptions): KVCachePool {
    this.live();
    checkCacheConfig(this.config, 'createKVCachePool');
    return new KVCachePool(this.config, opts, false);
  }

  /** The GPU of the instance (MonarchOptions.device; 0 on the CPU backend). */
  get device(): number {
    return this.config.device;
  }

  /**
   * CUDA: the stream the instance enqueues on (MonarchOptions.stream, or its own) as a bigint
   * cudaStream_t, for CudaEvent.record / wait and other CUDA code; null on the CPU backend.
   */
  get stream(): bigint | null {
    return this.live().stream;
  }

  /** Bytes held by this instance (workspace, staging, scratch; device bytes on CUDA). */
  get memory(): MemoryFigures {
    const c = this.config, g = c.geometry;
    const workspace = this.plan === null || this.closing ? 0 : workspaceBytes({
      batch: c.batch, heads: c.heads, headDim: c.headDim, b1: g.b1, b2: g.b2, maxAq: c.queryTilesPerCall,
      maxFk: g.tilesPerSequence, dtype: c.dtype, iterative: c.numIters >= 2,
    });
    const scratch = this.scratch.bytes;
    return { workspace, staging: this.staging.bytes + this.scratch.hostBytes, scratch, cache: 0, device: this.backend === 'cuda' ? workspace + scratch : 0 };
  }

  /**
   * Frees the plan (workspace, stream) and scratch buffers; later calls throw "MonarchAttention was
   * disposed". Idempotent. Calls made before it still run to completion (in order); the memory is
   * freed after the last one (close() returns a Promise of that moment).
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
