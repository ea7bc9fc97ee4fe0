// SequenceParallelKVCache: the KV cache of block-causal video decoding (lib/kvcache.ts) under Ulysses.
// Each chunk arrives as sequence shards of chunkTokens / P tokens; one all-to-all regroups them into
// the whole chunk for this rank's heads, the rank's own KVCache (its heads of every cached frame) does
// the write / attend, and the output returns to chunk shards. Positions (frame, nextFrame, the window)
// are those of the inner cache, which every rank advances identically.
import type { Communicator } from './comm';
import { DeviceTensor } from './device';
import { checkOne, type AnyTensor } from './inputs';
import type { KVCache, WriteOptions } from './kvcache';
import type { ResolvedOptions } from './options';
import type { HeadGroups } from './partition';
import { Regroup } from './regroup';
import { WorkQueue } from './ops';
import { checkObject } from './validate';

/** Options of SequenceParallelKVCache.attend (KVCache's, without `out`). */
export interface ParallelAttendOptions {
  frame: number;
  write?: { k: AnyTensor; v: AnyTensor };
}

export class SequenceParallelKVCache {
  /** Tokens of one whole chunk, and of one rank's shard of it (chunkTokens / ranks). */
  readonly chunkTokens: number;
  readonly localChunkTokens: number;
  private readonly regroup: Regroup;
  private readonly queue = new WorkQueue();
  private cache: KVCache | null;

  /** @internal Use SequenceParallelAttention.createKVCache(). */
  constructor(private readonly comm: Communicator, private readonly cfg: ResolvedOptions, groups: HeadGroups, cache: KVCache) {
    this.cache = cache;
    this.chunkTokens = cache.chunkTokens;
    if (this.chunkTokens % comm.size !== 0) {
      cache.dispose();
      throw new RangeError(`causal chunk of ${this.chunkTokens} tokens (chunkFrames·height·width) is not divisible by the communicator's ${comm.size} ranks`);
    }
    this.localChunkTokens = this.chunkTokens / comm.size;
    this.regroup = new Regroup(comm, cfg, groups, this.chunkTokens, 3);
  }

  private live(): KVCache {
    if (this.cache === null) throw new Error('SequenceParallelKVCache was disposed');
    return this.cache;
  }

  /** The inner cache's positions (identical on every rank). */
  get nextFrame(): number { return this.live().nextFrame; }
  get framesCached(): number { return this.live().framesCached; }

  /** Checks chunk shards: [B][chunkTokens / P][H][D] (or BHSD), options.dtype, on the communicator's side. */
  private checkShards(named: Record<string, unknown>): void {
    const c = this.cfg, n = this.localChunkTokens;
    const want = {
      B: { value: c.batch, label: `batch ${c.batch}` },
      S: { value: n, label: `localChunkTokens ${n} (chunkTokens ${this.chunkTokens} / ${this.comm.size} ranks)` },
      H: { value: c.heads, label: `heads ${c.heads}` },
      D: { value: c.headDim, label: `headDim ${c.headDim}` },
    };
    for (const [name, t] of Object.entries(named)) {
      const { device } = checkOne(name, t, c.tensorLayout, c.dtype, 'options.dtype', want);
      if (device !== (this.comm.memory === 'device')) {
        throw new TypeError(`${name} must be a ${this.comm.memory === 'device' ? 'DeviceTensor' : 'host tensor'} for a ${this.comm.memory}-memory communicator`);
      }
    }
  }

  /** Writes one chunk's k, v shards at opts.frame on every rank (a collective). */
  async write(k: AnyTensor, v: AnyTensor, opts: WriteOptions): Promise<void> {
    const cache = this.live();
    this.checkShards({ k, v });
    return this.queue.run(async () => {
      const [fk, fv] = await this.regroup.gather([k, v]);
      await cache.write(fk, fv, opts);
    });
  }

  /** Attends this rank's query shard at opts.frame (optionally writing k, v first) → the output shard. */
  async attend(q: AnyTensor, opts: ParallelAttendOptions): Promise<AnyTensor> {
    const cache = this.live();
    const o = checkObject('attend options', opts);
    const w = o.write === undefined ? undefined : checkObject('attend options.write', o.write) as unknown as { k: AnyTensor; v: AnyTensor };
    this.checkShards(w ? { q, 'write.k': w.k, 'write.v': w.v } : { q });
    return this.queue.run(async () => {
      const full = await this.regroup.gather(w ? [q, w.k, w.v] : [q]);
      const out = await cache.attend(full[0], { frame: opts.frame, ...(w && { write: { k: full[1], v: full[2] } }) });
      return this.back(out, q);
    });
  }

  /** Appends one chunk (attend at nextFrame with write), as KVCache.step. */
  async step(q: AnyTensor, k: AnyTensor, v: AnyTensor): Promise<AnyTensor> {
    const cache = this.live();
    this.checkShards({ q, k, v });
    return this.queue.run(async () => {
      const [fq, fk, fv] = await this.regroup.gather([q, k, v]);
      return this.back(await cache.step(fq, fk, fv), q);
    });
  }

  private async back(out: AnyTensor, q: AnyTensor): Promise<AnyTensor> {
    try {
      return await this.regroup.scatter(out, q.shape);
    } finally {
      if (out instanceof DeviceTensor) out.dispose();
    }
  }

  /** Empties the cache on this rank (call it on every rank). */
  reset(): void {
    this.live().reset();
  }

  /** Frees the inner cache and buffers. Idempotent. */
  dispose(): void {
    if (this.cache === null) return;
    if (this.queue.busy) throw new Error('SequenceParallelKVCache is busy; await it before calling dispose()');
    this.cache.dispose();
    this.cache = null;
    this.regroup.dispose();
  }
}
