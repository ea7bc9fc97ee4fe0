// Hostile review of sliced staging (CPU backend), regressions:
//  - an input over a resizable ArrayBuffer shrunk and regrown between two slices (same address, same
//    length, the shrunk part zeroed) must not be staged half-zeroed: such inputs are copied at call time;
//  - hostStagingSliceBytes past Number.MAX_SAFE_INTEGER (2^53, 1e308) is an integer ≥ 65536 as the docs
//    say: accepted as "no slicing" (Infinity), not refused with "out of range >= 65536".
import { denseAttention, MonarchAttention, tensor } from './helpers/pkg';
import type { HostTensor, MonarchOptions } from './helpers/pkg';
import { expectBitIdentical } from './helpers/compare';
import { pendingStagingJobs } from '../lib/hoststage';

let seed = 1 + Math.floor(Math.random() * 1e6);
const rand = (): number => { seed = (Math.imul(seed, 1103515245) + 12345) >>> 0; return seed / 4294967296 - 0.5; };
const fill = (a: Float32Array): Float32Array => { for (let i = 0; i < a.length; i++) a[i] = rand(); return a; };

const S = 1000, H = 4, D = 40, shape = [1, S, H, D], n = S * H * D;
const base: MonarchOptions = { backend: 'cpu', layout: { kind: 'sequence', length: S, blockSize: 16 }, heads: H, headDim: D, numIters: 2 };
const Resizable = ArrayBuffer as unknown as new (bytes: number, o: { maxByteLength: number }) => ArrayBuffer & { resize(n: number): void };
const turns = async (k: number): Promise<void> => { for (let i = 0; i < k; i++) await new Promise((r) => setImmediate(r)); };
const plain = (): HostTensor => tensor(fill(new Float32Array(n)), shape);
const copy = (t: HostTensor): HostTensor => tensor((t.data as Float32Array).slice(), shape);

describe('sliced staging, hostile review (CPU)', () => {
  test.each([['fixed-length view', false], ['length-tracking view', true]])(
    'a resizable input shrunk and regrown between slices is not staged half-zeroed (%s)', async (_label, tracking) => {
      const a = new MonarchAttention({ ...base, hostStagingSliceBytes: 65536 });
      const u = new MonarchAttention(base);
      const rab = new Resizable(n * 4, { maxByteLength: n * 4 });
      const q = tensor(fill(tracking ? new Float32Array(rab) : new Float32Array(rab, 0, n)), shape);
      const [k, v] = [plain(), plain()];
      const want = u.forwardSync(copy(q), k, v).data;
      const p = a.forward(q, copy(k), copy(v));
      await turns(3);
      rab.resize(n * 2);  // the second half of q is gone …
      rab.resize(n * 4);  // … and back, zeroed, at the same address
      const got = await p;
      expectBitIdentical(got.data, want, 'q shrunk and regrown', shape);
      expect(pendingStagingJobs()).toBe(0);
      a.dispose(); u.dispose();
    });

  test('hostStagingSliceBytes past 2^53 - 1 (2^53, 1e308) means no slicing; the config reads Infinity', async () => {
    for (const s of [2 ** 53, 1e308, Number.MAX_VALUE]) {
      const a = new MonarchAttention({ ...base, hostStagingSliceBytes: s });
      expect(a.config.hostStagingSliceBytes).toBe(Infinity);
      const [q, k, v] = [plain(), plain(), plain()];
      const want = a.forwardSync(q, k, v).data;
      expectBitIdentical((await a.forward(q, k, v)).data, want, `slice ${s}`, shape);
      await expect(denseAttention(q, k, v, { hostStagingSliceBytes: s })).resolves.toBeDefined();
      a.dispose();
    }
    expect(() => new MonarchAttention({ ...base, hostStagingSliceBytes: -Infinity })).toThrow(/must be an integer/);
    expect(() => new MonarchAttention({ ...base, hostStagingSliceBytes: NaN })).toThrow(/must be an integer/);
  });
});
