// The main thread's cost of one enqueued KV-cache call on the CUDA code path, measured on any machine:
// the native binding's Plan and DeviceBuffer are replaced by recording doubles (no GPU, no memory), so
// what is timed is the JavaScript side of KVCache.enqueueAttend at the real shapes — option snapshot,
// tensor and device checks, position planning, op building, the output — plus the doubles' trivial calls.
// It leaves out the N-API argument parsing and cudaLaunchKernel of each op (a few µs each), which the
// streaming server's GET /profile measures on a GPU (mainThreadMsPerCall). Wan 1.3B at 480p by default:
// one chunk = 30 layers × 5 passes = 150 calls at frame 18 of a 21-frame cache, 12 heads × 128, bf16.
//   npm run build:ts && node dist/benchmarks/enqueue_cost.js [--chunks 20] [--layers 30] [--passes 4]
import { native, type NativeBinding } from '../lib/native';
import { resolveOptions } from '../lib/options';
import { wrapBuffer } from '../lib/device';
import { KVCachePool } from '../lib/kvpool';
import type { DeviceTensor, MonarchOptions } from '../lib';

/**
 * What the doubles saw: ops enqueued per kind (`seq`: all of them, the position on the "stream"),
 * synchronisations and fences. A fence covers the ops enqueued before it (`seq` at its call).
 */
export interface FakeCudaLog {
  ops: Record<string, number>; seq: number; synchronize: number; synchronizeAsync: number; fences: number;
  /** Set → the next synchronizeAsync / fenceAsync rejects with it (a GPU fault found by the wait). */
  fail: Error | null;
  /** A sticky fault at op `at` (0-based): every fence covering it (and every later one) rejects with `error`. */
  fault: { at: number; error: Error } | null;
  /** true → fences stay pending until complete() (the "GPU" is slow); false → they settle at once. */
  hold: boolean;
  /** The "GPU" has run the ops before `upTo` (default: all): fences covering no more settle, in call order. */
  complete(upTo?: number): void;
  /** Fences (and held synchronizeAsync calls: the current op count) not settled yet, by the op count they cover. */
  readonly pendingFences: number[];
  /** Set when the plan was disposed with a fence not settled (what a pool must never do). */
  disposedWithFencePending: boolean;
  /** Per fence called, the id of its plan (plans are numbered 0, 1, … in creation order). */
  fencePlans: number[];
}

let nextPointer = 0x10000n;

function fakeBuffer(bytes: number, device = 0, pointer?: bigint): Record<string, unknown> {
  const p = pointer ?? nextPointer;
  if (pointer === undefined) nextPointer += BigInt(bytes) + 256n;
  return { byteLength: bytes, device, pointer: p, owned: pointer === undefined, disposed: false, dispose() { this.disposed = true; } };
}

/**
 * Runs fn with the native Plan / DeviceBuffer replaced by doubles that record what a CUDA plan would
 * enqueue (until its Promise settles when fn is async). fenceAsync models the stream: it covers the ops
 * enqueued before it; with `log.hold` it settles only once complete() says the "GPU" has run them.
 */
export function withFakeCuda<T>(fn: (log: FakeCudaLog) => T): T {
  const b = native() as NativeBinding & Record<string, unknown>;
  const realPlan = b.Plan, realBuffer = b.DeviceBuffer;
  const fences: Array<{ at: number | (() => number); settle: () => void }> = [];
  const log: FakeCudaLog = {
    ops: {}, seq: 0, synchronize: 0, synchronizeAsync: 0, fences: 0, fail: null, fault: null, hold: false, disposedWithFencePending: false, fencePlans: [],
    get pendingFences() { return fences.map((f) => (typeof f.at === 'number' ? f.at : f.at())); },
    complete(upTo = Infinity) {
      while (fences.length > 0) {
        const f = fences[0], at = typeof f.at === 'number' ? f.at : f.at();
        if (at > upTo) break;
        fences.shift()!.settle();
      }
    },
  };
  const count = (op: string) => (): void => { log.ops[op] = (log.ops[op] ?? 0) + 1; log.seq++; };
  const takeFail = (): Error | null => {
    const f = log.fail;
    log.fail = null;
    return f;
  };
  let plans = 0;
  function FakePlan(this: Record<string, unknown>): void {
    const id = plans++;
    Object.assign(this, {
      rStep: count('r'), lStep: count('l'), finalStep: count('rl'), gather: count('gather'), dense: count('dense'),
      upload: count('upload'), download: count('download'), waitEvent: count('waitEvent'), recordEventHandle: count('recordEvent'),
      synchronize: () => { log.synchronize++; },
      synchronizeAsync: () => {
        // A whole-stream wait: with `hold` it also waits for the ops enqueued while it waits.
        log.synchronizeAsync++;
        const f = takeFail();
        if (!log.hold) return f ? Promise.reject(f) : Promise.resolve();
        return new Promise<void>((resolve, reject) => {
          fences.push({ at: () => log.seq, settle: () => (f ? reject(f) : resolve()) });
        });
      },
      fenceAsync: () => {
        log.fences++;
        log.fencePlans.push(id);
        const at = log.seq, failure = takeFail();
        return new Promise<void>((resolve, reject) => {
          const settle = (): void => {
            const sticky = log.fault !== null && at > log.fault.at ? log.fault.error : null;
            const e = failure ?? sticky;
            if (e) reject(e);
            else resolve();
          };
          if (log.hold) fences.push({ at, settle });
          else settle();
        });
      },
      stream: 0x5ea0n,
      dispose: () => { if (fences.length > 0) log.disposedWithFencePending = true; },
    });
  }
  const restore = (): void => {
    b.Plan = realPlan;
    b.DeviceBuffer = realBuffer;
  };
  let async = false;
  try {
    b.Plan = FakePlan as never;
    b.DeviceBuffer = {
      alloc: (bytes: number, device?: number) => fakeBuffer(bytes, device),
      fromPointer: (ptr: bigint, bytes: number, device?: number) => fakeBuffer(bytes, device, ptr),
    } as never;
    const r = fn(log);
    if (r instanceof Promise) {
      async = true;
      return r.finally(restore) as T;  // an async fn keeps the doubles until it settles
    }
    return r;
  } finally {
    if (!async) restore();
  }
}

