// Public types of monarch-attention. Every option documents its default and range; the math is in
// docs/ALGORITHMS.md (§ references) and the README.

/** Storage dtype of tensors. Accumulation is always fp32. */
export type DType = 'float32' | 'float16' | 'bfloat16';
/** `auto` = CUDA when compiled in and a GPU is visible, else CPU. `cuda` throws when no GPU is usable. */
export type Backend = 'auto' | 'cpu' | 'cuda';
/** Memory layout of q/k/v/output: [batch, seq, heads, headDim] (default) or [batch, heads, seq, headDim]. */
export type TensorLayout = 'BSHD' | 'BHSD';

/** The host array of a dtype: a Float32Array for `float32`, a Uint16Array of bit patterns otherwise. */
export type HostData<D extends DType = DType> = D extends 'float32' ? Float32Array : Uint16Array;

/**
 * A tensor in host memory. `data` holds `shape.reduce(*)` elements: a Float32Array for `float32`, a
 * Uint16Array of bit patterns for `float16` / `bfloat16`. Contiguous, row-major in `shape` order.
 * `HostTensor` (any dtype) is a union discriminated by `dtype`, so checking `t.dtype === 'float32'`
 * narrows `t.data` to a Float32Array; `HostTensor<'bfloat16'>` is one dtype.
 */
export type HostTensor<D extends DType = DType> = D extends DType ? {
  readonly data: HostData<D>;
  readonly shape: readonly number[];
  readonly dtype: D;
  /**
   * Present (non-enumerable) only on pooled host outputs (MonarchOptions.hostOutputs 'pooled'): gives
   * the memory back to its instance for a later call. Idempotent.
   */
  readonly dispose?: () => void;
} : never;

/** 1-D token sequence split into blocks of `blockSize` contiguous tokens (MonarchAttention, §A). */
export interface SequenceLayout {
  kind: 'sequence';
  /** Number of tokens N (≥ 1). */
  length: number;
  /** Block size b (1 ≤ b ≤ N); m = ⌈N/b⌉ blocks. b = N or b = 1 is exact dense attention. */
  blockSize: number;
  /** Where the ⌈N/b⌉·b − N zero tokens go when b does not divide N. Default `post`. */
  padding?: 'pre' | 'post';
}

/**
 * A video of frames × height × width tokens in raster order (frame, row, column), e.g. Wan 2.1 480p:
 * 21 × 30 × 52. Two factorizations:
 *  - `monarchrt` (default, §B.2): tile = fTied frames × (height/hReduce) rows × (width/wReduce) columns;
 *    b1 = fTied·height/hReduce (L side), b2 = width/wReduce (R side).
 *  - `vmonarch` (§C.2, our reading of the paper): blocks = frames. b2 = height·width (R = intra-frame),
 *    b1 = frames per tile (L = inter-frame); one tile holds all frames, or one causal chunk when causal.
 */
export interface VideoLayout {
  kind: 'video';
  frames: number;
  height: number;
  width: number;
  /** Default `monarchrt`. */
  factorization?: 'monarchrt' | 'vmonarch';
  /** monarchrt only: frames tied into one tile (divides frames; and chunkFrames when causal). Default 1. */
  fTied?: number;
  /** monarchrt only: row splits per frame (divides height). Default 1. */
  hReduce?: number;
  /** monarchrt only: column splits per frame (divides width). Default 1. */
  wReduce?: number;
}

