// E10 (docs/ALGORITHMS.md §B.3, §B.4): a single tile is MonarchAttention with b = b2; query tiles are
// independent; block-causal ≡ running each chunk with keys truncated at the chunk end ≡ KV-cache decode.
import { cloneAct, idx, sliceRows, sliceTokens } from './helpers/act';
import { expectBitIdentical, expectClose } from './helpers/compare';
import { MonarchAttention } from './helpers/pkg';
import type { MonarchOptions, VideoLayout } from './helpers/pkg';
import { mulberry32 } from './helpers/rng';
import { monarch } from './helpers/run';
import { fromHost, randAct, toHost } from './helpers/tensors';
import { FP32, FP32_REORDER } from './helpers/tolerances';
import { sequenceRef } from './reference/sequence';

describe('E10: single tile ≡ MonarchAttention', () => {
  test.each([1, 2, 3])('one frame 3×5 (b1 = 3, b2 = 5) ≡ sequence N = 15, b = 5; T=%i', (T) => {
    const rng = mulberry32(10000 + T);
    const h = 3, w = 5, N = h * w, H = 2, D = 8;
    const q = randAct(rng, 1, N, H, D, 2), k = randAct(rng, 1, N, H, D), v = randAct(rng, 1, N, H, D);
    const video = monarch({ layout: { kind: 'video', frames: 1, height: h, width: w }, heads: H, headDim: D, numIters: T }, q, k, v);
    const seq = monarch({ layout: { kind: 'sequence', length: N, blockSize: w }, heads: H, headDim: D, numIters: T }, q, k, v);
    expectClose(video, seq, FP32_REORDER, `video vs sequence T=${T}`, [1, N, H, D]);
    expectClose(video, sequenceRef(q, k, v, { blockSize: w, numIters: T }), FP32, `video vs MA reference T=${T}`, [1, N, H, D]);
  });
});

describe('E10: query tiles are independent', () => {
  test.each([1, 2])('monarchrt 3 frames × 2 × 3: perturbing frame 2 queries leaves frames 0, 1 bit-identical (T=%i)', (T) => {
    const rng = mulberry32(10100 + T);
    const F = 3, h = 2, w = 3, hw = h * w, N = F * hw, H = 1, D = 8;
    const q = randAct(rng, 1, N, H, D, 2), k = randAct(rng, 1, N, H, D), v = randAct(rng, 1, N, H, D);
    const opts: MonarchOptions = { layout: { kind: 'video', frames: F, height: h, width: w }, heads: H, headDim: D, numIters: T };
    const z = monarch(opts, q, k, v);
    const q2 = cloneAct(q);
    for (let n = 2 * hw; n < N; n++) for (let d = 0; d < D; d++) q2.x[idx(q2, 0, n, 0, d)] *= -1;
    const z2 = monarch(opts, q2, k, v);
    expectBitIdentical(z2.subarray(0, 2 * hw * D), z.subarray(0, 2 * hw * D), `frames 0-1, T=${T}`);
  });
});

describe('E10: block-causal ≡ per-chunk truncation ≡ KV-cache decode', () => {
  const layouts: Array<[string, VideoLayout, number]> = [
    ['monarchrt 4 frames × 2 × 3, chunks of 2', { kind: 'video', frames: 4, height: 2, width: 3 }, 2],
    ['monarchrt fTied 2, hReduce 2, 4 frames × 4 × 3, chunks of 2', { kind: 'video', frames: 4, height: 4, width: 3, fTied: 2, hReduce: 2 }, 2],
    ['vmonarch 6 frames × 2 × 2, chunks of 3', { kind: 'video', frames: 6, height: 2, width: 2, factorization: 'vmonarch' }, 3],
  ];
  for (const [name, layout, cf] of layouts)
    for (const T of [1, 2])
      test(`${name}, T=${T}`, () => {
        const rng = mulberry32(10200 + T + layout.frames * 7 + layout.height);
        const hw = layout.height * layout.width, N = layout.frames * hw, B = 2, H = 2, D = 8;
        const q = randAct(rng, B, N, H, D, 2), k = randAct(rng, B, N, H, D), v = randAct(rng, B, N, H, D);
        const causalOpts: MonarchOptions = { layout, heads: H, headDim: D, numIters: T, causal: { chunkFrames: cf }, batch: B };
        const z = monarch(causalOpts, q, k, v);
        const chunks = layout.frames / cf, chunkN = cf * hw;
        const attn = new MonarchAttention({ ...causalOpts, backend: 'cpu' });
        const cache = attn.createKVCache();
        try {
          for (let c = 0; c < chunks; c++) {
            const end = (c + 1) * chunkN;
            const rows = sliceRows(z, B, N, H, D, c * chunkN, end);
            // truncation: a bidirectional forward over the frames up to the chunk end, last chunk's rows.
            // Only monarchrt keeps its tiling when frames change; bidirectional vmonarch puts all frames in
            // one tile (b1 = frames), which equals the causal tiling for chunk 0 only.
            const sameTiling = layout.factorization !== 'vmonarch' || c === 0;
            if (sameTiling) {
              const trunc = monarch({ layout: { ...layout, frames: (c + 1) * cf }, heads: H, headDim: D, numIters: T, batch: B },
                sliceTokens(q, 0, end), sliceTokens(k, 0, end), sliceTokens(v, 0, end));
              expectClose(rows, sliceRows(trunc, B, end, H, D, c * chunkN, end), FP32_REORDER, `chunk ${c}: causal vs truncated`, [B, chunkN, H, D]);
            }
            // decode: one cache step with this chunk's q, k, v
            const qc = sliceTokens(q, c * chunkN, end), kc = sliceTokens(k, c * chunkN, end), vc = sliceTokens(v, c * chunkN, end);
            const step = fromHost(cache.stepSync(toHost(qc), toHost(kc), toHost(vc)) as never);
            expectClose(step, rows, FP32_REORDER, `chunk ${c}: KV-cache step vs causal`, [B, chunkN, H, D]);
            expect(cache.framesCached).toBe((c + 1) * cf);
          }
        } finally {
          cache.dispose();
          attn.dispose();
        }
      });
});
