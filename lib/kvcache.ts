// KVCache: one layer's K/V for block-causal video decoding (docs/ALGORITHMS.md §B.4) following the
// Self-Forcing protocol: write a chunk's K/V at an explicit frame position (overwriting that slice),
// attend a chunk of queries over the cache up to its own end (optionally writing first), with an
// optional rolling window whose first sinkFrames are never evicted (lib/kvwindow.ts). K/V are kept in
// tile order ([B][slots·chunkTokens][H][D], contiguous BSHD) in the pool's one allocation (host memory
// on the CPU, device memory on CUDA). An attend runs the chunk's C query tiles against the key tiles of
// its window — always the physical prefix of the slots — so its output equals the chunk's rows of the
// one-shot block-causal forward over the frames it sees.
import { checkCallEvents, withEvents, type CallEvents } from './stream';
import { checkTensorDevices } from './devices';
import './dispose';
import type { NativeAct, NativeData, NativePlan, StageArgs } from './native';
import type { HostTensor, StepOptions } from './types';
import { DeviceTensor } from './device';
import { act, bshd, checkInputSets, checkOne, checkQKV, freezeTensor, offsetView, Scratch, stageForTiming, stageOutput, timeInputSets, type AnyTensor, type StagedOutput } from './inputs';
import { stageInput } from './kvstage';
import type { StagingPool } from './host';
import { checkOut, checkSignal, publishStart, throwIfAborted, traced, type CallEvent, type MemoryFigures } from './serving';
import { chunkOf, planAttend, planWrite, shiftPieces, type CacheState, type CacheWindow, type WritePlan } from './kvwindow';
import { enqueue, runAsync, runSync, tLoop, WorkQueue, type Op } from './ops';
import type { EnqueueLedger } from './kvenqueue';
import type { ResolvedOptions } from './options';
import { actStrides, dtypeCode, type ActDims } from './tensor';
import { isErrorLike, snapshot, TIME_OPTION_KEYS, timeOptions, type TimeOptions } from './validate';

/** @internal What the caches of one pool share: options, window, one plan (workspace, stream), scratch, staging, queue. */
export interface CacheCore {
  cfg: ResolvedOptions;
  win: CacheWindow;
  plan: NativePlan | null;
  /** Set by close()/dispose(): new calls throw while queued ones finish; the plan is freed after them. */
  closing: boolean;
  scratch: Scratch;
  /** Copies of ordinary-ArrayBuffer host inputs, made at call time (lib/host.ts). */
  staging: StagingPool;
  queue: WorkQueue;
  /** Enqueued calls not yet flushed and flushes in flight (lib/kvenqueue.ts). */
  ledger: EnqueueLedger;
  /** Chunk-local tile-order token → chunk token (identity when no reorder). */
  gatherMap: Int32Array;
  scatterMap: Int32Array | null;
  needsGather: boolean;
  /** Identity maps by length (slot copies). */
  identity: Map<number, Int32Array>;
  /** Error message once the plan is gone. */
  disposedMessage: string;
}

export interface AttendOptions {
  /** The query chunk's first frame (a multiple of chunkFrames). */
  frame: number;
  /** Write this chunk's k, v at `frame` first (overwriting), as step() and every Self-Forcing pass do. */
  write?: { k: AnyTensor; v: AnyTensor };
  /**
   * Write the output here (q's shape and dtype; a DeviceTensor for device q, a HostTensor for host q; no
   * memory shared with q, k, v) instead of a new tensor; returned by the call (as forward()'s `out`).
   */
  out?: AnyTensor;
  /** Aborts the call (as ForwardOptions.signal; what an abort leaves in the cache: docs/API.md). */
  signal?: AbortSignal;
  /** CUDA only: a cudaEvent_t the call waits for on the GPU first (as ForwardOptions.waitEvent). */
  waitEvent?: bigint;
  /** CUDA only: a cudaEvent_t recorded after the call's last op (as ForwardOptions.recordEvent). */
  recordEvent?: bigint;
}

export interface WriteOptions {
  /** The chunk's first frame (a multiple of chunkFrames, at most nextFrame). */
  frame: number;
  /** Aborts the call before it starts (a write that has started completes). */
  signal?: AbortSignal;
  /** CUDA only: a cudaEvent_t the call waits for on the GPU first (as ForwardOptions.waitEvent). */
  waitEvent?: bigint;
  /** CUDA only: a cudaEvent_t recorded after the call's last op (as ForwardOptions.recordEvent). */
  recordEvent?: bigint;
}

