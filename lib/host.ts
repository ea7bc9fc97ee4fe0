// Host memory the addon owns (allocTensor) and the staging that keeps async work off the caller's
// memory. Native code reads host inputs on libuv workers (CPU backend); an ordinary ArrayBuffer can be
// transferred, detached or shrunk by its owner meanwhile, so at call time each input is either
//   - addon memory (allocTensor) or a SharedArrayBuffer: used in place (zero-copy; the native side
//     holds a reference to the memory until the work ends), or
//   - an ordinary ArrayBuffer: copied into the instance's staging buffers (addon memory) on the main
//     thread — before the call returns its Promise when the copy is small (≤ the slice size), else in
//     bounded slices across event-loop turns (lib/hoststage.ts), each after a check that the buffer is
//     still attached and as long; the work is enqueued only once the last slice is in.
// csrc/binding_host_memory.h is the native half (and a safety net for every span a worker touches).
import { constants as bufferConstants } from 'node:buffer';
import { native, type NativeMemoryStats } from './native';
import type { DType, HostTensor } from './types';
import { checkShape, dtypeSize, numel, tensor } from './tensor';
import { isTyped, show } from './validate';
import { DTYPES } from './tensor';
import { hostOutputCounters } from './outputs';
import { stageInSlices, type SliceCopy, type SlicedStaging } from './hoststage';

export type HostArray = Float32Array | Uint16Array;

const MAX_LENGTH = bufferConstants.MAX_LENGTH;

/**
 * A new typed array of `n` elements of `dtype` in addon memory (pinned: page-locked if a GPU is usable),
 * zeroed unless `zero` is false (then a pinned block skips its memset: for buffers every byte of which is
 * written before anything reads them — staging copies, download targets, pooled outputs).
 */
export function addonArray(dtype: DType, n: number, pinned = false, zero = true): HostArray {
  const bytes = Math.max(1, n * dtypeSize(dtype));
  // Node's largest ArrayBuffer / typed array (buffer.constants.MAX_LENGTH, in bytes for Uint8): a host
  // tensor past it cannot exist in JS at all.
  if (bytes > MAX_LENGTH) {
    throw new RangeError(`host tensor of ${bytes} bytes exceeds the largest ArrayBuffer this Node allows (${MAX_LENGTH} bytes)`);
  }
  const ab = native().allocHost(bytes, pinned, zero);
  return dtype === 'float32' ? new Float32Array(ab, 0, n) : new Uint16Array(ab, 0, n);
}

/**
 * A zeroed host tensor in memory the addon owns (page-locked with cudaHostAlloc when the addon has a
 * usable GPU, ordinary host memory otherwise). As an input of forward / step / denseAttention it is
 * used in place (no staging copy, fastest host↔device copies) and stays valid for the whole call even if
 * its ArrayBuffer is transferred away or collected. Such an ArrayBuffer cannot be transferred to a
 * worker (Node marks external buffers untransferable: DataCloneError); structured-clone it without a
 * transfer list instead.
 */
export function allocTensor(shape: readonly number[], dtype?: 'float32'): HostTensor<'float32'>;
export function allocTensor<D extends DType>(shape: readonly number[], dtype: D): HostTensor<D>;
export function allocTensor(shape: readonly number[], dtype: DType = 'float32'): HostTensor {
  const shp = checkShape('shape', shape);
  if (typeof dtype !== 'string' || !(DTYPES as readonly string[]).includes(dtype)) {
    throw new (typeof dtype === 'string' ? RangeError : TypeError)(`dtype must be one of 'float32', 'float16', 'bfloat16', received ${show(dtype)}`);
  }
  const n = numel(shp);
  if (!Number.isSafeInteger(n * dtypeSize(dtype))) throw new RangeError(`shape [${shp.join(', ')}] is too large`);
  return tensor(addonArray(dtype, n, true), shp, dtype as DType);
}

/** Where a typed array's memory lives: 'addon' (allocTensor), 'shared' (SharedArrayBuffer) or 'ordinary'. */
export function hostMemoryKind(a: ArrayBufferView): 'ordinary' | 'shared' | 'addon' {
  return (['ordinary', 'shared', 'addon'] as const)[native().hostMemoryKind(a)];
}

/** Native memory counters of this process (tests and diagnostics; see docs/API.md "Memory"). */
export function memoryStats(): NativeMemoryStats & typeof hostOutputCounters {
  return { ...native().memoryStats(), ...hostOutputCounters };
}

/** q, k, v safe to hand to off-thread work, and how to give the staging back. */
export interface SecuredInputs {
  tensors: HostTensor[];
  /** Bytes copied (or being copied) into staging for this call (0 when every input was addon or shared memory). */
  copiedBytes: number;
  /**
   * Resolves once `tensors` hold every byte: at once when the copy was done at call time; after the last
   * slice when it is sliced (lib/hoststage.ts). Rejects (detached / resized input naming it, AbortError)
   * when the sliced copy could not finish. Await it before enqueueing any work that reads `tensors`.
   */
  ready: Promise<void>;
  /** The sliced copy, when the inputs are copied across event-loop turns (null: copied at call time). */
  sliced: SlicedStaging | null;
  /**
   * Per input (the order of secure()'s tensors): resolves once `tensors[i]` holds every byte — at once for
   * inputs used in place or copied at call time, after that input's last slice otherwise (earlier than
   * `ready` for all but the last sliced input). Rejects as `ready` does.
   */
  readyOf(i: number): Promise<void>;
  /** Stops a sliced copy still running and gives the staging arrays back (idempotent). */
  release(): void;
}

