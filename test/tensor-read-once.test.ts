// Tensor arguments are read once (lib/inputs.ts freezeTensor): a host tensor whose `data` / `shape` /
// `dtype` getters return something else on a later read is checked, staged and computed on as its
// first read — never validated as one array and computed on another (CPU backend). Each getter counts
// its reads, so the tests also pin that every field is read exactly once per call.
import { denseAttention, denseAttentionSync, MonarchAttention, tensor } from './helpers/pkg';
import type { HostTensor, MonarchOptions } from './helpers/pkg';
import { expectBitIdentical } from './helpers/compare';

let seed = 1 + Math.floor(Math.random() * 1e6);
const rand = (): number => { seed = (Math.imul(seed, 1103515245) + 12345) >>> 0; return seed / 4294967296 - 0.5; };
const fill = (a: Float32Array): Float32Array => { for (let i = 0; i < a.length; i++) a[i] = rand(); return a; };

const S = 64, H = 2, D = 8, shape = [1, S, H, D], n = S * H * D;
const base: MonarchOptions = { backend: 'cpu', layout: { kind: 'sequence', length: S, blockSize: 8 }, heads: H, headDim: D, numIters: 2 };
const plain = (): HostTensor => tensor(fill(new Float32Array(n)), shape);

/** A tensor whose fields yield `first` on the first read and `later` afterwards; counts the reads. */
function shifty(first: HostTensor, later: { data?: unknown; shape?: unknown; dtype?: unknown }): { t: HostTensor; reads: Record<string, number> } {
  const reads: Record<string, number> = { data: 0, shape: 0, dtype: 0 };
  const t = {} as HostTensor;
  for (const key of ['data', 'shape', 'dtype'] as const) {
    Object.defineProperty(t, key, {
      enumerable: true,
      get: () => (reads[key]++ === 0 || !(key in later) ? first[key] : later[key]),
    });
  }
  return { t, reads };
}

describe('tensor arguments are read once (CPU)', () => {
  test('forward / forwardSync: computed on the first read of data and shape, each field read once', async () => {
    const a = new MonarchAttention(base);
    const [q, k, v] = [plain(), plain(), plain()];
    const want = a.forwardSync(q, k, v).data;
    for (const sync of [false, true]) {
      // later reads: another array of the same length, then one of the wrong length and a wrong shape
      const s1 = shifty(q, { data: fill(new Float32Array(n)) });
      const s2 = shifty(k, { data: new Float32Array(3), shape: [1, 2, 3, 4] });
      const out = sync ? a.forwardSync(s1.t, s2.t, v) : await a.forward(s1.t, s2.t, v);
      expectBitIdentical(out.data, want, `forward${sync ? 'Sync' : ''} with shifting getters`, shape);
      for (const r of [s1.reads, s2.reads]) expect(r).toEqual({ data: 1, shape: 1, dtype: 1 });
    }
    a.dispose();
  });

  test('a tensor that is not host-tensor-shaped on its one read is refused with the usual message', () => {
    const a = new MonarchAttention(base);
    const [q, k, v] = [plain(), plain(), plain()];
    const s = shifty({ data: 'nope' as unknown as Float32Array, shape, dtype: 'float32' }, { data: q.data });
    expect(() => a.forwardSync(s.t, k, v)).toThrow(/q must be a HostTensor or a DeviceTensor/);
    expect(s.reads.data).toBe(1);
    a.dispose();
  });

  test('denseAttention and the KV cache read their tensors once too', async () => {
    const [q, k, v] = [plain(), plain(), plain()];
    const want = denseAttentionSync(q, k, v).out.data;
    const s = shifty(v, { data: fill(new Float32Array(n)) });
    expectBitIdentical((await denseAttention(q, k, s.t)).out.data, want, 'dense with a shifting v', shape);
    expect(s.reads).toEqual({ data: 1, shape: 1, dtype: 1 });

    const video: MonarchOptions = { backend: 'cpu', layout: { kind: 'video', frames: 4, height: 2, width: 4 }, heads: H, headDim: D, causal: { chunkFrames: 2 } };
    const chunk = [1, 16, H, D], m = 16 * H * D;
    const part = (): HostTensor => tensor(fill(new Float32Array(m)), chunk);
    const [cq, ck, cv] = [part(), part(), part()];
    const ref = new MonarchAttention(video).createKVCache();
    const wantKv = ref.stepSync(cq, ck, cv).data;
    const cache = new MonarchAttention(video).createKVCache();
    const sk = shifty(ck, { data: fill(new Float32Array(m)) });
    expectBitIdentical((await cache.step(cq, sk.t, cv)).data, wantKv, 'KV step with a shifting k', chunk);
    expect(sk.reads).toEqual({ data: 1, shape: 1, dtype: 1 });
    ref.dispose(); cache.dispose();
  });
});
