// The Self-Forcing KV-cache protocol on CUDA (skips without a GPU): device tensors, a KVCachePool of two
// layers with a rolling window and sink, 4 denoising + 1 context pass per chunk at the same frame, `out`
// reused across calls. Each pass is compared with the CPU backend's fp32 result of the same protocol,
// within 3× the CPU backend's own bf16 error (helpers/cuda.ts cudaTolerance).
import { describeCuda } from './helpers/backend';
import { expectClose, expectAllFinite } from './helpers/compare';
import { cudaTolerance, fromDevice, toDevice } from './helpers/cuda';
import { DeviceTensor, MonarchAttention } from './helpers/pkg';
import type { DType, KVCacheOptions, MonarchOptions, VideoLayout } from './helpers/pkg';
import { mulberry32 } from './helpers/rng';
import { protocolInputs, type Pass } from './helpers/self-forcing';
import { fromHost, toHost } from './helpers/tensors';

const H = 2, D = 64, PASSES = 4, L = 2;

/** Runs the protocol on the CPU backend in `dtype` (host tensors): outputs per layer, per pass. */
function cpuProtocol(base: MonarchOptions, win: KVCacheOptions, inputs: Pass[][], dtype: DType): Float64Array[][] {
  const attn = new MonarchAttention({ ...base, dtype, backend: 'cpu' });
  const pool = attn.createKVCachePool({ layers: L, ...win });
  try {
    return inputs.map((passes, l) => passes.map((p) => fromHost(pool.layers[l].attendSync(toHost(p.q, dtype),
      { frame: p.c * (base.causal!.chunkFrames), write: { k: toHost(p.k, dtype), v: toHost(p.v, dtype) } }) as never)));
  } finally {
    pool.dispose();
    attn.dispose();
  }
}

const cases: Array<{ layout: VideoLayout; cf: number; T: number; win: KVCacheOptions; recompute?: 'first-frame' }> = [
  { layout: { kind: 'video', frames: 6, height: 4, width: 8 }, cf: 2, T: 1, win: { localAttnFrames: 6, sinkFrames: 2 } },
  { layout: { kind: 'video', frames: 4, height: 4, width: 8, wReduce: 2 }, cf: 2, T: 2, win: { localAttnFrames: 4 } },
  { layout: { kind: 'video', frames: 4, height: 4, width: 4, factorization: 'vmonarch' }, cf: 2, T: 2, win: { localAttnFrames: 4, sinkFrames: 2 }, recompute: 'first-frame' },
  { layout: { kind: 'video', frames: 6, height: 4, width: 8 }, cf: 2, T: 3, win: {} },
];

describeCuda('KV cache protocol (bf16, device tensors)', () => {
  for (const cs of cases)
    test(`${JSON.stringify(cs.layout)} cf=${cs.cf} T=${cs.T} ${JSON.stringify(cs.win)}${cs.recompute ? ' recompute' : ''}`, async () => {
      const dtype: DType = 'bfloat16', { layout, cf } = cs;
      const hw = layout.height * layout.width, chunkN = cf * hw;
      const chunks = cs.win.localAttnFrames ? layout.frames / cf + 2 : layout.frames / cf;
      const rng = mulberry32(130000 + cs.T * 11 + layout.frames);
      const inputs = Array.from({ length: L }, () => protocolInputs(rng, chunks, PASSES, 1, chunkN, H, D, dtype));
      const base: MonarchOptions = { layout, heads: H, headDim: D, numIters: cs.T, causal: { chunkFrames: cf }, recompute: cs.recompute ?? 'none' };
      const ref32 = cpuProtocol(base, cs.win, inputs, 'float32');
      const cpuLow = cpuProtocol(base, cs.win, inputs, dtype);
      const attn = new MonarchAttention({ ...base, dtype, backend: 'cuda' });
      const pool = attn.createKVCachePool({ layers: L, ...cs.win });
      const out = DeviceTensor.empty([1, chunkN, H, D], dtype);
      try {
        for (let i = 0; i < inputs[0].length; i++)
          for (let l = 0; l < L; l++) {
            const p = inputs[l][i];
            const [q, k, v] = [p.q, p.k, p.v].map((a) => toDevice(a, dtype));
            const opts = { frame: p.c * cf, write: { k, v } };
            // alternate: a new output tensor (sync), the reused `out` (async)
            const o = i % 2 ? await pool.layers[l].attend(q, { ...opts, out }) : pool.layers[l].attendSync(q, opts);
            if (i % 2) expect(o).toBe(out);
            const got = fromDevice(o as DeviceTensor);
            expectAllFinite(got, `layer ${l} pass ${i}`);
            expectClose(got, ref32[l][i], cudaTolerance(cpuLow[l][i], ref32[l][i], dtype), `layer ${l} chunk ${p.c} pass ${p.t}`, [1, chunkN, H, D]);
            if (o !== out) (o as DeviceTensor).dispose();
            [q, k, v].forEach((t) => t.dispose());
          }
      } finally {
        out.dispose();
        pool.dispose();
        attn.dispose();
      }
    });
});
