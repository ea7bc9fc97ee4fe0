// Self-checks of the float64 references (test/reference/) against the exactness oracles of
// docs/ALGORITHMS.md §E, at float64 precision and without the package. If the reference were wrong, the
// package tests built on it would be meaningless; these pin it to the math first.
// Tolerance 1e-12: the oracles are exact identities; float64 sums of ≤ 100 terms of size ≤ 10 err ≲ 1e-13.
import { act, Act, cloneAct, zeroMaskedRows, concatTokens, headMatrix, permuteTokens, randAct64, sliceTokens } from './helpers/act';
import { expectClose, maxAbsDiff } from './helpers/compare';
import { mulberry32, randPerm } from './helpers/rng';
import { denseRef } from './reference/dense';
import { monarchMatrix, objective, sequenceHead, sequenceRef } from './reference/sequence';
import { tiledHead } from './reference/tiled';
import { monarchrtCoords, tileMap, videoRef } from './reference/video';

const EXACT = { atol: 1e-12, rtol: 0 };

/** Queries equal to one row repeated (E2). */
function constantQueries(rng: ReturnType<typeof mulberry32>, B: number, N: number, H: number, D: number, scale: number): Act {
  const one = randAct64(rng, B, 1, H, D, scale);
  return concatTokens(Array.from({ length: N }, () => one));
}

