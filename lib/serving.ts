// Server-side plumbing shared by MonarchAttention, KVCache(Pool) and dense attention: AbortSignal handling,
// node:diagnostics_channel events, workspace sizes (a static function of the options) and the `out`
// option's checks.
import * as diagnostics from 'node:diagnostics_channel';
import type { HostTensor } from './types';
import { DeviceTensor } from './device';
import { checkHostTensor, dtypeSize } from './tensor';
import { show } from './validate';
import type { AnyTensor } from './inputs';

/** Published on `monarch-attention:call` (no cost unless someone subscribes). */
export interface CallEvent {
  phase: 'start' | 'end';
  /** Increasing per process; pairs a start with its end. */
  id: number;
  op: 'forward' | 'dense' | 'step' | 'attend' | 'write';
  backend: 'cpu' | 'cuda';
  /** Host or device inputs. */
  device: boolean;
  /** The first input's shape (q; k for write), and bytes of every tensor input (q, k, v as given). */
  shape: readonly number[];
  inputBytes: number;
  /** Host input bytes copied into staging at call time (0 for addon / shared / device inputs). */
  stagedBytes: number;
  /** end only: wall time from the call to its end (ms), and the error message if it failed. */
  ms?: number;
  error?: string;
  /** end only, forward only: the main thread's own time in the call, by phase (MainThreadMs). */
  mainThreadMs?: MainThreadMs;
}

/**
 * Main-thread milliseconds one forward spent, by phase (time waiting in the instance's queue or for the
 * GPU / workers is not counted; garbage collection is counted in the phase it interrupts):
 *   validate — argument and option checks;
 *   stage    — securing host inputs (the copy of ordinary-ArrayBuffer inputs into staging: the only
 *              O(bytes) main-thread work of a host forward, at call time or summed over its slices,
 *              MonarchOptions.hostStagingSliceBytes; 0-cost for allocTensor / shared inputs);
 *   enqueue  — staging the output and enqueueing every op (CUDA: copies and kernels on the stream);
 *   complete — after the work has finished: handing the output back (and publishing this event).
 */
export interface MainThreadMs { validate: number; stage: number; enqueue: number; complete: number }

/** Accumulates MainThreadMs: start() opens a segment, lap(phase) charges it to `phase` and opens the next. */
export interface PhaseClock {
  start(): void;
  lap(phase: keyof MainThreadMs): void;
  /** Charges `ms` measured elsewhere (the slices of a sliced staging copy) to `phase`. */
  add(phase: keyof MainThreadMs, ms: number): void;
  readonly ms: MainThreadMs | undefined;
}

class RunningClock implements PhaseClock {
  readonly ms: MainThreadMs = { validate: 0, stage: 0, enqueue: 0, complete: 0 };
  private last = performance.now();
  start(): void { this.last = performance.now(); }
  lap(phase: keyof MainThreadMs): void {
    const t = performance.now();
    this.ms[phase] += t - this.last;
    this.last = t;
  }
  add(phase: keyof MainThreadMs, ms: number): void { this.ms[phase] += ms; }
}

const NO_CLOCK: PhaseClock = { start() {}, lap() {}, add() {}, ms: undefined };

const CALL_CHANNEL = 'monarch-attention:call';
let nextId = 1;

/** A running PhaseClock when someone subscribes to the call channel, else a shared no-op one (no cost). */
export function phaseClock(): PhaseClock {
  return diagnostics.channel(CALL_CHANNEL).hasSubscribers ? new RunningClock() : NO_CLOCK;
}

/**
 * Starts a call's event pair (inputs: its tensor inputs, the first one's shape reported); returns the
 * function that publishes its end (with `clock`'s phases, the last segment charged to 'complete').
 */
export function publishStart(op: CallEvent['op'], backend: CallEvent['backend'], inputs: readonly AnyTensor[],
  stagedBytes: number, clock: PhaseClock = NO_CLOCK): (error?: unknown) => void {
  // Looked up per call, not cached: Node 20 keeps unsubscribed channels weakly, and a channel object
  // cached at load time can end up detached from the name that subscribers later look up.
  const callChannel = diagnostics.channel(CALL_CHANNEL);
  if (!callChannel.hasSubscribers) return () => {};
  const t0 = performance.now();
  const base = {
    id: nextId++, op, backend, device: inputs[0] instanceof DeviceTensor, shape: inputs[0].shape,
    inputBytes: inputs.reduce((s, t) => s + byteLength(t), 0), stagedBytes,
  };
  callChannel.publish({ phase: 'start', ...base } satisfies CallEvent);
  return (error?: unknown) => {
    const ev: CallEvent = { phase: 'end', ...base, ms: performance.now() - t0 };
    clock.lap('complete');
    if (clock.ms) ev.mainThreadMs = { ...clock.ms };
    if (error !== undefined) ev.error = error instanceof Error ? error.message : String(error);
    callChannel.publish(ev);
  };
}

