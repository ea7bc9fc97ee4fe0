// Token layouts → tiled-Monarch geometry (include/monarch/monarch.h "Tile order"; docs/ALGORITHMS.md §A.4, §B.2, §B.4,
// §C.2). Validates the layout options and builds the gather/scatter maps when tile order ≠ token order.
import type { SequenceLayout, VideoLayout } from './types';
import { checkDivides, checkEnum, checkInt, show, snapshot } from './validate';

/** The tiled-Monarch parameters of one MonarchAttention (per batch element and head). */
export interface Geometry {
  kind: 'sequence' | 'video';
  /** `sequence` (MonarchAttention §A), `monarchrt` (§B.2) or `vmonarch` (§C.2). */
  factorization: 'sequence' | 'monarchrt' | 'vmonarch';
  /** Input tokens per sequence N (length, or frames·height·width). */
  numTokens: number;
  /** Tile rows (L side, number of blocks). */
  b1: number;
  /** Tile columns (R side, block size). */
  b2: number;
  tokensPerTile: number;
  /** Tiles per sequence A (query tiles = key tiles in a one-shot forward). */
  tilesPerSequence: number;
  /** A·b1·b2 ≥ N (> N only with sequence padding). */
  paddedTokens: number;
  /** Block-causal chunk length in tiles C (0 = bidirectional). */
  chunkTiles: number;
  /** Block-causal chunk length in tokens (0 = bidirectional). */
  chunkTokens: number;
  /** Tokens of one frame (height·width; 0 for sequences). */
  frameTokens: number;
  /** True when tile order ≠ token order: inputs are gathered and the output scattered. */
  needsGather: boolean;
  /** [paddedTokens] tile-order token → input token (−1 = pad); null when no gather is needed. */
  gatherMap: Int32Array | null;
  /** [numTokens] input token → tile-order token; null when no gather is needed. */
  scatterMap: Int32Array | null;
  /** [paddedTokens] 1 = real token, 0 = pad; null when there are no pads. */
  tileValid: Uint8Array | null;
}

/** Raster (frame, row, column) token → tile-order token for a monarchrt tiling (§B.2). */
export function monarchrtOrder(frames: number, h: number, w: number, fTied: number, hReduce: number, wReduce: number): Int32Array {
  const hh = h / hReduce, ww = w / wReduce, b1 = fTied * hh, b2 = ww;
  const out = new Int32Array(frames * h * w);
  let n = 0;
  for (let t = 0; t < frames; t++) {
    for (let y = 0; y < h; y++) {
      for (let x = 0; x < w; x++) {
        const a = (Math.floor(t / fTied) * hReduce + Math.floor(y / hh)) * wReduce + Math.floor(x / ww);
        const i = (t % fTied) * hh + (y % hh);
        const j = x % ww;
        out[n++] = (a * b1 + i) * b2 + j;
      }
    }
  }
  return out;
}

function isIdentity(m: Int32Array): boolean {
  for (let i = 0; i < m.length; i++) if (m[i] !== i) return false;
  return true;
}

function invert(order: Int32Array, size: number): Int32Array {
  const g = new Int32Array(size).fill(-1);
  for (let n = 0; n < order.length; n++) g[order[n]] = n;
  return g;
}

function sequenceGeometry(l: Record<string, unknown>, causal: unknown): Geometry {
  const N = checkInt('layout.length', l.length, 1, 2 ** 31 - 1);
  const b = checkInt('layout.blockSize', l.blockSize, 1);
  if (b > N) throw new RangeError(`layout.blockSize ${b} is out of range 1..${N} (layout.length)`);
  checkEnum('layout.padding', l.padding, ['pre', 'post'] as const, 'post');
  if (causal !== undefined) throw new RangeError('causal is only supported for video layouts, received a sequence layout');
  const m = Math.ceil(N / b), Np = m * b, pad = Np - N;
  return {
    kind: 'sequence', factorization: 'sequence', numTokens: N, b1: m, b2: b, tokensPerTile: Np,
    tilesPerSequence: 1, paddedTokens: Np, chunkTiles: 0, chunkTokens: 0, frameTokens: 0,
    needsGather: pad > 0, gatherMap: null, scatterMap: null, tileValid: null,
  };
}

