// E7: MonarchAttention is equivariant under permuting whole blocks and under one permutation applied inside
// every block (docs/ALGORITHMS.md §A.8): package(Pq, Pk, Pv) = P·package(q, k, v). Sums run in another order, so
// the comparison uses FP32_REORDER rather than bit identity.
import { act, permuteTokens } from './helpers/act';
import { expectClose } from './helpers/compare';
import { mulberry32, randPerm } from './helpers/rng';
import { monarch } from './helpers/run';
import { randAct } from './helpers/tensors';
import { FP32_REORDER } from './helpers/tolerances';
import type { MonarchOptions } from './helpers/pkg';

describe('E7: equivariance (package, fp32)', () => {
  const b = 3, m = 5, N = b * m, H = 2, D = 8;
  for (const T of [1, 3])
    for (const kind of ['block permutation', 'common within-block permutation'])
      test(`${kind}, T=${T}`, () => {
        const rng = mulberry32(7000 + T + (kind.startsWith('block') ? 0 : 50));
        const q = randAct(rng, 1, N, H, D, 2), k = randAct(rng, 1, N, H, D), v = randAct(rng, 1, N, H, D);
        const opts: MonarchOptions = { layout: { kind: 'sequence', length: N, blockSize: b }, heads: H, headDim: D, numIters: T };
        const bp = randPerm(rng, m), wp = randPerm(rng, b);
        const perm = kind.startsWith('block')
          ? Array.from({ length: N }, (_, n) => bp[Math.floor(n / b)] * b + (n % b))
          : Array.from({ length: N }, (_, n) => Math.floor(n / b) * b + wp[n % b]);
        const z = act(monarch(opts, q, k, v), 1, N, H, D);
        const zp = monarch(opts, permuteTokens(q, perm), permuteTokens(k, perm), permuteTokens(v, perm));
        expectClose(zp, permuteTokens(z, perm).x, FP32_REORDER, `${kind} T=${T}`, [1, N, H, D]);
      });
});