describe('reference: MonarchAttention oracles', () => {
  test('E1: M is row-stochastic and z = M·V (T = 1..3, pre/post padding, key mask)', () => {
    const rng = mulberry32(101);
    const N = 11, D = 4, b = 4;
    for (const T of [1, 2, 3])
      for (const padding of ['pre', 'post'] as const) {
        const q = randAct64(rng, 1, N, 1, D, 1.5), k = randAct64(rng, 1, N, 1, D), v = randAct64(rng, 1, N, 1, D);
        const mask = Uint8Array.from({ length: N }, (_, n) => (n === 2 || n === 7 ? 0 : 1));
        const r = sequenceHead(q.x, k.x, v.x, N, D, D, { blockSize: b, numIters: T, padding }, mask);
        const M = monarchMatrix(r);
        const Np = r.Np;
        for (let row = 0; row < Np; row++) {
          let sum = 0;
          for (let c = 0; c < Np; c++) sum += M[row * Np + c];
          expect(Math.abs(sum - 1)).toBeLessThan(1e-12);
        }
        // z = M·V over the padded sequence (pad values are zero, masked keys have zero columns)
        const z = new Float64Array(N * D);
        for (let n = 0; n < N; n++)
          for (let t = 0; t < N; t++)
            for (let d = 0; d < D; d++) z[n * D + d] += M[r.pos(n) * Np + r.pos(t)] * v.x[t * D + d];
        expectClose(r.z, z, EXACT, `T=${T} ${padding}`);
      }
  });

  test('E2: identical queries ⇒ dense attention (any b, T, padding, key mask)', () => {
    const rng = mulberry32(102);
    const N = 13, D = 5;
    for (const b of [1, 3, 4, 13])
      for (const T of [1, 3])
        for (const padding of ['pre', 'post'] as const) {
          const q = constantQueries(rng, 2, N, 1, D, 2), k = randAct64(rng, 2, N, 1, D), v = randAct64(rng, 2, N, 1, D);
          const keyMask = Uint8Array.from({ length: 2 * N }, (_, i) => (i % 5 === 3 ? 0 : 1));
          const z = sequenceRef(q, k, v, { blockSize: b, numIters: T, padding, keyMask });
          // rows of masked queries are don't-care for T ≥ 2 (§A.4)
          expectClose(zeroMaskedRows(z, keyMask, 2, N, 1, D), zeroMaskedRows(denseRef(q, k, v, { keyMask }).out, keyMask, 2, N, 1, D),
            EXACT, `b=${b} T=${T} ${padding}`);
        }
  });

  test('E2 caveat: at T = 1 a pad query seeds the R row of its block (N = 13, b = 5 is not exact; T = 2 is)', () => {
    const rng = mulberry32(1021);
    const N = 13, D = 5;
    const q = constantQueries(rng, 1, N, 1, D, 2), k = randAct64(rng, 1, N, 1, D), v = randAct64(rng, 1, N, 1, D);
    const dense = denseRef(q, k, v).out;
    for (const padding of ['pre', 'post'] as const) {
      // the padded block holds 3 real keys: the zero pad query gives a uniform R row there at T = 1
      expect(maxAbsDiff(sequenceRef(q, k, v, { blockSize: 5, padding }), dense)).toBeGreaterThan(1e-2);
      expectClose(sequenceRef(q, k, v, { blockSize: 5, padding, numIters: 2 }), dense, EXACT, `T=2 ${padding}`);
    }
  });

  test('E3: queries periodic with period b ⇒ dense (T = 1, 3)', () => {
    const rng = mulberry32(103);
    const b = 4, m = 3, N = b * m, D = 4;
    const period = randAct64(rng, 1, b, 1, D, 2);
    const q = concatTokens(Array.from({ length: m }, () => period));
    const k = randAct64(rng, 1, N, 1, D), v = randAct64(rng, 1, N, 1, D);
    for (const T of [1, 3]) expectClose(sequenceRef(q, k, v, { blockSize: b, numIters: T }), denseRef(q, k, v).out, EXACT, `T=${T}`);
  });

  test('E4: b = N and b = 1 are dense for any Q', () => {
    const rng = mulberry32(104);
    const N = 9, D = 3;
    const q = randAct64(rng, 1, N, 1, D, 2), k = randAct64(rng, 1, N, 1, D), v = randAct64(rng, 1, N, 1, D);
    const dense = denseRef(q, k, v).out;
    for (const b of [1, N])
      for (const T of [1, 2]) expectClose(sequenceRef(q, k, v, { blockSize: b, numIters: T }), dense, EXACT, `b=${b} T=${T}`);
  });

  test('a generic random case is far from dense (the oracles are not trivial)', () => {
    const rng = mulberry32(105);
    const q = randAct64(rng, 1, 16, 1, 4, 3), k = randAct64(rng, 1, 16, 1, 4, 3), v = randAct64(rng, 1, 16, 1, 4);
    expect(maxAbsDiff(sequenceRef(q, k, v, { blockSize: 4 }), denseRef(q, k, v).out)).toBeGreaterThan(0.05);
  });

  test('E5: F(M_T) is non-decreasing in T and ≤ Σ LSE; dense attains the bound', () => {
    const rng = mulberry32(106);
    const N = 24, b = 4, D = 4, s = 0.5;
    const q = randAct64(rng, 1, N, 1, D, 2), k = randAct64(rng, 1, N, 1, D, 2), v = randAct64(rng, 1, N, 1, D);
    const dense = denseRef(q, k, v, { scale: s });
    const bound = dense.lse.reduce((a, x) => a + x, 0);
    // dense attention matrix → F equals Σ LSE
    const A = new Float64Array(N * N);
    for (let n = 0; n < N; n++) {
      let mx = -Infinity;
      const row = new Float64Array(N);
      for (let t = 0; t < N; t++) {
        let dot = 0;
        for (let d = 0; d < D; d++) dot += q.x[n * D + d] * k.x[t * D + d];
        row[t] = s * dot;
        mx = Math.max(mx, row[t]);
      }
      let z = 0;
      for (let t = 0; t < N; t++) z += Math.exp(row[t] - mx);
      for (let t = 0; t < N; t++) A[n * N + t] = Math.exp(row[t] - mx) / z;
    }
    expect(Math.abs(objective(A, q.x, k.x, N, D, s) - bound)).toBeLessThan(1e-9);
    let prev = -Infinity;
    const fs: number[] = [];
    for (let T = 1; T <= 5; T++) {
      const r = sequenceHead(q.x, k.x, v.x, N, D, D, { blockSize: b, numIters: T, scale: s });
      const f = objective(monarchMatrix(r), q.x, k.x, N, D, s);
      fs.push(f);
      expect(f).toBeGreaterThanOrEqual(prev - 1e-9);
      expect(f).toBeLessThanOrEqual(bound + 1e-9);
      prev = f;
    }
    expect(fs[4]).toBeLessThan(bound - 1e-3); // saturates strictly below the bound (§A.3)
    expect(fs[1]).toBeGreaterThan(fs[0] + 1e-6); // and does improve
  });

  test('E6: column locality — z_(ℓ,j) depends only on queries at position j', () => {
    const rng = mulberry32(107);
    const b = 4, N = 12, D = 4;
    const q = randAct64(rng, 1, N, 1, D, 2), k = randAct64(rng, 1, N, 1, D), v = randAct64(rng, 1, N, 1, D);
    const base = sequenceRef(q, k, v, { blockSize: b, numIters: 2 });
    const q2 = cloneAct(q);
    q2.x[(1 * b + 2) * D] += 1; // query (ℓ=1, j=2)
    const z2 = sequenceRef(q2, k, v, { blockSize: b, numIters: 2 });
    for (let n = 0; n < N; n++)
      for (let d = 0; d < D; d++) {
        const diff = Math.abs(z2[n * D + d] - base[n * D + d]);
        if (n % b !== 2) expect(diff).toBe(0);
      }
    // the other query at the same position (ℓ=0, j=2) does change
    expect(Math.abs(z2[2 * D] - base[2 * D])).toBeGreaterThan(1e-6);
  });

  test('E7: equivariance under block permutation and a common within-block permutation', () => {
    const rng = mulberry32(108);
    const b = 3, m = 4, N = b * m, D = 4;
    const q = randAct64(rng, 1, N, 1, D, 2), k = randAct64(rng, 1, N, 1, D), v = randAct64(rng, 1, N, 1, D);
    const z = act(sequenceRef(q, k, v, { blockSize: b, numIters: 2 }), 1, N, 1, D);
    const bp = randPerm(rng, m), wp = randPerm(rng, b);
    for (const perm of [
      Array.from({ length: N }, (_, n) => bp[Math.floor(n / b)] * b + (n % b)),
      Array.from({ length: N }, (_, n) => Math.floor(n / b) * b + wp[n % b]),
    ]) {
      const zp = sequenceRef(permuteTokens(q, perm), permuteTokens(k, perm), permuteTokens(v, perm), { blockSize: b, numIters: 2 });
      expectClose(zp, permuteTokens(z, perm).x, EXACT, 'permuted');
    }
  });

  test('E8: values at masked / padded keys do not matter; pre-pad ≠ post-pad', () => {
    const rng = mulberry32(109);
    const N = 10, b = 4, D = 4;
    const q = randAct64(rng, 1, N, 1, D, 2), k = randAct64(rng, 1, N, 1, D), v = randAct64(rng, 1, N, 1, D);
    const keyMask = Uint8Array.from({ length: N }, (_, n) => (n === 1 || n === 6 ? 0 : 1));
    const z = sequenceRef(q, k, v, { blockSize: b, numIters: 2, keyMask });
    const k2 = cloneAct(k), v2 = cloneAct(v);
    for (const n of [1, 6])
      for (let d = 0; d < D; d++) {
        k2.x[n * D + d] = 7 * rng.normal();
        v2.x[n * D + d] = 100;
      }
    expectClose(sequenceRef(q, k2, v2, { blockSize: b, numIters: 2, keyMask }), z, EXACT, 'masked values changed');
    const pre = sequenceRef(q, k, v, { blockSize: b, padding: 'pre' });
    const post = sequenceRef(q, k, v, { blockSize: b, padding: 'post' });
    expect(maxAbsDiff(pre, post)).toBeGreaterThan(1e-2);
  });

  test('E9: block-diagonal limit — one-hot block features of size c drive T = 1 to dense (c = 2, 4, 8)', () => {
    const rng = mulberry32(110);
    const b = 4, m = 3, N = b * m, D0 = 4, D = D0 + m;
    const q0 = randAct64(rng, 1, N, 1, D0), k0 = randAct64(rng, 1, N, 1, D0), v = randAct64(rng, 1, N, 1, D);
    const errs = [2, 4, 8].map((c) => {
      const aug = (a: Act): Act => {
        const x = new Float64Array(N * D);
        for (let n = 0; n < N; n++) {
          for (let d = 0; d < D0; d++) x[n * D + d] = a.x[n * D0 + d];
          x[n * D + D0 + Math.floor(n / b)] = c;
        }
        return act(x, 1, N, 1, D);
      };
      const q = aug(q0), k = aug(k0);
      return maxAbsDiff(sequenceRef(q, k, v, { blockSize: b }), denseRef(q, k, v).out);
    });
    expect(errs[1]).toBeLessThan(errs[0]);
    expect(errs[2]).toBeLessThan(errs[1]);
    expect(errs[2]).toBeLessThan(1e-6);
    expect(errs[0]).toBeGreaterThan(1e-3);
  });

  test('E14: a fully-masked key block leaks L mass without the fix and is exact with it', () => {
    const rng = mulberry32(111);
    const b = 4, N = 12, D = 4;
    const q = constantQueries(rng, 1, N, 1, D, 1), k = randAct64(rng, 1, N, 1, D), v = randAct64(rng, 1, N, 1, D);
    const keyMask = Uint8Array.from({ length: N }, (_, n) => (n >= 4 && n < 8 ? 0 : 1)); // block 1 empty
    const dense = denseRef(q, k, v, { keyMask }).out;
    expectClose(sequenceRef(q, k, v, { blockSize: b, keyMask }), dense, EXACT, 'with fix');
    expect(maxAbsDiff(sequenceRef(q, k, v, { blockSize: b, keyMask, noEmptyBlockFix: true }), dense)).toBeGreaterThan(1e-2);
  });
});

