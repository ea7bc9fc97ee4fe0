// The native surface of build/Release/monarch.node, typed once here (csrc/addon.cc registers it).
// Only lib/ talks to it; users see lib/index.ts.
import * as path from 'node:path';
import type { SupportEntry } from './types';

/** dtype codes shared with include/monarch/monarch.h: 0 = float32, 1 = float16, 2 = bfloat16. */
export type DTypeCode = 0 | 1 | 2;
/** Element strides [batch, token, head] of a [B][S][H][D] activation (D contiguous). */
export type Strides = [number, number, number];

/**
 * Device memory owned by the addon (ObjectWrap). upload / download / fill first wait for all GPU work
 * (cudaDeviceSynchronize), so they are ordered after anything a plan enqueued. After dispose() every
 * method and `pointer` throw "DeviceBuffer was disposed", a second dispose() included (DeviceTensor.dispose()
 * is the idempotent wrapper).
 */
export interface NativeDeviceBuffer {
  readonly byteLength: number;
  readonly pointer: bigint;
  readonly owned: boolean;            // false for fromPointer wrappers
  readonly disposed: boolean;
  /** The GPU holding the memory (made current around every copy and the free). */
  readonly device: number;
  /** Copy host bytes in (sync). Throws on size mismatch. */
  upload(src: Float32Array | Uint16Array | Uint8Array | Int32Array): void;
  /** Copy to a new host array of the given kind (sync / async off the event loop). */
  downloadSync(kind: 'f32' | 'u16'): Float32Array | Uint16Array;
  download(kind: 'f32' | 'u16'): Promise<Float32Array | Uint16Array>;
  /** Fill with a float value converted to dtype (NaN poisoning). */
  fill(value: number, dtype: DTypeCode): void;
  dispose(): void;
}

/** A host typed array (CPU plans) or a device buffer (CUDA plans). */
export type NativeData = Float32Array | Uint16Array | NativeDeviceBuffer;

/** One activation argument: data + dtype + strides (elements). */
export interface NativeAct {
  data: NativeData;
  strides: Strides;
}

export interface StageArgs {
  q: NativeAct;
  k: NativeAct;
  v: NativeAct;
  /** Output, final L-step only. */
  o?: NativeAct;
  Aq: number;                 // query tiles this call (≤ plan.maxAq)
  Fk: number;                 // key tiles this call (≤ plan.maxFk)
  qTile0: number;             // global index of query tile 0
  causalTiles: number;        // 0 = bidirectional
  scale: number;
  maxInvTemp: number;
  /** [B][Fk·b1·b2] 1 = valid key (host array; copied to the device by CUDA plans). */
  keyValid?: Uint8Array;
  /** [B][Aq·b1·b2] 1 = valid query. */
  queryValid?: Uint8Array;
}

export interface DenseArgs {
  q: NativeAct; k: NativeAct; v: NativeAct; o: NativeAct;
  B: number; H: number; D: number; Nq: number; Nk: number;
  q0: number; causalChunk: number; scale: number;
  keyValid?: Uint8Array;
  /** float32 [B][H][Nq] outputs: Float32Array (CPU) or device buffer (CUDA). */
  lse?: Float32Array | NativeDeviceBuffer;
  entropy?: Float32Array | NativeDeviceBuffer;
}

export interface GatherArgs {
  src: NativeAct; dst: NativeAct;
  B: number; H: number; D: number;
  /** dst token t = src token map[t]; −1 writes zeros. */
  map: Int32Array;
}

export interface PlanOptions {
  backend: 'cpu' | 'cuda';
  dtype: DTypeCode;
  B: number; H: number; D: number;
  b1: number; b2: number;
  maxAq: number; maxFk: number;
  /** Allocate aR/cR too (T ≥ 2). */
  iterative: boolean;
  /** CPU threads of this plan's calls only, 0 = the process-wide setting (setCpuThreads, default all cores). */
  threads: number;
  /** The plan refuses (RangeError naming both) a workspace larger than this, before allocating. Absent = no limit. */
  maxWorkspaceBytes?: number;
  /** CUDA: a caller's cudaStream_t to enqueue on (never destroyed by the plan); absent = a stream of its own. */
  stream?: bigint;
  /** CUDA: the GPU of the plan (made current around each of its CUDA calls, on every thread). Default 0. */
  device?: number;
}

