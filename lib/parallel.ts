// SequenceParallelAttention: Ulysses sequence parallelism around MonarchAttention or dense attention,
// one instance per rank (process per GPU). q/k/v arrive as sequence shards [B][N/P][H][D]; one
// all-to-all regroups them into [B][N][H_r][D] (the whole sequence, this rank's heads), attention runs
// unchanged on those heads (Monarch is per head, docs/ALGORITHMS.md §A.3), and a second all-to-all returns
// the output to sequence shards. Partitioning: lib/partition.ts; collectives: lib/comm.ts, lib/nccl.ts.
import type { Communicator } from './comm';
import { denseAttention } from './dense';
import { DeviceTensor } from './device';
import { checkQKV, type AnyTensor, freezeTensor } from './inputs';
import type { KVCacheOptions } from './types';
import { MonarchAttention } from './monarch';
import { resolveOptions, type ResolvedOptions } from './options';
import { headGroups, type HeadGroups } from './partition';
import { Regroup } from './regroup';
import { tensor } from './tensor';
import { WorkQueue } from './ops';
import type { ForwardOptions, HostTensor, MonarchOptions, VideoLayout } from './types';
import { checkEnum, checkMask, checkObject, show } from './validate';
import { SequenceParallelKVCache } from './parallel_kv';

/** Options of SequenceParallelAttention.create: the options of the whole (unsharded) attention. */
export interface SequenceParallelOptions extends MonarchOptions {
  /**
   * 'monarch' (default): MonarchAttention with these options on this rank's heads. 'dense': exact
   * attention over layout's tokens (block-causal over causal.chunkFrames frames when set; numIters,
   * recompute, minColumnMass and queryTilesPerCall do not apply).
   */
  attention?: 'monarch' | 'dense';
}

const HANDSHAKE_BYTES = 2048;

function isCommunicator(c: unknown): c is Communicator {
  const x = c as Partial<Communicator> | null;
  return typeof x === 'object' && x !== null && typeof x.allToAll === 'function' && typeof x.rank === 'number'
    && typeof x.size === 'number' && (x.memory === 'host' || x.memory === 'device');
}

/** The options every rank must agree on, as canonical JSON (compared in the create() handshake). */
function fingerprint(attention: string, c: ResolvedOptions, size: number): Record<string, unknown> {
  return {
    ranks: size, attention, layout: c.layout, heads: c.heads, headDim: c.headDim, batch: c.batch,
    numIters: c.numIters, chunkFrames: c.chunkFrames, recompute: c.recompute, dtype: c.dtype,
    tensorLayout: c.tensorLayout, scale: c.scale, maxInvTemp: c.maxInvTemp, queryTilesPerCall: c.queryTilesPerCall,
  };
}

/** Exchanges the options of every rank and throws (on every rank) when any differ, naming the first key. */
async function handshake(comm: Communicator, mine: Record<string, unknown>): Promise<void> {
  const P = comm.size;
  const text = JSON.stringify(mine);
  const enc = new TextEncoder().encode(text);
  if (enc.length > HANDSHAKE_BYTES) throw new RangeError(`options serialise to ${enc.length} bytes, more than the ${HANDSHAKE_BYTES} of the handshake`);
  const sendHost = new Uint8Array(P * HANDSHAKE_BYTES);
  for (let p = 0; p < P; p++) sendHost.set(enc, p * HANDSHAKE_BYTES);
  const regions = Array.from({ length: P }, (_, p) => ({ offset: p * HANDSHAKE_BYTES, rows: 1, rowBytes: HANDSHAKE_BYTES, pitch: HANDSHAKE_BYTES }));
  let recvHost: Uint8Array;
  if (comm.memory === 'host') {
    recvHost = new Uint8Array(P * HANDSHAKE_BYTES);
    await comm.allToAll([{ src: sendHost, dst: recvHost, send: regions, recv: regions }]);
  } else {
    const u16 = (b: Uint8Array): Uint16Array => new Uint16Array(b.buffer, b.byteOffset, b.byteLength / 2);
    const src = DeviceTensor.fromHost(tensor(u16(sendHost), [P * HANDSHAKE_BYTES / 2], 'float16'));
    const dst = DeviceTensor.empty([P * HANDSHAKE_BYTES / 2], 'float16');
    try {
      await comm.allToAll([{ src, dst, send: regions, recv: regions }]);
      const h = (await dst.download()).data as Uint16Array;
      recvHost = new Uint8Array(h.buffer, h.byteOffset, h.byteLength);
    } finally {
      src.dispose();
      dst.dispose();
    }
  }
  const dec = new TextDecoder();
  for (let p = 0; p < P; p++) {
    const bytes = recvHost.subarray(p * HANDSHAKE_BYTES, (p + 1) * HANDSHAKE_BYTES);
    const end = bytes.indexOf(0);
    const theirs = dec.decode(end < 0 ? bytes : bytes.subarray(0, end));
    if (theirs === text) continue;
    let other: Record<string, unknown> = {};
    try { other = JSON.parse(theirs) as Record<string, unknown>; } catch { /* reported below */ }
    const key = Object.keys(mine).find((k) => JSON.stringify(mine[k]) !== JSON.stringify(other[k]));
    throw new RangeError(key === undefined
      ? `rank ${p}'s sequence-parallel options differ from rank ${comm.rank}'s (unreadable handshake)`
      : `rank ${p}'s sequence-parallel options differ from rank ${comm.rank}'s: ${key} ${JSON.stringify(other[key])} vs ${JSON.stringify(mine[key])}`);
  }
}