describe('reference: tiled Monarch and video mappings', () => {
  test('E10: a single tile ≡ MonarchAttention with b = b2 (T = 1..3)', () => {
    const rng = mulberry32(201);
    const b1 = 3, b2 = 5, N = b1 * b2, D = 4;
    const q = randAct64(rng, 1, N, 1, D, 2), k = randAct64(rng, 1, N, 1, D), v = randAct64(rng, 1, N, 1, D);
    for (const T of [1, 2, 3]) {
      const z = tiledHead(q.x, k.x, v.x, { b1, b2, Aq: 1, Fk: 1 }, D, D, { numIters: T });
      expectClose(z, sequenceRef(q, k, v, { blockSize: b2, numIters: T }), EXACT, `T=${T}`);
    }
  });

  test('E10: query tiles are independent (any T)', () => {
    const rng = mulberry32(202);
    const b1 = 2, b2 = 3, A = 3, n = A * b1 * b2, D = 4;
    const q = randAct64(rng, 1, n, 1, D, 2), k = randAct64(rng, 1, n, 1, D), v = randAct64(rng, 1, n, 1, D);
    const g = { b1, b2, Aq: A, Fk: A };
    const z = tiledHead(q.x, k.x, v.x, g, D, D, { numIters: 2 });
    const q2 = cloneAct(q);
    for (let t = 0; t < b1 * b2 * D; t++) q2.x[2 * b1 * b2 * D + t] += 1; // perturb tile 2 only
    const z2 = tiledHead(q2.x, k.x, v.x, g, D, D, { numIters: 2 });
    expectClose(z2.subarray(0, 2 * b1 * b2 * D), z.subarray(0, 2 * b1 * b2 * D), { atol: 0, rtol: 0 }, 'tiles 0, 1');
    // and tile 1 alone as the only query tile gives the same rows
    const z1 = tiledHead(q.x.subarray(b1 * b2 * D, 2 * b1 * b2 * D), k.x, v.x, { ...g, Aq: 1 }, D, D, { numIters: 2 });
    expectClose(z1, z.subarray(b1 * b2 * D, 2 * b1 * b2 * D), EXACT, 'tile 1 alone');
  });

  test('E10: block-causal ≡ per-chunk truncation ≡ KV-cache decode (T = 1, 2)', () => {
    const rng = mulberry32(203);
    const b1 = 2, b2 = 3, C = 2, chunks = 3, A = C * chunks, tileN = b1 * b2, D = 4;
    const n = A * tileN;
    const q = randAct64(rng, 1, n, 1, D, 2), k = randAct64(rng, 1, n, 1, D), v = randAct64(rng, 1, n, 1, D);
    for (const T of [1, 2]) {
      const z = tiledHead(q.x, k.x, v.x, { b1, b2, Aq: A, Fk: A }, D, D, { numIters: T, causalTiles: C });
      for (let c = 0; c < chunks; c++) {
        const rows = z.subarray(c * C * tileN * D, (c + 1) * C * tileN * D);
        const end = (c + 1) * C * tileN;
        // per chunk: all query tiles up to the chunk end, keys truncated there, no causal mask
        const trunc = tiledHead(q.x.subarray(0, end * D), k.x.subarray(0, end * D), v.x.subarray(0, end * D),
          { b1, b2, Aq: (c + 1) * C, Fk: (c + 1) * C }, D, D, { numIters: T });
        expectClose(rows, trunc.subarray(c * C * tileN * D), EXACT, `T=${T} chunk ${c} truncation`);
        // decode: only this chunk's query tiles, cached keys, qTile0 = c·C
        const dec = tiledHead(q.x.subarray(c * C * tileN * D, end * D), k.x.subarray(0, end * D), v.x.subarray(0, end * D),
          { b1, b2, Aq: C, Fk: (c + 1) * C }, D, D, { numIters: T, causalTiles: C, qTile0: c * C });
        expectClose(rows, dec, EXACT, `T=${T} chunk ${c} decode`);
      }
    }
  });

  test('E3 (tiled): queries constant along the in-tile row i ⇒ dense (T = 1, 2)', () => {
    const rng = mulberry32(204);
    const b1 = 3, b2 = 4, A = 2, D = 4, n = A * b1 * b2;
    const q = randAct64(rng, 1, n, 1, D, 2), k = randAct64(rng, 1, n, 1, D), v = randAct64(rng, 1, n, 1, D);
    for (let a = 0; a < A; a++)
      for (let i = 1; i < b1; i++)
        for (let j = 0; j < b2; j++)
          for (let d = 0; d < D; d++) q.x[((a * b1 + i) * b2 + j) * D + d] = q.x[((a * b1) * b2 + j) * D + d];
    const dense = denseRef(q, k, v).out;
    for (const T of [1, 2])
      expectClose(tiledHead(q.x, k.x, v.x, { b1, b2, Aq: A, Fk: A }, D, D, { numIters: T }), dense, EXACT, `T=${T}`);
  });

  test('E4 (tiled): b1 = 1 or b2 = 1 ⇒ dense for any Q', () => {
    const rng = mulberry32(205);
    const D = 3;
    for (const [b1, b2, A] of [[1, 4, 3], [4, 1, 3]]) {
      const n = A * b1 * b2;
      const q = randAct64(rng, 1, n, 1, D, 2), k = randAct64(rng, 1, n, 1, D), v = randAct64(rng, 1, n, 1, D);
      expectClose(tiledHead(q.x, k.x, v.x, { b1, b2, Aq: A, Fk: A }, D, D), denseRef(q, k, v).out, EXACT, `b1=${b1} b2=${b2}`);
    }
  });

  test('B.2 mapping: a bijection, matching the formula, with the documented b1, b2, A', () => {
    const g = { frames: 4, height: 6, width: 4, fTied: 2, hReduce: 3, wReduce: 2 };
    const tm = tileMap(g);
    expect([tm.b1, tm.b2, tm.A]).toEqual([2 * 2, 2, 2 * 3 * 2]);
    const seen = new Uint8Array(4 * 6 * 4);
    for (const r of tm.order) seen[r]++;
    expect(Array.from(seen).every((c) => c === 1)).toBe(true);
    // spot check: token (t=3, y=5, x=3): a = ((1)·3 + 5÷2)·2 + 3÷2 = 11, i = 1·2 + 1 = 3, j = 1
    expect(monarchrtCoords(g, 3, 5, 3)).toEqual({ a: 11, i: 3, j: 1 });
    expect(tm.order[(11 * tm.b1 + 3) * tm.b2 + 1]).toBe((3 * 6 + 5) * 4 + 3);
    // default config: tile = frame, raster order unchanged
    const plain = tileMap({ frames: 2, height: 3, width: 5 });
    expect([plain.b1, plain.b2, plain.A]).toEqual([3, 5, 2]);
    expect(Array.from(plain.order)).toEqual(Array.from({ length: 30 }, (_, i) => i));
  });

  test('video: one frame with fTied = hReduce = wReduce = 1 ≡ MA with b = width; vmonarch ≡ MA with b = h·w', () => {
    const rng = mulberry32(206);
    const F = 3, h = 2, w = 3, D = 4, N = F * h * w;
    const q = randAct64(rng, 1, N, 2, D, 2), k = randAct64(rng, 1, N, 2, D), v = randAct64(rng, 1, N, 2, D);
    const one = (a: Act): Act => sliceTokens(a, 0, h * w);
    expectClose(videoRef(one(q), one(k), one(v), { frames: 1, height: h, width: w }, { numIters: 2 }),
      sequenceRef(one(q), one(k), one(v), { blockSize: w, numIters: 2 }), EXACT, 'monarchrt 1 frame');
    expectClose(videoRef(q, k, v, { frames: F, height: h, width: w, factorization: 'vmonarch' }, { numIters: 2 }),
      sequenceRef(q, k, v, { blockSize: h * w, numIters: 2 }), EXACT, 'vmonarch');
    // the headMatrix helper round-trips (guards the per-head plumbing)
    expect(headMatrix(q, 0, 1).length).toBe(N * D);
  });

  test('recompute first-frame: frame-0 rows are dense rows', () => {
    const rng = mulberry32(207);
    const F = 2, h = 2, w = 2, D = 3, N = F * h * w;
    const q = randAct64(rng, 1, N, 1, D, 2), k = randAct64(rng, 1, N, 1, D), v = randAct64(rng, 1, N, 1, D);
    const z = videoRef(q, k, v, { frames: F, height: h, width: w }, { recompute: 'first-frame' });
    const dense = denseRef(q, k, v).out;
    expectClose(z.subarray(0, h * w * D), dense.subarray(0, h * w * D), EXACT, 'frame 0');
    expect(maxAbsDiff(z.subarray(h * w * D), dense.subarray(h * w * D))).toBeGreaterThan(1e-3);
  });
});