/** How an async call stages ordinary inputs (StagingPool.secure). */
export interface SliceOptions {
  /** Copies of more bytes than this (all inputs together) go in slices of at most this many bytes; Infinity: at call time. */
  sliceBytes: number;
  /** Aborts a sliced copy between slices. */
  signal?: AbortSignal;
  /** Names of the tensors for error messages (default 'q', 'k', 'v' by position). */
  names?: readonly string[];
}

const READY = Promise.resolve();

// The intrinsic getters (an own `buffer` property of the view, or a patched prototype, cannot lie).
const viewBuffer = Object.getOwnPropertyDescriptor(Object.getPrototypeOf(Uint8Array.prototype), 'buffer')!.get!;
const abResizable = Object.getOwnPropertyDescriptor(ArrayBuffer.prototype, 'resizable')?.get;

/** True when `a` views a resizable (non-shared) ArrayBuffer (Node 20+). */
function overResizable(a: ArrayBufferView): boolean {
  if (abResizable === undefined) return false;
  try {
    return abResizable.call(viewBuffer.call(a)) === true;
  } catch {
    return false;  // a SharedArrayBuffer (growable ones only grow)
  }
}

/**
 * Reusable staging arrays of one instance (addon memory). secure() copies ordinary-ArrayBuffer tensors in;
 * a set is reused by later calls once released, so steady-state calls allocate nothing.
 */
export class StagingPool {
  private free: HostArray[] = [];
  private all = new Set<HostArray>();

  /**
   * `limit`: bytes the pool may hold (what MonarchOptions.maxWorkspaceBytes leaves after the instance's
   * own buffers); a call whose staging copies would exceed it is refused with a RangeError naming both.
   */
  constructor(private readonly limit = Infinity) {}

  /** Bytes held by the pool's staging arrays. */
  get bytes(): number {
    let b = 0;
    for (const a of this.all) b += a.byteLength;
    return b;
  }

  private acquire(like: HostArray): HostArray {
    const f32 = isTyped(like, 'Float32Array');
    const i = this.free.findIndex((a) => a.length === like.length && isTyped(a, 'Float32Array') === f32);
    if (i >= 0) return this.free.splice(i, 1)[0];
    const need = this.bytes + like.byteLength;
    if (need > this.limit) {
      throw new RangeError(`staging copies of ordinary-ArrayBuffer inputs need ${need} bytes, more than the ${this.limit} bytes ` +
        'maxWorkspaceBytes leaves after the instance\'s own buffers; pass allocTensor() or SharedArrayBuffer inputs (used in place), ' +
        'await earlier calls, or raise maxWorkspaceBytes');
    }
    const a = addonArray(f32 ? 'float32' : 'bfloat16', like.length, true, false);  // overwritten by the copy
    this.all.add(a);
    return a;
  }

  /**
   * The tensors as they can be used off the main thread: CPU (`cuda` false) — addon and shared memory in
   * place, copies of ordinary-memory ones; CUDA — pinned addon memory in place (the plan's stream copies
   * straight from it), copies of everything else (ordinary, shared, unpinned), so that every upload is a
   * cudaMemcpyAsync from page-locked memory. The copies are made now (sync calls, `slicing` absent, or at
   * most `slicing.sliceBytes` bytes in all) or in slices across event-loop turns (`ready`).
   */
  secure(ts: readonly HostTensor[], cuda = false, slicing?: SliceOptions): SecuredInputs {
    const taken: HostArray[] = [];
    const copies: SliceCopy[] = [];
    const copyOf: Array<SliceCopy | undefined> = [];  // input i's copy (undefined: used in place)
    let copied = 0;
    let released = false;
    let sliced: SlicedStaging | null = null;
    let readyOf = (_i: number): Promise<void> => READY;
    const release = (): void => {
      if (released) return;
      released = true;
      sliced?.cancel();  // no slice runs after this: the arrays may go to another call at once
      for (const a of taken) if (this.all.has(a)) this.free.push(a);
    };
    try {
      const out = ts.map((t, i) => {
        if (cuda ? native().isPinnedHost(t.data) : native().hostMemoryKind(t.data) !== 0) return t;
        const a = this.acquire(t.data);
        taken.push(a);
        copies.push({ name: slicing?.names?.[i] ?? ['q', 'k', 'v'][i] ?? `input ${i}`, dst: a, src: t.data });
        copyOf[i] = copies[copies.length - 1];
        copied += a.byteLength;
        return Object.freeze({ data: a, shape: t.shape, dtype: t.dtype }) as HostTensor;
      });
      if (slicing === undefined || copied <= slicing.sliceBytes) {
        for (const c of copies) native().copyHost(c.dst, c.src);
      } else {
        // A resizable ArrayBuffer shrunk and regrown between two slices keeps its address and length
        // (the regrown part zeroed): undetectable per slice, so such inputs are copied now.
        const later = copies.filter((c) => !overResizable(c.src));
        for (const c of copies) if (!later.includes(c)) native().copyHost(c.dst, c.src);
        if (later.length > 0) {
          const job = stageInSlices(later, slicing.sliceBytes, slicing.signal);
          sliced = job;
          // Input i's copy in the job; inputs used in place or copied above are ready now.
          readyOf = (i) => {
            const at = copyOf[i] === undefined ? -1 : later.indexOf(copyOf[i]!);
            return at >= 0 ? job.readyOf(at) : READY;
          };
        }
      }
      return { tensors: out, copiedBytes: copied, ready: sliced?.ready ?? READY, sliced, release, readyOf };
    } catch (e) {
      release();  // what was taken before the failure goes back to the pool
      throw e;
    }
  }

  /** Drops every staging array (the memory is freed when the garbage collector finalizes it). */
  clear(): void {
    this.free = [];
    this.all.clear();
  }
}