/** Options of KVCachePool.flush() / KVCache.flush(). */
export interface FlushOptions {
  /**
   * The flush still waits for the work it covers (enqueued GPU work cannot be recalled), then rejects
   * with the AbortError instead of resolving; an enqueued call's failure wins over the abort.
   */
  signal?: AbortSignal;
}

/** The pool a cache belongs to, as the cache sees it. */
export interface CacheOwner {
  dispose(): void;
  close(): Promise<void>;
  flush(opts?: FlushOptions): Promise<void>;
  readonly memory: MemoryFigures;
}

type Frame = number | 'next';
interface Request {
  frame: Frame; name: string; op: CallEvent['op'];
  q?: AnyTensor; k?: AnyTensor; v?: AnyTensor; out?: AnyTensor; signal?: AbortSignal; events?: CallEvents;
}
interface Built { writeOps: Op[]; attendOps: Op[]; state: CacheState; output: StagedOutput | null }

const isAbort = (e: unknown): boolean => isErrorLike(e) && (e as Error).name === 'AbortError';

export class KVCache {
  private readonly core: CacheCore;
  private readonly k: NativeData;
  private readonly v: NativeData;
  private readonly pool: CacheOwner;
  private readonly owns: boolean;
  private state: CacheState = { end: 0, evicted: 0 };
  private failure: string | null = null;
  /** Slot s's views of K and V (non-owning device views are native objects: made once, not per call). */
  private readonly slotViews = new Map<number, [NativeAct, NativeAct]>();
  /** Marks this layer unusable (a flush found its enqueued work failed). */
  private readonly markFailed = (message: string): void => { this.failure = message; };
  /** Frames per chunk (causal.chunkFrames). */
  readonly chunkFrames: number;
  /** Tokens per chunk (chunkFrames·height·width). */
  readonly chunkTokens: number;
  /** Frames the cache holds at most: localAttnFrames when rolling, else layout.frames. */
  readonly maxFrames: number;
  /** Never-evicted first frames (0 without a rolling window). */
  readonly sinkFrames: number;
  /** Frames a query chunk attends to (sink and itself included); null = every written frame. */
  readonly localAttnFrames: number | null;
  /** Index of this cache in its pool (0 for createKVCache()). */
  readonly layer: number;

  /** @internal Use MonarchAttention.createKVCache() or createKVCachePool(). `owns`: createKVCache()'s cache (disposing it disposes its one-layer pool). */
  constructor(core: CacheCore, k: NativeData, v: NativeData, layer: number, pool: CacheOwner, owns: boolean) {
    this.core = core;
    this.k = k;
    this.v = v;
    this.layer = layer;
    this.pool = pool;
    this.owns = owns;
    const w = core.win;
    this.chunkFrames = w.chunkFrames;
    this.chunkTokens = core.cfg.geometry.chunkTokens;
    this.maxFrames = w.slots * w.chunkFrames;
    this.sinkFrames = w.sink * w.chunkFrames;
    this.localAttnFrames = w.rolling ? w.window * w.chunkFrames : null;
  }

  /** Frames held now: the sink plus the window's frames (every written frame without a window). */
  get framesCached(): number {
    const s = this.state, w = this.core.win;
    return (Math.min(w.sink, s.end) + Math.max(0, s.end - w.sink - s.evicted)) * w.chunkFrames;
  }

  /** The frame step() writes next: one past the last written frame. */
  get nextFrame(): number {
    return this.state.end * this.core.win.chunkFrames;
  }

  /** Non-sink frames evicted by the rolling window so far. */
  get evictedFrames(): number {
    return this.state.evicted * this.core.win.chunkFrames;
  }

  private live(): NativePlan {
    if (this.core.plan === null || this.core.closing) throw new Error(this.core.disposedMessage);
    return this.core.plan;
  }

  /** CUDA: the stream the cache's pool enqueues on (MonarchOptions.stream, or its own) as a bigint; null on the CPU. */
  get stream(): bigint | null {
    return this.live().stream;
  }

  private usable(): void {
    if (this.failure !== null) throw new Error(`KVCache is unusable after a failed call (${this.failure}); call reset()`);
  }

