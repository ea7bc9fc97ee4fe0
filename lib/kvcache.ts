// KVCache: one layer's K/V for block-causal video decoding (docs/ALGORITHMS.md §B.4) following the
// Self-Forcing protocol: write a chunk's K/V at an explicit frame position (overwriting that slice),
// attend a chunk of queries over the cache up to its own end (optionally writing first), with an
// optional rolling window whose first sinkFrames are never evicted (lib/kvwindow.ts). K/V are kept in
// tile order ([B][slots·chunkTokens][H][D], contiguous BSHD) in the pool's one allocation (host memory
// on the CPU, device memory on CUDA). An attend runs the chunk's C query tiles against the key tiles of
// its window — always the physical prefix of the slots — so its output equals the chunk's rows of the
// one-shot block-causal forward over the frames it sees.
import type { NativeAct, NativeData, NativePlan, StageArgs } from './native';
import type { HostTensor } from './types';
import { DeviceTensor } from './device';
import { act, bshd, checkInputSets, checkOne, checkQKV, offsetView, Scratch, stageForTiming, timeInputSets, type AnyTensor } from './inputs';
import { stageInput, stageOutput, type StagedOutput } from './kvstage';
import { chunkOf, planAttend, planWrite, shiftPieces, type CacheState, type CacheWindow, type WritePlan } from './kvwindow';
import { runAsync, runSync, tLoop, WorkQueue, type Op } from './ops';
import type { ResolvedOptions } from './options';
import { dtypeCode, type ActDims } from './tensor';
import { isErrorLike, snapshot, TIME_OPTION_KEYS, timeOptions, type TimeOptions } from './validate';

/** @internal What the caches of one pool share: options, window, one plan (workspace, stream), scratch, queue. */
export interface CacheCore {
  cfg: ResolvedOptions;
  win: CacheWindow;
  plan: NativePlan | null;
  scratch: Scratch;
  queue: WorkQueue;
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
  /** Device q only: write the output here (q's shape and dtype) instead of a new DeviceTensor. */
  out?: DeviceTensor;
}

export interface WriteOptions {
  /** The chunk's first frame (a multiple of chunkFrames, at most nextFrame). */
  frame: number;
}

type Frame = number | 'next';
interface Request { frame: Frame; name: string; q?: AnyTensor; k?: AnyTensor; v?: AnyTensor; out?: DeviceTensor }
interface Built { ops: Op[]; state: CacheState; output: StagedOutput | null }

export class KVCache {
  private readonly core: CacheCore;
  private readonly k: NativeData;
  private readonly v: NativeData;
  private readonly owner: { dispose(): void } | null;
  private state: CacheState = { end: 0, evicted: 0 };
  private failure: string | null = null;
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

  /** @internal Use MonarchAttention.createKVCache() or createKVCachePool(). */
  constructor(core: CacheCore, k: NativeData, v: NativeData, layer: number, owner: { dispose(): void } | null) {
    this.core = core;
    this.k = k;
    this.v = v;
    this.layer = layer;
    this.owner = owner;
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
    if (this.core.plan === null) throw new Error(this.core.disposedMessage);
    return this.core.plan;
  }

  private usable(): void {
    if (this.failure !== null) throw new Error(`KVCache is unusable after a failed call (${this.failure}); call reset()`);
  }

  private guardIdle(what: string): void {
    if (this.core.queue.busy) throw new Error(`KVCache is busy with an async call; await it before calling ${what}()`);
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

  /** Checks the tensors of a request (shapes, dtype, all host or all device, `out`). */
  private checkRequest(r: Request): void {
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
      if (!(r.out instanceof DeviceTensor)) throw new TypeError('out must be a DeviceTensor');
      if (!(r.q instanceof DeviceTensor)) throw new TypeError('out needs q to be a DeviceTensor (host q returns a new HostTensor)');
      if (r.out.disposed) throw new Error('out: DeviceTensor was disposed');
      if (r.out.dtype !== r.q.dtype || r.out.shape.join() !== r.q.shape.join()) {
        throw new RangeError(`out [${r.out.shape.join(', ')}] ${r.out.dtype} must match q [${r.q.shape.join(', ')}] ${r.q.dtype}`);
      }
      for (const [n, t] of [['q', r.q], ['k', r.k], ['v', r.v]] as const) {
        if (t instanceof DeviceTensor && t.pointer === r.out.pointer) throw new RangeError(`out must not be the same memory as ${n}`);
      }
    }
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
    const ops: Op[] = [];
    let next = state;
    const dims = (): ActDims => ({ B: cfg.batch, S: this.chunkTokens, H: cfg.heads, D: cfg.headDim });
    if (r.k && r.v) {
      const wp = planWrite(w, state, c, r.name);
      const kAct = staged ? staged.k : stageInput(cfg.backend === 'cuda', core.scratch, 'stage.k', r.k, dims(), cfg.tensorLayout);
      const vAct = staged ? staged.v : stageInput(cfg.backend === 'cuda', core.scratch, 'stage.v', r.v, dims(), cfg.tensorLayout);
      ops.push(...this.writeOps(kAct, vAct, wp));
      next = wp.state;
    }
    let output: StagedOutput | null = null;
    if (r.q) {
      const keys = planAttend(w, next, c, r.name);
      const cuda = cfg.backend === 'cuda';
      const q = staged ? staged.q : stageInput(cuda, core.scratch, 'stage.q', r.q, dims(), cfg.tensorLayout);
      const o = staged ? { o: staged.o, collect: () => r.q!, collectAsync: async () => r.q! } : stageOutput(cuda, core.scratch, r.q, dims(), cfg.tensorLayout, r.out);
      ops.push(...this.attendOps(q, o.o, c, keys));
      output = o;
    }
    return { ops, state: next, output };
  }

