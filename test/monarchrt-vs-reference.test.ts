// MonarchRT video tiling (§B.2, §B.3): the package (CPU, fp32) against the float64 reference, including
// fTied, hReduce, wReduce (tile order ≠ raster order), one frame, odd heights and widths, T = 1, 2, 3.
import { expectClose } from './helpers/compare';
import type { VideoLayout } from './helpers/pkg';
import { mulberry32 } from './helpers/rng';
import { desc, monarch } from './helpers/run';
import { randAct } from './helpers/tensors';
import { FP32 } from './helpers/tolerances';
import { videoRef } from './reference/video';

const layouts: VideoLayout[] = [
  { kind: 'video', frames: 2, height: 3, width: 5 },
  { kind: 'video', frames: 1, height: 3, width: 3 },
  { kind: 'video', frames: 3, height: 2, width: 4, fTied: 3 },
  { kind: 'video', frames: 2, height: 4, width: 3, hReduce: 2 },
  { kind: 'video', frames: 2, height: 3, width: 4, wReduce: 2 },
  { kind: 'video', frames: 4, height: 2, width: 6, fTied: 2, hReduce: 2, wReduce: 3 },
];

describe('monarchrt video vs float64 reference (CPU, fp32)', () => {
  for (const layout of layouts)
    for (const T of [1, 2, 3])
      for (const seed of [1, 2])
        test(`${desc({ ...layout })} T=${T} seed=${seed}`, () => {
          const rng = mulberry32(30000 * seed + layout.frames * 100 + layout.height * 10 + layout.width + T * 1000 + (layout.fTied ?? 1) * 7);
          const N = layout.frames * layout.height * layout.width;
          const B = T === 2 ? 2 : 1, H = T === 3 ? 1 : 2, D = 8;
          const q = randAct(rng, B, N, H, D, 2), k = randAct(rng, B, N, H, D), v = randAct(rng, B, N, H, D);
          const got = monarch({ layout, heads: H, headDim: D, numIters: T }, q, k, v);
          expectClose(got, videoRef(q, k, v, layout, { numIters: T }), FP32, `T=${T}`, [B, N, H, D]);
        });
});
