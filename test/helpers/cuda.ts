// CUDA test helpers: device tensors from float64 activations, NaN poisoning of the memory an output will
// land in, and the "small multiple of the CPU backend's own low-precision error" tolerance.
import { DeviceTensor } from './pkg';
import type { DType, HostTensor, TensorLayout } from './pkg';
import { Act } from './act';
import { maxAbs, maxAbsDiff } from './compare';
import { fromHost, toHost } from './tensors';

export function toDevice(a: Act, dtype: DType, layout: TensorLayout = 'BSHD'): DeviceTensor {
  return DeviceTensor.fromHost(toHost(a, dtype, layout));
}

export function fromDevice(t: DeviceTensor, layout: TensorLayout = 'BSHD'): Float64Array {
  return fromHost(t.downloadSync() as HostTensor, layout);
}

/** Raw 16-bit patterns of a device tensor (for bit-identity checks). */
export function deviceBits(t: DeviceTensor): Uint16Array {
  return Uint16Array.from(t.downloadSync().data as Uint16Array);
}

/**
 * NaN-poisons device memory of `elems` elements of dtype and frees it, so that the next allocation of that
 * size (the output of the run that follows) most likely reuses the poisoned block. Returns its address;
 * tests compare it with the output's `pointer` and say whether the poisoning reached the output. Any output
 * element a kernel forgot to write then reads NaN (checked with expectAllFinite).
 */
export function poisonNextAlloc(elems: number, dtype: DType): bigint {
  const t = DeviceTensor.empty([elems], dtype);
  t.fill(NaN);
  const p = t.pointer;
  t.dispose();
  return p;
}

/** The storage unit roundoff u of a dtype. */
export function unitRoundoff(dtype: DType): number {
  return dtype === 'bfloat16' ? 2 ** -9 : dtype === 'float16' ? 2 ** -12 : 2 ** -24;
}

/**
 * Tolerance for a CUDA low-precision result vs the CPU fp32 result on the same rounded inputs. The CPU
 * backend in the same dtype rounds the same stored intermediates (aR, aL, y and the output, §A.5) and its
 * error vs fp32, eCpu, is the yardstick. The GPU additionally rounds the softmax weights P to the dtype before
 * the tensor-core P·V / P·K products (FlashAttention practice) — about one more rounding per stage — so its
 * error should be ≲ 2·eCpu; we allow 3·eCpu, with a floor of 4u·max|ref| for cases where eCpu happens to be
 * tiny. A real kernel bug (wrong tile, missed row, wrong mask) shows up as O(0.1–1) errors, ≫ this bound.
 */
export function cudaTolerance(cpuLow: ArrayLike<number>, ref32: ArrayLike<number>, dtype: DType): { atol: number; rtol: number; eCpu: number } {
  const eCpu = maxAbsDiff(cpuLow, ref32);
  return { atol: Math.max(3 * eCpu, 4 * unitRoundoff(dtype) * maxAbs(ref32)), rtol: 0, eCpu };
}
