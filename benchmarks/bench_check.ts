// `bench --check`: before timing, verify each method on a small twin of the benchmark shape (same
// block geometry and head dim, fewer frames / blocks / heads) against a float32 CPU reference on the
// same dtype-rounded inputs, and our dense against torch SDPA when a torch is available.
import { denseAttentionSync } from '../lib/index';
import type { BenchShape } from './presets';
import { denseCausalChunk, tokenCounts } from './presets';
import { asFloat32 } from './random';
import { relL2, maxAbsDiff } from './stats';
import { AnyTensor, disposeAll, toHostF32 } from './tensors';
import { REL_L2_TOL } from './tolerance';
import { runSdpa, TorchEnv } from './torch';
import { makeAttention, makeWorkload, MonarchVariant, variantLabel } from './workload';
import type { HostTensor } from '../lib/types';

export interface CheckResult {
  name: string;
  relL2: number | null;
  maxAbs: number | null;
  tol: number;
  pass: boolean;
  note?: string;
}

/**
 * Same (b1, b2) and head dim; 2 frames (2 chunks for the KV case and the block-causal forward, the same
 * text keys for cross-attention) or ≤ 16 blocks; ≤ 2 heads; batch 1.
 */
export function twinShape(s: BenchShape): BenchShape {
  const g = s.geometry;
  const heads = Math.min(s.heads, 2);
  if (g.kind === 'sequence') {
    const m = Math.min(Math.ceil(g.length / g.blockSize), 16);
    return { ...s, name: `${s.name} twin`, heads, batch: 1, geometry: { ...g, length: Math.min(g.length, m * g.blockSize) } };
  }
  const chunk = g.kind === 'video' ? g.chunkFrames ?? g.causalFrames : undefined;
  const frames = Math.min(g.frames, chunk ? 2 * chunk : 2);
  return { ...s, name: `${s.name} twin`, heads, batch: 1, geometry: { ...g, frames } };
}

function compare(name: string, out: Float32Array, ref: Float32Array, tol: number, note?: string): CheckResult {
  const e = relL2(out, ref);
  const m = maxAbsDiff(out, ref);
  return { name, relL2: e, maxAbs: m.value, tol, pass: e <= tol && Number.isFinite(m.value), ...(note ? { note } : {}) };
}

async function monarchOut(shape: BenchShape, v: MonarchVariant, backend: 'cpu' | 'cuda', q: AnyTensor, k: AnyTensor, vv: AnyTensor, chunks?: Array<[AnyTensor, AnyTensor, AnyTensor]>): Promise<Float32Array> {
  const attn = makeAttention(shape, v, backend, q.dtype);
  try {
    if (chunks) {
      const cache = attn.createKVCache();
      let last: AnyTensor | undefined;
      for (const c of chunks) { disposeAll([last]); last = await cache.step(...c); }
      cache.dispose();
      const f = toHostF32(last!);
      disposeAll([last]);
      return f;
    }
    const o = attn.forwardSync(q, k, vv);
    const f = toHostF32(o);
    disposeAll([o]);
    return f;
  } finally {
    attn.dispose();
  }
}