/** Per-token maps of a padded sequence (§A.4): pads go before ('pre') or after ('post') the tokens. */
function sequenceMaps(g: Geometry, padding: 'pre' | 'post'): Pick<Geometry, 'gatherMap' | 'scatterMap' | 'tileValid'> {
  const N = g.numTokens, Np = g.paddedTokens, pad = Np - N;
  const gatherMap = new Int32Array(Np), scatterMap = new Int32Array(N), tileValid = new Uint8Array(Np);
  const off = padding === 'pre' ? pad : 0;
  for (let t = 0; t < Np; t++) {
    const n = t - off;
    const real = n >= 0 && n < N;
    gatherMap[t] = real ? n : -1;
    tileValid[t] = real ? 1 : 0;
  }
  for (let n = 0; n < N; n++) scatterMap[n] = n + off;
  return { gatherMap, scatterMap, tileValid };
}

function videoGeometry(l: Record<string, unknown>, causal: unknown): Geometry {
  const F = checkInt('layout.frames', l.frames, 1);
  const h = checkInt('layout.height', l.height, 1);
  const w = checkInt('layout.width', l.width, 1);
  if (F * h * w > 2 ** 31 - 1) throw new RangeError(`layout frames·height·width ${F * h * w} exceeds 2^31 − 1 tokens`);
  const fact = checkEnum('layout.factorization', l.factorization, ['monarchrt', 'vmonarch'] as const, 'monarchrt');
  let chunkFrames = 0;
  if (causal !== undefined) {
    const c = snapshot('causal', causal, ['chunkFrames']);
    chunkFrames = checkInt('causal.chunkFrames', c.chunkFrames, 1, F);
    checkDivides('layout.frames', F, 'causal.chunkFrames', chunkFrames);
  }
  const hw = h * w;
  if (fact === 'vmonarch') {
    for (const key of ['fTied', 'hReduce', 'wReduce'] as const) {
      if (l[key] !== undefined && l[key] !== 1) {
        throw new RangeError(`layout.${key} ${show(l[key])} is only supported by the monarchrt factorization (vmonarch tiles are whole frames)`);
      }
    }
    const b1 = chunkFrames > 0 ? chunkFrames : F;
    return {
      kind: 'video', factorization: 'vmonarch', numTokens: F * hw, b1, b2: hw, tokensPerTile: b1 * hw,
      tilesPerSequence: F / b1, paddedTokens: F * hw, chunkTiles: chunkFrames > 0 ? 1 : 0,
      chunkTokens: chunkFrames * hw, frameTokens: hw, needsGather: false, gatherMap: null, scatterMap: null, tileValid: null,
    };
  }
  const fTied = l.fTied === undefined ? 1 : checkInt('layout.fTied', l.fTied, 1);
  const hReduce = l.hReduce === undefined ? 1 : checkInt('layout.hReduce', l.hReduce, 1);
  const wReduce = l.wReduce === undefined ? 1 : checkInt('layout.wReduce', l.wReduce, 1);
  checkDivides('layout.frames', F, 'fTied', fTied);
  checkDivides('layout.height', h, 'hReduce', hReduce);
  checkDivides('layout.width', w, 'wReduce', wReduce);
  if (chunkFrames > 0) checkDivides('causal.chunkFrames', chunkFrames, 'layout.fTied', fTied);
  const b1 = fTied * (h / hReduce), b2 = w / wReduce;
  const A = (F / fTied) * hReduce * wReduce;
  // Tile order = raster order (monarchrtOrder is the identity, no gather) unless columns are split
  // (except with one-row tiles of one frame) or rows are split while frames are tied.
  const hh = h / hReduce;
  const gather = wReduce > 1 ? !(fTied === 1 && hh === 1) : hReduce > 1 && fTied > 1;
  return {
    kind: 'video', factorization: 'monarchrt', numTokens: F * hw, b1, b2, tokensPerTile: b1 * b2,
    tilesPerSequence: A, paddedTokens: F * hw,
    // §B.4: C = chunk tokens / tile tokens = (chunkFrames / fTied)·hReduce·wReduce
    chunkTiles: chunkFrames > 0 ? (chunkFrames / fTied) * hReduce * wReduce : 0,
    chunkTokens: chunkFrames * hw, frameTokens: hw, needsGather: gather,
    gatherMap: null, scatterMap: null, tileValid: null,
  };
}

export const SEQUENCE_LAYOUT_KEYS = ['kind', 'length', 'blockSize', 'padding'] as const;
export const VIDEO_LAYOUT_KEYS = ['kind', 'frames', 'height', 'width', 'factorization', 'fTied', 'hReduce', 'wReduce'] as const;
const ALL_LAYOUT_KEYS = [...new Set<string>([...SEQUENCE_LAYOUT_KEYS, ...VIDEO_LAYOUT_KEYS])];

