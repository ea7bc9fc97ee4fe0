// Worker thread of the stand-in (standin.ts): generates one pass's synthetic video (q, k, v) and sends
// the arrays back transferred (no copy). float32 and bfloat16 (round to nearest even, NaN kept quiet, as
// the addon's f32ToBf16) are produced here; other dtypes come back as float32 and are cast by the caller.
import { parentPort, workerData } from 'node:worker_threads';
import { syntheticVideo, type SyntheticVideoOptions } from '../../benchmarks/synthetic_video';

/** float32 → bfloat16 bit patterns, round to nearest even; NaN stays a (quiet) NaN. */
export function bf16Bits(x: Float32Array): Uint16Array {
  const u = new Uint32Array(x.buffer, x.byteOffset, x.length), out = new Uint16Array(x.length);
  for (let i = 0; i < u.length; i++) {
    const b = u[i];
    out[i] = (b & 0x7fffffff) > 0x7f800000 ? (b >>> 16) | 0x40 : (b + 0x7fff + ((b >>> 16) & 1)) >>> 16;
  }
  return out;
}

if (parentPort) {
  const o = workerData as SyntheticVideoOptions & { bf16: boolean };
  const vid = syntheticVideo(o);
  const parts = [vid.q, vid.k, vid.v].map((t) => (o.bf16 ? bf16Bits(t.data as Float32Array) : t.data));
  parentPort.postMessage(parts, parts.map((p) => p.buffer as ArrayBuffer));
}