export interface MonarchOptions {
  layout: SequenceLayout | VideoLayout;
  /** Attention heads H (≥ 1). */
  heads: number;
  /** Head dim D: the set info().support lists for the backend and dtype (today CPU 1..512; CUDA 64 or 128 for float16 / bfloat16, 1..128 for float32). */
  headDim: number;
  /** Batch size B (≥ 1). Default 1. */
  batch?: number;
  /** Alternating-minimisation steps T (1..16). Default 1. Causal video supports any T (pairs skipped). */
  numIters?: number;
  /** Block-causal video attention over chunks of `chunkFrames` frames (video only; divides frames). */
  causal?: { chunkFrames: number };
  /**
   * Recomputation (§C.4, our reading of VMonarch's "first-frame recalculation"): `first-frame` replaces
   * the output rows of frame-0 queries by exact dense attention. Video only. Default `none`.
   */
  recompute?: 'none' | 'first-frame';
  /**
   * Floor of the column mass c_R in the R-step temperature (T ≥ 2 only): the R logits are scaled by
   * 1 / max(c_R, minColumnMass). VMonarch publishes a floor of 0.1 (its default here); MonarchRT caps
   * 1/c_R at 1e4 (default 1e-4 for sequence and monarchrt layouts). Range [1e-30, 1].
   */
  minColumnMass?: number;
  /** Default `float32`. */
  dtype?: DType;
  /** Default `auto`. */
  backend?: Backend;
  /** Default `BSHD`. */
  tensorLayout?: TensorLayout;
  /** Softmax scale s. Default 1/√headDim. */
  scale?: number;
  /**
   * CPU threads of this instance's work (0 = all cores). Default 0. Per instance: it never changes the
   * speed of other instances (0..4096).
   */
  threads?: number;
  /**
   * Memory budget in bytes of what the instance allocates: the plan's workspace (aR, cR, aL, cL, y) plus,
   * when tile order differs from the input order, the tile-order copies of q, k, v, o and the maps
   * (a KV cache adds its K/V memory). A configuration that needs more is refused at construction with a
   * RangeError naming both sizes, before anything is allocated. Default: `os.totalmem()` on the CPU
   * backend, the GPU's memory on CUDA. Integer ≥ 1.
   */
  maxWorkspaceBytes?: number;
  /**
   * Query tiles per native call (1..tilesPerSequence; causal: a multiple of the chunk's tiles C, or a
   * divisor of C). Query tiles are independent (§B.3), so the forward loops over groups of this many
   * tiles, each running the whole T loop; the workspace (aR, aL, y: B·H·queryTilesPerCall·A·b1·b2·D
   * elements each) shrinks by A / queryTilesPerCall. Default: all tiles in one call.
   */
  queryTilesPerCall?: number;
  /**
   * CUDA only: a caller's cudaStream_t (bigint, e.g. a model runtime's stream or CudaStream.handle) on
   * which the instance and its KV caches enqueue all their work instead of a stream of their own. The
   * instance never destroys it; it must stay valid until the instance is disposed (close() waits for it).
   * Default: a non-blocking stream owned by the instance. 0n / negative → RangeError; not a bigint or the
   * CPU backend → TypeError. See docs/API.md "Stream interop".
   */
  stream?: bigint;
  /**
   * The GPU of the instance and its KV caches (0..info().deviceCount − 1; every CUDA call of the instance
   * runs with it current, on the main thread and on worker threads). DeviceTensor inputs and `out` must be
   * on it (RangeError naming both devices). Default 0. Not an integer → TypeError; out of range →
   * RangeError naming the option and the device count; the CPU backend accepts only 0.
   */
  device?: number;
  /**
   * Host outputs of forward / KVCache attend / step called without `out`: 'fresh' (default) — a new
   * ordinary, transferable typed array per call, filled off the event loop (each new array costs the
   * main thread garbage-collection work in proportion to its size: ~100 MB at Wan 480p); 'pooled' — an
   * array of the instance's (a KV cache: its pool's) reusable buffers (addon memory, page-locked on a GPU
   * machine: the download lands in it, nothing is copied on any thread), whose `dispose()` gives it back
   * for the next call. A pooled array is not transferable (like allocTensor memory); after dispose() its
   * contents belong to a later call. Not a string → TypeError; another string → RangeError.
   */
  hostOutputs?: 'fresh' | 'pooled';
  /**
   * Async calls (forward, KVCache write / attend / step) copy ordinary-ArrayBuffer host inputs into
   * staging on the main thread. When the inputs of a call hold more than this many bytes together, the
   * copy runs in slices of at most this many bytes, one per event-loop turn, and the work is enqueued after
   * the last one (no single main-thread stall grows with the tensor size); such an input must then stay
   * attached and at least as long until the call settles, else the call rejects naming it. Smaller inputs
   * are copied before the call returns. Default Infinity (no slicing: everything is copied at call time,
   * so inputs may be reused at once); an integer ≥ 65536 opts in (4 MiB, 4194304, suits a server that
   * leaves its inputs untouched until the call settles — writes during staging cannot be detected).
   * Inputs over a resizable ArrayBuffer are always copied at call time. Integers past 2^53 − 1 read as
   * Infinity. Sync twins are not sliced. Not a number → TypeError; out of range → RangeError.
   */
  hostStagingSliceBytes?: number;
}

