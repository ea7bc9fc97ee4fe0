// The stand-in for a diffusion transformer's q/k/v (no model weights): seeded structured synthetic video
// attention inputs (benchmarks/synthetic_video.ts: 3-D RoPE positional term + moving semantic clusters +
// dense mixing noise). Self-Forcing runs each chunk through `passes` denoising steps at timesteps
// τ = 1000·(1 − t/passes) (1000, 750, 500, 250 for 4) and one context pass on the clean output (τ = 0).
// Pass t reads the chunk's frames of its own synthetic video whose mixing noise grows with τ
// (noise = 0.3 + 0.7·τ/1000: noisier latents, flatter attention), seed = seed + 1000·t.
//
// A precomputed pool, not a per-call generator: the videos are generated once per server, before it
// listens — one worker thread per pass when running from compiled JavaScript (dist/), inline from the
// TypeScript sources (tests, tiny shapes) — uploaded once to the device on CUDA, and shared by every
// layer and session (generating a 480p video per layer and pass would take seconds, far more than the
// attention). Chunk c reads video chunk c mod (frames / chunkFrames), so sessions can run longer than the
// video with a rolling cache. Every pass still does a real cache write and attend of the full shapes;
// only the values repeat.
import * as fs from 'node:fs';
import * as path from 'node:path';
import { Worker } from 'node:worker_threads';
import { castTensor, DeviceTensor, tensor } from '../../lib';
import type { AnyTensor, DType, HostTensor } from '../../lib';
import { syntheticVideo, type SyntheticVideoOptions } from '../../benchmarks/synthetic_video';

export interface StandInOptions {
  frames: number; height: number; width: number; heads: number; headDim: number;
  chunkFrames: number; passes: number; dtype: DType; device: boolean; seed: number;
}

/** q, k, v of one chunk for one pass. */
export interface ChunkInputs { q: AnyTensor; k: AnyTensor; v: AnyTensor }

type Arrays = Array<Float32Array | Uint16Array>;

function videoOptions(o: StandInOptions, t: number): SyntheticVideoOptions {
  const tau = 1000 * (1 - t / o.passes);
  return { frames: o.frames, height: o.height, width: o.width, heads: o.heads, headDim: o.headDim, seed: o.seed + 1000 * t, noise: 0.3 + 0.7 * tau / 1000 };
}

/** One pass's q, k, v data in o.dtype. */
function generateInline(o: StandInOptions, t: number): Arrays {
  const vid = syntheticVideo(videoOptions(o, t));
  return [vid.q, vid.k, vid.v].map((x) => (o.dtype === 'float32' ? x : castTensor(x, o.dtype)).data);
}

function generateInWorker(file: string, o: StandInOptions, t: number): Promise<Arrays> {
  return new Promise((resolve, reject) => {
    const w = new Worker(file, { workerData: { ...videoOptions(o, t), bf16: o.dtype === 'bfloat16' } });
    w.once('message', (parts: Arrays) => {
      resolve(o.dtype === 'float16' ? parts.map((p) => castTensor(tensor(p as Float32Array, [p.length]), 'float16').data) : parts);
      void w.terminate();
    });
    w.once('error', reject);
    w.once('exit', (code) => { if (code !== 0) reject(new Error(`stand-in worker for pass ${t} exited with code ${code}`)); });
  });
}

export class StandIn {
  /** inputs[t][chunk]: pass t (t = passes is the context pass) of video chunk `chunk`. */
  private readonly inputs: ChunkInputs[][] = [];
  private readonly owned: DeviceTensor[] = [];
  readonly videoChunks: number;
  /** Bytes of the inputs kept (host or device). */
  readonly bytes: number;
  /** How the videos were generated, and how long it took. */
  readonly generated: { workers: boolean; ms: number };

  /** Generates the passes' videos (in parallel worker threads when compiled) and keeps (or uploads) them. */
  static async create(o: StandInOptions): Promise<StandIn> {
    const t0 = process.hrtime.bigint();
    const file = path.join(__dirname, 'standin-worker.js');
    const workers = __filename.endsWith('.js') && fs.existsSync(file);
    const passes = Array.from({ length: o.passes + 1 }, (_, t) => t);
    const data = workers ? await Promise.all(passes.map((t) => generateInWorker(file, o, t))) : passes.map((t) => generateInline(o, t));
    return new StandIn(o, data, { workers, ms: Number(process.hrtime.bigint() - t0) / 1e6 });
  }

  private constructor(o: StandInOptions, data: Arrays[], generated: { workers: boolean; ms: number }) {
    const hw = o.height * o.width, chunkN = o.chunkFrames * hw, row = o.heads * o.headDim;
    const shape = [1, chunkN, o.heads, o.headDim], full = [1, o.frames * hw, o.heads, o.headDim];
    this.videoChunks = o.frames / o.chunkFrames;
    this.generated = generated;
    let bytes = 0;
    for (const arrays of data) {
      const parts = arrays.map((a) => tensor(a as Float32Array, full, o.dtype as 'float32'));
      const chunks: ChunkInputs[] = [];
      if (o.device) {
        const dev = parts.map((x) => DeviceTensor.fromHost(x));
        this.owned.push(...dev);
        const es = o.dtype === 'float32' ? 4 : 2;
        for (let c = 0; c < this.videoChunks; c++) {
          const [q, k, v] = dev.map((d) => DeviceTensor.fromPointer(d.pointer + BigInt(c * chunkN * row * es), shape, o.dtype));
          chunks.push({ q, k, v });
        }
      } else {
        for (let c = 0; c < this.videoChunks; c++) {
          const [q, k, v] = parts.map((x: HostTensor) => tensor(x.data.subarray(c * chunkN * row, (c + 1) * chunkN * row), shape, o.dtype));
          chunks.push({ q, k, v });
        }
      }
      bytes += parts.reduce((s, x) => s + x.data.byteLength, 0);
      this.inputs.push(chunks);
    }
    this.bytes = bytes;
  }

  /** Inputs of pass t (0..passes; passes = context) for session chunk c. */
  get(t: number, c: number): ChunkInputs {
    return this.inputs[t][c % this.videoChunks];
  }

  dispose(): void {
    for (const d of this.owned) d.dispose();
    this.owned.length = 0;
  }
}
