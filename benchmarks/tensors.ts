// Host/device tensor plumbing for the CLI: input sets, slicing tokens, downloading to float32.
import { DeviceTensor, tensor, toFloat32 } from '../lib/index';
import type { HostTensor } from '../lib/types';

export type AnyTensor = HostTensor | DeviceTensor;
export type QKV = [AnyTensor, AnyTensor, AnyTensor];

/** Float32 copy of a host or device tensor. */
export function toHostF32(t: AnyTensor): Float32Array {
  return t instanceof DeviceTensor ? toFloat32(t.downloadSync()) : toFloat32(t);
}

/** Upload for the CUDA backend; the CPU backend keeps host tensors. */
export function place(t: HostTensor, backend: 'cpu' | 'cuda'): AnyTensor {
  return backend === 'cuda' ? DeviceTensor.fromHost(t) : t;
}

export function disposeAll(ts: Iterable<AnyTensor | undefined>): void {
  for (const t of ts) if (t instanceof DeviceTensor && !t.disposed) t.dispose();
}

/** Tokens [t0, t1) of a BSHD host tensor [B][S][H][D] (copies, keeps dtype). */
export function sliceTokens(t: HostTensor, t0: number, t1: number): HostTensor {
  const [B, S, H, D] = t.shape;
  const row = H * D;
  const n = t1 - t0;
  const Ctor = t.data instanceof Float32Array ? Float32Array : Uint16Array;
  const out = new Ctor(B * n * row);
  for (let b = 0; b < B; b++) out.set(t.data.subarray((b * S + t0) * row, (b * S + t1) * row), b * n * row);
  return tensor(out, [B, n, H, D], t.dtype);
}

/** Concatenate BSHD host tensors along tokens. */
export function concatTokens(parts: HostTensor[]): HostTensor {
  const [B, , H, D] = parts[0].shape;
  const row = H * D;
  const S = parts.reduce((s, p) => s + p.shape[1], 0);
  const Ctor = parts[0].data instanceof Float32Array ? Float32Array : Uint16Array;
  const out = new Ctor(B * S * row);
  for (let b = 0; b < B; b++) {
    let off = 0;
    for (const p of parts) {
      const n = p.shape[1];
      out.set(p.data.subarray(b * n * row, (b + 1) * n * row), (b * S + off) * row);
      off += n;
    }
  }
  return tensor(out, [B, S, H, D], parts[0].dtype);
}