describe('reference: E11 online entropy recurrence (§C.3) = two-pass', () => {
  test('raw and shifted forms, increasing-max tiles', () => {
    const rng = mulberry32(301);
    const n = 37, tile = 5;
    // steadily increasing logits make the running max move on every tile
    const x = Float64Array.from({ length: n }, (_, i) => 0.3 * i + rng.normal());
    let m = -Infinity, l = 0, u = 0, us = 0;
    for (let t0 = 0; t0 < n; t0 += tile) {
      const xb = x.subarray(t0, Math.min(n, t0 + tile));
      const m2 = Math.max(m, ...xb);
      const alpha = m === -Infinity ? 0 : Math.exp(m - m2);
      let ps = 0, px = 0, pxs = 0;
      for (const xi of xb) {
        const p = Math.exp(xi - m2);
        ps += p;
        px += p * xi;
        pxs += p * (xi - m2);
      }
      us = alpha * (us + (m === -Infinity ? 0 : (m - m2) * l)) + pxs;
      l = alpha * l + ps;
      u = alpha * u + px;
      m = m2;
    }
    const lse = m + Math.log(l);
    let mx = -Infinity;
    for (const xi of x) mx = Math.max(mx, xi);
    let z = 0;
    for (const xi of x) z += Math.exp(xi - mx);
    const lse2 = mx + Math.log(z);
    let negEnt = 0;
    for (const xi of x) {
      const p = Math.exp(xi - lse2);
      negEnt += p * Math.log(p);
    }
    expect(Math.abs(lse - lse2)).toBeLessThan(1e-12);
    expect(Math.abs(u / l - lse - negEnt)).toBeLessThan(1e-12);
    expect(Math.abs(us / l - Math.log(l) - negEnt)).toBeLessThan(1e-12);
  });
});
