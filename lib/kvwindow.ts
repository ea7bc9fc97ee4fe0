// The position bookkeeping of a KVCache (docs/ALGORITHMS.md §B.4 plus Self-Forcing's rolling window with an
// attention sink), pure functions of (window, state, request) so that timing can plan a call without
// taking it. Everything here counts in chunks (causal.chunkFrames frames, C key tiles each).
//
// Logical chunk c (frames [c·cf, (c+1)·cf)) is stored at physical chunk slot
//   c                 when c < sink (the sink is never evicted),
//   c − evicted       otherwise (the non-sink chunks held are contiguous, oldest first).
// A query chunk c sees the key chunks  [0, min(sink, c+1)) ∪ [max(sink, c+1 − (window − sink)), c+1):
// the sink plus the latest (window − sink) chunks up to its own (Self-Forcing's local_attn_size frames in
// all, sink_size of them the sink). Eviction keeps exactly the latest write's key set, so the key chunks
// of every call that is still answerable are the physical prefix [0, keys): the kernels get only allowed
// key tiles and skip nothing.

export interface CacheWindow {
  /** Frames per chunk (causal.chunkFrames). */
  chunkFrames: number;
  /** Chunks never evicted (sinkFrames / chunkFrames). */
  sink: number;
  /** Chunks a query chunk attends to, sink and itself included; Infinity = every written chunk. */
  window: number;
  /** Physical chunk slots (min(window, positions)). */
  slots: number;
  /** Chunk positions accepted (layout.frames / chunkFrames), Infinity when rolling. */
  positions: number;
  /** True when a window is set (positions are unbounded, old chunks are evicted). */
  rolling: boolean;
}

export interface CacheState {
  /** Chunks written: [0, end) (the next append is chunk `end`). */
  end: number;
  /** Non-sink chunks evicted so far: the held non-sink chunks are [sink + evicted, end). */
  evicted: number;
}

/** A copy of `count` physical chunk slots from `from` to `to` (to < from; pieces never overlap). */
export interface Shift { from: number; to: number; count: number }

export interface WritePlan { state: CacheState; shift: Shift | null; slot: number }

const frames = (w: CacheWindow, c: number): string => `${c * w.chunkFrames}`;

/** Describes the frames held, for error messages. */
export function heldFrames(w: CacheWindow, s: CacheState): string {
  const cf = w.chunkFrames, lo = w.sink + s.evicted;
  if (s.end === 0) return 'no frames are cached';
  if (s.evicted === 0) return `cached: frames 0..${s.end * cf - 1}`;
  const win = lo < s.end ? `frames ${lo * cf}..${s.end * cf - 1}` : 'no window frames';
  return w.sink > 0 ? `cached: sink frames 0..${w.sink * cf - 1} and ${win}` : `cached: ${win}`;
}

/** The chunk of a frame position (a multiple of chunkFrames, ≥ 0), or a RangeError naming `name`. */
export function chunkOf(w: CacheWindow, name: string, frame: unknown): number {
  if (typeof frame !== 'number' || !Number.isInteger(frame)) {
    throw new TypeError(`${name} must be an integer frame position, received ${typeof frame === 'number' ? frame : typeof frame}`);
  }
  if (frame < 0 || frame % w.chunkFrames !== 0) {
    throw new RangeError(`${name} ${frame} must be a non-negative multiple of causal.chunkFrames ${w.chunkFrames}`);
  }
  const c = frame / w.chunkFrames;
  if (c >= w.positions) {
    throw new RangeError(`${name} ${frame} is out of range 0..${(w.positions - 1) * w.chunkFrames} (layout.frames ${w.positions * w.chunkFrames}; set localAttnFrames for a rolling window)`);
  }
  if (!Number.isSafeInteger(frame + w.chunkFrames)) throw new RangeError(`${name} ${frame} is too large`);
  return c;
}

/** First key chunk of query chunk c's window (the sink aside). */
function windowStart(w: CacheWindow, c: number): number {
  return Math.max(w.sink, c + 1 - (w.window - w.sink));
}

/**
 * Plans writing chunk c's K/V: no gaps (c ≤ end), not evicted; a new chunk past the window evicts the
 * oldest non-sink chunk first (one shift of the held chunks towards the sink).
 */
export function planWrite(w: CacheWindow, s: CacheState, c: number, name: string): WritePlan {
  const cf = w.chunkFrames;
  if (c > s.end) {
    throw new RangeError(`${name} ${frames(w, c)} would leave frames ${s.end * cf}..${c * cf - 1} unwritten; write chunks in order (the next unwritten frame is ${s.end * cf})`);
  }
  if (c >= w.sink && c < w.sink + s.evicted) {
    throw new RangeError(`${name} ${frames(w, c)} was evicted from the rolling window (${heldFrames(w, s)})`);
  }
  const end = Math.max(s.end, c + 1);
  let evicted = s.evicted, shift: Shift | null = null;
  if (w.rolling && end > s.end) {
    const ws = windowStart(w, end - 1);
    const e = ws - (w.sink + s.evicted);
    if (e > 0) {
      const keep = s.end - ws;  // non-sink chunks that stay: [ws, s.end) move to slots [sink, sink + keep)
      shift = keep > 0 ? { from: w.sink + e, to: w.sink, count: keep } : null;
      evicted += e;
    }
  }
  const slot = c < w.sink ? c : c - evicted;
  return { state: { end, evicted }, shift, slot };
}

/** The key chunks of query chunk c, as the physical prefix [0, keys); throws when c's keys are not held. */
export function planAttend(w: CacheWindow, s: CacheState, c: number, name: string): number {
  const cf = w.chunkFrames;
  if (c >= s.end) {
    throw new RangeError(`${name} ${frames(w, c)}: no keys are cached for frames ${c * cf}..${(c + 1) * cf - 1} (${heldFrames(w, s)}); pass write: { k, v } or write() them first`);
  }
  if (c < w.sink) return c + 1;
  const ws = windowStart(w, c);
  if (ws < w.sink + s.evicted) {
    throw new RangeError(`${name} ${frames(w, c)} needs frames ${ws * cf}..${(c + 1) * cf - 1}, but frames before ${(w.sink + s.evicted) * cf} were evicted from the rolling window (${heldFrames(w, s)})`);
  }
  // ws === sink + evicted here (eviction keeps the latest key set), so sink and window are contiguous.
  return c + 1 - s.evicted;
}

/** The physical pieces of a shift: copies of ≤ (from − to) slots, front to back, so none overlaps. */
export function shiftPieces(sh: Shift): Shift[] {
  const step = sh.from - sh.to, out: Shift[] = [];
  for (let i = 0; i < sh.count; i += step) out.push({ from: sh.from + i, to: sh.to + i, count: Math.min(step, sh.count - i) });
  return out;
}
