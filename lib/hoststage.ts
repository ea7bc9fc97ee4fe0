// Sliced staging (issue 12 item 1): the copy of an async call's ordinary-ArrayBuffer inputs into the
// instance's staging buffers, done on the main thread in bounded slices across event-loop turns, so that
// no single main-thread stall grows with the tensor size (a 480p q + k + v is 302 MB: one copy of ~44 ms
// on a 2-core machine before this).
//
// One process-wide FIFO of staging jobs: every event-loop turn (setImmediate) copies one slice (at most
// the job's slice bytes) of the oldest job, so four instances staging at once still stall the loop by
// one slice per turn, and the first call is staged (and its GPU work enqueued) first. Before every slice
// the native side re-checks that each source is still attached, at least as long as at the call and at
// the same address (csrc/binding_host_stager.h); if not, the job rejects naming the tensor. An aborted
// signal stops the job before its next slice (AbortError). Nothing here enqueues work: the caller awaits
// `ready` and only then enqueues (nothing is enqueued for a rejected job).
import { performance } from 'node:perf_hooks';
import { native, type NativeHostStager } from './native';
import { abortError } from './serving';
import { checkInt } from './validate';

/**
 * Default MonarchOptions / DenseOptions `hostStagingSliceBytes`: Infinity — ordinary inputs are copied
 * before the call returns, so a caller may reuse or overwrite them at once. Slicing (e.g. 16 MiB, ≈ 0.7 ms
 * of memcpy on eight threads of the H200 host) is opt-in, because the caller then promises not to write into the inputs
 * until the call settles (writes are not detectable; detaching and shrinking are).
 */
export const DEFAULT_STAGING_SLICE_BYTES = Infinity;
/**
 * The slice size the docs recommend for servers that opt in (16 MiB: copied on eight threads, one per
 * 2 MiB; the H200 host's Wan 480p ordinary-input forward: 22.5 ms against 45.9 with 4 MiB slices).
 */
export const RECOMMENDED_STAGING_SLICE_BYTES = 16 * 1024 * 1024;
/** Smallest accepted slice (smaller slices only add event-loop turns). */
export const MIN_STAGING_SLICE_BYTES = 64 * 1024;

/** One staged copy: `dst` (addon staging) gets `src`'s bytes; `name` labels errors ('q', 'k', 'v'). */
export interface SliceCopy { name: string; dst: ArrayBufferView; src: ArrayBufferView }

/** A pending sliced copy of one call's inputs. */
export interface SlicedStaging {
  /** Resolves when every byte is staged; rejects (detached / resized source, AbortError) with nothing copied further. */
  readonly ready: Promise<void>;
  /**
   * Resolves when copy i (the order of `copies`) is fully staged, before the later copies are; rejects
   * as `ready` when the job fails first. Lets a CUDA call enqueue that input's upload while the next
   * inputs are still being staged.
   */
  readyOf(i: number): Promise<void>;
  /** Main-thread ms spent in this job's slices so far, and its longest slice. */
  readonly ms: number;
  readonly maxSliceMs: number;
  readonly slices: number;
  /** Stops the job before its next slice (its `ready` rejects; idempotent, a no-op once settled). */
  cancel(): void;
}

const jobs: Job[] = [];
let scheduled = false;

function schedule(): void {
  if (scheduled) return;
  scheduled = true;
  setImmediate(pump);
}

function pump(): void {
  scheduled = false;
  const job = jobs[0];
  if (job === undefined) return;
  try {
    if (job.step()) jobs.shift();
  } finally {
    if (jobs.length > 0) schedule();
  }
}

/** Jobs waiting for slices in this thread (tests, benchmarks/staging_stall.js). */
export function pendingStagingJobs(): number {
  return jobs.length;
}

const totals = { slices: 0, ms: 0, maxSliceMs: 0 };

/**
 * Slices copied in this thread since the last call, their main-thread ms and the longest one (the time
 * inside the copy itself, without whatever else the turn ran); resets the figures (benchmarks).
 */
export function takeStagingSliceStats(): { slices: number; ms: number; maxSliceMs: number } {
  const r = { ...totals };
  totals.slices = 0; totals.ms = 0; totals.maxSliceMs = 0;
  return r;
}

class Job implements SlicedStaging {
  readonly ready: Promise<void>;
  ms = 0;
  maxSliceMs = 0;
  slices = 0;
  private settled = false;
  private next = 0;
  private resolve!: () => void;
  private reject!: (e: unknown) => void;
  private readonly stagers: Array<{ name: string; s: NativeHostStager }>;
  private readonly each: Array<{ p: Promise<void>; resolve: () => void; reject: (e: unknown) => void }>;

