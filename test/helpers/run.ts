// Runs the package on float64 activations and hands the result back as float64 BSHD, so tests read as
// "package(options, q, k, v) vs reference(q, k, v)".
import { MonarchAttention, denseAttentionSync } from './pkg';
import type { DenseOptions, DType, ForwardOptions, MonarchOptions, TensorLayout } from './pkg';
import { Act } from './act';
import { fromHost, toHost } from './tensors';

export type RunOptions = Omit<MonarchOptions, 'backend'> & { backend?: MonarchOptions['backend'] };

/** One forwardSync on a fresh instance (CPU backend unless given); inputs must be representable in dtype. */
export function monarch(o: RunOptions, q: Act, k: Act, v: Act, f?: ForwardOptions): Float64Array {
  const dtype: DType = o.dtype ?? 'float32';
  const layout: TensorLayout = o.tensorLayout ?? 'BSHD';
  const attn = new MonarchAttention({ backend: 'cpu', ...o, batch: o.batch ?? q.B } as MonarchOptions);
  try {
    const out = attn.forwardSync(toHost(q, dtype, layout), toHost(k, dtype, layout), toHost(v, dtype, layout), f);
    return fromHost(out as never, layout);
  } finally {
    attn.dispose();
  }
}

export interface DenseOut {
  out: Float64Array;
  lse?: Float32Array;
  entropy?: Float32Array;
}

/** denseAttentionSync on the CPU backend (unless given) in the given dtype. */
export function dense(q: Act, k: Act, v: Act, o: DenseOptions = {}, dtype: DType = 'float32'): DenseOut {
  const layout: TensorLayout = o.tensorLayout ?? 'BSHD';
  const r = denseAttentionSync(toHost(q, dtype, layout), toHost(k, dtype, layout), toHost(v, dtype, layout), { backend: 'cpu', ...o });
  return {
    out: fromHost(r.out as never, layout),
    lse: r.lse ? Float32Array.from(r.lse.data) : undefined,
    entropy: r.entropy ? Float32Array.from(r.entropy.data) : undefined,
  };
}

/** A short description of a case for failure messages. */
export function desc(o: Record<string, unknown>): string {
  return JSON.stringify(o, (_k, v) => (v instanceof Uint8Array ? `mask(${v.length})` : v));
}
