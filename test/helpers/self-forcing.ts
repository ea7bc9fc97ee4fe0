// The Self-Forcing inference protocol as a test fixture: per chunk c (frames [c·cf, (c+1)·cf)), `passes`
// denoising passes and one context pass, each attending the chunk's queries over the cache after writing
// the chunk's k, v at frame c·cf (overwriting the slice). The reference of pass (c, t) is the chunk's rows
// of a one-shot block-causal forward over the frames the chunk sees: the sink chunks and the latest
// (window − sink) chunks up to c, holding the K/V last written there (the context pass of earlier chunks,
// pass t's own for chunk c).
import { Act, concatTokens, sliceRows } from './act';
import type { Rng } from './rng';
import { randAct } from './tensors';
import type { DType, VideoLayout } from './pkg';

export interface Window {
  /** Chunks attended in all (sink and own included); Infinity = every chunk. */
  window: number;
  sink: number;
}

export interface Pass { c: number; t: number; q: Act; k: Act; v: Act }

/** Fresh inputs of every pass: chunks × (passes + 1), the last of each chunk being the context pass. */
export function protocolInputs(rng: Rng, chunks: number, passes: number, B: number, chunkN: number, H: number, D: number, dtype: DType = 'float32'): Pass[] {
  const out: Pass[] = [];
  for (let c = 0; c < chunks; c++)
    for (let t = 0; t <= passes; t++)
      out.push({ c, t, q: randAct(rng, B, chunkN, H, D, 2, dtype), k: randAct(rng, B, chunkN, H, D, 1, dtype), v: randAct(rng, B, chunkN, H, D, 1, dtype) });
  return out;
}

/** The key chunks (logical) that query chunk c sees. */
export function keyChunks(w: Window, c: number): number[] {
  const out: number[] = [];
  for (let f = 0; f < Math.min(w.sink, c + 1); f++) out.push(f);
  for (let f = Math.max(w.sink, c + 1 - (w.window - w.sink)); f <= c; f++) out.push(f);
  return out;
}

/**
 * The "visible video" of pass p: frames = key chunks (earlier chunks with their context-pass K/V, chunk c
 * with p's), q zero except the last chunk. `run` maps it to a [B][frames·hw][H][D] output; the last
 * chunk's rows are returned.
 */
export function passReference(all: Pass[], passes: number, w: Window, p: Pass, layout: VideoLayout, cf: number,
  run: (q: Act, k: Act, v: Act, layout: VideoLayout, first: boolean) => Float64Array): Float64Array {
  const chunks = keyChunks(w, p.c);
  const ctx = (c: number): Pass => all[c * (passes + 1) + passes];
  const src = chunks.map((c) => (c === p.c ? p : ctx(c)));
  const zero = (a: Act): Act => ({ ...a, x: new Float64Array(a.x.length) });
  const q = concatTokens(src.map((s, i) => (i === src.length - 1 ? s.q : zero(s.q))));
  const k = concatTokens(src.map((s) => s.k)), v = concatTokens(src.map((s) => s.v));
  const vis = { ...layout, frames: chunks.length * cf };
  const out = run(q, k, v, vis, p.c === 0);
  const n = p.q.S, S = q.S;
  return sliceRows(out, q.B, S, q.H, q.D, S - n, S);
}
