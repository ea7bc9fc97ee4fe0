// The float32 path of the CUDA backend (CUDA cores, fp32 FMA; any head dim 1..128): every stage and
// variant against the float64 reference and the CPU backend's fp32 result on the same inputs, both
// within FP32 (helpers/tolerances.ts: two fp32 computations of the same math differ by a few roundings
// per stage, ≲ 1e-5 here; a wrong tile, mask or step errs by ≥ 1e-2). Awkward head dims (8, 24, 40,
// 100) leave lanes idle; b2 = 37, 40, 96 cross the 32-key shared-memory tiles. Outputs NaN-poisoned
// first; repeats and the async path bit-identical. Skipped with the reason when no GPU is usable.
import { zeroMaskedRows } from './helpers/act';
import { describeCuda } from './helpers/backend';
import { expectAllFinite, expectBitIdentical, expectClose, maxAbsDiff } from './helpers/compare';
import { fromDevice, poisonNextAlloc, toDevice } from './helpers/cuda';
import { DeviceTensor, MonarchAttention, denseAttention, denseAttentionSync } from './helpers/pkg';
import type { DenseOptions, ForwardOptions, MonarchOptions, SequenceLayout, VideoLayout } from './helpers/pkg';
import { mulberry32 } from './helpers/rng';
import { dense, monarch } from './helpers/run';
import { randAct, toHost, type Act } from './helpers/tensors';
import { FP32 } from './helpers/tolerances';
import { denseRef } from './reference/dense';
import { sequenceRef } from './reference/sequence';
import { videoRef } from './reference/video';

const f32Bits = (t: DeviceTensor): Uint32Array => new Uint32Array(Float32Array.from(t.downloadSync().data as Float32Array).buffer);

interface F32Case {
  name: string;
  D: number;
  opts: Omit<MonarchOptions, 'heads' | 'headDim'>;
  masked?: boolean;
}
const seq = (length: number, blockSize: number, padding?: 'pre' | 'post'): SequenceLayout => ({ kind: 'sequence', length, blockSize, padding });
const cases: F32Case[] = [
  { name: 'sequence N=203 b=16 post-pad T=1 key mask', D: 8, masked: true, opts: { layout: seq(203, 16) } },
  { name: 'sequence N=203 b=16 pre-pad T=2 key mask', D: 40, masked: true, opts: { layout: seq(203, 16, 'pre'), numIters: 2 } },
  { name: 'sequence N=96 b=96 T=3', D: 64, opts: { layout: seq(96, 96), numIters: 3 } },
  { name: 'sequence N=300 b=17 T=2', D: 128, opts: { layout: seq(300, 17), numIters: 2 } },
  { name: 'monarchrt 3×5×37 T=1', D: 100, opts: { layout: { kind: 'video', frames: 3, height: 5, width: 37 } } },
  { name: 'monarchrt 4×6×10 fTied 2 hReduce 2 wReduce 2 T=2', D: 64, opts: { layout: { kind: 'video', frames: 4, height: 6, width: 10, fTied: 2, hReduce: 2, wReduce: 2 }, numIters: 2 } },
  { name: 'vmonarch 4×4×10 T=2', D: 24, opts: { layout: { kind: 'video', frames: 4, height: 4, width: 10, factorization: 'vmonarch' }, numIters: 2 } },
  { name: 'monarchrt causal 4×4×8 chunks of 2, T=1', D: 32, opts: { layout: { kind: 'video', frames: 4, height: 4, width: 8 }, causal: { chunkFrames: 2 } } },
  { name: 'vmonarch causal 6×2×8 chunks of 3, T=3', D: 64, opts: { layout: { kind: 'video', frames: 6, height: 2, width: 8, factorization: 'vmonarch' }, causal: { chunkFrames: 3 }, numIters: 3 } },
  { name: 'vmonarch recompute first-frame 3×4×4 T=1', D: 128, opts: { layout: { kind: 'video', frames: 3, height: 4, width: 4, factorization: 'vmonarch' }, recompute: 'first-frame' } },
];

