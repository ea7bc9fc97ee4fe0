// Conversions between float64 BSHD activations (helpers/act.ts) and the package's HostTensor. Tests
// keep values exactly representable in the dtype under test, so the float64 reference sees exactly what
// the package sees.
import { tensor, toBfloat16, fromBfloat16, toFloat16, fromFloat16, toFloat32 } from './pkg';
import type { DType, HostTensor, TensorLayout } from './pkg';
import { Act, act, bhsdToBshd, bshdToBhsd } from './act';
import { Rng, randn } from './rng';

export * from './act';

// The addon creates its typed arrays in Node's main realm, while jest runs tests (and lib/) in a vm context
// with its own Float32Array / Uint16Array; lib's `instanceof` checks then reject arrays the addon returned
// (see conversions-realm.test.ts). The helpers copy every array into this realm so that the numerics tests
// are not all masked by that one issue.
const u16 = (x: ArrayLike<number>): Uint16Array => Uint16Array.from(x);
const f32 = (x: ArrayLike<number>): Float32Array => Float32Array.from(x);

/** Rounds float64 values to the nearest value of `dtype` (through fp32, then the package's RNE conversions). */
export function roundTo(x: ArrayLike<number>, dtype: DType): Float64Array {
  const f = f32(x);
  if (dtype === 'float32') return Float64Array.from(f);
  if (dtype === 'bfloat16') return Float64Array.from(fromBfloat16(u16(toBfloat16(f))));
  return Float64Array.from(fromFloat16(u16(toFloat16(f))));
}

export function roundAct(a: Act, dtype: DType): Act {
  return act(roundTo(a.x, dtype), a.B, a.S, a.H, a.D);
}

/** Random normal activation times `scale`, rounded to `dtype`. */
export function randAct(rng: Rng, B: number, S: number, H: number, D: number, scale = 1, dtype: DType = 'float32'): Act {
  return act(roundTo(randn(rng, B * S * H * D, scale), dtype), B, S, H, D);
}

/** Float64 values (representable in dtype) → the storage array of dtype. */
export function encode(x: ArrayLike<number>, dtype: DType): Float32Array | Uint16Array {
  const f = f32(x);
  if (dtype === 'float32') return f;
  return u16(dtype === 'bfloat16' ? toBfloat16(f) : toFloat16(f));
}

/** The package HostTensor for an activation, in the given dtype and layout. */
export function toHost(a: Act, dtype: DType = 'float32', layout: TensorLayout = 'BSHD'): HostTensor {
  const data = layout === 'BSHD' ? a.x : bshdToBhsd(a);
  const shape = layout === 'BSHD' ? [a.B, a.S, a.H, a.D] : [a.B, a.H, a.S, a.D];
  return tensor(encode(data, dtype), shape, dtype);
}

/** A package output tensor back to float64 BSHD. */
export function fromHost(t: HostTensor, layout: TensorLayout = 'BSHD'): Float64Array {
  const local = { ...t, data: t.dtype === 'float32' ? f32(t.data) : u16(t.data) } as HostTensor;
  const f = toFloat32(local);
  if (layout === 'BSHD') return Float64Array.from(f);
  const [B, H, S, D] = t.shape;
  return bhsdToBshd(f, B, S, H, D);
}