  private guardIdle(what: string): void {
    if (this.core.queue.busy) throw new Error(`KVCache is busy with an async call; await it before calling ${what}()`);
  }

  /** Awaited and sync calls, time() and reset() need the pool's enqueued calls flushed (and the flushes settled). */
  private guardFlushed(what: string): void {
    const l = this.core.ledger;
    if (l.pending) {
      throw new Error(`KVCache has enqueued calls in flight (${l.unflushed} not flushed, ${l.flushing} flushes pending); await pool.flush() before calling ${what}()`);
    }
  }

  private chunkDims(name: 'q' | 'k' | 'v', t: unknown): ActDims {
    const cfg = this.core.cfg;
    const dims = checkOne(name, t, cfg.tensorLayout, cfg.dtype, 'options.dtype', {
      B: { value: cfg.batch, label: `batch ${cfg.batch}` },
      S: { value: this.chunkTokens, label: `chunk tokens ${this.chunkTokens} (chunkFrames·height·width)` },
      H: { value: cfg.heads, label: `heads ${cfg.heads}` },
      D: { value: cfg.headDim, label: `headDim ${cfg.headDim}` },
    });
    if (dims.device && cfg.backend !== 'cuda') {
      throw new TypeError(`${name} is a DeviceTensor but the backend is 'cpu'; pass host tensors or use backend 'cuda'`);
    }
    return dims.dims;
  }

  /** Checks the tensors of a request (shapes, dtype, all host or all device, `out`); true for device tensors. */
  private checkRequest(r: Request): boolean {
    const cfg = this.core.cfg;
    const chunk = {
      B: { value: cfg.batch, label: `batch ${cfg.batch}` },
      S: { value: this.chunkTokens, label: `chunk tokens ${this.chunkTokens} (chunkFrames·height·width)` },
      H: { value: cfg.heads, label: `heads ${cfg.heads}` },
      D: { value: cfg.headDim, label: `headDim ${cfg.headDim}` },
    };
    let device: boolean;
    if (r.q && r.k) {
      device = checkQKV(r.q, r.k, r.v, cfg.tensorLayout, cfg.dtype, 'options.dtype', chunk, true).device;
    } else if (r.q) {
      this.chunkDims('q', r.q);
      device = r.q instanceof DeviceTensor;
    } else {
      this.chunkDims('k', r.k);
      this.chunkDims('v', r.v);
      device = r.k instanceof DeviceTensor;
      if ((r.v instanceof DeviceTensor) !== device) throw new TypeError('k and v must both be host tensors or both DeviceTensors');
    }
    if (device && cfg.backend !== 'cuda') {
      throw new TypeError("q, k, v are DeviceTensors but the backend is 'cpu'; pass host tensors or use backend 'cuda'");
    }
    if (r.out !== undefined) {
      if (!r.q) throw new TypeError('out needs a query chunk q');
      r.out = checkOut(r.out, r.q, device, [['q', r.q], ['k', r.k], ['v', r.v]]);
    }
    if (device) {
      const dev = (t: AnyTensor | undefined): DeviceTensor | undefined => t as DeviceTensor | undefined;
      checkTensorDevices('KVCache', cfg.device, [['q', dev(r.q)], ['k', dev(r.k)], ['v', dev(r.v)], ['out', dev(r.out)]]);
    }
    return device;
  }

  private parseFrame(name: string, frame: unknown): number {
    return chunkOf(this.core.win, name, frame);
  }