/**
 * Ulysses sequence-parallel attention: one instance per rank of a Communicator. Create it on every rank
 * with the same options (of the whole attention: layout with all N tokens, all H heads); forward takes
 * this rank's sequence shard. See docs/API.md "Sequence parallelism".
 */
export class SequenceParallelAttention {
  /** This rank and the number of ranks P. */
  readonly rank: number;
  readonly ranks: number;
  /** Tokens of the whole sequence N, and of one shard N / P (rank r holds tokens [r·N/P, (r+1)·N/P) in raster order). */
  readonly numTokens: number;
  readonly localTokens: number;
  /** Head groups of every rank (uneven when P does not divide H). */
  readonly headGroups: Readonly<HeadGroups>;
  /** 'monarch' or 'dense'. */
  readonly attention: 'monarch' | 'dense';
  /** The validated options of the whole attention (all heads). */
  readonly config: Readonly<ResolvedOptions>;
  /** 'cpu' | 'cuda' of the attention on this rank. */
  readonly backend: 'cpu' | 'cuda';
  private comm: Communicator | null;
  private readonly inner: MonarchAttention | null;
  private readonly regroup: Regroup;
  private readonly queue = new WorkQueue();
  private readonly options: MonarchOptions;

  private constructor(comm: Communicator, options: MonarchOptions, attention: 'monarch' | 'dense', cfg: ResolvedOptions) {
    this.comm = comm;
    this.rank = comm.rank;
    this.ranks = comm.size;
    this.attention = attention;
    this.config = Object.freeze(cfg);
    this.backend = cfg.backend;
    const N = cfg.geometry.numTokens, P = comm.size;
    this.numTokens = N;
    this.localTokens = N / P;
    this.headGroups = Object.freeze(headGroups(cfg.heads, P));
    this.options = { ...options, heads: this.headGroups.count[this.rank] };
    this.inner = attention === 'monarch' ? new MonarchAttention(this.options) : null;
    try {
      this.regroup = new Regroup(comm, cfg, this.headGroups, N, 3);
    } catch (e) {
      this.inner?.dispose();
      throw e;
    }
  }

  /**
   * Validates the options (as MonarchAttention does, plus: N divisible by the ranks; a device-memory
   * communicator needs the CUDA backend), then checks that every rank passed the same options (a
   * collective: call it on every rank). Rejects with RangeError naming the first differing option.
   */
  static async create(comm: Communicator, options: SequenceParallelOptions): Promise<SequenceParallelAttention> {
    if (!isCommunicator(comm)) throw new TypeError(`comm must be a Communicator (createSimulatedGroup, NcclCommunicator.create), received ${show(comm)}`);
    const o = checkObject('options', options);
    const attention = checkEnum('attention', o.attention, ['monarch', 'dense'] as const, 'monarch');
    const { attention: _drop, ...rest } = o;
    const monarchOptions = rest as unknown as MonarchOptions;
    const cfg = resolveOptions(monarchOptions);
    const N = cfg.geometry.numTokens, P = comm.size;
    if (N % P !== 0) {
      const what = cfg.geometry.kind === 'video'
        ? `frames·height·width ${(cfg.layout as VideoLayout).frames}·${(cfg.layout as VideoLayout).height}·${(cfg.layout as VideoLayout).width} = ${N} tokens`
        : `layout.length ${N}`;
      throw new RangeError(`${what} is not divisible by the communicator's ${P} ranks: each rank holds N / ranks consecutive tokens (raster order)`);
    }
    if (cfg.heads < P) {
      throw new RangeError(`heads ${cfg.heads} is less than the communicator's ${P} ranks: Ulysses splits the heads over the ranks, use at most ${cfg.heads} ranks`);
    }
    if (comm.memory === 'device' && cfg.backend !== 'cuda') {
      throw new TypeError(`a device-memory communicator needs the CUDA backend, but options.backend resolved to '${cfg.backend}'`);
    }
    await handshake(comm, fingerprint(attention, cfg, P));
    return new SequenceParallelAttention(comm, monarchOptions, attention, cfg);
  }

