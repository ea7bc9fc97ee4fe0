// VMonarch frames-as-blocks (§C.2): b2 = h·w (R = intra-frame), b1 = frames (L = inter-frame); the package
// (CPU, fp32) against the float64 reference for one frame, odd sizes, T = 1, 2, 3.
import { expectClose } from './helpers/compare';
import type { VideoLayout } from './helpers/pkg';
import { mulberry32 } from './helpers/rng';
import { desc, monarch } from './helpers/run';
import { randAct } from './helpers/tensors';
import { FP32 } from './helpers/tolerances';
import { sequenceRef } from './reference/sequence';
import { videoRef } from './reference/video';

const layouts: VideoLayout[] = [
  { kind: 'video', frames: 3, height: 2, width: 3, factorization: 'vmonarch' },
  { kind: 'video', frames: 1, height: 3, width: 5, factorization: 'vmonarch' },
  { kind: 'video', frames: 5, height: 1, width: 3, factorization: 'vmonarch' },
];

describe('vmonarch video vs float64 reference (CPU, fp32)', () => {
  for (const layout of layouts)
    for (const T of [1, 2, 3])
      test(`${desc({ ...layout })} T=${T}`, () => {
        const rng = mulberry32(40000 + layout.frames * 100 + layout.height * 10 + layout.width + T * 1000);
        const hw = layout.height * layout.width, N = layout.frames * hw;
        const B = 2, H = T === 1 ? 3 : 1, D = 8;
        const q = randAct(rng, B, N, H, D, 2), k = randAct(rng, B, N, H, D), v = randAct(rng, B, N, H, D);
        const got = monarch({ layout, heads: H, headDim: D, numIters: T }, q, k, v);
        const want = videoRef(q, k, v, layout, { numIters: T });
        expectClose(got, want, FP32, `T=${T}`, [B, N, H, D]);
        // frames-as-blocks is MonarchAttention with block size b = h·w (independent reference path)
        expectClose(want, sequenceRef(q, k, v, { blockSize: hw, numIters: T, maxInvTemp: 10 }), { atol: 1e-12, rtol: 0 }, 'reference paths agree');
      });
});

// The R-temperature floor (§A.5): VMonarch's published c_R ≥ 0.1 is the default for vmonarch layouts,
// 1/c_R ≤ 1e4 (c_R ≥ 1e-4) for the others; `minColumnMass` overrides it. Peaky inputs (large scale) make
// some columns' L mass fall below 0.1, so the two floors must give different outputs, each equal to the
// reference run with the same floor.
describe('minColumnMass (the c_R floor of the R temperature)', () => {
  const layout: VideoLayout = { kind: 'video', frames: 6, height: 2, width: 3, factorization: 'vmonarch' };
  const N = 36, B = 1, H = 2, D = 8, T = 2, scale = 3;
  const rng = mulberry32(41234);
  const q = randAct(rng, B, N, H, D, 2), k = randAct(rng, B, N, H, D), v = randAct(rng, B, N, H, D);
  test('vmonarch default is 0.1 and differs from 1e-4 on peaky inputs', () => {
    const dflt = monarch({ layout, heads: H, headDim: D, numIters: T, scale }, q, k, v);
    const loose = monarch({ layout, heads: H, headDim: D, numIters: T, scale, minColumnMass: 1e-4 }, q, k, v);
    expectClose(dflt, videoRef(q, k, v, layout, { numIters: T, scale }), FP32, 'default (0.1)', [B, N, H, D]);
    expectClose(dflt, videoRef(q, k, v, layout, { numIters: T, scale, minColumnMass: 0.1 }), FP32, 'explicit 0.1', [B, N, H, D]);
    expectClose(loose, videoRef(q, k, v, layout, { numIters: T, scale, minColumnMass: 1e-4 }), FP32, '1e-4', [B, N, H, D]);
    let diff = 0;
    for (let t = 0; t < dflt.length; t++) diff = Math.max(diff, Math.abs(dflt[t] - loose[t]));
    expect(diff).toBeGreaterThan(1e-3);
  });
  test('monarchrt default is 1e-4; T = 1 ignores the floor', () => {
    const rt: VideoLayout = { kind: 'video', frames: 6, height: 2, width: 3 };
    const got = monarch({ layout: rt, heads: H, headDim: D, numIters: T, scale }, q, k, v);
    expectClose(got, videoRef(q, k, v, rt, { numIters: T, scale, minColumnMass: 1e-4 }), FP32, 'monarchrt', [B, N, H, D]);
    const t1 = monarch({ layout, heads: H, headDim: D, numIters: 1, scale, minColumnMass: 1 }, q, k, v);
    expectClose(t1, videoRef(q, k, v, layout, { numIters: 1, scale }), FP32, 'T=1', [B, N, H, D]);
  });
  test('out-of-range values are rejected', () => {
    for (const bad of [0, -1, 2, Number.NaN, Infinity])
      expect(() => monarch({ layout, heads: H, headDim: D, minColumnMass: bad }, q, k, v)).toThrow(/minColumnMass/);
    expect(() => monarch({ layout, heads: H, headDim: D, minColumnMass: '0.1' as unknown as number }, q, k, v)).toThrow(TypeError);
  });
});