  /** The op list of a request against `state` (throws RangeError for positions the cache cannot serve). */
  private build(r: Request, state: CacheState, staged?: { q: NativeAct; k: NativeAct; v: NativeAct; o: NativeAct }): Built {
    const core = this.core, cfg = core.cfg, w = core.win;
    if (r.frame === 'next' && !w.rolling && state.end >= w.positions) {
      throw new Error(`KVCache is full: ${state.end * w.chunkFrames} of ${w.positions * w.chunkFrames} frames cached; call reset() to start a new video`);
    }
    const c = r.frame === 'next' ? state.end : r.frame;
    let writeOps: Op[] = [];
    let next = state;
    const dims = (): ActDims => ({ B: cfg.batch, S: this.chunkTokens, H: cfg.heads, D: cfg.headDim });
    const cuda = cfg.backend === 'cuda';
    if (r.k && r.v) {
      const wp = planWrite(w, state, c, r.name);
      const pre: Op[] = [];  // CUDA host k, v: uploads on the stream, before the write
      const kAct = staged ? staged.k : stageInput(cuda, core.scratch, 'stage.k', r.k, dims(), cfg.tensorLayout, pre);
      const vAct = staged ? staged.v : stageInput(cuda, core.scratch, 'stage.v', r.v, dims(), cfg.tensorLayout, pre);
      writeOps = [...pre, ...this.writeOps(kAct, vAct, wp)];
      next = wp.state;
    }
    let output: StagedOutput | null = null;
    let attendOps: Op[] = [];
    if (r.q) {
      const keys = planAttend(w, next, c, r.name);
      const pre: Op[] = [];
      const q = staged ? staged.q : stageInput(cuda, core.scratch, 'stage.q', r.q, dims(), cfg.tensorLayout, pre);
      const o: StagedOutput = staged ? { o: staged.o, post: [], collect: () => r.q!, collectAsync: async () => r.q! }
        : stageOutput(cuda, core.scratch, r.q, actStrides(dims(), cfg.tensorLayout), r.out, dims(), cfg.tensorLayout);
      attendOps = [...pre, ...this.attendOps(q, o.o, c, keys), ...o.post];
      output = o;
    }
    return { writeOps, attendOps, state: next, output };
  }

  /** Slot `s`'s view of a storage buffer (token offset s·chunkTokens). */
  private slot(buf: NativeData, s: number): NativeAct {
    let v = this.slotViews.get(s);
    if (!v) {
      const cfg = this.core.cfg, off = s * this.chunkTokens * cfg.heads * cfg.headDim, st = this.storageStrides();
      v = [act(offsetView(this.k, cfg.dtype, off), st), act(offsetView(this.v, cfg.dtype, off), st)];
      this.slotViews.set(s, v);
    }
    return buf === this.k ? v[0] : v[1];
  }

  private storageStrides(): [number, number, number] {
    const cfg = this.core.cfg;
    return bshd(this.core.win.slots * this.chunkTokens, cfg.heads, cfg.headDim);
  }

  private identity(n: number): Int32Array {
    let m = this.core.identity.get(n);
    if (!m) {
      m = Int32Array.from({ length: n }, (_, i) => i);
      this.core.identity.set(n, m);
    }
    return m;
  }

  /** Eviction shift (slot copies, front to back) and the chunk's k, v into its slot in tile order. */
  private writeOps(k: NativeAct, v: NativeAct, wp: WritePlan): Op[] {
    const cfg = this.core.cfg, dt = dtypeCode(cfg.dtype);
    const { batch: B, heads: H, headDim: D } = cfg;
    const ops: Op[] = [];
    if (wp.shift) {
      for (const p of shiftPieces(wp.shift)) {
        const map = this.identity(p.count * this.chunkTokens);
        for (const buf of [this.k, this.v]) {
          ops.push({ op: 'gather', args: { src: this.slot(buf, p.from), dst: this.slot(buf, p.to), B, H, D, map, dtype: dt } });
        }
      }
    }
    ops.push({ op: 'gather', args: { src: k, dst: this.slot(this.k, wp.slot), B, H, D, map: this.core.gatherMap, dtype: dt } });
    ops.push({ op: 'gather', args: { src: v, dst: this.slot(this.v, wp.slot), B, H, D, map: this.core.gatherMap, dtype: dt } });
    return ops;
  }

