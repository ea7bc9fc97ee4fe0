// Dense attention on CUDA (our FlashAttention kernel with the online-entropy recurrence, §C.3) against the
// CPU fp32 result, and the DeviceTensor contract (round trip, fill, upload checks, dispose). Skipped with the
// reason when no GPU is usable.
import { describeCuda } from './helpers/backend';
import { expectAllFinite, expectBitIdentical, expectClose } from './helpers/compare';
import { cudaTolerance, deviceBits, fromDevice, poisonNextAlloc, toDevice } from './helpers/cuda';
import { DeviceTensor, MonarchAttention, denseAttention, denseAttentionSync, tensor } from './helpers/pkg';
import type { DType, DenseOptions } from './helpers/pkg';
import { mulberry32 } from './helpers/rng';
import { dense } from './helpers/run';
import { randAct, toHost } from './helpers/tensors';

describeCuda('dense attention: CUDA vs CPU fp32', () => {
  const B = 2, H = 3, D = 64;
  const cases: Array<[string, number, number, DenseOptions]> = [
    ['Nq = Nk = 200', 200, 200, {}],
    ['Nq = 77 < Nk = 333, key mask', 77, 333, { keyMask: undefined }],
    ['block-causal chunk 48, Nq = Nk = 190', 190, 190, { causalChunk: 48 }],
    ['decode: Nq = 64 of Nk = 256, chunk 64', 64, 256, { causalChunk: 64 }],
    ['cross-attention: Nq = 300 > Nk = 70 (video queries, text keys)', 300, 70, {}],
  ];
  for (const dtype of ['bfloat16', 'float16'] as DType[])
    for (const [name, Nq, Nk, o] of cases)
      test(`${dtype} ${name}`, async () => {
        const rng = mulberry32(130000 + Nq + Nk + (dtype === 'float16' ? 1 : 0));
        const q = randAct(rng, B, Nq, H, D, 2, dtype), k = randAct(rng, B, Nk, H, D, 1, dtype), v = randAct(rng, B, Nk, H, D, 1, dtype);
        const opts: DenseOptions = { ...o, returnLse: true, returnEntropy: true };
        if ('keyMask' in o) opts.keyMask = Uint8Array.from({ length: B * Nk }, () => (rng.uniform() < 0.2 ? 0 : 1));
        const ref = dense(q, k, v, opts, 'float32');
        const tol = cudaTolerance(dense(q, k, v, opts, dtype).out, ref.out, dtype);
        const dq = toDevice(q, dtype), dk = toDevice(k, dtype), dv = toDevice(v, dtype);
        try {
          poisonNextAlloc(B * Nq * H * D, dtype);
          const r = denseAttentionSync(dq, dk, dv, { ...opts, backend: 'cuda' });
          expect(r.out).toBeInstanceOf(DeviceTensor);
          const got = fromDevice(r.out as DeviceTensor);
          expectAllFinite(got, 'out written', [B, Nq, H, D]);
          expectClose(got, ref.out, tol, `${dtype} ${name} out (eCpu ${tol.eCpu})`, [B, Nq, H, D]);
          // lse / entropy come from fp32 logits of exactly represented inputs (fp32 accumulation in another
          // order, ≲ 1e-5 on values ≲ 10), plus P rounding for the entropy's Σ p·x (≲ u·|x|): 1e-3 / 2e-2
          expectClose(Float32Array.from(r.lse!.data), ref.lse!, { atol: 1e-3, rtol: 1e-4 }, 'lse', [B, H, Nq]);
          expectClose(Float32Array.from(r.entropy!.data), ref.entropy!, { atol: dtype === 'bfloat16' ? 2e-2 : 4e-3, rtol: 0 }, 'entropy', [B, H, Nq]);
          const r2 = await denseAttention(dq, dk, dv, { ...opts, backend: 'cuda' });
          expectBitIdentical(deviceBits(r2.out as DeviceTensor), deviceBits(r.out as DeviceTensor), 'async repeat');
          (r.out as DeviceTensor).dispose();
          (r2.out as DeviceTensor).dispose();
        } finally {
          for (const t of [dq, dk, dv]) t.dispose();
        }
      });
});

