// info() has the documented shape and is self-consistent; the host dtype conversions round to nearest even
// (checked on hand-picked bit patterns), are exact on representable values and preserve NaN / ±Inf / −0.
import * as pkg from './helpers/pkg';
import { info } from './helpers/pkg';

// Results are copied into this realm's typed arrays before being passed back to the package: jest runs
// lib/ in a vm context whose Uint16Array differs from the addon's (conversions-realm.test.ts tests that).
const toBfloat16 = (x: Float32Array): Uint16Array => Uint16Array.from(pkg.toBfloat16(x));
const fromBfloat16 = (x: Uint16Array): Float32Array => Float32Array.from(pkg.fromBfloat16(x));
const toFloat16 = (x: Float32Array): Uint16Array => Uint16Array.from(pkg.toFloat16(x));
const fromFloat16 = (x: Uint16Array): Float32Array => Float32Array.from(pkg.fromFloat16(x));

describe('info()', () => {
  test('documented fields and consistency', () => {
    const i = info();
    expect(typeof i.version).toBe('string');
    expect(i.version).toMatch(/^\d+\.\d+\.\d+/);
    expect(Number.isInteger(i.napiVersion) && i.napiVersion >= 8).toBe(true);
    expect(typeof i.compiledWithCuda).toBe('boolean');
    expect(i.cudaArchs === null || typeof i.cudaArchs === 'string').toBe(true);
    expect(i.cudaStatus === null || Number.isInteger(i.cudaStatus)).toBe(true);
    expect(typeof i.cudaMessage).toBe('string');
    expect(Number.isInteger(i.deviceCount) && i.deviceCount >= 0).toBe(true);
    expect(Number.isInteger(i.cpuThreads) && i.cpuThreads >= 1).toBe(true);
    if (!i.compiledWithCuda) {
      expect(i.deviceCount).toBe(0);
      expect(i.cudaArchs).toBeNull();
    }
    if (i.deviceCount === 0) {
      expect(i.device).toBeNull();
    } else {
      const d = i.device!;
      expect(typeof d.name).toBe('string');
      expect(d.computeCapability).toMatch(/^\d+\.\d+$/);
      for (const key of ['smCount', 'memoryBytes', 'driverVersion', 'runtimeVersion'] as const) expect(d[key]).toBeGreaterThan(0);
    }
  });
});

const bits32 = (x: number): number => new Uint32Array(Float32Array.of(x).buffer)[0];
const f32 = (bits: number): number => new Float32Array(Uint32Array.of(bits).buffer)[0];

describe('bfloat16 conversion', () => {
  test('representable values round-trip exactly (all 65536 patterns except NaNs)', () => {
    const all = Uint16Array.from({ length: 65536 }, (_, i) => i);
    const back = toBfloat16(fromBfloat16(all));
    for (let i = 0; i < 65536; i++) {
      const isNaN = (i & 0x7f80) === 0x7f80 && (i & 0x7f) !== 0;
      if (isNaN) expect(Number.isNaN(fromBfloat16(Uint16Array.of(back[i]))[0])).toBe(true);
      else if (back[i] !== i) throw new Error(`bf16 0x${i.toString(16)} → 0x${back[i].toString(16)}`);
    }
    // fromBfloat16 is the upper half of the fp32 pattern
    expect(bits32(fromBfloat16(Uint16Array.of(0x3fc0))[0])).toBe(0x3fc00000);
  });
  test('round to nearest even on hand-picked values', () => {
    const cases: Array<[number, number]> = [
      [f32(0x3f808000), 0x3f80], // 1 + 2^-8: tie between 0x3F80 and 0x3F81 → even 0x3F80
      [f32(0x3f818000), 0x3f82], // 1 + 3·2^-8: tie → even 0x3F82
      [f32(0x3f808001), 0x3f81], // just above the tie → up
      [f32(0x3f807fff), 0x3f80], // just below the tie → down
      [f32(0xbf818000), 0xbf82], // negative tie → even
      [f32(0x7f7fffff), 0x7f80], // FLT_MAX rounds up to +Inf
      [Infinity, 0x7f80],
      [-Infinity, 0xff80],
      [-0, 0x8000],
      [f32(0x00008000), 0x0000], // subnormal tie → even (0)
      [f32(0x00018000), 0x0002], // subnormal tie → even (2)
    ];
    const out = toBfloat16(Float32Array.from(cases.map((c) => c[0])));
    cases.forEach(([x, want], i) => {
      if (out[i] !== want) throw new Error(`bf16(${x} = 0x${bits32(x).toString(16)}) = 0x${out[i].toString(16)}, expected 0x${want.toString(16)}`);
    });
    expect(Number.isNaN(fromBfloat16(toBfloat16(Float32Array.of(NaN)))[0])).toBe(true);
    // a NaN whose payload lives only in the low 16 bits must stay NaN (not become Inf)
    expect(Number.isNaN(fromBfloat16(toBfloat16(Float32Array.of(f32(0x7f800001))))[0])).toBe(true);
  });
});

describe('float16 conversion', () => {
  test('representable values round-trip exactly (all 65536 patterns except NaNs)', () => {
    const all = Uint16Array.from({ length: 65536 }, (_, i) => i);
    const back = toFloat16(fromFloat16(all));
    for (let i = 0; i < 65536; i++) {
      const isNaN = (i & 0x7c00) === 0x7c00 && (i & 0x3ff) !== 0;
      if (isNaN) expect(Number.isNaN(fromFloat16(Uint16Array.of(back[i]))[0])).toBe(true);
      else if (back[i] !== i) throw new Error(`fp16 0x${i.toString(16)} → 0x${back[i].toString(16)}`);
    }
    expect(Array.from(fromFloat16(Uint16Array.of(0x3c00, 0xc000, 0x7bff, 0x0001, 0x0400)))).toEqual([1, -2, 65504, 2 ** -24, 2 ** -14]);
  });
  test('round to nearest even on hand-picked values', () => {
    const cases: Array<[number, number]> = [
      [1 + 2 ** -11, 0x3c00], // tie → even
      [1 + 3 * 2 ** -11, 0x3c02], // tie → even
      [1 + 2 ** -11 + 2 ** -20, 0x3c01], // above the tie → up
      [65504, 0x7bff],
      [65519, 0x7bff], // below the overflow tie
      [65520, 0x7c00], // tie between 65504 and 65536 → even → overflow to +Inf
      [-1e6, 0xfc00],
      [2 ** -24, 0x0001], // smallest subnormal
      [2 ** -25, 0x0000], // tie → even (0)
      [3 * 2 ** -25, 0x0002], // tie → even (2)
      [2 ** -25 + 2 ** -40, 0x0001], // above the tie → up
      [-0, 0x8000],
      [2 ** -14 - 2 ** -25, 0x0400], // tie at the subnormal/normal boundary → even (0x400)
    ];
    const out = toFloat16(Float32Array.from(cases.map((c) => c[0])));
    cases.forEach(([x, want], i) => {
      if (out[i] !== want) throw new Error(`fp16(${x}) = 0x${out[i].toString(16)}, expected 0x${want.toString(16)}`);
    });
    expect(Number.isNaN(fromFloat16(toFloat16(Float32Array.of(NaN)))[0])).toBe(true);
  });
});