/**
 * Reads `layout` (once, unknown keys rejected) and `causal`, validates them and computes the geometry
 * WITHOUT its per-token maps (cheap: O(1) memory). `layout` is the snapshot the geometry was built from.
 */
export function geometryShape(layout: unknown, causal: unknown): { geometry: Geometry; layout: SequenceLayout | VideoLayout } {
  const all = snapshot('layout', layout, ALL_LAYOUT_KEYS);
  const kind = checkEnum('layout.kind', all.kind, ['sequence', 'video'] as const);
  const mine: readonly string[] = kind === 'sequence' ? SEQUENCE_LAYOUT_KEYS : VIDEO_LAYOUT_KEYS;
  const l: Record<string, unknown> = {};
  for (const key of ALL_LAYOUT_KEYS) {
    if (mine.includes(key)) { if (all[key] !== undefined) l[key] = all[key]; continue; }
    if (all[key] !== undefined) throw new TypeError(`layout.${key} is not an option of a ${kind} layout (known: ${mine.join(', ')})`);
  }
  const g = kind === 'sequence' ? sequenceGeometry(l, causal) : videoGeometry(l, causal);
  // Padding to whole blocks / tiles can push the token count past what the stages index (int32 tokens);
  // checked here, before any per-token map is built.
  if (g.paddedTokens > 2 ** 31 - 1) {
    const what = kind === 'sequence'
      ? `layout.length ${g.numTokens} padded to whole blocks of layout.blockSize ${g.b2}`
      : `layout ${g.numTokens} tokens padded to whole tiles`;
    throw new RangeError(`${what} is ${g.paddedTokens} tokens, more than 2^31 − 1`);
  }
  return { geometry: g, layout: Object.freeze(l) as unknown as SequenceLayout | VideoLayout };
}

/** The geometry with its per-token maps (gather/scatter/tileValid) built: O(paddedTokens) memory. */
export function withMaps(g: Geometry, layout: SequenceLayout | VideoLayout): Geometry {
  if (!g.needsGather) return g;
  if (layout.kind === 'sequence') return { ...g, ...sequenceMaps(g, layout.padding ?? 'post') };
  const v = layout as VideoLayout;
  const order = monarchrtOrder(v.frames, v.height, v.width, v.fTied ?? 1, v.hReduce ?? 1, v.wReduce ?? 1);
  return { ...g, gatherMap: invert(order, g.paddedTokens), scatterMap: order };
}

/** Validates `layout` (+ `causal`) and computes the tiled-Monarch geometry (maps included). */
export function computeGeometry(layout: SequenceLayout | VideoLayout, causal?: { chunkFrames: number }): Geometry {
  const s = geometryShape(layout, causal);
  return withMaps(s.geometry, s.layout);
}

/**
 * Gather/scatter maps of one causal chunk (chunk-local token ↔ chunk-local tile-order token). A chunk's
 * tiling is the same for every chunk because chunkFrames is a multiple of fTied. Null maps = identity.
 */
export function chunkMaps(layout: VideoLayout, chunkFrames: number): { gather: Int32Array | null; scatter: Int32Array | null } {
  if ((layout.factorization ?? 'monarchrt') === 'vmonarch') return { gather: null, scatter: null };
  const order = monarchrtOrder(chunkFrames, layout.height, layout.width, layout.fTied ?? 1, layout.hReduce ?? 1, layout.wReduce ?? 1);
  if (isIdentity(order)) return { gather: null, scatter: null };
  return { gather: invert(order, order.length), scatter: order };
}

/**
 * Tile-order validity masks [B][paddedTokens] from the pads and an optional key-padding mask [B][N]
 * (§A.4: valid = not a pad AND keyMask; the same mask marks valid queries). Null when all valid.
 */
export function validityMask(g: Geometry, batch: number, keyMask?: Uint8Array): Uint8Array | null {
  if (!keyMask && !g.tileValid) return null;
  const P = g.paddedTokens, N = g.numTokens;
  const out = new Uint8Array(batch * P);
  for (let b = 0; b < batch; b++) {
    for (let t = 0; t < P; t++) {
      const n = g.gatherMap ? g.gatherMap[t] : t;
      out[b * P + t] = n < 0 ? 0 : keyMask ? (keyMask[b * N + n] ? 1 : 0) : 1;
    }
  }
  return out;
}

/** Number of allowed (query tile, key tile) pairs of a one-shot forward (§B.4). */
export function allowedPairs(A: number, C: number): number {
  if (C <= 0) return A * A;
  const K = A / C;
  return C * C * (K * (K + 1)) / 2;
}