describeCuda('DeviceTensor', () => {
  test('fromHost → downloadSync / download round trip, fill, upload checks, dispose', async () => {
    const host = toHost(randAct(mulberry32(131000), 1, 5, 2, 3, 1, 'bfloat16'), 'bfloat16');
    const t = DeviceTensor.fromHost(host);
    expect(t.shape).toEqual([1, 5, 2, 3]);
    expect(t.dtype).toBe('bfloat16');
    expect(t.byteLength).toBe(60);
    expect(typeof t.pointer).toBe('bigint');
    expectBitIdentical(Uint16Array.from(t.downloadSync().data as Uint16Array), Uint16Array.from(host.data as Uint16Array), 'downloadSync');
    expectBitIdentical(Uint16Array.from((await t.download()).data as Uint16Array), Uint16Array.from(host.data as Uint16Array), 'download');
    t.fill(NaN);
    expect(Array.from(fromDevice(t)).every(Number.isNaN)).toBe(true);
    t.fill(1.5);
    expect(Array.from(fromDevice(t)).every((x) => x === 1.5)).toBe(true);
    expect(() => t.upload(tensor(new Uint16Array(4), [4], 'bfloat16'))).toThrow(RangeError);
    expect(() => t.upload(tensor(new Uint16Array(30), [1, 5, 2, 3], 'float16'))).toThrow(TypeError);
    t.dispose();
    t.dispose();
    expect(t.disposed).toBe(true);
    expect(() => t.downloadSync()).toThrow('DeviceTensor was disposed');
  });
  test('large downloads (through page-locked bounce slots of 8 MiB): odd sizes, several at once, bit-exact', async () => {
    // 8 MiB slot boundaries: below 1 MiB (one plain copy), exactly 8 MiB, 2.5 slots + an odd tail.
    const sizes = [300_001, 4 * 1024 * 1024, 10 * 1024 * 1024 + 777];
    const rng = mulberry32(4242);
    const made = sizes.map((n) => {
      const u = Uint16Array.from({ length: n }, () => Math.floor(rng.uniform() * 65536) & 0x7f7f);
      return { u, d: DeviceTensor.fromHost(tensor(u, [n], 'bfloat16')) };
    });
    try {
      for (const { u, d } of made) expectBitIdentical(d.downloadSync().data, u, 'downloadSync', [u.length]);
      const all = await Promise.all([...made, ...made].map(({ d }) => d.download()));  // six at once, two per tensor
      all.forEach((h, i) => expectBitIdentical(h.data, made[i % made.length].u, `download ${i}`, [made[i % made.length].u.length]));
    } finally {
      for (const { d } of made) d.dispose();
    }
  });

  test('fromPointer wraps without owning: disposing the wrapper leaves the memory usable', () => {
    const owner = DeviceTensor.fromHost(tensor(Float32Array.of(1, 2, 3, 4), [4]));
    const view = DeviceTensor.fromPointer(owner.pointer, [2, 2], 'float32');
    expect(Array.from(fromDevice(view))).toEqual([1, 2, 3, 4]);
    view.dispose();
    expect(Array.from(fromDevice(owner))).toEqual([1, 2, 3, 4]);
    owner.dispose();
  });
  test('device tensors with the CPU backend, or mixed with host tensors, are TypeErrors', () => {
    const rng = mulberry32(131100);
    const a = randAct(rng, 1, 8, 2, 64, 1, 'bfloat16');
    const dq = toDevice(a, 'bfloat16');
    const cpu = new MonarchAttention({ layout: { kind: 'sequence', length: 8, blockSize: 4 }, heads: 2, headDim: 64, dtype: 'bfloat16', backend: 'cpu' });
    const gpu = new MonarchAttention({ layout: { kind: 'sequence', length: 8, blockSize: 4 }, heads: 2, headDim: 64, dtype: 'bfloat16', backend: 'cuda' });
    try {
      expect(() => cpu.forwardSync(dq, dq, dq)).toThrow(TypeError);
      // @ts-expect-error: mixing host and device inputs is a compile error too (test/types/api.types.ts)
      expect(() => gpu.forwardSync(dq, toHost(a, 'bfloat16'), dq)).toThrow(TypeError);
    } finally {
      cpu.dispose();
      gpu.dispose();
      dq.dispose();
    }
  });
});