/** Runs a call's body and ends its diagnostics event with the outcome; `cleanup` runs in every case. */
export async function traced<T>(end: (error?: unknown) => void, body: () => Promise<T>, cleanup?: () => void): Promise<T> {
  try {
    const result = await body();
    end();
    return result;
  } catch (e) {
    end(e);
    throw e;
  } finally {
    cleanup?.();
  }
}

function byteLength(t: AnyTensor): number {
  return t instanceof DeviceTensor ? t.byteLength : (t as HostTensor).data.byteLength;
}

/** The reason of an aborted signal as thrown by the API: an Error named 'AbortError'. */
export function abortError(signal: AbortSignal): Error {
  const r: unknown = signal.reason;
  if (r instanceof Error && r.name === 'AbortError') return r;
  const e = new Error(`The operation was aborted${r !== undefined ? `: ${r instanceof Error ? r.message : String(r)}` : ''}`);
  e.name = 'AbortError';
  (e as Error & { cause?: unknown }).cause = r;
  return e;
}

/** Validates an optional `signal` option. */
export function checkSignal(value: unknown): AbortSignal | undefined {
  if (value === undefined) return undefined;
  const s = value as Partial<AbortSignal> | null;
  if (typeof s !== 'object' || s === null || typeof s.aborted !== 'boolean' || typeof s.addEventListener !== 'function') {
    throw new TypeError(`signal must be an AbortSignal, received ${show(value)}`);
  }
  return value as AbortSignal;
}

/** Throws the AbortError when the signal has fired. */
export function throwIfAborted(signal: AbortSignal | undefined): void {
  if (signal?.aborted) throw abortError(signal);
}

/**
 * Checks an `out` option against the output it replaces (q's shape and dtype; host vs device like the
 * inputs; no memory shared with any of `inputs`). Messages name `out`. The one check of every call's `out`.
 */
export function checkOut(value: unknown, q: AnyTensor, device: boolean, inputs: ReadonlyArray<[string, AnyTensor | undefined]> = []): AnyTensor | undefined {
  if (value === undefined) return undefined;
  const isDev = value instanceof DeviceTensor;
  if (device !== isDev) {
    throw new TypeError(`out must be a ${device ? 'DeviceTensor' : 'HostTensor'} like q, received ${isDev ? 'a DeviceTensor' : show(value)}`);
  }
  if (!isDev) checkHostTensor('out', value);
  const o = value as AnyTensor;
  if (isDev && (o as DeviceTensor).disposed) throw new Error('out: DeviceTensor was disposed');
  if (o.dtype !== q.dtype) throw new TypeError(`out.dtype '${o.dtype}' must equal q.dtype '${q.dtype}'`);
  if (o.shape.length !== q.shape.length || o.shape.some((d, i) => d !== q.shape[i])) {
    throw new RangeError(`out.shape [${o.shape.join(', ')}] must equal q.shape [${q.shape.join(', ')}]`);
  }
  for (const [name, t] of inputs) {
    if (t !== undefined && overlaps(o, t)) throw new RangeError(`out must not share memory with ${name}`);
  }
  return o;
}

/** True when two tensors' memory ranges overlap (device: pointer ranges; host: the same buffer). */
function overlaps(a: AnyTensor, b: AnyTensor): boolean {
  if (a instanceof DeviceTensor || b instanceof DeviceTensor) {
    if (!(a instanceof DeviceTensor && b instanceof DeviceTensor) || b.disposed) return false;
    const a0 = a.pointer, b0 = b.pointer;
    return a0 < b0 + BigInt(b.byteLength) && b0 < a0 + BigInt(a.byteLength);
  }
  const x = (a as HostTensor).data, y = (b as HostTensor).data;
  if (x.buffer !== y.buffer) return false;
  return x.byteOffset < y.byteOffset + y.byteLength && y.byteOffset < x.byteOffset + x.byteLength;
}

/** Workspace bytes of a plan (csrc/binding_workspace.cc): aR (iterative), aL, y in dtype; cR (iterative), cL in fp32. */
export function workspaceBytes(p: { batch: number; heads: number; headDim: number; b1: number; b2: number; maxAq: number; maxFk: number; dtype: HostTensor['dtype']; iterative: boolean }): number {
  const c = p.batch * p.heads * p.maxAq * p.maxFk * p.b1 * p.b2;
  const a = c * p.headDim * dtypeSize(p.dtype), f = c * 4;
  return (p.iterative ? 2 : 1) * (a + f) + a;
}

/** Memory held by an instance or cache (bytes). */
export interface MemoryFigures {
  /** The plan's stage buffers (device memory on CUDA, host memory on the CPU). */
  workspace: number;
  /** Addon host buffers that hold copies of ordinary-ArrayBuffer inputs (pooled, reused). */
  staging: number;
  /** Reusable buffers: tile-order copies, the staged output, uploaded inputs (device on CUDA). */
  scratch: number;
  /** KV-cache keys and values (a KVCachePool's one allocation; 0 for MonarchAttention). */
  cache: number;
  /** Device bytes of workspace + scratch + cache (0 on the CPU). */
  device: number;
}