  /** Query chunk `c` (the last of the `keys` physical key chunks) against key chunks [0, keys). */
  private attendOps(qIn: NativeAct, oOut: NativeAct, c: number, keys: number): Op[] {
    const core = this.core, cfg = core.cfg, g = cfg.geometry;
    const { batch: B, heads: H, headDim: D } = cfg;
    const dt = dtypeCode(cfg.dtype), Tc = this.chunkTokens, C = g.chunkTiles;
    const st = this.storageStrides();
    const ops: Op[] = [];
    let q = qIn, o = oOut;
    if (core.needsGather) {
      const sc = bshd(Tc, H, D);
      q = act(core.scratch.get('tile.q', cfg.dtype, B * Tc * H * D), sc);
      o = act(core.scratch.get('tile.o', cfg.dtype, B * Tc * H * D), sc);
      ops.push({ op: 'gather', args: { src: qIn, dst: q, B, H, D, map: core.gatherMap, dtype: dt } });
    }
    const G = Math.min(cfg.queryTilesPerCall, C), tile = g.tokensPerTile;
    for (let a0 = 0; a0 < C; a0 += G) {
      // Query tiles [a0, a0 + G) of the chunk against every key tile of its window (all allowed).
      const at = (x: NativeAct): NativeAct => act(offsetView(x.data, cfg.dtype, a0 * tile * x.strides[1]), x.strides);
      const args: StageArgs = {
        q: at(q), k: act(this.k, st), v: act(this.v, st), o: at(o), Aq: G, Fk: keys * C, qTile0: (keys - 1) * C + a0,
        causalTiles: C, scale: cfg.scale, maxInvTemp: cfg.maxInvTemp,
      };
      ops.push(...tLoop(args, cfg.numIters));
    }
    if (core.needsGather) ops.push({ op: 'gather', args: { src: o, dst: oOut, B, H, D, map: core.scatterMap!, dtype: dt } });
    if (c === 0 && cfg.recompute === 'first-frame') {
      // Same rows as the one-shot forward: frame-0 queries against chunk 0's keys (slot 0, any key order).
      ops.push({ op: 'dense', args: {
        q: qIn, k: act(this.k, st), v: act(this.v, st), o: oOut, B, H, D, Nq: g.frameTokens, Nk: Tc,
        q0: 0, causalChunk: 0, scale: cfg.scale, dtype: dt,
      } });
    }
    return ops;
  }

  private fail(e: unknown): never {
    this.failure = isErrorLike(e) ? e.message : String(e);
    throw e;
  }

  /**
   * Checks the request and secures its host inputs (CPU: ordinary ArrayBuffers are copied into the
   * pool's staging; CUDA: everything but pinned addon memory, lib/host.ts: now, or in slices across
   * event-loop turns when large, finished before the call's work is built), then queues it. Aborts: before it starts → nothing runs; once started,
   * the write part (eviction shift, k, v) completes and is kept, the attend part stops between stages
   * (CPU) or completes (CUDA), and the call rejects with the AbortError; the cache stays usable.
   */
  private runQueued(r: Request): Promise<AnyTensor | undefined> {
    let held: ReturnType<StagingPool['secure']> | null = null;
    let end: (e?: unknown) => void = () => {};
    try {
      this.live();
      this.guardFlushed(r.op);
      const device = this.checkRequest(r);
      throwIfAborted(r.signal);
      const cfg = this.core.cfg, cuda = cfg.backend === 'cuda';
      const names = (['q', 'k', 'v'] as const).filter((n) => r[n] !== undefined);
      if (!device) {
        // Large inputs: copied in slices across event-loop turns (hostStagingSliceBytes), awaited below.
        held = this.core.staging.secure(names.map((n) => r[n] as HostTensor), cuda,
          { sliceBytes: cfg.hostStagingSliceBytes, signal: r.signal, names });
        names.forEach((n, i) => { r[n] = held!.tensors[i]; });
      }
      end = publishStart(r.op, cfg.backend, names.map((n) => r[n]!), held?.copiedBytes ?? 0);
    } catch (e) {
      held?.release();
      return Promise.reject(e);
    }
    return this.core.queue.run(() => traced(end, async () => {
      // First: the staging is given back only after its last slice. Only a sliced job waits (an `await`
      // always yields; an idle call must enqueue before it returns).
      if (held?.sliced) await held.ready;
      throwIfAborted(r.signal);
      // Queued before a close(): the plan is freed only after this call (no `closing` check here).
      const plan = this.core.plan;
      if (plan === null) throw new Error(this.core.disposedMessage);
      this.usable();
      const cuda = this.core.cfg.backend === 'cuda';
      const b = this.build(r, this.state);
      try {
        if (cuda) {
          await runAsync(plan, withEvents([...b.writeOps, ...b.attendOps], r.events), true);  // one sync; enqueued work cannot be recalled
          this.state = b.state;
        } else {
          await runAsync(plan, b.writeOps, false);
          this.state = b.state;
          await runAsync(plan, b.attendOps, false, r.signal);
        }
      } catch (e) {
        if (!isAbort(e)) this.fail(e);
        throw e;
      }
      throwIfAborted(r.signal);
      return b.output ? b.output.collectAsync() : undefined;
    }, () => held?.release()));
  }

