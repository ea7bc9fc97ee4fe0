// CUDA sliced staging (skips without a GPU): ordinary and shared host inputs larger than
// hostStagingSliceBytes are copied into pinned staging one slice per event-loop turn, and the uploads and
// kernels are enqueued after the last slice. Checked: bit-identical to the device-tensor path and the
// unsliced path (forward, KVCache.step, denseAttention); a transfer between slices rejects naming the
// tensor and leaves the instance usable; an abort between slices rejects with AbortError.
import { describeCuda } from './helpers/backend';
import { denseAttention, DeviceTensor, MonarchAttention, tensor } from './helpers/pkg';
import type { HostTensor } from './helpers/pkg';
import { pendingStagingJobs } from '../lib/hoststage';

let seed = 1 + Math.floor(Math.random() * 1e6);
const rand = (): number => { seed = (Math.imul(seed, 1103515245) + 12345) >>> 0; return seed / 4294967296 - 0.5; };
const bits = (t: HostTensor): number[] => Array.from(t.data as Uint16Array);
const H = 4, D = 64, SLICE = 65536;

function bf16(shape: number[]): HostTensor {
  const n = shape.reduce((a, b) => a * b, 1);
  const f = Float32Array.from({ length: n }, rand);
  const u = new Uint16Array(n);
  const dv = new DataView(f.buffer);
  for (let i = 0; i < n; i++) u[i] = dv.getUint32(i * 4, true) >>> 16;
  return tensor(u, shape, 'bfloat16');
}
const asShared = (t: HostTensor): HostTensor => {
  const u = new Uint16Array(new SharedArrayBuffer(t.data.byteLength));
  u.set(t.data as Uint16Array);
  return tensor(u, t.shape, t.dtype);
};
async function turns(k: number): Promise<void> {
  for (let i = 0; i < k; i++) await new Promise((r) => setImmediate(r));
}

describeCuda('CUDA sliced staging of host inputs (bf16)', () => {
  const S = 2048, shape = [1, S, H, D];  // 1 MB per tensor: 48 slices of 64 KiB
  const opts = { layout: { kind: 'sequence' as const, length: S, blockSize: 64 }, heads: H, headDim: D, dtype: 'bfloat16' as const, backend: 'cuda' as const, numIters: 2 };

  test('forward and denseAttention: ordinary and shared inputs in slices equal the device path and the unsliced path bit for bit', async () => {
    const attn = new MonarchAttention({ ...opts, hostStagingSliceBytes: SLICE });
    const whole = new MonarchAttention({ ...opts, hostStagingSliceBytes: Infinity });
    const [q, k, v] = [bf16(shape), bf16(shape), bf16(shape)];
    const dev = [q, k, v].map((t) => DeviceTensor.fromHost(t));
    const o = await attn.forward(dev[0], dev[1], dev[2]);
    const want = bits(o.downloadSync());
    for (const wrap of [(t: HostTensor) => t, asShared]) {
      const [a, b, c] = [wrap(q), wrap(k), wrap(v)];
      const p = attn.forward(a, b, c);
      expect(pendingStagingJobs()).toBe(1);
      expect(bits(await p)).toEqual(want);
      expect(bits(await whole.forward(a, b, c))).toEqual(want);
    }
    const dWant = bits((await denseAttention(q, k, v, { backend: 'cuda', hostStagingSliceBytes: Infinity })).out);
    expect(bits((await denseAttention(q, k, v, { backend: 'cuda', hostStagingSliceBytes: SLICE })).out)).toEqual(dWant);
    [...dev, o].forEach((t) => t.dispose());
    attn.dispose();
    whole.dispose();
  });

  test('a transfer between slices rejects naming the tensor; an abort rejects with AbortError; the instance stays usable', async () => {
    const attn = new MonarchAttention({ ...opts, hostStagingSliceBytes: SLICE });
    const good = [bf16(shape), bf16(shape), bf16(shape)];
    const want = bits(attn.forwardSync(good[0], good[1], good[2]));
    const ts = [bf16(shape), bf16(shape), bf16(shape)];
    const p = attn.forward(ts[0], ts[1], ts[2]);
    await turns(2);
    structuredClone(ts[1].data.buffer, { transfer: [ts[1].data.buffer as ArrayBuffer] });
    await expect(p).rejects.toThrow(/^k: the input's ArrayBuffer was detached or resized while it was being staged/);
    expect(bits(await attn.forward(good[0], good[1], good[2]))).toEqual(want);
    const ac = new AbortController();
    const us = [bf16(shape), bf16(shape), bf16(shape)];
    const pa = attn.forward(us[0], us[1], us[2], { signal: ac.signal });
    await turns(1);
    ac.abort();
    await expect(pa).rejects.toMatchObject({ name: 'AbortError' });
    expect(bits(await attn.forward(good[0], good[1], good[2]))).toEqual(want);
    attn.dispose();
  });

  test('KVCache.step with sliced inputs equals the unsliced path bit for bit', async () => {
    const video = { layout: { kind: 'video' as const, frames: 4, height: 16, width: 16 }, heads: H, headDim: D, dtype: 'bfloat16' as const, backend: 'cuda' as const, causal: { chunkFrames: 2 } };
    const cshape = [1, 2 * 16 * 16, H, D];
    const xs = [0, 1].map(() => [bf16(cshape), bf16(cshape), bf16(cshape)]);
    const run = async (sliceBytes: number): Promise<number[][]> => {
      const attn = new MonarchAttention({ ...video, hostStagingSliceBytes: sliceBytes });
      const c = attn.createKVCache();
      const outs = await Promise.all(xs.map(([q, k, v]) => c.step(q, k, v)));
      attn.dispose();
      return outs.map(bits);
    };
    expect(await run(SLICE)).toEqual(await run(Infinity));
  });
});
