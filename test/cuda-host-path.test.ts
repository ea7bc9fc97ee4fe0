// CUDA host-tensor path (skips without a GPU): host inputs are secured at call time into pinned staging
// (pinned addon memory is used in place), uploaded and downloaded by copies on the instance's stream, and
// the Promise resolves when the output is on the host. Checked: the result equals the device-tensor
// path bit for bit for ordinary, shared and pinned inputs and every kind of `out`; inputs detached right
// after the call do not change it; steady-state host forwards and KV calls allocate nothing.
import { describeCuda } from './helpers/backend';
import { allocTensor, DeviceTensor, memoryStats, MonarchAttention, tensor } from './helpers/pkg';
import type { HostTensor } from './helpers/pkg';

let seed = 1 + Math.floor(Math.random() * 1e6);
const rand = (): number => { seed = (Math.imul(seed, 1103515245) + 12345) >>> 0; return seed / 4294967296 - 0.5; };
const bits = (t: HostTensor): number[] => Array.from(t.data as Uint16Array);
const H = 2, D = 64;

function bf16(shape: number[]): HostTensor {
  const n = shape.reduce((a, b) => a * b, 1);
  const f = Float32Array.from({ length: n }, rand);
  const u = new Uint16Array(n);
  const dv = new DataView(f.buffer);
  for (let i = 0; i < n; i++) u[i] = dv.getUint32(i * 4, true) >>> 16;  // truncation is fine for inputs
  return tensor(u, shape, 'bfloat16');
}
const asShared = (t: HostTensor): HostTensor => {
  const u = new Uint16Array(new SharedArrayBuffer(t.data.byteLength));
  u.set(t.data as Uint16Array);
  return tensor(u, t.shape, t.dtype);
};
const asPinned = (t: HostTensor): HostTensor => {
  const p = allocTensor(t.shape, t.dtype);
  (p.data as Uint16Array).set(t.data as Uint16Array);
  return p;
};

describeCuda('CUDA host path (bf16)', () => {
  const S = 512, shape = [1, S, H, D];
  const opts = { layout: { kind: 'sequence' as const, length: S, blockSize: 32 }, heads: H, headDim: D, dtype: 'bfloat16' as const, backend: 'cuda' as const, numIters: 2 };

  test('ordinary / shared / pinned inputs and outs equal the device-tensor path bit for bit', async () => {
    const attn = new MonarchAttention(opts);
    const [q, k, v] = [bf16(shape), bf16(shape), bf16(shape)];
    const dev = [q, k, v].map((t) => DeviceTensor.fromHost(t));
    const o = await attn.forward(dev[0], dev[1], dev[2]);
    const want = bits(o.downloadSync());
    for (const wrap of [(t: HostTensor) => t, asShared, asPinned]) {
      const [a, b, c] = [wrap(q), wrap(k), wrap(v)];
      expect(bits(await attn.forward(a, b, c))).toEqual(want);
      expect(bits(attn.forwardSync(a, b, c))).toEqual(want);
      for (const out of [tensor(new Uint16Array(q.data.length), shape, 'bfloat16'), allocTensor(shape, 'bfloat16'), asShared(tensor(new Uint16Array(q.data.length), shape, 'bfloat16'))]) {
        expect(await attn.forward(a, b, c, { out })).toBe(out);
        expect(bits(out)).toEqual(want);
      }
    }
    [...dev, o].forEach((t) => t.dispose());
    attn.dispose();
  });

  test('inputs transferred right after forward() returns do not change the result', async () => {
    const attn = new MonarchAttention(opts);
    const [q, k, v] = [bf16(shape), bf16(shape), bf16(shape)];
    const want = bits(attn.forwardSync(q, k, v));
    for (let i = 0; i < 6; i++) {
      const copies = [q, k, v].map((t) => tensor((t.data as Uint16Array).slice(), shape, 'bfloat16'));
      const p = attn.forward(copies[0], copies[1], copies[2]);
      const victim = copies[i % 3].data.buffer as ArrayBuffer;
      structuredClone(victim, { transfer: [victim] });
      expect(bits(await p)).toEqual(want);
    }
    attn.dispose();
  });

  test('steady-state host forwards and KV attend / write / step allocate no device or host memory', async () => {
    const attn = new MonarchAttention(opts);
    const [q, k, v] = [bf16(shape), bf16(shape), bf16(shape)];
    const out = allocTensor(shape, 'bfloat16');
    await attn.forward(q, k, v);
    await attn.forward(q, k, v, { out });
    attn.forwardSync(q, k, v);
    const s0 = memoryStats();
    for (let i = 0; i < 4; i++) {
      await attn.forward(q, k, v);
      await attn.forward(q, k, v, { out });
    }
    attn.forwardSync(q, k, v);
    const s1 = memoryStats();
    expect(s1.deviceAllocations).toBe(s0.deviceAllocations);
    expect(s1.hostAllocations).toBe(s0.hostAllocations);
    attn.dispose();

    const video = new MonarchAttention({ layout: { kind: 'video', frames: 6, height: 4, width: 8 }, heads: H, headDim: D, dtype: 'bfloat16', backend: 'cuda', causal: { chunkFrames: 2 } });
    const pool = video.createKVCachePool({ layers: 2, localAttnFrames: 4, sinkFrames: 2 });
    const cs = [1, 64, H, D];
    const [cq, ck, cv] = [bf16(cs), bf16(cs), bf16(cs)];
    const round = async (c: number): Promise<void> => {
      for (const layer of pool.layers) {
        await layer.write(ck, cv, { frame: 2 * c });
        await layer.attend(cq, { frame: 2 * c, write: { k: ck, v: cv } });
      }
    };
    await round(0);
    await round(1);
    const s2 = memoryStats();
    for (let c = 2; c < 6; c++) await round(c);
    const s3 = memoryStats();
    expect(s3.deviceAllocations).toBe(s2.deviceAllocations);
    expect(s3.hostAllocations).toBe(s2.hostAllocations);
    await pool.close();
    video.dispose();
  });
});