  private live(): Communicator {
    if (this.comm === null) throw new Error('SequenceParallelAttention was disposed');
    return this.comm;
  }

  /** This rank's heads [start, start + count). */
  get localHeads(): { start: number; count: number } {
    return { start: this.headGroups.start[this.rank], count: this.headGroups.count[this.rank] };
  }

  /** Checks q, k, v shards: [B][N/P][H][D] (or BHSD), options.dtype, on the communicator's side. */
  private checkShards(q: unknown, k: unknown, v: unknown, comm: Communicator): void {
    const c = this.config;
    const n = this.localTokens;
    const checked = checkQKV(q, k, v, c.tensorLayout, c.dtype, 'options.dtype', {
      B: { value: c.batch, label: `batch ${c.batch}` },
      S: { value: n, label: `localTokens ${n} (numTokens ${this.numTokens} / ${this.ranks} ranks)` },
      H: { value: c.heads, label: `heads ${c.heads}` },
      D: { value: c.headDim, label: `headDim ${c.headDim}` },
    }, true);
    if (checked.device !== (comm.memory === 'device')) {
      throw new TypeError(comm.memory === 'device'
        ? 'q, k, v must be DeviceTensors for a device-memory (NCCL) communicator'
        : 'q, k, v must be host tensors for a host-memory (simulated) communicator');
    }
  }

  /**
   * One forward on this rank's shards q, k, v ([B][N/P][H][D] BSHD or [B][H][N/P][D] BHSD, options.dtype;
   * host tensors with a host communicator, DeviceTensors with NCCL) → this rank's output shard (a
   * HostTensor or a new DeviceTensor you own). A collective: every rank calls it, in the same order.
   * opts.keyMask (sequence layouts): the mask of the whole sequence [B][N], the same on every rank.
   */
  forward(q: HostTensor, k: HostTensor, v: HostTensor, opts?: ForwardOptions): Promise<HostTensor>;
  forward(q: DeviceTensor, k: DeviceTensor, v: DeviceTensor, opts?: ForwardOptions): Promise<DeviceTensor>;
  forward(q: AnyTensor, k: AnyTensor, v: AnyTensor, opts?: ForwardOptions): Promise<AnyTensor>;
  async forward(q: AnyTensor, k: AnyTensor, v: AnyTensor, opts?: ForwardOptions): Promise<AnyTensor> {
    [q, k, v] = [freezeTensor(q), freezeTensor(k), freezeTensor(v)];  // each read once
    const comm = this.live();
    this.checkShards(q, k, v, comm);
    const c = this.config;
    let keyMask: Uint8Array | undefined;
    if (opts !== undefined) {
      const o = checkObject('forward options', opts);
      if (o.keyMask !== undefined) keyMask = checkMask('keyMask', o.keyMask, c.batch * this.numTokens, 'batch·numTokens (the whole sequence)');
    }
    return this.queue.run(async () => {
      this.live();
      const [fq, fk, fv] = await this.regroup.gather([q, k, v]);
      const out = await this.attend(fq, fk, fv, keyMask);
      try {
        return await this.regroup.scatter(out, q.shape);
      } finally {
        if (out instanceof DeviceTensor) out.dispose();
      }
    });
  }

  private async attend(q: AnyTensor, k: AnyTensor, v: AnyTensor, keyMask?: Uint8Array): Promise<AnyTensor> {
    if (this.inner) return this.inner.forward(q, k, v, keyMask ? { keyMask } : undefined);
    const c = this.config;
    const r = await denseAttention(q, k, v, {
      scale: c.scale, tensorLayout: c.tensorLayout, backend: c.backend, keyMask,
      causalChunk: c.chunkFrames > 0 ? c.geometry.chunkTokens : undefined,
    });
    return r.out;
  }

  /**
   * A sequence-parallel KV cache (block-causal video, monarch attention): chunks arrive as shards of
   * chunkTokens / P tokens; each rank caches its heads of the whole chunk. See docs/API.md.
   */
  createKVCache(opts?: KVCacheOptions): SequenceParallelKVCache {
    const comm = this.live();
    if (this.inner === null) throw new Error("createKVCache needs attention 'monarch'");
    return new SequenceParallelKVCache(comm, this.config, this.headGroups, this.inner.createKVCache(opts));
  }

  /** Frees the attention and buffers (not the communicator). Idempotent. */
  dispose(): void {
    if (this.comm === null) return;
    if (this.queue.busy) throw new Error('SequenceParallelAttention is busy with a forward(); await it before calling dispose()');
    this.comm = null;
    this.inner?.dispose();
    this.regroup.dispose();
  }
}
