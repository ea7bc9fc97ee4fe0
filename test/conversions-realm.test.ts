// The package must accept the typed arrays it returns itself. Under jest (the project's own test runner)
// lib/ runs in a vm context, while the addon creates Float32Array / Uint16Array objects in Node's main
// realm; an `instanceof Float32Array` check in lib/ then rejects the package's own results (a user who
// tests with jest hits the same). Checking ArrayBuffer.isView + the tag (Object.prototype.toString) is
// realm-independent. The numerics tests copy arrays to avoid this; these tests do not (castTensor does the
// chaining inside lib/, so it fails the same way).
import { castTensor, fromBfloat16, fromFloat16, tensor, toBfloat16, toFloat16, toFloat32 } from './helpers/pkg';

describe('conversions accept arrays returned by the package', () => {
  test('fromBfloat16(toBfloat16(x)) and fromFloat16(toFloat16(x))', () => {
    const x = Float32Array.of(1, -2.5, 0.375);
    expect(Array.from(fromBfloat16(toBfloat16(x)))).toEqual([1, -2.5, 0.375]);
    expect(Array.from(fromFloat16(toFloat16(x)))).toEqual([1, -2.5, 0.375]);
    expect(Array.from(toBfloat16(fromBfloat16(Uint16Array.of(0x3f80))))).toEqual([0x3f80]);
  });
  test('tensor(toBfloat16(x), shape, "bfloat16") and chained castTensor', () => {
    const x = Float32Array.of(1, 2, 3, 4);
    const t = tensor(toBfloat16(x), [2, 2], 'bfloat16');
    expect(Array.from(toFloat32(t))).toEqual([1, 2, 3, 4]);
    const h = castTensor(castTensor(tensor(x, [4]), 'bfloat16'), 'float16');
    expect(Array.from(toFloat32(h))).toEqual([1, 2, 3, 4]);
  });
});

describe('castTensor / toFloat32 (castTensor chains the conversions internally)', () => {
  test('fp32 → bf16 → fp16 → fp32 on values exact in all three', () => {
    const vals = Float32Array.of(0, 1, -2.5, 0.375, 1024, -3.140625);
    const t = tensor(vals, [2, 3]);
    const bf = castTensor(t, 'bfloat16');
    expect(bf.dtype).toBe('bfloat16');
    expect(bf.shape).toEqual([2, 3]);
    const h = castTensor(bf, 'float16');
    expect(Array.from(toFloat32(h))).toEqual(Array.from(vals));
    const back = castTensor(h, 'float32');
    expect(Object.prototype.toString.call(back.data)).toBe('[object Float32Array]'); // realm-independent
    expect(Array.from(back.data)).toEqual(Array.from(vals));
    // a copy, not an alias
    expect(castTensor(t, 'float32').data).not.toBe(t.data);
  });
  test('fp32 → bf16 rounds (1 + 2^-8 + 2^-9 → 1 + 2^-7)', () => {
    const t = castTensor(tensor(Float32Array.of(1 + 2 ** -8 + 2 ** -9), [1]), 'bfloat16');
    expect(toFloat32(t)[0]).toBe(1 + 2 ** -7);
  });
});
