// MonarchOptions → a validated, defaulted, backend-resolved configuration (every option checked here).
import * as os from 'node:os';
import { native, type NativePlan } from './native';
import { dtypeCode, dtypeSize } from './tensor';
import type { Backend, DType, MonarchOptions, TensorLayout, VideoLayout } from './types';
import { geometryShape, withMaps, type Geometry } from './layout';
import { cpuMaxHeadDim, cpuShapeProblem, cudaShapeProblem, cudaUnavailableReason, info } from './info';
import { checkHandle } from './stream';
import { checkDevice, deviceCount } from './devices';
import { checkSliceBytes } from './hoststage';
import { checkEnum, checkInt, checkRange, checkScale, optInt, showBytes, snapshot } from './validate';

export const MAX_NUM_ITERS = 16;
/**
 * Default floor of the column mass c_R in the R temperature 1/c_R for T ≥ 2 (docs/ALGORITHMS.md §A.5):
 * MonarchRT caps 1/c_R at 1e4 (our default for sequences too); VMonarch clamps c_R at 0.1.
 */
export const DEFAULT_MIN_COLUMN_MASS = { sequence: 1e-4, monarchrt: 1e-4, vmonarch: 0.1 } as const;

export interface ResolvedOptions {
  geometry: Geometry;
  layout: MonarchOptions['layout'];
  heads: number;
  headDim: number;
  batch: number;
  numIters: number;
  chunkFrames: number;            // 0 = bidirectional
  recompute: 'none' | 'first-frame';
  dtype: DType;
  backend: 'cpu' | 'cuda';
  tensorLayout: TensorLayout;
  scale: number;
  /** 1 / minColumnMass: the cap of the R-step temperature handed to the native stages. */
  maxInvTemp: number;
  threads: number;
  /** Query tiles per native call (see MonarchOptions.queryTilesPerCall). */
  queryTilesPerCall: number;
  /** Memory budget of the instance's own buffers (see MonarchOptions.maxWorkspaceBytes). */
  maxWorkspaceBytes: number;
  /** Bytes the instance allocates: the plan's workspace plus tile-order staging and maps (≤ maxWorkspaceBytes). */
  workspaceBytes: number;
  /** A caller's CUDA stream (MonarchOptions.stream), or undefined for a stream of the plan's own. */
  stream?: bigint;
  /** The GPU (MonarchOptions.device; 0 on the CPU backend). */
  device: number;
  /** Host outputs without `out`: a new ordinary array per call, or the instance's pool (MonarchOptions.hostOutputs). */
  hostOutputs: 'fresh' | 'pooled';
  /** Sliced staging of ordinary host inputs of async calls (MonarchOptions.hostStagingSliceBytes; Infinity: none). */
  hostStagingSliceBytes: number;
}

/** The keys of MonarchOptions (anything else is a typo: TypeError with a suggestion). */
export const MONARCH_OPTION_KEYS = [
  'layout', 'heads', 'headDim', 'batch', 'numIters', 'causal', 'recompute', 'dtype', 'backend', 'tensorLayout',
  'scale', 'minColumnMass', 'threads', 'queryTilesPerCall', 'maxWorkspaceBytes', 'stream', 'device', 'hostOutputs',
  'hostStagingSliceBytes',
] as const;

/**
 * Bytes of the plan workspace for maxAq query tiles × maxFk key tiles (csrc/binding_workspace.cc):
 * aL, y (and aR when T ≥ 2) of B·H·maxAq·maxFk·b1·b2·D storage elements, cL (and cR) of as many
 * fp32 / D. Computed in doubles: exact below 2^53, and a huge request only needs to compare as huge.
 */
export function workspaceBytes(c: { batch: number; heads: number; headDim: number; dtype: DType; numIters: number }, g: Geometry, maxAq: number, maxFk: number): number {
  const rows = c.batch * c.heads * maxAq * maxFk * g.b1 * g.b2;
  const iterative = c.numIters >= 2 ? 2 : 1;
  return iterative * rows * (c.headDim * dtypeSize(c.dtype) + 4) + rows * c.headDim * dtypeSize(c.dtype);
}