  private runNow(r: Request, what: string): AnyTensor | undefined {
    const plan = this.live();
    this.guardIdle(what);
    this.guardFlushed(what);
    this.usable();
    const device = this.checkRequest(r);
    const cuda = this.core.cfg.backend === 'cuda';
    // CUDA host inputs go through pinned staging (the upload ops need it); the CPU reads them in place.
    const names = (['q', 'k', 'v'] as const).filter((n) => r[n] !== undefined);
    const held = cuda && !device ? this.core.staging.secure(names.map((n) => r[n] as HostTensor), true) : null;
    if (held) names.forEach((n, i) => { r[n] = held.tensors[i]; });
    try {
      const b = this.build(r, this.state);
      try {
        runSync(plan, withEvents([...b.writeOps, ...b.attendOps], r.events), cuda);
      } catch (e) {
        this.fail(e);
      }
      this.state = b.state;
      return b.output ? b.output.collect() : undefined;
    } finally {
      held?.release();
    }
  }

  /**
   * Enqueues a request and returns: CUDA (DeviceTensors only) enqueues its ops on the pool's stream and
   * returns the output DeviceTensor, valid in stream order; the CPU runs it now (as the sync twins).
   * Everything the host can check is checked first (nothing is applied when that throws); a native
   * failure while enqueueing leaves the cache unusable, as for the sync twins.
   */
  private runEnqueued(r: Request, what: string): AnyTensor | undefined {
    const plan = this.live();
    this.guardIdle(what);
    this.usable();
    const device = this.checkRequest(r);
    const cuda = this.core.cfg.backend === 'cuda';
    if (cuda && !device) {
      throw new TypeError(`${what}() on the CUDA backend takes DeviceTensors; host tensors need a wait for their copies: use ${r.op}() or ${r.op}Sync()`);
    }
    throwIfAborted(r.signal);
    const b = this.build(r, this.state);
    try {
      enqueue(plan, withEvents([...b.writeOps, ...b.attendOps], r.events));
    } catch (e) {
      this.fail(e);
    }
    this.state = b.state;
    this.core.ledger.record(this.markFailed, this.layer, r.op === 'write' ? 'write' : 'attend', (r.frame === 'next' ? b.state.end - 1 : r.frame) * this.core.win.chunkFrames);
    return b.output ? b.output.collect() : undefined;
  }

  private attendRequest(q: unknown, opts: unknown): Request {
    const o = snapshot('attend options', opts, ['frame', 'write', 'out', 'signal', 'waitEvent', 'recordEvent']);
    const frame = this.parseFrame('frame', o.frame);
    const r: Request = { frame, name: 'frame', op: 'attend', q: freezeTensor(q as AnyTensor), out: o.out as AnyTensor | undefined, signal: checkSignal(o.signal), events: this.events(o) };
    if (o.write !== undefined) {
      const w = snapshot('write', o.write, ['k', 'v']);
      r.k = freezeTensor(w.k as AnyTensor);
      r.v = freezeTensor(w.v as AnyTensor);
    }
    return r;
  }

  private writeRequest(k: unknown, v: unknown, opts: unknown): Request {
    const o = snapshot('write options', opts, ['frame', 'signal', 'waitEvent', 'recordEvent']);
    return { frame: this.parseFrame('frame', o.frame), name: 'frame', op: 'write', k: freezeTensor(k as AnyTensor), v: freezeTensor(v as AnyTensor), signal: checkSignal(o.signal), events: this.events(o) };
  }

  private stepRequest(q: AnyTensor, k: AnyTensor, v: AnyTensor, opts: unknown): Request {
    const o = snapshot('step options', opts, ['out', 'signal', 'waitEvent', 'recordEvent'], true);
    return { frame: 'next', name: 'frame', op: 'step', q: freezeTensor(q), k: freezeTensor(k), v: freezeTensor(v), out: o.out as AnyTensor | undefined, signal: checkSignal(o.signal), events: this.events(o) };
  }

  private events(o: Record<string, unknown>): CallEvents {
    return checkCallEvents(o, this.core.cfg.backend === 'cuda');
  }

