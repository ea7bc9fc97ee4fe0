// Seeded generator of structured, video-like attention inputs (MonarchRT's model of video attention,
// docs/ALGORITHMS.md §B.1: A ≈ D + S + ε — a separable positional part, sparse semantic matches, and a dense
// low-amplitude remainder). Per (batch, head), for the token at (frame t, row y, column x):
//
//   q = RoPE3(t, y, x; c + σ·ε_q) + Σ_clusters ∋ (t,y,x) a·u_cluster,   k likewise with its own ε_k,
//   v ~ N(0, I).
//
//  - Positional term: one content vector c (random direction, |c|² = positional/s, s = 1/√d) shared by
//    q and k and rotated by a 3-D rotary embedding: the head dim is split into three even sections for
//    frame, row and column; pair i of a section of size n turns by p·θ_i, θ_i = ropeBase^(−2i/n). Then
//    s⟨q, k⟩ ≈ Σ_i s|c_i|² cos(Δp·θ_i): `positional` logits at distance 0, decaying with |Δt|, |Δy|, |Δx|.
//    (Wan uses RoPE base 10000 over 21×30×52 grids; the default base 10 makes the decay visible on the
//    small grids this CPU report can afford.)
//  - Semantic matches: `clusters` blobs of radius `clusterRadius` tokens whose centres move across frames
//    at a constant random velocity (≤ 1 token/frame per axis); members share a unit direction u (not
//    rotated, so the match ignores distance) of amplitude a with s·a² = `semantic` logits.
//  - Dense mixing: i.i.d. normal ε_q, ε_k of std σ = `noise` added to c before rotation, giving every
//    query-key pair a small random logit (std ≈ σ·√(2·positional·s) + s·σ²·√d).
import { tensor } from '../lib/index';
import type { HostTensor } from '../lib/types';
import { Rng } from './random';

export interface SyntheticVideoOptions {
  frames: number; height: number; width: number;
  heads: number; headDim: number; batch?: number;
  seed?: number;
  /** Positional logit at distance 0. Default 6. */
  positional?: number;
  /** RoPE base. Default 10. */
  ropeBase?: number;
  /** Number of moving semantic clusters per (batch, head). Default 4. */
  clusters?: number;
  /** Cluster radius in tokens. Default 1.5. */
  clusterRadius?: number;
  /** Logit between two members of one cluster from the semantic term. Default 6. */
  semantic?: number;
  /** Std of the dense mixing noise added to the content vector. Default 0.3. */
  noise?: number;
}

export interface SyntheticVideo { q: HostTensor; k: HostTensor; v: HostTensor; clusterTokens: number }

/** Section sizes (even) of the head dim for frame, row and column rotary embeddings. */
export function ropeSections(d: number): [number, number, number] {
  const pairs = Math.floor(d / 2);
  const a = Math.ceil(pairs / 3), b = Math.ceil((pairs - a) / 2), c = pairs - a - b;
  return [2 * a, 2 * b, 2 * c];
}

function rotate(x: Float64Array, pos: [number, number, number], base: number, out: Float32Array, o: number): void {
  const sec = ropeSections(x.length);
  let off = 0;
  for (let axis = 0; axis < 3; axis++) {
    const n = sec[axis];
    for (let i = 0; i < n / 2; i++) {
      const ang = pos[axis] * base ** (-(2 * i) / n);
      const cs = Math.cos(ang), sn = Math.sin(ang);
      const a = x[off + 2 * i], b = x[off + 2 * i + 1];
      out[o + off + 2 * i] = a * cs - b * sn;
      out[o + off + 2 * i + 1] = a * sn + b * cs;
    }
    off += n;
  }
  for (let i = off; i < x.length; i++) out[o + i] = x[i]; // odd head dim: last component unrotated
}

export function syntheticVideo(opts: SyntheticVideoOptions): SyntheticVideo {
  const { frames: F, height: Hh, width: W, heads: H, headDim: D } = opts;
  const B = opts.batch ?? 1;
  const rng = new Rng(opts.seed ?? 1);
  const s = 1 / Math.sqrt(D);
  const posAmp = Math.sqrt((opts.positional ?? 6) / s);
  const semAmp = Math.sqrt((opts.semantic ?? 6) / s);
  const noise = opts.noise ?? 0.3;
  const base = opts.ropeBase ?? 10;
  const radius = opts.clusterRadius ?? 1.5;
  const nClusters = opts.clusters ?? 4;
  const N = F * Hh * W;
  const q = new Float32Array(B * N * H * D), k = new Float32Array(B * N * H * D), v = new Float32Array(B * N * H * D);
  rng.fillNormal(v);
  const tmp = new Float64Array(D);
  let clusterTokens = 0;
  for (let b = 0; b < B; b++) {
    for (let h = 0; h < H; h++) {
      const c = rng.unitVector(D).map((x) => x * posAmp);
      const clusters = Array.from({ length: nClusters }, () => ({
        y0: rng.uniform() * Hh, x0: rng.uniform() * W,
        vy: 2 * rng.uniform() - 1, vx: 2 * rng.uniform() - 1,
        u: rng.unitVector(D).map((x) => x * semAmp),
      }));
      for (let t = 0; t < F; t++) for (let y = 0; y < Hh; y++) for (let x = 0; x < W; x++) {
        const o = ((b * N + (t * Hh + y) * W + x) * H + h) * D;
        for (const dst of [q, k]) {
          for (let i = 0; i < D; i++) tmp[i] = c[i] + noise * rng.normal();
          rotate(tmp, [t, y, x], base, dst, o);
        }
        for (const cl of clusters) {
          const dy = y - (cl.y0 + cl.vy * t), dx = x - (cl.x0 + cl.vx * t);
          if (dy * dy + dx * dx > radius * radius) continue;
          if (b === 0 && h === 0) clusterTokens++;
          for (let i = 0; i < D; i++) { q[o + i] += cl.u[i]; k[o + i] += cl.u[i]; }
        }
      }
    }
  }
  const shape = [B, N, H, D];
  return { q: tensor(q, shape), k: tensor(k, shape), v: tensor(v, shape), clusterTokens };
}
