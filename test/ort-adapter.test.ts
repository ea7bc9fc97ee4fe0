// onnxruntime-node adapter with plain objects shaped like ORT tensors (no onnxruntime dependency).
import { fromOrt, toOrt, tensor, toBfloat16, fromBfloat16, toFloat16, fromFloat16 } from './helpers/pkg';

const rnd = (n: number): Float32Array => Float32Array.from({ length: n }, () => Math.random() * 4 - 2);

test('float32 and float16 share data both ways', () => {
  const f = rnd(24);
  const h = fromOrt({ type: 'float32', dims: [2, 3, 4], data: f });
  expect(h.data).toBe(f);
  expect(h.shape).toEqual([2, 3, 4]);
  const back = toOrt(h);
  expect(back).toEqual({ type: 'float32', dims: [2, 3, 4], data: f });
  const bits = toFloat16(f);
  expect(toOrt(fromOrt({ type: 'float16', dims: [24], data: bits })).data).toBe(bits);
});

test('bfloat16 goes through float32 or float16 with round-to-nearest-even', () => {
  const f = rnd(16);
  const bf = tensor(toBfloat16(f), [4, 4], 'bfloat16');
  const o32 = toOrt(bf);
  expect(o32.type).toBe('float32');
  expect(Array.from(o32.data as Float32Array)).toEqual(Array.from(fromBfloat16(bf.data as Uint16Array)));
  const o16 = toOrt(bf, 'float16');
  expect(Array.from(o16.data as Uint16Array)).toEqual(Array.from(toFloat16(fromBfloat16(bf.data as Uint16Array))));
  const again = fromOrt({ type: 'float16', dims: [4, 4], data: o16.data }, 'bfloat16');
  expect(again.dtype).toBe('bfloat16');
  expect(Array.from(again.data)).toEqual(Array.from(toBfloat16(fromFloat16(o16.data as Uint16Array))));
});

test('bad ORT tensors name the field', () => {
  expect(() => fromOrt({ type: 'int64', dims: [1], data: new BigInt64Array(1) })).toThrow(/t\.type "int64" is not supported/);
  expect(() => fromOrt({ type: 'float32', dims: [2], data: new Uint16Array(2) })).toThrow(/t\.data must be a Float32Array/);
  expect(() => fromOrt({ type: 'float32', dims: [3], data: new Float32Array(2) })).toThrow(RangeError);
  expect(() => toOrt(tensor(rnd(2), [2]), 'int8' as 'float32')).toThrow(/as must be/);
});