  /**
   * Writes one chunk's k, v ([B][chunkTokens][H][D] or BHSD) at `frame`, overwriting that slice. frame ≤
   * nextFrame (no gaps) and not evicted; a new chunk past the window first evicts the oldest non-sink chunk.
   */
  write<T extends AnyTensor>(k: T, v: T, opts: WriteOptions): Promise<void>;  // both host or both device
  async write(k: AnyTensor, v: AnyTensor, opts: WriteOptions): Promise<void> {
    await this.runQueued(this.writeRequest(k, v, opts));
  }

  /** Synchronous twin of write(). */
  writeSync<T extends AnyTensor>(k: T, v: T, opts: WriteOptions): void;
  writeSync(k: AnyTensor, v: AnyTensor, opts: WriteOptions): void {
    this.runNow(this.writeRequest(k, v, opts), 'writeSync');
  }

  /**
   * Attends the query chunk at `frame` (q: [B][chunkTokens][H][D] or BHSD) over the cached frames it may
   * see: the sink and the window up to its own chunk's end (all written frames up to it without a window).
   * With `write`, its k, v are written at `frame` first. Returns q's shape, dtype and layout: a HostTensor
   * for host q, a DeviceTensor for device q (`out` when given).
   */
  attend(q: HostTensor, opts: AttendOptions): Promise<HostTensor>;
  attend(q: DeviceTensor, opts: AttendOptions): Promise<DeviceTensor>;
  attend(q: AnyTensor, opts: AttendOptions): Promise<AnyTensor>;
  async attend(q: AnyTensor, opts: AttendOptions): Promise<AnyTensor> {
    return (await this.runQueued(this.attendRequest(q, opts)))!;
  }

  /** Synchronous twin of attend(). */
  attendSync(q: HostTensor, opts: AttendOptions): HostTensor;
  attendSync(q: DeviceTensor, opts: AttendOptions): DeviceTensor;
  attendSync(q: AnyTensor, opts: AttendOptions): AnyTensor;
  attendSync(q: AnyTensor, opts: AttendOptions): AnyTensor {
    return this.runNow(this.attendRequest(q, opts), 'attendSync')!;
  }

  /**
   * Appends one chunk: attend(q, { frame: nextFrame, write: { k, v } }) with nextFrame taken when the
   * step runs (queued steps append in call order). Without a window, a step past layout.frames throws
   * "KVCache is full". Options: `out` and `signal` as for attend().
   */
  step(q: HostTensor, k: HostTensor, v: HostTensor, opts?: StepOptions): Promise<HostTensor>;
  step(q: DeviceTensor, k: DeviceTensor, v: DeviceTensor, opts?: StepOptions): Promise<DeviceTensor>;
  step<T extends AnyTensor>(q: T, k: T, v: T, opts?: StepOptions): Promise<AnyTensor>;
  async step(q: AnyTensor, k: AnyTensor, v: AnyTensor, opts?: StepOptions): Promise<AnyTensor> {
    return (await this.runQueued(this.stepRequest(q, k, v, opts)))!;
  }

  /** Synchronous twin of step() (`out` honoured; no signal: it runs to completion). */
  stepSync(q: HostTensor, k: HostTensor, v: HostTensor, opts?: StepOptions): HostTensor;
  stepSync(q: DeviceTensor, k: DeviceTensor, v: DeviceTensor, opts?: StepOptions): DeviceTensor;
  stepSync<T extends AnyTensor>(q: T, k: T, v: T, opts?: StepOptions): AnyTensor;
  stepSync(q: AnyTensor, k: AnyTensor, v: AnyTensor, opts?: StepOptions): AnyTensor {
    return this.runNow(this.stepRequest(q, k, v, opts), 'stepSync')!;
  }

  /**
   * attend() without a wait: CUDA, DeviceTensors only — enqueues the call on the pool's stream and returns
   * the output DeviceTensor (`out` when given) at once; its contents become valid in stream order, and
   * the call's GPU failures surface at the next flush(). CPU backend: runs now on the calling thread (as
   * attendSync). The positions move at once, so the next enqueued call builds on this one. Options as
   * attend(); `signal` is only honoured when already aborted (nothing is enqueued). docs/API.md
   * "Enqueued calls".
   */
  enqueueAttend(q: HostTensor, opts: AttendOptions): HostTensor;
  enqueueAttend(q: DeviceTensor, opts: AttendOptions): DeviceTensor;
  enqueueAttend(q: AnyTensor, opts: AttendOptions): AnyTensor;
  enqueueAttend(q: AnyTensor, opts: AttendOptions): AnyTensor {
    return this.runEnqueued(this.attendRequest(q, opts), 'enqueueAttend')!;
  }