/**
 * Owns the workspace (aR, cR, aL, cL, y) of one MonarchAttention and, on CUDA, its stream. The stage
 * methods run on the CPU (sync: on the calling thread; async: a libuv worker) or enqueue on the stream
 * (CUDA: sync and async both return after enqueueing; `synchronize*` waits).
 * CPU async calls run one at a time in call order (a per-plan queue); a sync call while any is in
 * flight throws. Async methods reject (never throw) on bad arguments. dispose() is idempotent; it
 * rejects queued calls, frees after a running one, and makes every later call throw "Plan was disposed".
 */
export interface NativePlan {
  rStep(a: StageArgs, first: boolean, last: boolean): void;
  rStepAsync(a: StageArgs, first: boolean, last: boolean): Promise<void>;
  lStep(a: StageArgs, final: boolean): void;
  lStepAsync(a: StageArgs, final: boolean): Promise<void>;
  /**
   * rStep(a, first, last = true) then lStep(a, final = true) as one stage, same results; on CUDA with
   * MONARCH_FUSED_KERNELS=1 one fused kernel where it applies (one-tile problems with b1, b2 <= 64 at
   * head dim 64 on sm_90+), whose aL, y and cL never reach the workspace.
   */
  finalStep(a: StageArgs, first: boolean): void;
  finalStepAsync(a: StageArgs, first: boolean): Promise<void>;
  dense(a: DenseArgs & { dtype: DTypeCode }): void;
  denseAsync(a: DenseArgs & { dtype: DTypeCode }): Promise<void>;
  gather(a: GatherArgs & { dtype: DTypeCode }): void;
  gatherAsync(a: GatherArgs & { dtype: DTypeCode }): Promise<void>;
  synchronize(): void;
  synchronizeAsync(): Promise<void>;
  /**
   * Resolves once the work enqueued before this call has completed (CUDA: an event recorded on the
   * stream now, from a per-plan pool of reused events, waited for on a libuv worker after the plan's
   * earlier waits; work enqueued meanwhile is not waited for). Rejects with the stream's failure. CPU:
   * resolves after the earlier async calls.
   */
  fenceAsync(): Promise<void>;
  /** CUDA: record an event on the stream, returns its handle; elapsed between two handles in ms. */
  recordEvent(): number;
  eventElapsedMs(start: number, end: number): number;
  releaseEvents(): void;
  /** CUDA: the plan's stream (its own or options.stream) as a bigint; null for a CPU plan. */
  readonly stream: bigint | null;
  /** CUDA: later work on the plan's stream waits for a caller's cudaEvent_t (cudaStreamWaitEvent). */
  waitEvent(event: bigint): void;
  /** CUDA: records a caller's cudaEvent_t on the plan's stream after the work enqueued so far. */
  recordEventHandle(event: bigint): void;
  /** CUDA: enqueue a host→device copy on the plan's stream; src must be addon memory (referenced until a later synchronize). */
  upload(dst: NativeDeviceBuffer, src: ArrayBufferView): void;
  /** CUDA: enqueue a device→host copy on the plan's stream into addon memory (done after a later synchronize). */
  download(dst: ArrayBufferView, src: NativeDeviceBuffer): void;
  dispose(): void;
}