  constructor(copies: readonly SliceCopy[], private readonly sliceBytes: number, private readonly signal?: AbortSignal) {
    this.ready = new Promise<void>((res, rej) => { this.resolve = res; this.reject = rej; });
    // Observed by the call that owns the job; this keeps a job cancelled before anyone awaited it from
    // reporting an unhandled rejection.
    this.ready.catch(() => {});
    const Stager = native().HostStager;
    this.stagers = copies.map((c) => ({ name: c.name, s: new Stager(c.dst, c.src) }));
    this.each = copies.map(() => {
      let resolve!: () => void, reject!: (e: unknown) => void;
      const p = new Promise<void>((res, rej) => { resolve = res; reject = rej; });
      p.catch(() => {});  // as `ready`: observed by the owning call, never unhandled
      return { p, resolve, reject };
    });
    jobs.push(this);
    schedule();
    // An abort settles the job at once, even while it waits behind other jobs of the FIFO.
    signal?.addEventListener('abort', this.onAbort, { once: true });
  }

  private readonly onAbort = (): void => {
    if (this.signal) this.stop(abortError(this.signal));
  };

  /** One slice (the main thread's only O(bytes) work for this call this turn); true once settled. */
  step(): boolean {
    if (this.settled) return true;
    if (this.signal?.aborted) {
      this.finish(abortError(this.signal));
      return true;
    }
    const t0 = performance.now();
    let budget = this.sliceBytes;
    try {
      while (budget > 0 && this.next < this.stagers.length) {
        const { name, s } = this.stagers[this.next];
        const before = s.remaining;
        const left = s.copy(budget);
        if (left < 0) {
          this.finish(new Error(`${name}: the input's ArrayBuffer was detached or resized while it was being staged ` +
            '(keep ordinary input buffers attached until the call settles, or pass allocTensor() / SharedArrayBuffer inputs)'));
          return true;
        }
        budget -= before - left;
        if (left === 0) this.each[this.next++].resolve();
      }
      if (this.next === this.stagers.length) this.finish();
    } catch (e) {
      this.finish(e);
    } finally {
      const dt = performance.now() - t0;
      this.ms += dt;
      this.slices++;
      if (dt > this.maxSliceMs) this.maxSliceMs = dt;
      totals.slices++;
      totals.ms += dt;
      if (dt > totals.maxSliceMs) totals.maxSliceMs = dt;
    }
    return this.settled;
  }

  readyOf(i: number): Promise<void> {
    const e = this.each[i];
    if (e === undefined) throw new RangeError(`readyOf: no copy ${i} (the job has ${this.each.length})`);
    return e.p;
  }

  cancel(): void {
    this.stop(new Error('staging was cancelled'));
  }

  /** Settles the job with `error` and takes it out of the FIFO (a no-op once settled). */
  private stop(error: unknown): void {
    if (this.settled) return;
    const i = jobs.indexOf(this);
    if (i >= 0) jobs.splice(i, 1);
    this.finish(error);
  }

  private finish(error?: unknown): void {
    this.settled = true;
    this.signal?.removeEventListener('abort', this.onAbort);
    for (const { s } of this.stagers) s.close();
    if (error === undefined) this.resolve();
    else this.reject(error);
    for (const e of this.each) e.reject(error ?? new Error('internal: staging settled before its copies'));  // no-op once resolved
  }
}

/**
 * Starts copying `copies` in slices of at most `sliceBytes` bytes, one slice per event-loop turn (shared
 * FIFO of the thread); `signal` aborts it between slices.
 */
export function stageInSlices(copies: readonly SliceCopy[], sliceBytes: number, signal?: AbortSignal): SlicedStaging {
  return new Job(copies, sliceBytes, signal);
}

/**
 * Validates `hostStagingSliceBytes` (MonarchOptions / DenseOptions): undefined → the default, Infinity or
 * an integer past Number.MAX_SAFE_INTEGER → no slicing (copied at call time), else an integer ≥
 * MIN_STAGING_SLICE_BYTES.
 */
export function checkSliceBytes(name: string, value: unknown): number {
  if (value === undefined) return DEFAULT_STAGING_SLICE_BYTES;
  if (value === Infinity) return Infinity;
  // An integer past 2^53 - 1 (2^53, 1e308) is larger than any copy: no slicing, as Infinity.
  if (typeof value === 'number' && Number.isInteger(value) && value > Number.MAX_SAFE_INTEGER) return Infinity;
  return checkInt(name, value, MIN_STAGING_SLICE_BYTES);
}