/** A DeviceTensor over a double's buffer (withFakeCuda only). */
export function fakeDeviceTensor(shape: number[], dtype: 'float32' | 'bfloat16' | 'float16'): DeviceTensor {
  const n = shape.reduce((a, x) => a * x, 1);
  return wrapBuffer(native().DeviceBuffer.alloc(n * (dtype === 'float32' ? 4 : 2)), shape, dtype);
}

/** A KVCachePool on the CUDA code path (withFakeCuda only): `options` resolved for the CPU, then marked 'cuda'. */
export function fakeCudaPool(options: MonarchOptions, pool: { layers: number; localAttnFrames?: number; sinkFrames?: number }): KVCachePool {
  const cfg = { ...resolveOptions({ ...options, backend: 'cpu' }), backend: 'cuda' as const };
  return new KVCachePool(cfg, pool, false);
}

export interface EnqueueCost { layers: number; passes: number; chunks: number; calls: number; msPerCall: { p50: number; p99: number; mean: number }; opsPerCall: number }

/** Times enqueueAttend at `options`' shapes on the doubles: `chunks` chunks of layers × (passes + 1) calls, the last chunk rewritten. */
export function measureEnqueue(options: MonarchOptions, o: { layers: number; passes: number; chunks: number }): EnqueueCost {
  return withFakeCuda((log) => {
    const p = fakeCudaPool(options, { layers: o.layers });
    const cfg = p.layers[0], shape = [1, cfg.chunkTokens, options.heads, options.headDim];
    const dtype = options.dtype ?? 'float32';
    const [q, k, v, out] = [0, 1, 2, 3].map(() => fakeDeviceTensor(shape, dtype));
    const frames = (options.layout as { frames: number }).frames;
    const last = frames - cfg.chunkFrames;
    // Fill the cache up to the last chunk (untimed), then time rewrites of it: the deepest key set.
    for (let f = 0; f <= last; f += cfg.chunkFrames) for (const c of p.layers) c.enqueueAttend(q, { frame: f, write: { k, v }, out });
    const times: number[] = [];
    const before = Object.values(log.ops).reduce((a, x) => a + x, 0);
    for (let ch = 0; ch < o.chunks; ch++)
      for (let t = 0; t <= o.passes; t++)
        for (const c of p.layers) {
          const t0 = process.hrtime.bigint();
          c.enqueueAttend(q, { frame: last, write: { k, v }, out });
          times.push(Number(process.hrtime.bigint() - t0) / 1e6);
        }
    const ops = Object.values(log.ops).reduce((a, x) => a + x, 0) - before;
    p.dispose();
    const s = times.slice().sort((a, b) => a - b);
    const at = (x: number): number => s[Math.min(s.length - 1, Math.ceil(x * s.length) - 1)];
    return {
      layers: o.layers, passes: o.passes, chunks: o.chunks, calls: times.length,
      msPerCall: { p50: at(0.5), p99: at(0.99), mean: times.reduce((a, x) => a + x, 0) / times.length }, opsPerCall: ops / times.length,
    };
  });
}

/** Wan 2.1 1.3B self-attention at 480p, Self-Forcing chunks of 3 latent frames, T = 1. */
export const WAN_480P: MonarchOptions = {
  layout: { kind: 'video', frames: 21, height: 30, width: 52 }, heads: 12, headDim: 128, dtype: 'bfloat16', numIters: 1,
  causal: { chunkFrames: 3 },
};

if (require.main === module) {
  const arg = (name: string, dflt: number): number => {
    const i = process.argv.indexOf(`--${name}`);
    return i < 0 ? dflt : Number(process.argv[i + 1]);
  };
  const r = measureEnqueue(WAN_480P, { layers: arg('layers', 30), passes: arg('passes', 4), chunks: arg('chunks', 20) });
  process.stdout.write(`${JSON.stringify({ what: 'enqueueAttend main-thread ms per call, CUDA JS path on native doubles (no N-API parsing or launches)', shape: '480p 21x30x52, cf 3, 12x128 bf16, T 1', ...r })}\n`);
}
