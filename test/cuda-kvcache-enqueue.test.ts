// Enqueued KV-cache calls on CUDA (skips without a GPU): a two-layer rolling pool run through
// enqueueAttend in groups with one flush each gives the same bits as the awaited attend() path (same
// kernels, same order on one stream) and matches the CPU backend's fp32 protocol within 3× the CPU's own
// bf16 error; outputs are readable after a flush, and DeviceTensor.download() (a device-wide wait) orders
// itself after enqueued work without one; dispose with enqueued work pending frees after it. A flush is a
// fence: it resolves while calls enqueued after it still run on the GPU, and pipelined groups (group n + 1
// enqueued before group n's flush is awaited) give the same bits.
import { describeCuda } from './helpers/backend';
import { expectAllFinite, expectBitIdentical, expectClose } from './helpers/compare';
import { cudaTolerance, deviceBits, fromDevice, toDevice } from './helpers/cuda';
import { CudaEvent, DeviceTensor, MonarchAttention, memoryStats } from './helpers/pkg';
import type { DType, MonarchOptions } from './helpers/pkg';
import { mulberry32 } from './helpers/rng';
import { protocolInputs } from './helpers/self-forcing';
import { fromHost, toHost } from './helpers/tensors';

const H = 2, D = 64, PASSES = 4, L = 2, dtype: DType = 'bfloat16';
const base: MonarchOptions = { layout: { kind: 'video', frames: 6, height: 4, width: 8, wReduce: 2 }, heads: H, headDim: D, numIters: 2, causal: { chunkFrames: 2 } };
const win = { localAttnFrames: 4, sinkFrames: 2 };
const cf = 2, chunkN = 2 * 32, chunks = 5;

