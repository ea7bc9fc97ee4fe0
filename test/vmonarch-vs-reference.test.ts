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
        expectClose(want, sequenceRef(q, k, v, { blockSize: hw, numIters: T }), { atol: 1e-12, rtol: 0 }, 'reference paths agree');
      });
});