/** Tile-order staging of a forward that gathers (q, k, v, o copies) and the per-token maps / masks. */
function stagingBytes(c: { batch: number; heads: number; headDim: number; dtype: DType }, g: Geometry): number {
  const maps = g.needsGather ? 4 * (g.paddedTokens + g.numTokens) + (1 + c.batch) * g.paddedTokens : 0;
  const tiles = g.needsGather ? 4 * c.batch * g.paddedTokens * c.heads * c.headDim * dtypeSize(c.dtype) : 0;
  return maps + tiles;
}

/** Default memory budget: the machine's RAM (CPU backend) or the memory of GPU `device` (CUDA). */
export function defaultMemoryBudget(backend: 'cpu' | 'cuda', device = 0): { bytes: number; source: string } {
  if (backend === 'cuda') {
    const d = info().devices[device];
    if (d && d.memoryBytes > 0) return { bytes: d.memoryBytes, source: device === 0 ? "the GPU's memory" : `GPU ${device}'s memory` };
  }
  return { bytes: os.totalmem(), source: 'os.totalmem()' };
}

/** Throws a RangeError when `bytes` exceed the budget, naming both. */
export function checkBudget(what: string, bytes: number, budget: number, explicit: boolean, source: string, hint: string): void {
  if (bytes <= budget) return;
  throw new RangeError(`${what} needs ${showBytes(bytes)}, more than maxWorkspaceBytes ${showBytes(budget)}` +
    `${explicit ? '' : ` (the default: ${source})`}; ${hint}`);
}

/**
 * 'auto' → 'cuda' when the addon has CUDA, a GPU is visible and the CUDA kernels take the dtype and
 * head dim (info().support, include/monarch/support.h); else 'cpu'. 'cuda' checks dtype and head dim
 * (RangeError), then availability (Error "CUDA backend unavailable: <reason>").
 */
export function resolveBackend(requested: Backend, dtype: DType, headDim: number): 'cpu' | 'cuda' {
  if (requested === 'cpu') {
    const problem = cpuShapeProblem(dtype, headDim);
    if (problem !== null) throw new RangeError(problem);
    return 'cpu';
  }
  const problem = cudaShapeProblem(dtype, headDim);
  if (requested === 'auto') {
    if (cudaUnavailableReason() !== null || problem !== null) return resolveBackend('cpu', dtype, headDim);
  } else if (problem !== null) {
    throw new RangeError(problem);
  }
  const reason = cudaUnavailableReason();
  if (reason !== null) throw new Error(`CUDA backend unavailable: ${reason}`);
  return 'cuda';
}

/**
 * Validates every option (TypeError: wrong kind or unknown key; RangeError: bad value) and fills the
 * defaults. Order (issue 8): the options are read once (snapshot); every cheap check runs; then the
 * memory the instance would allocate is computed and compared with maxWorkspaceBytes; only then are
 * per-token maps built. Nothing large is allocated before a request is known to be valid and to fit.
 */
