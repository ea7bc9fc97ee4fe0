// Stream interop on the GPU (skips without one): an instance on an external stream (MonarchOptions.stream)
// gives the same output bit for bit as one on its own stream, enqueues there, and leaves the stream alive
// after dispose; ordering through events: inputs written by copies on stream A are consumed by a forward
// on the instance's stream after waitEvent, and a copy on stream A reads the output after the forward's
// recordEvent — with no device-wide synchronisation in between; dense attention and KV steps take the
// same options; the event ops are enqueued before forward() returns when the instance is idle.
import { describeCuda } from './helpers/backend';
import { allocTensor, CudaEvent, CudaStream, denseAttention, denseAttentionSync, DeviceTensor, hostMemoryKind, MonarchAttention } from './helpers/pkg';
import { runExample } from '../examples/external-stream/main';
import type { HostTensor } from './helpers/pkg';

let seed = 1 + Math.floor(Math.random() * 1e6);
const rand = (): number => { seed = (Math.imul(seed, 1103515245) + 12345) >>> 0; return seed / 4294967296 - 0.5; };
const bits = (t: HostTensor): number[] => Array.from(t.data as Uint16Array);
/** First index where two bit arrays differ (-1: none), so a failure reports a number, not a diff of 10^5
 *  elements (jest's array diff is quadratic: it once kept this file's main thread busy for minutes). */
const firstDiff = (a: number[], b: number[]): number => {
  if (a.length !== b.length) return Math.min(a.length, b.length);
  for (let i = 0; i < a.length; i++) if (a[i] !== b[i]) return i;
  return -1;
};
const H = 2, D = 64;

/** bf16 values in pinned memory (allocTensor), so CudaStream copies are truly asynchronous. */
function pinnedBf16(shape: number[]): HostTensor {
  const t = allocTensor(shape, 'bfloat16');
  const u = t.data as Uint16Array, f = new Float32Array(1), w = new Uint32Array(f.buffer);
  for (let i = 0; i < u.length; i++) { f[0] = rand(); u[i] = w[0] >>> 16; }
  return t;
}

