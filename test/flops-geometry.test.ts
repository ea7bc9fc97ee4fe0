// attn.geometry reports the tiled-Monarch parameters actually used (include/monarch/monarch.h tile order) and
// attn.flops() follows the documented formulas: §A.7 FLOPs = 4·T·N·d·(b + m) + 2·N·b·d per (batch, head)
// and §B.7 per allowed tile pair T·4·b1·b2·d·(b1 + b2) + 2·b1·b2²·d.
import { MonarchAttention } from './helpers/pkg';
import type { MonarchOptions } from './helpers/pkg';
import { denseFlops } from '../lib/flops';

function withAttn<T>(o: MonarchOptions, f: (a: MonarchAttention) => T): T {
  const a = new MonarchAttention({ backend: 'cpu', ...o });
  try {
    return f(a);
  } finally {
    a.dispose();
  }
}

describe('geometry', () => {
  const cases: Array<[string, MonarchOptions['layout'], { causal?: { chunkFrames: number } }, { b1: number; b2: number; tiles: number; numTokens: number }]> = [
    ['sequence N=10, b=4 → m = 3 blocks', { kind: 'sequence', length: 10, blockSize: 4 }, {}, { b1: 3, b2: 4, tiles: 1, numTokens: 10 }],
    ['monarchrt 2×6×4, hReduce 2, wReduce 2', { kind: 'video', frames: 2, height: 6, width: 4, hReduce: 2, wReduce: 2 }, {}, { b1: 3, b2: 2, tiles: 8, numTokens: 48 }],
    ['monarchrt 4×3×5, fTied 2', { kind: 'video', frames: 4, height: 3, width: 5, fTied: 2 }, {}, { b1: 6, b2: 5, tiles: 2, numTokens: 60 }],
    ['vmonarch 3×2×3', { kind: 'video', frames: 3, height: 2, width: 3, factorization: 'vmonarch' }, {}, { b1: 3, b2: 6, tiles: 1, numTokens: 18 }],
    ['vmonarch causal 4×2×2, chunks of 2', { kind: 'video', frames: 4, height: 2, width: 2, factorization: 'vmonarch' }, { causal: { chunkFrames: 2 } }, { b1: 2, b2: 4, tiles: 2, numTokens: 16 }],
  ];
  test.each(cases)('%s', (_n, layout, extra, want) => {
    withAttn({ layout, heads: 1, headDim: 8, ...extra }, (a) => {
      expect(a.geometry.b1).toBe(want.b1);
      expect(a.geometry.b2).toBe(want.b2);
      expect(a.numTokens).toBe(want.numTokens);
      expect(a.backend).toBe('cpu');
    });
  });
  test.each(cases)('geometry.tilesPerSequence (docs/API.md Geometry): %s', (_n, layout, extra, want) => {
    withAttn({ layout, heads: 1, headDim: 8, ...extra }, (a) => {
      expect(a.geometry.tilesPerSequence).toBe(want.tiles);
    });
  });
});

