// MonarchAttention on the CUDA backend (float16 / bfloat16, head dim 64) against the CPU backend in fp32 on
// the same rounded inputs, with the tolerance a small multiple of the CPU backend's own error in the same
// dtype (helpers/cuda.ts says why). Also: device tensors in → a new DeviceTensor out with q's shape/dtype;
// NaN-poisoned output memory is fully overwritten; repeated and async runs are bit-identical; host tensors
// in → the same bits as the device path. Skipped with the reason when no GPU is usable.
import { zeroMaskedRows } from './helpers/act';
import { describeCuda } from './helpers/backend';
import { expectAllFinite, expectBitIdentical, expectClose, maxAbsDiff } from './helpers/compare';
import { cudaTolerance, deviceBits, fromDevice, poisonNextAlloc, toDevice } from './helpers/cuda';
import { DeviceTensor, MonarchAttention } from './helpers/pkg';
import type { DType, ForwardOptions, MonarchOptions } from './helpers/pkg';
import { mulberry32 } from './helpers/rng';
import { desc, monarch } from './helpers/run';
import { randAct, toHost } from './helpers/tensors';

interface CudaCase {
  name: string;
  opts: Omit<MonarchOptions, 'heads' | 'headDim'>;
  N: number;
  masked?: boolean;
}

const cases: CudaCase[] = [
  { name: 'sequence N=203 b=16 post-pad T=1 key mask', N: 203, masked: true, opts: { layout: { kind: 'sequence', length: 203, blockSize: 16 } } },
  { name: 'sequence N=203 b=16 pre-pad T=2 key mask', N: 203, masked: true, opts: { layout: { kind: 'sequence', length: 203, blockSize: 16, padding: 'pre' }, numIters: 2 } },
  { name: 'sequence N=37 b=1 T=1', N: 37, opts: { layout: { kind: 'sequence', length: 37, blockSize: 1 } } },
  { name: 'sequence N=96 b=96 T=3', N: 96, opts: { layout: { kind: 'sequence', length: 96, blockSize: 96 }, numIters: 3 } },
  { name: 'monarchrt 3×6×10 T=1', N: 180, opts: { layout: { kind: 'video', frames: 3, height: 6, width: 10 } } },
  { name: 'monarchrt 3×5×7 T=3', N: 105, opts: { layout: { kind: 'video', frames: 3, height: 5, width: 7 }, numIters: 3 } },
  { name: 'monarchrt 4×6×10 fTied 2 hReduce 2 wReduce 2 T=2', N: 240, opts: { layout: { kind: 'video', frames: 4, height: 6, width: 10, fTied: 2, hReduce: 2, wReduce: 2 }, numIters: 2 } },
  { name: 'vmonarch 4×4×6 T=2', N: 96, opts: { layout: { kind: 'video', frames: 4, height: 4, width: 6, factorization: 'vmonarch' }, numIters: 2 } },
  { name: 'monarchrt causal 4×4×8 chunks of 2, T=1', N: 128, opts: { layout: { kind: 'video', frames: 4, height: 4, width: 8 }, causal: { chunkFrames: 2 } } },
  { name: 'vmonarch causal 6×2×8 chunks of 3, T=2', N: 96, opts: { layout: { kind: 'video', frames: 6, height: 2, width: 8, factorization: 'vmonarch' }, causal: { chunkFrames: 3 }, numIters: 2 } },
  { name: 'vmonarch recompute first-frame 3×4×4 T=1', N: 48, opts: { layout: { kind: 'video', frames: 3, height: 4, width: 4, factorization: 'vmonarch' }, recompute: 'first-frame' } },
];