function reference(c: F32Case, q: Act, k: Act, v: Act, keyMask?: Uint8Array): Float64Array {
  const o = c.opts, T = o.numIters ?? 1;
  if (o.layout.kind === 'sequence') {
    return sequenceRef(q, k, v, { blockSize: o.layout.blockSize, padding: o.layout.padding, numIters: T, keyMask });
  }
  return videoRef(q, k, v, o.layout, { numIters: T, chunkFrames: o.causal?.chunkFrames, recompute: o.recompute });
}

describeCuda('MonarchAttention: CUDA float32 vs float64 reference and CPU fp32', () => {
  const B = 2, H = 2;
  for (const c of cases)
    test(`D=${c.D} ${c.name}`, async () => {
      const N = c.opts.layout.kind === 'sequence' ? c.opts.layout.length
        : c.opts.layout.frames * c.opts.layout.height * c.opts.layout.width;
      const rng = mulberry32(140000 + N * 7 + c.D);
      const q = randAct(rng, B, N, H, c.D, 2, 'float32'), k = randAct(rng, B, N, H, c.D, 1, 'float32'), v = randAct(rng, B, N, H, c.D, 1, 'float32');
      const keyMask = c.masked ? Uint8Array.from({ length: B * N }, () => (rng.uniform() < 0.1 ? 0 : 1)) : undefined;
      const f: ForwardOptions = { keyMask };
      const base = { ...c.opts, heads: H, headDim: c.D, batch: B, dtype: 'float32' } as MonarchOptions;
      const T = base.numIters ?? 1;
      const shape = [B, N, H, c.D];
      const skipRows = (x: ArrayLike<number>): Float64Array => zeroMaskedRows(x, T >= 2 ? keyMask : undefined, B, N, H, c.D);
      const ref64 = skipRows(reference(c, q, k, v, keyMask));
      const cpu = skipRows(monarch(base, q, k, v, f));

      const attn = new MonarchAttention({ ...base, backend: 'cuda' });
      expect(attn.backend).toBe('cuda');
      const dq = toDevice(q, 'float32'), dk = toDevice(k, 'float32'), dv = toDevice(v, 'float32');
      const outs: DeviceTensor[] = [];
      try {
        poisonNextAlloc(B * N * H * c.D, 'float32');
        const out = attn.forwardSync(dq, dk, dv, f) as DeviceTensor;
        outs.push(out);
        expect(out.shape).toEqual(shape);
        expect(out.dtype).toBe('float32');
        const got = fromDevice(out);
        expectAllFinite(got, `${c.name}: output fully written`, shape);
        const gpu = skipRows(got);
        console.log(`cuda float32 D=${c.D} ${c.name}: |gpu − ref64| ${maxAbsDiff(gpu, ref64).toExponential(2)}, ` +
          `|cpu − ref64| ${maxAbsDiff(cpu, ref64).toExponential(2)}, |gpu − cpu| ${maxAbsDiff(gpu, cpu).toExponential(2)}`);
        expectClose(gpu, ref64, FP32, `${c.name} vs float64`, shape);
        expectClose(gpu, cpu, FP32, `${c.name} vs CPU fp32`, shape);

        const bits = f32Bits(out);
        const again = attn.forwardSync(dq, dk, dv, f) as DeviceTensor;
        outs.push(again);
        expectBitIdentical(f32Bits(again), bits, 'repeat run');
        const asyncOut = (await attn.forward(dq, dk, dv, f)) as DeviceTensor;
        outs.push(asyncOut);
        expectBitIdentical(f32Bits(asyncOut), bits, 'async run');
        const hostOut = attn.forwardSync(toHost(q), toHost(k), toHost(v), f);
        expect(hostOut).not.toBeInstanceOf(DeviceTensor);
        expectBitIdentical(new Uint32Array(Float32Array.from(hostOut.data as Float32Array).buffer), bits, 'host-tensor path');
      } finally {
        for (const t of [dq, dk, dv, ...outs]) t.dispose();
        attn.dispose();
      }
    });

  test('KV cache (D=48, monarchrt 6×3×12 chunks of 2, T=2): steps equal the float64 block-causal rows', async () => {
    const rng = mulberry32(141000);
    const layout: VideoLayout = { kind: 'video', frames: 6, height: 3, width: 12 };
    const cf = 2, N = 216, chunkN = 72, D = 48;
    const q = randAct(rng, 1, N, H, D, 2), k = randAct(rng, 1, N, H, D), v = randAct(rng, 1, N, H, D);
    const want = videoRef(q, k, v, layout, { numIters: 2, chunkFrames: cf });
    const attn = new MonarchAttention({ layout, heads: H, headDim: D, numIters: 2, causal: { chunkFrames: cf }, dtype: 'float32', backend: 'cuda' });
    const cache = attn.createKVCache();
    try {
      for (let c = 0; c < 3; c++) {
        const part = (a: Act): DeviceTensor => toDevice({ ...a, S: chunkN, x: a.x.subarray(c * chunkN * H * D, (c + 1) * chunkN * H * D) }, 'float32');
        const out = (c % 2 ? await cache.step(part(q), part(k), part(v)) : cache.stepSync(part(q), part(k), part(v))) as DeviceTensor;
        const got = fromDevice(out);
        expectAllFinite(got, `chunk ${c}`);
        expectClose(got, want.subarray(c * chunkN * H * D, (c + 1) * chunkN * H * D), FP32, `chunk ${c}`, [1, chunkN, H, D]);
        out.dispose();
      }
    } finally {
      cache.dispose();
      attn.dispose();
    }
  });
});

