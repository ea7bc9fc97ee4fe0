// Host tensors: construction, dtype conversion (through the addon's round-to-nearest-even converters)
// and the shape/dtype checks shared by the attention entry points.
import { native, type DTypeCode, type Strides } from './native';
import type { DType, HostData, HostTensor, TensorLayout } from './types';
import { show, isTyped } from './validate';

export const DTYPES: readonly DType[] = ['float32', 'float16', 'bfloat16'];

/** dtype → code of include/monarch/monarch.h (0 = float32, 1 = float16, 2 = bfloat16). */
export function dtypeCode(dtype: DType): DTypeCode {
  return dtype === 'float32' ? 0 : dtype === 'float16' ? 1 : 2;
}

/** Bytes per element. */
export function dtypeSize(dtype: DType): number {
  return dtype === 'float32' ? 4 : 2;
}

/** Product of a shape's dimensions. */
export function numel(shape: readonly number[]): number {
  let n = 1;
  for (const d of shape) n *= d;
  return n;
}

function checkDtype(name: string, dtype: unknown): DType {
  if (typeof dtype !== 'string') {
    throw new TypeError(`${name} must be one of 'float32', 'float16', 'bfloat16', received ${show(dtype)}`);
  }
  if (!(DTYPES as readonly string[]).includes(dtype)) {
    throw new RangeError(`${name} ${show(dtype)} is not one of 'float32', 'float16', 'bfloat16'`);
  }
  return dtype as DType;
}

/** Validates a shape (non-empty array of integers ≥ 1). */
export function checkShape(name: string, shape: unknown): number[] {
  if (!Array.isArray(shape)) throw new TypeError(`${name} must be an array of integers, received ${show(shape)}`);
  if (shape.length === 0) throw new RangeError(`${name} must have at least one dimension`);
  shape.forEach((d, i) => {
    if (typeof d !== 'number' || !Number.isInteger(d)) {
      throw new TypeError(`${name}[${i}] must be an integer, received ${show(d)}`);
    }
    if (d < 1) throw new RangeError(`${name}[${i}] ${d} must be >= 1`);
  });
  return shape.slice() as number[];
}

/**
 * A host tensor over `data` (not copied). dtype defaults to float32 for a Float32Array; a Uint16Array
 * holds float16/bfloat16 bit patterns and needs the dtype (a compile error without it, as with a data
 * kind that does not match the dtype; the same checks throw at run time for plain JS).
 */
export function tensor(data: Float32Array, shape: readonly number[], dtype?: 'float32'): HostTensor<'float32'>;
export function tensor<D extends 'float16' | 'bfloat16'>(data: Uint16Array, shape: readonly number[], dtype: D): HostTensor<D>;
export function tensor<D extends DType>(data: HostData<D>, shape: readonly number[], dtype: D): HostTensor<D>;
export function tensor(data: Float32Array | Uint16Array, shape: readonly number[], dtype?: DType): HostTensor {
  const shp = checkShape('shape', shape);
  let dt: DType;
  if (isTyped(data, 'Float32Array')) {
    dt = dtype === undefined ? 'float32' : checkDtype('dtype', dtype);
    if (dt !== 'float32') throw new TypeError(`a Float32Array needs dtype 'float32', received ${show(dtype)}`);
  } else if (isTyped(data, 'Uint16Array')) {
    if (dtype === undefined) throw new TypeError(`a Uint16Array needs dtype 'float16' or 'bfloat16', received undefined`);
    dt = checkDtype('dtype', dtype);
    if (dt === 'float32') throw new TypeError(`a Uint16Array needs dtype 'float16' or 'bfloat16', received 'float32'`);
  } else {
    throw new TypeError(`data must be a Float32Array or a Uint16Array, received ${show(data)}`);
  }
  const n = numel(shp);
  if (n !== data.length) {
    throw new RangeError(`shape [${shp.join(', ')}] holds ${n} elements but data.length is ${data.length}`);
  }
  return Object.freeze({ data, shape: Object.freeze(shp), dtype: dt }) as HostTensor;
}

/** True for an object shaped like a HostTensor (data/shape/dtype). */
export function isHostTensor(x: unknown): x is HostTensor {
  if (typeof x !== 'object' || x === null) return false;
  const t = x as Partial<HostTensor>;
  return (isTyped(t.data, 'Float32Array') || isTyped(t.data, 'Uint16Array')) && Array.isArray(t.shape) && typeof t.dtype === 'string';
}

/**
 * A caller's host-tensor argument read once: any object becomes a new plain object { data, shape (an
 * array is copied), dtype } whose fields were each read exactly once (getters that answer differently
 * later cannot make the checked tensor differ from the one used); anything else is returned as it is,
 * for the checks to refuse.
 */
export function readOnce<T>(t: T): T {
  if (typeof t !== 'object' || t === null) return t;
  const src = t as unknown as { data?: unknown; shape?: unknown; dtype?: unknown };
  const data = src.data, shape = src.shape, dtype = src.dtype;
  return { data, shape: Array.isArray(shape) ? Array.from(shape) : shape, dtype } as unknown as T;
}