export function resolveOptions(options: MonarchOptions): ResolvedOptions {
  const o = snapshot('options', options, MONARCH_OPTION_KEYS);
  const heads = checkInt('heads', o.heads, 1, 65535);
  const headDim = checkInt('headDim', o.headDim, 1, cpuMaxHeadDim());
  const batch = optInt('batch', o.batch, 1, 1, 65535);
  const numIters = optInt('numIters', o.numIters, 1, 1, MAX_NUM_ITERS);
  const recompute = checkEnum('recompute', o.recompute, ['none', 'first-frame'] as const, 'none');
  const dtype = checkEnum('dtype', o.dtype, ['float32', 'float16', 'bfloat16'] as const, 'float32');
  const requested = checkEnum('backend', o.backend, ['auto', 'cpu', 'cuda'] as const, 'auto');
  const tensorLayout = checkEnum('tensorLayout', o.tensorLayout, ['BSHD', 'BHSD'] as const, 'BSHD');
  const hostOutputs = checkEnum('hostOutputs', o.hostOutputs, ['fresh', 'pooled'] as const, 'fresh');
  const hostStagingSliceBytes = checkSliceBytes('hostStagingSliceBytes', o.hostStagingSliceBytes);
  const scale = o.scale === undefined ? 1 / Math.sqrt(headDim) : checkScale('scale', o.scale);
  const threads = optInt('threads', o.threads, 0, 0, 4096);
  const budgetIn = o.maxWorkspaceBytes === undefined ? undefined : checkInt('maxWorkspaceBytes', o.maxWorkspaceBytes, 1);
  const shape = geometryShape(o.layout, o.causal);
  const g0 = shape.geometry;
  const minColumnMass = o.minColumnMass === undefined
    ? DEFAULT_MIN_COLUMN_MASS[g0.factorization]
    : checkRange('minColumnMass', o.minColumnMass, 1e-30, 1);
  const maxInvTemp = 1 / minColumnMass;
  if (recompute === 'first-frame' && g0.kind !== 'video') {
    throw new RangeError("recompute 'first-frame' needs a video layout, received layout.kind 'sequence'");
  }
  const A = g0.tilesPerSequence, C = g0.chunkTiles;
  const queryTilesPerCall = optInt('queryTilesPerCall', o.queryTilesPerCall, A, 1, A);
  if (C > 0 && queryTilesPerCall % C !== 0 && C % queryTilesPerCall !== 0) {
    throw new RangeError(`queryTilesPerCall ${queryTilesPerCall} must be a multiple or a divisor of the causal chunk's ${C} tiles`);
  }
  const backend = resolveBackend(requested, dtype, headDim);
  const stream = checkHandle('stream', o.stream, backend === 'cuda');
  const device = checkDevice('device', o.device, backend, deviceCount());
  const dflt = defaultMemoryBudget(backend, device);
  const maxWorkspaceBytes = budgetIn ?? dflt.bytes;
  const dims = { batch, heads, headDim, dtype, numIters };
  const bytes = workspaceBytes(dims, g0, queryTilesPerCall, A) + stagingBytes(dims, g0);
  checkBudget(`MonarchAttention (B·H·queryTilesPerCall·A·b1·b2 = ${batch}·${heads}·${queryTilesPerCall}·${A}·${g0.b1}·${g0.b2} workspace rows of headDim ${headDim}${g0.needsGather ? ', plus tile-order copies of q, k, v, o' : ''})`,
    bytes, maxWorkspaceBytes, budgetIn !== undefined, dflt.source,
    A > 1 && queryTilesPerCall > 1 ? 'lower queryTilesPerCall, batch or heads, or raise maxWorkspaceBytes' : 'use a smaller problem or raise maxWorkspaceBytes');
  const geometry = withMaps(g0, shape.layout);
  const chunkFrames = o.causal === undefined ? 0 : g0.chunkTokens / g0.frameTokens;
  return {
    geometry, layout: shape.layout, heads, headDim, batch, numIters, chunkFrames, recompute, dtype, backend, tensorLayout,
    scale, maxInvTemp, threads, queryTilesPerCall, maxWorkspaceBytes, workspaceBytes: bytes,
    ...(stream !== undefined && { stream }), device, hostOutputs, hostStagingSliceBytes,
  };
}

/** The video layout of a resolved config (callers check geometry.kind first). */
export function videoLayout(r: ResolvedOptions): VideoLayout {
  return r.layout as VideoLayout;
}

/** Creates the native plan of a resolved configuration (maxAq query tiles × maxFk key tiles). */
export function createPlan(cfg: ResolvedOptions, maxAq: number, maxFk: number): NativePlan {
  const g = cfg.geometry;
  return new (native().Plan)({
    backend: cfg.backend, dtype: dtypeCode(cfg.dtype), B: cfg.batch, H: cfg.heads, D: cfg.headDim,
    b1: g.b1, b2: g.b2, maxAq, maxFk, iterative: cfg.numIters >= 2, threads: cfg.threads,
    maxWorkspaceBytes: cfg.maxWorkspaceBytes, ...(cfg.stream !== undefined && { stream: cfg.stream }),
    ...(cfg.backend === 'cuda' && { device: cfg.device }),
  });
}

