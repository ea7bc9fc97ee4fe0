// Video token ↔ tile mapping and float64 references of the video variants.
//  - MonarchRT (§B.2): token (t, y, x) in raster order → tile a = ((t÷fTied)·hReduce + y÷hh)·wReduce + x÷ww,
//    row i = (t mod fTied)·hh + y mod hh, column j = x mod ww, with hh = h/hReduce, ww = w/wReduce;
//    b1 = fTied·hh, b2 = ww, A = (F/fTied)·hReduce·wReduce.
//  - VMonarch frames-as-blocks (§C.2): b2 = h·w (one frame), b1 = frames per tile (all frames, or one causal
//    chunk); the tile order is the raster order itself.
//  - Block-causal (§B.4): chunks of chunkFrames frames = C = (chunkFrames/fTied)·hReduce·wReduce tiles
//    (MonarchRT) or 1 tile (VMonarch).
//  - Recompute 'first-frame' (§C.4 a): frame-0 query rows replaced by exact dense attention over the keys
//    they may see (all keys; the first chunk when causal).
import { Act, act, idx } from '../helpers/act';
import { denseRef } from './dense';
import { tiledHead } from './tiled';

export interface VideoGeom {
  frames: number;
  height: number;
  width: number;
  factorization?: 'monarchrt' | 'vmonarch';
  fTied?: number;
  hReduce?: number;
  wReduce?: number;
}

export interface TileMap {
  b1: number;
  b2: number;
  /** Tiles in the whole video. */
  A: number;
  /** Tiles per causal chunk (0 when not causal). */
  C: number;
  /** order[tile-order index] = raster token index. */
  order: Int32Array;
}

/** MonarchRT coordinates of raster token (t, y, x) (§B.2). */
export function monarchrtCoords(g: VideoGeom, t: number, y: number, x: number): { a: number; i: number; j: number } {
  const fT = g.fTied ?? 1, hR = g.hReduce ?? 1, wR = g.wReduce ?? 1;
  const hh = g.height / hR, ww = g.width / wR;
  return {
    a: (Math.floor(t / fT) * hR + Math.floor(y / hh)) * wR + Math.floor(x / ww),
    i: (t % fT) * hh + (y % hh),
    j: x % ww,
  };
}

export function tileMap(g: VideoGeom, chunkFrames = 0): TileMap {
  const { frames: F, height: h, width: w } = g;
  const N = F * h * w;
  const order = new Int32Array(N);
  if ((g.factorization ?? 'monarchrt') === 'vmonarch') {
    const b1 = chunkFrames > 0 ? chunkFrames : F;
    for (let n = 0; n < N; n++) order[n] = n;
    return { b1, b2: h * w, A: F / b1, C: chunkFrames > 0 ? 1 : 0, order };
  }
  const fT = g.fTied ?? 1, hR = g.hReduce ?? 1, wR = g.wReduce ?? 1;
  const b1 = fT * (h / hR), b2 = w / wR, A = (F / fT) * hR * wR;
  for (let t = 0; t < F; t++)
    for (let yy = 0; yy < h; yy++)
      for (let x = 0; x < w; x++) {
        const c = monarchrtCoords(g, t, yy, x);
        order[(c.a * b1 + c.i) * b2 + c.j] = (t * h + yy) * w + x;
      }
  return { b1, b2, A, C: chunkFrames > 0 ? (chunkFrames / fT) * hR * wR : 0, order };
}

export interface VideoRefOptions {
  numIters?: number;
  scale?: number;
  /** Block-causal chunk length in frames (0 / undefined = bidirectional). */
  chunkFrames?: number;
  recompute?: 'none' | 'first-frame';
  /** Floor of c_R in the R temperature; default as published: VMonarch 0.1, MonarchRT 1e-4 (1/c_R ≤ 1e4). */
  minColumnMass?: number;
}

function gatherHead(a: Act, b: number, h: number, order: Int32Array): Float64Array {
  const m = new Float64Array(order.length * a.D);
  for (let t = 0; t < order.length; t++)
    for (let d = 0; d < a.D; d++) m[t * a.D + d] = a.x[idx(a, b, order[t], h, d)];
  return m;
}

/** The float64 reference of a video MonarchAttention forward: BSHD raster in, BSHD raster out. */
export function videoRef(q: Act, k: Act, v: Act, g: VideoGeom, o: VideoRefOptions = {}): Float64Array {
  const { B, H, D } = q;
  const tm = tileMap(g, o.chunkFrames ?? 0);
  const minColumnMass = o.minColumnMass ?? (g.factorization === 'vmonarch' ? 0.1 : 1e-4);
  const N = q.S;
  const out = new Float64Array(B * N * H * v.D);
  for (let b = 0; b < B; b++)
    for (let h = 0; h < H; h++) {
      const Z = tiledHead(gatherHead(q, b, h, tm.order), gatherHead(k, b, h, tm.order), gatherHead(v, b, h, tm.order),
        { b1: tm.b1, b2: tm.b2, Aq: tm.A, Fk: tm.A }, D, v.D,
        { numIters: o.numIters, scale: o.scale, causalTiles: tm.C, maxInvTemp: 1 / minColumnMass });
      for (let t = 0; t < N; t++)
        for (let d = 0; d < v.D; d++) out[idx({ S: N, H, D: v.D }, b, tm.order[t], h, d)] = Z[t * v.D + d];
    }
  if (o.recompute === 'first-frame') {
    const hw = g.height * g.width;
    const q0 = sliceAct(q, 0, hw);
    const kEnd = o.chunkFrames ? o.chunkFrames * hw : N;
    const dense = denseRef(q0, sliceAct(k, 0, kEnd), sliceAct(v, 0, kEnd), { scale: o.scale, qOffset: 0 });
    for (let b = 0; b < B; b++)
      for (let t = 0; t < hw; t++)
        for (let h = 0; h < H; h++)
          for (let d = 0; d < v.D; d++)
            out[idx({ S: N, H, D: v.D }, b, t, h, d)] = dense.out[idx({ S: hw, H, D: v.D }, b, t, h, d)];
  }
  return out;
}

function sliceAct(a: Act, s0: number, s1: number): Act {
  const S = s1 - s0, row = a.H * a.D;
  const x = new Float64Array(a.B * S * row);
  for (let b = 0; b < a.B; b++) x.set(a.x.subarray((b * a.S + s0) * row, (b * a.S + s1) * row), b * S * row);
  return act(x, a.B, S, a.H, a.D);
}