describeCuda('CUDA stream interop (bf16)', () => {
  const S = 1024, shape = [1, S, H, D];
  const opts = { layout: { kind: 'sequence' as const, length: S, blockSize: 32 }, heads: H, headDim: D, dtype: 'bfloat16' as const, backend: 'cuda' as const, numIters: 2 };

  test('a forward on an external stream equals one on the own stream; the stream outlives the instance', async () => {
    const [q, k, v] = [pinnedBf16(shape), pinnedBf16(shape), pinnedBf16(shape)];
    const own = new MonarchAttention(opts);
    const want = await own.forward(q, k, v);
    const ext = new CudaStream();
    const attn = new MonarchAttention({ ...opts, stream: ext.handle });
    expect(attn.stream).toBe(ext.handle);
    expect(typeof own.stream).toBe('bigint');
    expect(own.stream).not.toBe(ext.handle);
    expect(firstDiff(bits(await attn.forward(q, k, v)), bits(want))).toBe(-1);
    expect(firstDiff(bits(attn.forwardSync(q, k, v)), bits(want))).toBe(-1);
    const [dq, dk, dv] = [q, k, v].map((t) => DeviceTensor.fromHost(t));
    const dout = await attn.forward(dq, dk, dv);
    expect(firstDiff(bits(dout.downloadSync()), bits(want))).toBe(-1);
    // KV caches of the instance enqueue on the same stream.
    await attn.close();
    own.dispose();
    // Not destroyed by the instance: a second instance and the stream's own calls still work.
    const again = new MonarchAttention({ ...opts, stream: ext.handle });
    expect(firstDiff(bits(await again.forward(q, k, v)), bits(want))).toBe(-1);
    ext.synchronize();
    await ext.synchronizeAsync();
    again.dispose();
    ext.dispose();
    expect(ext.disposed).toBe(true);
    expect(() => ext.handle).toThrow(/CudaStream was disposed/);
    for (const t of [dq, dk, dv, dout]) t.dispose();
  });

  test('waitEvent: inputs copied on stream A are consumed on the instance stream after the wait', async () => {
    const [q, k, v] = [pinnedBf16(shape), pinnedBf16(shape), pinnedBf16(shape)];
    const ref = new MonarchAttention(opts);
    const want = bits(await ref.forward(q, k, v));
    const a = new CudaStream();
    const ev = new CudaEvent();
    const attn = new MonarchAttention(opts);
    // A long copy queue on A first (64 MiB pinned, several times), so that without the wait the forward
    // would very likely read the NaN-poisoned inputs.
    const big = allocTensor([32 << 20], 'bfloat16');
    const bigDev = DeviceTensor.empty([32 << 20], 'bfloat16');
    for (let round = 0; round < 3; round++) {
      const [dq, dk, dv] = [q, k, v].map(() => DeviceTensor.empty(shape, 'bfloat16'));
      for (const t of [dq, dk, dv]) t.fill(NaN);
      for (let i = 0; i < 4; i++) a.upload(bigDev, big);
      a.upload(dq, q); a.upload(dk, k); a.upload(dv, v);
      ev.record(a.handle);
      const out = await attn.forward(dq, dk, dv, { waitEvent: ev.handle });
      expect(firstDiff(bits(out.downloadSync()), want)).toBe(-1);
      for (const t of [dq, dk, dv, out]) t.dispose();
    }
    await a.synchronizeAsync();
    for (const x of [attn, ref, a, ev, bigDev]) x.dispose();
  });

  test('recordEvent: a copy on stream A after the wait reads the finished output, before forward() resolves', async () => {
    const [q, k, v] = [pinnedBf16(shape), pinnedBf16(shape), pinnedBf16(shape)];
    const attn = new MonarchAttention(opts);
    const want = bits(await attn.forward(q, k, v));
    const [dq, dk, dv] = [q, k, v].map((t) => DeviceTensor.fromHost(t));
    const out = DeviceTensor.empty(shape, 'bfloat16');
    out.fill(NaN);
    const a = new CudaStream(), ev = new CudaEvent();
    const host = allocTensor(shape, 'bfloat16');
    // The instance is idle, so forward() has enqueued its work (and the record) when it returns.
    const p = attn.forward(dq, dk, dv, { out, recordEvent: ev.handle });
    ev.wait(a.handle);
    a.download(host, out);
    await a.synchronizeAsync();
    expect(firstDiff(bits(host), want)).toBe(-1);
    expect(await p).toBe(out);
    expect(ev.query()).toBe(true);
    for (const x of [attn, a, ev, dq, dk, dv, out]) x.dispose();
  });

  test('dense attention on an external stream with events equals the default path (out, lse, entropy)', async () => {
    const [q, k, v] = [pinnedBf16([1, 256, H, D]), pinnedBf16([1, 384, H, D]), pinnedBf16([1, 384, H, D])];
    const want = await denseAttention(q, k, v, { backend: 'cuda', returnLse: true, returnEntropy: true });
    const ext = new CudaStream(), before = new CudaEvent(), after = new CudaEvent();
    before.record(ext.handle);
    const got = await denseAttention(q, k, v, { backend: 'cuda', returnLse: true, returnEntropy: true, stream: ext.handle, waitEvent: before.handle, recordEvent: after.handle });
    expect(firstDiff(bits(got.out as HostTensor), bits(want.out as HostTensor))).toBe(-1);
    expect(Array.from(got.lse!.data)).toEqual(Array.from(want.lse!.data));
    expect(Array.from(got.entropy!.data)).toEqual(Array.from(want.entropy!.data));
    expect(after.query()).toBe(true);
    for (const x of [ext, before, after]) x.dispose();
  });

  test('KV cache steps on the instance\'s external stream with events equal those on an own stream', async () => {
    const video = { layout: { kind: 'video' as const, frames: 4, height: 4, width: 8 }, causal: { chunkFrames: 2 }, heads: H, headDim: D, dtype: 'bfloat16' as const, backend: 'cuda' as const };
    const chunk = [1, 2 * 4 * 8, H, D];
    const ext = new CudaStream(), ev = new CudaEvent();
    const a = new MonarchAttention(video), b = new MonarchAttention({ ...video, stream: ext.handle });
    const ca = a.createKVCache(), cb = b.createKVCache();
    expect(cb.stream).toBe(ext.handle);
    for (let c = 0; c < 2; c++) {
      const [q, k, v] = [pinnedBf16(chunk), pinnedBf16(chunk), pinnedBf16(chunk)];
      ev.record(ext.handle);
      const want = await ca.step(q, k, v);
      const got = await cb.step(q, k, v, { waitEvent: ev.handle, recordEvent: ev.handle });
      expect(firstDiff(bits(got as HostTensor), bits(want as HostTensor))).toBe(-1);
    }
    for (const x of [ca, cb, a, b, ev, ext]) x.dispose();
  });

  test('the external-stream example: both patterns give the host-forward output bit for bit', async () => {
    const r = await runExample();
    expect(r.skipped).toBeUndefined();
    expect(r.sameStream?.identical).toBe(true);
    expect(r.twoStreams?.identical).toBe(true);
  });

  test('dense lse / entropy: the async path (stream-ordered downloads) equals the sync path', async () => {
    const [q, k, v] = [pinnedBf16([2, 200, H, D]), pinnedBf16([2, 333, H, D]), pinnedBf16([2, 333, H, D])];
    const o = { backend: 'cuda' as const, returnLse: true, returnEntropy: true, causalChunk: 111 };
    const a = await denseAttention(q, k, v, o);
    const s = denseAttentionSync(q, k, v, o);
    expect(Array.from(a.lse!.data)).toEqual(Array.from(s.lse!.data));
    expect(Array.from(a.entropy!.data)).toEqual(Array.from(s.entropy!.data));
    expect(a.lse!.shape).toEqual([2, H, 200]);
    expect(a.lse!.data.every(Number.isFinite)).toBe(true);
    expect(a.entropy!.data.every((x) => Number.isFinite(x) && x >= -1e-4)).toBe(true);
    // Ordinary (transferable) arrays, not views of the instance's pinned scratch.
    expect(hostMemoryKind(a.lse!.data)).toBe('ordinary');
    expect(hostMemoryKind(a.entropy!.data)).toBe('ordinary');
  });

  test('handles are checked on CUDA too; CudaEvent.record / wait name the stream argument', () => {
    expect(() => new MonarchAttention({ ...opts, stream: 0n })).toThrow(RangeError);
    expect(() => new MonarchAttention({ ...opts, stream: 12 as never })).toThrow(/^stream must be a bigint CUDA handle/);
    const ev = new CudaEvent();
    expect(() => ev.record(0n)).toThrow(RangeError);
    expect(() => ev.wait('s' as never)).toThrow(/^stream must be a bigint/);
    expect(ev.query()).toBe(true);  // never recorded
    ev.dispose();
    ev.dispose();
    expect(() => ev.handle).toThrow(/CudaEvent was disposed/);
  });
});