export interface NativeBinding {
  info(): {
    compiledWithCuda: boolean; cudaArchs: string | null; cudaStatus: number | null; cudaMessage: string;
    deviceCount: number;
    device: null | { name: string; major: number; minor: number; smCount: number; memoryBytes: number; driverVersion: number; runtimeVersion: number };
    /** Every visible device (empty without CUDA); the properties are absent when cudaGetDeviceProperties failed. */
    devices: Array<{ index: number; name?: string; major?: number; minor?: number; smCount?: number; memoryBytes?: number; pciBusId?: number }>;
    cpuThreads: number; napiVersion: number;
    support: SupportEntry[];
  };
  Plan: new (o: PlanOptions) => NativePlan;
  DeviceBuffer: {
    /** `device`: the GPU (default 0; RangeError past the visible devices). */
    alloc(bytes: number, device?: number): NativeDeviceBuffer;
    /** `device`: default the pointer's device as cudaPointerGetAttributes reports it, else 0. */
    fromPointer(ptr: bigint, bytes: number, device?: number): NativeDeviceBuffer;
  };
  /** An addon-owned stream (csrc/binding_stream.h); throws "CudaStream: CUDA backend unavailable: ..." without CUDA. */
  CudaStream: new (device?: number) => NativeCudaStream;
  /** An addon-owned event without timing (csrc/binding_stream.h). */
  CudaEvent: new (device?: number) => NativeCudaEvent;
  /** Host conversions (round to nearest even). */
  f32ToBf16(x: Float32Array): Uint16Array;
  bf16ToF32(x: Uint16Array): Float32Array;
  f32ToF16(x: Float32Array): Uint16Array;
  f16ToF32(x: Uint16Array): Float32Array;
  setCpuThreads(n: number): void;
  /** Zeroed addon-owned host memory (pinned where a GPU is usable) as an external ArrayBuffer. */
  allocHost(bytes: number, pinned: boolean, zero?: boolean): ArrayBuffer;
  /** 0 = ordinary ArrayBuffer, 1 = SharedArrayBuffer, 2 = addon memory (allocHost). */
  hostMemoryKind(a: ArrayBufferView): 0 | 1 | 2;
  /** Addon memory that is page-locked. */
  isPinnedHost(a: ArrayBufferView): boolean;
  /** dst.set(src) for typed arrays of equal byteLength, split over the CPU threads. */
  copyHost(dst: ArrayBufferView, src: ArrayBufferView): void;
  memoryStats(): NativeMemoryStats;
  /**
   * One host input copied into addon staging `dst` in slices on the main thread (csrc/binding_host_stager.h):
   * copy(maxBytes) copies the next ≤ maxBytes bytes and returns the bytes still to copy (0: done), or −1
   * when src was detached, resized or moved since construction (nothing copied).
   */
  HostStager: new (dst: ArrayBufferView, src: ArrayBufferView) => NativeHostStager;
  /**
   * An ordinary typed array (same kind) with src's bytes, copied off the event loop into a new
   * ArrayBuffer (no caller buffer to fill: JS could transfer or shrink it while the worker writes).
   */
  cloneHostAsync<T extends Float32Array | Uint16Array>(src: T): Promise<T>;
  /** NCCL loaded at run time (csrc/binding_nccl.h); lib/nccl.ts is its only user. */
  nccl: NativeNccl;
}

/** See Native.HostStager. */
export interface NativeHostStager {
  copy(maxBytes: number): number;
  readonly remaining: number;
  close(): void;
}

/** One NCCL communicator (non-blocking) with its own stream; one operation at a time. */
export interface NativeNcclComm {
  readonly failure: string | null;
  readonly busy: boolean;
  init(id: Uint8Array, nranks: number, rank: number, timeoutMs: number): Promise<void>;
  /** Regions: Float64Array of (offset, rows, rowBytes, pitch) per peer, in bytes. */
  allToAll(parts: Array<{ src: NativeDeviceBuffer; dst: NativeDeviceBuffer; send: Float64Array; recv: Float64Array }>, timeoutMs: number): Promise<void>;
  abort(reason?: string): void;
  dispose(): void;
}

export interface NativeNccl {
  /** dlopens the first usable candidate (once per process) → its path and ncclGetVersion code. */
  load(candidates: string[]): { path: string; version: number };
  /** A new ncclUniqueId (128 bytes). */
  uniqueId(): Uint8Array;
  Comm: new () => NativeNcclComm;
}

/** csrc/binding_stream.h. Every method but dispose() throws "CudaStream was disposed" afterwards. */
export interface NativeCudaStream {
  readonly handle: bigint;
  readonly disposed: boolean;
  /** Enqueues a copy from addon host memory (referenced until a later synchronize) into a device buffer. */
  upload(dst: NativeDeviceBuffer, src: ArrayBufferView): void;
  download(dst: ArrayBufferView, src: NativeDeviceBuffer): void;
  synchronize(): void;
  synchronizeAsync(): Promise<void>;
  dispose(): void;
}

/** csrc/binding_stream.h. */
export interface NativeCudaEvent {
  readonly handle: bigint;
  readonly disposed: boolean;
  record(stream: bigint): void;
  wait(stream: bigint): void;
  synchronize(): void;
  query(): boolean;
  dispose(): void;
}

/** Process-wide native memory counters (csrc/binding_host_memory.h). */
export interface NativeMemoryStats {
  deviceAllocations: number; deviceFrees: number; deviceBytes: number;
  hostAllocations: number; hostBlocks: number; hostBytes: number; pinnedBytes: number;
  stagingCopies: number; stagingBytes: number;
}

function packageRoot(): string {
  const up1 = path.resolve(__dirname, '..');
  return path.basename(up1) === 'dist' ? path.resolve(up1, '..') : up1;
}

let cached: NativeBinding | undefined;
/** Loads the addon on first use (build/Release → build/Debug → prebuilds/). */
export function native(): NativeBinding {
  if (!cached) {
    // eslint-disable-next-line @typescript-eslint/no-require-imports
    cached = require('node-gyp-build')(packageRoot()) as NativeBinding;
  }
  return cached;
}