/** Checks a user-supplied host tensor's consistency (data kind vs dtype, element count). */
export function checkHostTensor(name: string, t: unknown): HostTensor {
  if (!isHostTensor(t)) throw new TypeError(`${name} must be a HostTensor or a DeviceTensor, received ${show(t)}`);
  const dt = checkDtype(`${name}.dtype`, t.dtype);
  if ((dt === 'float32') !== (isTyped(t.data, 'Float32Array'))) {
    throw new TypeError(`${name}.data is a ${t.data.constructor.name} but ${name}.dtype is '${dt}'`);
  }
  const n = numel(t.shape);
  if (n !== t.data.length) throw new RangeError(`${name}.shape [${t.shape.join(', ')}] holds ${n} elements but ${name}.data.length is ${t.data.length}`);
  return t;
}

/**
 * The same memory as a typed array of this module's realm (zero-copy): arrays made by the addon belong
 * to the main V8 context, which `instanceof` in a vm sandbox (jest) does not recognise.
 */
export function localF32(x: Float32Array): Float32Array {
  if (x instanceof Float32Array) return x;
  const a: { buffer: ArrayBufferLike; byteOffset: number; length: number } = x;
  return new Float32Array(a.buffer, a.byteOffset, a.length);
}
export function localU16(x: Uint16Array): Uint16Array {
  if (x instanceof Uint16Array) return x;
  const a: { buffer: ArrayBufferLike; byteOffset: number; length: number } = x;
  return new Uint16Array(a.buffer, a.byteOffset, a.length);
}
/** localF32 / localU16 by kind. */
export function localArray(x: Float32Array | Uint16Array): Float32Array | Uint16Array {
  return isTyped(x, 'Float32Array') ? localF32(x) : localU16(x as Uint16Array);
}

/** float32 → bfloat16 bit patterns (round to nearest even, NaN preserved). */
export function toBfloat16(x: Float32Array): Uint16Array {
  if (!(isTyped(x, 'Float32Array'))) throw new TypeError(`toBfloat16 expects a Float32Array, received ${show(x)}`);
  return localU16(native().f32ToBf16(x));
}
/** bfloat16 bit patterns → float32 (exact). */
export function fromBfloat16(x: Uint16Array): Float32Array {
  if (!(isTyped(x, 'Uint16Array'))) throw new TypeError(`fromBfloat16 expects a Uint16Array, received ${show(x)}`);
  return localF32(native().bf16ToF32(x));
}
/** float32 → float16 bit patterns (round to nearest even, NaN preserved, overflow → ±Inf). */
export function toFloat16(x: Float32Array): Uint16Array {
  if (!(isTyped(x, 'Float32Array'))) throw new TypeError(`toFloat16 expects a Float32Array, received ${show(x)}`);
  return localU16(native().f32ToF16(x));
}
/** float16 bit patterns → float32 (exact). */
export function fromFloat16(x: Uint16Array): Float32Array {
  if (!(isTyped(x, 'Uint16Array'))) throw new TypeError(`fromFloat16 expects a Uint16Array, received ${show(x)}`);
  return localF32(native().f16ToF32(x));
}

/** Any host tensor → a new Float32Array with its values. */
export function toFloat32(t: HostTensor): Float32Array {
  checkHostTensor('t', t);
  if (t.dtype === 'float32') return Float32Array.from(t.data as Float32Array);
  return t.dtype === 'bfloat16' ? fromBfloat16(t.data as Uint16Array) : fromFloat16(t.data as Uint16Array);
}

/** A new tensor of `dtype` with t's values (always a copy, also when the dtype is unchanged). */
export function castTensor<D extends DType>(t: HostTensor, dtype: D): HostTensor<D> {
  checkHostTensor('t', t);
  const dt = checkDtype('dtype', dtype);
  if (dt === t.dtype) return tensor(t.data.slice(), t.shape, dt as DType) as HostTensor<D>;
  const f = toFloat32(t);
  const data = dt === 'float32' ? f : dt === 'bfloat16' ? toBfloat16(f) : toFloat16(f);
  return tensor(data, t.shape, dt as DType) as HostTensor<D>;
}

/** The logical dims of a 4-D attention activation. */
export interface ActDims { B: number; S: number; H: number; D: number }

/** [B][S][H][D] (BSHD) or [B][H][S][D] (BHSD) → dims. */
export function actDims(shape: readonly number[], layout: TensorLayout): ActDims {
  return layout === 'BSHD'
    ? { B: shape[0], S: shape[1], H: shape[2], D: shape[3] }
    : { B: shape[0], S: shape[2], H: shape[1], D: shape[3] };
}

/** dims → shape in `layout`. */
export function actShape(d: ActDims, layout: TensorLayout): number[] {
  return layout === 'BSHD' ? [d.B, d.S, d.H, d.D] : [d.B, d.H, d.S, d.D];
}

/** Element strides [batch, token, head] of a contiguous activation (D contiguous). */
export function actStrides(d: ActDims, layout: TensorLayout): Strides {
  return layout === 'BSHD' ? [d.S * d.H * d.D, d.H * d.D, d.D] : [d.H * d.S * d.D, d.D, d.S * d.D];
}

/** The index names of a layout's dims, for messages. */
export function dimIndex(layout: TensorLayout): { B: number; S: number; H: number; D: number } {
  return layout === 'BSHD' ? { B: 0, S: 1, H: 2, D: 3 } : { B: 0, S: 2, H: 1, D: 3 };
}