/** Runs all the pre-timing checks for `variants` and our dense at the twin of `shape`. */
export async function runBenchChecks(shape: BenchShape, backend: 'cpu' | 'cuda', variants: MonarchVariant[], torch: TorchEnv, seed: number): Promise<CheckResult[]> {
  const twin = twinShape(shape);
  const tol = REL_L2_TOL[shape.dtype];
  const results: CheckResult[] = [];
  // Host copies in the benchmark dtype, then float32 copies of the same rounded values for the reference.
  const host = makeWorkload(twin, 'cpu', 1, seed).sets[0];
  const ref = {
    q: asFloat32(host.q as HostTensor), k: asFloat32(host.k as HostTensor), v: asFloat32(host.v as HostTensor),
    chunks: host.chunks?.map((c) => c.map((t) => asFloat32(t as HostTensor)) as [AnyTensor, AnyTensor, AnyTensor]),
  };
  const dev = makeWorkload(twin, backend, 1, seed).sets[0];
  try {
    for (const v of variants) {
      const name = `${variantLabel(v)} ${backend}/${shape.dtype} vs cpu/float32 (${twinLabel(twin)})`;
      try {
        const out = await monarchOut(twin, v, backend, dev.q, dev.k, dev.v, dev.chunks);
        const expect = await monarchOut(twin, v, 'cpu', ref.q, ref.k, ref.v, ref.chunks);
        results.push(compare(name, out, expect, tol));
      } catch (e) {
        results.push({ name, relL2: null, maxAbs: null, tol, pass: false, note: (e as Error).message });
      }
    }
    const name = `our dense ${backend}/${shape.dtype} vs cpu/float32 (${twinLabel(twin)})`;
    let ours: Float32Array | null = null;
    try {
      const causalChunk = denseCausalChunk(twin) || undefined;
      const o = denseAttentionSync(dev.q, dev.k, dev.v, { backend, causalChunk });
      ours = toHostF32(o.out);
      disposeAll([o.out]);
      const expect = toHostF32(denseAttentionSync(ref.q, ref.k, ref.v, { backend: 'cpu', causalChunk }).out);
      results.push(compare(name, ours, expect, tol));
    } catch (e) {
      results.push({ name, relL2: null, maxAbs: null, tol, pass: false, note: (e as Error).message });
    }
    if (torch.python && ours && shape.dtype !== 'float32') {
      if (denseCausalChunk(twin)) {
        results.push({ name: 'torch SDPA check', relL2: null, maxAbs: null, tol, pass: true, note: 'skipped: torch SDPA has no block-causal mask on FA2 / cuDNN (our dense is checked against the CPU reference above)' });
      } else {
        results.push(...torchChecks(twin, torch, ref, ours, tol));
      }
    }
  } finally {
    disposeAll([dev.q, dev.k, dev.v]);
    for (const c of dev.chunks ?? []) disposeAll(c);
  }
  return results;
}

function twinLabel(t: BenchShape): string {
  const g = t.geometry;
  const heads = `${t.heads}h`;
  if (g.kind === 'sequence') return `N=${g.length} b=${g.blockSize}, ${heads}`;
  const dims = `${g.frames}×${g.height}×${g.width}`;
  if (g.kind === 'cross') return `${dims} × ${g.keys} keys, ${heads}`;
  return `${dims}${g.chunkFrames ? ` chunk ${g.chunkFrames}` : g.causalFrames ? ` causal ${g.causalFrames}` : ''}, ${heads}`;
}

/** Our dense vs torch's float32 math backend, and FA2 / cuDNN against it for context. */
function torchChecks(twin: BenchShape, torch: TorchEnv, ref: { q: HostTensor; k: HostTensor; v: HostTensor }, ours: Float32Array, tol: number): CheckResult[] {
  const { nq, nk } = tokenCounts(twin);
  const shape = { B: twin.batch, H: twin.heads, Nq: nq, Nk: nk, D: twin.headDim, dtype: twin.dtype };
  const r = runSdpa(torch, shape, ref.q.data as Float32Array, ref.k.data as Float32Array, ref.v.data as Float32Array, ['flash', 'cudnn']);
  if (r.error || !r.outputs.math) {
    return [{ name: 'torch SDPA check', relL2: null, maxAbs: null, tol, pass: true, note: `skipped: ${r.error ?? r.errors.math}` }];
  }
  const math = r.outputs.math;
  const out: CheckResult[] = [compare(`our dense vs torch math/float32 (${twinLabel(twin)})`, ours, math, tol)];
  for (const b of ['flash', 'cudnn']) {
    if (r.outputs[b]) out.push(compare(`torch ${b}/${twin.dtype} vs torch math/float32 (context)`, r.outputs[b], math, tol));
    else out.push({ name: `torch ${b}`, relL2: null, maxAbs: null, tol, pass: true, note: `unavailable: ${r.errors[b]}` });
  }
  return out;
}