describeCuda('KV cache enqueued calls (bf16, device tensors)', () => {
  test('groups of enqueueAttend + one flush each: bit-identical to awaited attend(), close to the CPU fp32 protocol', async () => {
    const rng = mulberry32(140000);
    const inputs = Array.from({ length: L }, () => protocolInputs(rng, chunks, PASSES, 1, chunkN, H, D, dtype));
    const cpu32 = new MonarchAttention({ ...base, backend: 'cpu' }), cpu16 = new MonarchAttention({ ...base, dtype, backend: 'cpu' });
    const gpu = new MonarchAttention({ ...base, dtype, backend: 'cuda' });
    const p32 = cpu32.createKVCachePool({ layers: L, ...win }), p16 = cpu16.createKVCachePool({ layers: L, ...win });
    const awaited = gpu.createKVCachePool({ layers: L, ...win }), enq = gpu.createKVCachePool({ layers: L, ...win });
    const dev = inputs.map((ps) => ps.map((p) => ({ q: toDevice(p.q, dtype), k: toDevice(p.k, dtype), v: toDevice(p.v, dtype) })));
    try {
      for (let i = 0; i < inputs[0].length; i += PASSES + 1) {
        const outs: DeviceTensor[] = [];
        // groups of 3 calls, pass-major, layer-minor
        const order = Array.from({ length: (PASSES + 1) * L }, (_, j) => ({ t: Math.floor(j / L), l: j % L }));
        for (let g = 0; g < order.length; g += 3) {
          for (const { t, l } of order.slice(g, g + 3)) {
            const d = dev[l][i + t];
            outs.push(enq.layers[l].enqueueAttend(d.q, { frame: inputs[l][i + t].c * cf, write: { k: d.k, v: d.v } }));
          }
          await enq.flush();
        }
        for (let j = 0; j < order.length; j++) {
          const { t, l } = order[j], p = inputs[l][i + t], d = dev[l][i + t], opts = { frame: p.c * cf };
          const want = await awaited.layers[l].attend(d.q, { ...opts, write: { k: d.k, v: d.v } });
          const label = `layer ${l} chunk ${p.c} pass ${p.t}`;
          expectBitIdentical(deviceBits(outs[j]), deviceBits(want), `${label}: enqueued vs awaited`);
          const ref32 = fromHost(p32.layers[l].attendSync(toHost(p.q), { ...opts, write: { k: toHost(p.k), v: toHost(p.v) } }) as never);
          const low = fromHost(p16.layers[l].attendSync(toHost(p.q, dtype), { ...opts, write: { k: toHost(p.k, dtype), v: toHost(p.v, dtype) } }) as never);
          const got = fromDevice(outs[j]);
          expectAllFinite(got, label);
          expectClose(got, ref32, cudaTolerance(low, ref32, dtype), label, [1, chunkN, H, D]);
          want.dispose();
          outs[j].dispose();
        }
      }
      expect(enq.layers[0].evictedFrames).toBeGreaterThan(0);
    } finally {
      dev.flat().forEach((d) => [d.q, d.k, d.v].forEach((t) => t.dispose()));
      for (const x of [p32, p16, awaited, enq, cpu32, cpu16, gpu]) x.dispose();
    }
  });

  test('flush() is a fence: it resolves while later calls still run; pipelined groups (depth 2) give the depth-1 bits', async () => {
    // Wan-sized chunks (4 frames × 30 × 52 tokens over 8 cached frames, 12 × 128, T = 3): each call is about
    // a millisecond of GPU work and tens of µs of host work, so 160 calls enqueued after a flush are still
    // running when it resolves. (With 0.5 ms calls the H200 kept up with the enqueue loop and the check
    // raced; 40 calls raced once in session 12, after the first R-step at 4 query tiles got faster.)
    const big: MonarchOptions = { layout: { kind: 'video', frames: 12, height: 30, width: 52 }, heads: 12, headDim: 128, numIters: 3, causal: { chunkFrames: 4 } };
    const gpu = new MonarchAttention({ ...big, dtype, backend: 'cuda' });
    const shape = [1, 4 * 30 * 52, 12, 128];
    const [q, k, v, out] = [0, 1, 2, 3].map(() => DeviceTensor.empty(shape, dtype));
    [q, k, v].forEach((t, i) => t.fill(0.01 * (i + 1)));
    const pool = gpu.createKVCachePool({ layers: 1 });
    const late = new CudaEvent();
    try {
      pool.layers[0].enqueueAttend(q, { frame: 0, write: { k, v }, out });
      const first = pool.flush();
      for (let i = 0; i < 160; i++) pool.layers[0].enqueueAttend(q, { frame: 4, write: { k, v }, out, recordEvent: i === 159 ? late.handle : undefined });
      await first;
      expect(late.query()).toBe(false);  // a stream synchronisation would have waited for the 160 calls too
      await pool.flush();
      expect(late.query()).toBe(true);
    } finally {
      late.dispose();
      [q, k, v, out].forEach((t) => t.dispose());
      pool.dispose();
      gpu.dispose();
    }

    // The same calls at depth 1 and depth 2 (groups of 3): the same bits.
    const rng = mulberry32(142000);
    const inputs = Array.from({ length: L }, () => protocolInputs(rng, chunks, PASSES, 1, chunkN, H, D, dtype));
    const small = new MonarchAttention({ ...base, dtype, backend: 'cuda' });
    const dev = inputs.map((ps) => ps.map((p) => ({ q: toDevice(p.q, dtype), k: toDevice(p.k, dtype), v: toDevice(p.v, dtype) })));
    const run = async (depth: number): Promise<Uint16Array[]> => {
      const p = small.createKVCachePool({ layers: L, ...win });
      const outs: DeviceTensor[] = [], pending: Array<Promise<void>> = [];
      try {
        for (let i = 0; i < inputs[0].length; i += PASSES + 1) {
          const order = Array.from({ length: (PASSES + 1) * L }, (_, j) => ({ t: Math.floor(j / L), l: j % L }));
          for (let g = 0; g < order.length; g += 3) {
            for (const { t, l } of order.slice(g, g + 3)) {
              const d = dev[l][i + t];
              outs.push(p.layers[l].enqueueAttend(d.q, { frame: inputs[l][i + t].c * cf, write: { k: d.k, v: d.v } }));
            }
            pending.push(p.flush());
            while (pending.length >= depth) await pending.shift();
          }
        }
        while (pending.length > 0) await pending.shift();
        return outs.map((o) => deviceBits(o));
      } finally {
        outs.forEach((o) => o.dispose());
        p.dispose();
      }
    };
    try {
      const one = await run(1), two = await run(2);
      expect(two).toHaveLength(one.length);
      two.forEach((b, i) => expectBitIdentical(b, one[i], `call ${i}: depth 2 vs depth 1`));
    } finally {
      dev.flat().forEach((d) => [d.q, d.k, d.v].forEach((t) => t.dispose()));
      small.dispose();
    }
  });

  test('download() without a flush sees enqueued work; steady-state enqueue + flush allocates nothing; dispose mid-batch frees after the work', async () => {
    const rng = mulberry32(141000);
    const ps = protocolInputs(rng, 3, 0, 1, chunkN, H, D, dtype);
    const gpu = new MonarchAttention({ ...base, dtype, backend: 'cuda' });
    const pool = gpu.createKVCachePool({ layers: 1, ...win }), ref = gpu.createKVCachePool({ layers: 1, ...win });
    const dev = ps.map((p) => ({ q: toDevice(p.q, dtype), k: toDevice(p.k, dtype), v: toDevice(p.v, dtype) }));
    const out = DeviceTensor.empty([1, chunkN, H, D], dtype);
    try {
      for (let c = 0; c < 3; c++) pool.layers[0].enqueueAttend(dev[c].q, { frame: c * cf, write: { k: dev[c].k, v: dev[c].v }, out });
      const got = Uint16Array.from((await out.download()).data as Uint16Array);  // a device-wide wait: after the enqueued work
      await pool.flush();
      let want: DeviceTensor | undefined;
      for (let c = 0; c < 3; c++) { want?.dispose(); want = await ref.layers[0].attend(dev[c].q, { frame: c * cf, write: { k: dev[c].k, v: dev[c].v } }); }
      expectBitIdentical(got, deviceBits(want!), 'download without a flush');
      want!.dispose();
      const before = memoryStats().deviceAllocations;
      for (let r = 0; r < 20; r++) { pool.layers[0].enqueueAttend(dev[2].q, { frame: 2 * cf, write: { k: dev[2].k, v: dev[2].v }, out }); if (r % 5 === 4) await pool.flush(); }
      expect(memoryStats().deviceAllocations).toBe(before);
      for (let r = 0; r < 10; r++) pool.layers[0].enqueueAttend(dev[2].q, { frame: 2 * cf, write: { k: dev[2].k, v: dev[2].v }, out });
      await pool.close();  // synchronises the stream before freeing
      expect(() => pool.layers[0].enqueueAttend(dev[2].q, { frame: 2 * cf, out })).toThrow(/KVCache was disposed/);
      expectBitIdentical(deviceBits(out), got, 'the last enqueued rewrite of chunk 2 (same inputs) before dispose');
    } finally {
      dev.forEach((d) => [d.q, d.k, d.v].forEach((t) => t.dispose()));
      out.dispose();
      pool.dispose();
      ref.dispose();
      gpu.dispose();
    }
  });
});
