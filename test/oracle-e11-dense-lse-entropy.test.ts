// E11: the package's dense attention returns per-row LSE and entropy from its streaming (online-entropy,
// §C.3) recurrence; they must equal the two-pass float64 values. Nk = 45 spans several key tiles of any
// reasonable kernel tile size, and the logits grow along the keys so the running max moves.
import { act, idx } from './helpers/act';
import { expectClose } from './helpers/compare';
import { mulberry32 } from './helpers/rng';
import { dense } from './helpers/run';
import { randAct } from './helpers/tensors';
import { FP32 } from './helpers/tolerances';
import { denseRef } from './reference/dense';

describe('E11: dense LSE and entropy = two-pass float64', () => {
  test('random rows with an increasing logit trend, Nq = 7, Nk = 45, B = 2, H = 3', () => {
    const rng = mulberry32(11000);
    const B = 2, Nq = 7, Nk = 45, H = 3, D = 16;
    const q = randAct(rng, B, Nq, H, D, 1);
    const kx = randAct(rng, B, Nk, H, D, 1).x;
    // add a trend along the keys in direction q̄ (the mean query) so the running max keeps moving
    for (let b = 0; b < B; b++)
      for (let t = 0; t < Nk; t++)
        for (let h = 0; h < H; h++)
          for (let d = 0; d < D; d++) {
            let mean = 0;
            for (let n = 0; n < Nq; n++) mean += q.x[idx(q, b, n, h, d)] / Nq;
            kx[idx({ S: Nk, H, D }, b, t, h, d)] = Math.fround(kx[idx({ S: Nk, H, D }, b, t, h, d)] + (0.15 * t * mean));
          }
    const k = act(kx, B, Nk, H, D), v = randAct(rng, B, Nk, H, D);
    const got = dense(q, k, v, { returnLse: true, returnEntropy: true });
    const want = denseRef(q, k, v);
    expect(got.lse).toBeDefined();
    expect(got.entropy).toBeDefined();
    expectClose(got.lse!, want.lse, FP32, 'lse', [B, H, Nq]);
    expectClose(got.entropy!, want.entropy, FP32, 'entropy', [B, H, Nq]);
    expectClose(got.out, want.out, FP32, 'out', [B, Nq, H, D]);
    expect(Math.min(...want.entropy)).toBeGreaterThan(0.05); // non-degenerate rows
  });

  test('key mask and a fully masked batch row: out 0, lse −Infinity, entropy 0', () => {
    const rng = mulberry32(11100);
    const B = 2, Nq = 5, Nk = 20, H = 2, D = 8;
    const q = randAct(rng, B, Nq, H, D, 2), k = randAct(rng, B, Nk, H, D), v = randAct(rng, B, Nk, H, D);
    const keyMask = Uint8Array.from({ length: B * Nk }, (_, i) => (i < Nk ? (i % 3 ? 1 : 0) : 0)); // batch 1: nothing
    const got = dense(q, k, v, { returnLse: true, returnEntropy: true, keyMask });
    const want = denseRef(q, k, v, { keyMask });
    expectClose(got.out, want.out, FP32, 'out', [B, Nq, H, D]);
    expectClose(got.lse!, want.lse, FP32, 'lse', [B, H, Nq]);
    expectClose(got.entropy!, want.entropy, FP32, 'entropy', [B, H, Nq]);
    for (let i = H * Nq; i < 2 * H * Nq; i++) expect(got.lse![i]).toBe(-Infinity);
  });
});
