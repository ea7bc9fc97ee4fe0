// recompute: 'first-frame' (§C.4 a, our reading of VMonarch's "first-frame recalculation"): the output rows
// of frame-0 queries are exact dense attention rows (over the keys they may see: all keys, or the first
// chunk when causal); all other rows are unchanged Monarch rows.
import { expectClose, maxAbsDiff, sliceRows } from './helpers/cmp-act';
import type { VideoLayout } from './helpers/pkg';
import { mulberry32 } from './helpers/rng';
import { desc, monarch } from './helpers/run';
import { randAct } from './helpers/tensors';
import { FP32 } from './helpers/tolerances';
import { denseRef } from './reference/dense';
import { sliceTokens } from './helpers/act';
import { videoRef } from './reference/video';

const cases: Array<{ layout: VideoLayout; T: number; cf?: number }> = [
  { layout: { kind: 'video', frames: 3, height: 2, width: 3, factorization: 'vmonarch' }, T: 1 },
  { layout: { kind: 'video', frames: 3, height: 2, width: 3, factorization: 'vmonarch' }, T: 2 },
  { layout: { kind: 'video', frames: 2, height: 3, width: 2 }, T: 3 },
  { layout: { kind: 'video', frames: 4, height: 2, width: 2 }, T: 1, cf: 2 },
];

describe('recompute first-frame (CPU, fp32)', () => {
  for (const { layout, T, cf } of cases)
    test(`${desc({ ...layout, T, chunkFrames: cf })}`, () => {
      const rng = mulberry32(60000 + layout.frames * 100 + layout.height * 10 + layout.width + T);
      const hw = layout.height * layout.width, N = layout.frames * hw, B = 2, H = 2, D = 8;
      const q = randAct(rng, B, N, H, D, 2), k = randAct(rng, B, N, H, D), v = randAct(rng, B, N, H, D);
      const causal = cf ? { chunkFrames: cf } : undefined;
      const got = monarch({ layout, heads: H, headDim: D, numIters: T, causal, recompute: 'first-frame' }, q, k, v);
      const plain = monarch({ layout, heads: H, headDim: D, numIters: T, causal }, q, k, v);
      const kEnd = cf ? cf * hw : N;
      const dense = denseRef(sliceTokens(q, 0, hw), sliceTokens(k, 0, kEnd), sliceTokens(v, 0, kEnd), { qOffset: 0 }).out;
      expectClose(sliceRows(got, B, N, H, D, 0, hw), dense, FP32, 'frame-0 rows = dense rows', [B, hw, H, D]);
      expectClose(sliceRows(got, B, N, H, D, hw, N), sliceRows(plain, B, N, H, D, hw, N), { atol: 0, rtol: 0 }, 'other rows untouched', [B, N - hw, H, D]);
      expectClose(got, videoRef(q, k, v, layout, { numIters: T, chunkFrames: cf, recompute: 'first-frame' }), FP32, 'whole output vs reference', [B, N, H, D]);
      // the recomputation is visible: Monarch frame-0 rows differ from dense rows here
      expect(maxAbsDiff(sliceRows(plain, B, N, H, D, 0, hw), dense)).toBeGreaterThan(1e-3);
    });
});