export interface ForwardOptions {
  /**
   * Sequence layout only: key-padding mask [batch][length], 1 = keep, 0 = masked (also masks that
   * query in the non-final L-step, §A.4). A block with no valid key gets no L mass.
   */
  keyMask?: Uint8Array;
  /**
   * Where the output goes instead of a new tensor: a HostTensor (host inputs) or DeviceTensor (device
   * inputs) with q's shape and dtype; returned by the call. Addon / shared host memory is written in
   * place; an ordinary array is filled when the work has finished.
   */
  out?: HostTensor | import('./device').DeviceTensor;
  /** Aborts the call: before it starts → rejects with an AbortError, nothing runs; while it runs → CPU
   * stops between native stages, CUDA lets enqueued work finish; then rejects with an AbortError. */
  signal?: AbortSignal;
  /**
   * CUDA only: a cudaEvent_t (bigint) that the call's first op waits for on the GPU (cudaStreamWaitEvent:
   * the host does not wait), e.g. recorded by other CUDA code after it wrote q, k, v.
   */
  waitEvent?: bigint;
  /**
   * CUDA only: a cudaEvent_t (bigint) recorded on the instance's stream after the call's last op, before
   * the Promise resolves: other streams can order work after this call with it (CudaEvent.wait).
   */
  recordEvent?: bigint;
}

/** Options of KVCache.step(): `out` and `signal` as for forward(). An aborted step does not advance the cache. */
export interface StepOptions {
  out?: HostTensor | import('./device').DeviceTensor;
  signal?: AbortSignal;
  /** CUDA only: a cudaEvent_t the step waits for on the GPU first (as ForwardOptions.waitEvent). */
  waitEvent?: bigint;
  /** CUDA only: a cudaEvent_t recorded after the step's last op (as ForwardOptions.recordEvent). */
  recordEvent?: bigint;
}

export interface DenseOptions {
  /** Aborts the call (as for ForwardOptions.signal). */
  signal?: AbortSignal;
  /** Softmax scale. Default 1/√D. */
  scale?: number;
  /** Also return per-row log-sum-exp of the scaled logits, float32 [B][H][Nq]. */
  returnLse?: boolean;
  /** Also return per-row entropy −Σ p log p, float32 [B][H][Nq] (online recurrence, §C.3). */
  returnEntropy?: boolean;
  /** Key-padding mask [B][Nk], 1 = keep. */
  keyMask?: Uint8Array;
  /** Block-causal: query at position qOffset + n sees keys [0, (⌊(qOffset+n)/causalChunk⌋ + 1)·causalChunk). */
  causalChunk?: number;
  /** Position of query row 0 in the key sequence (with causalChunk). Default Nk − Nq. */
  qOffset?: number;
  tensorLayout?: TensorLayout;
  backend?: Backend;
  /** CUDA only: a caller's cudaStream_t to run on (as MonarchOptions.stream). Default: a stream per call. */
  stream?: bigint;
  /**
   * The GPU (as MonarchOptions.device). Default: the device of DeviceTensor inputs (which must all be on
   * one device), else 0.
   */
  device?: number;
  /**
   * CUDA only: a cudaEvent_t (bigint) that the call's first op waits for on the GPU (cudaStreamWaitEvent:
   * the host does not wait), e.g. recorded by other CUDA code after it wrote q, k, v.
   */
  waitEvent?: bigint;
  /**
   * CUDA only: a cudaEvent_t (bigint) recorded on the instance's stream after the call's last op, before
   * the Promise resolves: other streams can order work after this call with it (CudaEvent.wait).
   */
  recordEvent?: bigint;
  /** As MonarchOptions.hostStagingSliceBytes, for this call's ordinary host inputs (default Infinity: no slicing). */
  hostStagingSliceBytes?: number;
}