describeCuda('CUDA device outputs without out (bf16)', () => {
  test('a disposed output is reused by the next forward / attend: no cudaMalloc at steady state', async () => {
    const S = 256, shape = [1, S, H, D];
    const attn = new MonarchAttention({ layout: { kind: 'sequence', length: S, blockSize: 16 }, heads: H, headDim: D, dtype: 'bfloat16', backend: 'cuda' });
    const dev = [bf16(shape), bf16(shape), bf16(shape)].map((t) => DeviceTensor.fromHost(t));
    const first = await attn.forward(dev[0], dev[1], dev[2]);
    const want = bits(first.downloadSync());
    const p0 = first.pointer;
    first.dispose();
    expect(first.disposed).toBe(true);
    expect(() => first.pointer).toThrow(/DeviceTensor was disposed/);
    const s0 = memoryStats();
    for (let i = 0; i < 5; i++) {
      const o = await attn.forward(dev[0], dev[1], dev[2]);
      expect(o.pointer).toBe(p0);
      expect(bits(o.downloadSync())).toEqual(want);
      o.dispose();
    }
    expect(memoryStats().deviceAllocations).toBe(s0.deviceAllocations);
    const kept = await attn.forward(dev[0], dev[1], dev[2]);  // not disposed: the next one gets new memory
    const other = await attn.forward(dev[0], dev[1], dev[2]);
    expect(other.pointer).not.toBe(kept.pointer);
    await attn.close();
    expect(bits(kept.downloadSync())).toEqual(want);  // outputs outlive their instance
    kept.dispose();
    other.dispose();
    dev.forEach((t) => t.dispose());
  });
});

describeCuda("CUDA pooled host outputs (hostOutputs 'pooled', bf16)", () => {
  test('the download lands in a reused pinned buffer: bit-equal to the device path, nothing allocated at steady state', async () => {
    const S = 512, shape = [1, S, H, D];
    const opts = { layout: { kind: 'sequence' as const, length: S, blockSize: 32 }, heads: H, headDim: D, dtype: 'bfloat16' as const, backend: 'cuda' as const, numIters: 2 };
    const attn = new MonarchAttention({ ...opts, hostOutputs: 'pooled' });
    const sets = [[bf16(shape), bf16(shape), bf16(shape)], [bf16(shape), bf16(shape), bf16(shape)]].map((s) => s.map(asPinned));
    const want = sets.map(([q, k, v]) => {
      const dev = [q, k, v].map((t) => DeviceTensor.fromHost(t));
      const o = attn.forwardSync(dev[0], dev[1], dev[2]);
      const b = bits(o.downloadSync());
      [...dev, o].forEach((t) => t.dispose());
      return b;
    });
    const first = await attn.forward(sets[0][0], sets[0][1], sets[0][2]);
    expect(bits(first)).toEqual(want[0]);
    const buf = first.data.buffer;
    first.dispose!();
    const s0 = memoryStats();
    for (let i = 1; i <= 6; i++) {
      const [q, k, v] = sets[i % 2];
      const o = await attn.forward(q, k, v);
      expect(o.data.buffer).toBe(buf);
      expect(bits(o)).toEqual(want[i % 2]);
      o.dispose!();
    }
    const s1 = memoryStats();
    expect(s1.hostOutputAllocations).toBe(s0.hostOutputAllocations);
    expect(s1.hostAllocations).toBe(s0.hostAllocations);
    expect(s1.deviceAllocations).toBe(s0.deviceAllocations);
    expect(s1.pinnedBytes).toBe(s0.pinnedBytes);
    expect(s1.stagingBytes).toBe(s0.stagingBytes);  // pinned inputs and a pooled output: no main-thread copy
    attn.dispose();
  });
});
