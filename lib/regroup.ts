// The two Ulysses all-to-alls of one token count (the whole sequence, or one KV-cache chunk): sequence
// shards [B][n][H][D] → head-group tensors [B][P·n][H_r][D] (reused buffers) and an output head group
// back → a new shard (BSHD; BHSD analogously). Shared by SequenceParallelAttention and its KV cache.
import type { CommBuffer, Communicator } from './comm';
import { DeviceTensor } from './device';
import type { AnyTensor } from './inputs';
import type { ResolvedOptions } from './options';
import { shardRegions, type HeadGroups, type ShardRegions } from './partition';
import { actShape, dtypeSize, numel, tensor } from './tensor';
import type { DType, HostTensor } from './types';

/** Zeroed host storage of n elements of dtype (float32, or the 16-bit patterns of float16 / bfloat16). */
function allocHost(dtype: DType, n: number): Float32Array | Uint16Array {
  return dtype === 'float32' ? new Float32Array(n) : new Uint16Array(n);
}

function allocBuffer(memory: 'host' | 'device', dtype: HostTensor['dtype'], elems: number): CommBuffer {
  return memory === 'host' ? allocHost(dtype, elems) : DeviceTensor.empty([elems], dtype);
}

function bufferOf(t: AnyTensor): CommBuffer {
  return t instanceof DeviceTensor ? t : (t as HostTensor).data;
}

/** A tensor of `shape` over a buffer (zero-copy; DeviceTensors as non-owning views). */
function view(b: CommBuffer, shape: number[], dtype: HostTensor['dtype']): AnyTensor {
  if (b instanceof DeviceTensor) return DeviceTensor.fromPointer(b.pointer, shape, dtype);
  return tensor(b as Float32Array | Uint16Array, shape, dtype);
}

export class Regroup {
  /** Shard tokens n and whole tokens P·n. */
  readonly shardTokens: number;
  readonly tokens: number;
  private readonly regions: ShardRegions;
  private readonly buffers: CommBuffer[] = [];

  /** `count` reusable head-group buffers (q, k, v) of `tokens` tokens. */
  constructor(private readonly comm: Communicator, private readonly cfg: ResolvedOptions, private readonly groups: HeadGroups,
    tokens: number, count: number) {
    this.tokens = tokens;
    this.shardTokens = tokens / comm.size;
    this.regions = shardRegions(cfg.tensorLayout, cfg.batch, this.shardTokens, cfg.heads, cfg.headDim, dtypeSize(cfg.dtype), comm.rank, groups);
    const elems = cfg.batch * tokens * groups.count[comm.rank] * cfg.headDim;
    for (let i = 0; i < count; i++) this.buffers.push(allocBuffer(comm.memory, cfg.dtype, elems));
  }

  /** Shape of a head-group tensor: [B][tokens][H_r][D] (or BHSD). */
  get groupShape(): number[] {
    const c = this.cfg;
    return actShape({ B: c.batch, S: this.tokens, H: this.groups.count[this.comm.rank], D: c.headDim }, c.tensorLayout);
  }

  /** All-to-all of shards (≤ count of them) into the head-group buffers; the group tensors, in order. */
  async gather(shards: AnyTensor[]): Promise<AnyTensor[]> {
    const { shard, group } = this.regions;
    await this.comm.allToAll(shards.map((s, i) => ({ src: bufferOf(s), dst: this.buffers[i], send: shard, recv: group })));
    return shards.map((_, i) => view(this.buffers[i], this.groupShape, this.cfg.dtype));
  }

  /** All-to-all of a head-group output back into a new shard of `shape` (host array or DeviceTensor). */
  async scatter(out: AnyTensor, shape: readonly number[]): Promise<AnyTensor> {
    const { shard, group } = this.regions;
    const dst: CommBuffer = this.comm.memory === 'host' ? allocHost(this.cfg.dtype, numel(shape)) : DeviceTensor.empty(shape, this.cfg.dtype);
    try {
      await this.comm.allToAll([{ src: bufferOf(out), dst, send: group, recv: shard }]);
    } catch (e) {
      if (dst instanceof DeviceTensor) dst.dispose();
      throw e;
    }
    if (dst instanceof DeviceTensor) return dst;
    return tensor(dst as Float32Array | Uint16Array, shape, this.cfg.dtype);
  }

  dispose(): void {
    for (const b of this.buffers) if (b instanceof DeviceTensor) b.dispose();
    this.buffers.length = 0;
  }
}