  /** write() without a wait (as enqueueAttend). */
  enqueueWrite<T extends AnyTensor>(k: T, v: T, opts: WriteOptions): void;
  enqueueWrite(k: AnyTensor, v: AnyTensor, opts: WriteOptions): void {
    this.runEnqueued(this.writeRequest(k, v, opts), 'enqueueWrite');
  }

  /** The pool's flush(): resolves once every call enqueued on the pool before it has completed. */
  flush(opts?: FlushOptions): Promise<void> {
    return this.pool.flush(opts);
  }

  /**
   * Times attend(q, { frame, write: { k, v } }) without taking it (default frame: nextFrame, i.e. the
   * next step): `iters` calls after `warmup`, rotating over the input sets; one time in ms per call. The
   * cache's positions do not move, so the next real call overwrites what timing wrote. A timed call may
   * not evict (time a rewrite of the last chunk, frame = nextFrame − chunkFrames, instead). CUDA: events
   * on the pool's stream around each call (host inputs are uploaded once first). CPU: the monotonic clock.
   */
  time(inputs: Array<[AnyTensor, AnyTensor, AnyTensor]>, opts: TimeOptions & { frame?: number } = {}): number[] {
    const plan = this.live();
    this.guardIdle('time');
    this.guardFlushed('time');
    this.usable();
    const o = snapshot('options', opts, [...TIME_OPTION_KEYS, 'frame'], true);
    const { frame, ...rest } = o;
    const timing = timeOptions(rest);
    const req: Frame = frame === undefined ? 'next' : this.parseFrame('frame', frame);
    const sets = checkInputSets(inputs);
    const cfg = this.core.cfg, cuda = cfg.backend === 'cuda';
    return timeInputSets(plan, cuda, sets, timing, ([q, k, v], owned) => {
      const r: Request = { frame: req, name: 'frame', op: 'step', q, k, v };
      this.checkRequest(r);
      const c = checkQKV(q, k, v, cfg.tensorLayout, cfg.dtype, 'options.dtype', {}, true);
      const s = stageForTiming(cuda, this.core.scratch, cfg.tensorLayout, c, q, k, v, owned);
      const b = this.build(r, this.state, s);
      if (b.state.evicted !== this.state.evicted) {
        throw new RangeError(`time(): the call at frame ${this.nextFrame} would evict frames; time frame ${this.nextFrame - this.chunkFrames} (a rewrite of the last chunk) instead`);
      }
      return [...b.writeOps, ...b.attendOps];
    });
  }

  /** Empties the cache (keeps its memory) to decode a new video; clears a failure. */
  reset(): void {
    this.live();
    this.guardIdle('reset');
    this.guardFlushed('reset');
    this.state = { end: 0, evicted: 0 };
    this.failure = null;
  }

  /**
   * Bytes held by the pool this cache belongs to (its K/V allocation, workspace, staging, scratch; shared
   * by every layer of a KVCachePool: do not add the layers' figures up).
   */
  get memory(): MemoryFigures {
    return this.pool.memory;
  }

  private notOwned(): Error {
    return new Error(`KVCache ${this.layer} belongs to a KVCachePool; dispose the pool`);
  }

  /**
   * createKVCache()'s cache: frees its memory and plan (its one-layer pool); later calls throw "KVCache
   * was disposed". Idempotent. Calls made before it still run (in order); the memory is freed after the
   * last one. A cache of a KVCachePool is freed with its pool: this throws.
   */
  dispose(): void {
    if (!this.owns) throw this.notOwned();
    this.pool.dispose();
  }

  /** dispose(), resolving once in-flight calls have finished and the memory is freed. */
  close(): Promise<void> {
    if (!this.owns) return Promise.reject(this.notOwned());
    return this.pool.close();
  }

  [Symbol.dispose](): void { this.dispose(); }
  [Symbol.asyncDispose](): Promise<void> { return this.close(); }
}