  /** Slot `s`'s view of a storage buffer (token offset s·chunkTokens). */
  private slot(buf: NativeData, s: number): NativeAct {
    const cfg = this.core.cfg;
    return act(offsetView(buf, cfg.dtype, s * this.chunkTokens * cfg.heads * cfg.headDim), this.storageStrides());
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

  private async runQueued(r: Request): Promise<AnyTensor | undefined> {
    this.live();
    this.checkRequest(r);
    return this.core.queue.run(async () => {
      const plan = this.live();
      this.usable();
      const b = this.build(r, this.state);
      try {
        await runAsync(plan, b.ops, this.core.cfg.backend === 'cuda');
      } catch (e) {
        this.fail(e);
      }
      this.state = b.state;
      return b.output ? b.output.collectAsync() : undefined;
    });
  }

  private runNow(r: Request, what: string): AnyTensor | undefined {
    const plan = this.live();
    this.guardIdle(what);
    this.usable();
    this.checkRequest(r);
    const b = this.build(r, this.state);
    try {
      runSync(plan, b.ops, this.core.cfg.backend === 'cuda');
    } catch (e) {
      this.fail(e);
    }
    this.state = b.state;
    return b.output ? b.output.collect() : undefined;
  }

  private attendRequest(q: unknown, opts: unknown): Request {
    const o = snapshot('attend options', opts, ['frame', 'write', 'out']);
    const frame = this.parseFrame('frame', o.frame);
    const r: Request = { frame, name: 'frame', q: q as AnyTensor, out: o.out as DeviceTensor | undefined };
    if (o.write !== undefined) {
      const w = snapshot('write', o.write, ['k', 'v']);
      r.k = w.k as AnyTensor;
      r.v = w.v as AnyTensor;
    }
    return r;
  }

  private writeRequest(k: unknown, v: unknown, opts: unknown): Request {
    const o = snapshot('write options', opts, ['frame']);
    return { frame: this.parseFrame('frame', o.frame), name: 'frame', k: k as AnyTensor, v: v as AnyTensor };
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
   * "KVCache is full".
   */
  step(q: HostTensor, k: HostTensor, v: HostTensor): Promise<HostTensor>;
  step(q: DeviceTensor, k: DeviceTensor, v: DeviceTensor): Promise<DeviceTensor>;
  step<T extends AnyTensor>(q: T, k: T, v: T): Promise<AnyTensor>;
  async step(q: AnyTensor, k: AnyTensor, v: AnyTensor): Promise<AnyTensor> {
    return (await this.runQueued({ frame: 'next', name: 'frame', q, k, v }))!;
  }

  /** Synchronous twin of step(). */
  stepSync(q: HostTensor, k: HostTensor, v: HostTensor): HostTensor;
  stepSync(q: DeviceTensor, k: DeviceTensor, v: DeviceTensor): DeviceTensor;
  stepSync<T extends AnyTensor>(q: T, k: T, v: T): AnyTensor;
  stepSync(q: AnyTensor, k: AnyTensor, v: AnyTensor): AnyTensor {
    return this.runNow({ frame: 'next', name: 'frame', q, k, v }, 'stepSync')!;
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
    this.usable();
    const o = snapshot('options', opts, [...TIME_OPTION_KEYS, 'frame'], true);
    const { frame, ...rest } = o;
    const timing = timeOptions(rest);
    const req: Frame = frame === undefined ? 'next' : this.parseFrame('frame', frame);
    const sets = checkInputSets(inputs);
    const cfg = this.core.cfg, cuda = cfg.backend === 'cuda';
    return timeInputSets(plan, cuda, sets, timing, ([q, k, v], owned) => {
      const r: Request = { frame: req, name: 'frame', q, k, v };
      this.checkRequest(r);
      const c = checkQKV(q, k, v, cfg.tensorLayout, cfg.dtype, 'options.dtype', {}, true);
      const s = stageForTiming(cuda, this.core.scratch, cfg.tensorLayout, c, q, k, v, owned);
      const b = this.build(r, this.state, s);
      if (b.state.evicted !== this.state.evicted) {
        throw new RangeError(`time(): the call at frame ${this.nextFrame} would evict frames; time frame ${this.nextFrame - this.chunkFrames} (a rewrite of the last chunk) instead`);
      }
      return b.ops;
    });
  }

  /** Empties the cache (keeps its memory) to decode a new video; clears a failure. */
  reset(): void {
    this.live();
    this.guardIdle('reset');
    this.state = { end: 0, evicted: 0 };
    this.failure = null;
  }

  /**
   * createKVCache(): frees the cache memory and plan; later calls throw "KVCache was disposed".
   * Idempotent. A cache of a KVCachePool is freed with its pool (this throws).
   */
  dispose(): void {
    if (!this.owner) throw new Error(`KVCache ${this.layer} belongs to a KVCachePool; dispose the pool`);
    if (this.core.plan === null) return;
    this.guardIdle('dispose');
    this.owner.dispose();
  }
}
