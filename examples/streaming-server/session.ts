// One Self-Forcing-shaped session over a KVCachePool: per chunk c (frame c·chunkFrames), for each of the
// passes (denoising steps, then the context pass) and for each of the L layers, one
// cache.attend(q, { frame, write: { k, v } }) — every pass writes the chunk's K/V into the same slice and
// attends over the sink + window up to the chunk's end. Reports each chunk's wall time and a checksum of
// the last layer's context-pass output.
import { DeviceTensor, toFloat32 } from '../../lib';
import type { AnyTensor, HostTensor, KVCachePool } from '../../lib';
import type { StandIn } from './standin';

export interface ChunkResult {
  chunk: number;
  frame: number;
  /** Wall time of the chunk's layers × (passes + 1) attends, ms. */
  ms: number;
  /** Attend calls in this chunk. */
  calls: number;
  /** Sum and sum of squares of the last layer's context-pass output (float64 over float32/16 values). */
  checksum: { sum: number; sumSq: number };
  framesCached: number;
  evictedFrames: number;
}

async function checksum(o: AnyTensor): Promise<{ sum: number; sumSq: number }> {
  const h = o instanceof DeviceTensor ? await o.download() : o;
  const x = toFloat32(h as HostTensor);
  let sum = 0, sumSq = 0;
  for (let i = 0; i < x.length; i++) {
    sum += x[i];
    sumSq += x[i] * x[i];
  }
  return { sum, sumSq };
}

export interface SessionOptions {
  chunks: number;
  passes: number;
  chunkFrames: number;
  /** Stops after the current chunk when aborted (client went away). */
  signal?: { aborted: boolean };
}

/** Runs `chunks` chunks; calls onChunk after each; the pool is reset first. */
export async function runSession(pool: KVCachePool, inputs: StandIn, o: SessionOptions, onChunk: (r: ChunkResult) => void): Promise<number> {
  pool.reset();
  const layers = pool.layers, last = layers[layers.length - 1];
  let outBuf: DeviceTensor | undefined;
  let done = 0;
  try {
    for (let c = 0; c < o.chunks && !o.signal?.aborted; c++) {
      const frame = c * o.chunkFrames, t0 = process.hrtime.bigint();
      let lastOut: AnyTensor | undefined;
      for (let t = 0; t <= o.passes; t++) {
        const { q, k, v } = inputs.get(t, c);
        if (q instanceof DeviceTensor && !outBuf) outBuf = DeviceTensor.empty(q.shape.slice(), q.dtype);
        for (const cache of layers) lastOut = await cache.attend(q, { frame, write: { k, v }, out: outBuf });
      }
      const ms = Number(process.hrtime.bigint() - t0) / 1e6;
      onChunk({
        chunk: c, frame, ms, calls: layers.length * (o.passes + 1), checksum: await checksum(lastOut!),
        framesCached: last.framesCached, evictedFrames: last.evictedFrames,
      });
      done++;
    }
  } finally {
    outBuf?.dispose();
  }
  return done;
}