describeCuda('MonarchAttention: CUDA (fp16/bf16) vs CPU fp32', () => {
  const B = 2, H = 2, D = 64;
  for (const dtype of ['bfloat16', 'float16'] as DType[])
    for (const c of cases)
      test(`${dtype} ${c.name}`, async () => {
        const rng = mulberry32(120000 + c.N * 7 + c.name.length + (dtype === 'float16' ? 1 : 0));
        const q = randAct(rng, B, c.N, H, D, 2, dtype), k = randAct(rng, B, c.N, H, D, 1, dtype), v = randAct(rng, B, c.N, H, D, 1, dtype);
        const keyMask = c.masked ? Uint8Array.from({ length: B * c.N }, () => (rng.uniform() < 0.1 ? 0 : 1)) : undefined;
        const f: ForwardOptions = { keyMask };
        const base = { ...c.opts, heads: H, headDim: D, batch: B } as MonarchOptions;
        const T = base.numIters ?? 1;
        const skipRows = (x: Float64Array): Float64Array => zeroMaskedRows(x, T >= 2 ? keyMask : undefined, B, c.N, H, D);
        const ref32 = skipRows(monarch({ ...base, dtype: 'float32' }, q, k, v, f));
        const cpuLow = skipRows(monarch({ ...base, dtype }, q, k, v, f));
        const tol = cudaTolerance(cpuLow, ref32, dtype);

        const attn = new MonarchAttention({ ...base, dtype, backend: 'cuda' });
        expect(attn.backend).toBe('cuda');
        const dq = toDevice(q, dtype), dk = toDevice(k, dtype), dv = toDevice(v, dtype);
        const outs: DeviceTensor[] = [];
        try {
          const poisoned = poisonNextAlloc(B * c.N * H * D, dtype);
          const out = attn.forwardSync(dq, dk, dv, f) as DeviceTensor;
          outs.push(out);
          expect(out).toBeInstanceOf(DeviceTensor);
          expect(out.shape).toEqual([B, c.N, H, D]);
          expect(out.dtype).toBe(dtype);
          const got = fromDevice(out);
          expectAllFinite(got, `${dtype} ${c.name}: output fully written`, [B, c.N, H, D]);
          const err = maxAbsDiff(skipRows(got), ref32);
          console.log(`cuda ${dtype} ${c.name}: eGpu ${err.toExponential(2)} eCpu ${tol.eCpu.toExponential(2)} ` +
            `(${(err / tol.eCpu).toFixed(2)}×); poisoned block ${out.pointer === poisoned ? 'reused by the output' : 'not reused'}`);
          expectClose(skipRows(got), ref32, tol, `${dtype} ${desc({ case: c.name, eCpu: tol.eCpu, eGpu: err })}`, [B, c.N, H, D]);

          // repeated runs and the async path: bit-identical
          const bits = deviceBits(out);
          const again = attn.forwardSync(dq, dk, dv, f) as DeviceTensor;
          outs.push(again);
          expectBitIdentical(deviceBits(again), bits, 'repeat run');
          const asyncOut = (await attn.forward(dq, dk, dv, f)) as DeviceTensor;
          outs.push(asyncOut);
          expectBitIdentical(deviceBits(asyncOut), bits, 'async run');
          // host tensors in on the CUDA backend: a HostTensor with the same bits
          const hostOut = attn.forwardSync(toHost(q, dtype), toHost(k, dtype), toHost(v, dtype), f);
          expect(hostOut).not.toBeInstanceOf(DeviceTensor);
          expectBitIdentical(Uint16Array.from(hostOut.data as Uint16Array), bits, 'host-tensor path');
        } finally {
          for (const t of [dq, dk, dv, ...outs]) t.dispose();
          attn.dispose();
        }
      });

  test('BHSD device tensors give the BSHD result transposed (bf16, monarchrt 2×4×8)', () => {
    const rng = mulberry32(121000);
    const N = 64;
    const q = randAct(rng, 1, N, H, D, 2, 'bfloat16'), k = randAct(rng, 1, N, H, D, 1, 'bfloat16'), v = randAct(rng, 1, N, H, D, 1, 'bfloat16');
    const o: MonarchOptions = { layout: { kind: 'video', frames: 2, height: 4, width: 8 }, heads: H, headDim: D, dtype: 'bfloat16', backend: 'cuda' };
    const a1 = new MonarchAttention(o), a2 = new MonarchAttention({ ...o, tensorLayout: 'BHSD' });
    try {
      const r1 = fromDevice(a1.forwardSync(toDevice(q, 'bfloat16'), toDevice(k, 'bfloat16'), toDevice(v, 'bfloat16')) as DeviceTensor);
      const out2 = a2.forwardSync(toDevice(q, 'bfloat16', 'BHSD'), toDevice(k, 'bfloat16', 'BHSD'), toDevice(v, 'bfloat16', 'BHSD')) as DeviceTensor;
      expect(out2.shape).toEqual([1, H, N, D]);
      expectBitIdentical(fromDevice(out2, 'BHSD'), r1, 'BHSD vs BSHD');
    } finally {
      a1.dispose();
      a2.dispose();
    }
  });

  test('KV cache on CUDA: device-tensor steps reproduce the CPU fp32 block-causal rows (bf16)', async () => {
    const rng = mulberry32(122000);
    const layout = { kind: 'video' as const, frames: 6, height: 4, width: 8 };
    const cf = 2, N = 192, chunkN = 64, dtype: DType = 'bfloat16';
    const q = randAct(rng, 1, N, H, D, 2, dtype), k = randAct(rng, 1, N, H, D, 1, dtype), v = randAct(rng, 1, N, H, D, 1, dtype);
    const base: MonarchOptions = { layout, heads: H, headDim: D, causal: { chunkFrames: cf } };
    const ref32 = monarch({ ...base, dtype: 'float32' }, q, k, v);
    const tol = cudaTolerance(monarch({ ...base, dtype }, q, k, v), ref32, dtype);
    const attn = new MonarchAttention({ ...base, dtype, backend: 'cuda' });
    const cache = attn.createKVCache();
    try {
      for (let c = 0; c < 3; c++) {
        const part = (a: typeof q): DeviceTensor => toDevice({ ...a, S: chunkN, x: a.x.subarray(c * chunkN * H * D, (c + 1) * chunkN * H * D) }, dtype);
        const out = (c % 2 ? await cache.step(part(q), part(k), part(v)) : cache.stepSync(part(q), part(k), part(v))) as DeviceTensor;
        expect(out).toBeInstanceOf(DeviceTensor);
        const got = fromDevice(out);
        expectAllFinite(got, `chunk ${c}`);
        expectClose(got, ref32.subarray(c * chunkN * H * D, (c + 1) * chunkN * H * D), tol, `chunk ${c}`, [1, chunkN, H, D]);
        out.dispose();
        if (c === 1) {
          // Timing the third step (CUDA events) takes nothing from the cache: the real step below still matches.
          const times = cache.time([[part(k), part(q), part(v)]], { warmup: 2, iters: 5 });
          expect(times).toHaveLength(5);
          for (const t of times) expect(t).toBeGreaterThan(0);
          expect(cache.framesCached).toBe(2 * cf);
        }
      }
    } finally {
      cache.dispose();
      attn.dispose();
    }
  });
});
