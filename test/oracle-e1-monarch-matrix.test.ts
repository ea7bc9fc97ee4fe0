// E1 (docs/ALGORITHMS.md §E): M built from the factors is row-stochastic and z = M·V; running the package with
// V = I returns M itself (the "get_matrix" check), so the package's output is exactly M·V.
import { act, Act } from './helpers/act';
import { expectClose } from './helpers/compare';
import { mulberry32 } from './helpers/rng';
import { monarch } from './helpers/run';
import { randAct } from './helpers/tensors';
import { FP32 } from './helpers/tolerances';
import { monarchMatrix, sequenceHead } from './reference/sequence';

/** V = identity: v[n][d] = δ(n, d) (needs D = N), for every head. */
function identityValues(N: number, H: number): Act {
  const x = new Float64Array(N * H * N);
  for (let n = 0; n < N; n++) for (let h = 0; h < H; h++) x[(n * H + h) * N + n] = 1;
  return act(x, 1, N, H, N);
}

describe('E1: the package output is M·V for the Monarch matrix M of the reference', () => {
  const N = 8, D = 8, H = 2, b = 3; // Np = 9: one pad token
  for (const T of [1, 2, 3])
    for (const padding of ['pre', 'post'] as const)
      test(`T=${T} padding=${padding} (N=${N}, b=${b}, key mask)`, () => {
        const rng = mulberry32(1000 + T * 10 + (padding === 'pre' ? 1 : 0));
        const q = randAct(rng, 1, N, H, D, 1.5), k = randAct(rng, 1, N, H, D);
        const keyMask = Uint8Array.from({ length: N }, (_, n) => (n === 4 ? 0 : 1));
        const opts = { layout: { kind: 'sequence' as const, length: N, blockSize: b, padding }, heads: H, headDim: D, numIters: T };
        // package with V = I: out[n][h][t] = M[pos(n)][pos(t)]
        const got = monarch(opts, q, k, identityValues(N, H), { keyMask });
        const randV = randAct(rng, 1, N, H, D);
        const gotMV = monarch(opts, q, k, randV, { keyMask });
        for (let h = 0; h < H; h++) {
          const head = (a: Act): Float64Array => {
            const m = new Float64Array(N * D);
            for (let n = 0; n < N; n++) for (let d = 0; d < D; d++) m[n * D + d] = a.x[(n * H + h) * D + d];
            return m;
          };
          const r = sequenceHead(head(q), head(k), head(randV), N, D, D, { blockSize: b, numIters: T, padding }, keyMask);
          const M = monarchMatrix(r);
          const want = new Float64Array(N * N), wantMV = new Float64Array(N * D);
          for (let n = 0; n < N; n++) {
            let rowSum = 0;
            for (let t = 0; t < N; t++) {
              const mnt = M[r.pos(n) * r.Np + r.pos(t)];
              want[n * N + t] = mnt;
              rowSum += mnt;
              for (let d = 0; d < D; d++) wantMV[n * D + d] += mnt * randV.x[(t * H + h) * D + d];
            }
            // row-stochastic over the real keys: pads and masked keys get no mass
            expect(Math.abs(rowSum - 1)).toBeLessThan(1e-12);
          }
          const gotM = new Float64Array(N * N), gotZ = new Float64Array(N * D);
          for (let n = 0; n < N; n++) {
            for (let t = 0; t < N; t++) gotM[n * N + t] = got[(n * H + h) * N + t];
            for (let d = 0; d < D; d++) gotZ[n * D + d] = gotMV[(n * H + h) * D + d];
          }
          // rows of masked queries are don't-care for T ≥ 2 (§A.4): compare the valid rows
          const rows = T === 1 ? [...Array(N).keys()] : [...Array(N).keys()].filter((n) => keyMask[n]);
          const sel = (x: Float64Array, w: number): Float64Array => Float64Array.from(rows.flatMap((n) => Array.from(x.subarray(n * w, n * w + w))));
          expectClose(sel(gotM, N), sel(want, N), FP32, `head ${h}: package(V=I) vs M`, [rows.length, N]);
          expectClose(sel(gotZ, D), sel(wantMV, D), FP32, `head ${h}: package vs M·V`, [rows.length, D]);
        }
      });
});