export interface DenseResult<T> {
  out: T;
  lse?: HostTensor;      // float32 [B][H][Nq]
  entropy?: HostTensor;  // float32 [B][H][Nq]
}

/**
 * One row of the support table (include/monarch/support.h, read by every check in C++ and TypeScript):
 * `backend` takes `dtype` with these head dims.
 */
export interface SupportEntry {
  backend: 'cpu' | 'cuda';
  dtype: DType;
  /** An explicit list (the tensor-core kernels: [64, 128]) or every head dim in min..max. */
  headDims: readonly number[] | { min: number; max: number };
  /** Lowest compute capability × 10 (80 = sm_80); 0 on the CPU. */
  minSm: number;
  /** What runs it, e.g. "tensor cores (fp32 accumulation)". */
  engine: string;
}

export interface InfoResult {
  version: string;
  napiVersion: number;
  compiledWithCuda: boolean;
  /** CMake CUDA architectures of the fatbin, comma-separated, e.g. "80-real,89-real,90a-real,100a-real,120-real,120-virtual". */
  cudaArchs: string | null;
  /** cudaGetDeviceCount status (0 = success) and message ("no CUDA-capable device is detected" ...). */
  cudaStatus: number | null;
  cudaMessage: string;
  deviceCount: number;
  /** Device 0 (null without a usable GPU). */
  device: null | { name: string; computeCapability: string; smCount: number; memoryBytes: number; driverVersion: number; runtimeVersion: number };
  /**
   * Every visible device, by index (the value of the `device` options); empty without a usable GPU. A
   * device whose properties could not be read has name '', computeCapability '', 0 sizes and pciBusId −1.
   */
  devices: Array<{ index: number; name: string; computeCapability: string; smCount: number; memoryBytes: number; pciBusId: number }>;
  cpuThreads: number;
  /** The supported (backend, dtype, head dims, arch) set; listed in every build (compiledWithCuda says whether CUDA is in this one). */
  support: SupportEntry[];
}

/** Rolling-window options of a KV cache (Self-Forcing's local_attn_size / sink_size, in frames). */
export interface KVCacheOptions {
  /**
   * Frames a query chunk attends to, sink and its own chunk included (Self-Forcing `local_attn_size`).
   * Setting it makes the cache roll: positions are unbounded and only the sink plus the latest
   * `localAttnFrames − sinkFrames` frames are kept. A multiple of causal.chunkFrames, at least
   * sinkFrames + chunkFrames. Default: unset (every written frame is kept; positions < layout.frames).
   */
  localAttnFrames?: number;
  /** The first frames, never evicted (Self-Forcing `sink_size`). A multiple of chunkFrames. Default 0. */
  sinkFrames?: number;
  /** Refuse (RangeError) to allocate more than this many bytes (KVCachePool.bytesFor's total). Default: no limit. */
  maxBytes?: number;
}

/** Options of MonarchAttention.createKVCachePool / KVCachePool.bytesFor. */
export interface KVCachePoolOptions extends KVCacheOptions {
  /** Caches in the pool, one per transformer layer (1..4096). */
  layers: number;
}

/** What a KV cache pool allocates, in bytes (host memory on the CPU backend, device memory on CUDA). */
export interface KVCacheBytes {
  /** K and V of every layer: 2·layers·batch·slots·chunkTokens·heads·headDim·dtype size (one allocation). */
  cache: number;
  /** The shared plan's workspace (aR, cR, aL, cL, y) for one chunk of queries against every slot. */
  workspace: number;
  /** Upper bound of the chunk-sized staging buffers (allocated on first use, then reused). */
  staging: number;
  /** cache + workspace + staging. */
  total: number;
}