describeCuda('dense attention: CUDA float32 vs float64 reference and CPU fp32', () => {
  const B = 2, H = 3;
  const cases: Array<[string, number, number, number, DenseOptions & { mask?: boolean }]> = [
    ['D=24 Nq = Nk = 200', 24, 200, 200, {}],
    ['D=128 Nq = 77 < Nk = 333, key mask', 128, 77, 333, { mask: true }],
    ['D=64 block-causal chunk 48, Nq = Nk = 190', 64, 190, 190, { causalChunk: 48 }],
    ['D=100 decode: Nq = 64 of Nk = 256, chunk 64', 100, 64, 256, { causalChunk: 64 }],
  ];
  for (const [name, D, Nq, Nk, o] of cases)
    test(name, async () => {
      const rng = mulberry32(142000 + Nq + Nk + D);
      const q = randAct(rng, B, Nq, H, D, 2), k = randAct(rng, B, Nk, H, D), v = randAct(rng, B, Nk, H, D);
      const { mask, ...rest } = o;
      const opts: DenseOptions = { ...rest, returnLse: true, returnEntropy: true };
      if (mask) opts.keyMask = Uint8Array.from({ length: B * Nk }, (_, i) => (i % Nk < 3 || rng.uniform() < 0.2 ? 0 : 1));
      const ref64 = denseRef(q, k, v, { keyMask: opts.keyMask, causalChunk: opts.causalChunk });
      const cpu = dense(q, k, v, opts, 'float32');
      const dq = toDevice(q, 'float32'), dk = toDevice(k, 'float32'), dv = toDevice(v, 'float32');
      try {
        poisonNextAlloc(B * Nq * H * D, 'float32');
        const r = denseAttentionSync(dq, dk, dv, { ...opts, backend: 'cuda' });
        const got = fromDevice(r.out as DeviceTensor);
        expectAllFinite(got, 'out written', [B, Nq, H, D]);
        expectClose(got, ref64.out, FP32, `${name} out vs float64`, [B, Nq, H, D]);
        expectClose(got, cpu.out, FP32, `${name} out vs CPU fp32`, [B, Nq, H, D]);
        // lse / entropy: fp32 sums of ≲ 333 terms of size ≲ 10 in another order than the CPU: ≲ 1e-5
        expectClose(Float32Array.from(r.lse!.data), ref64.lse, { atol: 1e-4, rtol: 1e-5 }, 'lse vs float64', [B, H, Nq]);
        expectClose(Float32Array.from(r.entropy!.data), ref64.entropy, { atol: 1e-4, rtol: 1e-5 }, 'entropy vs float64', [B, H, Nq]);
        const r2 = await denseAttention(dq, dk, dv, { ...opts, backend: 'cuda' });
        expectBitIdentical(f32Bits(r2.out as DeviceTensor), f32Bits(r.out as DeviceTensor), 'async repeat');
        (r.out as DeviceTensor).dispose();
        (r2.out as DeviceTensor).dispose();
      } finally {
        for (const t of [dq, dk, dv]) t.dispose();
      }
    });
});
