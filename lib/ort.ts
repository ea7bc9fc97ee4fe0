// Host-side adapter to and from onnxruntime-node tensors, duck-typed (no dependency on
// onnxruntime-node): an ORT tensor is any object { type, dims, data }. ORT's JS API has no bfloat16
// data type we can rely on, so bfloat16 goes through float16 or float32 (rounded to nearest even).
import type { DType, HostTensor } from './types';
import { castTensor, tensor, toFloat32 } from './tensor';
import { isTyped, show } from './validate';

/** The shape of an onnxruntime-node Tensor that the adapter reads and builds. */
export interface OrtTensorLike {
  type: string;                          // 'float32' | 'float16' | ...
  dims: readonly number[];
  data: Float32Array | Uint16Array | unknown;
}

/**
 * An ORT tensor → HostTensor of `dtype` (default: the ORT type, 'float32' or 'float16'). The data is
 * shared when no conversion is needed, else converted (float16 → bfloat16 goes through float32).
 */
export function fromOrt(t: OrtTensorLike, dtype?: DType): HostTensor {
  if (typeof t !== 'object' || t === null) throw new TypeError(`t must be an onnxruntime tensor {type, dims, data}, received ${show(t)}`);
  const { type, dims, data } = t;
  if (!Array.isArray(dims)) throw new TypeError(`t.dims must be an array of integers, received ${show(dims)}`);
  let h: HostTensor;
  if (type === 'float32') {
    if (!isTyped(data, 'Float32Array')) throw new TypeError(`t.data must be a Float32Array for type 'float32', received ${show(data)}`);
    h = tensor(data, dims, 'float32');
  } else if (type === 'float16') {
    // onnxruntime-node holds float16 as Uint16Array bit patterns (or Float16Array where the runtime has it).
    if (!isTyped(data, 'Uint16Array')) throw new TypeError(`t.data must be a Uint16Array of float16 bits for type 'float16', received ${show(data)}`);
    h = tensor(data, dims, 'float16');
  } else {
    throw new RangeError(`t.type ${show(type)} is not supported (supported: 'float32', 'float16')`);
  }
  return dtype === undefined || dtype === h.dtype ? h : castTensor(h, dtype);
}

/**
 * A HostTensor → the fields of an ORT tensor ({ type, dims, data }), ready for
 * `new ort.Tensor(r.type, r.data, r.dims)`. bfloat16 becomes `as` ('float32' by default, or 'float16').
 * float32 / float16 data is shared, not copied.
 */
export function toOrt(t: HostTensor, as: 'float32' | 'float16' = 'float32'): { type: 'float32' | 'float16'; dims: number[]; data: Float32Array | Uint16Array } {
  if (as !== 'float32' && as !== 'float16') throw new RangeError(`as must be 'float32' or 'float16', received ${show(as)}`);
  const dims = t.shape.slice();
  if (t.dtype === 'float32') return { type: 'float32', dims, data: t.data };
  if (t.dtype === 'float16') return { type: 'float16', dims, data: t.data };
  if (as === 'float32') return { type: 'float32', dims, data: toFloat32(t) };
  return { type: 'float16', dims, data: castTensor(t, 'float16').data };
}
