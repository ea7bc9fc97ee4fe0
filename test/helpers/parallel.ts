// Sequence-parallel test helpers: split a whole-sequence host tensor into P token shards (BSHD or BHSD)
// and join shards back, on the raw storage arrays (exact for every dtype), and run P simulated ranks.
import { createSimulatedGroup, SequenceParallelAttention, tensor } from './pkg';
import type { HostTensor, SequenceParallelOptions, SimulatedCommunicator, TensorLayout } from './pkg';

type Data = Float32Array | Uint16Array;

function make(like: Data, n: number): Data {
  return like instanceof Float32Array || like.constructor.name === 'Float32Array' ? new Float32Array(n) : new Uint16Array(n);
}

/** Tokens [s0, s1) of every batch (and head, BHSD) of a [B][S][H][D] / [B][H][S][D] tensor. */
export function sliceTokensOf(t: HostTensor, layout: TensorLayout, s0: number, s1: number): HostTensor {
  const [B, a, b, D] = t.shape;
  const bshd = layout === 'BSHD';
  const S = bshd ? a : b, H = bshd ? b : a, n = s1 - s0;
  const out = make(t.data, B * n * H * D);
  if (bshd) {
    for (let bb = 0; bb < B; bb++) out.set(t.data.subarray((bb * S + s0) * H * D, (bb * S + s1) * H * D), bb * n * H * D);
  } else {
    for (let bh = 0; bh < B * H; bh++) out.set(t.data.subarray((bh * S + s0) * D, (bh * S + s1) * D), bh * n * D);
  }
  return tensor(out, bshd ? [B, n, H, D] : [B, H, n, D], t.dtype);
}

/** P equal token shards. */
export function shardTokens(t: HostTensor, layout: TensorLayout, P: number): HostTensor[] {
  const S = layout === 'BSHD' ? t.shape[1] : t.shape[2], n = S / P;
  return Array.from({ length: P }, (_, r) => sliceTokensOf(t, layout, r * n, (r + 1) * n));
}

/** Joins token shards (inverse of shardTokens). */
export function joinTokens(parts: HostTensor[], layout: TensorLayout): HostTensor {
  const [B, a, b, D] = parts[0].shape;
  const bshd = layout === 'BSHD';
  const n = bshd ? a : b, H = bshd ? b : a, P = parts.length, S = n * P;
  const out = make(parts[0].data, B * S * H * D);
  parts.forEach((p, r) => {
    if (bshd) {
      for (let bb = 0; bb < B; bb++) out.set(p.data.subarray(bb * n * H * D, (bb + 1) * n * H * D), (bb * S + r * n) * H * D);
    } else {
      for (let bh = 0; bh < B * H; bh++) out.set(p.data.subarray(bh * n * D, (bh + 1) * n * D), (bh * S + r * n) * D);
    }
  });
  return tensor(out, bshd ? [B, S, H, D] : [B, H, S, D], parts[0].dtype);
}

/** One SequenceParallelAttention per rank of a new simulated group (created concurrently, as ranks would). */
export async function createRanks(P: number, opts: SequenceParallelOptions | ((rank: number) => SequenceParallelOptions), timeoutMs = 20000):
  Promise<{ comms: SimulatedCommunicator[]; sp: SequenceParallelAttention[] }> {
  const comms = createSimulatedGroup(P, { timeoutMs });
  const sp = await Promise.all(comms.map((c, r) => SequenceParallelAttention.create(c, typeof opts === 'function' ? opts(r) : opts)));
  return { comms, sp };
}

/** Every rank's forward on its shards, concurrently; the joined output. */
export async function parallelForward(sp: SequenceParallelAttention[], q: HostTensor, k: HostTensor, v: HostTensor,
  layout: TensorLayout, keyMask?: Uint8Array): Promise<HostTensor> {
  const P = sp.length;
  const [qs, ks, vs] = [q, k, v].map((t) => shardTokens(t, layout, P));
  const outs = await Promise.all(sp.map((s, r) => s.forward(qs[r], ks[r], vs[r], keyMask ? { keyMask } : undefined)));
  return joinTokens(outs, layout);
}
