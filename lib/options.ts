// MonarchOptions → a validated, defaulted, backend-resolved configuration (every option checked here).
import { native, type NativePlan } from './native';
import { dtypeCode } from './tensor';
import type { Backend, DType, MonarchOptions, TensorLayout, VideoLayout } from './types';
import { computeGeometry, type Geometry } from './layout';
import { cudaShapeProblem, cudaUnavailableReason } from './info';
import { checkEnum, checkInt, checkObject, checkPositive, checkRange, optInt } from './validate';

export const MAX_NUM_ITERS = 16;
export const CPU_MAX_HEAD_DIM = 512;
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
}

/**
 * 'auto' → 'cuda' when the addon has CUDA, a GPU is visible and the CUDA kernels take the dtype and
 * head dim (float16/bfloat16: 64, 128; float32: 1..128); else 'cpu'. 'cuda' checks dtype and head dim
 * (RangeError), then availability (Error "CUDA backend unavailable: <reason>").
 */
export function resolveBackend(requested: Backend, dtype: DType, headDim: number): 'cpu' | 'cuda' {
  if (requested === 'cpu') {
    if (headDim > CPU_MAX_HEAD_DIM) throw new RangeError(`headDim ${headDim} is out of range 1..${CPU_MAX_HEAD_DIM} (CPU backend)`);
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

/** Validates every option (TypeError: wrong kind; RangeError: bad value) and fills the defaults. */
export function resolveOptions(options: MonarchOptions): ResolvedOptions {
  const o = checkObject('options', options);
  const geometry = computeGeometry(o.layout as MonarchOptions['layout'], o.causal as { chunkFrames: number } | undefined);
  const heads = checkInt('heads', o.heads, 1, 65535);
  const headDim = checkInt('headDim', o.headDim, 1, CPU_MAX_HEAD_DIM);
  const batch = optInt('batch', o.batch, 1, 1, 65535);
  const numIters = optInt('numIters', o.numIters, 1, 1, MAX_NUM_ITERS);
  const recompute = checkEnum('recompute', o.recompute, ['none', 'first-frame'] as const, 'none');
  if (recompute === 'first-frame' && geometry.kind !== 'video') {
    throw new RangeError("recompute 'first-frame' needs a video layout, received layout.kind 'sequence'");
  }
  const dtype = checkEnum('dtype', o.dtype, ['float32', 'float16', 'bfloat16'] as const, 'float32');
  const requested = checkEnum('backend', o.backend, ['auto', 'cpu', 'cuda'] as const, 'auto');
  const tensorLayout = checkEnum('tensorLayout', o.tensorLayout, ['BSHD', 'BHSD'] as const, 'BSHD');
  const scale = o.scale === undefined ? 1 / Math.sqrt(headDim) : checkPositive('scale', o.scale);
  const minColumnMass = o.minColumnMass === undefined
    ? DEFAULT_MIN_COLUMN_MASS[geometry.factorization]
    : checkRange('minColumnMass', o.minColumnMass, 1e-30, 1);
  const maxInvTemp = 1 / minColumnMass;
  const threads = optInt('threads', o.threads, 0, 0, 4096);
  const A = geometry.tilesPerSequence, C = geometry.chunkTiles;
  const queryTilesPerCall = optInt('queryTilesPerCall', o.queryTilesPerCall, A, 1, A);
  if (C > 0 && queryTilesPerCall % C !== 0 && C % queryTilesPerCall !== 0) {
    throw new RangeError(`queryTilesPerCall ${queryTilesPerCall} must be a multiple or a divisor of the causal chunk's ${C} tiles`);
  }
  const backend = resolveBackend(requested, dtype, headDim);
  const chunkFrames = o.causal === undefined ? 0 : (o.causal as { chunkFrames: number }).chunkFrames;
  // Copy the layout so later mutation of the caller's object cannot change this instance.
  const layout = { ...(o.layout as MonarchOptions['layout']) } as MonarchOptions['layout'];
  return { geometry, layout, heads, headDim, batch, numIters, chunkFrames, recompute, dtype, backend, tensorLayout, scale, maxInvTemp, threads, queryTilesPerCall };
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
  });
}

