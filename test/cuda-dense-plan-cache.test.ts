// Dense attention's cached plans on CUDA (skips without a GPU): repeated calls of one shape — DeviceTensor
// inputs (outputs disposed, so their memory comes back to the plan's output pool), ordinary and pinned
// host inputs, async and sync, with lse / entropy, on a caller's stream — make no cudaMalloc after the
// first call, and concurrent calls of one shape give the results of sequential ones bit for bit.
import { describeCuda } from './helpers/backend';
import { allocTensor, CudaStream, denseAttention, denseAttentionSync, DeviceTensor, memoryStats, tensor } from './helpers/pkg';
import type { DenseOptions, HostTensor } from './helpers/pkg';

let seed = 1 + Math.floor(Math.random() * 1e6);
const rand = (): number => { seed = (Math.imul(seed, 1103515245) + 12345) >>> 0; return seed / 4294967296 - 0.5; };
const bits = (t: HostTensor): number[] => Array.from(t.data as Uint16Array | Float32Array);
const H = 4, D = 64;

function bf16(shape: number[]): HostTensor {
  const n = shape.reduce((a, b) => a * b, 1);
  const f = Float32Array.from({ length: n }, rand);
  const u = new Uint16Array(n);
  const dv = new DataView(f.buffer);
  for (let i = 0; i < n; i++) u[i] = dv.getUint32(i * 4, true) >>> 16;
  return tensor(u, shape, 'bfloat16');
}
const pinned = (t: HostTensor): HostTensor => {
  const p = allocTensor(t.shape, t.dtype);
  (p.data as Uint16Array).set(t.data as Uint16Array);
  return p;
};

describeCuda('dense plan cache', () => {
  const Nq = 300, Nk = 520;
  const opts: DenseOptions = { backend: 'cuda', returnLse: true, returnEntropy: true, causalChunk: 130 };
  const [q, k, v] = [bf16([2, Nq, H, D]), bf16([2, Nk, H, D]), bf16([2, Nk, H, D])];

  test('DeviceTensor inputs: 5 calls (async and sync) after the first allocate no device memory', async () => {
    const dev = [q, k, v].map((t) => DeviceTensor.fromHost(t));
    const first = await denseAttention(dev[0], dev[1], dev[2], opts);
    const want = bits(first.out.downloadSync()), lse = bits(first.lse!), ent = bits(first.entropy!);
    first.out.dispose();
    denseAttentionSync(dev[0], dev[1], dev[2], opts).out.dispose();
    const s0 = memoryStats();
    for (let i = 0; i < 5; i++) {
      const r = await denseAttention(dev[0], dev[1], dev[2], opts);
      expect(bits(r.out.downloadSync())).toEqual(want);
      expect(bits(r.lse!)).toEqual(lse);
      expect(bits(r.entropy!)).toEqual(ent);
      r.out.dispose();
      const rs = denseAttentionSync(dev[0], dev[1], dev[2], opts);
      expect(bits(rs.out.downloadSync())).toEqual(want);
      rs.out.dispose();
    }
    expect(memoryStats().deviceAllocations).toBe(s0.deviceAllocations);
    dev.forEach((t) => t.dispose());
  });

  test('host inputs (ordinary and pinned): 5 calls after the first allocate no device or host memory', async () => {
    const want = denseAttentionSync(q, k, v, opts);
    for (const wrap of [(t: HostTensor) => t, pinned]) {
      const [a, b, c] = [wrap(q), wrap(k), wrap(v)];
      await denseAttention(a, b, c, opts);
      denseAttentionSync(a, b, c, opts);
      const s0 = memoryStats();
      for (let i = 0; i < 5; i++) {
        const r = await denseAttention(a, b, c, opts);
        expect(bits(r.out)).toEqual(bits(want.out));
        expect(bits(r.lse!)).toEqual(bits(want.lse!));
        expect(bits(denseAttentionSync(a, b, c, opts).out)).toEqual(bits(want.out));
      }
      const s1 = memoryStats();
      expect(s1.deviceAllocations).toBe(s0.deviceAllocations);
      expect(s1.hostAllocations).toBe(s0.hostAllocations);
    }
  });

  test("a caller's stream: same results, no allocation after the first call, the stream may be destroyed afterwards", async () => {
    const want = denseAttentionSync(q, k, v, opts);
    const stream = new CudaStream();
    const so = { ...opts, stream: stream.handle };
    await denseAttention(q, k, v, so);
    const s0 = memoryStats();
    for (let i = 0; i < 5; i++) {
      expect(bits((await denseAttention(q, k, v, so)).out)).toEqual(bits(want.out));
      expect(bits(denseAttentionSync(q, k, v, so).out)).toEqual(bits(want.out));
    }
    expect(memoryStats().deviceAllocations).toBe(s0.deviceAllocations);
    stream.dispose();  // the cached plan kept no handle of it
    expect(bits((await denseAttention(q, k, v, opts)).out)).toEqual(bits(want.out));
  });

  test('Promise.all of 3 same-shape calls gives the sequential results (host and device inputs)', async () => {
    const sets = [0, 1, 2].map(() => [bf16([2, Nq, H, D]), bf16([2, Nk, H, D]), bf16([2, Nk, H, D])]);
    const want = sets.map(([a, b, c]) => denseAttentionSync(a, b, c, opts));
    for (let round = 0; round < 3; round++) {
      const got = await Promise.all(sets.map(([a, b, c]) => denseAttention(a, b, c, opts)));
      got.forEach((r, i) => {
        expect(bits(r.out)).toEqual(bits(want[i].out));
        expect(bits(r.entropy!)).toEqual(bits(want[i].entropy!));
      });
      const devs = sets.map((s) => s.map((t) => DeviceTensor.fromHost(t)));
      const dgot = await Promise.all(devs.map(([a, b, c]) => denseAttention(a, b, c, opts)));
      dgot.forEach((r, i) => {
        expect(bits(r.out.downloadSync())).toEqual(bits(want[i].out));
        r.out.dispose();
      });
      devs.flat().forEach((t) => t.dispose());
    }
    // Steady state of the burst: after one host burst (the device bursts' plans have another key, and the
    // cache holds 4), three host plans of this shape are cached, so the next burst allocates nothing.
    await Promise.all(sets.map(([a, b, c]) => denseAttention(a, b, c, opts)));
    const s0 = memoryStats();
    await Promise.all(sets.map(([a, b, c]) => denseAttention(a, b, c, opts)));
    expect(memoryStats().deviceAllocations).toBe(s0.deviceAllocations);
  });
});