describe('flops()', () => {
  test('sequence, §A.7: B·H·(4·T·N·d·(b + m) + 2·N·b·d)', () => {
    const N = 64, b = 8, m = 8, d = 16, T = 2, B = 2, H = 3;
    withAttn({ layout: { kind: 'sequence', length: N, blockSize: b }, heads: H, headDim: d, numIters: T, batch: B }, (a) => {
      expect(a.flops()).toBe(B * H * (4 * T * N * d * (b + m) + 2 * N * b * d));
    });
  });
  test('monarchrt bidirectional, §B.7: A² pairs', () => {
    const F = 3, h = 4, w = 6, d = 8, T = 1, H = 2;
    withAttn({ layout: { kind: 'video', frames: F, height: h, width: w }, heads: H, headDim: d, numIters: T }, (a) => {
      const pair = T * 4 * h * w * d * (h + w) + 2 * h * w * w * d;
      expect(a.flops()).toBe(H * F * F * pair);
      // T = 1 closed form: 2·Nq·Nk·d·(3·b2 + 2·b1)/(b1·b2)
      const N = F * h * w;
      expect(a.flops()).toBeCloseTo(H * 2 * N * N * d * (3 * w + 2 * h) / (h * w), 6);
    });
  });
  test('monarchrt block-causal: only allowed pairs count (chunks of 1 frame: A(A+1)/2 pairs)', () => {
    const F = 4, h = 2, w = 3, d = 8;
    withAttn({ layout: { kind: 'video', frames: F, height: h, width: w }, heads: 1, headDim: d, causal: { chunkFrames: 1 } }, (a) => {
      const pair = 4 * h * w * d * (h + w) + 2 * h * w * w * d;
      expect(a.flops()).toBe((F * (F + 1) / 2) * pair);
    });
  });
  test('sequence with padding: §A.7 with N the padded length (N = 10, b = 4 → Np = 12, m = 3)', () => {
    withAttn({ layout: { kind: 'sequence', length: 10, blockSize: 4 }, heads: 1, headDim: 8 }, (a) => {
      expect(a.flops()).toBe(4 * 1 * 12 * 8 * (4 + 3) + 2 * 12 * 4 * 8);
    });
  });
  test("recompute 'first-frame' adds 4·(h·w)·Nk·d·B·H (Nk = N; chunk tokens when causal)", () => {
    const layout = { kind: 'video' as const, frames: 4, height: 2, width: 3 }, d = 8, B = 2, H = 3;
    const plain = withAttn({ layout, heads: H, headDim: d, batch: B }, (a) => a.flops());
    const rec = withAttn({ layout, heads: H, headDim: d, batch: B, recompute: 'first-frame' }, (a) => a.flops());
    expect(rec - plain).toBe(4 * 6 * 24 * d * B * H);
    const cPlain = withAttn({ layout, heads: H, headDim: d, batch: B, causal: { chunkFrames: 2 } }, (a) => a.flops());
    const cRec = withAttn({ layout, heads: H, headDim: d, batch: B, causal: { chunkFrames: 2 }, recompute: 'first-frame' }, (a) => a.flops());
    expect(cRec - cPlain).toBe(4 * 6 * 12 * d * B * H);
  });
  test('lib/flops denseFlops, block-causal: equals 4·d·B·H × a count of the (query, key) pairs the mask allows', () => {
    // Query q0 + n sees key k iff ⌊k/C⌋ ≤ ⌊(q0 + n)/C⌋ (docs/API.md causalChunk), counted one pair at a time.
    const allowed = (Nq: number, Nk: number, C: number, q0: number) => {
      let p = 0;
      for (let n = 0; n < Nq; n++) for (let k = 0; k < Nk; k++) if (Math.floor(k / C) <= Math.floor((q0 + n) / C)) p++;
      return p;
    };
    const [d, B, H] = [8, 2, 3];
    for (const [Nq, Nk, C, q0] of [[24, 24, 12, 0], [24, 24, 5, 0], [7, 24, 5, 17], [12, 24, 12, 12], [10, 10, 1, 0], [10, 10, 10, 0], [9, 9, 4, 0]]) {
      expect(denseFlops(Nq, Nk, d, B, H, C, q0)).toBe(4 * allowed(Nq, Nk, C, q0) * d * B * H);
    }
    // The wan-480p-causal preset: 7 chunks of 3·30·52 = 4,680 tokens → 4680²·(1 + … + 7) pairs.
    expect(denseFlops(32760, 32760, 128, 1, 12, 4680)).toBe(4 * 4680 * 4680 * 28 * 128 * 12);
  });
  test('denseFlops(): 4·N²·d·B·H bidirectional; block-causal counts visible keys only', () => {
    const layout = { kind: 'video' as const, frames: 4, height: 2, width: 3 }, d = 8;
    withAttn({ layout, heads: 2, headDim: d, batch: 3 }, (a) => expect(a.denseFlops()).toBe(4 * 24 * 24 * d * 3 * 2));
    // chunks of 2 frames = 12 tokens: chunk 0 queries see 12 keys, chunk 1 queries see 24
    withAttn({ layout, heads: 1, headDim: d, causal: { chunkFrames: 2 } }, (a) => expect(a.denseFlops()).toBe(4 * d * (12 * 12 + 12 * 24)));
  });
});
