// The stand-in for a diffusion transformer's q/k/v (no model weights): seeded structured synthetic video
// attention inputs (benchmarks/synthetic_video.ts: 3-D RoPE positional term + moving semantic clusters +
// dense mixing noise). Self-Forcing runs each chunk through `passes` denoising steps at timesteps
// τ = 1000·(1 − t/passes) (1000, 750, 500, 250 for 4) and one context pass on the clean output (τ = 0).
// Pass t reads the chunk's frames of its own synthetic video whose mixing noise grows with τ
// (noise = 0.3 + 0.7·τ/1000: noisier latents, flatter attention), seed = seed + 1000·t. The videos are
// generated once per server and shared by every layer and session (at 480p, generating a video per layer
// and pass would dominate the attention time); chunk c reads video chunk c mod (frames / chunkFrames),
// so sessions can run longer than the video with a rolling cache.
import { castTensor, DeviceTensor, tensor } from '../../lib';
import type { AnyTensor, DType, HostTensor } from '../../lib';
import { syntheticVideo } from '../../benchmarks/synthetic_video';

export interface StandInOptions {
  frames: number; height: number; width: number; heads: number; headDim: number;
  chunkFrames: number; passes: number; dtype: DType; device: boolean; seed: number;
}

/** q, k, v of one chunk for one pass. */
export interface ChunkInputs { q: AnyTensor; k: AnyTensor; v: AnyTensor }

export class StandIn {
  /** inputs[t][chunk]: pass t (t = passes is the context pass) of video chunk `chunk`. */
  private readonly inputs: ChunkInputs[][];
  private readonly owned: DeviceTensor[] = [];
  readonly videoChunks: number;
  /** Bytes of the inputs kept (host or device). */
  readonly bytes: number;

  constructor(o: StandInOptions) {
    const hw = o.height * o.width, chunkN = o.chunkFrames * hw, row = o.heads * o.headDim;
    this.videoChunks = o.frames / o.chunkFrames;
    let bytes = 0;
    this.inputs = [];
    for (let t = 0; t <= o.passes; t++) {
      const tau = 1000 * (1 - t / o.passes);
      const vid = syntheticVideo({ frames: o.frames, height: o.height, width: o.width, heads: o.heads, headDim: o.headDim,
        seed: o.seed + 1000 * t, noise: 0.3 + 0.7 * tau / 1000 });
      const chunks: ChunkInputs[] = [];
      const parts = [vid.q, vid.k, vid.v].map((x) => (o.dtype === 'float32' ? x : castTensor(x, o.dtype)));
      if (o.device) {
        const dev = parts.map((x) => DeviceTensor.fromHost(x));
        this.owned.push(...dev);
        const es = o.dtype === 'float32' ? 4 : 2;
        for (let c = 0; c < this.videoChunks; c++) {
          const [q, k, v] = dev.map((d) => DeviceTensor.fromPointer(d.pointer + BigInt(c * chunkN * row * es), [1, chunkN, o.heads, o.headDim], o.dtype));
          chunks.push({ q, k, v });
        }
      } else {
        for (let c = 0; c < this.videoChunks; c++) {
          const [q, k, v] = parts.map((x: HostTensor) => tensor(x.data.subarray(c * chunkN * row, (c + 1) * chunkN * row), [1, chunkN, o.heads, o.headDim], o.dtype));
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
